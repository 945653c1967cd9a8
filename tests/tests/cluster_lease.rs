//! Leases and leadership in a 3-member cluster: keep-alives through a
//! follower reach the leader, leases survive a leader change, expiry removes
//! attached keys on every member, and `move-leader` transfers leadership.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster};

/// `etcdctl lease grant <ttl>` via member `i`; returns the lease ID (hex).
fn grant(c: &EtcdCluster, i: usize, ttl: u32) -> String {
    let out = c.etcdctl(i, &["lease", "grant", &ttl.to_string()]).ok();
    // "lease 694d5d1a2c9c2a0b granted with TTL(5s)"
    out.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected lease grant output: {out}"))
        .to_string()
}

/// `(granted TTL, remaining TTL)` from `etcdctl lease timetolive -w json`,
/// or `None` when the lease is gone (TTL -1).
fn time_to_live(c: &EtcdCluster, i: usize, id: &str) -> Result<Option<(i64, i64)>> {
    let o = c.etcdctl(i, &["lease", "timetolive", id, "-w", "json"]);
    if !o.success() {
        bail!("{}: {}", o.command, o.combined());
    }
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim())?;
    let ttl = v["ttl"].as_i64().unwrap_or(-1);
    if ttl < 0 {
        return Ok(None);
    }
    Ok(Some((v["granted-ttl"].as_i64().unwrap_or(0), ttl)))
}

#[test]
fn lease_kept_alive_through_follower_survives_leader_change_then_expires() -> Result<()> {
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    let leader = c.wait_for_leader(Duration::from_secs(10))?;
    let f1 = (leader + 1) % 3;
    let f2 = (leader + 2) % 3;

    // Granted through a follower, key attached through the other follower.
    let id = grant(&c, f1, 6);
    let lease_flag = format!("--lease={id}");
    assert_eq!(
        c.etcdctl(f2, &["put", "ls/k", "v", &lease_flag]).ok(),
        "OK\n"
    );
    // Keep-alives sent to a follower reach the leader: past the TTL the
    // lease is still there.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let o = c.etcdctl(f1, &["lease", "keep-alive", "--once", &id]);
        o.assert_success();
        std::thread::sleep(Duration::from_millis(1000));
    }
    for i in 0..3 {
        let (granted, left) = time_to_live(&c, i, &id)?.expect("lease alive");
        assert_eq!(granted, 6);
        assert!(left > 0 && left <= 6, "remaining TTL {left}");
        assert_eq!(c.get_value(i, "ls/k", "l")?.as_deref(), Some("v"));
    }

    // The leader dies; the lease survives on the new leader.
    c.kill9(leader)?;
    let new = c.wait_for_leader_among(&[f1, f2], Duration::from_secs(10))?;
    let (granted, left) = time_to_live(&c, new, &id)?.expect("lease survives the leader change");
    assert_eq!(granted, 6);
    assert!(left > 0, "remaining TTL {left}");
    assert_eq!(c.get_value(f1, "ls/k", "l")?.as_deref(), Some("v"));

    // Without keep-alives it expires, and the key goes with it everywhere.
    let t = Instant::now();
    poll(
        "lease expiry",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || match time_to_live(&c, f2, &id)? {
            None => Ok(()),
            Some(x) => bail!("lease still alive: {x:?}"),
        },
    )?;
    eprintln!("lease expired {:?} after the leader change", t.elapsed());
    c.restart(leader)?;
    for i in 0..3 {
        poll(
            "attached key deleted",
            Duration::from_secs(10),
            Duration::from_millis(200),
            || match c.get_value(i, "ls/k", "s")? {
                None => Ok(()),
                Some(v) => bail!("{} still has ls/k={v}", c.name(i)),
            },
        )?;
    }
    Ok(())
}

#[test]
fn move_leader_transfers_leadership() -> Result<()> {
    let c = EtcdCluster::start(ClusterOptions::new(3).tls(true))?;
    let leader = c.wait_for_leader(Duration::from_secs(10))?;
    let target = (leader + 1) % 3;
    let target_id = c.member_id(target)?;
    let term = c.status(leader)?.raft_term;
    // etcdctl sends MoveLeader to the leader among the given endpoints.
    let o = c.etcdctl_endpoints(
        leader,
        &c.endpoints(),
        &["move-leader", &format!("{target_id:x}")],
    );
    eprintln!("move-leader printed: {}", o.combined().trim());
    o.assert_success();
    assert!(
        o.stdout.contains("Leadership transferred from"),
        "{}",
        o.stdout
    );
    let now = c.wait_for_leader(Duration::from_secs(5))?;
    assert_eq!(now, target);
    assert!(c.status(target)?.raft_term > term);
    // A follower cannot be asked to move leadership.
    let o = c.etcdctl(
        (target + 1) % 3,
        &["move-leader", &format!("{:x}", c.member_id(leader)?)],
    );
    o.assert_failure();
    eprintln!("move-leader via a follower: {}", o.combined().trim());
    // Writes go on.
    assert_eq!(c.put(leader, "ml/after", "x").ok(), "OK\n");
    Ok(())
}
