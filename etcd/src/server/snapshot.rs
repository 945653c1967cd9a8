//! Backend snapshots for `Maintenance.Snapshot`: a consistent RocksDB checkpoint packed
//! as a tar archive (512-byte blocks) followed by its SHA-256, so the stream has etcd's
//! shape (`size % 512 == 32`) that `etcdctl snapshot save` checks.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::storage::Storage;

/// Errors building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Creating the checkpoint failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Writing or reading the archive failed.
    #[error("snapshot archive: {0}")]
    Io(#[from] std::io::Error),
}

/// A finished snapshot file: the archive plus the 32-byte digest trailer.
pub struct SnapshotFile {
    /// The open file, positioned at its start.
    pub file: std::fs::File,
    /// Total bytes (archive + trailer).
    pub size: u64,
}

/// Writes a checkpoint of `storage` into a temporary file under `scratch` and returns it.
pub fn create(storage: &Storage, scratch: &Path) -> Result<SnapshotFile, SnapshotError> {
    std::fs::create_dir_all(scratch)?;
    let tmp = tempfile::Builder::new()
        .prefix("snap-")
        .tempdir_in(scratch)?;
    let cp = tmp.path().join("db");
    storage.checkpoint(&cp)?;
    let mut file = tempfile::tempfile_in(scratch)?;
    {
        let mut tar = tar::Builder::new(&mut file);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.append_dir_all("member/db", &cp)?;
        tar.finish()?;
    }
    // tar pads to 512-byte blocks; the digest covers exactly those bytes.
    file.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    let pad = (512 - len % 512) % 512;
    if pad > 0 {
        let zeros = vec![0u8; pad as usize];
        h.update(&zeros);
        file.write_all(&zeros)?;
    }
    file.write_all(&h.finalize())?;
    file.flush()?;
    let size = len + pad + 32;
    file.seek(SeekFrom::Start(0))?;
    Ok(SnapshotFile { file, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cf, Durability};

    #[test]
    fn snapshot_has_etcd_shape_and_valid_digest() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(&dir.path().join("db")).unwrap();
        let mut b = st.batch();
        b.put(Cf::Kv, b"k", b"v");
        st.write(b, Durability::Synced).unwrap();
        let mut s = create(&st, &dir.path().join("scratch")).unwrap();
        assert_eq!(s.size % 512, 32);
        let mut all = Vec::new();
        s.file.read_to_end(&mut all).unwrap();
        assert_eq!(all.len() as u64, s.size);
        let (body, digest) = all.split_at(all.len() - 32);
        assert_eq!(Sha256::digest(body).as_slice(), digest);
        let mut ar = tar::Archive::new(body);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("CURRENT")), "{names:?}");
    }
}
