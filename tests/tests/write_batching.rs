//! The write path batches: many concurrent writes share one synced raft-log write
//! (`etcd_disk_wal_fsync_duration_seconds_count` grows much slower than the number of
//! acknowledged writes), and every acknowledged write is readable afterwards.

use std::time::Duration;

use etcd_tests::EtcdProcess;

fn fsync_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("etcd_disk_wal_fsync_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no fsync counter in metrics"))
}

async fn metrics(etcd: &EtcdProcess) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(etcd.http_url("/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_fsyncs() -> anyhow::Result<()> {
    const WRITERS: usize = 64;
    const PUTS: usize = 25;
    let etcd = EtcdProcess::start_default()?;
    let client = etcd.client().await?;
    let before = fsync_count(&metrics(&etcd).await?);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PUTS {
                c.put(format!("w{w:02}/{i:03}"), "x", None).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let after = fsync_count(&metrics(&etcd).await?);
    let writes = (WRITERS * PUTS) as u64;
    let fsyncs = after - before;
    assert!(fsyncs > 0, "writes must be synced");
    assert!(
        fsyncs * 2 <= writes,
        "expected batching: {fsyncs} fsyncs for {writes} acknowledged writes"
    );
    let mut c = client.clone();
    let all = c
        .get(
            "w",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await?;
    assert_eq!(all.count() as u64, writes);
    Ok(())
}
