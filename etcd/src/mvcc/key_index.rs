//! The history of one user key: a list of generations (like etcd's `keyIndex`).
//!
//! A generation runs from the put that created the key to the delete (tombstone) that
//! removed it. Only the last generation may be open (no tombstone). Every generation
//! holds at least one revision: puts, a tombstone, or both.

use super::revision::Revision;

/// What a key looked like at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Revision of the put record holding the value.
    pub rev: Revision,
    /// `create_revision` of the key's generation.
    pub created: i64,
    /// `version` of the key at `rev`.
    pub version: i64,
}

/// One life of a key: from creation to deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Generation {
    /// Main revision of the put that created the generation. 0 for a remnant (a
    /// generation reduced to its tombstone by compaction or restored without its puts).
    created: i64,
    /// Version of `revs[0]`; the version of `revs[i]` is `first_version + i`.
    first_version: i64,
    /// Put revisions, ascending.
    revs: Vec<Revision>,
    /// Revision of the deletion that ended this generation.
    tombstone: Option<Revision>,
}

impl Generation {
    fn open(rev: Revision, created: i64, version: i64) -> Self {
        Generation {
            created,
            first_version: version,
            revs: vec![rev],
            tombstone: None,
        }
    }

    fn remnant(tombstone: Revision) -> Self {
        Generation {
            created: 0,
            first_version: 0,
            revs: Vec::new(),
            tombstone: Some(tombstone),
        }
    }
}

/// All retained revisions of one key, oldest generation first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyIndex {
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// True when no revision of the key is retained (the key can be dropped).
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// True when the key exists at the newest revision.
    pub fn is_live(&self) -> bool {
        self.generations
            .last()
            .is_some_and(|g| g.tombstone.is_none() && !g.revs.is_empty())
    }

    /// The key at the newest revision, if it exists.
    pub fn latest(&self) -> Option<Found> {
        self.get(i64::MAX)
    }

    /// The key as of main revision `at`, if it existed then.
    pub fn get(&self, at: i64) -> Option<Found> {
        for g in self.generations.iter().rev() {
            if g.tombstone.is_some_and(|t| t.main <= at) {
                return None;
            }
            let n = g.revs.partition_point(|r| r.main <= at);
            if n > 0 {
                return Some(Found {
                    rev: g.revs[n - 1],
                    created: g.created,
                    version: g.first_version + (n as i64 - 1),
                });
            }
        }
        None
    }

    /// Appends a generation, growing the list by exactly one: most keys only ever have
    /// one, and a doubling `push` would reserve four (256 bytes) for every key.
    fn push_generation(&mut self, g: Generation) {
        self.generations.reserve_exact(1);
        self.generations.push(g);
    }

    /// Records a put at `rev` (newer than every retained revision). Returns true when
    /// the put created the key (started a new generation).
    pub fn put(&mut self, rev: Revision) -> bool {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.revs.push(rev);
                false
            }
            _ => {
                self.push_generation(Generation::open(rev, rev.main, 1));
                true
            }
        }
    }

    /// Records a deletion at `rev`. Returns true when the key was live (the normal case);
    /// a tombstone for a key that is not live is kept as a remnant generation.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() => {
                g.tombstone = Some(rev);
                true
            }
            _ => {
                self.push_generation(Generation::remnant(rev));
                false
            }
        }
    }

    /// Replays a put record read from disk, whose value says `created` / `version`.
    pub fn restore_put(&mut self, rev: Revision, created: i64, version: i64) {
        match self.generations.last_mut() {
            Some(g) if g.tombstone.is_none() => g.revs.push(rev),
            _ => self.push_generation(Generation::open(rev, created, version)),
        }
    }

    /// Drops history before main revision `at`; pushes every dropped record (revision,
    /// is tombstone) to `removed`.
    ///
    /// Kept: every record with `main >= at`, and the newest record below `at` when it is
    /// a put and the key has no record at `at` itself (it is the value read at `at`).
    /// A tombstone below `at` goes with everything before it. Reads at any revision
    /// `>= at` return what they returned before.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<(Revision, bool)>) {
        let dead = self
            .generations
            .iter()
            .take_while(|g| g.tombstone.is_some_and(|t| t.main < at))
            .count();
        for g in self.generations.drain(..dead) {
            removed.extend(g.revs.into_iter().map(|r| (r, false)));
            removed.extend(g.tombstone.map(|t| (t, true)));
        }
        let Some(g) = self.generations.first_mut() else {
            return;
        };
        let below = g.revs.partition_point(|r| r.main < at);
        let at_or_below = g.revs.partition_point(|r| r.main <= at);
        let has_record_at = at_or_below > below || g.tombstone.is_some_and(|t| t.main == at);
        let drop = if has_record_at {
            below
        } else {
            below.saturating_sub(1)
        };
        if drop == 0 {
            return;
        }
        removed.extend(g.revs.drain(..drop).map(|r| (r, false)));
        if g.revs.is_empty() {
            // Only the tombstone at `at` remains.
            g.created = 0;
            g.first_version = 0;
        } else {
            g.first_version += drop as i64;
        }
    }

    /// Every retained record (revision, is tombstone), oldest first.
    #[cfg(test)]
    pub fn records(&self) -> Vec<(Revision, bool)> {
        let mut out = Vec::new();
        for g in &self.generations {
            out.extend(g.revs.iter().map(|r| (*r, false)));
            out.extend(g.tombstone.map(|t| (t, true)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put 2, put 3, del 4, put 6, put 7, del 8, put 10
    fn sample() -> KeyIndex {
        let mut ki = KeyIndex::default();
        assert!(ki.put(r(2)));
        assert!(!ki.put(r(3)));
        assert!(ki.tombstone(r(4)));
        assert!(ki.put(r(6)));
        ki.put(r(7));
        ki.tombstone(r(8));
        ki.put(r(10));
        ki
    }

    #[test]
    fn get_across_generations() {
        let ki = sample();
        assert_eq!(ki.get(1), None);
        assert_eq!(
            ki.get(2),
            Some(Found {
                rev: r(2),
                created: 2,
                version: 1
            })
        );
        assert_eq!(ki.get(3).map(|f| (f.version, f.created)), Some((2, 2)));
        assert_eq!(ki.get(4), None);
        assert_eq!(ki.get(5), None);
        assert_eq!(
            ki.get(6).map(|f| (f.rev, f.version, f.created)),
            Some((r(6), 1, 6))
        );
        assert_eq!(ki.get(7).map(|f| f.version), Some(2));
        assert_eq!(ki.get(9), None);
        assert_eq!(ki.get(10).map(|f| (f.version, f.created)), Some((1, 10)));
        assert_eq!(ki.latest().map(|f| f.rev), Some(r(10)));
        assert!(ki.is_live());
    }

    #[test]
    fn compact_keeps_reads_at_and_after() {
        for at in 1..=11 {
            let mut ki = sample();
            let before: Vec<_> = (at..=12).map(|rev| ki.get(rev)).collect();
            let mut removed = Vec::new();
            ki.compact(at, &mut removed);
            let after: Vec<_> = (at..=12).map(|rev| ki.get(rev)).collect();
            assert_eq!(before, after, "compaction at {at}");
            let mut all = ki.records();
            all.extend(removed.iter().copied());
            all.sort();
            assert_eq!(all, sample().records(), "nothing lost or invented at {at}");
        }
    }

    #[test]
    fn compact_details() {
        let mut ki = sample();
        let mut removed = Vec::new();
        ki.compact(3, &mut removed);
        assert_eq!(removed, vec![(r(2), false)]);
        ki.compact(5, &mut removed);
        // Generation 1 ended by the tombstone at 4 < 5: gone.
        assert_eq!(ki.records()[0], (r(6), false));
        // A tombstone exactly at the compaction revision is kept, alone.
        let mut removed = Vec::new();
        ki.compact(8, &mut removed);
        assert_eq!(removed, vec![(r(6), false), (r(7), false)]);
        assert_eq!(ki.records(), vec![(r(8), true), (r(10), false)]);
        ki.compact(9, &mut removed);
        assert_eq!(ki.records(), vec![(r(10), false)]);
        // A deleted key disappears entirely once compacted past its tombstone.
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.tombstone(r(3));
        assert!(!ki.is_live());
        ki.compact(4, &mut removed);
        assert!(ki.is_empty());
    }

    #[test]
    fn compact_keeps_all_records_at_the_compaction_revision() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(Revision::new(5, 0));
        ki.put(Revision::new(5, 1));
        let mut removed = Vec::new();
        ki.compact(5, &mut removed);
        assert_eq!(removed, vec![(r(2), false)]);
        assert_eq!(ki.get(5).map(|f| (f.rev.sub, f.version)), Some((1, 3)));
    }

    #[test]
    fn restore_matches_live_after_compaction() {
        // After compaction at 8 the live index holds [tomb 8][put 10]. Replaying those
        // records from disk must give an identical index.
        let mut live = sample();
        live.compact(8, &mut Vec::new());
        let mut restored = KeyIndex::default();
        restored.tombstone(r(8));
        restored.restore_put(r(10), 10, 1);
        assert_eq!(live, restored);

        let mut live = sample();
        live.compact(7, &mut Vec::new());
        let mut restored = KeyIndex::default();
        restored.restore_put(r(7), 6, 2);
        restored.tombstone(r(8));
        restored.restore_put(r(10), 10, 1);
        assert_eq!(live, restored);
    }
}
