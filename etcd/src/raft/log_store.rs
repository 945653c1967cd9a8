//! The durable raft log: entries, hard state, conf state and the snapshot point, kept in
//! RocksDB's `raft` column family. [`LogStore`] is also raft-rs's [`raft::Storage`]: it
//! keeps only the log's bounds, the term of every index (as runs of equal terms) and a
//! bounded tail of recent entries in memory, and reads older entries (a follower far
//! behind) from RocksDB. The log between two compactions (`--snapshot-count` entries) is
//! therefore not held in memory.
//!
//! Guarantee: when [`LogStore::persist`] returns `Ok`, the entries and hard state it was
//! given are fsynced (one synced write per call) and visible to raft.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use ::raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use protobuf::Message as _;

use crate::storage::{Cf, Storage, StorageError};

const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
const SNAPSHOT_META: &[u8] = b"sm";
const ENTRY_PREFIX: u8 = b'e';

/// Recent entries kept in memory (raft reads them to apply and to replicate to
/// followers that keep up): at most this many...
const TAIL_ENTRIES: usize = 4096;
/// ...and at most this many bytes of entry data.
const TAIL_BYTES: usize = 8 << 20;

/// Errors of the raft log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored record did not decode.
    #[error("corrupt raft log record: {0}")]
    Decode(#[from] protobuf::ProtobufError),
    /// raft-rs refused the loaded state.
    #[error("raft storage: {0}")]
    Raft(#[from] ::raft::Error),
    /// The stored log has a gap or is out of order.
    #[error("corrupt raft log: {0}")]
    Corrupt(String),
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// What the log keeps in memory.
#[derive(Default)]
struct Core {
    raft_state: RaftState,
    /// The snapshot point: the log starts right after it.
    snap_index: u64,
    snap_term: u64,
    /// Index of the last entry (`snap_index` when the log is empty).
    last: u64,
    /// `(first index, term)` runs covering `snap_index + 1..=last`, in index order.
    terms: Vec<(u64, u64)>,
    /// The newest entries, contiguous and ending at `last`.
    tail: VecDeque<Entry>,
    tail_bytes: usize,
}

impl Core {
    fn first(&self) -> u64 {
        self.snap_index + 1
    }

    fn term(&self, idx: u64) -> Option<u64> {
        if idx == self.snap_index {
            return Some(self.snap_term);
        }
        if idx < self.first() || idx > self.last {
            return None;
        }
        let at = self.terms.partition_point(|(start, _)| *start <= idx);
        at.checked_sub(1).map(|i| self.terms[i].1)
    }

    /// Drops every entry after `index`.
    fn truncate_after(&mut self, index: u64) {
        if index >= self.last {
            return;
        }
        self.last = index.max(self.snap_index);
        let keep = self.terms.partition_point(|(start, _)| *start <= index);
        self.terms.truncate(keep);
        while self.tail.back().is_some_and(|e| e.index > index) {
            if let Some(e) = self.tail.pop_back() {
                self.tail_bytes -= e.data.len();
            }
        }
    }

    /// Appends entries that directly follow `last`.
    fn push(&mut self, e: &Entry) {
        if self.terms.last().is_none_or(|(_, t)| *t != e.term) {
            self.terms.push((e.index, e.term));
        }
        self.last = e.index;
        self.tail_bytes += e.data.len();
        self.tail.push_back(e.clone());
        while self.tail.len() > TAIL_ENTRIES
            || (self.tail_bytes > TAIL_BYTES && self.tail.len() > 1)
        {
            if let Some(old) = self.tail.pop_front() {
                self.tail_bytes -= old.data.len();
            }
        }
    }

    /// Forgets entries before `index` (the snapshot point moves to `index - 1`).
    fn compact_to(&mut self, index: u64, term: u64) {
        self.snap_index = index - 1;
        self.snap_term = term;
        let drop_runs = self
            .terms
            .partition_point(|(start, _)| *start <= index)
            .saturating_sub(1);
        self.terms.drain(..drop_runs);
        if let Some(first) = self.terms.first_mut() {
            first.0 = first.0.max(index);
        }
        if self.last < self.snap_index {
            self.last = self.snap_index;
            self.terms.clear();
        }
        while self.tail.front().is_some_and(|e| e.index < index) {
            if let Some(e) = self.tail.pop_front() {
                self.tail_bytes -= e.data.len();
            }
        }
    }

    /// Empties the log at a snapshot point.
    fn reset(&mut self, index: u64, term: u64) {
        self.snap_index = index;
        self.snap_term = term;
        self.last = index;
        self.terms.clear();
        self.tail.clear();
        self.tail_bytes = 0;
    }
}

fn store_err(e: impl std::error::Error + Send + Sync + 'static) -> ::raft::Error {
    ::raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

/// The raft log of this member, durable in RocksDB; cloning shares it.
#[derive(Clone)]
pub struct LogStore {
    core: Arc<RwLock<Core>>,
    storage: Storage,
}

impl LogStore {
    fn rl(&self) -> RwLockReadGuard<'_, Core> {
        self.core.read().unwrap_or_else(|p| p.into_inner())
    }

    fn wl(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the log from `storage`. A store that has never been written is initialised
    /// with `initial_voters` as its configuration (a new cluster); an existing one keeps
    /// what it has, whatever `initial_voters` says. Returns the store and whether it was
    /// freshly initialised.
    pub fn open(storage: Storage, initial_voters: &[u64]) -> Result<(Self, bool), LogStoreError> {
        let hs = storage.get(Cf::Raft, HARD_STATE)?;
        let cs = storage.get(Cf::Raft, CONF_STATE)?;
        let fresh = hs.is_none() && cs.is_none();
        let store = LogStore {
            core: Arc::new(RwLock::new(Core::default())),
            storage: storage.clone(),
        };
        if fresh {
            let conf = ConfState::from((initial_voters.to_vec(), vec![]));
            let mut b = storage.batch();
            b.put(Cf::Raft, CONF_STATE, &conf.write_to_bytes()?);
            if initial_voters.is_empty() {
                // A member joining a running cluster: everything, including the
                // configuration, comes from the leader (as a snapshot).
                storage.write(b, true)?;
                store.wl().raft_state.conf_state = conf;
                return Ok((store, true));
            }
            // A new cluster starts from a bootstrap snapshot at index 1 (term 1) that
            // carries the initial configuration, so the log of every member begins at
            // index 2 and a member added later always receives a snapshot, with the
            // configuration of its time, instead of replaying a log that never
            // recorded the initial voters.
            let mut meta = SnapshotMetadata {
                index: 1,
                term: 1,
                ..Default::default()
            };
            meta.set_conf_state(conf.clone());
            let hs = HardState {
                term: 1,
                commit: 1,
                ..Default::default()
            };
            b.put(Cf::Raft, SNAPSHOT_META, &meta.write_to_bytes()?);
            b.put(Cf::Raft, HARD_STATE, &hs.write_to_bytes()?);
            storage.write(b, true)?;
            let mut core = store.wl();
            core.reset(1, 1);
            core.raft_state.conf_state = conf;
            core.raft_state.hard_state = hs;
            drop(core);
            return Ok((store, true));
        }
        let mut core = store.wl();
        if let Some(sm) = storage.get(Cf::Raft, SNAPSHOT_META)? {
            let meta = SnapshotMetadata::parse_from_bytes(&sm)?;
            core.reset(meta.index, meta.term);
            core.raft_state.conf_state = meta.get_conf_state().clone();
        }
        if let Some(cs) = cs {
            core.raft_state.conf_state = ConfState::parse_from_bytes(&cs)?;
        }
        let mut failure = None;
        let start = entry_key(core.first());
        storage.for_each(Cf::Raft, &start, Some(&[ENTRY_PREFIX + 1]), |_, v| {
            match Entry::parse_from_bytes(v) {
                Ok(e) if e.index == core.last + 1 => {
                    core.push(&e);
                    true
                }
                Ok(e) => {
                    failure = Some(LogStoreError::Corrupt(format!(
                        "entry {} follows entry {}",
                        e.index, core.last
                    )));
                    false
                }
                Err(e) => {
                    failure = Some(e.into());
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(hs) = hs {
            core.raft_state.hard_state = HardState::parse_from_bytes(&hs)?;
        }
        drop(core);
        Ok((store, false))
    }

    /// The raft-rs storage view (shares state with this store).
    pub fn raft_storage(&self) -> LogStore {
        self.clone()
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and records `hs`,
    /// in one synced write, then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), LogStoreError> {
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        let mut b = self.storage.batch();
        if let Some(first) = entries.first() {
            let core = self.rl();
            if first.index < core.first() || first.index > core.last + 1 {
                return Err(LogStoreError::Corrupt(format!(
                    "append at {} to a log of {}..={}",
                    first.index,
                    core.first(),
                    core.last
                )));
            }
            // A conflicting suffix beyond the new entries is removed key by key: an
            // append (the common case) deletes nothing, and no range tombstone piles
            // up per write (thousands of them make RocksDB's WAL recovery and reads
            // crawl).
            let last_new = entries.last().map_or(first.index, |e| e.index);
            for index in (last_new + 1)..=core.last {
                b.delete(Cf::Raft, &entry_key(index));
            }
            drop(core);
            for e in entries {
                b.put(Cf::Raft, &entry_key(e.index), &e.write_to_bytes()?);
            }
        }
        if let Some(hs) = hs {
            b.put(Cf::Raft, HARD_STATE, &hs.write_to_bytes()?);
        }
        let started = std::time::Instant::now();
        self.storage.write(b, true)?;
        crate::metrics::WAL_FSYNC.observe(started.elapsed().as_secs_f64());
        let mut core = self.wl();
        if let Some(first) = entries.first() {
            core.truncate_after(first.index - 1);
            for e in entries {
                core.push(e);
            }
        }
        if let Some(hs) = hs {
            core.raft_state.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records the commit index raft reported in a light ready. The write is not synced
    /// on its own, but it precedes (in the shared WAL) the apply writes of the entries it
    /// commits, so a recovered applied index never exceeds the recovered commit index.
    pub fn set_commit(&self, commit: u64) -> Result<(), LogStoreError> {
        let hs = {
            let mut core = self.wl();
            let hs = &mut core.raft_state.hard_state;
            if hs.commit >= commit {
                return Ok(());
            }
            hs.commit = commit;
            hs.clone()
        };
        let mut b = self.storage.batch();
        b.put(Cf::Raft, HARD_STATE, &hs.write_to_bytes()?);
        self.storage.write(b, false)?;
        Ok(())
    }

    /// Makes sure the commit index is at least `applied` (entries up to the applied index
    /// were committed: the state machine holds them). Used at startup, before raft reads
    /// its state.
    pub fn ensure_commit_covers(&self, applied: u64) -> Result<(), LogStoreError> {
        let last = self.last_index();
        self.set_commit(applied.min(last))
    }

    /// Records a new configuration.
    pub fn set_conf_state(&self, cs: ConfState) -> Result<(), LogStoreError> {
        let mut b = self.storage.batch();
        b.put(Cf::Raft, CONF_STATE, &cs.write_to_bytes()?);
        self.storage.write(b, true)?;
        self.wl().raft_state.conf_state = cs;
        Ok(())
    }

    /// Discards entries before `index` (they must be applied and durable in the state
    /// machine). The term of `index - 1` is remembered as the snapshot point.
    pub fn compact(&self, index: u64) -> Result<(), LogStoreError> {
        let (first, term) = {
            let core = self.rl();
            if index > core.last + 1 {
                return Err(LogStoreError::Corrupt(format!(
                    "compaction to {index} beyond the last entry {}",
                    core.last
                )));
            }
            (core.first(), core.term(index - 1))
        };
        if index <= first {
            return Ok(());
        }
        let term =
            term.ok_or_else(|| LogStoreError::Corrupt(format!("no term for {}", index - 1)))?;
        let mut meta = SnapshotMetadata {
            index: index - 1,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state());
        // The state machine must be durable before the log that rebuilds it goes away.
        self.storage.sync_wal()?;
        let mut b = self.storage.batch();
        b.delete_range(Cf::Raft, &entry_key(0), &entry_key(index));
        b.put(Cf::Raft, SNAPSHOT_META, &meta.write_to_bytes()?);
        self.storage.write(b, true)?;
        self.wl().compact_to(index, term);
        Ok(())
    }

    /// Installs a snapshot received from the leader: the log is emptied, the snapshot
    /// point, its configuration and the hard state it implies are persisted (synced)
    /// and made visible to raft. The state machine must already hold the snapshot's
    /// data.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snap.get_metadata();
        let mut hs = self.rl().raft_state.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let mut b = self.storage.batch();
        b.delete_range(Cf::Raft, &entry_key(0), &entry_key(u64::MAX));
        b.put(Cf::Raft, SNAPSHOT_META, &meta.write_to_bytes()?);
        b.put(
            Cf::Raft,
            CONF_STATE,
            &meta.get_conf_state().write_to_bytes()?,
        );
        b.put(Cf::Raft, HARD_STATE, &hs.write_to_bytes()?);
        self.storage.write(b, true)?;
        let mut core = self.wl();
        core.reset(meta.index, meta.term);
        core.raft_state.conf_state = meta.get_conf_state().clone();
        core.raft_state.hard_state = hs;
        Ok(())
    }

    /// The current configuration.
    pub fn conf_state(&self) -> ConfState {
        self.rl().raft_state.conf_state.clone()
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> u64 {
        self.rl().first()
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.rl().last
    }

    /// Entries `low..high` from RocksDB, stopping once `max_size` bytes are reached
    /// (always at least one).
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> ::raft::Result<Vec<Entry>> {
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let mut failure = None;
        let end = entry_key(high);
        self.storage
            .for_each(
                Cf::Raft,
                &entry_key(low),
                Some(&end),
                |_, v| match Entry::parse_from_bytes(v) {
                    Ok(e) => {
                        size += u64::from(e.compute_size());
                        if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                            return false;
                        }
                        out.push(e);
                        true
                    }
                    Err(e) => {
                        failure = Some(store_err(e));
                        false
                    }
                },
            )
            .map_err(store_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        if out.first().is_none_or(|e| e.index != low) {
            return Err(store_err(LogStoreError::Corrupt(format!(
                "entry {low} missing from the stored log"
            ))));
        }
        Ok(out)
    }
}

impl ::raft::Storage for LogStore {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        Ok(self.rl().raft_state.clone())
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        {
            let core = self.rl();
            if low < core.first() {
                return Err(::raft::Error::Store(RaftStorageError::Compacted));
            }
            if high > core.last + 1 || low > high {
                return Err(::raft::Error::Store(RaftStorageError::Unavailable));
            }
            if low == high {
                return Ok(Vec::new());
            }
            if let Some(front) = core.tail.front() {
                if low >= front.index {
                    let from = (low - front.index) as usize;
                    let to = (high - front.index) as usize;
                    let mut out = Vec::with_capacity(to - from);
                    let mut size = 0u64;
                    for e in core.tail.range(from..to) {
                        size += u64::from(e.compute_size());
                        if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                            break;
                        }
                        out.push(e.clone());
                    }
                    return Ok(out);
                }
            }
        }
        self.read_entries(low, high, max_size)
    }

    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        let core = self.rl();
        if let Some(t) = core.term(idx) {
            return Ok(t);
        }
        if idx < core.first() {
            Err(::raft::Error::Store(RaftStorageError::Compacted))
        } else {
            Err(::raft::Error::Store(RaftStorageError::Unavailable))
        }
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(self.rl().first())
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(self.rl().last)
    }

    /// The snapshot point raft sends a member that is behind: the commit index, its
    /// term and the configuration (the node attaches the state machine's data).
    fn snapshot(&self, request_index: u64, _to: u64) -> ::raft::Result<Snapshot> {
        let core = self.rl();
        let index = core.raft_state.hard_state.commit.max(core.snap_index);
        let term = core.term(index).ok_or(::raft::Error::Store(
            RaftStorageError::SnapshotTemporarilyUnavailable,
        ))?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index.max(request_index);
        meta.term = term;
        meta.set_conf_state(core.raft_state.conf_state.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::raft::Storage as _;

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn old_entries_come_from_disk_with_terms_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (log, _) = LogStore::open(storage.clone(), &[1]).unwrap();
        // More entries than the in-memory tail holds, in three terms.
        let n = TAIL_ENTRIES as u64 * 2 + 10;
        let term_of = |i: u64| {
            if i < 100 {
                2
            } else if i < n / 2 {
                3
            } else {
                5
            }
        };
        let all: Vec<Entry> = (2..=n).map(|i| entry(i, term_of(i))).collect();
        for chunk in all.chunks(500) {
            log.persist(chunk, None).unwrap();
        }
        let check = |log: &LogStore| {
            assert_eq!((log.first_index(), log.last_index()), (2, n));
            for i in [1, 2, 99, 100, n / 2 - 1, n / 2, n] {
                let want = if i == 1 { 1 } else { term_of(i) };
                assert_eq!(log.term(i).unwrap(), want, "term of {i}");
            }
            assert!(log.term(n + 1).is_err());
            // From disk (before the tail), across the tail boundary, and from the tail.
            let got = log.entries(2, n + 1, None, ctx()).unwrap();
            assert_eq!(got, all);
            let got = log.entries(n - 3, n + 1, None, ctx()).unwrap();
            assert_eq!(got, all[all.len() - 4..]);
            // max_size: at least one entry, then as many as fit.
            let one = log.entries(5, 50, Some(0), ctx()).unwrap();
            assert_eq!(one, all[3..4]);
            let size = u64::from(all[3].compute_size() + all[4].compute_size());
            assert_eq!(log.entries(5, 50, Some(size), ctx()).unwrap().len(), 2);
            assert_eq!(log.entries(n - 1, n + 1, Some(0), ctx()).unwrap().len(), 1);
        };
        check(&log);
        drop(log);
        let (log, _) = LogStore::open(storage.clone(), &[1]).unwrap();
        check(&log);
        // Compaction: older entries are gone, the snapshot point keeps its term.
        log.compact(200).unwrap();
        assert_eq!(log.first_index(), 200);
        assert_eq!(log.term(199).unwrap(), term_of(199));
        assert!(matches!(
            log.entries(150, 210, None, ctx()),
            Err(::raft::Error::Store(RaftStorageError::Compacted))
        ));
        assert_eq!(log.entries(200, 202, None, ctx()).unwrap(), all[198..200]);
        // A conflicting append truncates terms and tail.
        log.persist(&[entry(n - 5, 7)], None).unwrap();
        assert_eq!(log.last_index(), n - 5);
        assert_eq!(log.term(n - 5).unwrap(), 7);
        assert_eq!(log.term(n - 6).unwrap(), 5);
        assert!(log.term(n - 4).is_err());
        drop(log);
        let (log, _) = LogStore::open(storage, &[1]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (200, n - 5));
        assert_eq!(log.term(n - 5).unwrap(), 7);
        assert_eq!(log.term(199).unwrap(), term_of(199));
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    #[test]
    fn new_cluster_starts_after_a_bootstrap_snapshot_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (log, fresh) = LogStore::open(storage.clone(), &[1, 2, 3]).unwrap();
        assert!(fresh);
        assert_eq!(log.first_index(), 2, "index 1 is the bootstrap snapshot");
        assert_eq!(log.last_index(), 1);
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        let hs = HardState {
            term: 2,
            commit: 3,
            ..Default::default()
        };
        log.persist(&[entry(2, 2), entry(3, 2)], Some(&hs)).unwrap();
        drop(log);
        let (log, fresh) = LogStore::open(storage, &[9]).unwrap();
        assert!(!fresh, "an existing log keeps its configuration");
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        assert_eq!((log.first_index(), log.last_index()), (2, 3));
        let st = log.raft_storage().initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 3);
    }

    #[test]
    fn conflicting_entries_replace_the_old_suffix_durably() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (log, _) = LogStore::open(storage.clone(), &[1]).unwrap();
        log.persist(&[entry(2, 2), entry(3, 2), entry(4, 2), entry(5, 2)], None)
            .unwrap();
        // A new leader overwrites from index 3 with a shorter log.
        log.persist(&[entry(3, 3)], None).unwrap();
        assert_eq!(log.last_index(), 3);
        drop(log);
        let (log, _) = LogStore::open(storage, &[1]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (2, 3));
        let st = log.raft_storage();
        assert_eq!((st.term(2).unwrap(), st.term(3).unwrap()), (2, 3));
    }

    #[test]
    fn joining_member_starts_empty_and_installs_a_snapshot_durably() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (log, _) = LogStore::open(storage.clone(), &[]).unwrap();
        assert!(log.conf_state().voters.is_empty());
        assert_eq!(log.last_index(), 0);
        // A stale entry the snapshot must replace.
        log.persist(&[entry(1, 1)], None).unwrap();
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = 40;
        meta.term = 3;
        meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![4])));
        log.apply_snapshot(&snap).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (41, 40));
        drop(log);
        let (log, _) = LogStore::open(storage, &[]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (41, 40));
        assert_eq!(log.conf_state().learners, vec![4]);
        let st = log.raft_storage().initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.commit), (3, 40));
        assert_eq!(log.raft_storage().term(40).unwrap(), 3);
    }
}
