//! Whole-state transfer between members: the state-machine column families (`kv`,
//! `meta`, `lease`, `members`) exported from one consistent point in time and imported
//! in place of the receiver's, as the data of a raft snapshot.
//!
//! Format: the magic `ETCDRS-SNAP1`, then records `cf:u8 klen:u32 key vlen:u32 value`
//! (lengths big-endian), then a trailing SHA-256 of everything before it.

use sha2::{Digest, Sha256};

use super::{Cf, Durability, Result, Storage, StorageError};

const MAGIC: &[u8] = b"ETCDRS-SNAP1";
const STATE_CFS: [Cf; 4] = [Cf::Kv, Cf::Meta, Cf::Lease, Cf::Members];
/// Sorts after every key the server writes (all are far shorter than 64 bytes).
const KEY_SPACE_END: [u8; 64] = [0xff; 64];

fn cf_code(cf: Cf) -> u8 {
    match cf {
        Cf::Raft => 0,
        Cf::Kv => 1,
        Cf::Meta => 2,
        Cf::Lease => 3,
        Cf::Members => 4,
    }
}

fn cf_of(code: u8) -> Option<Cf> {
    STATE_CFS.into_iter().find(|cf| cf_code(*cf) == code)
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Io {
        path: "snapshot".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    }
}

impl Storage {
    /// Exports the state-machine column families as of one point in time, leaving out
    /// the `meta` keys in `local_keys` (facts about this member, not the cluster).
    pub fn export_state(&self, local_keys: &[&[u8]]) -> Result<Vec<u8>> {
        let snap = self.snapshot();
        let mut out = MAGIC.to_vec();
        for cf in STATE_CFS {
            snap.for_each(cf, &[], None, |k, v| {
                if cf == Cf::Meta && local_keys.contains(&k) {
                    return true;
                }
                out.push(cf_code(cf));
                out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
                true
            })?;
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Replaces the state-machine column families with `data` from
    /// [`export_state`](Self::export_state), keeping this member's `local_keys` in
    /// `meta`. One synced write: either all of it lands or none. A damaged `data`
    /// (checksum, framing) is refused before anything is written.
    pub fn import_state(&self, data: &[u8], local_keys: &[&[u8]]) -> Result<()> {
        if data.len() < MAGIC.len() + 32 || !data.starts_with(MAGIC) {
            return Err(corrupt("not a state snapshot"));
        }
        let (body, sum) = data.split_at(data.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("state snapshot checksum mismatch"));
        }
        let mut kept = Vec::new();
        for k in local_keys {
            if let Some(v) = self.get(Cf::Meta, k)? {
                kept.push((k.to_vec(), v));
            }
        }
        let mut b = self.batch();
        for cf in STATE_CFS {
            b.delete_range(cf, &[], &KEY_SPACE_END);
        }
        let mut rest = &body[MAGIC.len()..];
        let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            if rest.len() < n {
                return Err(corrupt("truncated state snapshot"));
            }
            let (a, b) = rest.split_at(n);
            *rest = b;
            Ok(a.to_vec())
        };
        let len = |bytes: Vec<u8>| -> usize {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes);
            u32::from_be_bytes(a) as usize
        };
        while !rest.is_empty() {
            let code = take(&mut rest, 1)?[0];
            let cf = cf_of(code).ok_or_else(|| corrupt("unknown column family in snapshot"))?;
            let kl = len(take(&mut rest, 4)?);
            let k = take(&mut rest, kl)?;
            let vl = len(take(&mut rest, 4)?);
            let v = take(&mut rest, vl)?;
            b.put(cf, &k, &v);
        }
        for (k, v) in kept {
            b.put(Cf::Meta, &k, &v);
        }
        self.write(b, Durability::Synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_import_round_trip_keeps_local_keys() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let a = Storage::open(a_dir.path()).unwrap();
        let b = Storage::open(b_dir.path()).unwrap();
        let mut w = a.batch();
        w.put(Cf::Kv, b"k1", b"v1");
        w.put(Cf::Meta, b"applied", b"7");
        w.put(Cf::Meta, b"local", b"a");
        w.put(Cf::Raft, b"e1", b"entry");
        a.write(w, Durability::Synced).unwrap();
        let mut w = b.batch();
        w.put(Cf::Kv, b"stale", b"x");
        w.put(Cf::Meta, b"local", b"b");
        w.put(Cf::Raft, b"e9", b"mine");
        b.write(w, Durability::Synced).unwrap();

        let data = a.export_state(&[b"local"]).unwrap();
        b.import_state(&data, &[b"local"]).unwrap();
        assert_eq!(b.get(Cf::Kv, b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(b.get(Cf::Kv, b"stale").unwrap(), None);
        assert_eq!(
            b.get(Cf::Meta, b"applied").unwrap().as_deref(),
            Some(&b"7"[..])
        );
        assert_eq!(
            b.get(Cf::Meta, b"local").unwrap().as_deref(),
            Some(&b"b"[..])
        );
        // The raft log is not part of the state.
        assert_eq!(
            b.get(Cf::Raft, b"e9").unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(b.get(Cf::Raft, b"e1").unwrap(), None);
    }

    #[test]
    fn damaged_snapshot_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let mut w = s.batch();
        w.put(Cf::Kv, b"keep", b"1");
        s.write(w, Durability::Synced).unwrap();
        let mut data = s.export_state(&[]).unwrap();
        let n = data.len();
        data[n - 40] ^= 1;
        assert!(s.import_state(&data, &[]).is_err());
        assert!(s.import_state(b"garbage", &[]).is_err());
        assert_eq!(s.get(Cf::Kv, b"keep").unwrap().as_deref(), Some(&b"1"[..]));
    }
}
