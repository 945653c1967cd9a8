//! Write transactions: the changes of one write request, at one new revision.

use std::collections::BTreeMap;

use prost::Message;

use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::{Batch, Cf};

use super::index::Index;
use super::key_range::bounds;
use super::range::{self, FetchOptions, Fetched, RangeResult};
use super::revision::{encode_i64, Revision};
use super::{load_kvs, MvccError, Store, WriterToken, META_CURRENT_REV};

/// A key this transaction changed.
#[derive(Debug, Clone)]
struct Touched {
    /// The key after the transaction's latest change to it (None = deleted).
    now: Option<KeyValue>,
}

/// One record the transaction writes.
#[derive(Debug, Clone)]
struct Change {
    rev: Revision,
    tombstone: bool,
    /// The stored form (full KeyValue for a put; key + mod_revision for a delete); its
    /// key is the changed key.
    record: KeyValue,
}

/// The changes of one write request, all at revision [`WriteTxn::revision`] with sub
/// revisions 0, 1, 2... in call order. Reads through the transaction see its own earlier
/// changes. Nothing is visible to other readers until [`Store::publish`].
///
/// Consecutive puts of several requests may share one transaction, each at its own
/// revision ([`next_revision`](Self::next_revision)), so they are written and published
/// together; reads through such a transaction are supported at its newest state only.
///
/// Holds the store's writer slot until it is finished and published (or dropped).
#[derive(Debug)]
pub struct WriteTxn<'a> {
    store: &'a Store,
    token: WriterToken<'a>,
    /// The published revision the transaction started from.
    base: i64,
    /// The revision the next change gets.
    rev: i64,
    /// Where the changes at `rev` begin in `changes`.
    rev_start: usize,
    touched: BTreeMap<bytes::Bytes, Touched>,
    changes: Vec<Change>,
    events: Vec<Event>,
}

/// A key a range delete removes, with the revision of its published record (None: the
/// value is the transaction's own).
type Victim = (Vec<u8>, Option<Revision>);

/// Where a key's value lives in a transaction's merged view.
enum Slot<'k> {
    /// The published record at this revision.
    Disk(Revision),
    /// This transaction's own value.
    Mem(&'k KeyValue),
}

/// What [`WriteTxn::delete_range`] deleted.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// The deleted keys, in key order.
    pub keys: Vec<Vec<u8>>,
    /// Their values before the deletion, in the same order (only when asked for).
    pub prev_kvs: Vec<KeyValue>,
}

/// An index update to apply at publish time.
#[derive(Debug, Clone)]
pub(super) struct IndexChange {
    pub key: bytes::Bytes,
    pub rev: Revision,
    pub tombstone: bool,
}

/// A finished write whose batch is (about to be) written; hand it to
/// [`Store::publish`] once the batch is durable. Holds the store's writer slot; dropping
/// it without publishing abandons the write (its revision will be reused).
#[derive(Debug)]
pub struct PendingWrite<'a> {
    token: WriterToken<'a>,
    rev: i64,
    changes: Vec<IndexChange>,
    events: Vec<Event>,
}

impl<'a> PendingWrite<'a> {
    /// True when the write changed anything (and so produces a new revision).
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The revision the write produces when published, if it changed anything.
    pub fn revision(&self) -> Option<i64> {
        self.changed().then_some(self.rev)
    }

    /// The parts, with the writer slot: keep it until the write is visible, so the next
    /// writer starts from this write's revision.
    pub(super) fn into_parts(self) -> (WriterToken<'a>, i64, Vec<IndexChange>, Vec<Event>) {
        (self.token, self.rev, self.changes, self.events)
    }
}

impl<'a> WriteTxn<'a> {
    pub(super) fn new(store: &'a Store, token: WriterToken<'a>, base: i64) -> Self {
        WriteTxn {
            store,
            token,
            base,
            rev: base + 1,
            rev_start: 0,
            touched: BTreeMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The revision this transaction produces if it changes anything (the revision of
    /// the changes that follow, after [`next_revision`](Self::next_revision)).
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Starts a new revision for the changes that follow, if the current one has any:
    /// the next request of a run applied as one write. Reads through the transaction
    /// still see every earlier change.
    pub fn next_revision(&mut self) {
        if self.changes.len() > self.rev_start {
            self.rev += 1;
            self.rev_start = self.changes.len();
        }
    }

    /// The revision of the last change, or the published revision if there is none.
    fn last_revision(&self) -> i64 {
        self.changes.last().map_or(self.base, |c| c.rev.main)
    }

    /// True once the transaction has changed anything.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The revision reads through this transaction see as current: the new revision once
    /// something changed, else the store's current revision.
    fn read_revision(&self) -> i64 {
        self.last_revision()
    }

    /// Executes a RangeRequest as etcd does inside a write txn: the current revision is
    /// the new one once this transaction changed anything, and reads at it include this
    /// transaction's changes. The result's `revision` is that current revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResult, MvccError> {
        range::execute(req, |opts| self.fetch(&req.key, &req.range_end, opts))
    }

    fn fetch(
        &self,
        start: &[u8],
        range_end: &[u8],
        opts: FetchOptions,
    ) -> Result<Fetched, MvccError> {
        let current = self.read_revision();
        if opts.rev > current {
            return Err(MvccError::FutureRevision);
        }
        if !self.changed() || (opts.rev > 0 && opts.rev <= self.base) {
            // Published history only.
            let mut fetched = self.store.fetch(start, range_end, opts)?;
            fetched.revision = current;
            return Ok(fetched);
        }
        let (kvs, count) = self.merged(start, range_end, opts.limit, opts.count_only)?;
        Ok(Fetched {
            kvs,
            count,
            revision: current,
        })
    }

    /// Keys of the range at the transaction's new revision: published keys overlaid with
    /// this transaction's changes, in key order. Returns up to `limit` kvs (0 = all) and
    /// the number of keys in the range.
    fn merged(
        &self,
        start: &[u8],
        range_end: &[u8],
        limit: usize,
        count_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), MvccError> {
        let (slots, count, snap) = {
            let st = self.store.read_state();
            let mut slots = Vec::new();
            let mut count = 0i64;
            self.walk_merged(&st.index, start, range_end, |_, slot| {
                count += 1;
                if !count_only && (limit == 0 || slots.len() < limit) {
                    slots.push(slot);
                }
            });
            (slots, count, self.store.storage.snapshot())
        };
        let disk: Vec<Revision> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Disk(rev) => Some(*rev),
                Slot::Mem(_) => None,
            })
            .collect();
        let mut loaded = load_kvs(&snap, &disk)?.into_iter();
        let mut kvs = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Disk(rev) => match loaded.next() {
                    Some(kv) => kvs.push(kv),
                    None => {
                        return Err(MvccError::Corrupt(format!(
                            "record {}.{} not read",
                            rev.main, rev.sub
                        )))
                    }
                },
                Slot::Mem(kv) => kvs.push(kv.clone()),
            }
        }
        Ok((kvs, count))
    }

    /// The newest value of `key`, including this transaction's changes; None when the
    /// key does not exist.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        match self.touched.get(key) {
            Some(t) => Ok(t.now.clone()),
            None => self.store.latest_for_writer(key),
        }
    }

    fn next_sub(&self) -> Revision {
        Revision::new(self.rev, (self.changes.len() - self.rev_start) as i64)
    }

    /// Sets `key` to `value` with `lease` (0 = none). Keeps the key's create_revision and
    /// increments its version if it exists (also when it was written earlier in this
    /// transaction), else creates it with version 1 and create_revision = this revision.
    /// Returns the previous value (including this transaction's changes).
    pub fn put(
        &mut self,
        key: &[u8],
        value: impl Into<bytes::Bytes>,
        lease: i64,
    ) -> Result<Option<KeyValue>, MvccError> {
        let current = self.get(key)?;
        self.put_over(key, value, lease, current)
    }

    /// [`put`](Self::put) for a caller that has just read `current` with
    /// [`get`](Self::get) in this transaction (saves reading the key again).
    pub fn put_over(
        &mut self,
        key: &[u8],
        value: impl Into<bytes::Bytes>,
        lease: i64,
        current: Option<KeyValue>,
    ) -> Result<Option<KeyValue>, MvccError> {
        let prev = match self.touched.get(key) {
            Some(t) => t.now.clone(),
            None => current,
        };
        let meta = prev.as_ref().map(|p| (p.create_revision, p.version));
        self.record_put(key, value.into(), lease, meta);
        Ok(prev)
    }

    /// [`put`](Self::put) without reading the key's previous value: its create_revision
    /// and version come from the index (or from this transaction's own change to it), as
    /// etcd's put does. The result is the same record and event as `put` writes.
    pub fn put_unread(&mut self, key: &[u8], value: impl Into<bytes::Bytes>, lease: i64) {
        let meta = match self.touched.get(key) {
            Some(t) => t.now.as_ref().map(|kv| (kv.create_revision, kv.version)),
            None => self
                .store
                .read_state()
                .index
                .latest(key)
                .map(|f| (f.created, f.version)),
        };
        self.record_put(key, value.into(), lease, meta);
    }

    /// Records a put of `key` over a key whose (create_revision, version) is `meta`
    /// (None: the key does not exist). Its event carries no `prev_kv`: whoever needs it
    /// reads the key as of the revision before (see [`Store::prev_kv`]).
    fn record_put(
        &mut self,
        key: &[u8],
        value: bytes::Bytes,
        lease: i64,
        meta: Option<(i64, i64)>,
    ) {
        let rev = self.next_sub();
        let key = bytes::Bytes::copy_from_slice(key);
        let kv = KeyValue {
            key: key.clone(),
            create_revision: meta.map_or(self.rev, |(created, _)| created),
            mod_revision: self.rev,
            version: meta.map_or(1, |(_, version)| version + 1),
            value,
            lease,
        };
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: None,
        });
        self.changes.push(Change {
            rev,
            tombstone: false,
            record: kv.clone(),
        });
        self.touched.insert(key, Touched { now: Some(kv) });
    }

    /// Deletes every key of the range (etcd conventions) that exists, including keys this
    /// transaction wrote; deleting nothing is not a change. Returns the deleted keys in
    /// key order, and their values before the deletion only when `with_prev` is set: a
    /// range delete reads no values otherwise, so deleting many large keys costs index
    /// work and one tombstone each.
    ///
    /// Its events carry no `prev_kv`; whoever needs it reads the key as of the revision
    /// before (see [`Store::prev_kv`]).
    pub fn delete_range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        with_prev: bool,
    ) -> Result<Deleted, MvccError> {
        let victims = self.merged_keys(key, range_end);
        let prev_kvs = if with_prev {
            let disk: Vec<Revision> = victims.iter().filter_map(|(_, r)| *r).collect();
            let mut loaded = load_kvs(&self.store.storage.snapshot(), &disk)?.into_iter();
            let mut kvs = Vec::with_capacity(victims.len());
            for (k, rev) in &victims {
                let kv = match rev {
                    Some(_) => loaded.next(),
                    None => self.touched.get(k.as_slice()).and_then(|t| t.now.clone()),
                };
                match kv {
                    Some(kv) => kvs.push(kv),
                    None => return Err(MvccError::Corrupt("deleted key not read".into())),
                }
            }
            kvs
        } else {
            Vec::new()
        };
        let mut keys = Vec::with_capacity(victims.len());
        for (k, _) in victims {
            let rev = self.next_sub();
            let shared = bytes::Bytes::from(k.clone());
            let record = KeyValue {
                key: shared.clone(),
                mod_revision: self.rev,
                ..KeyValue::default()
            };
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(record.clone()),
                prev_kv: None,
            });
            self.changes.push(Change {
                rev,
                tombstone: true,
                record,
            });
            // A later put of the key in this transaction is a creation.
            self.touched.insert(shared, Touched { now: None });
            keys.push(k);
        }
        Ok(Deleted { keys, prev_kvs })
    }

    /// The keys of the range at the transaction's new revision, in key order, each with
    /// the revision of its published record (None: the key's value is this
    /// transaction's own).
    fn merged_keys(&self, start: &[u8], range_end: &[u8]) -> Vec<Victim> {
        let st = self.store.read_state();
        let mut out = Vec::new();
        self.walk_merged(&st.index, start, range_end, |key, slot| {
            let rev = match slot {
                Slot::Disk(rev) => Some(rev),
                Slot::Mem(_) => None,
            };
            out.push((key.to_vec(), rev));
        });
        out
    }

    /// Visits the keys of the range at the transaction's new revision in key order:
    /// `index` (the published keys as of the revision before) overlaid with this
    /// transaction's changes; keys it deleted are skipped.
    fn walk_merged<'s, 'i>(
        &'s self,
        index: &'i Index,
        start: &'i [u8],
        range_end: &'i [u8],
        mut f: impl FnMut(&[u8], Slot<'s>),
    ) {
        let Some(b) = bounds(start, range_end) else {
            return;
        };
        let mut published = index.iter_at(start, range_end, self.base).peekable();
        let mut own = self.touched.range::<[u8], _>(b).peekable();
        let own_slot = |(k, t): (&'s bytes::Bytes, &'s Touched)| {
            t.now.as_ref().map(|kv| (&k[..], Slot::Mem(kv)))
        };
        loop {
            let item = match (published.peek(), own.peek()) {
                (None, None) => break,
                (Some(_), None) => published.next().map(|(k, f)| (k, Slot::Disk(f.rev))),
                (None, Some(_)) => own.next().and_then(own_slot),
                (Some((pk, _)), Some((ok, _))) => {
                    if *pk < &ok[..] {
                        published.next().map(|(k, f)| (k, Slot::Disk(f.rev)))
                    } else {
                        if *pk == &ok[..] {
                            published.next();
                        }
                        own.next().and_then(own_slot)
                    }
                }
            };
            if let Some((k, slot)) = item {
                f(k, slot);
            }
        }
    }

    /// Adds this transaction's records (and the new current revision in `Cf::Meta`) to
    /// `batch`. Write the batch, then pass the result to [`Store::publish`]. When nothing
    /// changed, nothing is added and publishing is a no-op.
    pub fn finish(self, batch: &mut Batch<'_>) -> PendingWrite<'a> {
        let rev = self.last_revision();
        for c in &self.changes {
            batch.put(
                Cf::Kv,
                &c.rev.to_record_key(c.tombstone),
                &c.record.encode_to_vec(),
            );
        }
        if self.changed() {
            batch.put(Cf::Meta, META_CURRENT_REV, &encode_i64(rev));
        }
        PendingWrite {
            token: self.token,
            rev,
            changes: self
                .changes
                .into_iter()
                .map(|c| IndexChange {
                    key: c.record.key,
                    rev: c.rev,
                    tombstone: c.tombstone,
                })
                .collect(),
            events: self.events,
        }
    }
}
