//! The harness itself: start, stop, restart, data-dir persistence.

use std::time::Duration;

use etcd_tests::{EtcdOptions, EtcdProcess, Harness};

#[test]
fn starts_serves_and_restarts_on_same_data_dir() -> anyhow::Result<()> {
    let mut etcd = EtcdProcess::start(EtcdOptions::default().name("harness"))?;
    let port = etcd.client_port();
    assert_eq!(etcd.etcdctl_ok(&["put", "persist", "yes"]), "OK\n");

    // SIGTERM: graceful stop, then restart on the same dir and ports.
    // etcd exits on SIGTERM either with status 0 or by the re-raised signal;
    // sigterm() fails if it does not exit within 20 s.
    etcd.sigterm()?;
    assert!(!etcd.is_running());
    etcd.restart()?;
    assert_eq!(etcd.client_port(), port);
    assert_eq!(etcd.etcdctl_ok(&["get", "persist"]), "persist\nyes\n");

    // SIGKILL, then start again.
    etcd.kill9()?;
    assert!(!etcd.is_running());
    let refused = etcd.etcdctl(&["get", "persist", "--dial-timeout=1s", "--command-timeout=2s"]);
    refused.assert_failure();
    etcd.restart()?;
    assert_eq!(etcd.etcdctl_ok(&["get", "persist"]), "persist\nyes\n");

    // Restart of a running server (SIGTERM + start).
    etcd.restart()?;
    assert_eq!(etcd.etcdctl_ok(&["get", "persist", "--print-value-only"]), "yes\n");
    assert!(etcd.data_dir().join("member").is_dir(), "data dir has a member/ directory");
    Ok(())
}

#[test]
fn failing_server_reports_log_tail() {
    // An unknown flag makes etcd exit immediately; start() must fail fast
    // with the log tail, not hang until the timeout.
    let started = std::time::Instant::now();
    let res = EtcdProcess::start(
        EtcdOptions::default()
            .arg("--this-flag-does-not-exist=1")
            .ready_timeout(Duration::from_secs(20)),
    );
    let err = match res {
        Ok(_) => panic!("etcd started despite an unknown flag"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("exited"), "error names the early exit: {err}");
    assert!(err.contains("this-flag-does-not-exist"), "log tail names the flag: {err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn versions_are_detected() {
    let v = Harness::server_version();
    assert!(v.major == 3, "server reports etcd 3.x, got {v}");
    if Harness::is_reference() {
        assert!(v.minor < 6, "reference mode means a pre-3.6 server, got {v}");
    }
    let c = Harness::etcdctl_version();
    assert_eq!(c.major, 3, "etcdctl 3.x, got {c}");
}
