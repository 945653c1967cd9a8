//! systemd integration (sd-notify): `READY=1` only once linearizable requests
//! are served, watchdog pings when `WATCHDOG_USEC` asks for them, and
//! `STOPPING=1` plus a clean exit on SIGTERM. A `UnixDatagram` bound in a temp
//! dir plays systemd's notify socket.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_tests::extra::RawEtcd;
use etcd_tests::ports::free_port;

/// Receives datagrams until one contains `needle` (as a whole line) or
/// `timeout` passes. Returns every datagram received, in order.
fn recv_until(sock: &UnixDatagram, needle: &str, timeout: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no datagram with {needle:?} within {timeout:?}; got {got:?}");
        }
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == needle);
                got.push(msg);
                if hit {
                    return Ok(got);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn flags(etcd: &RawEtcd, port: u16) -> Vec<String> {
    let url = format!("http://127.0.0.1:{port}");
    vec![
        "--name=sd".to_string(),
        format!("--data-dir={}", etcd.path("data")),
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
    ]
}

#[test]
fn ready_then_stopping_and_clean_exit() -> Result<()> {
    let mut etcd = RawEtcd::new()?;
    let sock_path = etcd.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let port = free_port();
    let sock_env = sock_path.display().to_string();
    etcd.spawn(&flags(&etcd, port), &[("NOTIFY_SOCKET", sock_env.as_str())])?;

    let msgs = recv_until(&sock, "READY=1", Duration::from_secs(20))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", etcd.log_tail(30)))?;
    // Right after READY=1, a linearizable read must succeed at once (no retry
    // loop: READY=1 promises the member serves).
    let endpoint = format!("127.0.0.1:{port}");
    let o = etcd_tests::etcdctl::run(
        &endpoint,
        &["get", "--consistency=l", "foo", "--command-timeout=3s"],
        None,
    );
    o.assert_success();
    assert!(
        !msgs.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING before shutdown: {msgs:?}"
    );
    // And a write works too.
    assert_eq!(
        etcd_tests::etcdctl::run(&endpoint, &["put", "foo", "bar"], None).ok(),
        "OK\n"
    );

    etcd.send_sigterm()?;
    let t0 = Instant::now();
    let msgs = recv_until(&sock, "STOPPING=1", Duration::from_secs(5))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", etcd.log_tail(30)))?;
    assert!(!msgs.is_empty());
    let status = etcd.wait_exit(Duration::from_secs(8))?;
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        etcd.log_tail(20)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t0.elapsed()
    );
    Ok(())
}

/// systemd sets `WATCHDOG_USEC` (and `WATCHDOG_PID`, which may be absent: then
/// the variable is meant for this process). The server must then send
/// `WATCHDOG=1` more often than every `WATCHDOG_USEC`.
#[test]
fn watchdog_pings() -> Result<()> {
    let mut etcd = RawEtcd::new()?;
    let sock_path = etcd.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let port = free_port();
    let sock_env = sock_path.display().to_string();
    etcd.spawn(
        &flags(&etcd, port),
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )?;
    recv_until(&sock, "READY=1", Duration::from_secs(20))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", etcd.log_tail(30)))?;
    // Count pings over 1.2 s: with a 200 ms watchdog at least 6 are needed
    // (one per 200 ms); a sender at half the period sends about 12.
    let start = Instant::now();
    let mut pings = 0;
    let mut last = Instant::now();
    let mut max_gap = Duration::ZERO;
    let mut buf = vec![0u8; 4096];
    while start.elapsed() < Duration::from_millis(1200) {
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|l| l == "WATCHDOG=1") {
                    pings += 1;
                    max_gap = max_gap.max(last.elapsed());
                    last = Instant::now();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no watchdog ping for 300 ms (WATCHDOG_USEC=200000); {pings} so far");
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert!(pings >= 6, "only {pings} WATCHDOG=1 in 1.2 s");
    assert!(
        max_gap < Duration::from_millis(200),
        "gap of {max_gap:?} between pings"
    );

    // A WATCHDOG_PID naming another process means the watchdog is not ours.
    drop(sock);
    let mut other = RawEtcd::new()?;
    let sock_path = other.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let port = free_port();
    let sock_env = sock_path.display().to_string();
    other.spawn(
        &flags(&other, port),
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    )?;
    recv_until(&sock, "READY=1", Duration::from_secs(20))?;
    let r = recv_until(&sock, "WATCHDOG=1", Duration::from_millis(800));
    assert!(
        r.is_err(),
        "WATCHDOG_PID=1 is not us, yet pings arrived: {r:?}"
    );
    Ok(())
}
