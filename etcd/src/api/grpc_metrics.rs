//! gRPC server metrics under the names etcd exports (go-grpc-prometheus):
//! `grpc_server_started_total`, `grpc_server_handled_total` (with `grpc_code`),
//! `grpc_server_msg_received_total` and `grpc_server_msg_sent_total`, labelled
//! `grpc_type`, `grpc_service`, `grpc_method`; with `--metrics=extensive` also the
//! `grpc_server_handling_seconds` histogram.
//!
//! Guarantees:
//! - every method the client port serves has its series from the start (at zero, every
//!   code of `grpc_server_handled_total` included), as etcd pre-registers them; methods it
//!   does not serve (the `Auth` service) have none, and calls to them are not counted;
//! - a call is counted as started when it reaches its service and as handled exactly once,
//!   with the `grpc-status` it ended with, or `Canceled` when the client went away before
//!   the status was sent;
//! - a unary call counts one message received, and one sent when it ended `OK`; a stream
//!   counts each whole gRPC message of its request and response bodies.
//!
//! The JSON gateway calls the server directly, not through gRPC, so its requests are not
//! counted here (etcd's gateway dials its own gRPC port, so they are counted there).

use std::pin::Pin;
use std::sync::{LazyLock, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

/// How a method streams, as go-grpc-prometheus labels it (`grpc_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcType {
    /// One request, one response.
    Unary,
    /// A stream of responses to one request.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl RpcType {
    /// The `grpc_type` label value.
    pub fn label(self) -> &'static str {
        match self {
            RpcType::Unary => "unary",
            RpcType::ServerStream => "server_stream",
            RpcType::BidiStream => "bidi_stream",
        }
    }
}

/// Every gRPC method the client port serves: (service, method, type). KV first: nearly
/// all of a loaded server's calls are found in the first five comparisons.
pub const METHODS: &[(&str, &str, RpcType)] = &[
    ("etcdserverpb.KV", "Range", RpcType::Unary),
    ("etcdserverpb.KV", "Put", RpcType::Unary),
    ("etcdserverpb.KV", "Txn", RpcType::Unary),
    ("etcdserverpb.KV", "DeleteRange", RpcType::Unary),
    ("etcdserverpb.KV", "Compact", RpcType::Unary),
    ("etcdserverpb.Watch", "Watch", RpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseGrant", RpcType::Unary),
    ("etcdserverpb.Lease", "LeaseRevoke", RpcType::Unary),
    ("etcdserverpb.Lease", "LeaseKeepAlive", RpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseTimeToLive", RpcType::Unary),
    ("etcdserverpb.Lease", "LeaseLeases", RpcType::Unary),
    ("etcdserverpb.Cluster", "MemberAdd", RpcType::Unary),
    ("etcdserverpb.Cluster", "MemberRemove", RpcType::Unary),
    ("etcdserverpb.Cluster", "MemberUpdate", RpcType::Unary),
    ("etcdserverpb.Cluster", "MemberList", RpcType::Unary),
    ("etcdserverpb.Cluster", "MemberPromote", RpcType::Unary),
    ("etcdserverpb.Maintenance", "Alarm", RpcType::Unary),
    ("etcdserverpb.Maintenance", "Status", RpcType::Unary),
    ("etcdserverpb.Maintenance", "Defragment", RpcType::Unary),
    ("etcdserverpb.Maintenance", "Hash", RpcType::Unary),
    ("etcdserverpb.Maintenance", "HashKV", RpcType::Unary),
    (
        "etcdserverpb.Maintenance",
        "Snapshot",
        RpcType::ServerStream,
    ),
    ("etcdserverpb.Maintenance", "MoveLeader", RpcType::Unary),
    ("etcdserverpb.Maintenance", "Downgrade", RpcType::Unary),
    ("grpc.health.v1.Health", "Check", RpcType::Unary),
    ("grpc.health.v1.Health", "Watch", RpcType::ServerStream),
];

/// gRPC status codes by number, as go-grpc-prometheus spells them (`grpc_code`).
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `Canceled`: the code of a call whose client went away first.
const CANCELED: usize = 1;
/// `Unknown`: a `grpc-status` that is not a number of [`CODES`].
const UNKNOWN: usize = 2;

/// The index in [`METHODS`] of the method a request path (`/service/Method`) names.
pub fn method_index(path: &str) -> Option<usize> {
    static PATHS: LazyLock<Vec<String>> = LazyLock::new(|| {
        METHODS
            .iter()
            .map(|(service, method, _)| format!("/{service}/{method}"))
            .collect()
    });
    // Whole-path comparisons: most fail on the length alone.
    PATHS.iter().position(|p| p == path)
}

/// One method's series, resolved once so a call touches no label map.
struct MethodSeries {
    kind: RpcType,
    started: IntCounter,
    received: IntCounter,
    sent: IntCounter,
    handled: Vec<IntCounter>,
    seconds: Option<Histogram>,
}

/// Every served method's series.
struct Table(Vec<MethodSeries>);

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable!());
    let _ = crate::metrics::REGISTRY.register(Box::new(c.clone()));
    c
}

impl Table {
    fn new(handling_histogram: bool) -> Self {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = counter_vec(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &labels,
        );
        let handled = counter_vec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let received = counter_vec(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            &labels,
        );
        let sent = counter_vec(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            &labels,
        );
        let seconds = handling_histogram.then(|| {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been \
                     application-level handled by the server.",
                ),
                &labels,
            )
            .unwrap_or_else(|_| unreachable!());
            let _ = crate::metrics::REGISTRY.register(Box::new(h.clone()));
            h
        });
        Table(
            METHODS
                .iter()
                .map(|&(service, method, kind)| {
                    let l = [kind.label(), service, method];
                    MethodSeries {
                        kind,
                        started: started.with_label_values(&l),
                        received: received.with_label_values(&l),
                        sent: sent.with_label_values(&l),
                        handled: CODES
                            .iter()
                            .map(|code| {
                                handled.with_label_values(&[kind.label(), service, method, code])
                            })
                            .collect(),
                        seconds: seconds.as_ref().map(|h| h.with_label_values(&l)),
                    }
                })
                .collect(),
        )
    }
}

static TABLE: OnceLock<Table> = OnceLock::new();

fn table() -> &'static Table {
    TABLE.get_or_init(|| Table::new(false))
}

/// Registers the series (idempotent: the first call decides); `handling_histogram`
/// (`--metrics=extensive`) adds `grpc_server_handling_seconds`.
pub fn init(handling_histogram: bool) {
    TABLE.get_or_init(|| Table::new(handling_histogram));
}

/// One call in progress: counted as started when made, as handled once when finished
/// (or, unfinished, when dropped: `Canceled`).
pub struct CallMeter {
    series: &'static MethodSeries,
    started_at: Option<Instant>,
    frames: FrameCounter,
    done: bool,
}

impl CallMeter {
    /// Starts metering a call of the method at `index` in [`METHODS`] (the request of a
    /// unary or server-streaming call is its one received message).
    pub fn start(index: usize) -> Option<Self> {
        let series = table().0.get(index)?;
        series.started.inc();
        if series.kind != RpcType::BidiStream {
            series.received.inc();
        }
        Some(CallMeter {
            series,
            started_at: series.seconds.as_ref().map(|_| Instant::now()),
            frames: FrameCounter::default(),
            done: false,
        })
    }

    /// Whether responses are counted message by message (streams) rather than at the end.
    fn streams_responses(&self) -> bool {
        self.series.kind != RpcType::Unary
    }

    /// The received-message counter of this call's method (for its request body).
    pub fn received_counter(&self) -> Option<IntCounter> {
        (self.series.kind == RpcType::BidiStream).then(|| self.series.received.clone())
    }

    /// Counts the call handled with `grpc-status` `code` (once).
    pub fn finish(&mut self, code: usize) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let code = if code < CODES.len() { code } else { UNKNOWN };
        self.series.handled[code].inc();
        if code == 0 && self.series.kind == RpcType::Unary {
            self.series.sent.inc();
        }
        if let (Some(h), Some(t)) = (&self.series.seconds, self.started_at) {
            h.observe(t.elapsed().as_secs_f64());
        }
    }

    /// Counts the call handled with the `grpc-status` in `headers`, if they carry one
    /// (trailers, or the headers of a trailers-only response); true if they did.
    pub fn finish_from(&mut self, headers: &http::HeaderMap) -> bool {
        // A ready-made name: looking up by `&str` parses and checks it on every call.
        static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
        // gRPC's trailers and trailers-only headers are one to three entries: a scan
        // costs less than hashing the name.
        let status = if headers.len() <= 3 {
            headers
                .iter()
                .find_map(|(name, value)| (*name == GRPC_STATUS).then_some(value))
        } else {
            headers.get(&GRPC_STATUS)
        };
        match status {
            Some(v) => {
                let code = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .unwrap_or(UNKNOWN);
                self.finish(code);
                true
            }
            None => false,
        }
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

/// Counts whole gRPC messages (1-byte flag, 4-byte big-endian length, payload) in a
/// byte stream split anywhere.
#[derive(Debug, Default)]
pub struct FrameCounter {
    header: [u8; 5],
    header_len: usize,
    payload_left: usize,
}

impl FrameCounter {
    /// Feeds `data`; returns how many messages it completed.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                if self.payload_left == 0 {
                    done += 1;
                }
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if len == 0 {
                    done += 1;
                } else {
                    self.payload_left = len;
                }
            }
        }
        done
    }
}

/// What a [`Tapped`] body does with each frame it passes on.
pub trait FrameObserver {
    /// Sees one frame on its way out of the body.
    fn observe(&mut self, frame: &Frame<Bytes>);
}

/// A body that shows each of its frames to an observer and otherwise passes them on.
pub struct Tapped<B, O> {
    inner: B,
    observer: O,
}

impl<B, O> Body for Tapped<B, O>
where
    B: Body<Data = Bytes> + Unpin,
    O: FrameObserver + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.observer.observe(frame);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that reports its call's end to a [`CallMeter`]: the `grpc-status` of
/// its trailers, or `Canceled` when dropped before them (a stream's messages are counted
/// as sent). Without a meter it only passes frames on.
pub type MeteredBody<B> = Tapped<B, Option<CallMeter>>;

impl<B> MeteredBody<B> {
    /// `inner`, reporting to `meter` (if any).
    pub fn new(inner: B, meter: Option<CallMeter>) -> Self {
        Tapped {
            inner,
            observer: meter,
        }
    }
}

impl FrameObserver for Option<CallMeter> {
    fn observe(&mut self, frame: &Frame<Bytes>) {
        let Some(meter) = self else { return };
        if let Some(data) = frame.data_ref() {
            if meter.streams_responses() {
                let n = meter.frames.feed(data);
                meter.series.sent.inc_by(n);
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            meter.finish_from(trailers);
        }
    }
}

/// Counts the whole gRPC messages of a body into a counter.
pub struct MessageCount {
    counter: IntCounter,
    frames: FrameCounter,
}

impl FrameObserver for MessageCount {
    fn observe(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.counter.inc_by(self.frames.feed(data));
        }
    }
}

/// A request body that counts the gRPC messages it carries (a bidi stream's received
/// messages).
pub type CountedBody<B> = Tapped<B, MessageCount>;

impl<B> CountedBody<B> {
    /// `inner`, adding each whole message to `counter`.
    pub fn new(inner: B, counter: IntCounter) -> Self {
        Tapped {
            inner,
            observer: MessageCount {
                counter,
                frames: FrameCounter::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len));
        v
    }

    #[test]
    fn frames_are_counted_however_the_bytes_are_split() {
        let mut stream = msg(3);
        stream.extend(msg(0));
        stream.extend(msg(300));
        stream.extend(msg(1));
        for chunk in [1, 2, 4, 5, 6, 7, 64, 1000] {
            let mut c = FrameCounter::default();
            let total: u64 = stream.chunks(chunk).map(|p| c.feed(p)).sum();
            assert_eq!(total, 4, "chunk size {chunk}");
        }
        let mut c = FrameCounter::default();
        assert_eq!(
            c.feed(&stream[..stream.len() - 1]),
            3,
            "last message incomplete"
        );
        assert_eq!(c.feed(&stream[stream.len() - 1..]), 1);
    }

    #[test]
    fn paths_name_served_methods_only() {
        assert_eq!(method_index("/etcdserverpb.KV/Range"), Some(0));
        let watch = method_index("/etcdserverpb.Watch/Watch").unwrap();
        assert_eq!(METHODS[watch].2, RpcType::BidiStream);
        let health = method_index("/grpc.health.v1.Health/Check").unwrap();
        assert_eq!(METHODS[health].1, "Check");
        assert_eq!(method_index("/etcdserverpb.Auth/AuthEnable"), None);
        assert_eq!(method_index("/etcdserverpb.KV/Nope"), None);
        assert_eq!(method_index("/health"), None);
        assert_eq!(method_index("etcdserverpb.KV/Range"), None);
    }
}
