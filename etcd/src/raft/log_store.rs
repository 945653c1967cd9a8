//! The durable raft log: entries, hard state, conf state and the snapshot point, kept in
//! RocksDB's `raft` column family and mirrored in raft-rs's in-memory `MemStorage`,
//! which serves raft's reads.
//!
//! Guarantee: when [`LogStore::persist`] returns `Ok`, the entries and hard state it was
//! given are fsynced (one synced write per call) and visible to raft.

use ::raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use ::raft::storage::MemStorage;
use ::raft::Storage as _;
use protobuf::Message as _;

use crate::storage::{Cf, Storage, StorageError};

const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
const SNAPSHOT_META: &[u8] = b"sm";
const ENTRY_PREFIX: u8 = b'e';

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
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The raft log of this member, durable in RocksDB.
#[derive(Clone)]
pub struct LogStore {
    mem: MemStorage,
    storage: Storage,
}

impl LogStore {
    /// Loads the log from `storage`. A store that has never been written is initialised
    /// with `initial_voters` as its configuration (a new cluster); an existing one keeps
    /// what it has, whatever `initial_voters` says. Returns the store and whether it was
    /// freshly initialised.
    pub fn open(storage: Storage, initial_voters: &[u64]) -> Result<(Self, bool), LogStoreError> {
        let mem = MemStorage::new();
        let hs = storage.get(Cf::Raft, HARD_STATE)?;
        let cs = storage.get(Cf::Raft, CONF_STATE)?;
        let fresh = hs.is_none() && cs.is_none();
        let store = LogStore {
            mem: mem.clone(),
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
                mem.wl().set_conf_state(conf);
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
            let mut snap = Snapshot::default();
            snap.set_metadata(meta);
            mem.wl().apply_snapshot(snap)?;
            return Ok((store, true));
        }
        let mut wl = mem.wl();
        let mut first = 1;
        if let Some(sm) = storage.get(Cf::Raft, SNAPSHOT_META)? {
            let meta = SnapshotMetadata::parse_from_bytes(&sm)?;
            first = meta.index + 1;
            let mut snap = Snapshot::default();
            snap.set_metadata(meta);
            wl.apply_snapshot(snap)?;
        }
        if let Some(cs) = cs {
            wl.set_conf_state(ConfState::parse_from_bytes(&cs)?);
        }
        let mut entries = Vec::new();
        let mut decode_err = None;
        storage.for_each(
            Cf::Raft,
            &entry_key(0),
            Some(&[ENTRY_PREFIX + 1]),
            |_, v| match Entry::parse_from_bytes(v) {
                Ok(e) => {
                    entries.push(e);
                    true
                }
                Err(e) => {
                    decode_err = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        entries.retain(|e| e.index >= first);
        if !entries.is_empty() {
            wl.append(&entries)?;
        }
        if let Some(hs) = hs {
            let hs = HardState::parse_from_bytes(&hs)?;
            wl.set_hardstate(hs);
        }
        drop(wl);
        Ok((store, false))
    }

    /// The raft-rs storage view (shares state with this store).
    pub fn raft_storage(&self) -> MemStorage {
        self.mem.clone()
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and records `hs`,
    /// in one synced write, then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), LogStoreError> {
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        let mut b = self.storage.batch();
        if let Some(first) = entries.first() {
            // A conflicting suffix beyond the new entries is removed key by key: an
            // append (the common case) deletes nothing, and no range tombstone piles
            // up per write (thousands of them make RocksDB's WAL recovery and reads
            // crawl).
            let last_new = entries.last().map_or(first.index, |e| e.index);
            let old_last = self.last_index();
            for index in (last_new + 1)..=old_last {
                b.delete(Cf::Raft, &entry_key(index));
            }
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
        let mut wl = self.mem.wl();
        if !entries.is_empty() {
            wl.append(entries)?;
        }
        if let Some(hs) = hs {
            wl.set_hardstate(hs.clone());
        }
        Ok(())
    }

    /// Records the commit index raft reported in a light ready. The write is not synced
    /// on its own, but it precedes (in the shared WAL) the apply writes of the entries it
    /// commits, so a recovered applied index never exceeds the recovered commit index.
    pub fn set_commit(&self, commit: u64) -> Result<(), LogStoreError> {
        let hs = {
            let mut wl = self.mem.wl();
            let hs = wl.mut_hard_state();
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
        self.mem.wl().set_conf_state(cs);
        Ok(())
    }

    /// Discards entries before `index` (they must be applied and durable in the state
    /// machine). The term of `index - 1` is remembered as the snapshot point.
    pub fn compact(&self, index: u64) -> Result<(), LogStoreError> {
        let first = self.mem.first_index()?;
        if index <= first {
            return Ok(());
        }
        let term = self.mem.term(index - 1)?;
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
        self.mem.wl().compact(index)?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: the log is emptied, the snapshot
    /// point, its configuration and the hard state it implies are persisted (synced)
    /// and made visible to raft. The state machine must already hold the snapshot's
    /// data.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), LogStoreError> {
        let meta = snap.get_metadata();
        let mut stripped = Snapshot::default();
        stripped.set_metadata(meta.clone());
        let mut hs = self.mem.initial_state()?.hard_state;
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
        let mut wl = self.mem.wl();
        wl.apply_snapshot(stripped)?;
        wl.set_hardstate(hs);
        Ok(())
    }

    /// The current configuration.
    pub fn conf_state(&self) -> ConfState {
        self.mem
            .initial_state()
            .map(|s| s.conf_state)
            .unwrap_or_default()
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> u64 {
        self.mem.first_index().unwrap_or(1)
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.mem.last_index().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
