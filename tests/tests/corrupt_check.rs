//! etcd's initial corruption check, as kubeadm turns it on
//! (`--experimental-initial-corrupt-check=true`; 3.6: `--feature-gates=InitialCorruptCheck=true`):
//! a restarted member whose store matches its peers' says so and serves; one whose
//! store was altered on disk (a value rewritten in place, same revision, as a bad disk
//! or a stray tool would leave it) logs etcd's "found different hash values from remote
//! peer" and refuses to start with "found data inconsistency with peers". Without the
//! check the same member starts.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd::storage::{Cf, Durability, Storage};
use etcd_tests::cluster::{ClusterOptions, EtcdCluster};

const VALUE: &str = "original-value";
const TAMPERED: &str = "tampered-value";

/// Rewrites, in member `i`'s stopped store, every stored record holding [`VALUE`] so
/// that it holds [`TAMPERED`] (same length: the record stays well formed). Returns how
/// many records changed.
fn tamper(c: &EtcdCluster, i: usize) -> Result<usize> {
    let storage = Storage::open(&c.member_dir(i).join("data").join("member").join("db"))?;
    let records = storage.scan(Cf::Kv, &[], None)?;
    let mut batch = storage.batch();
    let mut changed = 0;
    for (k, v) in records {
        let Some(at) = v.windows(VALUE.len()).position(|w| w == VALUE.as_bytes()) else {
            continue;
        };
        let mut v = v.to_vec();
        v[at..at + VALUE.len()].copy_from_slice(TAMPERED.as_bytes());
        batch.put(Cf::Kv, &k, &v);
        changed += 1;
    }
    storage.write(batch, Durability::Synced)?;
    Ok(changed)
}

fn with_check(c: &mut EtcdCluster, i: usize) {
    let mut flags = c.flags(i).to_vec();
    flags.push("--experimental-initial-corrupt-check=true".into());
    c.set_flags(i, flags);
}

#[test]
fn a_restarted_member_compares_its_store_with_its_peers() -> Result<()> {
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    c.wait_for_leader(Duration::from_secs(15))?;
    for k in ["a", "b", "c"] {
        let o = c.etcdctl(0, &["put", k, VALUE]);
        assert!(o.success(), "{o:?}");
    }
    let checked = 2;
    // Every member has applied the puts before one restarts.
    let rev = |i: usize| -> Result<i64> {
        let j = c.etcdctl(i, &["endpoint", "status", "-w", "json"]).json();
        j[0]["Status"]["header"]["revision"]
            .as_i64()
            .context("no revision")
    };
    etcd_tests::cluster::poll(
        "every member at the same revision",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let r = (rev(0)?, rev(1)?, rev(2)?);
            anyhow::ensure!(r.0 == r.1 && r.1 == r.2, "{r:?}");
            Ok(())
        },
    )?;

    // A consistent store passes.
    with_check(&mut c, checked);
    c.restart(checked)?;
    let log = c.log(checked);
    assert!(log.contains("starting initial corruption check"), "{log}");
    assert!(
        log.contains("initial corruption checking passed; no corruption"),
        "{log}"
    );
    let o = c.etcdctl(checked, &["get", "a", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), VALUE, "{o:?}");

    // The same member with a value rewritten on disk refuses to start.
    c.sigterm(checked)?;
    assert_eq!(tamper(&c, checked)?, 3);
    c.spawn(checked)?;
    let status = c
        .wait_exit(checked, Duration::from_secs(30))?
        .context("the member kept running with diverged data")?;
    assert!(!status.success());
    let log = c.log(checked);
    assert!(
        log.contains("found different hash values from remote peer"),
        "{log}"
    );
    assert!(log.contains("found data inconsistency with peers"), "{log}");
    // The other two were not disturbed.
    let o = c.etcdctl(0, &["get", "a", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), VALUE, "{o:?}");

    // Without the check it starts, and serves what its disk says.
    let flags: Vec<String> = c
        .flags(checked)
        .iter()
        .filter(|f| !f.contains("initial-corrupt-check"))
        .cloned()
        .collect();
    c.set_flags(checked, flags);
    c.start_member(checked)?;
    let o = c.etcdctl(
        checked,
        &["get", "a", "--print-value-only", "--consistency=s"],
    );
    assert_eq!(o.stdout.trim(), TAMPERED, "{o:?}");
    Ok(())
}

/// The member ID (decimal, as `etcdctl alarm list` prints it) of member `i`.
fn member_id(c: &EtcdCluster, i: usize) -> Result<u64> {
    let j = c.etcdctl(i, &["endpoint", "status", "-w", "json"]).json();
    j[0]["Status"]["header"]["member_id"]
        .as_u64()
        .context("no member id")
}

/// The periodic check (`--experimental-corrupt-check-time`): the leader finds a member
/// whose store was altered while it was down, raises the CORRUPT alarm, and writes stop
/// ("etcdserver: corrupt cluster") while reads go on; disarmed, the alarm comes back at
/// the next pass because the data still differs.
#[test]
fn the_leader_raises_the_corrupt_alarm_for_a_diverged_member() -> Result<()> {
    let opts = ClusterOptions::new(3).arg("--experimental-corrupt-check-time=1s");
    let mut c = EtcdCluster::start(opts)?;
    let leader = c.wait_for_leader(Duration::from_secs(15))?;
    for k in ["a", "b", "c"] {
        let o = c.etcdctl(leader, &["put", k, VALUE]);
        assert!(o.success(), "{o:?}");
    }
    let victim = (leader + 1) % 3;
    let victim_id = member_id(&c, victim)?;
    // Passes find nothing while the stores agree.
    etcd_tests::cluster::poll(
        "a clean pass over both followers",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let log = c.log(leader);
            anyhow::ensure!(log.contains("\"number-of-peers-checked\":2"), "no pass yet");
            Ok(())
        },
    )?;
    let o = c.etcdctl(leader, &["alarm", "list"]);
    assert!(o.success() && o.stdout.trim().is_empty(), "{o:?}");

    c.sigterm(victim)?;
    assert_eq!(tamper(&c, victim)?, 3);
    c.spawn(victim)?;
    let alarmed = || -> Result<String> {
        let o = c.etcdctl(leader, &["alarm", "list"]);
        anyhow::ensure!(o.stdout.contains("alarm:CORRUPT"), "{o:?}");
        Ok(o.stdout)
    };
    let list = etcd_tests::cluster::poll(
        "the CORRUPT alarm",
        Duration::from_secs(30),
        Duration::from_millis(200),
        alarmed,
    )?;
    let now_leader = c.wait_for_leader(Duration::from_secs(5))?;
    if now_leader == leader {
        assert_eq!(
            list.trim(),
            format!("memberID:{victim_id} alarm:CORRUPT"),
            "the diverged member is named"
        );
        let log = c.log(leader);
        assert!(
            log.contains("same compact revision then hashes must match"),
            "{log}"
        );
    }
    for i in 0..3 {
        let o = c.etcdctl(i, &["put", "x", "y"]);
        assert!(!o.success(), "{o:?}");
        assert!(
            o.combined().contains("etcdserver: corrupt cluster"),
            "{o:?}"
        );
        let o = c.etcdctl(i, &["get", "b", "--print-value-only", "--consistency=s"]);
        assert!(o.success(), "reads go on: {o:?}");
    }
    let o = c.etcdctl(leader, &["alarm", "disarm"]);
    assert!(o.success(), "{o:?}");
    etcd_tests::cluster::poll(
        "the CORRUPT alarm again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        alarmed,
    )?;
    Ok(())
}
