//! Leases (etcd's lessor): granted TTLs, the keys attached to each lease, and expiry.
//!
//! Guarantees:
//! - Grants and revocations are recorded in the `lease` column family through the apply
//!   batch they belong to, so they survive a restart together with the keys.
//! - Only the primary (the leader) lets leases expire; a member that becomes primary
//!   restarts every lease's countdown from its full TTL, so no lease expires because of
//!   an election or a restart.
//! - Keys are not deleted here: revocation returns the attached keys and the caller
//!   deletes them through the key-value store in the same write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message as _;

use crate::proto::etcdinternal::StoredLease;
use crate::storage::{Batch, Cf, Storage, StorageError};

/// Largest TTL etcd accepts (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Errors of lease operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    /// No lease with that id.
    #[error("lease not found")]
    NotFound,
    /// A lease with that id exists.
    #[error("lease already exists")]
    Exists,
    /// TTL above [`MAX_LEASE_TTL`].
    #[error("too large lease TTL")]
    TtlTooLarge,
    /// This member does not hold leases' clocks (not the leader).
    #[error("not primary")]
    NotPrimary,
}

/// Errors loading leases from disk.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLoadError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored lease did not decode.
    #[error("corrupt lease record: {0}")]
    Decode(#[from] prost::DecodeError),
}

#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

/// A lease as reported by TimeToLive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Lease id.
    pub id: i64,
    /// Granted TTL in seconds.
    pub granted_ttl: i64,
    /// Remaining whole seconds (the granted TTL when this member is not primary).
    pub remaining_ttl: i64,
    /// Attached keys, in key order.
    pub keys: Vec<Vec<u8>>,
}

struct Inner {
    leases: HashMap<i64, Lease>,
    /// The lease each attached key belongs to (the reverse of `Lease::keys`).
    owner: HashMap<Vec<u8>, i64>,
    primary: bool,
}

/// The lease table of this member.
pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

/// The `Cf::Lease` record of a lease granted with `ttl`, as [`Lessor::grant`] writes it
/// (for importing another store's leases).
pub fn stored_record(id: i64, ttl: i64) -> ([u8; 8], Vec<u8>) {
    (lease_key(id), StoredLease { id, ttl }.encode_to_vec())
}

fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

impl Lessor {
    /// An empty table; TTLs below `min_ttl` seconds are raised to it.
    pub fn new(min_ttl: i64) -> Self {
        Lessor {
            inner: Mutex::new(Inner {
                leases: HashMap::new(),
                owner: HashMap::new(),
                primary: false,
            }),
            min_ttl: min_ttl.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every stored lease (without keys; see [`Lessor::attach`]).
    pub fn load(&self, storage: &Storage) -> Result<(), LeaseLoadError> {
        let mut loaded = Vec::new();
        let mut err = None;
        storage.for_each(Cf::Lease, &[], None, |_, v| match StoredLease::decode(v) {
            Ok(l) => {
                loaded.push(l);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        let mut inner = self.lock();
        let primary = inner.primary;
        for l in loaded {
            inner.leases.insert(
                l.id,
                Lease {
                    ttl: l.ttl,
                    expiry: primary.then(|| Instant::now() + secs(l.ttl)),
                    keys: BTreeSet::new(),
                },
            );
        }
        Ok(())
    }

    /// Replaces the whole table with what `storage` holds (after a snapshot from the
    /// leader); keys must be attached again with [`Lessor::attach`].
    pub fn reload(&self, storage: &Storage) -> Result<(), LeaseLoadError> {
        {
            let mut inner = self.lock();
            inner.leases.clear();
            inner.owner.clear();
        }
        self.load(storage)
    }

    /// The TTL a grant of `ttl` seconds actually gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    /// Records a grant (apply path): the lease goes into `batch` and the table.
    pub fn grant(&self, id: i64, ttl: i64, batch: &mut Batch<'_>) -> Result<i64, LeaseError> {
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let ttl = self.effective_ttl(ttl);
        let mut inner = self.lock();
        if inner.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let rec = StoredLease { id, ttl };
        batch.put(Cf::Lease, &lease_key(id), &rec.encode_to_vec());
        let expiry = inner.primary.then(|| Instant::now() + secs(ttl));
        inner.leases.insert(
            id,
            Lease {
                ttl,
                expiry,
                keys: BTreeSet::new(),
            },
        );
        Ok(ttl)
    }

    /// Removes a lease (apply path) and returns its keys, which the caller deletes.
    pub fn revoke(&self, id: i64, batch: &mut Batch<'_>) -> Result<Vec<Vec<u8>>, LeaseError> {
        let mut inner = self.lock();
        let lease = inner.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        batch.delete(Cf::Lease, &lease_key(id));
        for k in &lease.keys {
            inner.owner.remove(k);
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// True when the lease exists.
    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Attaches `key` to lease `id` (no-op for unknown ids).
    /// A key belongs to at most one lease: attaching it moves it from any other.
    pub fn attach(&self, id: i64, key: &[u8]) {
        let mut inner = self.lock();
        if !inner.leases.contains_key(&id) {
            return;
        }
        if let Some(old) = inner.owner.insert(key.to_vec(), id) {
            if old != id {
                if let Some(l) = inner.leases.get_mut(&old) {
                    l.keys.remove(key);
                }
            }
        }
        if let Some(l) = inner.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    /// Detaches `key` from lease `id`.
    pub fn detach(&self, id: i64, key: &[u8]) {
        let mut inner = self.lock();
        if let Some(l) = inner.leases.get_mut(&id) {
            if l.keys.remove(key) {
                inner.owner.remove(key);
            }
        }
    }

    /// Detaches `key` from whatever lease it is attached to (a deleted key), without
    /// the caller reading the key's record.
    pub fn detach_key(&self, key: &[u8]) {
        let mut inner = self.lock();
        if let Some(id) = inner.owner.remove(key) {
            if let Some(l) = inner.leases.get_mut(&id) {
                l.keys.remove(key);
            }
        }
    }

    /// Renews a lease to its full TTL (keep-alive; primary only). Returns the TTL.
    pub fn renew(&self, id: i64) -> Result<i64, LeaseError> {
        let mut inner = self.lock();
        if !inner.primary {
            return Err(LeaseError::NotPrimary);
        }
        let l = inner.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        l.expiry = Some(Instant::now() + secs(l.ttl));
        Ok(l.ttl)
    }

    /// TimeToLive of a lease.
    pub fn info(&self, id: i64) -> Option<LeaseInfo> {
        let inner = self.lock();
        let l = inner.leases.get(&id)?;
        let remaining = match l.expiry {
            Some(e) => e.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => l.ttl,
        };
        Some(LeaseInfo {
            id,
            granted_ttl: l.ttl,
            remaining_ttl: remaining,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// Every lease id, ascending.
    pub fn ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.lock().leases.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Makes this member the clock holder: every lease gets its full TTL from now.
    pub fn promote(&self) {
        let mut inner = self.lock();
        inner.primary = true;
        let now = Instant::now();
        for l in inner.leases.values_mut() {
            l.expiry = Some(now + secs(l.ttl));
        }
    }

    /// Stops expiring leases (lost leadership).
    pub fn demote(&self) {
        let mut inner = self.lock();
        inner.primary = false;
        for l in inner.leases.values_mut() {
            l.expiry = None;
        }
    }

    /// Leases past their expiry (primary only), oldest first, at most `limit`.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let inner = self.lock();
        if !inner.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut v: Vec<(Instant, i64)> = inner
            .leases
            .iter()
            .filter_map(|(id, l)| l.expiry.filter(|e| *e <= now).map(|e| (e, *id)))
            .collect();
        v.sort_unstable();
        v.into_iter().take(limit).map(|(_, id)| id).collect()
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Durability;

    #[test]
    fn grant_attach_revoke_reload() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(dir.path()).unwrap();
        let l = Lessor::new(2);
        let mut b = st.batch();
        assert_eq!(l.grant(5, 1, &mut b), Ok(2));
        assert_eq!(l.grant(6, 100, &mut b), Ok(100));
        assert_eq!(l.grant(5, 10, &mut b), Err(LeaseError::Exists));
        assert_eq!(
            l.grant(7, MAX_LEASE_TTL + 1, &mut b),
            Err(LeaseError::TtlTooLarge)
        );
        st.write(b, Durability::Synced).unwrap();
        l.attach(5, b"k1");
        l.attach(5, b"k0");
        assert_eq!(
            l.info(5).unwrap().keys,
            vec![b"k0".to_vec(), b"k1".to_vec()]
        );
        let mut b = st.batch();
        assert_eq!(l.revoke(5, &mut b).unwrap().len(), 2);
        assert_eq!(l.revoke(5, &mut b), Err(LeaseError::NotFound));
        st.write(b, Durability::Synced).unwrap();
        let l2 = Lessor::new(2);
        l2.load(&st).unwrap();
        assert_eq!(l2.ids(), vec![6]);
        assert_eq!(l2.info(6).unwrap().granted_ttl, 100);
    }

    #[test]
    fn a_key_has_one_owner_and_detaches_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(dir.path()).unwrap();
        let l = Lessor::new(1);
        let mut b = st.batch();
        l.grant(1, 10, &mut b).unwrap();
        l.grant(2, 10, &mut b).unwrap();
        l.attach(1, b"a");
        l.attach(1, b"b");
        // Re-attaching to another lease moves the key.
        l.attach(2, b"a");
        assert_eq!(l.info(1).unwrap().keys, vec![b"b".to_vec()]);
        assert_eq!(l.info(2).unwrap().keys, vec![b"a".to_vec()]);
        l.detach_key(b"a");
        l.detach_key(b"nope");
        assert!(l.info(2).unwrap().keys.is_empty());
        // A revoked lease's keys have no owner left.
        assert_eq!(l.revoke(1, &mut b).unwrap(), vec![b"b".to_vec()]);
        l.attach(2, b"b");
        l.detach_key(b"b");
        assert!(l.info(2).unwrap().keys.is_empty());
    }

    #[test]
    fn only_primary_expires_and_renews() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(dir.path()).unwrap();
        let l = Lessor::new(1);
        let mut b = st.batch();
        l.grant(1, 1, &mut b).unwrap();
        assert_eq!(l.renew(1), Err(LeaseError::NotPrimary));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(l.expired(10).is_empty());
        l.promote();
        assert!(l.expired(10).is_empty());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.expired(10), vec![1]);
        assert_eq!(l.renew(1), Ok(1));
        assert!(l.expired(10).is_empty());
        assert_eq!(l.renew(2), Err(LeaseError::NotFound));
    }
}
