//! A linearizable read whose ReadIndex round the leader never answers (the leader and
//! the other follower are stopped with SIGSTOP) ends at the request timeout with etcd's
//! "request timed out", logs etcd's "timed out waiting for read index response (local
//! node might have slow network)" with the timeout, and counts in
//! `etcd_server_slow_read_indexes_total`; once the member knows it has no leader, a read
//! fails at once and counts in `etcd_server_read_indexes_failed_total`. Reads answered
//! in time count in neither.

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::Client;
use etcd_tests::cluster::{ClusterOptions, EtcdCluster};
use etcd_tests::http::metric;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WARNING: &str =
    "timed out waiting for read index response (local node might have slow network)";

fn counter(c: &EtcdCluster, i: usize, name: &str) -> Result<u64> {
    Ok(metric(c.client_port(i), name)? as u64)
}

/// A linearizable get of `k`: the error's message, or `None` on success.
fn get(rt: &tokio::runtime::Runtime, client: &mut Client) -> Option<String> {
    match rt.block_on(client.get("k", None)) {
        Ok(_) => None,
        Err(etcd_client::Error::GRpcStatus(s)) => Some(s.message().to_string()),
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn an_unanswered_read_index_times_out_with_etcds_warning_and_counters() -> Result<()> {
    // Request timeout: 5 s + 2 × the election timeout = 7 s.
    let c = EtcdCluster::start(ClusterOptions::new(3).arg("--election-timeout=1000"))?;
    let leader = c.wait_for_leader(Duration::from_secs(15))?;
    let follower = (0..3).find(|&i| i != leader).context("a follower")?;
    let other = (0..3)
        .find(|&i| i != leader && i != follower)
        .context("another follower")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A client deadline beyond the server's request timeout.
    let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(30));
    let mut client = rt.block_on(Client::connect([c.client_url(follower)], Some(opts)))?;

    // Answered reads count in neither counter.
    assert_eq!(get(&rt, &mut client), None);
    assert_eq!(
        counter(&c, follower, "etcd_server_slow_read_indexes_total")?,
        0
    );
    assert_eq!(
        counter(&c, follower, "etcd_server_read_indexes_failed_total")?,
        0
    );

    let stopped: Vec<Pid> = [leader, other]
        .iter()
        .map(|&i| c.pid(i).map(|p| Pid::from_raw(p as i32)).context("pid"))
        .collect::<Result<_>>()?;
    for &p in &stopped {
        kill(p, Signal::SIGSTOP)?;
    }
    // Sent while the follower still knows its leader: the round goes unanswered.
    let timed_out = get(&rt, &mut client);
    // By now (7 s later) the follower has given its leader up: no round can start.
    let no_leader = get(&rt, &mut client);
    for &p in &stopped {
        kill(p, Signal::SIGCONT)?;
    }

    assert_eq!(timed_out.as_deref(), Some("etcdserver: request timed out"));
    let log = c.log(follower);
    let line = log
        .lines()
        .find(|l| l.contains(WARNING))
        .with_context(|| c.log_tail(follower, 30))?;
    assert!(line.contains(r#""level":"warn""#), "{line}");
    assert!(line.contains(r#""timeout":"7s""#), "{line}");
    assert_eq!(
        counter(&c, follower, "etcd_server_slow_read_indexes_total")?,
        1
    );

    assert_eq!(no_leader.as_deref(), Some("etcdserver: no leader"));
    assert_eq!(
        counter(&c, follower, "etcd_server_read_indexes_failed_total")?,
        1
    );
    // Only the stopped round was slow.
    assert_eq!(log.matches(WARNING).count(), 1, "{log}");
    Ok(())
}
