//! [`GrpcTransport`]: the raft loop's [`Transport`] over the `etcdpeer.Peer` service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use ::raft::prelude::Message;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use url::Url;

use super::connect::{parse_peer_url, PeerClientTls, TransportOptions};
use super::peer_task::{self, PeerCounters, TaskCtx};
use super::{hex, DeliveryReports, TransportError};
use crate::raft::Transport;

/// What is known about one peer's delivery so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    /// Messages handed to the peer's connection (snapshots count once delivered).
    pub sent: u64,
    /// Messages dropped: queue full, peer unreachable, or stream broken.
    pub dropped: u64,
    /// Failed connection attempts and broken streams.
    pub failures: u64,
    /// A stream to the peer is open now.
    pub connected: bool,
}

struct Peer {
    tx: mpsc::Sender<Message>,
    urls: watch::Sender<Vec<Url>>,
    counters: Arc<PeerCounters>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    local_id: u64,
    stopped: AtomicBool,
    ctx: Arc<TaskCtx>,
    runtime: tokio::runtime::Handle,
    peers: RwLock<HashMap<u64, Peer>>,
}

/// Sends raft messages to the other members over gRPC.
///
/// Guarantees:
/// - [`Transport::send`] never blocks: each peer has a bounded queue; a message that
///   does not fit, or is for an unknown peer, is dropped and counted, and the peer is
///   reported unreachable (a dropped `MsgSnapshot` is reported as a failed snapshot).
/// - Messages to one peer that are delivered arrive in the order they were sent,
///   except `MsgSnapshot`, which travels on its own RPC alongside the stream.
/// - Every connection failure or broken stream is reported to raft as unreachable;
///   every snapshot to a peer that stays known ends with exactly one snapshot report
///   (success or failure).
/// - Clones share the peer table: keep one to update membership
///   ([`add_peer`](Self::add_peer), [`remove_peer`](Self::remove_peer),
///   [`update_peer`](Self::update_peer)) while the raft loop owns another.
///
/// The transport holds the [`DeliveryReports`] given to [`attach`](Self::attach)
/// (normally the raft handle) until [`shutdown`](Self::shutdown): call it when the
/// member stops, or the raft loop, which also owns a clone, never sees its last
/// handle go away.
#[derive(Clone)]
pub struct GrpcTransport {
    shared: Arc<Shared>,
}

impl GrpcTransport {
    /// A transport for member `local_id` of cluster `cluster_id`, with no peers yet.
    /// Must be called inside a tokio runtime: peer tasks run on it. `tls` is used for
    /// `https` peer URLs.
    pub fn new(
        local_id: u64,
        cluster_id: u64,
        tls: Option<PeerClientTls>,
        opts: TransportOptions,
    ) -> Result<Self, TransportError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        Ok(GrpcTransport {
            shared: Arc::new(Shared {
                local_id,
                stopped: AtomicBool::new(false),
                ctx: Arc::new(TaskCtx {
                    cluster_id,
                    tls,
                    opts,
                    reports: RwLock::new(None),
                    removal: RwLock::new(None),
                }),
                runtime,
                peers: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Sets where delivery problems are reported (the raft handle, once the loop has
    /// started). Reports before this are dropped; raft recovers from lost messages.
    pub fn attach(&self, reports: impl DeliveryReports) {
        *self
            .shared
            .ctx
            .reports
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(reports));
    }

    /// Sets the signal turned true when a peer refuses our messages because this
    /// member was removed from the cluster (etcd's "the member has been permanently
    /// removed from the cluster"); the server stops on it. Without one, such refusals
    /// are only reported as unreachable peers.
    pub fn signal_removal(&self, removed: tokio::sync::watch::Sender<bool>) {
        *self
            .shared
            .ctx
            .removal
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(removed);
    }

    /// Adds peer `id` reachable at `urls` (tried in turn, moving on after a failure), or
    /// replaces its URLs if it is already known (as [`update_peer`](Self::update_peer)).
    /// Connects when the first message for it is sent.
    pub fn add_peer(&self, id: u64, urls: &[String]) -> Result<(), TransportError> {
        if id == self.shared.local_id {
            return Err(TransportError::SelfPeer(id));
        }
        if urls.is_empty() {
            return Err(TransportError::BadUrl(
                String::new(),
                format!("no peer URLs for member {id:x}"),
            ));
        }
        let urls = urls
            .iter()
            .map(|u| parse_peer_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let mut peers = self.shared.peers.write().unwrap_or_else(|e| e.into_inner());
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(TransportError::Stopped);
        }
        if let Some(p) = peers.get(&id) {
            p.urls.send_if_modified(|cur| {
                let changed = *cur != urls;
                if changed {
                    cur.clone_from(&urls);
                }
                changed
            });
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(self.shared.ctx.opts.queue_size.max(1));
        let (urls_tx, urls_rx) = watch::channel(urls);
        let counters = Arc::new(PeerCounters::default());
        let task = self.shared.runtime.spawn(peer_task::run(
            self.shared.ctx.clone(),
            id,
            urls_rx,
            rx,
            counters.clone(),
        ));
        tracing::info!(
            local_member_id = %hex(self.shared.local_id),
            peer = %hex(id),
            "added peer to the raft transport"
        );
        peers.insert(
            id,
            Peer {
                tx,
                urls: urls_tx,
                counters,
                task,
            },
        );
        Ok(())
    }

    /// Replaces the URLs of peer `id`; if they differ, an open stream to it is closed
    /// and reopened on the new URLs. Unknown peers are added.
    pub fn update_peer(&self, id: u64, urls: &[String]) -> Result<(), TransportError> {
        self.add_peer(id, urls)
    }

    /// Forgets peer `id`: nothing more is queued for it, what was queued before is
    /// still delivered (within [`peer_task::DRAIN`]; then the connection is dropped).
    /// A member removed from the cluster learns of its removal from the message that
    /// tells it the removal is committed, which the leader sends just before it
    /// applies the removal (and so forgets the peer). Returns whether it was known.
    pub fn remove_peer(&self, id: u64) -> bool {
        let removed = self
            .shared
            .peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match removed {
            Some(Peer { task, .. }) => {
                // The queue's sender and the URL watch are dropped here: the task drains
                // the queue and ends; this bounds how long it may take.
                self.shared.runtime.spawn(async move {
                    tokio::time::sleep(peer_task::DRAIN).await;
                    task.abort();
                });
                tracing::info!(peer = %hex(id), "removed peer from the raft transport");
                true
            }
            None => false,
        }
    }

    /// The known peers.
    pub fn peers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .shared
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Delivery counters of peer `id`, if known.
    pub fn stats(&self, id: u64) -> Option<PeerStats> {
        let peers = self.shared.peers.read().unwrap_or_else(|e| e.into_inner());
        let c = &peers.get(&id)?.counters;
        Some(PeerStats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            connected: c.connected.load(Ordering::Acquire),
        })
    }

    /// Stops sending for good: every peer task ends (open streams close), later
    /// messages are dropped silently, peers can no longer be added, and the attached
    /// [`DeliveryReports`] is released. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        let peers: Vec<Peer> = self
            .shared
            .peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in peers {
            p.task.abort();
        }
        *self
            .shared
            .ctx
            .reports
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let ctx = &self.shared.ctx;
        let peers = self.shared.peers.read().unwrap_or_else(|e| e.into_inner());
        for m in msgs {
            let to = m.to;
            let Some(p) = peers.get(&to) else {
                tracing::debug!(peer = %hex(to), msg_type = ?m.get_msg_type(), "dropped raft message to unknown peer");
                ctx.lost(to, &m);
                continue;
            };
            match p.tx.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(m)) | Err(TrySendError::Closed(m)) => {
                    let dropped = p.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped % 1000 == 0 {
                        tracing::warn!(
                            peer = %hex(to),
                            dropped = dropped + 1,
                            "dropped raft message: the peer's send queue is full"
                        );
                    }
                    ctx.lost(to, &m);
                    ctx.unreachable(to);
                }
            }
        }
    }
}
