//! KV API through etcd-client: range semantics (count/limit/more, sort,
//! revision filters), revisions, and error codes/messages.

use etcd_client::{CompactionOptions, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use etcd_tests::grpc::{Code, assert_status};
use etcd_tests::util::{current_revision, keys, pairs};
use etcd_tests::EtcdProcess;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

/// Puts `r/k0..r/k4` (revisions 2..=6), then `r/k1` again (revision 7) and
/// `s/x` (revision 8).
async fn seed(c: &mut etcd_client::Client) -> anyhow::Result<()> {
    for (i, v) in ["e", "c", "a", "d", "b"].iter().enumerate() {
        c.put(format!("r/k{i}"), *v, None).await?;
    }
    c.put("r/k1", "z", None).await?;
    c.put("s/x", "1", None).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_limit_more_and_count_only() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    seed(&mut c).await?;

    let r = c.get("r/", Some(GetOptions::new().with_prefix().with_limit(2))).await?;
    assert_eq!(keys(&r), ["r/k0", "r/k1"]);
    assert!(r.more());
    assert_eq!(r.count(), 5, "count is the size of the whole range");
    assert_eq!(r.header().map(|h| h.revision()), Some(8));

    let r = c.get("r/", Some(GetOptions::new().with_prefix().with_limit(5))).await?;
    assert_eq!(r.kvs().len(), 5);
    assert!(!r.more());
    assert_eq!(r.count(), 5);

    let r = c.get("r/", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(r.kvs().len(), 5);
    assert!(!r.more());

    let r = c.get("r/", Some(GetOptions::new().with_prefix().with_count_only())).await?;
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 5);
    assert!(!r.more());

    let r = c.get("r/", Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    assert_eq!(keys(&r), ["r/k0", "r/k1", "r/k2", "r/k3", "r/k4"]);
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));
    assert!(r.kvs().iter().all(|kv| kv.mod_revision() > 0 && kv.version() > 0));

    // "Continue" paging as kube-apiserver does: next key = last key + "\0".
    let r = c
        .get(
            "r/k1\0",
            Some(GetOptions::new().with_range("r0").with_limit(2)),
        )
        .await?;
    assert_eq!(keys(&r), ["r/k2", "r/k3"]);
    assert_eq!(r.count(), 3);
    assert!(r.more());

    // All keys / from-key.
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(r.count(), 6);
    let r = c.get("r/k3", Some(GetOptions::new().with_from_key())).await?;
    assert_eq!(keys(&r), ["r/k3", "r/k4", "s/x"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_targets_and_orders() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    seed(&mut c).await?;
    let sorted = |t: SortTarget, o: SortOrder| GetOptions::new().with_prefix().with_sort(t, o);

    let r = c.get("r/", Some(sorted(SortTarget::Key, SortOrder::Descend))).await?;
    assert_eq!(keys(&r), ["r/k4", "r/k3", "r/k2", "r/k1", "r/k0"]);
    // Values: k0=e k1=z k2=a k3=d k4=b.
    let r = c.get("r/", Some(sorted(SortTarget::Value, SortOrder::Ascend))).await?;
    assert_eq!(keys(&r), ["r/k2", "r/k4", "r/k3", "r/k0", "r/k1"]);
    // A non-key target with order NONE sorts ascending by that target.
    let r = c.get("r/", Some(sorted(SortTarget::Value, SortOrder::None))).await?;
    assert_eq!(keys(&r), ["r/k2", "r/k4", "r/k3", "r/k0", "r/k1"]);
    // Mod revisions: k0=2 k2=4 k3=5 k4=6 k1=7.
    let r = c.get("r/", Some(sorted(SortTarget::Mod, SortOrder::Descend))).await?;
    assert_eq!(keys(&r), ["r/k1", "r/k4", "r/k3", "r/k2", "r/k0"]);
    // Create revisions follow key order here.
    let r = c.get("r/", Some(sorted(SortTarget::Create, SortOrder::Descend))).await?;
    assert_eq!(keys(&r), ["r/k4", "r/k3", "r/k2", "r/k1", "r/k0"]);
    let r = c.get("r/", Some(sorted(SortTarget::Version, SortOrder::Descend))).await?;
    assert_eq!(keys(&r)[0], "r/k1");
    // Sorting happens before limiting; count still covers the range.
    let r = c
        .get("r/", Some(sorted(SortTarget::Mod, SortOrder::Descend).with_limit(2)))
        .await?;
    assert_eq!(keys(&r), ["r/k1", "r/k4"]);
    assert!(r.more());
    assert_eq!(r.count(), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_max_revision_filters() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    seed(&mut c).await?;
    let p = || GetOptions::new().with_prefix();
    // Mod revisions: k0=2 k1=7 k2=4 k3=5 k4=6; create: k0=2 k1=3 k2=4 k3=5 k4=6.
    let r = c.get("r/", Some(p().with_min_mod_revision(5))).await?;
    assert_eq!(keys(&r), ["r/k1", "r/k3", "r/k4"]);
    assert_eq!(r.count(), 5, "filters do not change count");
    let r = c.get("r/", Some(p().with_max_mod_revision(4))).await?;
    assert_eq!(keys(&r), ["r/k0", "r/k2"]);
    let r = c.get("r/", Some(p().with_min_create_revision(4))).await?;
    assert_eq!(keys(&r), ["r/k2", "r/k3", "r/k4"]);
    let r = c.get("r/", Some(p().with_max_create_revision(3))).await?;
    assert_eq!(keys(&r), ["r/k0", "r/k1"]);
    let r = c
        .get(
            "r/",
            Some(p().with_min_create_revision(3).with_max_mod_revision(5)),
        )
        .await?;
    assert_eq!(keys(&r), ["r/k2", "r/k3"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_put_delete_and_history() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    assert_eq!(current_revision(&mut c).await?, 1, "a fresh store is at revision 1");

    let r = c.put("a", "1", None).await?;
    assert_eq!(r.header().map(|h| h.revision()), Some(2));
    assert!(r.prev_key().is_none());
    let r = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await?;
    assert_eq!(r.header().map(|h| h.revision()), Some(3));
    let prev = r.prev_key().expect("prev kv");
    assert_eq!((prev.value(), prev.mod_revision(), prev.version()), (&b"1"[..], 2, 1));

    let r = c.get("a", None).await?;
    let kv = &r.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()),
        (2, 3, 2, 0)
    );
    // Reads at an old revision; the header still has the current revision.
    let r = c.get("a", Some(GetOptions::new().with_revision(2))).await?;
    assert_eq!(pairs(&r), [("a".to_string(), "1".to_string())]);
    assert_eq!(r.header().map(|h| h.revision()), Some(3));

    // Deleting nothing does not create a revision.
    let r = c.delete("nothing", None).await?;
    assert_eq!(r.deleted(), 0);
    assert_eq!(r.header().map(|h| h.revision()), Some(3));
    let r = c.delete("a", Some(DeleteOptions::new().with_prev_key())).await?;
    assert_eq!(r.deleted(), 1);
    assert_eq!(r.header().map(|h| h.revision()), Some(4));
    assert_eq!(r.prev_kvs().len(), 1);
    assert_eq!(r.prev_kvs()[0].value(), b"2");

    // Re-creation starts a new generation.
    c.put("a", "3", None).await?;
    let r = c.get("a", None).await?;
    let kv = &r.kvs()[0];
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (5, 5, 1));
    // The deleted generation is still visible in history.
    let r = c.get("a", Some(GetOptions::new().with_revision(4))).await?;
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_not_provided_and_revision_errors() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start_default()?;
    let mut c = etcd.client().await?;
    const NO_KEY: &str = "etcdserver: key is not provided";
    assert_status(c.get("", None).await, Code::InvalidArgument, NO_KEY);
    assert_status(c.put("", "v", None).await, Code::InvalidArgument, NO_KEY);
    assert_status(c.delete("", None).await, Code::InvalidArgument, NO_KEY);

    for v in ["1", "2", "3", "4"] {
        c.put("k", v, None).await?; // revisions 2..=5
    }
    assert_status(
        c.get("k", Some(GetOptions::new().with_revision(6))).await,
        Code::OutOfRange,
        FUTURE,
    );
    assert_status(c.compact(6, None).await, Code::OutOfRange, FUTURE);

    let r = c.compact(4, Some(CompactionOptions::new().with_physical())).await?;
    assert_eq!(r.header().map(|h| h.revision()), Some(5));
    assert_status(
        c.get("k", Some(GetOptions::new().with_revision(3))).await,
        Code::OutOfRange,
        COMPACTED,
    );
    // Exactly the compaction revision is still readable.
    let r = c.get("k", Some(GetOptions::new().with_revision(4))).await?;
    assert_eq!(pairs(&r), [("k".to_string(), "3".to_string())]);
    assert_status(c.compact(4, None).await, Code::OutOfRange, COMPACTED);
    assert_status(c.compact(2, None).await, Code::OutOfRange, COMPACTED);

    // ignore_value on an absent key.
    assert_status(
        c.put("absent", "", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    // ignore_value keeps the value, replaces nothing else.
    c.put("k", "", Some(PutOptions::new().with_ignore_value())).await?;
    let r = c.get("k", None).await?;
    assert_eq!(r.kvs()[0].value(), b"4");
    assert_eq!(r.kvs()[0].version(), 5);

    // Unknown lease on put.
    assert_status(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x1234))).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    Ok(())
}
