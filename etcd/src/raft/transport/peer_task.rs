//! One task per peer: takes messages from the peer's queue and delivers them over a
//! long-lived `Raft` stream (snapshots through the `Snapshot` RPC), connecting lazily
//! and reconnecting with backoff. Every failure is reported to raft.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ::raft::prelude::{Message, MessageType};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use url::Url;

use super::connect::{connect, PeerClientTls, TransportOptions};
use super::{codec, hex, DeliveryReports};
use crate::proto::etcdpeer::peer_client::PeerClient;
use crate::proto::etcdpeer::PeerEnvelope;

/// Envelopes buffered between the peer task and the HTTP/2 stream.
const STREAM_BUFFER: usize = 128;

/// What every peer task shares: identities, TLS, tuning and where to report.
pub(super) struct TaskCtx {
    pub(super) cluster_id: u64,
    pub(super) tls: Option<PeerClientTls>,
    pub(super) opts: TransportOptions,
    pub(super) reports: RwLock<Option<Arc<dyn DeliveryReports>>>,
    /// Turned true when a peer refuses our messages because we were removed.
    pub(super) removal: RwLock<Option<watch::Sender<bool>>>,
}

impl TaskCtx {
    fn reporter(&self) -> Option<Arc<dyn DeliveryReports>> {
        self.reports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn unreachable(&self, id: u64) {
        if let Some(r) = self.reporter() {
            r.report_unreachable(id);
        }
    }

    pub(super) fn snapshot_done(&self, id: u64, success: bool) {
        if let Some(r) = self.reporter() {
            r.report_snapshot(id, success);
        }
    }

    /// Peer `id` refused our messages because this member was removed from the
    /// cluster: logged (loudly, once) and signalled.
    pub(super) fn removed_by(&self, id: u64) {
        let signal = self
            .removal
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let first = signal.is_some_and(|s| s.send_if_modified(|r| !std::mem::replace(r, true)));
        if first {
            tracing::error!(
                peer = %hex(id),
                "peer refused our raft messages: {}",
                super::service::REMOVED_MESSAGE
            );
            tracing::warn!("the data-dir used by this member must be removed");
        }
    }

    /// Reports a message that will not be delivered.
    pub(super) fn lost(&self, id: u64, msg: &Message) {
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            self.snapshot_done(id, false);
        }
    }
}

/// Counters of one peer.
#[derive(Debug, Default)]
pub(super) struct PeerCounters {
    pub(super) sent: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) connected: AtomicBool,
}

enum End {
    /// The queue's sender is gone: the peer was removed or the transport dropped.
    QueueClosed,
    /// The peer's URLs changed: reconnect.
    UrlsChanged,
    /// The stream broke.
    Failed(tonic::Status),
}

/// A stream that stays up this long makes the peer "active" (logged once).
const SETTLE: Duration = Duration::from_secs(1);
/// How long a removed peer's task may take to deliver what was queued for it before it
/// is stopped (see [`GrpcTransport::remove_peer`](super::GrpcTransport::remove_peer)).
pub(super) const DRAIN: Duration = Duration::from_secs(5);
/// Repeated failures of an inactive peer are logged loudly at most this often.
const QUIET: Duration = Duration::from_secs(30);

/// What has been logged about one peer: state changes are logged, repeated
/// failures of an inactive peer at most every [`QUIET`].
struct Health {
    id: u64,
    active: bool,
    last_loud: Option<Instant>,
}

impl Health {
    fn up(&mut self, url: &Url) {
        if !self.active {
            tracing::info!(peer = %hex(self.id), url = %url, "peer became active");
            self.active = true;
            self.last_loud = None;
        }
    }

    /// Records a failure; true if it should be logged loudly.
    fn down(&mut self) -> bool {
        let loud = self.active || self.last_loud.is_none_or(|t| t.elapsed() >= QUIET);
        self.active = false;
        if loud {
            self.last_loud = Some(Instant::now());
        }
        loud
    }
}

/// Runs until the peer's queue closes.
pub(super) async fn run(
    ctx: Arc<TaskCtx>,
    id: u64,
    mut urls: watch::Receiver<Vec<Url>>,
    mut rx: mpsc::Receiver<Message>,
    counters: Arc<PeerCounters>,
) {
    let mut backoff = ctx.opts.backoff_min;
    let mut next_url = 0usize;
    let mut health = Health {
        id,
        active: false,
        last_loud: None,
    };
    let mut snapshots = JoinSet::new();
    loop {
        // Lazy: connect only once there is something to send.
        let Some(first) = rx.recv().await else { return };
        let list = urls.borrow_and_update().clone();
        let Some(url) = list.get(next_url % list.len().max(1)) else {
            drop_queued(&ctx, id, first, &mut rx, &counters);
            continue;
        };
        let failed = match connect(url, ctx.tls.as_ref(), &ctx.opts).await {
            Err(e) => {
                drop_queued(&ctx, id, first, &mut rx, &counters);
                if health.down() {
                    tracing::warn!(peer = %hex(id), url = %url, error = %e, "peer is unreachable: cannot connect");
                } else {
                    tracing::debug!(peer = %hex(id), url = %url, error = %e, "cannot connect to peer");
                }
                true
            }
            Ok(channel) => {
                counters.connected.store(true, Ordering::Release);
                let end = session(
                    &ctx,
                    id,
                    channel,
                    first,
                    Streams {
                        rx: &mut rx,
                        urls: &mut urls,
                        snapshots: &mut snapshots,
                    },
                    &counters,
                    &mut health,
                    url,
                )
                .await;
                counters.connected.store(false, Ordering::Release);
                match end {
                    End::QueueClosed => return,
                    End::UrlsChanged => {
                        tracing::info!(peer = %hex(id), "peer URLs changed; reconnecting");
                        next_url = 0;
                        false
                    }
                    End::Failed(status) => {
                        ctx.unreachable(id);
                        if super::service::is_removal(&status) {
                            health.down();
                            ctx.removed_by(id);
                        } else {
                            log_stream_failure(&ctx, id, url, &status, health.down());
                        }
                        true
                    }
                }
            }
        };
        if failed {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            next_url = next_url.wrapping_add(1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(ctx.opts.backoff_max);
        } else {
            backoff = ctx.opts.backoff_min;
        }
    }
}

fn log_stream_failure(ctx: &TaskCtx, id: u64, url: &Url, status: &tonic::Status, loud: bool) {
    if status.code() == tonic::Code::FailedPrecondition {
        let remote = status
            .metadata()
            .get(super::service::CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        if loud {
            tracing::error!(
                peer = %hex(id),
                url = %url,
                local_cluster_id = %hex(ctx.cluster_id),
                remote_cluster_id = %remote,
                "peer refused our raft messages: {}",
                status.message()
            );
        } else {
            tracing::debug!(peer = %hex(id), url = %url, remote_cluster_id = %remote, "peer refused our raft messages: {}", status.message());
        }
    } else if loud {
        tracing::warn!(
            peer = %hex(id),
            url = %url,
            code = ?status.code(),
            error = %status_detail(status),
            "peer became inactive: lost the raft stream"
        );
    } else {
        tracing::debug!(peer = %hex(id), url = %url, error = %status_detail(status), "raft stream to peer failed");
    }
}

/// A status's message and the errors beneath it (tonic says just "transport error").
fn status_detail(status: &tonic::Status) -> String {
    let mut s = status.message().to_string();
    let mut cur = std::error::Error::source(status);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Drops `first` and everything queued behind it, reporting the loss to raft.
fn drop_queued(
    ctx: &TaskCtx,
    id: u64,
    first: Message,
    rx: &mut mpsc::Receiver<Message>,
    counters: &PeerCounters,
) {
    let mut n = 1;
    ctx.lost(id, &first);
    while let Ok(m) = rx.try_recv() {
        ctx.lost(id, &m);
        n += 1;
    }
    counters.dropped.fetch_add(n, Ordering::Relaxed);
    ctx.unreachable(id);
}

/// The receivers a session listens on.
struct Streams<'a> {
    rx: &'a mut mpsc::Receiver<Message>,
    urls: &'a mut watch::Receiver<Vec<Url>>,
    snapshots: &'a mut JoinSet<()>,
}

/// Delivers messages over one connection until it fails, the URLs change or the
/// queue closes. The peer counts as active once the stream has stayed up for
/// [`SETTLE`].
#[allow(clippy::too_many_arguments)]
async fn session(
    ctx: &Arc<TaskCtx>,
    id: u64,
    channel: Channel,
    first: Message,
    io: Streams<'_>,
    counters: &Arc<PeerCounters>,
    health: &mut Health,
    url: &Url,
) -> End {
    let Streams {
        rx,
        urls,
        snapshots,
    } = io;
    let (stx, srx) = mpsc::channel::<PeerEnvelope>(STREAM_BUFFER);
    let mut client = PeerClient::new(channel.clone()).max_encoding_message_size(usize::MAX);
    let call = client.raft(ReceiverStream::new(srx));
    tokio::pin!(call);
    let stream_ended = |r: Result<tonic::Response<_>, tonic::Status>| match r {
        Ok(_) => End::Failed(tonic::Status::unavailable("peer closed the stream")),
        Err(s) => End::Failed(s),
    };
    let settle = tokio::time::sleep(SETTLE);
    tokio::pin!(settle);
    let mut settled = false;
    let mut next = Some(first);
    let mut urls_open = true;
    loop {
        while snapshots.try_join_next().is_some() {}
        let msg = match next.take() {
            Some(m) => m,
            None => tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => {
                        // End the request stream and let the peer read it to the end.
                        drop(stx);
                        let _ = tokio::time::timeout(DRAIN, &mut call).await;
                        return End::QueueClosed;
                    }
                },
                r = &mut call => return stream_ended(r),
                // A removed peer's URL watch closes together with its queue: what is
                // still queued is delivered first (the queue's end ends the session).
                r = urls.changed(), if urls_open => {
                    if r.is_err() {
                        urls_open = false;
                        continue;
                    }
                    return End::UrlsChanged;
                }
                _ = &mut settle, if !settled => {
                    settled = true;
                    health.up(url);
                    continue;
                }
            },
        };
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            snapshots.spawn(send_snapshot(
                ctx.clone(),
                id,
                channel.clone(),
                msg,
                counters.clone(),
            ));
            continue;
        }
        let env = match codec::envelope(ctx.cluster_id, &msg) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(peer = %hex(id), error = %e, "cannot encode raft message; dropped");
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        tokio::select! {
            r = stx.send(env) => if r.is_err() {
                return End::Failed(tonic::Status::unavailable("raft stream closed"));
            },
            r = &mut call => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return stream_ended(r);
            }
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one `MsgSnapshot` through the `Snapshot` RPC and reports the outcome.
async fn send_snapshot(
    ctx: Arc<TaskCtx>,
    id: u64,
    channel: Channel,
    msg: Message,
    counters: Arc<PeerCounters>,
) {
    let index = msg.get_snapshot().get_metadata().index;
    let size = msg.get_snapshot().data.len();
    let chunks = match codec::snapshot_chunks(ctx.cluster_id, msg, ctx.opts.snapshot_chunk_size) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(peer = %hex(id), error = %e, "cannot encode snapshot message");
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            ctx.snapshot_done(id, false);
            return;
        }
    };
    tracing::info!(peer = %hex(id), index, size, "sending database snapshot to peer");
    let started = std::time::Instant::now();
    let mut client = PeerClient::new(channel).max_encoding_message_size(usize::MAX);
    match client.snapshot(futures::stream::iter(chunks)).await {
        Ok(_) => {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                peer = %hex(id),
                index,
                size,
                took = ?started.elapsed(),
                "sent database snapshot to peer"
            );
            crate::metrics::SNAPSHOT_SEND_SUCCESS
                .with_label_values(&[&hex(id)])
                .inc();
            ctx.snapshot_done(id, true);
        }
        Err(status) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer = %hex(id),
                index,
                size,
                code = ?status.code(),
                error = %status_detail(&status),
                "failed to send database snapshot to peer"
            );
            if super::service::is_removal(&status) {
                ctx.removed_by(id);
            }
            crate::metrics::SNAPSHOT_SEND_FAILURES
                .with_label_values(&[&hex(id)])
                .inc();
            ctx.snapshot_done(id, false);
            ctx.unreachable(id);
        }
    }
}
