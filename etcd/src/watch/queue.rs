//! The outbound queue of one client watch stream.
//!
//! The hub pushes messages; the stream's sender takes them one at a time, when the
//! connection can take more. While messages wait, the events of a watcher are merged into
//! its waiting `Events` message (as etcd batches the events of a watcher that fell behind),
//! so a slow reader gets fewer, larger responses instead of a backlog of one response per
//! watcher per revision. Merging never reorders: a watcher's events are only appended to a
//! message that no control message (created, canceled, progress) has been queued after.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::WatchMessage;
use crate::proto::mvccpb::Event;

/// A waiting `Events` message stops taking more events at this many events...
const MERGE_MAX_EVENTS: usize = 1000;
/// ...or at about this many encoded bytes of events.
const MERGE_MAX_BYTES: usize = 1 << 20;

/// About the encoded size of an event (its keys and values plus room for the numbers),
/// without walking every field as an exact `encoded_len` would.
fn approx_len(e: &Event) -> usize {
    let kv = |kv: &Option<crate::proto::mvccpb::KeyValue>| {
        kv.as_ref()
            .map_or(0, |kv| kv.key.len() + kv.value.len() + 40)
    };
    kv(&e.kv) + kv(&e.prev_kv) + 4
}

/// The stream was closed: its reader is gone, nothing more is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("watch stream closed")]
pub struct Closed;

/// Where a watcher's mergeable `Events` message sits.
struct Open {
    /// Absolute position (see [`QueueInner::base`]).
    at: u64,
    /// Encoded bytes of its events so far.
    bytes: usize,
}

#[derive(Default)]
struct QueueInner {
    msgs: VecDeque<WatchMessage>,
    /// Absolute position of `msgs[0]`: positions keep counting as messages are taken.
    base: u64,
    /// Watchers whose last queued message is a mergeable `Events` message.
    open: FxHashMap<i64, Open>,
    closed: bool,
}

/// Messages for one client stream, in the order they were pushed, merged per watcher
/// while they wait. Shared by the hub (producer) and the stream's sender (consumer).
#[derive(Default)]
pub struct StreamQueue {
    inner: Mutex<QueueInner>,
    wake: Notify,
}

impl StreamQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message without waking the reader. Returns `Ok(true)` if the queue was
    /// empty (the caller must call [`StreamQueue::wake`] once it has queued what it has),
    /// `Err(Closed)` if the reader is gone.
    pub fn push_quiet(&self, msg: WatchMessage) -> Result<bool, Closed> {
        let mut q = self.lock();
        if q.closed {
            return Err(Closed);
        }
        let was_empty = q.msgs.is_empty();
        match msg {
            WatchMessage::Events {
                watch_id,
                revision,
                events,
                fragment,
            } => q.push_events(watch_id, revision, events, fragment),
            WatchMessage::Progress { watch_id: -1, .. } => {
                q.open.clear();
                q.msgs.push_back(msg);
            }
            WatchMessage::Created { watch_id, .. }
            | WatchMessage::Canceled { watch_id, .. }
            | WatchMessage::Progress { watch_id, .. } => {
                q.open.remove(&watch_id);
                q.msgs.push_back(msg);
            }
            WatchMessage::CreateFailed { .. } => q.msgs.push_back(msg),
        }
        Ok(was_empty)
    }

    /// Queues a message and wakes the reader if needed.
    pub fn push(&self, msg: WatchMessage) -> Result<(), Closed> {
        if self.push_quiet(msg)? {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the reader (after [`StreamQueue::push_quiet`] returned `Ok(true)`).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ends the stream: pushes fail from now on; the reader gets what is queued, then
    /// `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Takes the oldest message: `Ok(None)` if there is none yet, `Err(Closed)` once
    /// closed and empty.
    fn pop(&self) -> Result<Option<WatchMessage>, Closed> {
        let mut q = self.lock();
        let Some(msg) = q.msgs.pop_front() else {
            return if q.closed { Err(Closed) } else { Ok(None) };
        };
        let at = q.base;
        q.base += 1;
        if let WatchMessage::Events { watch_id, .. } = &msg {
            if q.open.get(watch_id).is_some_and(|o| o.at == at) {
                q.open.remove(watch_id);
            }
        }
        Ok(Some(msg))
    }

    /// Waits for the oldest message and takes it; `None` once the queue is closed and
    /// empty. The reader takes one message at a time, when it can send it: whatever
    /// waits behind stays in the queue, where later events can still merge into it.
    pub async fn next(&self) -> Option<WatchMessage> {
        loop {
            match self.pop() {
                Ok(Some(m)) => return Some(m),
                Ok(None) => self.wake.notified().await,
                Err(Closed) => return None,
            }
        }
    }
}

impl QueueInner {
    fn push_events(
        &mut self,
        watch_id: i64,
        revision: i64,
        events: Vec<Arc<Event>>,
        fragment: bool,
    ) {
        let bytes: usize = events.iter().map(|e| approx_len(e)).sum();
        if let Some(open) = self.open.get_mut(&watch_id) {
            let idx = open.at.checked_sub(self.base).map(|i| i as usize);
            if let Some(WatchMessage::Events {
                revision: rev,
                events: evs,
                ..
            }) = idx.and_then(|i| self.msgs.get_mut(i))
            {
                if evs.len() < MERGE_MAX_EVENTS && open.bytes < MERGE_MAX_BYTES {
                    evs.extend(events);
                    *rev = (*rev).max(revision);
                    open.bytes += bytes;
                    return;
                }
            }
        }
        let at = self.base + self.msgs.len() as u64;
        self.msgs.push_back(WatchMessage::Events {
            watch_id,
            revision,
            events,
            fragment,
        });
        self.open.insert(watch_id, Open { at, bytes });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    fn ev(rev: i64) -> Event {
        Event {
            kv: Some(KeyValue {
                key: bytes::Bytes::from_static(b"k"),
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn events(watch_id: i64, revs: &[i64]) -> WatchMessage {
        WatchMessage::Events {
            watch_id,
            revision: *revs.last().unwrap_or(&0),
            events: revs.iter().map(|r| Arc::new(ev(*r))).collect(),
            fragment: false,
        }
    }

    fn shape(msgs: &[WatchMessage]) -> Vec<(i64, &'static str, Vec<i64>, i64)> {
        msgs.iter()
            .map(|m| match m {
                WatchMessage::Events {
                    watch_id,
                    revision,
                    events,
                    ..
                } => (
                    *watch_id,
                    "events",
                    events
                        .iter()
                        .map(|e| e.kv.as_ref().map_or(0, |k| k.mod_revision))
                        .collect(),
                    *revision,
                ),
                WatchMessage::Created { watch_id, revision } => {
                    (*watch_id, "created", vec![], *revision)
                }
                WatchMessage::Canceled {
                    watch_id, revision, ..
                } => (*watch_id, "canceled", vec![], *revision),
                WatchMessage::Progress { watch_id, revision } => {
                    (*watch_id, "progress", vec![], *revision)
                }
                WatchMessage::CreateFailed { revision, .. } => (-1, "failed", vec![], *revision),
            })
            .collect()
    }

    /// Everything queued now.
    fn drain(q: &StreamQueue) -> Vec<WatchMessage> {
        std::iter::from_fn(|| q.pop().ok().flatten()).collect()
    }

    #[test]
    fn waiting_events_of_a_watcher_merge_in_order() {
        let q = StreamQueue::default();
        assert_eq!(q.push_quiet(events(1, &[2])), Ok(true));
        assert_eq!(q.push_quiet(events(2, &[2])), Ok(false));
        q.push(events(1, &[3])).unwrap();
        q.push(events(2, &[3])).unwrap();
        q.push(events(1, &[4, 4])).unwrap();
        let got = drain(&q);
        assert_eq!(
            shape(&got),
            [
                (1, "events", vec![2, 3, 4, 4], 4),
                (2, "events", vec![2, 3], 3)
            ]
        );
        // Nothing merges into what the reader took; what still waits takes more.
        q.push(events(1, &[5])).unwrap();
        q.push(events(2, &[5])).unwrap();
        assert_eq!(
            shape(&[q.pop().unwrap().unwrap()]),
            [(1, "events", vec![5], 5)]
        );
        q.push(events(1, &[6])).unwrap();
        q.push(events(2, &[6])).unwrap();
        assert_eq!(
            shape(&drain(&q)),
            [(2, "events", vec![5, 6], 6), (1, "events", vec![6], 6)]
        );
    }

    #[test]
    fn control_messages_are_barriers() {
        let q = StreamQueue::default();
        q.push(events(1, &[2])).unwrap();
        q.push(events(2, &[2])).unwrap();
        q.push(WatchMessage::Progress {
            watch_id: 2,
            revision: 2,
        })
        .unwrap();
        // Watcher 1 may still merge; watcher 2's progress must stay after its events.
        q.push(events(1, &[3])).unwrap();
        q.push(events(2, &[3])).unwrap();
        q.push(WatchMessage::Canceled {
            watch_id: 1,
            revision: 3,
            compact_revision: 0,
            reason: String::new(),
        })
        .unwrap();
        // A new watcher reusing id 1 never merges into the old one's events.
        q.push(WatchMessage::Created {
            watch_id: 1,
            revision: 3,
        })
        .unwrap();
        q.push(events(1, &[4])).unwrap();
        q.push(WatchMessage::Progress {
            watch_id: -1,
            revision: 4,
        })
        .unwrap();
        q.push(events(2, &[5])).unwrap();
        assert_eq!(
            shape(&drain(&q)),
            [
                (1, "events", vec![2, 3], 3),
                (2, "events", vec![2], 2),
                (2, "progress", vec![], 2),
                (2, "events", vec![3], 3),
                (1, "canceled", vec![], 3),
                (1, "created", vec![], 3),
                (1, "events", vec![4], 4),
                (-1, "progress", vec![], 4),
                (2, "events", vec![5], 5),
            ]
        );
    }

    #[test]
    fn merged_messages_stay_bounded() {
        let q = StreamQueue::default();
        for r in 0..(MERGE_MAX_EVENTS as i64 + 5) {
            q.push(events(7, &[r])).unwrap();
        }
        let got = drain(&q);
        let sizes: Vec<usize> = got
            .iter()
            .map(|m| match m {
                WatchMessage::Events { events, .. } => events.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [MERGE_MAX_EVENTS, 5]);
    }

    #[tokio::test]
    async fn close_delivers_what_is_queued_then_ends() {
        let q = Arc::new(StreamQueue::default());
        q.push(events(1, &[2])).unwrap();
        q.close();
        assert_eq!(q.push(events(1, &[3])), Err(Closed));
        assert!(q.next().await.is_some());
        assert!(q.next().await.is_none());
    }

    #[tokio::test]
    async fn a_reader_waiting_is_woken_by_a_push() {
        let q = Arc::new(StreamQueue::default());
        let reader = tokio::spawn({
            let q = q.clone();
            async move { q.next().await.is_some() }
        });
        tokio::task::yield_now().await;
        q.push(events(1, &[2])).unwrap();
        assert!(reader.await.unwrap());
    }
}
