//! The revisioned key-value store (etcd's mvcc).
//!
//! Layout on disk:
//! - `Cf::Kv`: revision key (see [`revision`]) -> prost-encoded `mvccpb.KeyValue`. Put
//!   records hold the full KeyValue; deletion records (key ends in `t`) hold the key and
//!   the deletion revision.
//! - `Cf::Meta`: [`META_COMPACT_REV`] (last compaction revision) and
//!   [`META_CURRENT_REV`] (newest revision ever written), both 8 bytes big-endian.
//!
//! In memory, an index maps each user key to its generations of revisions. Readers take
//! the index read lock, resolve revisions and take a RocksDB snapshot before releasing
//! it, then read values from the snapshot; a concurrent compaction cannot remove data
//! from under them.
//!
//! Writes go through [`Store::write`] -> [`WriteTxn`] -> [`WriteTxn::finish`] (fills a
//! RocksDB batch) -> the caller writes the batch -> [`Store::publish`] (makes the write
//! visible and returns its events). Only one write is in flight at a time.
#![warn(missing_docs)]

mod compact;
mod hash;
mod history;
mod index;
mod key_index;
mod key_range;
mod range;
pub mod revision;
mod write;

#[cfg(test)]
mod tests;

use std::sync::{Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message;

use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::storage::{Cf, Snapshot, Storage, StorageError};

use index::Index;
pub use key_range::key_in_range;
pub use range::RangeResult;
use range::{resolve_revision, FetchOptions, Fetched};
pub use revision::Revision;
use revision::{decode_i64, RecordKey};
pub use write::{Deleted, PendingWrite, WriteTxn};

/// `Cf::Meta` key of the last compaction revision (8 bytes big-endian).
pub const META_COMPACT_REV: &[u8] = b"compact_rev";
/// `Cf::Meta` key of the newest revision ever written (8 bytes big-endian). Kept so the
/// current revision survives restarts even when its records are gone.
pub const META_CURRENT_REV: &[u8] = b"current_rev";

/// Errors of the mvcc store.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    /// The requested revision is older than the compaction revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is newer than the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A RangeRequest carried an unknown sort order or sort target.
    #[error("invalid sort option")]
    InvalidSortOption,
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Data on disk does not have the expected shape.
    #[error("mvcc: corrupt data: {0}")]
    Corrupt(String),
}

/// Revision counters and index, guarded together so readers see them consistently.
#[derive(Debug)]
struct State {
    index: Index,
    /// Newest published revision.
    current: i64,
    /// Last compaction revision (0 = never).
    compacted: i64,
}

/// Serializes writers: at most one [`WriteTxn`] / [`PendingWrite`] exists at a time.
#[derive(Debug, Default)]
struct WriterGate {
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    busy: bool,
    /// Threads blocked in [`WriterGate::acquire`]: releasing wakes one only if there is
    /// one (the single apply thread normally never waits, and a wake is a system call).
    waiting: usize,
}

/// Proof of holding the [`WriterGate`]; releases it when dropped.
#[derive(Debug)]
struct WriterToken<'a> {
    gate: &'a WriterGate,
}

impl WriterGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(&self) -> WriterToken<'_> {
        let mut st = self.lock();
        while st.busy {
            st.waiting += 1;
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.waiting -= 1;
        }
        st.busy = true;
        WriterToken { gate: self }
    }
}

impl Drop for WriterToken<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.busy = false;
        if st.waiting > 0 {
            self.gate.freed.notify_one();
        }
    }
}

/// The revisioned key-value store. `Send + Sync`; share it through an `Arc`.
///
/// Reads ([`Store::range`], [`Store::events`], ...) may run from any thread concurrently
/// with each other, with the single writer and with compaction.
#[derive(Debug)]
pub struct Store {
    storage: Storage,
    state: RwLock<State>,
    writer: WriterGate,
}

/// Decodes a stored KeyValue.
fn decode_kv(bytes: &[u8]) -> Result<KeyValue, MvccError> {
    KeyValue::decode(bytes).map_err(|e| MvccError::Corrupt(format!("bad KeyValue record: {e}")))
}

/// Reads the put record at `rev` from `snap`.
fn load_kv(snap: &Snapshot<'_>, rev: Revision) -> Result<KeyValue, MvccError> {
    match snap.get(Cf::Kv, &rev.to_key())? {
        Some(bytes) => decode_kv(&bytes),
        None => Err(MvccError::Corrupt(format!(
            "index points at missing record {}.{}",
            rev.main, rev.sub
        ))),
    }
}

/// Reads the put records at `revs` from `snap` in one batched lookup, in the order given.
fn load_kvs(snap: &Snapshot<'_>, revs: &[Revision]) -> Result<Vec<KeyValue>, MvccError> {
    if revs.len() == 1 {
        return Ok(vec![load_kv(snap, revs[0])?]);
    }
    let keys: Vec<Vec<u8>> = revs.iter().map(|r| r.to_key()).collect();
    snap.multi_get(Cf::Kv, &keys)?
        .into_iter()
        .zip(revs)
        .map(|(v, rev)| match v {
            Some(bytes) => decode_kv(&bytes),
            None => Err(MvccError::Corrupt(format!(
                "index points at missing record {}.{}",
                rev.main, rev.sub
            ))),
        })
        .collect()
}

fn read_meta(storage: &Storage, key: &[u8]) -> Result<i64, MvccError> {
    match storage.get(Cf::Meta, key)? {
        Some(bytes) => decode_i64(&String::from_utf8_lossy(key), &bytes),
        None => Ok(0),
    }
}

impl Store {
    /// Opens the store on `storage`: rebuilds the index from every record of `Cf::Kv`,
    /// and the current and compaction revisions from the records and `Cf::Meta`.
    /// A store with no data is at revision 1, never compacted.
    pub fn open(storage: Storage) -> Result<Store, MvccError> {
        let state = Self::load_state(&storage)?;
        Ok(Store {
            storage,
            state: RwLock::new(state),
            writer: WriterGate::default(),
        })
    }

    /// Rebuilds the index and revisions from storage after its contents were replaced
    /// wholesale (a snapshot from the leader). Waits for the single writer slot, so no
    /// write is in progress while the state is swapped.
    pub fn reload(&self) -> Result<(), MvccError> {
        let _token = self.writer.acquire();
        let state = Self::load_state(&self.storage)?;
        *self.write_state() = state;
        Ok(())
    }

    fn load_state(storage: &Storage) -> Result<State, MvccError> {
        let compacted = read_meta(storage, META_COMPACT_REV)?;
        let mut current = read_meta(storage, META_CURRENT_REV)?.max(compacted).max(1);
        let mut index = Index::default();
        let mut failure = None;
        storage.for_each(Cf::Kv, &[], None, |k, v| {
            let step = RecordKey::decode(k).and_then(|rk| decode_kv(v).map(|kv| (rk, kv)));
            match step {
                Ok((rk, kv)) => {
                    current = current.max(rk.rev.main);
                    index.restore(
                        &kv.key,
                        rk.rev,
                        rk.tombstone,
                        kv.create_revision,
                        kv.version,
                    );
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(State {
            index,
            current,
            compacted,
        })
    }

    /// The storage this store writes to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest published revision (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.read_state().current
    }

    /// The last compaction revision; 0 if the store was never compacted. Reads at this
    /// revision still succeed, reads below it fail with [`MvccError::Compacted`].
    pub fn compact_revision(&self) -> i64 {
        self.read_state().compacted
    }

    /// Number of keys that exist at the current revision.
    pub fn key_count(&self) -> usize {
        self.read_state().index.live_keys()
    }

    /// Executes a RangeRequest against published data (etcd 3.6 `executeRange`
    /// semantics). `req.revision <= 0` reads the current revision; the result's
    /// `revision` is always the current revision at read time.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResult, MvccError> {
        range::execute(req, |opts| self.fetch(&req.key, &req.range_end, opts))
    }

    /// Reads the range in key order at `opts.rev` (checked against current/compacted).
    fn fetch(
        &self,
        start: &[u8],
        range_end: &[u8],
        opts: FetchOptions,
    ) -> Result<Fetched, MvccError> {
        let (revs, count, current, snap) = {
            let st = self.read_state();
            let at = resolve_revision(opts.rev, st.current, st.compacted)?;
            let mut revs = Vec::new();
            let mut count = 0i64;
            for (_, found) in st.index.iter_at(start, range_end, at) {
                count += 1;
                if !opts.count_only && (opts.limit == 0 || revs.len() < opts.limit) {
                    revs.push(found.rev);
                }
            }
            if opts.count_only || revs.is_empty() {
                return Ok(Fetched {
                    kvs: Vec::new(),
                    count,
                    revision: st.current,
                });
            }
            (revs, count, st.current, self.storage.snapshot())
        };
        let kvs = load_kvs(&snap, &revs)?;
        Ok(Fetched {
            kvs,
            count,
            revision: current,
        })
    }

    /// The newest value of `key` among published data, for the holder of the writer slot:
    /// read without a RocksDB snapshot. Safe because records are only removed by writes (compaction, snapshot
    /// install), which cannot run while the caller holds the slot.
    fn latest_for_writer(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        let found = self.read_state().index.latest(key);
        let Some(found) = found else {
            return Ok(None);
        };
        match self.storage.get(Cf::Kv, &found.rev.to_key())? {
            Some(bytes) => decode_kv(&bytes).map(Some),
            None => Err(MvccError::Corrupt(format!(
                "index points at missing record {}.{}",
                found.rev.main, found.rev.sub
            ))),
        }
    }

    /// Starts the next write; its revision is `current_revision() + 1`. Blocks while
    /// another [`WriteTxn`] or unpublished [`PendingWrite`] of this store exists, so
    /// there is at most one writer at a time (never hold one while calling this on the
    /// same thread).
    pub fn write(&self) -> WriteTxn<'_> {
        let token = self.writer.acquire();
        let base = self.current_revision();
        WriteTxn::new(self, token, base)
    }

    /// Makes a finished write visible: updates the index and the current revision, and
    /// returns the write's events in change order (sub revision order). Call it only after
    /// the batch filled by [`WriteTxn::finish`] was written to storage. For a write that
    /// changed nothing this does nothing and returns no events.
    ///
    /// Events carry no `prev_kv`: a watcher that asked for it reads the key as of the
    /// revision before with [`Store::prev_kv`] (the write itself reads no previous values
    /// it does not need, as etcd's).
    pub fn publish(&self, pending: PendingWrite<'_>) -> Vec<Event> {
        // The writer slot is released (dropped) only on return, after the index and the
        // current revision are updated.
        let (_slot, revision, changes, events) = pending.into_parts();
        if changes.is_empty() {
            return Vec::new();
        }
        let mut st = self.write_state();
        if revision <= st.current {
            // Not ours or already applied; applying it again would corrupt the index.
            return Vec::new();
        }
        for c in &changes {
            if c.tombstone {
                st.index.tombstone(&c.key, c.rev);
            } else {
                st.index.put(&c.key, c.rev);
            }
        }
        st.current = revision;
        drop(st);
        events
    }

    /// Calls `f` with every key that exists at the current revision, in key order.
    pub fn for_each_current(&self, mut f: impl FnMut(&KeyValue)) -> Result<(), MvccError> {
        let (revs, snap) = {
            let st = self.read_state();
            let revs: Vec<Revision> = st
                .index
                .iter_at(&[], &[0], st.current)
                .map(|(_, found)| found.rev)
                .collect();
            (revs, self.storage.snapshot())
        };
        for rev in revs {
            f(&load_kv(&snap, rev)?);
        }
        Ok(())
    }
}
