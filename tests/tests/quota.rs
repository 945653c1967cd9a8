//! Backend quota (`--quota-backend-bytes`) and the NOSPACE alarm: writes fail
//! once the database outgrows the quota, the alarm is raised (and survives a
//! restart), reads and deletes keep working, health turns false, and after
//! freeing space `alarm disarm` lets writes through again.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_tests::grpc::{status_of, Code};
use etcd_tests::{EtcdOptions, EtcdProcess, Harness};

const QUOTA: u64 = 8 * 1024 * 1024;
const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

fn health(etcd: &EtcdProcess) -> (u16, serde_json::Value) {
    let r = etcd_tests::http::get(etcd.client_port(), "/health", Duration::from_secs(5))
        .expect("GET /health");
    let j = serde_json::from_str(r.body.trim())
        .unwrap_or_else(|e| panic!("/health body is not JSON ({e}): {}", r.body));
    (r.status, j)
}

fn member_id(etcd: &EtcdProcess) -> u64 {
    let j = etcd.etcdctl_json(&["endpoint", "status", "-w", "json"]);
    j[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member_id")
}

#[test]
fn nospace_alarm_lifecycle() -> Result<()> {
    let mut etcd = EtcdProcess::start(
        EtcdOptions::default()
            .arg(format!("--quota-backend-bytes={QUOTA}"))
            // The harness waits for /health to be true, which it is not under
            // the alarm (restart below): keep that wait short.
            .ready_timeout(Duration::from_secs(4)),
    )?;
    let id = member_id(&etcd);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Fill the database with 100 KB values until the quota refuses a put.
    let value = vec![b'a'; 100_000];
    let (written, err) = rt.block_on(async {
        let mut c = etcd.client().await?;
        for i in 0..400u32 {
            if let Err(e) = c.put(format!("k{i:04}"), value.clone(), None).await {
                return Ok::<_, anyhow::Error>((i, e));
            }
        }
        anyhow::bail!("40 MB written under an 8 MiB quota without NOSPACE")
    })?;
    assert!(written > 0, "the first put already failed: {err:?}");
    assert_eq!(
        status_of(&err),
        Some((Code::ResourceExhausted, NOSPACE.to_string())),
        "put #{written} failed with {err:?}"
    );

    // etcdctl shows the same error; the alarm is listed.
    let o = etcd.etcdctl(&["put", "x", "y"]);
    o.assert_failure();
    assert_eq!(
        o.error_line().as_deref(),
        Some(&*format!("Error: {NOSPACE}")),
        "{}",
        o.combined()
    );
    let alarm_line = format!("memberID:{id} alarm:NOSPACE");
    assert_eq!(etcd.etcdctl_ok(&["alarm", "list"]).trim(), alarm_line);

    // Reads and deletes still work.
    let v = etcd.etcdctl_ok(&["get", "k0000", "--print-value-only"]);
    assert_eq!(v.trim_end().len(), value.len());
    assert_eq!(etcd.etcdctl_ok(&["del", "k0000"]), "1\n");
    // Small writes keep failing while the alarm is active.
    etcd.etcdctl(&["put", "tiny", "1"]).assert_failure();

    // Unhealthy: /health says why; etcdctl 3.5+ checks alarms too.
    let (status, j) = health(&etcd);
    assert_eq!(status, 503, "{j}");
    assert_eq!(j["health"], "false", "{j}");
    assert_eq!(j["reason"], "ALARM NOSPACE", "{j}");
    if Harness::etcdctl_is_35_or_newer() {
        let o = etcd.etcdctl(&["endpoint", "health"]);
        o.assert_failure();
        assert!(o.combined().contains("NOSPACE"), "{}", o.combined());
    }

    // The alarm is persistent: it survives a restart.
    etcd.restart()
        .or_else(|e| {
            // /health is false under the alarm, so the harness's readiness
            // wait times out; the process must still be up.
            if etcd.is_running() {
                Ok(())
            } else {
                Err(e)
            }
        })
        .context("restart under NOSPACE")?;
    wait_for(
        || etcd.etcdctl(&["alarm", "list"]).success(),
        Duration::from_secs(10),
    );
    assert_eq!(
        etcd.etcdctl_ok(&["alarm", "list"]).trim(),
        alarm_line,
        "alarm after restart"
    );
    etcd.etcdctl(&["put", "x", "y"]).assert_failure();

    // Free space: delete everything, compact, defragment. The alarm stays
    // until disarmed.
    etcd.etcdctl_ok(&["del", "--prefix", "k"]);
    let rev = etcd.etcdctl_json(&["endpoint", "status", "-w", "json"])[0]["Status"]["header"]
        ["revision"]
        .as_i64()
        .expect("revision");
    etcd.etcdctl_ok(&["compact", &rev.to_string(), "--physical"]);
    etcd.etcdctl_ok(&["defrag"]);
    let size = etcd.etcdctl_json(&["endpoint", "status", "-w", "json"])[0]["Status"]["dbSize"]
        .as_u64()
        .expect("dbSize");
    assert!(size < QUOTA / 2, "defrag gave space back: dbSize {size}");
    etcd.etcdctl(&["put", "x", "y"]).assert_failure();

    let out = etcd.etcdctl_ok(&["alarm", "disarm"]);
    assert_eq!(out.trim(), alarm_line, "disarm prints the disarmed alarm");
    assert_eq!(etcd.etcdctl_ok(&["alarm", "list"]), "");
    assert_eq!(etcd.etcdctl_ok(&["put", "x", "y"]), "OK\n");
    assert_eq!(etcd.etcdctl_ok(&["get", "x", "--print-value-only"]), "y\n");
    let (status, j) = health(&etcd);
    assert_eq!(
        (status, &j["health"]),
        (200, &serde_json::json!("true")),
        "{j}"
    );
    Ok(())
}

fn wait_for(mut f: impl FnMut() -> bool, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
