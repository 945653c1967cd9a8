//! The durable raft log: entries, hard state, conf state and the snapshot point, kept in
//! the segment files of [`crate::raft::wal`] (`--wal-dir`, default
//! `<data-dir>/member/wal`). [`LogStore`] is also raft-rs's [`raft::Storage`]: it keeps
//! in memory the log's bounds, the term of every index (as runs of equal terms), where
//! each entry is on disk and a bounded tail of recent entries, and reads older entries
//! (a follower far behind) from the segment files. The log between two compactions
//! (`--snapshot-count` entries) is therefore not held in memory.
//!
//! Guarantees: when [`LogStore::persist`] returns `Ok`, the entries and hard state it was
//! given are durable (one `fdatasync` per call) and visible to raft; configuration
//! changes, compactions and installed snapshots are durable when their call returns.
//! The commit index raft reports between Readies ([`LogStore::set_commit`]) is kept in
//! memory and written with the next entries appended; at startup it is raised to the
//! applied index ([`LogStore::ensure_commit_covers`]).
//!
//! A data dir written before the log had files of its own keeps its log in RocksDB's
//! `raft` column family; [`LogStore::open`] moves it into the segment files once.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::raft::prelude::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata,
};
use ::raft::{GetEntriesContext, RaftState, Storage as _, StorageError as RaftStorageError};
use protobuf::Message as _;

use crate::raft::wal::{Kind, Loc, Rec, Wal, WalError, SEGMENT_SIZE};
use crate::storage::{Cf, Durability, Storage, StorageError};

/// Keys of the log in RocksDB's `raft` column family, before it moved to its own files.
mod legacy {
    pub const HARD_STATE: &[u8] = b"hs";
    pub const CONF_STATE: &[u8] = b"cs";
    pub const SNAPSHOT_META: &[u8] = b"sm";
    pub const ENTRY_PREFIX: u8 = b'e';
}

/// Recent entries kept in memory (raft reads them to apply and to replicate to
/// followers that keep up): at most this many...
const TAIL_ENTRIES: usize = 4096;
/// ...and at most this many bytes of entry data.
const TAIL_BYTES: usize = 8 << 20;

/// Errors of the raft log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The log files failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The database (state machine durability, legacy log) failed.
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

/// What [`LogStore::force_standalone`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedStandalone {
    /// Members removed from the configuration.
    pub removed: Vec<u64>,
    /// Whether this member was added as a voter (it was missing, or a learner).
    pub added_self: bool,
    /// The commit index afterwards.
    pub commit: u64,
    /// Entries that were after the recorded commit index (kept, and now committed).
    pub past_commit: u64,
}

/// A flush of the state machine running on its own thread ([`LogStore::start_flush`]).
pub struct Flush {
    handle: std::thread::JoinHandle<Result<(), StorageError>>,
}

impl Flush {
    /// True once the flush has ended (successfully or not); [`wait`](Self::wait) then
    /// returns at once.
    pub fn is_done(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the flush to end; Ok means every write made before it started is
    /// durable.
    pub fn wait(self) -> Result<(), LogStoreError> {
        match self.handle.join() {
            Ok(r) => Ok(r?),
            Err(_) => Err(LogStoreError::Corrupt(
                "the state machine flush panicked".into(),
            )),
        }
    }
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
    /// Where entries `snap_index + 1..=last` are in the log files.
    locs: VecDeque<Loc>,
    /// The newest entries, contiguous and ending at `last`.
    tail: VecDeque<Entry>,
    tail_bytes: usize,
    /// The commit index of the last hard state written to the log files.
    written_commit: u64,
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
        self.locs.truncate((self.last - self.snap_index) as usize);
        while self.tail.back().is_some_and(|e| e.index > index) {
            if let Some(e) = self.tail.pop_back() {
                self.tail_bytes -= e.data.len();
            }
        }
    }

    /// Records an entry at `loc` that directly follows `last` (not in the tail).
    fn push_loc(&mut self, index: u64, term: u64, loc: Loc) {
        if self.terms.last().is_none_or(|(_, t)| *t != term) {
            self.terms.push((index, term));
        }
        self.last = index;
        self.locs.push_back(loc);
    }

    /// Appends an entry at `loc` that directly follows `last`, keeping it in the tail.
    fn push(&mut self, e: &Entry, loc: Loc) {
        self.push_loc(e.index, e.term, loc);
        self.push_tail(e.clone());
    }

    /// Adds the entry that follows the tail, dropping the oldest beyond the bounds.
    fn push_tail(&mut self, e: Entry) {
        self.tail_bytes += e.data.len();
        self.tail.push_back(e);
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
        let drop = (index - 1).saturating_sub(self.snap_index) as usize;
        self.locs.drain(..drop.min(self.locs.len()));
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
        self.locs.clear();
        self.tail.clear();
        self.tail_bytes = 0;
    }

    /// Records that hold the whole state but the entries: what a new segment starts
    /// with, so older segments can go once their entries are compacted.
    fn state_records(&self) -> Result<Vec<Rec>, LogStoreError> {
        Ok(vec![
            rec(
                Kind::Compact,
                snapshot_meta(
                    self.snap_index,
                    self.snap_term,
                    self.raft_state.conf_state.clone(),
                )
                .write_to_bytes()?,
            ),
            rec(
                Kind::ConfState,
                self.raft_state.conf_state.write_to_bytes()?,
            ),
            rec(
                Kind::HardState,
                self.raft_state.hard_state.write_to_bytes()?,
            ),
        ])
    }
}

/// A snapshot point with its configuration.
fn snapshot_meta(index: u64, term: u64, conf: ConfState) -> SnapshotMetadata {
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    meta.set_conf_state(conf);
    meta
}

fn rec(kind: Kind, payload: Vec<u8>) -> Rec {
    Rec {
        kind,
        payload,
        index: 0,
    }
}

/// The log rebuilt from its records, oldest first.
#[derive(Default)]
struct Replay {
    any: bool,
    snap: SnapshotMetadata,
    conf: Option<ConfState>,
    hs: Option<HardState>,
    /// `(index, term, loc)`; may have gaps while replaying (entries of released
    /// segments), none once the last compaction record is applied.
    entries: VecDeque<(u64, u64, Loc)>,
}

impl Replay {
    /// Applies one record; returns the index of an entry record, 0 otherwise.
    fn apply(&mut self, loc: Loc, kind: Kind, payload: &[u8]) -> Result<u64, LogStoreError> {
        self.any = true;
        match kind {
            Kind::Entry => {
                let e = Entry::parse_from_bytes(payload)?;
                while self.entries.back().is_some_and(|(i, _, _)| *i >= e.index) {
                    self.entries.pop_back();
                }
                self.entries.push_back((e.index, e.term, loc));
                return Ok(e.index);
            }
            Kind::HardState => self.hs = Some(HardState::parse_from_bytes(payload)?),
            Kind::ConfState => self.conf = Some(ConfState::parse_from_bytes(payload)?),
            Kind::Compact => {
                let meta = SnapshotMetadata::parse_from_bytes(payload)?;
                if meta.index > self.snap.index {
                    self.snap = meta;
                }
                while self
                    .entries
                    .front()
                    .is_some_and(|(i, _, _)| *i <= self.snap.index)
                {
                    self.entries.pop_front();
                }
            }
            Kind::Install => {
                let meta = SnapshotMetadata::parse_from_bytes(payload)?;
                self.conf = Some(meta.get_conf_state().clone());
                self.snap = meta;
                self.entries.clear();
            }
        }
        Ok(0)
    }

    /// The in-memory state of the replayed log (without the tail).
    fn into_core(self) -> Result<Core, LogStoreError> {
        let mut core = Core::default();
        core.reset(self.snap.index, self.snap.term);
        core.raft_state.conf_state = self
            .conf
            .unwrap_or_else(|| self.snap.get_conf_state().clone());
        core.raft_state.hard_state = self.hs.unwrap_or_default();
        core.written_commit = core.raft_state.hard_state.commit;
        for (index, term, loc) in self.entries {
            if index != core.last + 1 {
                return Err(LogStoreError::Corrupt(format!(
                    "entry {index} follows entry {}",
                    core.last
                )));
            }
            core.push_loc(index, term, loc);
        }
        Ok(core)
    }
}

fn store_err(e: impl std::error::Error + Send + Sync + 'static) -> ::raft::Error {
    ::raft::Error::Store(RaftStorageError::Other(Box::new(e)))
}

/// The raft log of this member, durable in its own files; cloning shares it.
#[derive(Clone)]
pub struct LogStore {
    core: Arc<RwLock<Core>>,
    wal: Arc<Mutex<Wal>>,
    /// The state machine's database: flushed before entries are compacted away.
    storage: Storage,
}

impl LogStore {
    fn rl(&self) -> RwLockReadGuard<'_, Core> {
        self.core.read().unwrap_or_else(|p| p.into_inner())
    }

    fn wl(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().unwrap_or_else(|p| p.into_inner())
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the log from `dir` (the state machine lives in `storage`). A log that has
    /// never been written is initialised with `initial_voters` as its configuration (a
    /// new cluster); an existing one keeps what it has, whatever `initial_voters` says.
    /// Returns the store and whether it was freshly initialised.
    pub fn open(
        dir: &Path,
        storage: Storage,
        initial_voters: &[u64],
    ) -> Result<(Self, bool), LogStoreError> {
        let mut replay = Replay::default();
        let mut wal = Wal::open(dir, SEGMENT_SIZE, |loc, kind, payload| {
            replay.apply(loc, kind, payload)
        })?;
        let mut fresh = false;
        if !replay.any {
            let recs = match import_legacy(&storage)? {
                Some(recs) => recs,
                None => {
                    fresh = true;
                    new_log(initial_voters)?
                }
            };
            let locs = wal.append(&recs)?;
            for (r, loc) in recs.iter().zip(locs) {
                replay.apply(loc, r.kind, &r.payload)?;
            }
            if !fresh {
                // The log is in its own files now; the old copy goes.
                let mut b = storage.batch();
                b.delete_range(Cf::Raft, &[], &[0xff]);
                storage.write(b, Durability::Synced)?;
                tracing::info!(dir = %dir.display(), "moved the raft log out of the database");
            }
        }
        let mut core = replay.into_core()?;
        // The newest entries, read back into memory.
        let from = core.locs.len().saturating_sub(TAIL_ENTRIES);
        let newest: Vec<Loc> = core.locs.iter().skip(from).copied().collect();
        for (i, loc) in newest.into_iter().enumerate() {
            let index = core.snap_index + 1 + (from + i) as u64;
            core.push_tail(read_entry(&wal, loc, index)?);
        }
        wal.release(core.first())?;
        let store = LogStore {
            core: Arc::new(RwLock::new(core)),
            wal: Arc::new(Mutex::new(wal)),
            storage,
        };
        Ok((store, fresh))
    }

    /// `--unsafe-no-fsync`: the log's writes are no longer synced (see
    /// [`Wal::set_unsafe_no_fsync`]); what [`persist`](Self::persist) promises about
    /// durability then holds against a crash of the process only.
    pub fn set_unsafe_no_fsync(&self) -> Result<(), LogStoreError> {
        self.wal().set_unsafe_no_fsync()?;
        Ok(())
    }

    /// Whether a log exists: segment files in `dir`, or a log that earlier versions kept
    /// in `storage`.
    pub fn exists(dir: &Path, storage: &Storage) -> Result<bool, LogStoreError> {
        if Wal::has_segments(dir)? {
            return Ok(true);
        }
        has_legacy(storage)
    }

    /// The raft-rs storage view (shares state with this store).
    pub fn raft_storage(&self) -> LogStore {
        self.clone()
    }

    /// Writes `recs` durably, starting a new segment (with the state first) when the
    /// current one is full.
    fn write(&self, recs: &[Rec]) -> Result<Vec<Loc>, LogStoreError> {
        let mut wal = self.wal();
        if wal.is_full_for(Wal::encoded_len(recs)) {
            let state = self.rl().state_records()?;
            wal.rotate(&state)?;
        }
        Ok(wal.append(recs)?)
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and records `hs`,
    /// with one `fdatasync`, then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), LogStoreError> {
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        // A commit index known only in memory ([`LogStore::set_commit`]) goes out with
        // these entries, in the same write: it then trails the cluster's by at most what
        // was committed since the last append.
        let carried;
        let hs = match hs {
            None if !entries.is_empty() => {
                let core = self.rl();
                if core.raft_state.hard_state.commit > core.written_commit {
                    carried = core.raft_state.hard_state.clone();
                    Some(&carried)
                } else {
                    None
                }
            }
            hs => hs,
        };
        let mut recs = Vec::with_capacity(entries.len() + 1);
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
        }
        for e in entries {
            recs.push(Rec {
                kind: Kind::Entry,
                payload: e.write_to_bytes()?,
                index: e.index,
            });
        }
        if let Some(hs) = hs {
            recs.push(rec(Kind::HardState, hs.write_to_bytes()?));
        }
        let locs = self.write(&recs)?;
        let mut core = self.wl();
        if let Some(first) = entries.first() {
            core.truncate_after(first.index - 1);
            for (e, loc) in entries.iter().zip(locs) {
                core.push(e, loc);
            }
        }
        if let Some(hs) = hs {
            core.raft_state.hard_state = hs.clone();
            core.written_commit = hs.commit;
        }
        Ok(())
    }

    /// Where the next durable write goes (segment, offset): a test's view of whether a
    /// call wrote anything.
    #[cfg(test)]
    pub(crate) fn wal_position(&self) -> (u64, u64) {
        self.wal().position()
    }

    /// Records the commit index raft reported in a light ready, in memory: it is written
    /// with the next entries appended (or hard state, or segment). A commit index lost in
    /// a crash is harmless:
    /// [`LogStore::ensure_commit_covers`] raises it to the applied index at startup and
    /// the leader sends it again.
    pub fn set_commit(&self, commit: u64) -> Result<(), LogStoreError> {
        let mut core = self.wl();
        let hs = &mut core.raft_state.hard_state;
        hs.commit = hs.commit.max(commit);
        Ok(())
    }

    /// Makes sure the commit index is at least `applied` (entries up to the applied index
    /// were committed: the state machine holds them). Used at startup, before raft reads
    /// its state.
    pub fn ensure_commit_covers(&self, applied: u64) -> Result<(), LogStoreError> {
        let last = self.last_index();
        self.set_commit(applied.min(last))
    }

    /// `--force-new-cluster`: rewrites the log so that this member is the only one in
    /// its configuration. After the last entry come configuration changes, one removing
    /// each other voter and learner (the configuration of the snapshot point and the
    /// changes in the log) and, if `self_id` is not among them or is a learner, one
    /// adding it as a voter with `self_context` as its member record (a learner is
    /// promoted); the commit index moves past them, so raft
    /// applies every entry of the log and then the changes at startup. Nothing is written
    /// when this member is already alone. Durable on return.
    ///
    /// etcd drops the entries after the commit index its log recorded. Ours are kept:
    /// the recorded commit index trails the cluster's (it is written with the next
    /// append, see [`LogStore::set_commit`]), and entries after it may be writes the old
    /// cluster committed and acknowledged. An entry kept
    /// that the old cluster never committed is a write whose client had no answer
    /// (a timeout), which may take effect in etcd too.
    pub fn force_standalone(
        &self,
        self_id: u64,
        self_context: Vec<u8>,
    ) -> Result<ForcedStandalone, LogStoreError> {
        let (mut hs, cs, first) = {
            let core = self.rl();
            (
                core.raft_state.hard_state.clone(),
                core.raft_state.conf_state.clone(),
                core.first(),
            )
        };
        // Member id -> whether it is a learner.
        let mut ids: std::collections::BTreeMap<u64, bool> = cs
            .voters
            .iter()
            .map(|&v| (v, false))
            .chain(cs.learners.iter().map(|&l| (l, true)))
            .collect();
        let last = self.last_index();
        // Read in bounded chunks: the log may hold many large entries.
        let mut next = first;
        while next <= last {
            let chunk = self.entries(next, last + 1, 64 << 20, GetEntriesContext::empty(false))?;
            next += chunk.len() as u64;
            for e in chunk
                .iter()
                .filter(|e| e.get_entry_type() == EntryType::EntryConfChange)
            {
                let cc = ConfChange::parse_from_bytes(&e.data)?;
                match cc.get_change_type() {
                    ConfChangeType::AddNode => {
                        ids.insert(cc.node_id, false);
                    }
                    ConfChangeType::AddLearnerNode => {
                        ids.insert(cc.node_id, true);
                    }
                    ConfChangeType::RemoveNode => {
                        ids.remove(&cc.node_id);
                    }
                }
            }
        }
        hs.term = hs.term.max(self.term(last)?);
        let removed: Vec<u64> = ids.keys().copied().filter(|&id| id != self_id).collect();
        // Missing, or a learner (a configuration without voters could elect no one).
        let add_self = ids.get(&self_id) != Some(&false);
        let mut changes: Vec<ConfChange> = removed
            .iter()
            .map(|&id| {
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
                cc
            })
            .collect();
        if add_self {
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = self_id;
            cc.context = self_context.into();
            changes.push(cc);
        }
        let mut report = ForcedStandalone {
            removed,
            added_self: add_self,
            commit: hs.commit,
            past_commit: last.saturating_sub(hs.commit),
        };
        if changes.is_empty() {
            return Ok(report);
        }
        let mut entries = Vec::with_capacity(changes.len());
        for (i, cc) in changes.iter().enumerate() {
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.term = hs.term;
            e.index = last + 1 + i as u64;
            e.data = cc.write_to_bytes()?.into();
            entries.push(e);
        }
        hs.commit = last + entries.len() as u64;
        self.persist(&entries, Some(&hs))?;
        report.commit = hs.commit;
        Ok(report)
    }

    /// Records a new configuration, durably.
    pub fn set_conf_state(&self, cs: ConfState) -> Result<(), LogStoreError> {
        self.write(&[rec(Kind::ConfState, cs.write_to_bytes()?)])?;
        self.wl().raft_state.conf_state = cs;
        Ok(())
    }

    /// Discards entries before `index` (they must be applied; the state machine is
    /// flushed first, so a crash can no longer need them). The term of `index - 1` is
    /// remembered as the snapshot point, and segments holding only discarded entries
    /// are released for reuse. (The raft loop flushes without waiting instead:
    /// [`start_flush`](Self::start_flush), then [`compact_flushed`](Self::compact_flushed).)
    #[cfg(test)]
    pub fn compact(&self, index: u64) -> Result<(), LogStoreError> {
        self.storage.flush()?;
        self.compact_flushed(index)
    }

    /// Starts making the state machine durable on a thread of its own (a flush takes
    /// milliseconds; the raft thread goes on meanwhile). Once it is done, entries
    /// applied before it started may be compacted with
    /// [`compact_flushed`](Self::compact_flushed).
    pub fn start_flush(&self) -> Result<Flush, LogStoreError> {
        let storage = self.storage.clone();
        let handle = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || storage.flush())
            .map_err(|source| StorageError::Io {
                path: self.storage.path().to_path_buf(),
                source,
            })?;
        Ok(Flush { handle })
    }

    /// Discards entries before `index`, remembering the term of `index - 1` as the
    /// snapshot point and releasing segments that hold only discarded entries. The
    /// caller's [`Flush`] must have started after every entry before `index` was
    /// applied, and completed.
    pub fn compact_flushed(&self, index: u64) -> Result<(), LogStoreError> {
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
        let meta = snapshot_meta(index - 1, term, self.conf_state());
        // The state machine is durable (flushed by the caller): the log that rebuilds it
        // may go.
        self.write(&[rec(Kind::Compact, meta.write_to_bytes()?)])?;
        self.wl().compact_to(index, term);
        self.wal().release(index)?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: the log is emptied, the snapshot
    /// point, its configuration and the hard state it implies are made durable and
    /// visible to raft. The state machine must already hold the snapshot's data.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snap.get_metadata();
        let mut hs = self.rl().raft_state.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.write(&[
            rec(Kind::Install, meta.write_to_bytes()?),
            rec(Kind::HardState, hs.write_to_bytes()?),
        ])?;
        {
            let mut core = self.wl();
            core.reset(meta.index, meta.term);
            core.raft_state.conf_state = meta.get_conf_state().clone();
            core.raft_state.hard_state = hs;
        }
        self.wal().release(meta.index + 1)?;
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

    /// Entries `low..high` from the log files, stopping once `max_size` bytes are
    /// reached (always at least one). `low` must be in the log. Positions are taken a
    /// chunk at a time, so a far-behind follower's request for a long range costs what
    /// is read, not the range's length.
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> ::raft::Result<Vec<Entry>> {
        const CHUNK: u64 = 256;
        let mut out = Vec::new();
        let mut size = 0u64;
        let mut next = low;
        while next < high {
            let locs: Vec<Loc> = {
                let core = self.rl();
                let from = next.saturating_sub(core.first()) as usize;
                let to = ((high.min(next + CHUNK) - core.first()) as usize).min(core.locs.len());
                core.locs.range(from.min(to)..to).copied().collect()
            };
            if locs.is_empty() {
                break;
            }
            let wal = self.wal();
            for loc in locs {
                let e = read_entry(&wal, loc, next).map_err(store_err)?;
                size += u64::from(e.compute_size());
                if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                    return Ok(out);
                }
                out.push(e);
                next += 1;
            }
        }
        Ok(out)
    }
}

/// Reads the entry at `loc`, which must be entry `index`.
fn read_entry(wal: &Wal, loc: Loc, index: u64) -> Result<Entry, LogStoreError> {
    let (kind, payload) = wal.read(loc)?;
    let e = Entry::parse_from_bytes(&payload)?;
    if kind != Kind::Entry || e.index != index {
        return Err(LogStoreError::Corrupt(format!(
            "entry {index} missing from the stored log"
        )));
    }
    Ok(e)
}

/// The records of a new log: for a new cluster, a bootstrap snapshot at index 1 (term 1)
/// that carries the initial configuration, so the log of every member begins at index 2
/// and a member added later always receives a snapshot, with the configuration of its
/// time, instead of replaying a log that never recorded the initial voters. A member
/// joining a running cluster (no voters) starts empty: everything, including the
/// configuration, comes from the leader as a snapshot.
fn new_log(initial_voters: &[u64]) -> Result<Vec<Rec>, LogStoreError> {
    let conf = ConfState::from((initial_voters.to_vec(), vec![]));
    if initial_voters.is_empty() {
        return Ok(vec![rec(Kind::ConfState, conf.write_to_bytes()?)]);
    }
    let meta = snapshot_meta(1, 1, conf.clone());
    let hs = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };
    Ok(vec![
        rec(Kind::Compact, meta.write_to_bytes()?),
        rec(Kind::ConfState, conf.write_to_bytes()?),
        rec(Kind::HardState, hs.write_to_bytes()?),
    ])
}

/// Whether earlier versions left a log in RocksDB's `raft` column family (they always
/// wrote its hard state or configuration first).
fn has_legacy(storage: &Storage) -> Result<bool, LogStoreError> {
    Ok(storage.get(Cf::Raft, legacy::HARD_STATE)?.is_some()
        || storage.get(Cf::Raft, legacy::CONF_STATE)?.is_some())
}

/// The records of a log kept in RocksDB's `raft` column family by earlier versions, if
/// there is one.
fn import_legacy(storage: &Storage) -> Result<Option<Vec<Rec>>, LogStoreError> {
    if !has_legacy(storage)? {
        return Ok(None);
    }
    let mut recs = Vec::new();
    for (key, kind) in [
        (legacy::SNAPSHOT_META, Kind::Compact),
        (legacy::CONF_STATE, Kind::ConfState),
        (legacy::HARD_STATE, Kind::HardState),
    ] {
        if let Some(v) = storage.get(Cf::Raft, key)? {
            recs.push(rec(kind, v));
        }
    }
    let mut failure = None;
    storage.for_each(
        Cf::Raft,
        &[legacy::ENTRY_PREFIX],
        Some(&[legacy::ENTRY_PREFIX + 1]),
        |_, v| match Entry::parse_from_bytes(v) {
            Ok(e) => {
                recs.push(Rec {
                    kind: Kind::Entry,
                    payload: v.to_vec(),
                    index: e.index,
                });
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(Some(recs))
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

    fn wal_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("wal")
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn old_entries_come_from_disk_with_terms_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
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
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
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
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[1]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (200, n - 5));
        assert_eq!(log.term(n - 5).unwrap(), 7);
        assert_eq!(log.term(199).unwrap(), term_of(199));
    }

    fn big_entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![(index % 251) as u8; 4096].into(),
            ..Default::default()
        }
    }

    fn seg_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    }

    #[test]
    fn a_log_across_segments_compacts_reuses_files_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
        // ~24 MiB of entries: several segments.
        let all: Vec<Entry> = (2..=6001).map(|i| big_entry(i, 2)).collect();
        for chunk in all.chunks(100) {
            log.persist(chunk, None).unwrap();
        }
        let segments = seg_files(&wal_dir(&dir));
        assert!(segments >= 3, "{segments} segments");
        assert_eq!(log.entries(2, 6002, None, ctx()).unwrap(), all);
        log.compact(4000).unwrap();
        drop(log);

        let (log, fresh) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
        assert!(!fresh);
        assert_eq!((log.first_index(), log.last_index()), (4000, 6001));
        assert_eq!(log.term(3999).unwrap(), 2);
        assert_eq!(log.entries(4000, 6002, None, ctx()).unwrap(), all[3998..]);
        // A conflicting suffix from a new leader, then more entries: released
        // segments are reused instead of new files piling up.
        log.persist(&[big_entry(5990, 9)], None).unwrap();
        let files_before = seg_files(&wal_dir(&dir));
        let more: Vec<Entry> = (5991..9000).map(|i| big_entry(i, 9)).collect();
        for chunk in more.chunks(100) {
            log.persist(chunk, None).unwrap();
        }
        // The raft loop's way: the flush runs on its own thread, compaction follows.
        let flush = log.start_flush().unwrap();
        flush.wait().unwrap();
        log.compact_flushed(8000).unwrap();
        assert_eq!(log.first_index(), 8000);
        for chunk in (9000..10000)
            .map(|i| big_entry(i, 9))
            .collect::<Vec<_>>()
            .chunks(100)
        {
            log.persist(chunk, None).unwrap();
        }
        assert!(
            seg_files(&wal_dir(&dir)) <= files_before + 1,
            "segments were not reused: {} files, {files_before} before",
            seg_files(&wal_dir(&dir))
        );
        drop(log);
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[1]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (8000, 9999));
        assert_eq!(log.term(7999).unwrap(), 9);
        let got = log.entries(8000, 10000, None, ctx()).unwrap();
        assert_eq!(got.len(), 2000);
        assert!(got.iter().zip(8000..).all(|(e, i)| *e == big_entry(i, 9)));
    }

    #[test]
    fn a_log_kept_in_the_database_by_earlier_versions_moves_to_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let mut meta = SnapshotMetadata {
            index: 10,
            term: 2,
            ..Default::default()
        };
        meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 12,
            ..Default::default()
        };
        let mut b = storage.batch();
        b.put(
            Cf::Raft,
            legacy::SNAPSHOT_META,
            &meta.write_to_bytes().unwrap(),
        );
        b.put(
            Cf::Raft,
            legacy::CONF_STATE,
            &ConfState::from((vec![1, 2, 3], vec![4]))
                .write_to_bytes()
                .unwrap(),
        );
        b.put(Cf::Raft, legacy::HARD_STATE, &hs.write_to_bytes().unwrap());
        for i in 11u64..=14 {
            let mut key = vec![legacy::ENTRY_PREFIX];
            key.extend_from_slice(&i.to_be_bytes());
            b.put(Cf::Raft, &key, &entry(i, 3).write_to_bytes().unwrap());
        }
        storage.write(b, Durability::Synced).unwrap();

        let check = |log: &LogStore| {
            assert_eq!((log.first_index(), log.last_index()), (11, 14));
            assert_eq!(log.term(10).unwrap(), 2);
            assert_eq!(log.conf_state().learners, vec![4]);
            let st = log.raft_storage().initial_state().unwrap();
            assert_eq!(st.hard_state, hs);
            let want: Vec<Entry> = (11..=14).map(|i| entry(i, 3)).collect();
            assert_eq!(log.entries(11, 15, None, ctx()).unwrap(), want);
        };
        let (log, fresh) = LogStore::open(&wal_dir(&dir), storage.clone(), &[9]).unwrap();
        assert!(!fresh);
        check(&log);
        assert!(
            storage.scan(Cf::Raft, &[], None).unwrap().is_empty(),
            "the database keeps no copy"
        );
        drop(log);
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[9]).unwrap();
        check(&log);
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
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, fresh) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1, 2, 3]).unwrap();
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
        let (log, fresh) = LogStore::open(&wal_dir(&dir), storage, &[9]).unwrap();
        assert!(!fresh, "an existing log keeps its configuration");
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        assert_eq!((log.first_index(), log.last_index()), (2, 3));
        let st = log.raft_storage().initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 3);
    }

    fn conf_change_entry(index: u64, term: u64, kind: ConfChangeType, node: u64) -> Entry {
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = node;
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.index = index;
        e.term = term;
        e.data = cc.write_to_bytes().unwrap().into();
        e
    }

    #[test]
    fn force_standalone_removes_every_other_member_after_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1, 2, 3]).unwrap();
        // Member 4 joins as a learner, member 3 leaves; the recorded commit index trails
        // the last entries (a follower's), which are kept.
        let hs = HardState {
            term: 2,
            commit: 3,
            ..Default::default()
        };
        let entries = [
            entry(2, 2),
            conf_change_entry(3, 2, ConfChangeType::AddLearnerNode, 4),
            conf_change_entry(4, 2, ConfChangeType::RemoveNode, 3),
            entry(5, 2),
        ];
        log.persist(&entries, Some(&hs)).unwrap();
        let forced = log.force_standalone(2, b"me".to_vec()).unwrap();
        assert_eq!(
            forced,
            ForcedStandalone {
                removed: vec![1, 4],
                added_self: false,
                commit: 7,
                past_commit: 2,
            }
        );
        drop(log);
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[9]).unwrap();
        let st = log.raft_storage();
        assert_eq!(st.initial_state().unwrap().hard_state.commit, 7);
        let all = st.entries(2, 8, None, ctx()).unwrap();
        assert_eq!(all[..4], entries, "the log before the changes is kept");
        let changes: Vec<(ConfChangeType, u64)> = all[4..]
            .iter()
            .map(|e| {
                assert_eq!(
                    (e.get_entry_type(), e.term),
                    (EntryType::EntryConfChange, 2)
                );
                let cc = ConfChange::parse_from_bytes(&e.data).unwrap();
                (cc.get_change_type(), cc.node_id)
            })
            .collect();
        use ConfChangeType::RemoveNode;
        assert_eq!(changes, [(RemoveNode, 1), (RemoveNode, 4)]);

        // Forced again once alone: nothing to write. A member missing from the
        // configuration is added with its record.
        let forced = log.force_standalone(2, b"me".to_vec()).unwrap();
        assert_eq!(forced.commit, 7);
        assert!(forced.removed.is_empty() && !forced.added_self);
        assert_eq!(log.last_index(), 7);
        let forced = log.force_standalone(5, b"five".to_vec()).unwrap();
        assert_eq!(forced.commit, 9);
        assert_eq!((forced.removed, forced.added_self), (vec![2], true));
        let added = st.entries(9, 10, None, ctx()).unwrap();
        let cc = ConfChange::parse_from_bytes(&added[0].data).unwrap();
        assert_eq!(cc.get_change_type(), ConfChangeType::AddNode);
        assert_eq!((cc.node_id, &cc.context[..]), (5, &b"five"[..]));
    }

    #[test]
    fn a_commit_index_known_in_memory_is_written_with_the_next_entries() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
        let hs = HardState {
            term: 2,
            commit: 2,
            ..Default::default()
        };
        log.persist(&[entry(2, 2), entry(3, 2)], Some(&hs)).unwrap();
        log.set_commit(3).unwrap();
        let before = log.wal_position();
        // Nothing to append: the commit index stays in memory.
        log.persist(&[], None).unwrap();
        assert_eq!(log.wal_position(), before);
        log.persist(&[entry(4, 2)], None).unwrap();
        drop(log);
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[1]).unwrap();
        let st = log.raft_storage().initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.commit), (2, 3));
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn force_standalone_makes_a_learner_a_voter() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[1, 2]).unwrap();
        let learner = conf_change_entry(2, 2, ConfChangeType::AddLearnerNode, 3);
        log.persist(&[learner], None).unwrap();
        let forced = log.force_standalone(3, Vec::new()).unwrap();
        assert_eq!((forced.removed, forced.added_self), (vec![1, 2], true));
        let st = log.raft_storage();
        let last = st.entries(5, 6, None, ctx()).unwrap();
        let cc = ConfChange::parse_from_bytes(&last[0].data).unwrap();
        assert_eq!(
            (cc.get_change_type(), cc.node_id),
            (ConfChangeType::AddNode, 3)
        );
    }

    #[test]
    fn conflicting_entries_replace_the_old_suffix_durably() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[1]).unwrap();
        log.persist(&[entry(2, 2), entry(3, 2), entry(4, 2), entry(5, 2)], None)
            .unwrap();
        // A new leader overwrites from index 3 with a shorter log.
        log.persist(&[entry(3, 3)], None).unwrap();
        assert_eq!(log.last_index(), 3);
        drop(log);
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[1]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (2, 3));
        let st = log.raft_storage();
        assert_eq!((st.term(2).unwrap(), st.term(3).unwrap()), (2, 3));
    }

    #[test]
    fn joining_member_starts_empty_and_installs_a_snapshot_durably() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&wal_dir(&dir), storage.clone(), &[]).unwrap();
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
        let (log, _) = LogStore::open(&wal_dir(&dir), storage, &[]).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (41, 40));
        assert_eq!(log.conf_state().learners, vec![4]);
        let st = log.raft_storage().initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.commit), (3, 40));
        assert_eq!(log.raft_storage().term(40).unwrap(), 3);
    }
}
