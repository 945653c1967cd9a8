//! Consistency hash of the key-value history (etcd's HashKV).

use crate::storage::Cf;

use super::range::resolve_revision;
use super::revision::Revision;
use super::{MvccError, Store};

impl Store {
    /// CRC-32 (IEEE) over every record (key bytes, then value bytes, in revision order)
    /// with revision in `(compact_revision, rev]`. `rev <= 0` means the current revision.
    /// Members that applied the same history and compactions get the same hash; the
    /// value survives restarts.
    ///
    /// Returns `(hash, compact revision, hashed revision)`. Errors:
    /// [`MvccError::FutureRevision`] when `rev` is beyond the current revision,
    /// [`MvccError::Compacted`] when it is below the compaction revision.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        let (snap, compacted, at) = {
            let st = self.read_state();
            let at = resolve_revision(rev, st.current, st.compacted)?;
            (self.storage.snapshot(), st.compacted, at)
        };
        let start = Revision::new(compacted + 1, 0).to_key();
        let end = Revision::new(at + 1, 0).to_key();
        let mut hasher = crc32fast::Hasher::new();
        snap.for_each(Cf::Kv, &start, Some(&end), |k, v| {
            hasher.update(k);
            hasher.update(v);
            true
        })?;
        Ok((hasher.finalize(), compacted, at))
    }
}
