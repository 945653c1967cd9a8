//! Compaction: dropping history older than a revision.

use crate::storage::{Batch, Cf};

use super::revision::encode_i64;
use super::{MvccError, Store, META_COMPACT_REV};

impl Store {
    /// Compacts history at `rev`: afterwards reads below `rev` fail with
    /// [`MvccError::Compacted`], reads at `rev` or later return what they returned before.
    ///
    /// Per key, every record at revision `>= rev` is kept, plus the newest record below
    /// `rev` when it is a put and the key has no record at `rev` itself; everything older
    /// goes, and a key whose history ends in a deletion below `rev` disappears. (Like
    /// etcd, a deletion exactly at `rev` is kept, so history read from `rev` is complete.)
    ///
    /// The index is pruned and the compaction revision raised immediately; the record
    /// deletions and the new [`META_COMPACT_REV`] go into `batch`, which the caller
    /// writes. Errors: `rev <= compact_revision()` -> [`MvccError::Compacted`];
    /// `rev > current_revision()` -> [`MvccError::FutureRevision`]; nothing changes then.
    pub fn compact(&self, rev: i64, batch: &mut Batch<'_>) -> Result<(), MvccError> {
        let mut st = self.write_state();
        if rev <= st.compacted {
            return Err(MvccError::Compacted);
        }
        if rev > st.current {
            return Err(MvccError::FutureRevision);
        }
        for (r, tombstone) in st.index.compact(rev) {
            batch.delete(Cf::Kv, &r.to_record_key(tombstone));
        }
        batch.put(Cf::Meta, META_COMPACT_REV, &encode_i64(rev));
        st.compacted = rev;
        Ok(())
    }
}
