//! `--socket-reuse-port` and `--memory-mlock` (alias `--experimental-memory-mlock`) on
//! running servers: with SO_REUSEPORT the server binds a client port another socket
//! with SO_REUSEPORT already holds (without it, it refuses to start and names the URL);
//! with mlock the process's memory is locked in RAM (`VmLck` in /proc), without it
//! nothing is.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_tests::extra::RawEtcd;
use etcd_tests::ports::free_port;

fn args(etcd: &RawEtcd, port: u16, extra: &[&str]) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    let mut v = vec![
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
        format!("--data-dir={}", etcd.path("data")),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn put_ok(port: u16) -> bool {
    etcd_tests::etcdctl::run(&format!("127.0.0.1:{port}"), &["put", "k", "v"], None).ok() == "OK\n"
}

#[test]
fn reuse_port_binds_a_port_another_reuseport_socket_holds() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let port = free_port();
    let holder = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_reuseport(true)?;
        s.bind(([127, 0, 0, 1], port).into())?;
        s.listen(16)
    })?;

    // Without the flag the port is taken: the server exits naming the URL.
    let mut refused = RawEtcd::new()?;
    refused.spawn(&args(&refused, port, &[]), &[])?;
    let status = refused.wait_exit(Duration::from_secs(20))?;
    assert!(!status.success(), "{}", refused.logs());
    let logs = refused.logs();
    assert!(
        logs.contains(&format!("127.0.0.1:{port}")) && logs.contains("in use"),
        "{logs}"
    );

    // With it, the server shares the port; once the other socket closes, every
    // connection reaches the server.
    let mut etcd = RawEtcd::new()?;
    etcd.start(&args(&etcd, port, &["--socket-reuse-port"]), &[])?;
    drop(holder);
    assert!(put_ok(port), "{}", etcd.log_tail(30));
    Ok(())
}

/// `VmLck` of process `pid`, in KiB.
fn locked_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .context("no VmLck line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmLck value")?
        .parse()?)
}

#[test]
fn memory_mlock_locks_the_process_memory() -> Result<()> {
    let mut plain = RawEtcd::new()?;
    let port = free_port();
    plain.start(&args(&plain, port, &[]), &[])?;
    assert!(put_ok(port));
    assert_eq!(locked_kib(plain.pid().context("pid")?)?, 0);

    let mut locked = RawEtcd::new()?;
    let port = free_port();
    locked.start(&args(&locked, port, &["--experimental-memory-mlock"]), &[])?;
    assert!(put_ok(port), "{}", locked.log_tail(30));
    let kib = locked_kib(locked.pid().context("pid")?)?;
    // At least the server's code and heap: many MiB.
    assert!(kib > 10 * 1024, "VmLck {kib} kB\n{}", locked.log_tail(30));
    assert!(locked.logs().contains("locked the process's memory in RAM"));
    Ok(())
}
