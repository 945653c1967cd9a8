//! The benchmark harness (`tests/bench`) keeps working: a smoke run (tiny request counts, one
//! round) of `bench.py` against Debian's etcd 3.4 and the workspace's `etcd`, 1 and 3
//! members, must finish and write a table with a number in every cell it measures. It judges
//! no speed: performance is measured by `bash tests/bench/run.sh`, never by a timed test.
//!
//! Needs `scripts/deps.sh --test` (etcd-server, python3, Go and golang-etcd-server-dev to
//! build etcd's `benchmark` tool with `tests/bench/build-benchmark.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::Path;
use std::process::Command;

use etcd_tests::bins::etcd_bin;

#[test]
fn smoke_run_fills_the_whole_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bench = "/var/tmp/etcd-benchmark/etcd-benchmark";
    let st = Command::new("bash")
        .arg(root.join("tests/bench/build-benchmark.sh"))
        .arg(bench)
        .status()
        .unwrap();
    assert!(st.success(), "build-benchmark.sh failed");

    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let report = dir.path().join("BENCHMARKS.md");
    std::fs::write(&report, "# Benchmarks\n\nkept text\n").unwrap();
    let out = Command::new("python3")
        .arg(root.join("tests/bench/bench.py"))
        .args(["--smoke", "--etcd", "/usr/bin/etcd", "--ours"])
        .arg(etcd_bin())
        .arg("--out")
        .arg(dir.path().join("raw"))
        .arg("--report")
        .arg(&report)
        .env("BENCH", bench)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bench.py --smoke failed:\n{log}");

    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("kept text"),
        "text outside the markers was lost:\n{md}"
    );
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 3 |"))
        .collect();
    for (members, test) in [
        ("1", "cf:"),
        ("1", "df:"),
        ("1", "r1l:"),
        ("1", "r1s:"),
        ("1", "a:"),
        ("1", "b:"),
        ("1", "c:"),
        ("1", "d:"),
        ("1", "wl:"),
        ("1", "w:"),
        ("1", "VmHWM"),
        ("3", "a:"),
        ("3", "b:"),
        ("3", "c:"),
        ("3", "d:"),
        ("3", "VmHWM"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| {members} | {test}")))
            .unwrap_or_else(|| panic!("no row {members} {test} in\n{md}"));
        assert!(!row.contains("NA"), "unmeasured cell in {row}");
    }
    // The disk's synced-write latency is probed before each `a` (once per server) and set
    // against what 2× would need.
    let floor = md
        .lines()
        .find(|l| l.starts_with("Disk floor for `a`"))
        .unwrap_or_else(|| panic!("no disk floor line in\n{md}"));
    let probes: Vec<f64> = floor
        .split_once("measurement: ")
        .and_then(|(_, rest)| rest.split_once(" ms)"))
        .map(|(list, _)| list.split(", ").filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        probes.len() == 2 && probes.iter().all(|&p| p > 0.0),
        "expected one probe per server in: {floor}"
    );
    assert!(
        floor.contains("would need our put"),
        "no 2× figure in: {floor}"
    );
    // Raw outputs, server logs and each server's metrics are kept; data dirs are not (a full
    // run would leave gigabytes behind).
    let raw = dir.path().join("raw/round1/1m/ours");
    assert!(raw.join("b.txt").exists() && raw.join("metrics-m0.txt").exists());
    assert!(raw.join("m0.log").exists(), "server log not kept");
    for (config, members) in [("1m", 1), ("3m", 3)] {
        for server in ["etcd", "ours"] {
            for m in 0..members {
                let data = dir
                    .path()
                    .join(format!("raw/round1/{config}/{server}/m{m}.etcd"));
                assert!(!data.exists(), "data dir left behind: {}", data.display());
            }
        }
    }
    let metrics = std::fs::read_to_string(raw.join("metrics-m0.txt")).unwrap();
    for name in [
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_disk_backend_commit_duration_seconds_count",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_apply_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "metric {name} missing");
    }
}
