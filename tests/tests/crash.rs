//! Crash consistency: concurrent writers, `kill -9` mid-stream, restart on
//! the same data dir. Every acknowledged put must survive with its revision,
//! and the revision sequence must continue without a gap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use etcd_tests::util::key_of;
use etcd_tests::EtcdProcess;

const WRITERS: usize = 4;
const ROUNDS: usize = 2;
const PREFIX: &str = "crash/";

/// What the writers know: acknowledged puts (key -> (value, revision)) and
/// puts that were sent but not acknowledged (they may or may not be applied).
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, (String, i64)>,
    maybe: BTreeMap<String, String>,
}

async fn writer(
    mut client: Client,
    round: usize,
    id: usize,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{PREFIX}r{round}/w{id}/{n:08}");
        let value = format!("value-{round}-{id}-{n}");
        n += 1;
        let res = tokio::time::timeout(
            Duration::from_secs(3),
            client.put(key.clone(), value.clone(), None),
        )
        .await;
        let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(Ok(resp)) => {
                let rev = resp.header().map(|h| h.revision()).unwrap_or(-1);
                l.acked.insert(key, (value, rev));
            }
            // Error or timeout: the server is gone (or going); the put may
            // or may not have been applied. This writer stops.
            _ => {
                l.maybe.insert(key, value);
                return;
            }
        }
    }
}

/// Checks the store against the ledger; returns the current revision.
async fn verify(client: &mut Client, ledger: &Ledger) -> anyhow::Result<i64> {
    let r = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let current = r.header().map(|h| h.revision()).unwrap_or(-1);
    let mut present = BTreeMap::new();
    let mut revisions = BTreeSet::new();
    for kv in r.kvs() {
        let key = key_of(kv);
        let value = String::from_utf8_lossy(kv.value()).into_owned();
        // Every key is written exactly once, so it is its own generation.
        assert_eq!(kv.version(), 1, "{key} written once");
        assert_eq!(kv.create_revision(), kv.mod_revision(), "{key}");
        assert!(
            revisions.insert(kv.mod_revision()),
            "two keys share revision {}",
            kv.mod_revision()
        );
        present.insert(key, (value, kv.mod_revision()));
    }
    // 1. Every acknowledged put is there, with its value and revision.
    let mut lost = Vec::new();
    for (k, (v, rev)) in &ledger.acked {
        match present.get(k) {
            Some((pv, prev)) if pv == v && prev == rev => {}
            other => lost.push(format!("{k}: acked ({v}, rev {rev}), found {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged puts lost or changed, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // 2. Nothing appeared that nobody wrote.
    for (k, (v, _)) in &present {
        let known = ledger.acked.get(k).map(|a| &a.0) == Some(v) || ledger.maybe.get(k) == Some(v);
        assert!(known, "phantom key {k}={v}");
    }
    // 3. Only these puts were ever written, each made one revision, so the
    //    revisions present are exactly 2..=current: no gap, nothing extra.
    let max_acked = ledger.acked.values().map(|a| a.1).max().unwrap_or(1);
    assert!(
        current >= max_acked,
        "current revision {current} is behind acknowledged revision {max_acked}"
    );
    let expected: BTreeSet<i64> = (2..=current).collect();
    assert_eq!(
        revisions.len(),
        expected.len(),
        "revisions present do not cover 2..={current} exactly"
    );
    assert_eq!(revisions, expected, "revision gap or extra revision");
    Ok(current)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_kill9_keeps_acknowledged_writes_and_revisions() -> anyhow::Result<()> {
    let mut etcd = EtcdProcess::start_default()?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for id in 0..WRITERS {
            let client = etcd.client().await?;
            tasks.push(tokio::spawn(writer(
                client,
                round,
                id,
                Arc::clone(&stop),
                Arc::clone(&ledger),
            )));
        }
        // Let the writers get going, then pull the plug while they run.
        let start = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let acked = ledger.lock().unwrap_or_else(|e| e.into_inner()).acked.len();
            if acked >= (round + 1) * 200 || start.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        etcd.kill9()?;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t).await??;
        }
        let acked_now = ledger.lock().unwrap_or_else(|e| e.into_inner()).acked.len();
        assert!(
            acked_now >= (round + 1) * 50,
            "round {round}: too few acknowledged writes ({acked_now}) to test anything"
        );

        {
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "round {round}: {} acknowledged, {} in flight at the kill",
                l.acked.len(),
                l.maybe.len()
            );
        }
        etcd.restart()?;
        let mut client = etcd.client().await?;
        // All writers have finished; verify against a copy of the ledger so
        // no lock is held across an await.
        let snapshot = {
            let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            Ledger {
                acked: l.acked.clone(),
                maybe: l.maybe.clone(),
            }
        };
        let current = verify(&mut client, &snapshot).await?;
        eprintln!("round {round}: store at revision {current} after restart");
        // The next write continues the sequence directly.
        let marker = format!("{PREFIX}marker/{round}");
        let r = client.put(marker.clone(), "m", None).await?;
        assert_eq!(
            r.header().map(|h| h.revision()),
            Some(current + 1),
            "first write after restart"
        );
        ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .insert(marker, ("m".to_string(), current + 1));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_restart_keeps_everything() -> anyhow::Result<()> {
    let mut etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    for i in 0..50 {
        c.put(format!("g/{i:03}"), format!("{i}"), None).await?;
    }
    c.delete("g/000", None).await?; // rev 52
    let lease = c.lease_grant(600, None).await?.id();
    c.put(
        "g/leased",
        "x",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await?; // rev 53
    c.compact(10, None).await?;
    drop(c);

    etcd.sigterm()?;
    etcd.restart()?;
    let mut c = etcd.client().await?;
    let r = c.get("g/", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(r.count(), 50);
    assert_eq!(r.header().map(|h| h.revision()), Some(53));
    // History after the compaction point survives; before it is gone.
    let old = c
        .get("g/000", Some(GetOptions::new().with_revision(51)))
        .await?;
    assert_eq!(old.kvs().len(), 1);
    etcd_tests::grpc::assert_status(
        c.get("g/000", Some(GetOptions::new().with_revision(9)))
            .await,
        etcd_tests::grpc::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    // Leases survive a restart with their keys attached.
    let t = c
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await?;
    assert_eq!(t.granted_ttl(), 600);
    assert!(t.ttl() > 0);
    assert_eq!(t.keys(), [b"g/leased".to_vec()]);
    let r = c.put("g/next", "n", None).await?;
    assert_eq!(r.header().map(|h| h.revision()), Some(54));
    Ok(())
}
