//! Disaster recovery after quorum loss: `--force-new-cluster` restarts the one surviving
//! member as a one-member cluster of its own data (same member ID, same cluster ID,
//! every write it had), which then takes writes and grows again with `member add`.

use std::time::Duration;

use anyhow::{bail, Result};
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster};

/// Waits until member `i` reads `key` = `value` from its own store.
fn wait_value(c: &EtcdCluster, i: usize, key: &str, value: &str) -> Result<()> {
    poll(
        &format!("{key} on {}", c.name(i)),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || match c.get_value(i, key, "s")? {
            Some(v) if v == value => Ok(()),
            other => bail!("{other:?}"),
        },
    )
}

/// Waits until member `i` knows a leader, after `what`.
fn wait_leader(c: &EtcdCluster, i: usize, what: &str) -> Result<()> {
    poll(
        &format!("a leader after {what}"),
        Duration::from_secs(10),
        Duration::from_millis(200),
        || match c.status(i)?.leader {
            0 => bail!("no leader yet"),
            _ => Ok(()),
        },
    )
}

#[test]
fn force_new_cluster_recovers_the_last_member_with_its_data() -> Result<()> {
    let mut c = EtcdCluster::start(ClusterOptions::new(3))?;
    for k in 0..20 {
        assert_eq!(
            c.put(0, &format!("r/{k:02}"), &format!("v{k}")).ok(),
            "OK\n"
        );
    }
    wait_value(&c, 2, "r/19", "v19")?;
    let before = c.status(2)?;

    // Two of three members are lost for good: no quorum.
    c.kill9(0)?;
    c.kill9(1)?;
    c.kill9(2)?;

    // The survivor restarts alone with --force-new-cluster.
    let mut flags = c.flags(2).to_vec();
    flags.push("--force-new-cluster".to_string());
    c.set_flags(2, flags.clone());
    c.start_member(2)?;
    etcd_tests::util::assert_acted_on(&c.log(2), "--force-new-cluster");
    let check_alone = |c: &EtcdCluster| -> Result<()> {
        let list = c.member_list(2)?;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].id, before.member_id);
        let after = c.status(2)?;
        assert_eq!(after.member_id, before.member_id);
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(after.leader, before.member_id, "it leads itself");
        assert!(after.raft_term >= before.raft_term);
        // Every write it had is there (linearizable reads: it has a quorum of one).
        for k in 0..20 {
            let v = c.get_value(2, &format!("r/{k:02}"), "l")?;
            assert_eq!(v, Some(format!("v{k}")), "r/{k:02}");
        }
        Ok(())
    };
    wait_leader(&c, 2, "the forced restart")?;
    check_alone(&c)?;
    assert_eq!(c.put(2, "r/after", "alone").ok(), "OK\n");

    // Restarted without the flag, it stays a one-member cluster with its data.
    flags.retain(|f| f != "--force-new-cluster");
    c.set_flags(2, flags);
    c.restart(2)?;
    wait_leader(&c, 2, "the plain restart")?;
    check_alone(&c)?;
    assert_eq!(c.get_value(2, "r/after", "l")?.as_deref(), Some("alone"));

    // It grows again: a new member with a fresh data dir joins and replicates.
    let added = c.add_member(2, "m4", false)?;
    c.start_member(added.index)?;
    assert_eq!(c.put(2, "r/grown", "two").ok(), "OK\n");
    wait_value(&c, added.index, "r/grown", "two")?;
    wait_value(&c, added.index, "r/00", "v0")?;
    assert_eq!(c.member_list(added.index)?.len(), 2);
    Ok(())
}
