//! Change history for watchers: the events of a revision interval, read from disk.

use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::Cf;

use super::key_range::key_in_range;
use super::revision::{RecordKey, Revision};
use super::{decode_kv, load_kv, MvccError, State, Store};

impl Store {
    /// The events of revisions `from_rev..=to_rev` (clamped to the current revision) for
    /// keys in `[key, range_end)` (etcd conventions), in revision order, then sub
    /// revision order.
    ///
    /// PUT events carry the stored KeyValue; DELETE events a KeyValue with only `key` and
    /// `mod_revision` (the deletion revision). Every event except a creation
    /// (`create_revision == mod_revision`) carries `prev_kv`: the key as of
    /// `mod_revision - 1`, omitted when that revision is compacted or the key did not
    /// exist then. These events equal the ones [`Store::publish`] returned.
    ///
    /// With `with_prev` false no `prev_kv` is read (a watcher that did not ask for it).
    ///
    /// Fails with [`MvccError::Compacted`] when `from_rev < compact_revision()`.
    pub fn events(
        &self,
        from_rev: i64,
        to_rev: i64,
        key: &[u8],
        range_end: &[u8],
        with_prev: bool,
    ) -> Result<Vec<Event>, MvccError> {
        let (snap, to) = {
            let st = self.read_state();
            if from_rev < st.compacted {
                return Err(MvccError::Compacted);
            }
            (self.storage.snapshot(), to_rev.min(st.current))
        };
        let from = from_rev.max(1);
        if from > to {
            return Ok(Vec::new());
        }
        let start = Revision::new(from, 0).to_key();
        let end = Revision::new(to + 1, 0).to_key();

        let mut events = Vec::new();
        let mut failure = None;
        snap.for_each(Cf::Kv, &start, Some(&end), |k, v| {
            let decoded = RecordKey::decode(k).and_then(|rk| decode_kv(v).map(|kv| (rk, kv)));
            match decoded {
                Ok((rk, kv)) => {
                    if key_in_range(&kv.key, key, range_end) {
                        events.push(to_event(rk, kv));
                    }
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !with_prev {
            return Ok(events);
        }

        // prev_kv: the key at mod_revision - 1, looked up under the current compaction
        // state. A revision still indexed was on disk when `snap` was taken.
        let prevs: Vec<Option<Revision>> = {
            let st = self.read_state();
            events
                .iter()
                .map(|ev| {
                    let kv = ev.kv.as_ref()?;
                    let creation =
                        ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
                    if creation {
                        return None;
                    }
                    st.prev_record(&kv.key, kv.mod_revision)
                })
                .collect()
        };
        for (ev, prev) in events.iter_mut().zip(prevs) {
            if let Some(rev) = prev {
                ev.prev_kv = Some(load_kv(&snap, rev)?);
            }
        }
        Ok(events)
    }
}

impl Store {
    /// `key` as of `mod_revision - 1`: the `prev_kv` of an event at `mod_revision` (None
    /// when the key did not exist then or that revision is compacted). Events of a write
    /// are published without `prev_kv`; watchers that asked for it read it here, as
    /// etcd's watch streams do.
    pub fn prev_kv(&self, key: &[u8], mod_revision: i64) -> Result<Option<KeyValue>, MvccError> {
        let (rev, snap) = {
            let st = self.read_state();
            match st.prev_record(key, mod_revision) {
                Some(rev) => (rev, self.storage.snapshot()),
                None => return Ok(None),
            }
        };
        load_kv(&snap, rev).map(Some)
    }
}

impl State {
    /// The record holding `key` as of `mod_revision - 1` (an event's prev_kv), if that
    /// revision is not compacted and the key existed then.
    fn prev_record(&self, key: &[u8], mod_revision: i64) -> Option<Revision> {
        let at = mod_revision - 1;
        if at < self.compacted {
            return None;
        }
        self.index.get(key, at).map(|f| f.rev)
    }
}

/// The event a record stands for (without prev_kv).
fn to_event(rk: RecordKey, kv: KeyValue) -> Event {
    if rk.tombstone {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: kv.key,
                mod_revision: rk.rev.main,
                ..KeyValue::default()
            }),
            prev_kv: None,
        }
    } else {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        }
    }
}
