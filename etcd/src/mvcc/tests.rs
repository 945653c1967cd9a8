//! Store-level tests: writes, reads, events, compaction and restart.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::{Cf, Durability, Storage};

use super::*;

pub(super) fn open(dir: &Path) -> Store {
    Store::open(Storage::open(dir).unwrap()).unwrap()
}

/// Runs `f` in a write txn, writes the batch, publishes; returns the events.
pub(super) fn commit(s: &Store, f: impl FnOnce(&mut WriteTxn<'_>)) -> Vec<Event> {
    let mut txn = s.write();
    f(&mut txn);
    let mut batch = s.storage().batch();
    let pending = txn.finish(&mut batch);
    s.storage().write(batch, Durability::Unlogged).unwrap();
    s.publish(pending)
}

pub(super) fn put(s: &Store, key: &str, value: &str) -> i64 {
    put_lease(s, key, value, 0)
}

pub(super) fn put_lease(s: &Store, key: &str, value: &str, lease: i64) -> i64 {
    commit(s, |t| {
        t.put(key.as_bytes(), value.as_bytes().to_vec(), lease)
            .unwrap();
    });
    s.current_revision()
}

pub(super) fn del(s: &Store, key: &str, end: &str) -> usize {
    let mut n = 0;
    commit(s, |t| {
        n = t
            .delete_range(key.as_bytes(), end.as_bytes(), false)
            .unwrap()
            .keys
            .len()
    });
    n
}

pub(super) fn compact(s: &Store, rev: i64) -> Result<(), MvccError> {
    let mut batch = s.storage().batch();
    s.compact(rev, &mut batch)?;
    s.storage().write(batch, Durability::Unlogged).unwrap();
    Ok(())
}

pub(super) fn req(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..RangeRequest::default()
    }
}

pub(super) fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn get(s: &Store, key: &str, rev: i64) -> Option<KeyValue> {
    let mut r = req(key, "");
    r.revision = rev;
    s.range(&r).unwrap().kvs.into_iter().next()
}

/// (create, mod, version) of a kv.
fn cmv(kv: &KeyValue) -> (i64, i64, i64) {
    (kv.create_revision, kv.mod_revision, kv.version)
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<WriteTxn<'static>>();
    check::<PendingWrite<'static>>();
}

#[test]
fn fresh_store_is_at_revision_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.key_count(), 0);
    let r = s.range(&req("\0", "\0")).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more, r.revision), (0, 0, false, 1));
    assert_eq!(put(&s, "a", "1"), 2, "first write makes revision 2");
}

#[test]
fn revisions_and_versions_across_put_delete_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put_lease(&s, "a", "3", 7); // 4
    let kv = get(&s, "a", 0).unwrap();
    assert_eq!(cmv(&kv), (2, 4, 3));
    assert_eq!((&kv.value[..], kv.lease), (&b"3"[..], 7));
    assert_eq!(del(&s, "a", ""), 1); // 5
    assert_eq!(s.current_revision(), 5);
    assert!(get(&s, "a", 0).is_none());
    assert_eq!(s.key_count(), 0);
    put(&s, "a", "new"); // 6
    let kv = get(&s, "a", 0).unwrap();
    assert_eq!(
        cmv(&kv),
        (6, 6, 1),
        "re-created key starts a new generation"
    );
    assert_eq!(kv.lease, 0);
    // Old revisions still readable.
    assert_eq!(cmv(&get(&s, "a", 3).unwrap()), (2, 3, 2));
    assert!(get(&s, "a", 5).is_none());
    assert!(get(&s, "a", 1).is_none());
    assert_eq!(s.key_count(), 1);
}

#[test]
fn writes_that_change_nothing_keep_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "a", "1");
    assert_eq!(del(&s, "zzz", ""), 0);
    assert_eq!(s.current_revision(), 2);
    let mut txn = s.write();
    assert_eq!(txn.revision(), 3);
    assert!(txn.delete_range(b"x", b"y", true).unwrap().keys.is_empty());
    assert!(!txn.changed());
    let mut batch = s.storage().batch();
    let pending = txn.finish(&mut batch);
    assert!(batch.is_empty());
    assert_eq!(pending.revision(), None);
    assert!(s.publish(pending).is_empty());
    assert_eq!(s.current_revision(), 2);
    assert_eq!(put(&s, "b", "1"), 3);
}

/// Keys a..e with distinct create/mod revisions and versions:
/// a: create 2, mod 7, ver 2, value "z"
/// b: create 3, mod 3, ver 1, value "y"
/// c: create 4, mod 8, ver 3, value "x"
/// d: create 5, mod 5, ver 1, value "w"
/// e: create 6, mod 6, ver 1, value "v", then deleted at 9 (gone)
/// Current revision 9.
fn range_fixture(s: &Store) {
    put(s, "a", "a0"); // 2
    put(s, "b", "y"); // 3
    put(s, "c", "c0"); // 4
    put(s, "d", "w"); // 5
    put(s, "e", "v"); // 6
    put(s, "a", "z"); // 7
    commit(s, |t| {
        t.put(b"c", b"c1".to_vec(), 0).unwrap();
        t.put(b"c", b"x".to_vec(), 0).unwrap();
    }); // 8
    del(s, "e", ""); // 9
}

#[test]
fn range_limit_more_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    range_fixture(&s);
    assert_eq!(s.current_revision(), 9);
    let r = s.range(&req("a", "z")).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b", "c", "d"]);
    assert_eq!((r.count, r.more, r.revision), (4, false, 9));
    let mut q = req("a", "z");
    q.limit = 2;
    let r = s.range(&q).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b"]);
    assert_eq!((r.count, r.more), (4, true));
    q.limit = 4;
    let r = s.range(&q).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (4, 4, false));
    q.limit = 100;
    assert!(!s.range(&q).unwrap().more);
    // count_only
    let mut q = req("b", "d");
    q.count_only = true;
    let r = s.range(&q).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more, r.revision), (0, 2, false, 9));
    // keys_only keeps everything but the value
    let mut q = req("c", "");
    q.keys_only = true;
    let r = s.range(&q).unwrap();
    assert_eq!(keys(&r.kvs), ["c"]);
    assert!(r.kvs[0].value.is_empty());
    assert_eq!(cmv(&r.kvs[0]), (4, 8, 3));
}

#[test]
fn range_key_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for k in ["a", "ab", "abc", "b", "ba", "c"] {
        put(&s, k, "v");
    }
    let k = |key: &str, end: &str| keys(&s.range(&req(key, end)).unwrap().kvs);
    assert_eq!(k("ab", ""), ["ab"]);
    assert_eq!(k("zz", ""), Vec::<String>::new());
    assert_eq!(k("ab", "ac"), ["ab", "abc"], "prefix");
    assert_eq!(k("b", "\0"), ["b", "ba", "c"], "from key");
    assert_eq!(
        k("\0", "\0"),
        ["a", "ab", "abc", "b", "ba", "c"],
        "all keys"
    );
    assert_eq!(k("b", "a"), Vec::<String>::new(), "inverted range is empty");
    assert_eq!(k("b", "b"), Vec::<String>::new());
    let mut q = req("b", "a");
    q.count_only = true;
    assert_eq!(s.range(&q).unwrap().count, 0);
}

#[test]
fn range_sorting() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    range_fixture(&s);
    let sorted = |target: SortTarget, order: SortOrder, limit: i64| {
        let mut q = req("\0", "\0");
        q.sort_target = target as i32;
        q.sort_order = order as i32;
        q.limit = limit;
        let r = s.range(&q).unwrap();
        (keys(&r.kvs), r.more, r.count)
    };
    use SortOrder::*;
    use SortTarget::*;
    let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(sorted(Key, None, 0).0, k(&["a", "b", "c", "d"]));
    assert_eq!(sorted(Key, Ascend, 0).0, k(&["a", "b", "c", "d"]));
    assert_eq!(sorted(Key, Descend, 0).0, k(&["d", "c", "b", "a"]));
    // Target other than KEY with order NONE sorts ascending by the target.
    assert_eq!(sorted(Mod, None, 0).0, k(&["b", "d", "a", "c"]));
    assert_eq!(sorted(Mod, Ascend, 0).0, k(&["b", "d", "a", "c"]));
    assert_eq!(sorted(Mod, Descend, 0).0, k(&["c", "a", "d", "b"]));
    assert_eq!(sorted(Create, Descend, 0).0, k(&["d", "c", "b", "a"]));
    assert_eq!(sorted(Create, None, 0).0, k(&["a", "b", "c", "d"]));
    assert_eq!(sorted(Value, Ascend, 0).0, k(&["d", "c", "b", "a"]));
    assert_eq!(sorted(Value, Descend, 0).0, k(&["a", "b", "c", "d"]));
    // Version ties (b, d at 1) stay in key order.
    assert_eq!(sorted(Version, Ascend, 0).0, k(&["b", "d", "a", "c"]));
    assert_eq!(sorted(Version, Descend, 0).0, k(&["c", "a", "b", "d"]));
    // Sorting fetches everything, then limits.
    assert_eq!(sorted(Key, Descend, 2), (k(&["d", "c"]), true, 4));
    assert_eq!(sorted(Mod, Descend, 1), (k(&["c"]), true, 4));
    // Unknown enum values are rejected.
    let mut q = req("a", "");
    q.sort_order = 9;
    assert!(matches!(s.range(&q), Err(MvccError::InvalidSortOption)));
    let mut q = req("a", "");
    q.sort_target = 9;
    assert!(matches!(s.range(&q), Err(MvccError::InvalidSortOption)));
}

#[test]
fn range_filters_do_not_change_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    range_fixture(&s);
    let run = |f: &dyn Fn(&mut RangeRequest)| {
        let mut q = req("\0", "\0");
        f(&mut q);
        let r = s.range(&q).unwrap();
        (keys(&r.kvs), r.more, r.count)
    };
    let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(run(&|q| q.min_mod_revision = 6), (k(&["a", "c"]), false, 4));
    assert_eq!(run(&|q| q.max_mod_revision = 5), (k(&["b", "d"]), false, 4));
    assert_eq!(
        run(&|q| q.min_create_revision = 4),
        (k(&["c", "d"]), false, 4)
    );
    assert_eq!(
        run(&|q| q.max_create_revision = 3),
        (k(&["a", "b"]), false, 4)
    );
    assert_eq!(
        run(&|q| {
            q.min_create_revision = 3;
            q.max_mod_revision = 7;
        }),
        (k(&["b", "d"]), false, 4)
    );
    // Filters fetch everything before limiting.
    assert_eq!(
        run(&|q| {
            q.min_mod_revision = 3;
            q.limit = 2;
        }),
        (k(&["a", "b"]), true, 4)
    );
    assert_eq!(
        run(&|q| {
            q.min_mod_revision = 8;
            q.limit = 1;
        }),
        (k(&["c"]), false, 4)
    );
}

#[test]
fn range_at_old_revisions_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    range_fixture(&s);
    let at = |rev: i64| {
        let mut q = req("\0", "\0");
        q.revision = rev;
        s.range(&q)
    };
    let r = at(6).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b", "c", "d", "e"]);
    assert_eq!(r.revision, 9, "header revision is the current one");
    assert_eq!(r.kvs[0].value, &b"a0"[..]);
    assert_eq!(at(1).unwrap().count, 0);
    assert_eq!(keys(&at(3).unwrap().kvs), ["a", "b"]);
    assert!(at(9).is_ok());
    let e = at(10).unwrap_err();
    assert!(matches!(e, MvccError::FutureRevision));
    assert_eq!(
        e.to_string(),
        "mvcc: required revision is a future revision"
    );
    compact(&s, 5).unwrap();
    let e = at(4).unwrap_err();
    assert!(matches!(e, MvccError::Compacted));
    assert_eq!(e.to_string(), "mvcc: required revision has been compacted");
    let r = at(5).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b", "c", "d"]);
    assert_eq!(r.kvs[0].value, &b"a0"[..]);
    assert_eq!(r.kvs[2].value, &b"c0"[..]);
}

#[test]
fn write_txn_sees_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    let mut t = s.write();
    assert_eq!(t.revision(), 4);
    // Before any change, the txn's current revision is the store's.
    let r = t.range(&req("\0", "\0")).unwrap();
    assert_eq!((r.count, r.revision), (2, 3));
    let mut q = req("a", "");
    q.revision = 4;
    assert!(matches!(t.range(&q), Err(MvccError::FutureRevision)));

    let prev = t.put(b"a", b"2".to_vec(), 0).unwrap().unwrap();
    assert_eq!(cmv(&prev), (2, 2, 1));
    let prev = t.put(b"a", b"3".to_vec(), 5).unwrap().unwrap();
    assert_eq!(prev.value, &b"2"[..], "second put sees the first");
    assert_eq!(cmv(&prev), (2, 4, 2));
    let now = t.get(b"a").unwrap().unwrap();
    assert_eq!(
        (cmv(&now), now.lease),
        ((2, 4, 3), 5),
        "version increments twice"
    );
    assert!(t.put(b"c", b"1".to_vec(), 0).unwrap().is_none());
    let r = t.range(&req("\0", "\0")).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b", "c"]);
    assert_eq!((r.count, r.revision), (3, 4));
    assert_eq!(r.kvs[0].value, &b"3"[..]);
    // Reading at the new revision is allowed, at the previous one shows published data.
    let mut q = req("\0", "\0");
    q.revision = 4;
    assert_eq!(t.range(&q).unwrap().count, 3);
    q.revision = 3;
    let r = t.range(&q).unwrap();
    assert_eq!(
        (keys(&r.kvs), r.revision),
        (vec!["a".to_string(), "b".to_string()], 4)
    );
    assert_eq!(r.kvs[0].value, &b"1"[..]);
    q.revision = 5;
    assert!(matches!(t.range(&q), Err(MvccError::FutureRevision)));
    // limit / count over the merged view
    let mut q = req("\0", "\0");
    q.limit = 1;
    let r = t.range(&q).unwrap();
    assert_eq!(
        (keys(&r.kvs), r.more, r.count),
        (vec!["a".to_string()], true, 3)
    );
    // Delete sees own puts; later reads see the delete.
    let deleted = t.delete_range(b"b", b"\0", true).unwrap();
    assert_eq!(keys(&deleted.prev_kvs), ["b", "c"]);
    assert_eq!(deleted.keys, [b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(deleted.prev_kvs[1].value, &b"1"[..]);
    assert!(t.get(b"c").unwrap().is_none());
    assert_eq!(keys(&t.range(&req("\0", "\0")).unwrap().kvs), ["a"]);
    // Re-create a deleted key in the same txn: new generation at this revision.
    t.put(b"b", b"again".to_vec(), 0).unwrap();
    assert_eq!(cmv(&t.get(b"b").unwrap().unwrap()), (4, 4, 1));
    // Nothing is visible outside before publish.
    assert_eq!(s.range(&req("\0", "\0")).unwrap().count, 2);
    assert_eq!(s.current_revision(), 3);
    let mut batch = s.storage().batch();
    let pending = t.finish(&mut batch);
    assert_eq!(pending.revision(), Some(4));
    s.storage().write(batch, Durability::Unlogged).unwrap();
    let events = s.publish(pending);
    assert_eq!(events.len(), 6);
    assert_eq!(s.current_revision(), 4);
    let r = s.range(&req("\0", "\0")).unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b"]);
    assert_eq!(cmv(&r.kvs[0]), (2, 4, 3));
    assert_eq!(cmv(&r.kvs[1]), (4, 4, 1));
}

fn ev(e: &Event) -> (EventType, String, i64, Option<(String, i64)>) {
    let kv = e.kv.clone().unwrap();
    (
        EventType::try_from(e.r#type).unwrap(),
        String::from_utf8_lossy(&kv.key).into_owned(),
        kv.mod_revision,
        e.prev_kv.as_ref().map(|p| {
            (
                String::from_utf8_lossy(&p.value).into_owned(),
                p.mod_revision,
            )
        }),
    )
}

#[test]
fn published_events_and_prev_kv() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let e = commit(&s, |t| {
        t.put(b"a", b"1".to_vec(), 0).unwrap();
    });
    assert_eq!(
        e.iter().map(ev).collect::<Vec<_>>(),
        [(EventType::Put, "a".into(), 2, None)]
    );
    assert_eq!(cmv(e[0].kv.as_ref().unwrap()), (2, 2, 1));
    let mut e = commit(&s, |t| {
        t.put(b"a", b"2".to_vec(), 0).unwrap();
    });
    // Puts are published without prev_kv too; it is read on demand (watchers).
    assert_eq!(ev(&e[0]).3, None);
    fill_prevs(&s, &mut e);
    assert_eq!(ev(&e[0]).3, Some(("1".into(), 2)));
    let e = commit(&s, |t| {
        t.delete_range(b"a", b"", false).unwrap();
    });
    // A deletion is published without prev_kv; it is read on demand (watchers).
    assert_eq!(ev(&e[0]), (EventType::Delete, "a".into(), 4, None));
    let prev = s.prev_kv(b"a", 4).unwrap().unwrap();
    assert_eq!((&prev.value[..], prev.mod_revision), (&b"2"[..], 3));
    assert_eq!(s.prev_kv(b"a", 2).unwrap(), None, "no a at revision 1");
    let kv = e[0].kv.as_ref().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version, kv.value.len(), kv.lease),
        (0, 0, 0, 0)
    );
    // Several changes in one txn, in sub-revision order. prev_kv is the key before the
    // txn (what a read at mod_revision - 1 returns); creations have none.
    put(&s, "x", "x1"); // 5
    let mut e = commit(&s, |t| {
        t.put(b"x", b"x2".to_vec(), 0).unwrap();
        t.put(b"x", b"x3".to_vec(), 0).unwrap();
        t.put(b"n", b"n1".to_vec(), 0).unwrap();
        t.put(b"n", b"n2".to_vec(), 0).unwrap();
        t.delete_range(b"n", b"", false).unwrap();
    }); // 6
    fill_prevs(&s, &mut e);
    assert_eq!(
        e.iter().map(ev).collect::<Vec<_>>(),
        [
            (EventType::Put, "x".into(), 6, Some(("x1".into(), 5))),
            (EventType::Put, "x".into(), 6, Some(("x1".into(), 5))),
            (EventType::Put, "n".into(), 6, None),
            (EventType::Put, "n".into(), 6, None),
            (EventType::Delete, "n".into(), 6, None),
        ]
    );
    assert_eq!(cmv(e[1].kv.as_ref().unwrap()), (5, 6, 3));
}

/// [`commit`], then the events' prev_kv filled as the watch hub does right after publishing.
fn commit_filled(s: &Store, f: impl FnOnce(&mut WriteTxn<'_>)) -> Vec<Event> {
    let mut e = commit(s, f);
    fill_prevs(s, &mut e);
    e
}

/// Writes the same history through `put` (reads the previous record) or `put_unread`
/// (index only) and returns every published event and the final kvs.
fn history_written_with(unread: bool) -> (Vec<Event>, Vec<KeyValue>) {
    let dir = tempfile::tempdir().unwrap();
    let w = |t: &mut WriteTxn<'_>, k: &[u8], v: &[u8], lease: i64| {
        if unread {
            t.put_unread(k, v.to_vec(), lease);
        } else {
            t.put(k, v.to_vec(), lease).unwrap();
        }
    };
    let mut all = Vec::new();
    let s = open(dir.path());
    all.extend(commit_filled(&s, |t| w(t, b"a", b"1", 0))); // 2
    all.extend(commit_filled(&s, |t| w(t, b"a", b"2", 7))); // 3
    all.extend(commit_filled(&s, |t| {
        w(t, b"a", b"3", 0);
        w(t, b"a", b"4", 0);
        w(t, b"b", b"1", 0);
    })); // 4
    compact(&s, 4).unwrap();
    all.extend(commit_filled(&s, |t| w(t, b"a", b"5", 0))); // 5
    all.extend(commit_filled(&s, |t| {
        t.delete_range(b"a", b"", false).unwrap();
    })); // 6
    all.extend(commit_filled(&s, |t| w(t, b"a", b"6", 0))); // 7
    all.extend(commit_filled(&s, |t| {
        t.delete_range(b"b", b"", false).unwrap();
        w(t, b"b", b"2", 0);
        w(t, b"b", b"3", 0);
    })); // 8
    drop(s);
    // Reopened: the index restored from disk gives the same versions.
    let s = open(dir.path());
    all.extend(commit_filled(&s, |t| {
        w(t, b"a", b"7", 0);
        w(t, b"b", b"4", 0);
    })); // 9
    let kvs = s.range(&req("\0", "\0")).unwrap().kvs;
    (all, kvs)
}

#[test]
fn a_put_without_reading_the_previous_value_writes_the_same_history() {
    let (read, read_kvs) = history_written_with(false);
    let (unread, unread_kvs) = history_written_with(true);
    assert_eq!(unread, read);
    assert_eq!(unread_kvs, read_kvs);
    assert_eq!(keys(&read_kvs), ["a", "b"]);
    assert_eq!(
        cmv(&read_kvs[0]),
        (7, 9, 2),
        "a re-created at 7, updated at 9"
    );
    assert_eq!(
        cmv(&read_kvs[1]),
        (8, 9, 3),
        "b re-created and updated twice"
    );
    // Updates carry the value before their revision once filled.
    assert_eq!(read.len(), 13);
    assert_eq!(ev(&read[1]).3, Some(("1".into(), 2)));
    assert_eq!(ev(&read[4]).3, None, "b created");
    assert_eq!(ev(&read[5]).3, Some(("4".into(), 4)));
}

/// Fills the prev_kv of published events the way the watch hub does.
fn fill_prevs(s: &Store, events: &mut [Event]) {
    for e in events {
        let kv = e.kv.as_ref().unwrap();
        if e.r#type == EventType::Delete as i32 || kv.create_revision < kv.mod_revision {
            e.prev_kv = s.prev_kv(&kv.key, kv.mod_revision).unwrap();
        }
    }
}

/// Mixed history: puts, updates, deletes, multi-op txns, a re-creation. The published
/// events, prev_kv filled in.
fn history_fixture(s: &Store) -> Vec<Event> {
    let mut all = Vec::new();
    all.extend(commit(s, |t| {
        t.put(b"a", b"1".to_vec(), 0).unwrap();
    }));
    all.extend(commit(s, |t| {
        t.put(b"b", b"1".to_vec(), 3).unwrap();
        t.put(b"c", b"1".to_vec(), 0).unwrap();
    }));
    all.extend(commit(s, |t| {
        t.put(b"a", b"2".to_vec(), 0).unwrap();
    }));
    all.extend(commit(s, |t| {
        t.delete_range(b"a", b"c", false).unwrap();
    }));
    all.extend(commit(s, |t| {
        t.put(b"a", b"3".to_vec(), 0).unwrap();
        t.put(b"c", b"2".to_vec(), 0).unwrap();
        t.put(b"c", b"3".to_vec(), 0).unwrap();
    }));
    all.extend(commit(s, |t| {
        t.put(b"d", b"1".to_vec(), 0).unwrap();
    }));
    fill_prevs(s, &mut all);
    all
}

#[test]
fn history_events_match_published_events() {
    let dir = tempfile::tempdir().unwrap();
    let published = {
        let s = open(dir.path());
        let published = history_fixture(&s);
        assert_eq!(s.current_revision(), 7);
        assert_eq!(s.events(1, 100, b"\0", b"\0", true).unwrap(), published);
        published
    };
    let s = open(dir.path());
    assert_eq!(s.current_revision(), 7);
    assert_eq!(
        s.events(0, 7, b"\0", b"\0", true).unwrap(),
        published,
        "after reopen"
    );
    let only_a: Vec<Event> = published
        .iter()
        .filter(|e| e.kv.as_ref().unwrap().key == b"a"[..])
        .cloned()
        .collect();
    assert_eq!(s.events(1, 7, b"a", b"", true).unwrap(), only_a);
    let window: Vec<Event> = published
        .iter()
        .filter(|e| (3..=5).contains(&e.kv.as_ref().unwrap().mod_revision))
        .cloned()
        .collect();
    assert_eq!(s.events(3, 5, b"\0", b"\0", true).unwrap(), window);
    assert!(s.events(8, 20, b"\0", b"\0", true).unwrap().is_empty());
    // Without prev_kv: the same events, none carrying it.
    let bare: Vec<Event> = published
        .iter()
        .map(|e| Event {
            prev_kv: None,
            ..e.clone()
        })
        .collect();
    assert_eq!(s.events(1, 7, b"\0", b"\0", false).unwrap(), bare);
    assert!(s.events(5, 4, b"\0", b"\0", true).unwrap().is_empty());
}

#[test]
fn history_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let published = history_fixture(&s);
    compact(&s, 5).unwrap();
    assert!(matches!(
        s.events(4, 7, b"\0", b"\0", true),
        Err(MvccError::Compacted)
    ));
    let got = s.events(5, 7, b"\0", b"\0", true).unwrap();
    // The deletions at 5 are kept (a watch may start at the compaction revision); their
    // prev_kv at 4 is compacted and omitted.
    assert_eq!(
        got.iter().map(ev).collect::<Vec<_>>(),
        [
            (EventType::Delete, "a".into(), 5, None),
            (EventType::Delete, "b".into(), 5, None),
            (EventType::Put, "a".into(), 6, None),
            (EventType::Put, "c".into(), 6, Some(("1".into(), 3))),
            (EventType::Put, "c".into(), 6, Some(("1".into(), 3))),
            (EventType::Put, "d".into(), 7, None),
        ]
    );
    let later: Vec<Event> = published
        .iter()
        .filter(|e| e.kv.as_ref().unwrap().mod_revision >= 6)
        .cloned()
        .collect();
    assert_eq!(s.events(6, 7, b"\0", b"\0", true).unwrap(), later);
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        s.events(5, 7, b"\0", b"\0", true).unwrap(),
        got,
        "after reopen"
    );
}

fn snapshot_state(s: &Store) -> (i64, i64, usize, String) {
    let st = s.read_state();
    (
        st.current,
        st.compacted,
        st.index.live_keys(),
        format!("{:?}", st.index),
    )
}

#[test]
fn compaction_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    history_fixture(&s);
    put(&s, "a", "4"); // 8
    del(&s, "d", ""); // 9
    let before: Vec<_> = (5..=9)
        .map(|rev| {
            let mut q = req("\0", "\0");
            q.revision = rev;
            s.range(&q).unwrap().kvs
        })
        .collect();
    assert!(matches!(compact(&s, 10), Err(MvccError::FutureRevision)));
    compact(&s, 5).unwrap();
    assert!(matches!(compact(&s, 5), Err(MvccError::Compacted)));
    assert!(matches!(compact(&s, 3), Err(MvccError::Compacted)));
    assert_eq!(s.compact_revision(), 5);
    let after: Vec<_> = (5..=9)
        .map(|rev| {
            let mut q = req("\0", "\0");
            q.revision = rev;
            s.range(&q).unwrap().kvs
        })
        .collect();
    assert_eq!(
        before, after,
        "reads at and after the compaction revision unchanged"
    );
    let state = snapshot_state(&s);
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        snapshot_state(&s),
        state,
        "reopen rebuilds the same index and revisions"
    );
    // Compact past everything deleted: deleted keys disappear, live ones stay.
    compact(&s, 9).unwrap();
    {
        let st = s.read_state();
        assert_eq!(
            st.index.tracked_keys(),
            3,
            "b gone; d's tombstone at 9 kept"
        );
    }
    assert_eq!(keys(&s.range(&req("\0", "\0")).unwrap().kvs), ["a", "c"]);
    let state = snapshot_state(&s);
    drop(s);
    let s = open(dir.path());
    assert_eq!(snapshot_state(&s), state);
    assert_eq!(s.current_revision(), 9, "newest revision was a deletion");
    assert_eq!(put(&s, "z", "1"), 10);
    assert_eq!(s.key_count(), 3);
    // The tombstone kept at 9 (restored without its put) goes at the next compaction,
    // on disk too.
    compact(&s, 10).unwrap();
    assert_eq!(s.read_state().index.tracked_keys(), 3);
    let records = s.storage().scan(Cf::Kv, &[], None).unwrap();
    assert_eq!(records.len(), 3, "one record per live key is left");
    drop(s);
    let s = open(dir.path());
    assert_eq!(
        (s.current_revision(), s.compact_revision(), s.key_count()),
        (10, 10, 3)
    );
}

#[test]
fn abandoned_write_frees_the_writer_and_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut t = s.write();
    t.put(b"a", b"1".to_vec(), 0).unwrap();
    drop(t);
    let mut t = s.write();
    assert_eq!(t.revision(), 2);
    t.put(b"a", b"1".to_vec(), 0).unwrap();
    let mut batch = s.storage().batch();
    let pending = t.finish(&mut batch);
    drop(pending);
    assert_eq!(s.current_revision(), 1);
    assert_eq!(put(&s, "b", "1"), 2);
    assert_eq!(s.key_count(), 1);
}

#[test]
fn open_rejects_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = Storage::open(dir.path()).unwrap();
        let mut b = storage.batch();
        b.put(Cf::Kv, b"not-a-revision", b"x");
        storage.write(b, Durability::Synced).unwrap();
    }
    let storage = Storage::open(dir.path()).unwrap();
    assert!(matches!(Store::open(storage), Err(MvccError::Corrupt(_))));
}

#[test]
fn current_revision_survives_restart_after_deletions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        put(&s, "a", "1");
        del(&s, "a", ""); // 3
        assert_eq!(s.current_revision(), 3);
    }
    let s = open(dir.path());
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.key_count(), 0);
    assert_eq!(put(&s, "a", "2"), 4);
    assert_eq!(cmv(&get(&s, "a", 0).unwrap()), (4, 4, 1));
}

#[test]
fn hash_kv_is_stable_and_deterministic() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (h_now, h4) = {
        let s = open(d1.path());
        history_fixture(&s);
        let (h, c, r) = s.hash_kv(0).unwrap();
        assert_eq!((c, r), (0, 7));
        assert_eq!(s.hash_kv(7).unwrap().0, h);
        let h4 = s.hash_kv(4).unwrap().0;
        assert_ne!(h4, h);
        assert!(matches!(s.hash_kv(8), Err(MvccError::FutureRevision)));
        (h, h4)
    };
    let s = open(d1.path());
    assert_eq!(s.hash_kv(0).unwrap().0, h_now, "same after reopen");
    assert_eq!(s.hash_kv(4).unwrap().0, h4);
    // Another store with the same history hashes the same.
    let other = open(d2.path());
    history_fixture(&other);
    assert_eq!(other.hash_kv(0).unwrap(), s.hash_kv(0).unwrap());
    // Compaction changes the hashed window; both members agree again afterwards.
    compact(&s, 4).unwrap();
    compact(&other, 4).unwrap();
    assert!(matches!(s.hash_kv(3), Err(MvccError::Compacted)));
    let (h, c, r) = s.hash_kv(0).unwrap();
    assert_eq!((c, r), (4, 7));
    assert_eq!(other.hash_kv(0).unwrap(), (h, c, r));
    put(&s, "q", "1");
    assert_ne!(s.hash_kv(0).unwrap().0, h);
    assert_eq!(s.hash_kv(7).unwrap().0, h);
}

#[test]
fn for_each_current_visits_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    history_fixture(&s);
    let mut seen = Vec::new();
    s.for_each_current(|kv| seen.push((kv.key.to_vec(), kv.value.to_vec())))
        .unwrap();
    assert_eq!(
        seen,
        [
            (b"a".to_vec(), b"3".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
            (b"d".to_vec(), b"1".to_vec())
        ]
    );
    assert_eq!(s.key_count(), 3);
}

#[test]
fn only_one_writer_at_a_time() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let seen = Arc::new(AtomicI64::new(0));
    let mut txn = s.write();
    txn.put(b"a", b"1".to_vec(), 0).unwrap();
    let handle = {
        let (s, seen) = (Arc::clone(&s), Arc::clone(&seen));
        std::thread::spawn(move || {
            let t = s.write();
            seen.store(t.revision(), Ordering::SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "second writer waits");
    let mut batch = s.storage().batch();
    let pending = txn.finish(&mut batch);
    s.storage().write(batch, Durability::Unlogged).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "still waits until publish");
    s.publish(pending);
    handle.join().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[test]
fn concurrent_reads_during_writes_and_compaction() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            for i in 0..200 {
                put(&s, &format!("k{}", i % 10), &i.to_string());
                if i % 50 == 49 {
                    let rev = s.current_revision() - 5;
                    compact(&s, rev).unwrap();
                }
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        match s.range(&req("\0", "\0")) {
            Ok(r) => {
                assert!(r.kvs.len() <= 10);
                reads += 1;
            }
            Err(e) => panic!("read failed: {e}"),
        }
        let cur = s.current_revision();
        let _ = s
            .events(s.compact_revision().max(cur - 3), cur, b"\0", b"\0", true)
            .ok();
    }
    writer.join().unwrap();
    assert!(reads > 0);
    assert_eq!(s.key_count(), 10);
    assert_eq!(s.current_revision(), 201);
}
