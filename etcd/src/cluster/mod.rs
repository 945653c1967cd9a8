//! Cluster membership: member and cluster IDs derived as etcd derives them, and the
//! member table kept in the `members` column family.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use prost::Message as _;
use sha1::{Digest, Sha1};

use crate::proto::etcdinternal::StoredMember;
use crate::proto::etcdserverpb::Member;
use crate::storage::{Batch, Cf, Durability, Snapshot, Storage, StorageError};

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs
/// concatenated, then the cluster token, then (for runtime additions) the Unix time.
pub fn member_id(peer_urls: &[String], token: &str, unix_secs: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    if let Some(t) = unix_secs {
        h.update(t.to_string().as_bytes());
    }
    first_u64(&h.finalize())
}

/// etcd's cluster ID: the first 8 bytes of SHA-1 over the sorted member IDs, each as
/// 8 big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(d: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
/// Prefix of the keys recording removed member IDs (`removed/` + 8 big-endian bytes),
/// kept forever as etcd keeps its `members_removed` bucket.
const REMOVED_PREFIX: &[u8] = b"removed/";

fn removed_key(id: u64) -> Vec<u8> {
    let mut k = REMOVED_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// What the `members` column family holds.
struct Table {
    cluster_id: u64,
    members: BTreeMap<u64, StoredMember>,
    removed: BTreeSet<u64>,
}

/// Errors of the membership table.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored record did not decode.
    #[error("corrupt member record: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// The members of the cluster as this member knows them.
pub struct Membership {
    cluster_id: RwLock<u64>,
    members: RwLock<BTreeMap<u64, StoredMember>>,
    /// IDs of members removed from the cluster; they can never come back.
    removed: RwLock<BTreeSet<u64>>,
    /// Bumped on every change of the table (for the peer transport to follow).
    version: tokio::sync::watch::Sender<u64>,
}

impl Membership {
    /// Loads the table; empty if the member was never bootstrapped.
    pub fn load(storage: &Storage) -> Result<Self, MembershipError> {
        let t = Self::read(storage)?;
        Ok(Membership {
            cluster_id: RwLock::new(t.cluster_id),
            members: RwLock::new(t.members),
            removed: RwLock::new(t.removed),
            version: tokio::sync::watch::channel(0).0,
        })
    }

    /// Replaces the table with what `storage` holds (after a snapshot from the leader).
    pub fn reload(&self, storage: &Storage) -> Result<(), MembershipError> {
        let t = Self::read(storage)?;
        if let Ok(mut c) = self.cluster_id.write() {
            *c = t.cluster_id;
        }
        if let Ok(mut m) = self.members.write() {
            *m = t.members;
        }
        if let Ok(mut r) = self.removed.write() {
            *r = t.removed;
        }
        self.changed();
        Ok(())
    }

    /// Notified (the value grows) whenever the table changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Records a new member (apply path of MemberAdd).
    pub fn add(&self, m: StoredMember, batch: &mut Batch<'_>) {
        batch.put(Cf::Members, &m.id.to_be_bytes(), &m.encode_to_vec());
        if let Ok(mut t) = self.members.write() {
            t.insert(m.id, m);
        }
        self.changed();
    }

    /// Forgets a member (apply path of MemberRemove) and records its ID as removed for
    /// good (see [`is_removed`](Self::is_removed)); true if it was known.
    pub fn remove(&self, id: u64, batch: &mut Batch<'_>) -> bool {
        batch.delete(Cf::Members, &id.to_be_bytes());
        batch.put(Cf::Members, &removed_key(id), &[]);
        if let Ok(mut r) = self.removed.write() {
            r.insert(id);
        }
        let known = self
            .members
            .write()
            .map(|mut t| t.remove(&id).is_some())
            .unwrap_or(false);
        self.changed();
        known
    }

    /// Turns a learner into a voter (apply path of MemberPromote).
    pub fn promote(&self, id: u64, batch: &mut Batch<'_>) {
        if let Ok(mut t) = self.members.write() {
            if let Some(m) = t.get_mut(&id) {
                m.is_learner = false;
                batch.put(Cf::Members, &id.to_be_bytes(), &m.encode_to_vec());
            }
        }
        self.changed();
    }

    /// Replaces a member's peer URLs (apply path of MemberUpdate).
    pub fn update_peer_urls(&self, id: u64, peer_urls: &[String], batch: &mut Batch<'_>) {
        if let Ok(mut t) = self.members.write() {
            if let Some(m) = t.get_mut(&id) {
                m.peer_urls = peer_urls.to_vec();
                batch.put(Cf::Members, &id.to_be_bytes(), &m.encode_to_vec());
            }
        }
        self.changed();
    }

    /// Every member's stored record, by ID.
    pub fn records(&self) -> Vec<StoredMember> {
        self.members
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks this data dir as a member of cluster `cid` with `members` (a member
    /// joining a running cluster learns both from its peers).
    pub fn join(
        &self,
        storage: &Storage,
        cid: u64,
        members: Vec<StoredMember>,
    ) -> Result<(), MembershipError> {
        let mut b = storage.batch();
        b.put(Cf::Members, CLUSTER_ID_KEY, &cid.to_be_bytes());
        for m in &members {
            b.put(Cf::Members, &m.id.to_be_bytes(), &m.encode_to_vec());
        }
        storage.write(b, Durability::Synced)?;
        if let Ok(mut c) = self.cluster_id.write() {
            *c = cid;
        }
        if let Ok(mut t) = self.members.write() {
            for m in members {
                t.insert(m.id, m);
            }
        }
        self.changed();
        Ok(())
    }

    /// The members and removed member IDs `snap` holds (for a backup in etcd's layout).
    pub fn stored(snap: &Snapshot<'_>) -> Result<(Vec<StoredMember>, Vec<u64>), MembershipError> {
        let t = Self::table(|f| snap.for_each(Cf::Members, &[], None, f))?;
        Ok((
            t.members.into_values().collect(),
            t.removed.into_iter().collect(),
        ))
    }

    fn read(storage: &Storage) -> Result<Table, MembershipError> {
        Self::table(|f| storage.for_each(Cf::Members, &[], None, f))
    }

    /// Builds the table from the `Cf::Members` records that `visit` feeds to its callback.
    fn table(
        visit: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StorageError>,
    ) -> Result<Table, MembershipError> {
        let mut members = BTreeMap::new();
        let mut removed = BTreeSet::new();
        let mut cid = 0;
        let mut err = None;
        visit(&mut |k, v| {
            if k == CLUSTER_ID_KEY {
                if v.len() == 8 {
                    cid = first_u64(v);
                }
                return true;
            }
            if let Some(id) = k.strip_prefix(REMOVED_PREFIX) {
                if id.len() == 8 {
                    removed.insert(first_u64(id));
                }
                return true;
            }
            match StoredMember::decode(v) {
                Ok(m) => {
                    members.insert(m.id, m);
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        Ok(Table {
            cluster_id: cid,
            members,
            removed,
        })
    }

    /// Whether member `id` was removed from the cluster (as this member has applied
    /// it). Persisted, carried by snapshots, never forgotten: a removed ID is refused
    /// for good. Cheap enough to ask for every peer message.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed
            .read()
            .map(|r| r.contains(&id))
            .unwrap_or(false)
    }

    /// True when no member was ever recorded (a fresh data dir).
    pub fn is_empty(&self) -> bool {
        self.members.read().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// Records the initial members and cluster ID (bootstrap of a new cluster).
    pub fn bootstrap(
        &self,
        storage: &Storage,
        members: Vec<StoredMember>,
    ) -> Result<(), MembershipError> {
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let cid = cluster_id(&ids);
        let mut b = storage.batch();
        b.put(Cf::Members, CLUSTER_ID_KEY, &cid.to_be_bytes());
        for m in &members {
            b.put(Cf::Members, &m.id.to_be_bytes(), &m.encode_to_vec());
        }
        storage.write(b, Durability::Synced)?;
        if let Ok(mut c) = self.cluster_id.write() {
            *c = cid;
        }
        if let Ok(mut t) = self.members.write() {
            for m in members {
                t.insert(m.id, m);
            }
        }
        Ok(())
    }

    /// The cluster ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.read().map(|c| *c).unwrap_or(0)
    }

    /// Sets a member's published name and client URLs (apply path).
    pub fn set_attributes(
        &self,
        id: u64,
        name: &str,
        client_urls: &[String],
        batch: &mut Batch<'_>,
    ) {
        if let Ok(mut t) = self.members.write() {
            if let Some(m) = t.get_mut(&id) {
                m.name = name.to_string();
                m.client_urls = client_urls.to_vec();
                batch.put(Cf::Members, &id.to_be_bytes(), &m.encode_to_vec());
            }
        }
    }

    /// One member.
    pub fn get(&self, id: u64) -> Option<StoredMember> {
        self.members.read().ok()?.get(&id).cloned()
    }

    /// Whether member `id` is a learner (false for an unknown member); checked on every
    /// request, so it copies nothing.
    pub fn is_learner(&self, id: u64) -> bool {
        self.members
            .read()
            .map(|t| t.get(&id).is_some_and(|m| m.is_learner))
            .unwrap_or(false)
    }

    /// Every member as the API reports them, by ID.
    pub fn list(&self) -> Vec<Member> {
        self.members
            .read()
            .map(|t| {
                t.values()
                    .map(|m| Member {
                        id: m.id,
                        name: m.name.clone(),
                        peer_ur_ls: m.peer_urls.clone(),
                        client_ur_ls: m.client_urls.clone(),
                        is_learner: m.is_learner,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// IDs of the voting members.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.members
            .read()
            .map(|t| t.values().filter(|m| !m.is_learner).map(|m| m.id).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's well-known IDs of a default single member
    /// (`default=http://localhost:2380`, token `etcd-cluster`).
    #[test]
    fn ids_match_etcd_defaults() {
        let id = member_id(&["http://localhost:2380".into()], "etcd-cluster", None);
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }
}

#[cfg(test)]
mod membership_tests {
    use super::*;

    fn member(id: u64, learner: bool) -> StoredMember {
        StoredMember {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    /// A fresh data dir bootstrapped with voters 1 and 2.
    fn two_voters() -> (tempfile::TempDir, Storage, Membership) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let m = Membership::load(&storage).unwrap();
        m.bootstrap(&storage, vec![member(1, false), member(2, false)])
            .unwrap();
        (dir, storage, m)
    }

    #[test]
    fn changes_persist_and_notify() {
        let (_dir, storage, m) = two_voters();
        let mut changes = m.subscribe();
        let mut b = storage.batch();
        m.add(member(3, true), &mut b);
        storage.write(b, Durability::Synced).unwrap();
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(m.voter_ids(), vec![1, 2]);
        let mut b = storage.batch();
        m.promote(3, &mut b);
        assert!(m.remove(1, &mut b));
        m.update_peer_urls(2, &["http://10.0.1.2:2380".into()], &mut b);
        storage.write(b, Durability::Synced).unwrap();
        assert!(changes.has_changed().unwrap());
        let reloaded = Membership::load(&storage).unwrap();
        assert_eq!(reloaded.voter_ids(), vec![2, 3]);
        assert_eq!(
            reloaded.get(2).unwrap().peer_urls,
            vec!["http://10.0.1.2:2380".to_string()]
        );
        assert_eq!(reloaded.cluster_id(), m.cluster_id());
    }

    #[test]
    fn removed_ids_are_kept_for_good() {
        let (_dir, storage, m) = two_voters();
        assert!(!m.is_removed(2));
        let mut b = storage.batch();
        assert!(m.remove(2, &mut b));
        storage.write(b, Durability::Synced).unwrap();
        assert!(m.is_removed(2));
        assert!(!m.is_removed(1));

        let reloaded = Membership::load(&storage).unwrap();
        assert!(reloaded.is_removed(2), "the removal survives a restart");
        assert!(!reloaded.is_removed(1));
        assert_eq!(reloaded.voter_ids(), vec![1]);
        assert_eq!(reloaded.records().len(), 1);

        // A table replaced from storage (after a snapshot) takes the removed IDs too.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Storage::open(other_dir.path()).unwrap();
        let fresh = Membership::load(&other).unwrap();
        fresh.reload(&storage).unwrap();
        assert!(fresh.is_removed(2));
    }
}
