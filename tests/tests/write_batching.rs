//! The write path batches: many concurrent writes share one synced raft-log write
//! (`etcd_disk_wal_fsync_duration_seconds_count` grows much slower than the number of
//! acknowledged writes), and every acknowledged write is readable afterwards. With
//! `--unsafe-no-fsync` the raft log is not synced at all (the counter does not move), and
//! acknowledged writes still survive a crash of the process.

use std::time::Duration;

use etcd_tests::{EtcdOptions, EtcdProcess};

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

/// Puts `n` keys under `prefix` one after another; returns how many raft log syncs the
/// server counted meanwhile.
async fn syncs_for_puts(etcd: &EtcdProcess, prefix: &str, n: usize) -> anyhow::Result<u64> {
    let mut client = etcd.client().await?;
    let before = fsync_count(&metrics(etcd).await?);
    for i in 0..n {
        client.put(format!("{prefix}{i:03}"), "x", None).await?;
    }
    Ok(fsync_count(&metrics(etcd).await?) - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_no_fsync_syncs_nothing_and_writes_survive_kill9() -> anyhow::Result<()> {
    const PUTS: usize = 40;
    let mut etcd = EtcdProcess::start(EtcdOptions::default().arg("--unsafe-no-fsync"))?;
    // etcd counts the sync that creates its log, before the flag takes effect: compare.
    let syncs = syncs_for_puts(&etcd, "nofsync/", PUTS).await?;
    assert_eq!(
        syncs, 0,
        "--unsafe-no-fsync: {syncs} raft log syncs for {PUTS} writes"
    );
    etcd_tests::util::assert_acted_on(&etcd.log_tail(usize::MAX), "--unsafe-no-fsync");
    // The writes are in the page cache: a process crash loses none of them.
    etcd.kill9()?;
    etcd.restart()?;
    let mut client = etcd.client().await?;
    let got = client
        .get(
            "nofsync/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    assert_eq!(
        got.kvs().len(),
        PUTS,
        "acknowledged writes lost after kill -9"
    );
    let rev = got.header().map(|h| h.revision()).unwrap_or(0);
    assert_eq!(
        rev,
        PUTS as i64 + 1,
        "revisions continue from the last write"
    );
    // And without the flag the same server syncs its writes.
    let mut synced = EtcdProcess::start_default()?;
    let syncs = syncs_for_puts(&synced, "synced/", PUTS).await?;
    assert!(
        syncs >= PUTS as u64,
        "{syncs} syncs: one per sequential write expected"
    );
    synced.sigterm()?;
    Ok(())
}
