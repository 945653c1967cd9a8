//! Watch through etcd-client on raw watch streams: several watchers per
//! stream, historical replay with prev_kv, filters, progress requests,
//! compaction cancel and explicit cancel.

use std::time::Duration;

use etcd_client::{EventType, WatchFilterType, WatchOptions, WatchResponse};
use etcd_tests::util::{current_revision, expect_no_watch, key_of, next_watch};
use etcd_tests::EtcdProcess;

const T: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn rev(r: &WatchResponse) -> i64 {
    r.header().map(|h| h.revision()).unwrap_or(-999)
}

/// `(type, key, value, mod_revision, prev value)` of every event.
fn events(r: &WatchResponse) -> Vec<(EventType, String, String, i64, Option<String>)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event kv");
            (
                e.event_type(),
                key_of(kv),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
                e.prev_kv()
                    .map(|p| String::from_utf8_lossy(p.value()).into_owned()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_on_one_stream() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("seed", "x", None).await?; // rev 2

    let mut s = c.watch("a", None).await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created() && !created.canceled());
    assert_eq!(created.watch_id(), 0, "IDs are assigned per stream from 0");
    assert_eq!(rev(&created), 2, "created header = current revision");
    assert!(created.events().is_empty());

    s.watch("b", Some(WatchOptions::new().with_prefix()))
        .await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created());
    assert_eq!(created.watch_id(), 1);
    s.watch("", Some(WatchOptions::new().with_all_keys()))
        .await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created());
    assert_eq!(created.watch_id(), 2);

    c.put("a", "1", None).await?; // rev 3: watchers 0 and 2
    c.put("b/1", "2", None).await?; // rev 4: watchers 1 and 2
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = next_watch(&mut s, T).await?;
        assert!(!r.created() && !r.canceled());
        for e in events(&r) {
            got.push((r.watch_id(), e.1, e.3));
        }
    }
    got.sort();
    assert_eq!(
        got,
        [
            (0, "a".to_string(), 3),
            (1, "b/1".to_string(), 4),
            (2, "a".to_string(), 3),
            (2, "b/1".to_string(), 4),
        ]
    );
    expect_no_watch(&mut s, QUIET).await?;

    // A second stream numbers its watchers from 0 again.
    let mut s2 = c.watch("z", None).await?;
    let created = next_watch(&mut s2, T).await?;
    assert_eq!((created.created(), created.watch_id()), (true, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_start_revision_with_prev_kv() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("k", "1", None).await?; // 2
    c.put("k", "2", None).await?; // 3
    c.delete("k", None).await?; // 4
    c.put("k", "3", None).await?; // 5
    c.put("other", "x", None).await?; // 6

    let opts = WatchOptions::new().with_start_revision(2).with_prev_key();
    let mut s = c.watch("k", Some(opts)).await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created());
    assert_eq!(rev(&created), 6);

    // Historical events may come in one or several responses; collect 4.
    let mut got = Vec::new();
    while got.len() < 4 {
        let r = next_watch(&mut s, T).await?;
        assert_eq!(r.watch_id(), 0);
        got.extend(events(&r));
    }
    use EventType::{Delete, Put};
    assert_eq!(
        got,
        [
            (Put, "k".into(), "1".into(), 2, None),
            (Put, "k".into(), "2".into(), 3, Some("1".into())),
            (Delete, "k".into(), "".into(), 4, Some("2".into())),
            (Put, "k".into(), "3".into(), 5, None),
        ]
    );
    // Live events keep carrying prev_kv.
    c.put("k", "4", None).await?; // 7
    let r = next_watch(&mut s, T).await?;
    assert_eq!(
        events(&r),
        [(Put, "k".into(), "4".into(), 7, Some("3".into()))]
    );
    assert_eq!(rev(&r), 7);
    let ev = &r.events()[0];
    let kv = ev.kv().expect("kv");
    assert_eq!((kv.create_revision(), kv.version()), (5, 2));

    // Delete events carry only key and mod_revision.
    c.delete("k", None).await?; // 8
    let r = next_watch(&mut s, T).await?;
    let kv = r.events()[0].kv().expect("kv");
    assert_eq!(r.events()[0].event_type(), Delete);
    assert_eq!(
        (
            kv.mod_revision(),
            kv.create_revision(),
            kv.version(),
            kv.value()
        ),
        (8, 0, 0, &b""[..])
    );
    // A live deletion carries the deleted value as prev_kv (read when it is sent).
    assert_eq!(
        r.events()[0]
            .prev_kv()
            .map(|p| (p.value(), p.mod_revision())),
        Some((&b"4"[..], 7))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_noput_nodelete() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let mut s = c
        .watch(
            "f/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_filters([WatchFilterType::NoPut]),
            ),
        )
        .await?;
    assert!(next_watch(&mut s, T).await?.created());
    s.watch(
        "f/",
        Some(
            WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoDelete]),
        ),
    )
    .await?;
    let created = next_watch(&mut s, T).await?;
    assert_eq!((created.created(), created.watch_id()), (true, 1));

    c.put("f/a", "1", None).await?; // 2
    c.delete("f/a", None).await?; // 3
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = next_watch(&mut s, T).await?;
        for e in events(&r) {
            got.push((r.watch_id(), e.0, e.3));
        }
    }
    got.sort_by_key(|g| g.0);
    assert_eq!(got, [(0, EventType::Delete, 3), (1, EventType::Put, 2)]);
    expect_no_watch(&mut s, QUIET).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_request() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    c.put("p", "1", None).await?; // 2
    let mut s = c.watch("p", None).await?;
    assert!(next_watch(&mut s, T).await?.created());
    s.watch("q", None).await?;
    assert!(next_watch(&mut s, T).await?.created());
    c.put("p", "2", None).await?; // 3
    let r = next_watch(&mut s, T).await?;
    assert_eq!(events(&r).len(), 1);
    c.put("unwatched", "x", None).await?; // 4

    // All watchers are caught up: the server answers with one response
    // that is not tied to a watcher (watch_id -1), no events, and the
    // current revision.
    s.request_progress().await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!(
        r.watch_id(),
        -1,
        "progress response uses watch_id -1: {r:?}"
    );
    assert!(r.events().is_empty());
    assert!(!r.created() && !r.canceled());
    assert_eq!(r.compact_revision(), 0);
    assert_eq!(rev(&r), 4);
    assert_eq!(rev(&r), current_revision(&mut c).await?);
    expect_no_watch(&mut s, QUIET).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_revision_cancels_watcher() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    for v in ["1", "2", "3", "4"] {
        c.put("c", v, None).await?; // 2..=5
    }
    c.compact(
        4,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await?;

    let mut s = c
        .watch("c", Some(WatchOptions::new().with_start_revision(2)))
        .await?;
    let first = next_watch(&mut s, T).await?;
    assert!(first.created(), "created response comes first: {first:?}");
    let r = next_watch(&mut s, T).await?;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.compact_revision(), 4);
    assert_eq!(r.watch_id(), first.watch_id());
    assert!(r.events().is_empty());

    // Starting exactly at the compaction revision works and replays it.
    s.watch("c", Some(WatchOptions::new().with_start_revision(4)))
        .await?;
    let created = next_watch(&mut s, T).await?;
    assert!(created.created() && !created.canceled());
    let mut revs = Vec::new();
    while revs.len() < 2 {
        let r = next_watch(&mut s, T).await?;
        assert_eq!(r.watch_id(), created.watch_id());
        revs.extend(events(&r).into_iter().map(|e| e.3));
    }
    assert_eq!(revs, [4, 5]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_events() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let mut s = c.watch("x", None).await?;
    assert!(next_watch(&mut s, T).await?.created());
    s.watch("y", None).await?;
    assert!(next_watch(&mut s, T).await?.created());

    s.cancel(0).await?;
    let r = next_watch(&mut s, T).await?;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), 0);
    assert!(r.events().is_empty());

    c.put("x", "1", None).await?;
    c.put("y", "1", None).await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!(r.watch_id(), 1, "only the remaining watcher reports");
    assert_eq!(events(&r)[0].1, "y");
    expect_no_watch(&mut s, QUIET).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_produces_delete_events() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let lease = c.lease_grant(2, None).await?.id();
    let with_lease = etcd_client::PutOptions::new().with_lease(lease);
    c.put("e/1", "a", Some(with_lease.clone())).await?; // 2
    c.put("e/2", "b", Some(with_lease)).await?; // 3
    let mut s = c
        .watch("e/", Some(WatchOptions::new().with_prefix()))
        .await?;
    assert!(next_watch(&mut s, T).await?.created());
    c.lease_revoke(lease).await?; // 4
    let r = next_watch(&mut s, T).await?;
    let evs = events(&r);
    assert_eq!(
        evs.iter()
            .map(|e| (e.0, e.1.as_str(), e.3))
            .collect::<Vec<_>>(),
        [(EventType::Delete, "e/1", 4), (EventType::Delete, "e/2", 4)],
        "one revision, keys in order, one response"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_errors_and_explicit_ids() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    // range_end <= key: the create fails inside a created+canceled response
    // with watch_id -1; the stream stays usable.
    let mut s = c
        .watch("b", Some(WatchOptions::new().with_range("a")))
        .await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!(
        (r.watch_id(), r.created(), r.canceled(), r.cancel_reason()),
        (-1, true, true, "mvcc: watcher range is empty")
    );
    assert_eq!(rev(&r), 1, "error responses carry a header too");

    // An explicit watch ID is used as given.
    s.watch("k", Some(WatchOptions::new().with_watch_id(7)))
        .await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!((r.watch_id(), r.created(), r.canceled()), (7, true, false));
    // Reusing it fails.
    s.watch("k", Some(WatchOptions::new().with_watch_id(7)))
        .await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!(
        (r.watch_id(), r.created(), r.canceled(), r.cancel_reason()),
        (
            -1,
            true,
            true,
            "mvcc: duplicate watch ID provided on the WatchStream"
        )
    );
    // Auto-assigned IDs still start at 0.
    s.watch("k", None).await?;
    let r = next_watch(&mut s, T).await?;
    assert_eq!((r.watch_id(), r.created(), r.canceled()), (0, true, false));

    c.put("k", "v", None).await?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(next_watch(&mut s, T).await?.watch_id());
    }
    ids.sort_unstable();
    assert_eq!(ids, [0, 7], "both live watchers on k report the put");

    // etcd 3.6 rejects a negative start revision (3.4 accepts it and
    // replays from the beginning).
    etcd_tests::only_36!("negative start_revision is rejected as compacted", {
        s.watch("k", Some(WatchOptions::new().with_start_revision(-1)))
            .await?;
        let r = next_watch(&mut s, T).await?;
        assert_eq!(
            (r.watch_id(), r.created(), r.canceled(), r.cancel_reason()),
            (
                -1,
                true,
                true,
                "etcdserver: mvcc: required revision has been compacted"
            )
        );
    });
    Ok(())
}

/// A range delete of many keys: one revision; the response counts every key; a watcher
/// with prev_kv gets each deleted value, one without gets none; the lease the keys were
/// attached to no longer lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_range_delete_events_and_prev_kv() -> anyhow::Result<()> {
    use etcd_client::{DeleteOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let lease = c.lease_grant(600, None).await?.id();
    const N: usize = 3000;
    for chunk in 0..N / 100 {
        let ops: Vec<TxnOp> = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                let opts = (n % 2 == 0).then(|| PutOptions::new().with_lease(lease));
                TxnOp::put(format!("big/{n:05}"), format!("v{n}"), opts)
            })
            .collect();
        c.txn(Txn::new().and_then(ops)).await?;
    }
    let leased = c
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(leased.keys().len(), N / 2);

    let mut with_prev = c
        .watch(
            "big/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await?;
    assert!(next_watch(&mut with_prev, T).await?.created());
    let mut bare = c
        .watch("big/", Some(WatchOptions::new().with_prefix()))
        .await?;
    assert!(next_watch(&mut bare, T).await?.created());

    let r = c
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    assert_eq!(r.deleted(), N as i64);
    assert!(r.prev_kvs().is_empty(), "prev_kvs only when asked for");
    let del_rev = r.header().expect("header").revision();

    let mut got = Vec::new();
    while got.len() < N {
        let r = next_watch(&mut with_prev, T).await?;
        got.extend(events(&r));
    }
    for (n, e) in got.iter().enumerate() {
        assert_eq!(
            (e.0, e.1.as_str(), e.3, e.4.as_deref()),
            (
                EventType::Delete,
                format!("big/{n:05}").as_str(),
                del_rev,
                Some(format!("v{n}").as_str())
            )
        );
    }
    let mut count = 0;
    while count < N {
        let r = next_watch(&mut bare, T).await?;
        assert!(r.events().iter().all(|e| e.prev_kv().is_none()));
        count += r.events().len();
    }
    assert_eq!(count, N);
    let leased = c
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert!(leased.keys().is_empty(), "deleted keys left the lease");
    Ok(())
}

/// A stream whose reader falls behind still gets every event of each of its watchers,
/// once and in revision order (prev_kv intact), and the events that waited are merged
/// into fewer responses (etcd batches a lagging watcher's events the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_gets_every_event_in_order_merged() -> anyhow::Result<()> {
    const PUTS: usize = 2000;
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    let start = current_revision(&mut c).await?;

    let mut s = c
        .watch("a", Some(WatchOptions::new().with_prev_key()))
        .await?;
    assert!(next_watch(&mut s, T).await?.created());
    s.watch("", Some(WatchOptions::new().with_all_keys()))
        .await?;
    assert!(next_watch(&mut s, T).await?.created());

    // Nobody reads `s` while these are written.
    let value = |i: usize| format!("{i:05}{}", "x".repeat(1019));
    for i in 0..PUTS {
        c.put("a", value(i), None).await?;
        if i == PUTS / 2 {
            c.put("b", "middle", None).await?;
        }
    }
    let last = current_revision(&mut c).await?;
    assert_eq!(last, start + PUTS as i64 + 1);

    let (mut a_events, mut all_events, mut responses) = (Vec::new(), Vec::new(), 0);
    while a_events.len() < PUTS || all_events.len() < PUTS + 1 {
        let r = next_watch(&mut s, T).await?;
        assert!(!r.canceled(), "{r:?}");
        responses += 1;
        match r.watch_id() {
            0 => a_events.extend(events(&r)),
            1 => all_events.extend(events(&r)),
            other => anyhow::bail!("unexpected watch id {other}"),
        }
    }
    assert_eq!(a_events.len(), PUTS, "no event twice");
    for (i, e) in a_events.iter().enumerate() {
        let rev = start + 1 + i as i64 + i64::from(i > PUTS / 2);
        assert_eq!((e.1.as_str(), e.3), ("a", rev), "event {i}");
        assert_eq!(e.2, value(i));
        assert_eq!(e.4, (i > 0).then(|| value(i - 1)), "prev_kv of event {i}");
    }
    let revs: Vec<i64> = all_events.iter().map(|e| e.3).collect();
    assert_eq!(revs, ((start + 1)..=last).collect::<Vec<_>>());
    assert!(all_events.iter().all(|e| e.4.is_none()), "no prev_kv asked");
    assert_eq!(all_events[PUTS / 2 + 1].1, "b");
    assert!(
        responses < 2 * PUTS,
        "{responses} responses for {} events: waiting events were not merged",
        2 * PUTS + 1
    );
    expect_no_watch(&mut s, QUIET).await?;
    Ok(())
}
