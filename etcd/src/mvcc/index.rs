//! The in-memory index: user key -> [`KeyIndex`], ordered by key.
//!
//! Holds only revisions; values live in RocksDB. Every record in the `kv` column family
//! is represented here (restored by [`Index::restore`]), so compaction can compute the
//! records to delete from the index alone.

use std::collections::BTreeMap;

use super::key_index::{Found, KeyIndex};
use super::key_range::bounds;
use super::revision::Revision;

/// Ordered map of every key with retained history, plus the number of live keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    live: usize,
}

impl Index {
    /// The key as of main revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key).and_then(|ki| ki.get(at))
    }

    /// The key at the newest revision.
    pub fn latest(&self, key: &[u8]) -> Option<Found> {
        self.keys.get(key).and_then(KeyIndex::latest)
    }

    /// Keys of the range (etcd conventions) that exist at `at`, in key order.
    pub fn iter_at<'a>(
        &'a self,
        start: &'a [u8],
        range_end: &'a [u8],
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], Found)> + 'a {
        bounds(start, range_end)
            .into_iter()
            .flat_map(move |b| self.keys.range::<[u8], _>(b))
            .filter_map(move |(k, ki)| ki.get(at).map(|f| (k.as_slice(), f)))
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        let created = match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev);
                self.keys.insert(key.to_vec(), ki);
                true
            }
        };
        if created {
            self.live += 1;
        }
    }

    /// Records a deletion of `key` at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        let ki = self.keys.entry(key.to_vec()).or_default();
        if ki.tombstone(rev) {
            self.live = self.live.saturating_sub(1);
        }
    }

    /// Replays one record read from disk (records must come in revision order). For a
    /// put, `created` and `version` come from the stored value.
    pub fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: i64,
        version: i64,
    ) {
        if tombstone {
            self.tombstone(key, rev);
            return;
        }
        let ki = self.keys.entry(key.to_vec()).or_default();
        let was_live = ki.is_live();
        ki.restore_put(rev, created, version);
        if !was_live {
            self.live += 1;
        }
    }

    /// Drops history before `at` (see [`KeyIndex::compact`]); returns the dropped records.
    pub fn compact(&mut self, at: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut removed);
            !ki.is_empty()
        });
        removed
    }

    /// Number of keys that exist at the newest revision.
    pub fn live_keys(&self) -> usize {
        self.live
    }

    /// Number of keys with any retained history (live or not).
    #[cfg(test)]
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_count_and_range() {
        let mut idx = Index::default();
        idx.put(b"a", Revision::new(2, 0));
        idx.put(b"b", Revision::new(2, 1));
        idx.put(b"a", Revision::new(3, 0));
        idx.tombstone(b"b", Revision::new(4, 0));
        idx.put(b"c", Revision::new(5, 0));
        assert_eq!(idx.live_keys(), 2);
        let at3: Vec<_> = idx
            .iter_at(b"a", b"\0", 3)
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(at3, vec![b"a".to_vec(), b"b".to_vec()]);
        let now: Vec<_> = idx
            .iter_at(b"\0", b"\0", 5)
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(now, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(idx.iter_at(b"b", b"a", 5).count(), 0);
        let removed = idx.compact(5);
        assert_eq!(removed.len(), 3);
        assert_eq!(idx.tracked_keys(), 2);
        assert_eq!(idx.live_keys(), 2);
    }
}
