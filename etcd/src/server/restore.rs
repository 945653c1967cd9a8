//! `etcdutl snapshot restore`: a new data dir from a backup taken with `etcdctl snapshot
//! save` (Maintenance.Snapshot), for a new cluster, as etcd restores one. The backup is
//! a bbolt file in etcd's layout, taken from this server or from etcd itself (its key
//! history, leases, users, roles and alarms are imported, so a cluster moves from etcd to
//! this server), or a tar of a RocksDB checkpoint, which this server's Snapshot sent
//! before it wrote etcd's format.
//!
//! Guarantees:
//! - The snapshot's SHA-256 trailer is checked before anything is written (unless the
//!   caller skips it, as `--skip-hash-check` does); a damaged file writes nothing.
//! - The restored member keeps the snapshot's keys, revisions, compaction point, leases,
//!   users and roles; its membership is the one given (`--initial-cluster`, with member
//!   and cluster IDs derived from the peer URLs and `--initial-cluster-token` as for a new
//!   cluster), its raft log starts empty, so every member restored from the same snapshot
//!   with the same flags starts the same new cluster.
//! - An existing, non-empty data dir or raft log dir is never touched.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::apply::{APPLIED_INDEX_KEY, LOCAL_MEMBER_KEY};
use crate::cluster::{member_id, Membership};
use crate::proto::etcdinternal::StoredMember;
use crate::storage::{Cf, Durability, Storage};

/// What to restore and for which member.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// `--data-dir` of the restored member (must not exist or be empty).
    pub data_dir: PathBuf,
    /// `--wal-dir` (default `<data-dir>/member/wal`; must not exist or be empty).
    pub wal_dir: Option<PathBuf>,
    /// `--name`.
    pub name: String,
    /// `--initial-cluster`: every member's name and peer URL (a name may repeat).
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-advertise-peer-urls` of this member.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--skip-hash-check`: restore a file without (or with a wrong) SHA-256 trailer.
    pub skip_hash_check: bool,
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The restored member's ID.
    pub member_id: u64,
    /// The new cluster's ID.
    pub cluster_id: u64,
    /// The store revision the snapshot holds.
    pub revision: i64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target exists with content.
    #[error("data-dir {0:?} not empty or could not be read")]
    DataDirNotEmpty(PathBuf),
    /// The snapshot's digest does not match.
    #[error("snapshot file integrity check failed. expected sha256 {expected}, got {got}")]
    Integrity {
        /// The trailer's digest.
        expected: String,
        /// The digest of the content.
        got: String,
    },
    /// Not a snapshot this server wrote.
    #[error("{0}")]
    Invalid(String),
    /// The flags do not describe this member.
    #[error("{0}")]
    Flags(String),
    /// Reading or writing files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The restored store.
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The restored membership.
    #[error("{0}")]
    Membership(#[from] crate::cluster::MembershipError),
    /// The restored key-value store.
    #[error("{0}")]
    Mvcc(#[from] crate::mvcc::MvccError),
}

fn empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the SHA-256 trailer of a snapshot's bytes; returns the archive part.
pub fn verify(bytes: &[u8], skip_hash_check: bool) -> Result<&[u8], RestoreError> {
    if bytes.len() % 512 != 32 {
        if skip_hash_check {
            return Ok(bytes);
        }
        return Err(RestoreError::Invalid(
            "snapshot missing hash but --skip-hash-check=false".into(),
        ));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if !skip_hash_check {
        let got = Sha256::digest(body);
        if got.as_slice() != trailer {
            return Err(RestoreError::Integrity {
                expected: to_hex(trailer),
                got: to_hex(&got),
            });
        }
    }
    Ok(body)
}

/// Unpacks the archive's `member/db/` files into `db_dir`.
fn unpack(body: &[u8], db_dir: &Path) -> Result<usize, RestoreError> {
    std::fs::create_dir_all(db_dir)?;
    let mut archive = tar::Archive::new(body);
    let mut files = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Ok(rel) = path.strip_prefix("member/db") else {
            continue;
        };
        if rel.as_os_str().is_empty() || !entry.header().entry_type().is_file() {
            continue;
        }
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(RestoreError::Invalid(format!(
                "snapshot holds an unsafe path {}",
                path.display()
            )));
        }
        let target = db_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        std::fs::write(&target, data)?;
        files += 1;
    }
    if files == 0 {
        return Err(RestoreError::Invalid(
            "not a snapshot of this server: no member/db files".into(),
        ));
    }
    Ok(files)
}

/// etcd's lease record (`leasepb.Lease`): the fields a restore keeps.
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdLease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
}

/// An etcd revision key: 8 bytes main, `_`, 8 bytes sub (big-endian), `t` for a
/// deletion.
fn etcd_revision(k: &[u8]) -> Option<(i64, i64, bool)> {
    if (k.len() != 17 && k.len() != 18) || k[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(k[0..8].try_into().ok()?);
    let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
    let tombstone = match k.get(17) {
        None => false,
        Some(b't') => true,
        Some(_) => return None,
    };
    Some((main, sub, tombstone))
}

/// Imports a backup in etcd's format (a bbolt file, taken from etcd or from this server):
/// its key history (revisions kept, the compaction point), leases, users, roles, the
/// auth flag and raised alarms, into a new store at `db_dir`. Members and raft state of
/// the old cluster are not carried over (the restore gives the new ones).
pub(super) fn import_etcd(body: &[u8], db_dir: &Path) -> Result<(), RestoreError> {
    use prost::Message as _;
    let invalid = RestoreError::Invalid;
    let bolt = super::bbolt::Bolt::open(body).map_err(invalid)?;
    std::fs::create_dir_all(db_dir)?;
    let storage = Storage::open(db_dir)?;
    let mut batch = storage.batch();
    let mut current = 1i64;
    let mut records = 0usize;
    bolt.for_each(b"key", |k, v| {
        let (main, sub, tombstone) =
            etcd_revision(k).ok_or_else(|| format!("bad revision key {k:?}"))?;
        let mut kv = crate::proto::mvccpb::KeyValue::decode(v).map_err(|e| e.to_string())?;
        if tombstone {
            kv.mod_revision = main;
        }
        let rk = crate::mvcc::Revision::new(main, sub).to_record_key(tombstone);
        batch.put(Cf::Kv, &rk, &kv.encode_to_vec());
        current = current.max(main);
        records += 1;
        Ok(())
    })
    .map_err(invalid)?;
    let mut compacted = 0i64;
    bolt.for_each(b"meta", |k, v| {
        if k == b"finishedCompactRev" {
            if let Some((main, _, _)) = etcd_revision(v) {
                compacted = main;
            }
        }
        Ok(())
    })
    .map_err(invalid)?;
    // A compaction may have removed the records of the newest revisions (a deletion's
    // tombstone); the revision never goes below the compaction point (etcd's rule).
    current = current.max(compacted);
    batch.put(
        Cf::Meta,
        crate::mvcc::META_CURRENT_REV,
        &current.to_be_bytes(),
    );
    if compacted > 0 {
        batch.put(
            Cf::Meta,
            crate::mvcc::META_COMPACT_REV,
            &compacted.to_be_bytes(),
        );
    }
    bolt.for_each(b"lease", |_, v| {
        let l = EtcdLease::decode(v).map_err(|e| e.to_string())?;
        let (k, rec) = crate::lease::stored_record(l.id, l.ttl);
        batch.put(Cf::Lease, &k, &rec);
        Ok(())
    })
    .map_err(invalid)?;
    let (mut enabled, mut auth_revision) = (false, 1u64);
    bolt.for_each(b"auth", |k, v| {
        match k {
            b"authEnabled" => enabled = v == [1],
            b"authRevision" => {
                if let Ok(b) = <[u8; 8]>::try_from(v) {
                    auth_revision = u64::from_be_bytes(b);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(invalid)?;
    bolt.for_each(b"alarm", |k, _| {
        let a = crate::proto::etcdserverpb::AlarmMember::decode(k).map_err(|e| e.to_string())?;
        crate::apply::alarm::import(&mut batch, a.member_id, a.alarm);
        Ok(())
    })
    .map_err(invalid)?;
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    bolt.for_each(b"authUsers", |_, v| {
        users.push(crate::proto::authpb::User::decode(v).map_err(|e| e.to_string())?);
        Ok(())
    })
    .map_err(invalid)?;
    bolt.for_each(b"authRoles", |_, v| {
        roles.push(crate::proto::authpb::Role::decode(v).map_err(|e| e.to_string())?);
        Ok(())
    })
    .map_err(invalid)?;
    crate::auth::import_records(&mut batch, enabled, auth_revision, &users, &roles);
    storage.write(batch, Durability::Synced)?;
    tracing::info!(
        revision = current,
        compact_revision = compacted,
        records,
        users = users.len(),
        roles = roles.len(),
        "imported an etcd backend snapshot"
    );
    Ok(())
}

/// This member's peer URLs in `--initial-cluster`, which must be its advertised ones.
fn own_urls(o: &RestoreOptions) -> Result<Vec<String>, RestoreError> {
    let mut mine: Vec<String> = o
        .initial_cluster
        .iter()
        .filter(|(n, _)| *n == o.name)
        .map(|(_, u)| u.clone())
        .collect();
    if mine.is_empty() {
        return Err(RestoreError::Flags(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            o.name
        )));
    }
    let mut adv = o.initial_advertise_peer_urls.clone();
    mine.sort();
    adv.sort();
    if mine != adv {
        return Err(RestoreError::Flags(format!(
            "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}: they must match",
            o.name,
            mine.join(","),
            adv.join(",")
        )));
    }
    Ok(mine)
}

/// Restores the snapshot into a new data dir (see the module documentation).
pub fn restore(o: &RestoreOptions) -> Result<Restored, RestoreError> {
    let mine = own_urls(o)?;
    let wal_dir = o
        .wal_dir
        .clone()
        .unwrap_or_else(|| o.data_dir.join("member").join("wal"));
    for dir in [&o.data_dir, &wal_dir] {
        if !empty_or_missing(dir) {
            return Err(RestoreError::DataDirNotEmpty(dir.clone()));
        }
    }
    let bytes = std::fs::read(&o.snapshot)?;
    let body = verify(&bytes, o.skip_hash_check)?;
    let db_dir = o.data_dir.join("member").join("db");
    let loaded = if super::bbolt::is_bbolt(body) {
        import_etcd(body, &db_dir)
    } else {
        unpack(body, &db_dir).map(|_| ())
    };
    let written = loaded.and_then(|()| rewrite(o, &mine, &db_dir));
    if written.is_err() {
        // Leave nothing half-restored behind.
        let _ = std::fs::remove_dir_all(&o.data_dir);
    }
    written
}

/// Replaces the snapshot's membership, member identity and raft state with the new
/// cluster's, given by the restore's flags.
fn rewrite(o: &RestoreOptions, mine: &[String], db_dir: &Path) -> Result<Restored, RestoreError> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (n, u) in &o.initial_cluster {
        by_name.entry(n.as_str()).or_default().push(u.clone());
    }
    let members: Vec<StoredMember> = by_name
        .into_iter()
        .map(|(name, urls)| StoredMember {
            id: member_id(&urls, &o.initial_cluster_token, None),
            name: name.to_string(),
            peer_urls: urls,
            client_urls: vec![],
            is_learner: false,
        })
        .collect();
    let id = member_id(mine, &o.initial_cluster_token, None);
    install_membership(db_dir, id, members)
}

/// Makes the store at `db_dir` the data of member `local_id` of a new cluster of
/// `members`: the old membership and raft state go, the applied index starts at 0 (the
/// raft log starts empty), the cluster ID is derived from the members' IDs.
pub(super) fn install_membership(
    db_dir: &Path,
    local_id: u64,
    members: Vec<StoredMember>,
) -> Result<Restored, RestoreError> {
    let storage = Storage::open(db_dir)?;
    let mut batch = storage.batch();
    for cf in [Cf::Members, Cf::Raft] {
        for (k, _) in storage.scan(cf, &[], None)? {
            batch.delete(cf, &k);
        }
    }
    batch.delete(Cf::Meta, APPLIED_INDEX_KEY);
    batch.put(Cf::Meta, LOCAL_MEMBER_KEY, &local_id.to_be_bytes());
    storage.write(batch, Durability::Synced)?;
    let membership = Membership::load(&storage)?;
    membership.bootstrap(&storage, members)?;
    let revision = crate::mvcc::Store::open(storage.clone())?.current_revision();
    storage.flush()?;
    Ok(Restored {
        member_id: local_id,
        cluster_id: membership.cluster_id(),
        revision,
    })
}

/// What `etcdutl snapshot status` shows of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// The key-value store's hash at its revision (as HashKV computes it).
    pub hash: u32,
    /// The store's revision.
    pub revision: i64,
    /// The stored key revisions.
    pub total_keys: usize,
    /// The file's size in bytes.
    pub total_size: u64,
}

/// Checks a snapshot's digest and reads its store (unpacked into a temporary dir).
pub fn status(file: &Path) -> Result<SnapshotStatus, RestoreError> {
    let bytes = std::fs::read(file)?;
    let body = verify(&bytes, false)?;
    let tmp = tempfile::tempdir()?;
    let db_dir = tmp.path().join("db");
    if super::bbolt::is_bbolt(body) {
        import_etcd(body, &db_dir)?;
    } else {
        unpack(body, &db_dir)?;
    }
    let storage = Storage::open(&db_dir)?;
    let store = crate::mvcc::Store::open(storage.clone())?;
    let (hash, _, revision) = store.hash_kv(0)?;
    let total_keys = storage.scan(Cf::Kv, &[], None)?.len();
    Ok(SnapshotStatus {
        hash,
        revision,
        total_keys,
        total_size: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, snapshot: PathBuf) -> RestoreOptions {
        RestoreOptions {
            snapshot,
            data_dir: dir.join("m1.etcd"),
            wal_dir: None,
            name: "m1".into(),
            initial_cluster: vec![
                ("m1".into(), "http://10.0.0.1:2380".into()),
                ("m2".into(), "http://10.0.0.2:2380".into()),
            ],
            initial_cluster_token: "tok".into(),
            initial_advertise_peer_urls: vec!["http://10.0.0.1:2380".into()],
            skip_hash_check: false,
        }
    }

    /// A store with one key at revision 2, applied up to index 77.
    fn source_store(dir: &Path) -> Storage {
        let st = Storage::open(&dir.join("src")).unwrap();
        let store = crate::mvcc::Store::open(st.clone()).unwrap();
        let mut w = store.write();
        w.next_revision();
        w.put(b"k", &b"v"[..], 0).unwrap();
        let mut b = st.batch();
        let p = w.finish(&mut b);
        b.put(Cf::Meta, APPLIED_INDEX_KEY, &77u64.to_be_bytes());
        st.write(b, Durability::Synced).unwrap();
        store.publish(p);
        st
    }

    /// A snapshot of [`source_store`], written as the server does.
    fn snapshot_file(dir: &Path) -> PathBuf {
        let st = source_store(dir);
        let mut s = crate::server::snapshot::create(&st, &dir.join("scratch")).unwrap();
        let mut bytes = Vec::new();
        s.file.read_to_end(&mut bytes).unwrap();
        let path = dir.join("snap.db");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// How many values key `k` has in the restored store `st`.
    fn values_of_k(st: Storage) -> usize {
        let store = crate::mvcc::Store::open(st).unwrap();
        let got = store
            .range(&crate::proto::etcdserverpb::RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .unwrap();
        got.kvs.len()
    }

    #[test]
    fn restores_data_with_a_new_membership() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_file(dir.path());
        let o = options(dir.path(), snap);
        let r = restore(&o).unwrap();
        assert_eq!(r.revision, 2);
        let m1 = member_id(&["http://10.0.0.1:2380".into()], "tok", None);
        let m2 = member_id(&["http://10.0.0.2:2380".into()], "tok", None);
        assert_eq!(r.member_id, m1);
        assert_eq!(r.cluster_id, crate::cluster::cluster_id(&[m1, m2]));
        let st = Storage::open(&o.data_dir.join("member").join("db")).unwrap();
        assert_eq!(crate::apply::load_applied_index(&st).unwrap(), 0);
        let members = Membership::load(&st).unwrap();
        let mut ids = members.voter_ids();
        ids.sort();
        let mut want = vec![m1, m2];
        want.sort();
        assert_eq!(ids, want);
        assert_eq!(values_of_k(st), 1);
        let st = status(&o.snapshot).unwrap();
        assert_eq!((st.revision, st.total_keys), (2, 1));
        // Never over an existing data dir.
        assert!(matches!(restore(&o), Err(RestoreError::DataDirNotEmpty(_))));
    }

    /// Backups taken before the Snapshot RPC wrote etcd's format (a tar of a RocksDB
    /// checkpoint under `member/db`, then its SHA-256) still restore.
    #[test]
    fn restores_a_backup_in_the_earlier_checkpoint_format() {
        let dir = tempfile::tempdir().unwrap();
        let st = source_store(dir.path());
        let cp = dir.path().join("cp");
        st.checkpoint(&cp).unwrap();
        let mut body = Vec::new();
        {
            let mut tar = tar::Builder::new(&mut body);
            tar.append_dir_all("member/db", &cp).unwrap();
            tar.finish().unwrap();
        }
        body.resize(body.len().div_ceil(512) * 512, 0);
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        let snap = dir.path().join("old.db");
        std::fs::write(&snap, &body).unwrap();
        let o = options(dir.path(), snap);
        assert_eq!(restore(&o).unwrap().revision, 2);
        let st = Storage::open(&o.data_dir.join("member").join("db")).unwrap();
        assert_eq!(values_of_k(st), 1);
    }

    #[test]
    fn a_damaged_snapshot_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_file(dir.path());
        let mut bytes = std::fs::read(&snap).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&snap, &bytes).unwrap();
        let o = options(dir.path(), snap);
        let e = restore(&o).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("snapshot file integrity check failed"),
            "{e}"
        );
        assert!(!o.data_dir.exists());
        let mut wrong = options(dir.path(), o.snapshot.clone());
        wrong.name = "m3".into();
        assert!(restore(&wrong)
            .unwrap_err()
            .to_string()
            .contains("couldn't find local name \"m3\""));
    }
}
