//! `--warning-apply-duration`: a request whose apply (or a read-only range) takes longer
//! is logged as etcd logs it ("apply request took too long", with `took`,
//! `expected-duration`, `prefix`, `request` and `response`) and counted in
//! `etcd_server_slow_apply_total`. `--warning-unary-request-duration`: a KV call that
//! takes longer is logged as "request stats". Values never reach the log. The real
//! `etcdctl` makes the requests; a bound is set below any real duration (1ns) to make
//! every request slow, and above any (1h) to make none.

use anyhow::Result;
use etcd_tests::http::metric;
use etcd_tests::{EtcdOptions, EtcdProcess};

const SECRET: &str = "value-that-must-not-be-logged";

/// The value of `etcd_server_slow_apply_total` on the member's `/metrics`.
fn slow_applies(etcd: &EtcdProcess) -> Result<u64> {
    Ok(metric(etcd.client_port(), "etcd_server_slow_apply_total")? as u64)
}

/// The log lines that carry the slow-apply warning.
fn warnings(etcd: &EtcdProcess) -> Vec<String> {
    etcd.stderr_log()
        .lines()
        .filter(|l| l.contains(r#""msg":"apply request took too long""#))
        .map(str::to_string)
        .collect()
}

#[test]
fn requests_slower_than_the_bound_are_logged_and_counted() -> Result<()> {
    let etcd = EtcdProcess::start(EtcdOptions::default().arg("--warning-apply-duration=1ns"))?;
    let before = slow_applies(&etcd)?;
    assert_eq!(etcd.etcdctl_ok(&["put", "slow/key", SECRET]), "OK\n");
    etcd.etcdctl_ok(&["get", "slow/key", "--consistency=s"]);
    etcd.etcdctl_ok(&["del", "slow/key"]);

    let lines = warnings(&etcd);
    let put = lines
        .iter()
        .find(|l| l.contains(r#"put:<key:\"slow/key\" value_size:29 >"#))
        .unwrap_or_else(|| panic!("no warning for the put among {lines:#?}"));
    assert!(put.contains(r#""level":"warn""#), "{put}");
    assert!(put.contains(r#""expected-duration":"1ns""#), "{put}");
    assert!(put.contains(r#""took":""#), "{put}");
    assert!(put.contains(r#""response":"size:"#), "{put}");
    let range = lines
        .iter()
        .find(|l| l.contains(r#""prefix":"read-only range ""#) && l.contains("slow/key"))
        .unwrap_or_else(|| panic!("no warning for the serializable get among {lines:#?}"));
    assert!(
        range.contains(r#"key:\"slow/key\" serializable:true"#)
            && range.contains(r#""response":"range_response_count:1 size:"#),
        "{range}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"delete_range:<key:\"slow/key\" >"#)),
        "no warning for the delete among {lines:#?}"
    );
    let log = etcd.stderr_log();
    assert!(!log.contains(SECRET), "a value reached the log");
    // The put, the get and the delete at least (the member's own publish may add one).
    assert!(
        slow_applies(&etcd)? >= before + 3,
        "etcd_server_slow_apply_total did not count them"
    );
    Ok(())
}

#[test]
fn requests_within_the_bound_leave_no_trace() -> Result<()> {
    let etcd = EtcdProcess::start(
        EtcdOptions::default()
            .arg("--experimental-warning-apply-duration=1h")
            .arg("--warning-unary-request-duration=1h"),
    )?;
    assert_eq!(etcd.etcdctl_ok(&["put", "quick/key", "v"]), "OK\n");
    etcd.etcdctl_ok(&["get", "quick/key"]);
    assert_eq!(warnings(&etcd), Vec::<String>::new());
    assert_eq!(slow_applies(&etcd)?, 0);
    let log = etcd.stderr_log();
    assert!(!log.contains(r#""msg":"request stats""#), "{log}");
    // And the flags are acted on, not reported as accepted without effect.
    assert!(!log.contains("duration is accepted but"), "{log}");
    Ok(())
}

#[test]
fn slow_kv_calls_are_logged_as_request_stats() -> Result<()> {
    let etcd = EtcdProcess::start(
        EtcdOptions::default().arg("--experimental-warning-unary-request-duration=1ns"),
    )?;
    assert_eq!(etcd.etcdctl_ok(&["put", "stats/a", SECRET]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["put", "stats/b", "x"]), "OK\n");
    etcd.etcdctl_ok(&["get", "stats/", "--prefix"]);
    assert_eq!(etcd.etcdctl_ok(&["del", "stats/", "--prefix"]), "2\n");
    let log = etcd.stderr_log();
    let stats: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""msg":"request stats""#))
        .collect();
    let find = |kind: &str| {
        stats
            .iter()
            .find(|l| l.contains(&format!(r#""response type":"/etcdserverpb.KV/{kind}""#)))
            .unwrap_or_else(|| panic!("no request stats for {kind} among {stats:#?}"))
            .to_string()
    };
    let put = find("Put");
    assert!(put.contains(r#""level":"warn""#), "{put}");
    assert!(put.contains(r#""request count":1"#), "{put}");
    assert!(
        put.contains(r#""request content":"key:\"stats/a\" value_size:29""#),
        "{put}"
    );
    assert!(
        put.contains(r#""time spent":""#) && put.contains(r#""start time":""#),
        "{put}"
    );
    // The client's address, as etcd gives it (etcdctl connects from loopback).
    assert!(put.contains(r#""remote":"127.0.0.1:"#), "{put}");
    let range = find("Range");
    assert!(range.contains(r#""response count":2"#), "{range}");
    assert!(range.contains(r#"range_end:\"stats0\""#), "{range}");
    let del = find("DeleteRange");
    assert!(del.contains(r#""response count":2"#), "{del}");
    assert!(!log.contains(SECRET), "a value reached the log");
    Ok(())
}
