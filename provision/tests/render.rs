//! `etcd-provision render`: units pass `systemd-analyze verify`; the unit's flags, the TOML
//! file and the env file each start a working member; a second render changes nothing;
//! bad input writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn certs_and_render(root: &Path, spec: &Path, unit_config: &str) -> std::path::PathBuf {
    let pki = root.join("pki");
    run_ok(&[
        "certs",
        "generate",
        "--spec",
        spec.to_str().unwrap(),
        "--dir",
        pki.to_str().unwrap(),
    ]);
    let out = root.join("out");
    run_ok(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        pki.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--unit-config",
        unit_config,
    ]);
    out
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is required (apt-get install systemd)"
    );
    for mode in ["flags", "env-file", "config-file"] {
        let root = tempfile::tempdir().unwrap();
        let spec = local_spec(root.path(), &["m0", "m1"], true);
        let out = certs_and_render(root.path(), &spec, mode);
        for m in ["m0", "m1"] {
            let unit = out.join(m).join("etcd.service");
            let o = Command::new(analyze)
                .arg("verify")
                .arg(&unit)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&o.stderr);
            // systemd-analyze only warns (exit 0) about unknown keys: any output is a failure.
            let relevant: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.contains("/run/systemd/system") && !l.trim().is_empty())
                .collect();
            assert!(
                o.status.success() && relevant.is_empty(),
                "{mode} {m}: {}",
                text(&o)
            );
        }
    }
}

#[test]
fn second_render_changes_nothing_and_bad_input_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let spec = local_spec(root.path(), &["m0", "m1", "m2"], true);
    let out = certs_and_render(root.path(), &spec, "flags");
    let before = snapshot(&out);
    std::thread::sleep(Duration::from_millis(50));
    let o = run_ok(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        root.path().join("pki").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.matches("(unchanged)").count(), 3, "{o}");
    assert_eq!(before, snapshot(&out));

    // Invalid spec: non-zero exit, a message naming the problem, no output directory.
    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "[[member]]\nname = \"m0\"\nips = [\"10.0.0.1\"]\n[[member]]\nname = \"m0\"\nips = [\"10.0.0.999\"]\n").unwrap();
    let fresh = root.path().join("fresh");
    let o = run(&[
        "render",
        "--spec",
        bad.to_str().unwrap(),
        "--pki-dir",
        "/nonexistent",
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("member m0: duplicate member name")
            && t.contains("\"10.0.0.999\" is not an IP address"),
        "{t}"
    );
    assert!(!fresh.exists());
    // Missing certificates: named, nothing written.
    let o = run(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        "/nonexistent",
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("/nonexistent/ca.crt is missing"),
        "{}",
        text(&o)
    );
    assert!(!fresh.exists());
    // Unwritable output directory: named.
    let o = run(&[
        "render",
        "--spec",
        spec.to_str().unwrap(),
        "--pki-dir",
        root.path().join("pki").to_str().unwrap(),
        "--out",
        "/proc/etcd-provision-test",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("/proc/etcd-provision-test"),
        "{}",
        text(&o)
    );
}

/// Starts member `m0` of a one-member spec the way `how` says and checks it is healthy
/// through its rendered etcdctl.env.
fn start_single(how: &str) {
    let root = tempfile::tempdir().unwrap();
    let spec = local_spec(root.path(), &["m0"], true);
    let out = certs_and_render(root.path(), &spec, "flags");
    let bundle = out.join("m0");
    let mut cmd = Command::new(etcd_bin());
    scrub(&mut cmd);
    match how {
        "flags" => {
            let args = unit_exec_args(&bundle.join("etcd.service"));
            cmd.args(&args[1..]);
        }
        "env-file" => {
            cmd.envs(parse_env_file(&bundle.join("etcd.env")));
        }
        "config-file" => {
            cmd.arg(format!(
                "--config-file={}",
                bundle.join("etcd.toml").display()
            ));
        }
        _ => unreachable!(),
    }
    let mut p = Proc::spawn(cmd, &root.path().join("etcd.log"));
    let env = etcdctl_env(&bundle);
    let ok = wait_until(Duration::from_secs(20), || {
        etcdctl(&["endpoint", "health"], &env).status.success()
    });
    p.assert_running();
    assert!(ok, "{how}: not healthy:\n{}", p.log_text());
    let o = etcdctl(&["put", "rendered", how], &env);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn unit_flags_start_a_member() {
    start_single("flags");
}

#[test]
fn env_file_starts_a_member() {
    start_single("env-file");
}

#[test]
fn toml_config_file_starts_a_member() {
    if is_reference() {
        eprintln!("skipped: etcd below 3.6 takes a YAML config file, not TOML");
        return;
    }
    start_single("config-file");
}
