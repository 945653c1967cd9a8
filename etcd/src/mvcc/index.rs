//! The in-memory index: user key -> [`KeyIndex`], with the keys also kept in order.
//!
//! Holds only revisions; values live in RocksDB. Every record in the `kv` column family
//! is represented here (restored by [`Index::restore`]), so compaction can compute the
//! records to delete from the index alone.
//!
//! Histories live in a vector of slots. A hash map finds a key's slot, so a point lookup
//! (every put, delete and single-key read) costs a hash and a few memory accesses rather
//! than a descent through an ordered tree of 100,000s of keys, one cache miss per level
//! and compared key; an ordered map of the same keys to the same slots serves ranges
//! without hashing. Both maps share each key's bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::key_index::{Found, KeyIndex};
use super::key_range::bounds;
use super::revision::Revision;

/// Every key with retained history, plus the number of live keys.
///
/// Invariants: `slots` and `order` map the same keys to the same slots; each slot of
/// `histories` is either in `free` (an empty history) or held by exactly one key.
#[derive(Default)]
pub(crate) struct Index {
    slots: HashMap<Arc<[u8]>, usize>,
    order: BTreeMap<Arc<[u8]>, usize>,
    histories: Histories,
    free: Vec<usize>,
    live: usize,
}

/// Key histories by slot number, in chunks of [`CHUNK`]: growing copies nothing and
/// reserves at most one chunk ahead (a doubling vector reserves up to the same again).
#[derive(Default)]
struct Histories {
    chunks: Vec<Vec<KeyIndex>>,
    len: usize,
}

/// Histories per chunk (64 KiB of them).
const CHUNK: usize = 1024;

impl Histories {
    fn get(&self, slot: usize) -> Option<&KeyIndex> {
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)
    }

    fn get_mut(&mut self, slot: usize) -> Option<&mut KeyIndex> {
        self.chunks.get_mut(slot / CHUNK)?.get_mut(slot % CHUNK)
    }

    /// Number of slots (used or free).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Stores `ki` in a new slot and returns it.
    fn push(&mut self, ki: KeyIndex) -> usize {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(ki),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(ki);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        self.len - 1
    }
}

/// Equal when the same keys have the same histories (slot numbers do not matter).
impl PartialEq for Index {
    fn eq(&self, other: &Self) -> bool {
        self.live == other.live
            && self.order.len() == other.order.len()
            && self.in_order().eq(other.in_order())
    }
}

impl Eq for Index {}

/// Shows the histories in key order (the same text for equal indexes).
impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("keys", &DebugInOrder(self))
            .field("live", &self.live)
            .finish()
    }
}

/// The histories of an [`Index`] as a map in key order.
struct DebugInOrder<'a>(&'a Index);

impl std::fmt::Debug for DebugInOrder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.in_order()).finish()
    }
}

impl Index {
    /// Every tracked key with its history, in key order.
    fn in_order(&self) -> impl Iterator<Item = (&[u8], Option<&KeyIndex>)> {
        self.order
            .iter()
            .map(|(k, &slot)| (&k[..], self.histories.get(slot)))
    }

    /// The history of `key`, if it is tracked.
    fn history(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.slots
            .get(key)
            .and_then(|&slot| self.histories.get(slot))
    }

    /// The key as of main revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.history(key).and_then(|ki| ki.get(at))
    }

    /// The key at the newest revision.
    pub fn latest(&self, key: &[u8]) -> Option<Found> {
        self.history(key).and_then(KeyIndex::latest)
    }

    /// Keys of the range (etcd conventions) that exist at `at`, in key order.
    pub fn iter_at<'a>(
        &'a self,
        start: &'a [u8],
        range_end: &'a [u8],
        at: i64,
    ) -> impl Iterator<Item = (&'a [u8], Found)> + 'a {
        // A single key needs no walk through the ordered keys.
        let single = range_end
            .is_empty()
            .then(|| self.slots.get_key_value(start))
            .flatten()
            .into_iter();
        let ordered = (!range_end.is_empty())
            .then(|| bounds(start, range_end))
            .flatten()
            .into_iter()
            .flat_map(move |b| self.order.range::<[u8], _>(b));
        single.chain(ordered).filter_map(move |(k, &slot)| {
            let found = self.histories.get(slot)?.get(at)?;
            Some((&k[..], found))
        })
    }

    /// Runs `f` on the history of `key`, tracking the key first (with an empty history)
    /// when it is not tracked yet.
    fn with_entry<R>(&mut self, key: &[u8], f: impl FnOnce(&mut KeyIndex) -> R) -> R {
        if let Some(ki) = self
            .slots
            .get(key)
            .and_then(|&slot| self.histories.get_mut(slot))
        {
            return f(ki);
        }
        let mut ki = KeyIndex::default();
        let out = f(&mut ki);
        let reused = self.free.pop().and_then(|slot| {
            let free = self.histories.get_mut(slot)?;
            *free = std::mem::take(&mut ki);
            Some(slot)
        });
        let slot = match reused {
            Some(slot) => slot,
            None => self.histories.push(ki),
        };
        let shared: Arc<[u8]> = Arc::from(key);
        self.order.insert(Arc::clone(&shared), slot);
        self.slots.insert(shared, slot);
        out
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        if self.with_entry(key, |ki| ki.put(rev)) {
            self.live += 1;
        }
    }

    /// Records a deletion of `key` at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        if self.with_entry(key, |ki| ki.tombstone(rev)) {
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
        let was_live = self.with_entry(key, |ki| {
            let was_live = ki.is_live();
            ki.restore_put(rev, created, version);
            was_live
        });
        if !was_live {
            self.live += 1;
        }
    }

    /// Drops history before `at` (see [`KeyIndex::compact`]); returns the dropped records.
    /// Keys left without history stop being tracked and their slots are reused.
    pub fn compact(&mut self, at: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        let mut gone = Vec::new();
        for (k, &slot) in &self.order {
            if let Some(ki) = self.histories.get_mut(slot) {
                ki.compact(at, &mut removed);
                if ki.is_empty() {
                    gone.push((Arc::clone(k), slot));
                }
            }
        }
        for (k, slot) in gone {
            self.order.remove(&k);
            self.slots.remove(&k);
            if let Some(ki) = self.histories.get_mut(slot) {
                // Give back the emptied history's memory.
                *ki = KeyIndex::default();
            }
            self.free.push(slot);
        }
        removed
    }

    /// Number of keys that exist at the newest revision.
    pub fn live_keys(&self) -> usize {
        self.live
    }

    /// Number of keys with any retained history (live or not).
    #[cfg(test)]
    pub fn tracked_keys(&self) -> usize {
        self.slots.len()
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

    #[test]
    fn single_keys_and_ordered_keys_agree_through_compaction() {
        let mut idx = Index::default();
        idx.put(b"k2", Revision::new(2, 0));
        idx.put(b"k1", Revision::new(3, 0));
        idx.tombstone(b"k2", Revision::new(4, 0));
        idx.tombstone(b"never", Revision::new(5, 0));
        let one = |idx: &Index, k: &'static [u8], at| -> Vec<i64> {
            idx.iter_at(k, b"", at).map(|(_, f)| f.rev.main).collect()
        };
        assert_eq!(one(&idx, b"k2", 3), vec![2]);
        assert_eq!(one(&idx, b"k2", 4), Vec::<i64>::new());
        assert_eq!(one(&idx, b"k1", 2), Vec::<i64>::new());
        assert_eq!(one(&idx, b"k1", 5), vec![3]);
        assert_eq!(one(&idx, b"k3", 5), Vec::<i64>::new());
        // The ordered walk sees the same keys, in key order.
        let all: Vec<_> = idx
            .iter_at(b"\0", b"\0", 3)
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(all, vec![b"k1".to_vec(), b"k2".to_vec()]);
        // Deleted keys drop out of both structures when compacted away.
        idx.compact(6);
        assert_eq!(idx.tracked_keys(), 1);
        assert_eq!(idx.order.len(), 1);
        assert_eq!(idx.free.len(), 2);
        // A new key takes a freed slot; the survivor keeps its history.
        idx.put(b"k0", Revision::new(7, 0));
        assert_eq!(idx.free.len(), 1);
        assert_eq!(idx.histories.len(), 3);
        assert_eq!(one(&idx, b"k0", 7), vec![7]);
        assert_eq!(one(&idx, b"k1", 7), vec![3]);
        let all: Vec<_> = idx
            .iter_at(b"\0", b"\0", 6)
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(all, vec![b"k1".to_vec()]);
        assert_eq!(one(&idx, b"k2", 6), Vec::<i64>::new());
    }

    #[test]
    fn many_keys_across_chunks() {
        let mut idx = Index::default();
        let n = 2 * CHUNK + 5;
        for i in 0..n {
            idx.put(
                format!("k{i:05}").as_bytes(),
                Revision::new(i as i64 + 2, 0),
            );
        }
        assert_eq!(idx.histories.len(), n);
        assert_eq!(idx.histories.chunks.len(), 3);
        for i in [0, CHUNK - 1, CHUNK, n - 1] {
            let key = format!("k{i:05}");
            assert_eq!(
                idx.latest(key.as_bytes()).map(|f| f.rev.main),
                Some(i as i64 + 2),
                "{key}"
            );
        }
        let at = n as i64 + 2;
        assert_eq!(idx.iter_at(b"k", b"l", at).count(), n);
        assert_eq!(idx.live_keys(), n);
    }
}
