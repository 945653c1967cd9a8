//! Membership changes on a running TLS cluster while a writer keeps writing:
//! `member add --learner`, start the new member with
//! `--initial-cluster-state existing`, promote it (refused while it lags),
//! remove an old member (which stops itself), `member update` of peer URLs.
//! Every acknowledged write is on every remaining member at the end. Learners are limited
//! by `--max-learners`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster, Writer};

const NOT_IN_SYNC: &str =
    "etcdserver: can only promote a learner member which is in sync with leader";

fn wait_has(
    c: &EtcdCluster,
    i: usize,
    prefix: &str,
    want: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    poll(
        &format!("{} has every acknowledged key", c.name(i)),
        timeout,
        Duration::from_millis(250),
        || {
            let (_, got) = c.get_prefix_serializable(i, prefix)?;
            let missing = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).count();
            if missing == 0 {
                Ok(())
            } else {
                bail!("{} lacks {missing} of {} keys", c.name(i), want.len())
            }
        },
    )
}

#[test]
fn add_learner_promote_remove_update_while_serving() -> Result<()> {
    let mut c = EtcdCluster::start(ClusterOptions::new(3).tls(true))?;
    let mut want = BTreeMap::new();
    for n in 0..5 {
        let (k, v) = (format!("mb/pre/{n}"), format!("p{n}"));
        assert_eq!(c.put(n % 3, &k, &v).ok(), "OK\n");
        want.insert(k, v);
    }
    let writer = Writer::start(c.ctl(0), (0..3).map(|i| c.client_url(i)).collect(), "mb/w/");
    writer.wait_progress(5, Duration::from_secs(10))?;

    // 1. member add --learner.
    let added = c.add_member(0, "m4", true)?;
    let m4 = added.index;
    eprintln!("member add printed:\n{}", added.output.trim());
    assert!(
        added
            .output
            .contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{}",
        added.output
    );
    assert!(
        added.output.contains("ETCD_NAME=\"m4\""),
        "{}",
        added.output
    );
    for i in 0..4 {
        let entry = format!("{}={}", c.name(i), c.peer_url(i));
        assert!(
            added.initial_cluster.split(',').any(|e| e == entry),
            "ETCD_INITIAL_CLUSTER {} lacks {entry}",
            added.initial_cluster
        );
    }
    assert!(added
        .flags
        .windows(2)
        .any(|w| w[0] == "--initial-cluster-state" && w[1] == "existing"));
    // Listed as an unstarted learner (no name, no client URLs yet).
    let list = c.member_list(1)?;
    assert_eq!(list.len(), 4, "{list:?}");
    let entry = list.iter().find(|m| m.id == added.id).expect("m4 listed");
    assert!(entry.is_learner, "{entry:?}");
    assert_eq!(entry.peer_urls, vec![c.peer_url(m4)]);
    assert!(
        entry.name.is_empty() && entry.client_urls.is_empty(),
        "{entry:?}"
    );
    let table = c.etcdctl(2, &["member", "list"]).ok();
    let row = format!("{:x}, unstarted, , {}, , true", added.id, c.peer_url(m4));
    assert!(table.lines().any(|l| l == row), "no {row:?} in\n{table}");

    // 2. A learner that has not started is not in sync: promote is refused.
    let hex = format!("{:x}", added.id);
    let o = c.etcdctl(0, &["member", "promote", &hex]);
    o.assert_failure();
    eprintln!(
        "promote before start: {}",
        o.error_line().unwrap_or_default()
    );
    assert!(o.combined().contains(NOT_IN_SYNC), "{}", o.combined());

    // 3. Start it with --initial-cluster-state existing; it gets the data.
    c.start_member(m4)?;
    wait_has(&c, m4, "mb/pre/", &want, Duration::from_secs(15))?;
    let st = c.status(m4)?;
    assert!(st.is_learner, "{st:?}");
    assert_eq!(st.member_id, added.id);
    // A learner refuses linearizable reads.
    let o = c.etcdctl(m4, &["get", "mb/pre/0"]);
    o.assert_failure();
    eprintln!(
        "linearizable get on learner: {}",
        o.error_line().unwrap_or_default()
    );
    assert!(
        o.combined()
            .contains("etcdserver: rpc not supported for learner"),
        "{}",
        o.combined()
    );
    // And writes: KV calls other than Range are refused before they reach the server.
    let o = c.etcdctl(m4, &["put", "mb/learner", "x"]);
    o.assert_failure();
    assert!(
        o.combined()
            .contains("etcdserver: rpc not supported for learner"),
        "{}",
        o.combined()
    );
    // It published its name and client URL.
    let list = c.member_list(0)?;
    let entry = list.iter().find(|m| m.id == added.id).expect("m4 listed");
    assert_eq!(entry.name, "m4");
    assert_eq!(entry.client_urls, vec![c.client_url(m4)]);

    // 4. Promote (retrying while it is not yet in sync).
    let started = Instant::now();
    let mut refusals = 0;
    poll(
        "member promote",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let o = c.etcdctl(0, &["member", "promote", &hex]);
            if o.success() {
                return Ok(o.stdout);
            }
            if !o.combined().contains(NOT_IN_SYNC) {
                panic!("promote failed unexpectedly:\n{}", o.combined());
            }
            refusals += 1;
            bail!("{}", o.combined().trim())
        },
    )?;
    eprintln!(
        "promoted after {:?} ({refusals} refusals)",
        started.elapsed()
    );
    let list = c.member_list(m4)?;
    assert!(
        list.iter().all(|m| !m.is_learner),
        "no learner left: {list:?}"
    );
    poll(
        "m4 healthy as a voter",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let o = c.etcdctl(m4, &["endpoint", "health"]);
            if o.success() {
                Ok(())
            } else {
                bail!("{}", o.combined())
            }
        },
    )?;
    writer.set_targets((0..4).map(|i| c.client_url(i)).collect());
    writer.wait_progress(5, Duration::from_secs(10))?;

    // 5. Remove an old member that is not the leader; it stops by itself.
    let leader = c.wait_for_leader(Duration::from_secs(10))?;
    let victim = (0..3).find(|&i| i != leader).expect("a follower");
    let keep: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    writer.set_targets(keep.iter().map(|&i| c.client_url(i)).collect());
    let victim_id = c.member_id(victim)?;
    let via = keep[0];
    let o = c.remove_member(via, victim, victim_id);
    eprintln!("member remove printed: {}", o.combined().trim());
    o.assert_success();
    // etcdctl 3.4 prints the id as `%16x`: space-padded when it has under 16 digits.
    assert!(o
        .stdout
        .contains(&format!("Member {victim_id:16x} removed")));
    let removed_at = Instant::now();
    let exit = c.wait_exit(victim, Duration::from_secs(15))?;
    eprintln!(
        "removed member {} exit: {exit:?} after {:?}",
        c.name(victim),
        removed_at.elapsed()
    );
    let status = exit.unwrap_or_else(|| {
        panic!(
            "removed member {} still runs 15 s after its removal\n{}",
            c.name(victim),
            c.log_tail(victim, 30)
        )
    });
    // etcd exits 0: a unit with Restart=on-failure does not bring it back.
    assert!(status.success(), "removed member exited with {status}");
    // Started again on its data dir (which recorded its removal), it stops at
    // once without serving, and exits 0 again.
    c.spawn(victim)?;
    let again = c.wait_exit(victim, Duration::from_secs(15))?;
    let again = again.unwrap_or_else(|| {
        panic!(
            "removed member {} runs again after a restart\n{}",
            c.name(victim),
            c.log_tail(victim, 30)
        )
    });
    assert!(
        again.success(),
        "restarted removed member exited with {again}"
    );
    assert!(
        c.log(victim)
            .contains("the member has been permanently removed from the cluster"),
        "{}",
        c.log_tail(victim, 30)
    );
    let list = c.member_list(via)?;
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|m| m.id != victim_id), "{list:?}");
    // Removing it again: member not found.
    let o = c.etcdctl(via, &["member", "remove", &format!("{victim_id:x}")]);
    o.assert_failure();
    eprintln!("second remove: {}", o.error_line().unwrap_or_default());
    assert!(
        o.combined().contains("etcdserver: member not found"),
        "{}",
        o.combined()
    );
    writer.wait_progress(10, Duration::from_secs(15))?;

    // 6. member update: give m4 a second peer URL.
    let extra = format!(
        "{}://127.0.0.1:{}",
        if c.ca().is_some() { "https" } else { "http" },
        etcd_tests::ports::free_port()
    );
    let urls = format!("{},{extra}", c.peer_url(m4));
    let o = c.etcdctl(
        via,
        &["member", "update", &hex, &format!("--peer-urls={urls}")],
    );
    eprintln!("member update printed: {}", o.combined().trim());
    o.assert_success();
    let list = c.member_list(m4)?;
    let entry = list.iter().find(|m| m.id == added.id).expect("m4 listed");
    let mut got = entry.peer_urls.clone();
    got.sort();
    let mut exp = vec![c.peer_url(m4), extra.clone()];
    exp.sort();
    assert_eq!(got, exp, "{entry:?}");
    writer.wait_progress(10, Duration::from_secs(15))?;

    // 7. Every acknowledged write is on every remaining member.
    let ledger = writer.stop();
    eprintln!(
        "writer: {} acknowledged, {} failed{}",
        ledger.acked.len(),
        ledger.failed.len(),
        ledger
            .failed
            .first()
            .map(|f| format!(" (first: {})", f.2))
            .unwrap_or_default()
    );
    want.extend(ledger.acked);
    for &i in &keep {
        wait_has(&c, i, "mb/", &want, Duration::from_secs(15))?;
    }
    let put = c.put(m4, "mb/final", "f");
    assert_eq!(put.ok(), "OK\n");
    for &i in &keep {
        assert_eq!(c.get_value(i, "mb/final", "l")?.as_deref(), Some("f"));
    }
    Ok(())
}

/// Learners the cluster may have at once: one by default (a second `member add --learner`
/// is refused with etcd's error and changes nothing), `--max-learners` more (3.6 flag).
#[test]
fn learners_are_limited_by_max_learners() -> Result<()> {
    use etcd_tests::ports::free_port;
    use etcd_tests::{EtcdOptions, EtcdProcess};
    const TOO_MANY: &str = "etcdserver: too many learner members in cluster";
    let add = |etcd: &EtcdProcess, name: &str| {
        let urls = format!("--peer-urls=http://127.0.0.1:{}", free_port());
        etcd.etcdctl(&["member", "add", name, "--learner", &urls])
    };
    let members = |etcd: &EtcdProcess| {
        etcd.etcdctl_json(&["member", "list", "-w", "json"])["members"]
            .as_array()
            .map_or(0, Vec::len)
    };

    let etcd = EtcdProcess::start(EtcdOptions::default())?;
    add(&etcd, "l1").assert_success();
    let second = add(&etcd, "l2");
    second.assert_failure();
    assert!(
        second.combined().contains(TOO_MANY),
        "{}",
        second.combined()
    );
    assert_eq!(members(&etcd), 2, "the refused learner was added");
    drop(etcd);

    etcd_tests::only_36!("--max-learners", {
        let etcd = EtcdProcess::start(EtcdOptions::default().arg("--max-learners=2"))?;
        add(&etcd, "l1").assert_success();
        add(&etcd, "l2").assert_success();
        let third = add(&etcd, "l3");
        assert!(third.combined().contains(TOO_MANY), "{}", third.combined());
        assert_eq!(members(&etcd), 3);
        etcd_tests::util::assert_acted_on(&etcd.stderr_log(), "--max-learners");
    });
    Ok(())
}
