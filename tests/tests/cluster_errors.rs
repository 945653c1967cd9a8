//! Errors a cluster returns as etcd returns them: a linearizable read whose
//! ReadIndex round went to a leader that stopped answering ends with
//! `etcdserver: leader changed` once another leader is elected.

use std::time::Duration;

use anyhow::{bail, Result};
use etcd_tests::cluster::{ClusterOptions, EtcdCluster};

fn signal(pid: u32, sig: &str) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    anyhow::ensure!(st.success(), "kill {sig} {pid}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_across_a_leader_change_fails_with_leader_changed() -> Result<()> {
    let c = tokio::task::spawn_blocking(|| EtcdCluster::start(ClusterOptions::new(3))).await??;
    assert_eq!(c.put(0, "k", "v").ok(), "OK\n");
    let leader = c.wait_for_leader(Duration::from_secs(10))?;
    let follower = (leader + 1) % 3;
    let mut client = c.client(&[follower]).await?;
    client.get("k", None).await?;
    let pid = c.pid(leader).expect("leader runs");
    // Freeze the leader: the follower's ReadIndex goes to it and is never answered;
    // the other two elect a new leader.
    signal(pid, "-STOP")?;
    let res = tokio::time::timeout(Duration::from_secs(20), client.get("k", None)).await;
    signal(pid, "-CONT")?;
    match res {
        Err(_) => bail!("the read neither failed nor finished within 20 s"),
        Ok(Ok(r)) => bail!("the read succeeded through a frozen leader: {r:?}"),
        Ok(Err(e)) => {
            let (code, msg) =
                etcd_tests::grpc::status_of(&e).unwrap_or_else(|| panic!("not a gRPC status: {e}"));
            assert_eq!(msg, "etcdserver: leader changed", "{code:?}");
            assert_eq!(code, tonic::Code::Unavailable);
        }
    }
    Ok(())
}
