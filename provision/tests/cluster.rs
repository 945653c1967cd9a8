//! Clusters from rendered configs: three TLS members become healthy and
//! `etcdctl endpoint health --cluster` with the admin certificate succeeds; `join` adds a
//! learner whose rendered config joins the running cluster, and `promote` makes it a voter;
//! `status` reports health, leader and revision.
//!
//! These need a server that can form a cluster: they run against `ETCD_BIN` (e.g.
//! `ETCD_BIN=/usr/bin/etcd`, Debian's etcd 3.4).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Starts member `name` from its rendered `etcd.env`.
fn start_from_env_file(root: &Path, name: &str) -> Proc {
    let mut cmd = Command::new(etcd_bin());
    scrub(&mut cmd);
    cmd.envs(parse_env_file(
        &root.join("out").join(name).join("etcd.env"),
    ));
    Proc::spawn(cmd, &root.join(format!("{name}.log")))
}

/// `etcd-provision args` with the ETCDCTL_* variables of `bundle`'s etcdctl.env.
fn provision_with(bundle: &Path, args: &[&str]) -> std::process::Output {
    let mut c = provision();
    scrub(&mut c);
    c.envs(etcdctl_env(bundle)).args(args).output().unwrap()
}

#[test]
fn three_member_tls_cluster_from_rendered_configs_becomes_healthy() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let spec = local_spec(r, &["m0", "m1", "m2"], true);
    let pki = r.join("pki");
    let out = r.join("out");
    run_ok(&[
        "certs",
        "generate",
        "--spec",
        spec.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
    ]);
    run_ok(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        pki.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    // Start every member at once, as a new cluster must be started.
    let mut procs: Vec<Proc> = ["m0", "m1", "m2"]
        .iter()
        .map(|m| start_from_env_file(r, m))
        .collect();
    let env = etcdctl_env(&out.join("m0"));
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(60), || {
        let o = etcdctl(&["endpoint", "health", "--cluster"], &env);
        last = text(&o);
        // etcdctl succeeds vacuously while members have not published their client URLs.
        o.status.success() && last.matches("is healthy").count() == 3
    });
    for p in &mut procs {
        p.assert_running();
    }
    let logs: Vec<String> = procs.iter().map(|p| p.log_text()).collect();
    assert!(
        ok,
        "cluster never became healthy: {last}\nlogs:\n{}",
        logs.join("\n-----\n")
    );
    assert_eq!(
        last.matches("is healthy").count(),
        3,
        "{last}\nlogs:\n{}",
        logs.join("\n-----\n")
    );
    let o = etcdctl(&["put", "k", "v"], &env);
    assert!(o.status.success(), "{}", text(&o));

    let o = provision_with(&out.join("m0"), &["status"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("healthy").count(), 3, "{t}");
    assert_eq!(t.matches(" yes ").count(), 1, "exactly one leader: {t}");
    for m in ["m0", "m1", "m2"] {
        assert!(t.contains(m), "{t}");
    }
}

#[test]
fn join_adds_a_learner_that_is_promoted_and_status_shows_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let both = local_spec(r, &["m0", "m1"], true);
    let text_both = std::fs::read_to_string(&both).unwrap();
    // The first spec: the same text without member m1.
    let first = r.join("first.toml");
    let cut = text_both.rfind("[[member]]").unwrap();
    std::fs::write(&first, &text_both[..cut]).unwrap();
    let pki = r.join("pki");
    let out = r.join("out");
    run_ok(&[
        "certs",
        "generate",
        "--spec",
        both.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
    ]);
    run_ok(&[
        "render",
        "--spec",
        first.to_str().unwrap(),
        "--pki-dir",
        pki.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut m0 = start_from_env_file(r, "m0");
    let env0 = etcdctl_env(&out.join("m0"));
    let ok = wait_until(Duration::from_secs(30), || {
        etcdctl(&["endpoint", "health"], &env0).status.success()
    });
    assert!(ok, "m0 not healthy:\n{}", m0.log_text());
    assert!(etcdctl(&["put", "before-join", "1"], &env0)
        .status
        .success());

    let o = provision_with(
        &out.join("m0"),
        &[
            "join",
            "--spec",
            both.to_str().unwrap(),
            "--name",
            "m1",
            "--pki-dir",
            pki.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("added learner"), "{}", text(&o));
    let env1: std::collections::HashMap<String, String> = parse_env_file(&out.join("m1/etcd.env"))
        .into_iter()
        .collect();
    assert_eq!(env1["ETCD_INITIAL_CLUSTER_STATE"], "existing");
    let ic = &env1["ETCD_INITIAL_CLUSTER"];
    assert!(
        ic.contains("m0=https://127.0.0.1:") && ic.contains("m1=https://127.0.0.1:"),
        "{ic}"
    );
    // Joining again before the member started finds the same learner.
    let o = provision_with(
        &out.join("m0"),
        &[
            "join",
            "--spec",
            both.to_str().unwrap(),
            "--name",
            "m1",
            "--pki-dir",
            pki.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(text(&o).contains("found existing learner"), "{}", text(&o));

    let mut m1 = start_from_env_file(r, "m1");
    let o = provision_with(
        &out.join("m0"),
        &[
            "promote",
            "--spec",
            both.to_str().unwrap(),
            "--name",
            "m1",
            "--timeout-secs-promote",
            "60",
        ],
    );
    assert!(
        o.status.success(),
        "{}\nm1 log:\n{}",
        text(&o),
        m1.log_text()
    );
    assert!(text(&o).contains("promoted m1"), "{}", text(&o));
    let o = provision_with(
        &out.join("m0"),
        &["promote", "--spec", both.to_str().unwrap(), "--name", "m1"],
    );
    assert!(text(&o).contains("already a voting member"), "{}", text(&o));

    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        let o = provision_with(&out.join("m0"), &["status"]);
        last = text(&o);
        o.status.success()
            && last.matches("voter").count() == 2
            && last.matches("healthy").count() == 2
    });
    assert!(ok, "{last}\nm1 log:\n{}", m1.log_text());
    assert_eq!(last.matches(" yes ").count(), 1, "{last}");
    m0.assert_running();
    m1.assert_running();
    let env1c = etcdctl_env(&out.join("m1"));
    let o = etcdctl(&["get", "before-join", "--print-value-only"], &env1c);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "1",
        "{}",
        text(&o)
    );
}

#[test]
fn status_of_an_unreachable_cluster_is_a_clear_error() {
    let port = free_port();
    let mut c = provision();
    scrub(&mut c);
    let o = c
        .args([
            "status",
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "--timeout-secs",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&o)
    );
}
