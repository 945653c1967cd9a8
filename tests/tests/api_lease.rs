//! Lease API through etcd-client.

use std::time::Duration;

use etcd_client::{LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use etcd_tests::grpc::{assert_status, Code};
use etcd_tests::EtcdProcess;

const NOT_FOUND: &str = "etcdserver: requested lease not found";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_ttl_list_revoke() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;

    let g = c.lease_grant(60, None).await?;
    assert!(g.id() > 0);
    assert_eq!(g.ttl(), 60);
    assert_eq!(
        g.header().map(|h| h.revision()),
        Some(1),
        "grant does not write a revision"
    );

    // Explicit ID, and the same ID again.
    let g2 = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await?;
    assert_eq!((g2.id(), g2.ttl()), (0x1234, 30));
    assert_status(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    assert_status(
        c.lease_grant(9_000_000_001, None).await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );

    let mut ids: Vec<i64> = c.leases().await?.leases().iter().map(|l| l.id()).collect();
    ids.sort_unstable();
    let mut expected = vec![g.id(), 0x1234];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    c.put("a", "1", Some(PutOptions::new().with_lease(g.id())))
        .await?;
    c.put("b", "1", Some(PutOptions::new().with_lease(g.id())))
        .await?;
    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(t.id(), g.id());
    assert_eq!(t.granted_ttl(), 60);
    assert!((55..=60).contains(&t.ttl()), "remaining {}", t.ttl());
    let mut keys = t.keys().to_vec();
    keys.sort();
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    // Without the keys flag no keys are returned.
    let t = c.lease_time_to_live(g.id(), None).await?;
    assert!(t.keys().is_empty());

    // Re-attaching a key to another lease moves it.
    c.put("b", "2", Some(PutOptions::new().with_lease(0x1234)))
        .await?;
    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(t.keys(), [b"a".to_vec()]);
    // A put without a lease detaches the key from its lease.
    c.put("c", "1", Some(PutOptions::new().with_lease(g.id())))
        .await?;
    c.put("c", "2", None).await?;
    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(t.keys(), [b"a".to_vec()]);

    let rev_before = c.get("a", None).await?.header().map(|h| h.revision());
    c.lease_revoke(g.id()).await?;
    let r = c.get("a", None).await?;
    assert_eq!(r.count(), 0, "revocation deletes attached keys");
    assert_eq!(r.header().map(|h| h.revision()), rev_before.map(|r| r + 1));
    assert_eq!(
        c.get("b", None).await?.count(),
        1,
        "b moved to the other lease"
    );
    let r = c.get("c", None).await?;
    assert_eq!(r.count(), 1, "c was detached");
    assert_eq!(r.kvs()[0].lease(), 0);

    // Unknown leases.
    assert_status(c.lease_revoke(g.id()).await, Code::NotFound, NOT_FOUND);
    let t = c.lease_time_to_live(g.id(), None).await?;
    assert_eq!(t.ttl(), -1, "TimeToLive of an unknown lease is TTL -1");
    assert_status(
        c.put("z", "1", Some(PutOptions::new().with_lease(g.id())))
            .await,
        Code::NotFound,
        NOT_FOUND,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_ttl_is_enforced() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    // With the default 1 s election timeout the minimum TTL is 2 s.
    let g = c.lease_grant(1, None).await?;
    assert_eq!(g.ttl(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_renews_and_reports_unknown() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let g = c.lease_grant(5, None).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = c.lease_time_to_live(g.id(), None).await?.ttl();
    assert!(before <= 4, "time passed: remaining {before}");

    // etcd-client sends the first keep-alive itself and consumes its
    // response (failing if the TTL in it is not positive).
    let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await?;
    assert_eq!(keeper.id(), g.id());
    let after = c.lease_time_to_live(g.id(), None).await?.ttl();
    assert!(after >= 4, "renewed to the full TTL, remaining {after}");

    keeper.keep_alive().await?;
    let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await??
        .expect("keep-alive response");
    assert_eq!((r.id(), r.ttl()), (g.id(), 5));

    // Keep-alive for an unknown lease answers TTL 0, not an error.
    c.lease_revoke(g.id()).await?;
    keeper.keep_alive().await?;
    let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await??
        .expect("keep-alive response");
    assert_eq!((r.id(), r.ttl()), (g.id(), 0));
    // A fresh keep-alive stream for it: the first response has TTL 0, which
    // etcd-client turns into an error.
    match c.lease_keep_alive(g.id()).await {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert_eq!(m, "lease not found"),
        other => panic!("expected lease-not-found keep-alive error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_expiry_removes_lease_and_keys() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let g = c.lease_grant(2, None).await?;
    c.put("tmp", "1", Some(PutOptions::new().with_lease(g.id())))
        .await?;
    c.put("perm", "1", None).await?;
    let start = std::time::Instant::now();
    loop {
        if c.get("tmp", None).await?.count() == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(12),
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "expired too early"
    );
    assert_eq!(c.get("perm", None).await?.count(), 1);
    assert_eq!(c.lease_time_to_live(g.id(), None).await?.ttl(), -1);
    assert!(c.leases().await?.leases().is_empty());
    Ok(())
}
