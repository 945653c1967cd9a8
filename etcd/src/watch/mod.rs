//! Watchers: streams of key-value change events, live and replayed from history.
//!
//! Each client stream gets a [`WatchStream`]; every message for it (created, events,
//! canceled, progress) goes through one [`StreamQueue`] in the order the hub produced it, so:
//! - a watcher's `created` message precedes its events;
//! - a progress message with revision R follows every event with revision ≤ R of every
//!   watcher on the stream (it is only produced when all of them are synced);
//! - a live ("synced") watcher gets all events of a revision in one message; while its
//!   messages wait for a slow reader, those of later revisions merge into it.
//!
//! A watcher that starts at or below the current revision is "unsynced": a catch-up task
//! replays history from the store until it reaches the hub's revision and then joins the
//! synced set under the hub lock, so no revision is skipped or delivered twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::mvcc::{key_in_range, MvccError, Store};
use crate::proto::mvccpb::{event::EventType, Event};

mod queue;

pub use queue::{Closed, StreamQueue};

/// Replay batches hold at most this many revisions (etcd's limit), never splitting one.
const REPLAY_BATCH_REVISIONS: i64 = 1000;

/// What a watcher asked for.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    /// First key (or the only key).
    pub key: Vec<u8>,
    /// End of the range (etcd conventions).
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 = after the current revision.
    pub start_revision: i64,
    /// Attach the previous kv to events.
    pub prev_kv: bool,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
    /// Send periodic progress notifications.
    pub progress_notify: bool,
    /// The client accepts fragmented responses.
    pub fragment: bool,
}

/// A message to a client stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// A watcher was created.
    Created {
        /// Its id.
        watch_id: i64,
        /// The hub revision at creation.
        revision: i64,
    },
    /// Creation failed (etcd: created + canceled with watch_id -1 and a reason).
    CreateFailed {
        /// etcd's cancel reason.
        reason: String,
        /// Current revision.
        revision: i64,
    },
    /// Events for one watcher.
    Events {
        /// The watcher.
        watch_id: i64,
        /// Hub revision when sent.
        revision: i64,
        /// The events (prev_kv filled only when asked for), shared with the other
        /// watchers they went to.
        events: Vec<Arc<Event>>,
        /// The watcher accepts fragments.
        fragment: bool,
    },
    /// A watcher ended.
    Canceled {
        /// The watcher.
        watch_id: i64,
        /// Current revision.
        revision: i64,
        /// Non-zero when ended because its start revision was compacted.
        compact_revision: i64,
        /// Why (empty for a client cancel).
        reason: String,
    },
    /// Progress: every event up to `revision` has been delivered (`watch_id` -1 for a
    /// requested stream-wide progress).
    Progress {
        /// The watcher, or -1.
        watch_id: i64,
        /// The hub revision.
        revision: i64,
    },
}

struct Watcher {
    spec: WatchSpec,
    /// Next revision this watcher needs.
    next_rev: i64,
    synced: bool,
    /// An event was sent since the last progress tick.
    sent_since_tick: bool,
    queue: Arc<StreamQueue>,
}

struct HubInner {
    revision: i64,
    watchers: HashMap<(u64, i64), Watcher>,
}

/// All watchers of this member.
pub struct WatchHub {
    inner: Mutex<HubInner>,
    store: Arc<Store>,
    next_stream: AtomicU64,
    closed: tokio::sync::watch::Sender<bool>,
    runtime: Option<tokio::runtime::Handle>,
}

impl WatchHub {
    /// A hub over `store`, starting at the store's current revision.
    pub fn new(store: Arc<Store>) -> Arc<Self> {
        Arc::new(WatchHub {
            inner: Mutex::new(HubInner {
                revision: store.current_revision(),
                watchers: HashMap::new(),
            }),
            store,
            next_stream: AtomicU64::new(1),
            closed: tokio::sync::watch::channel(false).0,
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// After the store was replaced wholesale (a snapshot from the leader): every
    /// watcher catches up from its next revision against the new contents (or is
    /// canceled with the compact revision if that history is gone). Callable from any
    /// thread.
    pub fn resync_all(self: &Arc<Self>) {
        let keys: Vec<(u64, i64)> = {
            let mut inner = self.lock();
            inner.revision = self.store.current_revision();
            for w in inner.watchers.values_mut() {
                w.synced = false;
            }
            inner.watchers.keys().copied().collect()
        };
        for key in keys {
            let hub = self.clone();
            match &self.runtime {
                Some(rt) => {
                    rt.spawn_blocking(move || hub.catch_up_blocking(key));
                }
                None => hub.catch_up_blocking(key),
            }
        }
    }

    /// Ends every stream (server shutdown): sessions waiting on [`WatchHub::closed`]
    /// finish, so connections can drain.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`WatchHub::close`] was called.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last revision published to watchers.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// Number of watchers (all streams).
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Opens a stream; its messages arrive on the returned queue, which is closed when
    /// the [`WatchStream`] is dropped.
    pub fn open_stream(self: &Arc<Self>) -> (WatchStream, Arc<StreamQueue>) {
        let queue = Arc::new(StreamQueue::default());
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        (
            WatchStream {
                hub: self.clone(),
                id,
                queue: queue.clone(),
                next_watch_id: 0,
            },
            queue,
        )
    }

    /// Publishes the events of one new revision (apply path, after the store published it).
    pub fn notify(&self, revision: i64, events: &[Event]) {
        let mut inner = self.lock();
        inner.revision = inner.revision.max(revision);
        if events.is_empty() {
            return;
        }
        let rev = inner.revision;
        let mut dead = Vec::new();
        let mut wake: Vec<Arc<StreamQueue>> = Vec::new();
        // Every event is copied at most twice per revision (without and with prev_kv),
        // whatever the number of watchers, and only if some watcher is due; watchers
        // share the copies.
        let mut plain: Option<Vec<Arc<Event>>> = None;
        let mut with_prev: Option<Vec<Arc<Event>>> = None;
        for (key, w) in inner.watchers.iter_mut() {
            if !w.synced || revision < w.next_rev {
                continue;
            }
            w.next_rev = revision + 1;
            let shared = if w.spec.prev_kv {
                with_prev.get_or_insert_with(|| {
                    let mut evs = events.to_vec();
                    fill_prevs(&self.store, &mut evs);
                    evs.into_iter().map(Arc::new).collect()
                })
            } else {
                plain.get_or_insert_with(|| {
                    events
                        .iter()
                        .map(|e| {
                            Arc::new(Event {
                                prev_kv: None,
                                ..e.clone()
                            })
                        })
                        .collect()
                })
            };
            let evs: Vec<Arc<Event>> = events
                .iter()
                .zip(shared)
                .filter(|(e, _)| wanted(&w.spec, e))
                .map(|(_, s)| s.clone())
                .collect();
            if evs.is_empty() {
                continue;
            }
            w.sent_since_tick = true;
            let msg = WatchMessage::Events {
                watch_id: key.1,
                revision: rev,
                events: evs,
                fragment: w.spec.fragment,
            };
            match w.queue.push_quiet(msg) {
                Ok(true) => {
                    if !wake.iter().any(|q| Arc::ptr_eq(q, &w.queue)) {
                        wake.push(w.queue.clone());
                    }
                }
                Ok(false) => {}
                Err(Closed) => dead.push(*key),
            }
        }
        for k in dead {
            inner.watchers.remove(&k);
        }
        drop(inner);
        for q in wake {
            q.wake();
        }
    }

    /// Sends a progress notification to every synced progress_notify watcher that saw
    /// no event since the previous tick.
    pub fn progress_tick(&self) {
        let mut inner = self.lock();
        let rev = inner.revision;
        for (key, w) in inner.watchers.iter_mut() {
            if !w.spec.progress_notify || !w.synced {
                continue;
            }
            if w.sent_since_tick {
                w.sent_since_tick = false;
                continue;
            }
            let _ = w.queue.push(WatchMessage::Progress {
                watch_id: key.1,
                revision: rev,
            });
        }
    }

    fn catch_up(self: Arc<Self>, key: (u64, i64)) {
        tokio::task::spawn_blocking(move || self.catch_up_blocking(key));
    }

    fn catch_up_blocking(&self, key: (u64, i64)) {
        loop {
            let (spec, next, queue, target) = {
                let mut inner = self.lock();
                let target = inner.revision;
                let Some(w) = inner.watchers.get_mut(&key) else {
                    return;
                };
                if w.next_rev > target {
                    w.synced = true;
                    return;
                }
                (w.spec.clone(), w.next_rev, w.queue.clone(), target)
            };
            let compact = self.store.compact_revision();
            if next < compact {
                self.cancel_compacted(key, compact);
                return;
            }
            let upto = target.min(next + REPLAY_BATCH_REVISIONS - 1);
            match self
                .store
                .events(next, upto, &spec.key, &spec.range_end, spec.prev_kv)
            {
                Ok(events) => {
                    let evs: Vec<Arc<Event>> = events
                        .into_iter()
                        .filter(|e| wanted(&spec, e))
                        .map(|mut e| {
                            if !spec.prev_kv {
                                e.prev_kv = None;
                            }
                            Arc::new(e)
                        })
                        .collect();
                    if !evs.is_empty() {
                        let msg = WatchMessage::Events {
                            watch_id: key.1,
                            revision: target,
                            events: evs,
                            fragment: spec.fragment,
                        };
                        if queue.push(msg).is_err() {
                            self.lock().watchers.remove(&key);
                            return;
                        }
                    }
                    let mut inner = self.lock();
                    if let Some(w) = inner.watchers.get_mut(&key) {
                        w.next_rev = upto + 1;
                    } else {
                        return;
                    }
                }
                Err(MvccError::Compacted) => {
                    self.cancel_compacted(key, self.store.compact_revision());
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch: history replay failed");
                    let mut inner = self.lock();
                    let rev = inner.revision;
                    if let Some(w) = inner.watchers.remove(&key) {
                        let _ = w.queue.push(WatchMessage::Canceled {
                            watch_id: key.1,
                            revision: rev,
                            compact_revision: 0,
                            reason: e.to_string(),
                        });
                    }
                    return;
                }
            }
        }
    }

    fn cancel_compacted(&self, key: (u64, i64), compact: i64) {
        let mut inner = self.lock();
        let rev = inner.revision;
        if let Some(w) = inner.watchers.remove(&key) {
            let _ = w.queue.push(WatchMessage::Canceled {
                watch_id: key.1,
                revision: rev,
                compact_revision: compact,
                reason: String::new(),
            });
        }
    }
}

/// Fills the `prev_kv` of the events in `evs` (writes are published without it): the key
/// as of the revision before, for deletions and for puts of a key that existed then
/// (`create_revision < mod_revision`); called at most once per revision, and only when a
/// watcher asked for it.
fn fill_prevs(store: &Store, evs: &mut [Event]) {
    for e in evs.iter_mut() {
        let Some(kv) = e.kv.as_ref() else { continue };
        let is_put = e.r#type == EventType::Put as i32;
        if e.prev_kv.is_some() || (is_put && kv.create_revision == kv.mod_revision) {
            continue;
        }
        e.prev_kv = match store.prev_kv(&kv.key, kv.mod_revision) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, "watch: reading a changed key's previous value failed");
                None
            }
        };
    }
}

/// Whether a watcher with `spec` gets event `e`.
fn wanted(spec: &WatchSpec, e: &Event) -> bool {
    let Some(kv) = e.kv.as_ref() else {
        return false;
    };
    let is_put = e.r#type == EventType::Put as i32;
    if (is_put && spec.no_put) || (!is_put && spec.no_delete) {
        return false;
    }
    key_in_range(&kv.key, &spec.key, &spec.range_end)
}

/// Why a watcher could not be created (etcd's cancel reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// Negative start revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// range_end ≤ key.
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The requested id is taken on this stream.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
}

/// One client stream's view of the hub. Dropping it removes its watchers and closes its
/// queue.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: u64,
    queue: Arc<StreamQueue>,
    next_watch_id: i64,
}

impl WatchStream {
    /// Creates a watcher; the `Created` (or `CreateFailed`) message is queued on the
    /// stream before any of its events. `watch_id` 0 picks the next free id.
    pub fn create(&mut self, mut spec: WatchSpec, watch_id: i64) -> Result<i64, CreateError> {
        let mut inner = self.hub.lock();
        let rev = inner.revision;
        let fail = |inner: &HubInner, e: CreateError| {
            let _ = self.queue.push(WatchMessage::CreateFailed {
                reason: e.to_string(),
                revision: inner.revision,
            });
            Err(e)
        };
        if spec.key.is_empty() {
            spec.key = vec![0];
        }
        if spec.start_revision < 0 {
            return fail(&inner, CreateError::Compacted);
        }
        let is_range = !spec.range_end.is_empty() && spec.range_end != [0];
        if is_range && spec.range_end <= spec.key {
            return fail(&inner, CreateError::EmptyRange);
        }
        let id = if watch_id != 0 {
            if inner.watchers.contains_key(&(self.id, watch_id)) {
                return fail(&inner, CreateError::DuplicateId);
            }
            watch_id
        } else {
            while inner.watchers.contains_key(&(self.id, self.next_watch_id)) {
                self.next_watch_id += 1;
            }
            let id = self.next_watch_id;
            self.next_watch_id += 1;
            id
        };
        let _ = self.queue.push(WatchMessage::Created {
            watch_id: id,
            revision: rev,
        });
        let next_rev = if spec.start_revision == 0 {
            rev + 1
        } else {
            spec.start_revision
        };
        let synced = next_rev > rev;
        inner.watchers.insert(
            (self.id, id),
            Watcher {
                spec,
                next_rev,
                synced,
                sent_since_tick: false,
                queue: self.queue.clone(),
            },
        );
        drop(inner);
        if !synced {
            self.hub.clone().catch_up((self.id, id));
        }
        Ok(id)
    }

    /// Refuses a create request without creating anything: a `CreateFailed` message
    /// with `reason` is queued (etcd's answer to a watch the caller may not read).
    pub fn refuse(&mut self, reason: String) {
        let revision = self.hub.lock().revision;
        let _ = self
            .queue
            .push(WatchMessage::CreateFailed { reason, revision });
    }

    /// Cancels a watcher; a `Canceled` message is queued if it existed.
    pub fn cancel(&mut self, watch_id: i64) -> bool {
        let mut inner = self.hub.lock();
        let rev = inner.revision;
        if inner.watchers.remove(&(self.id, watch_id)).is_some() {
            let _ = self.queue.push(WatchMessage::Canceled {
                watch_id,
                revision: rev,
                compact_revision: 0,
                reason: String::new(),
            });
            true
        } else {
            false
        }
    }

    /// Answers a progress request: queues `Progress{-1, rev}` only if the stream has
    /// watchers and every one of them is synced; otherwise queues nothing.
    pub fn request_progress(&self) -> bool {
        let inner = self.hub.lock();
        let mut any = false;
        for ((sid, _), w) in inner.watchers.iter() {
            if *sid == self.id {
                any = true;
                if !w.synced || w.next_rev != inner.revision + 1 {
                    return false;
                }
            }
        }
        if any {
            let _ = self.queue.push(WatchMessage::Progress {
                watch_id: -1,
                revision: inner.revision,
            });
        }
        any
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        let id = self.id;
        inner.watchers.retain(|(sid, _), _| *sid != id);
        drop(inner);
        self.queue.close();
    }
}
