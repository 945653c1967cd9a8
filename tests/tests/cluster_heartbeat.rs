//! A leader whose raft loop stalls longer than two heartbeat intervals (here its process
//! is stopped with SIGSTOP for 800 ms, as a slow disk or a starved CPU would stall it)
//! logs etcd's "leader failed to send out heartbeat on time; took too long, leader is
//! overloaded likely from slow disk" for each follower when it runs again, with etcd's
//! fields, and counts them in `etcd_server_heartbeat_send_failures_total`; a leader that
//! is not stalled reports nothing.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_tests::cluster::{poll, ClusterOptions, EtcdCluster};
use etcd_tests::http::metric;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WARNING: &str = "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk";

/// `etcd_server_heartbeat_send_failures_total` of member `i`.
fn failures(c: &EtcdCluster, i: usize) -> Result<u64> {
    Ok(metric(
        c.client_port(i),
        "etcd_server_heartbeat_send_failures_total",
    )? as u64)
}

#[test]
fn a_stalled_leader_reports_its_late_heartbeats() -> Result<()> {
    // An election timeout far above the stall: the followers keep their leader.
    let c = EtcdCluster::start(
        ClusterOptions::new(3)
            .arg("--heartbeat-interval=100")
            .arg("--election-timeout=5000"),
    )?;
    let leader = c.wait_for_leader(Duration::from_secs(15))?;
    // A loaded test machine may delay a heartbeat on its own: count from here.
    let before = failures(&c, leader)?;

    let pid = Pid::from_raw(c.pid(leader).context("leader pid")? as i32);
    kill(pid, Signal::SIGSTOP)?;
    std::thread::sleep(Duration::from_millis(800));
    kill(pid, Signal::SIGCONT)?;

    let followers: Vec<usize> = c.indexes().into_iter().filter(|&i| i != leader).collect();
    let ids: Vec<String> = followers
        .iter()
        .map(|&i| c.member_id(i).map(|id| format!("{id:x}")))
        .collect::<Result<_>>()?;
    let lines = poll(
        "late-heartbeat warnings for both followers",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let log = c.log(leader);
            let lines: Vec<String> = log
                .lines()
                .filter(|l| l.contains(WARNING))
                .map(str::to_string)
                .collect();
            for id in &ids {
                if !lines.iter().any(|l| l.contains(&format!(r#""to":"{id}""#))) {
                    bail!("no warning for {id} yet: {lines:#?}");
                }
            }
            Ok(lines)
        },
    )?;
    let first = &lines[0];
    assert!(first.contains(r#""level":"warn""#), "{first}");
    assert!(first.contains(r#""heartbeat-interval":"100ms""#), "{first}");
    assert!(first.contains(r#""expected-duration":"200ms""#), "{first}");
    assert!(first.contains(r#""exceeded-duration":""#), "{first}");
    assert!(failures(&c, leader)? >= before + 2);
    // A member that never led sent no heartbeat: nothing to report there.
    for &i in &followers {
        if !c.log(i).contains("raft: became leader") {
            assert_eq!(failures(&c, i)?, 0, "{}", c.log_tail(i, 20));
        }
    }
    assert_eq!(
        c.leader()?,
        leader,
        "the stall must not have cost the leadership"
    );
    Ok(())
}
