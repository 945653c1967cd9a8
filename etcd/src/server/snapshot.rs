//! Backend snapshots for `Maintenance.Snapshot`, in etcd's own format: a bbolt file
//! holding etcd's buckets and records, followed by its SHA-256. `etcdctl snapshot save`
//! checks that shape (`size % 512 == 32`), and etcd's `snapshot status` and `snapshot
//! restore` read the file as they read a backup of etcd, so a cluster can move back from
//! this server to etcd; `etcdutl snapshot restore` of this project reads it too.
//!
//! What the file holds, read from one point-in-time view of the store (bucket: records):
//! - `key`: every stored revision, keyed `main` (8 bytes BE) `_` `sub` (8 bytes BE), `t`
//!   appended for a deletion, valued with the `mvccpb.KeyValue` (etcd's layout);
//! - `meta`: `consistent_index` (the applied raft index, 8 bytes BE) and, once compacted,
//!   `finishedCompactRev` / `scheduledCompactRev` (a revision key);
//! - `lease`: lease ID (8 bytes BE) to `leasepb.Lease {ID, TTL}`;
//! - `auth` (`authEnabled`, `authRevision`), `authUsers`, `authRoles`: name to the
//!   `authpb` record (bcrypt hashes as they are);
//! - `alarm`: each raised alarm as an encoded `AlarmMember`;
//! - `members` / `members_removed`: member ID in hex to etcd's JSON of the member / to
//!   `removed`; `cluster` (empty).

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::bbolt_writer::{BoltWriteError, BoltWriter, BucketWriter};
use crate::cluster::{Membership, MembershipError};
use crate::proto::etcdserverpb::AlarmMember;
use crate::storage::{Cf, Snapshot, Storage};

/// Errors building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the store failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Reading the membership failed.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// Writing the bbolt file failed.
    #[error(transparent)]
    Bolt(#[from] BoltWriteError),
    /// Writing or reading the file failed.
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record does not have the expected shape.
    #[error("snapshot: corrupt record: {0}")]
    Corrupt(String),
}

/// A finished snapshot file: the bbolt file plus the 32-byte digest trailer.
pub struct SnapshotFile {
    /// The open file, positioned at its start.
    pub file: std::fs::File,
    /// Total bytes (bbolt file + trailer).
    pub size: u64,
}

/// Writes a snapshot of `storage` into a temporary file under `scratch` and returns it.
pub fn create(storage: &Storage, scratch: &Path) -> Result<SnapshotFile, SnapshotError> {
    std::fs::create_dir_all(scratch)?;
    let file = tempfile::tempfile_in(scratch)?;
    let mut w = BoltWriter::new(BufWriter::with_capacity(1 << 20, file))?;
    write_buckets(&storage.snapshot(), &mut w)?;
    let (out, size) = w.finish()?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    // A bbolt file is whole pages, so the digest follows at a multiple of 512.
    file.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(SnapshotError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(size))?;
    file.write_all(&h.finalize())?;
    file.flush()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(SnapshotFile {
        file,
        size: size + 32,
    })
}

/// etcd's revision key (`main` `_` `sub`, `t` for a deletion) of one of our record keys
/// (`main` `sub`, `t` for a deletion).
fn etcd_revision_key(k: &[u8]) -> Option<Vec<u8>> {
    if k.len() != 16 && !(k.len() == 17 && k[16] == b't') {
        return None;
    }
    let mut out = Vec::with_capacity(k.len() + 1);
    out.extend_from_slice(&k[..8]);
    out.push(b'_');
    out.extend_from_slice(&k[8..]);
    Some(out)
}

/// Copies column family `cf` into `bucket`, keys mapped by `key` (`None`: corrupt).
fn copy<W: Write + Seek>(
    snap: &Snapshot<'_>,
    cf: Cf,
    bucket: &mut BucketWriter<'_, W>,
    key: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<(), SnapshotError> {
    let mut err = None;
    snap.for_each(cf, &[], None, |k, v| {
        let res = match key(k) {
            Some(ek) => bucket.put(&ek, v).map_err(SnapshotError::from),
            None => Err(SnapshotError::Corrupt(format!("{cf:?} key {k:?}"))),
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// Writes `records` (sorted here) as bucket `name`.
fn small_bucket<W: Write + Seek>(
    w: &mut BoltWriter<W>,
    name: &[u8],
    mut records: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), SnapshotError> {
    records.sort();
    let mut b = w.bucket(name)?;
    for (k, v) in &records {
        b.put(k, v)?;
    }
    b.finish()?;
    Ok(())
}

fn write_buckets<W: Write + Seek>(
    snap: &Snapshot<'_>,
    w: &mut BoltWriter<W>,
) -> Result<(), SnapshotError> {
    let mut keys = w.bucket(b"key")?;
    copy(snap, Cf::Kv, &mut keys, etcd_revision_key)?;
    keys.finish()?;

    let mut leases = w.bucket(b"lease")?;
    copy(snap, Cf::Lease, &mut leases, |k| Some(k.to_vec()))?;
    leases.finish()?;

    let mut meta = Vec::new();
    if let Some(applied) = snap.get(Cf::Meta, crate::apply::APPLIED_INDEX_KEY)? {
        meta.push((b"consistent_index".to_vec(), applied));
    }
    let compacted = snap
        .get(Cf::Meta, crate::mvcc::META_COMPACT_REV)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, i64::from_be_bytes);
    if compacted > 0 {
        let rev = crate::mvcc::Revision::new(compacted, 0).to_key();
        let rev = etcd_revision_key(&rev).unwrap_or_default();
        meta.push((b"finishedCompactRev".to_vec(), rev.clone()));
        meta.push((b"scheduledCompactRev".to_vec(), rev));
    }
    small_bucket(w, b"meta", meta)?;

    let auth = crate::auth::stored(snap)?;
    small_bucket(
        w,
        b"auth",
        vec![
            (b"authEnabled".to_vec(), vec![u8::from(auth.enabled)]),
            (
                b"authRevision".to_vec(),
                auth.revision.to_be_bytes().to_vec(),
            ),
        ],
    )?;
    small_bucket(w, b"authUsers", auth.users)?;
    small_bucket(w, b"authRoles", auth.roles)?;

    let alarms = crate::apply::alarm::stored(snap)?
        .into_iter()
        .map(|(member_id, alarm)| (AlarmMember { member_id, alarm }.encode_to_vec(), vec![]))
        .collect();
    small_bucket(w, b"alarm", alarms)?;

    let (members, removed) = Membership::stored(snap)?;
    let members = members
        .into_iter()
        .map(|m| {
            let mut json = serde_json::json!({
                "id": m.id,
                "peerURLs": m.peer_urls,
                "name": m.name,
            });
            if !m.client_urls.is_empty() {
                json["clientURLs"] = m.client_urls.into();
            }
            if m.is_learner {
                json["isLearner"] = true.into();
            }
            (
                format!("{:x}", m.id).into_bytes(),
                json.to_string().into_bytes(),
            )
        })
        .collect();
    small_bucket(w, b"members", members)?;
    let removed = removed
        .into_iter()
        .map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()))
        .collect();
    small_bucket(w, b"members_removed", removed)?;
    small_bucket(w, b"cluster", vec![])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Durability;

    #[test]
    fn snapshot_is_a_bbolt_file_in_etcds_layout_with_a_valid_digest() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("db")).unwrap();
        let mut b = st.batch();
        let put = crate::proto::mvccpb::KeyValue {
            key: b"k".to_vec().into(),
            value: b"v".to_vec().into(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            ..Default::default()
        };
        let rev2 = crate::mvcc::Revision::new(2, 0);
        b.put(Cf::Kv, &rev2.to_record_key(false), &put.encode_to_vec());
        let rev3 = crate::mvcc::Revision::new(3, 0);
        b.put(Cf::Kv, &rev3.to_record_key(true), &put.encode_to_vec());
        b.put(Cf::Meta, crate::mvcc::META_COMPACT_REV, &2i64.to_be_bytes());
        b.put(
            Cf::Meta,
            crate::apply::APPLIED_INDEX_KEY,
            &9u64.to_be_bytes(),
        );
        let (lk, lv) = crate::lease::stored_record(7, 60);
        b.put(Cf::Lease, &lk, &lv);
        st.write(b, Durability::Synced).unwrap();

        let mut s = create(&st, &dir.path().join("scratch")).unwrap();
        assert_eq!(s.size % 512, 32);
        let mut all = Vec::new();
        s.file.read_to_end(&mut all).unwrap();
        assert_eq!(all.len() as u64, s.size);
        let (body, digest) = all.split_at(all.len() - 32);
        assert_eq!(Sha256::digest(body).as_slice(), digest);

        let bolt = super::super::bbolt::Bolt::open(body).unwrap();
        let names: Vec<String> = bolt
            .buckets()
            .unwrap()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "alarm",
                "auth",
                "authRoles",
                "authUsers",
                "cluster",
                "key",
                "lease",
                "members",
                "members_removed",
                "meta"
            ]
        );
        let records = |name: &[u8]| bolt.records(name).unwrap();
        let keys = records(b"key");
        let mut want2 = 2u64.to_be_bytes().to_vec();
        want2.push(b'_');
        want2.extend_from_slice(&0u64.to_be_bytes());
        let mut want3 = 3u64.to_be_bytes().to_vec();
        want3.push(b'_');
        want3.extend_from_slice(&0u64.to_be_bytes());
        want3.push(b't');
        assert_eq!(keys[0].0, want2);
        assert_eq!(keys[1].0, want3);
        assert_eq!(keys[0].1, put.encode_to_vec());
        let meta = records(b"meta");
        assert_eq!(
            meta[0],
            (b"consistent_index".to_vec(), 9u64.to_be_bytes().to_vec())
        );
        assert_eq!(meta[1], (b"finishedCompactRev".to_vec(), want2.clone()));
        assert_eq!(records(b"lease"), vec![(lk.to_vec(), lv)]);
        let auth = records(b"auth");
        assert_eq!(auth[0], (b"authEnabled".to_vec(), vec![0]));
    }

    #[test]
    fn a_malformed_record_key_is_an_error_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("db")).unwrap();
        let mut b = st.batch();
        b.put(Cf::Kv, b"short", b"x");
        st.write(b, Durability::Synced).unwrap();
        let err = create(&st, &dir.path().join("scratch")).err().unwrap();
        assert!(matches!(err, SnapshotError::Corrupt(_)), "{err}");
    }
}
