//! Write coalescing for client connections: responses that become ready in the same
//! scheduler round leave in one system call.
//!
//! An HTTP/2 connection task flushes whenever it runs, and it runs as soon as any one of
//! its streams has a response (tokio runs a woken task next). So when a raft Ready
//! applied many entries at once, or a read brought several requests, the responses for
//! one connection went out one `writev` each, and on loopback every write also pays for
//! the client's receive path. [`Coalesce`] holds what the connection writes until a
//! flush, and the first flush of a batch lets the worker thread run its other ready tasks
//! first (tokio's `yield_now`: the task is polled again once the thread has nothing else
//! to run; a wake from anything else before that does not end the wait), so that the
//! connection's other requests may add their responses. It waits when
//! - some request of the connection has not been polled yet (its task is ready to run
//!   and may answer at once), or
//! - the client has had more than one request going at a time recently (within its last
//!   [`MULTIPLEXED_WINDOW`] requests): more requests may arrive and be answered meanwhile,
//!   and results of raft proposals tend to come from the same Ready. Under load this
//!   turns into "write when the thread has nothing else to do", which is what batches
//!   responses.
//!
//! Otherwise (a client that sends its next request only after this response, like a
//! single `etcdctl`) nothing could join the batch, and a flush writes at once, with one
//! exception: a flush of nothing but acknowledgements of the client's PINGs (HTTP/2
//! frames that never gate the client's progress, unlike a WINDOW_UPDATE or SETTINGS,
//! which always leave at once) while a request is in flight, or after bytes were read
//! that have not become a request yet, waits for the response to leave with it, at most
//! [`CONTROL_BOUND`] (never before the connection's first request). gRPC clients send
//! a PING beside their requests to measure the connection; without this its
//! acknowledgement left on its own before the request was even handled: two writes,
//! and two wake-ups of the client, per request.
//!
//! [`Pending`] holds those counts; [`CountPending`] keeps them for a tower service.
//!
//! Guarantees:
//! - Bytes reach the inner stream in the order they were written, none twice, none lost;
//!   a flush returns `Ready(Ok)` only after every byte written before it was written to
//!   the inner stream and the inner stream was flushed.
//! - A flush of gRPC data waits at most once per batch, and only for the tasks the
//!   thread can run now, never for a timer or for more data. Polled for anything else
//!   once the wait is older than 1 ms, it writes (the thread that owes the wake may be
//!   stuck in one long task while another could write). A flush of PING
//!   acknowledgements alone may wait for a response, never longer than
//!   [`CONTROL_BOUND`].
//! - At most [`LIMIT`] bytes are held; a larger write first drains what is held and then
//!   goes to the inner stream directly. Between batches a connection keeps at most 8 KiB
//!   of buffer.
//! - Reads pass through untouched (they are only noted, see above).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back before they are written.
pub const LIMIT: usize = 64 * 1024;

/// The buffer capacity a connection keeps between batches.
const KEEP: usize = 8 * 1024;

/// Whether `bytes` are one or more whole HTTP/2 PING acknowledgements and nothing else
/// (frame header: 24-bit length 8, type 6, flags with ACK (1); then 8 bytes of data).
fn only_ping_acks(bytes: &[u8]) -> bool {
    const FRAME: usize = 9 + 8;
    !bytes.is_empty()
        && bytes.len() % FRAME == 0
        && bytes
            .chunks(FRAME)
            .all(|f| f[..3] == [0, 0, 8] && f[3] == 6 && f[4] & 1 == 1)
}

/// How many requests back a client counts as multiplexing once it had two going at a
/// time.
pub const MULTIPLEXED_WINDOW: usize = 64;

/// Requests in flight on every connection of the process (see [`Pending::in_flight`]).
static IN_FLIGHT_EVERYWHERE: AtomicUsize = AtomicUsize::new(0);

/// The requests in flight on all connections of this process together: received, and
/// their responses (heads) not ready yet. Streaming calls count only until their stream
/// starts.
pub fn in_flight_everywhere() -> usize {
    IN_FLIGHT_EVERYWHERE.load(Ordering::Relaxed)
}

/// A connection's requests: those not yet polled, those whose responses are not ready
/// yet, and whether the client recently had several going at a time.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    unpolled: AtomicUsize,
    in_flight: AtomicUsize,
    /// Requests so far.
    calls: AtomicUsize,
    /// The value of `calls` when a request arrived while another was in flight.
    multiplexed_at: AtomicUsize,
}

impl Pending {
    /// Requests whose handling has not started (their task has not run yet).
    pub fn unpolled(&self) -> usize {
        self.0.unpolled.load(Ordering::Relaxed)
    }

    /// Requests whose responses are not ready yet (unpolled ones included).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    /// Requests counted so far on the connection.
    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::Relaxed)
    }

    /// Whether a request arrived while another was in flight within the last
    /// [`MULTIPLEXED_WINDOW`] requests.
    pub fn recently_multiplexed(&self) -> bool {
        let at = self.0.multiplexed_at.load(Ordering::Relaxed);
        at != 0 && self.0.calls.load(Ordering::Relaxed) - at < MULTIPLEXED_WINDOW
    }

    /// Counts one request, unpolled until [`PendingGuard::polled`], in flight until
    /// the guard is dropped.
    fn enter(&self) -> PendingGuard {
        IN_FLIGHT_EVERYWHERE.fetch_add(1, Ordering::Relaxed);
        let calls = self.0.calls.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.unpolled.fetch_add(1, Ordering::Relaxed);
        if self.0.in_flight.fetch_add(1, Ordering::Relaxed) > 0 {
            self.0.multiplexed_at.store(calls, Ordering::Relaxed);
        }
        PendingGuard {
            counts: self.0.clone(),
            unpolled: true,
        }
    }
}

/// One request counted in [`Pending`] (see [`Pending::enter`]).
pub struct PendingGuard {
    counts: Arc<Counts>,
    unpolled: bool,
}

impl PendingGuard {
    fn polled(&mut self) {
        if std::mem::take(&mut self.unpolled) {
            self.counts.unpolled.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.polled();
        self.counts.in_flight.fetch_sub(1, Ordering::Relaxed);
        IN_FLIGHT_EVERYWHERE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A tower service that counts the requests of `S` in [`Pending`]: unpolled from the
/// call until its future is first polled, in flight until its response (head) is ready
/// or the call is dropped. A streaming response (Watch, LeaseKeepAlive) counts only
/// until its stream starts.
#[derive(Clone)]
pub struct CountPending<S> {
    inner: S,
    pending: Pending,
}

impl<S> CountPending<S> {
    /// Counts the requests of `inner` in `pending`.
    pub fn new(inner: S, pending: Pending) -> Self {
        CountPending { inner, pending }
    }
}

impl<S, R> tower::Service<R> for CountPending<S>
where
    S: tower::Service<R>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let guard = self.pending.enter();
        Counted {
            fut: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

/// The future of a [`CountPending`] call: the inner call's, counted in [`Pending`]
/// until it completes or is dropped.
pub struct Counted<F> {
    fut: F,
    guard: Option<PendingGuard>,
}

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if let Some(g) = &mut this.guard {
            g.polled();
        }
        let out = ready!(Pin::new(&mut this.fut).poll(cx));
        this.guard = None;
        Poll::Ready(out)
    }
}

/// An [`AsyncWrite`] that holds writes until a flush; the first flush of a batch lets
/// the thread's other ready tasks run first when more responses may join (see the module
/// documentation).
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
    /// The wait of this batch for the thread's other ready tasks, if it started.
    round: Option<Arc<Round>>,
    pending: Pending,
    /// [`Pending::calls`] when bytes were last read (None: nothing read yet).
    read_at: Option<usize>,
    /// The bound of a wait of PING acknowledgements for a response, once it started.
    control_wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long PING acknowledgements wait for a response to leave with (see the module
/// documentation). Only a request that takes this long, or a PING with no request,
/// sees its acknowledgement this late; a shorter bound would usually be the runtime's
/// next timer, and arming it would then wake the I/O driver (one more system call per
/// request).
pub const CONTROL_BOUND: std::time::Duration = std::time::Duration::from_millis(200);

impl<S> Coalesce<S> {
    /// Wraps `inner`; flushes wait for other responses only while `pending` counts
    /// requests.
    pub fn new(inner: S, pending: Pending) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            written: 0,
            round: None,
            pending,
            read_at: None,
            control_wait: None,
        }
    }

    /// Whether a flush should let the thread's other ready tasks run first (see the
    /// module documentation).
    fn worth_waiting(&self) -> bool {
        self.pending.unpolled() > 0 || self.pending.recently_multiplexed()
    }

    /// Whether the held bytes (PING acknowledgements only) wait for a response to leave
    /// with (see the module documentation); starts the wait's bound on the first call
    /// of a batch and registers `cx` for it.
    fn control_waits(&mut self, cx: &mut Context<'_>) -> bool {
        // Never before the first request: the connection's setup (SETTINGS and their
        // acknowledgements) goes out at once.
        let calls = self.pending.calls();
        let response_coming =
            calls > 0 && (self.pending.in_flight() > 0 || self.read_at == Some(calls));
        if !response_coming
            || !only_ping_acks(&self.buf[self.written..])
            || tokio::runtime::Handle::try_current().is_err()
        {
            self.control_wait = None;
            return false;
        }
        let bound = self
            .control_wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CONTROL_BOUND)));
        bound.as_mut().poll(cx).is_pending()
    }

    /// Bytes written but not yet handed to the inner stream.
    pub fn held(&self) -> usize {
        self.buf.len() - self.written
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes everything held to the inner stream (not flushing it).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        let len = self.buf.len();
        self.buf.clear();
        self.written = 0;
        // A burst can leave a large buffer behind: once a batch uses less than a quarter
        // of it, keep at most KEEP bytes (many connections, small responses). A
        // connection whose batches stay large keeps its buffer instead of reallocating
        // it for every batch.
        if self.buf.capacity() > KEEP && len < self.buf.capacity() / 4 {
            self.buf.shrink_to(KEEP.max(len));
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: drains what is held if they would not fit.
    /// Returns `true` when the write should bypass the buffer (too large to hold).
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.held() + len > LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len > LIMIT))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if ready!(this.poll_room(cx, data.len()))? {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if ready!(this.poll_room(cx, len))? {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() > 0 {
            match this.round.as_ref().map(|r| r.holds()) {
                // Woken by something else (a stream with a response) before the thread
                // ran out of ready tasks: the round's own wake is still to come.
                Some(true) => return Poll::Pending,
                Some(false) => {}
                None if this.worth_waiting() => {
                    // Let the other tasks that are ready run first: they may add to
                    // this batch.
                    this.round = Some(Round::start(cx));
                    return Poll::Pending;
                }
                None if this.control_waits(cx) => return Poll::Pending,
                None => {}
            }
        }
        ready!(this.poll_drain(cx))?;
        this.round = None;
        this.control_wait = None;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// One wait for the worker thread's other ready tasks: tokio's `yield_now` defers the
/// task's wake until the thread has run its other ready tasks and polled the socket
/// driver (outside a runtime thread it wakes at once); `done` tells that wake from any
/// other.
struct Round {
    done: std::sync::atomic::AtomicBool,
    task: std::task::Waker,
    started: std::time::Instant,
}

/// How long a round may hold a batch when the task is polled for something else: the
/// round's own wake comes from the thread that started it, which may be busy with one
/// long task while another thread could write.
const ROUND_BOUND: std::time::Duration = std::time::Duration::from_millis(1);

impl Round {
    /// Starts a round for the task of `cx`.
    fn start(cx: &mut Context<'_>) -> Arc<Round> {
        let round = Arc::new(Round {
            done: std::sync::atomic::AtomicBool::new(false),
            task: cx.waker().clone(),
            started: std::time::Instant::now(),
        });
        let waker = std::task::Waker::from(round.clone());
        let mut y = std::pin::pin!(tokio::task::yield_now());
        // The first poll registers the deferred wake and returns Pending; the future is
        // not needed after that.
        let _ = y.as_mut().poll(&mut Context::from_waker(&waker));
        round
    }

    /// Whether the batch should still wait: the round's wake has not come and the round
    /// is younger than [`ROUND_BOUND`].
    fn holds(&self) -> bool {
        !self.done.load(Ordering::Acquire) && self.started.elapsed() < ROUND_BOUND
    }
}

impl std::task::Wake for Round {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.done.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.read_at = Some(this.pending.calls());
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach it.
    struct Counting {
        out: Vec<u8>,
        writes: Arc<AtomicUsize>,
        flushes: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.fetch_add(1, Ordering::Relaxed);
            // Partial writes: at most 1000 bytes per call.
            let n = data.len().min(1000);
            this.out.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A wrapped counting stream whose connection always has a request not yet polled.
    fn counting() -> (Coalesce<Counting>, Arc<AtomicUsize>) {
        let pending = Pending::default();
        std::mem::forget(pending.enter());
        plain(&pending)
    }

    #[tokio::test]
    async fn writes_before_a_flush_reach_the_stream_together_and_in_order() {
        let (mut c, writes) = counting();
        c.write_all(b"one ").await.unwrap();
        c.write_all(b"two ").await.unwrap();
        c.write_all(b"three").await.unwrap();
        assert_eq!(
            writes.load(Ordering::Relaxed),
            0,
            "nothing written before a flush"
        );
        c.flush().await.unwrap();
        assert_eq!(c.inner.out, b"one two three");
        assert_eq!(writes.load(Ordering::Relaxed), 1, "one write for the batch");
        assert_eq!(c.inner.flushes, 1);
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn a_flush_yields_once_then_writes() {
        let (mut c, writes) = counting();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut pinned = Pin::new(&mut c);
        assert!(matches!(
            pinned.as_mut().poll_write(&mut cx, b"abc"),
            Poll::Ready(Ok(3))
        ));
        assert!(
            pinned.as_mut().poll_flush(&mut cx).is_pending(),
            "first flush yields"
        );
        assert_eq!(writes.load(Ordering::Relaxed), 0);
        // Written while waiting: joins the batch.
        assert!(matches!(
            pinned.as_mut().poll_write(&mut cx, b"def"),
            Poll::Ready(Ok(3))
        ));
        assert!(matches!(
            pinned.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(pinned.inner.out, b"abcdef");
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        // An empty flush does not yield.
        assert!(matches!(
            pinned.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    fn plain(pending: &Pending) -> (Coalesce<Counting>, Arc<AtomicUsize>) {
        let writes = Arc::new(AtomicUsize::new(0));
        let c = Coalesce::new(
            Counting {
                out: Vec::new(),
                writes: writes.clone(),
                flushes: 0,
            },
            pending.clone(),
        );
        (c, writes)
    }

    fn write(c: &mut Coalesce<Counting>, data: &[u8]) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(c).poll_write(&mut cx, data),
            Poll::Ready(Ok(n)) if n == data.len()
        ));
    }

    fn flush(c: &mut Coalesce<Counting>) -> Poll<io::Result<()>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(c).poll_flush(&mut cx)
    }

    #[test]
    fn a_client_with_one_request_at_a_time_gets_its_response_at_once() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        for i in 0..100u8 {
            // Each request answered before the next arrives.
            drop(pending.enter());
            write(&mut c, &[i]);
            assert!(flush(&mut c).is_ready(), "request {i}");
            assert_eq!(writes.load(Ordering::Relaxed), i as usize + 1);
        }
        assert!(!pending.recently_multiplexed());
    }

    /// An HTTP/2 PING acknowledgement (length 8, type 6, flags ACK, stream 0).
    const PING_ACK: [u8; 17] = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

    /// An HTTP/2 WINDOW_UPDATE of the connection (length 4, type 8).
    const WINDOW_UPDATE: [u8; 13] = [0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0];

    #[test]
    fn only_ping_acknowledgements_are_recognised() {
        assert!(only_ping_acks(&PING_ACK));
        assert!(only_ping_acks(&[PING_ACK, PING_ACK].concat()));
        assert!(!only_ping_acks(&[]));
        assert!(!only_ping_acks(&WINDOW_UPDATE));
        assert!(!only_ping_acks(
            &[PING_ACK.as_slice(), &WINDOW_UPDATE].concat()
        ));
        let mut ping = PING_ACK;
        ping[4] = 0; // a PING, not its acknowledgement
        assert!(!only_ping_acks(&ping));
        assert!(!only_ping_acks(&[0; 17]));
    }

    /// A request of `pending` whose handling has started and not finished.
    fn handling(pending: &Pending) -> PendingGuard {
        let mut guard = pending.enter();
        guard.polled();
        guard
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_acknowledgement_waits_for_the_response_in_flight() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        let guard = handling(&pending);
        // The PING acknowledgement (17 bytes) while the request is handled: held.
        write(&mut c, &PING_ACK);
        assert!(flush(&mut c).is_pending());
        assert!(flush(&mut c).is_pending(), "still held when polled again");
        assert_eq!(writes.load(Ordering::Relaxed), 0);
        // The response arrives: both leave in one write.
        drop(guard);
        write(&mut c, &[1; 63]);
        assert!(flush(&mut c).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        assert_eq!(c.inner.out.len(), 80);
    }

    #[tokio::test(start_paused = true)]
    async fn ping_acknowledgements_wait_at_most_the_bound() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        // A request being handled that does not finish.
        let _hung = handling(&pending);
        write(&mut c, &PING_ACK);
        assert!(flush(&mut c).is_pending());
        tokio::time::advance(CONTROL_BOUND / 2).await;
        assert!(flush(&mut c).is_pending());
        tokio::time::advance(CONTROL_BOUND).await;
        assert!(flush(&mut c).is_ready(), "written once the bound passed");
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        // The next batch starts its own bound.
        write(&mut c, &PING_ACK);
        assert!(flush(&mut c).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn only_ping_acknowledgements_wait_and_only_for_a_coming_response() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        // Nothing in flight, nothing read: written at once.
        write(&mut c, &PING_ACK);
        assert!(flush(&mut c).is_ready());
        // A request in flight, but a message frame is held: written at once.
        let _guard = handling(&pending);
        write(&mut c, &[1; 40]);
        assert!(flush(&mut c).is_ready());
        // Nor does a WINDOW_UPDATE, even with a PING acknowledgement: the client may be
        // waiting for it to send the rest of its request.
        write(&mut c, &PING_ACK);
        write(&mut c, &WINDOW_UPDATE);
        assert!(flush(&mut c).is_ready());
        write(&mut c, &WINDOW_UPDATE);
        assert!(flush(&mut c).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_that_are_not_a_request_yet_hold_ping_acknowledgements() {
        let (client, server) = tokio::io::duplex(1024);
        let pending = Pending::default();
        let mut c = Coalesce::new(server, pending.clone());
        let mut client = client;
        // The connection's setup is not held: nothing was requested yet.
        client.write_all(b"preface").await.unwrap();
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"preface");
        c.write_all(&[6; 9]).await.unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        let mut ack = [0u8; 9];
        client.read_exact(&mut ack).await.unwrap();
        drop(pending.enter());
        client.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"request");
        c.write_all(&PING_ACK).await.unwrap();
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        // The bytes became a request, now answered: everything leaves at once.
        drop(pending.enter());
        c.write_all(&[8; 40]).await.unwrap();
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        let mut got = vec![0u8; 57];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..17], &PING_ACK);
        assert_eq!(&got[17..], &[8; 40]);
    }

    #[test]
    fn a_request_not_yet_polled_holds_the_flush() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        let mut guard = pending.enter();
        assert_eq!((pending.unpolled(), pending.in_flight()), (1, 1));
        write(&mut c, b"pong");
        assert!(flush(&mut c).is_pending());
        guard.polled();
        assert_eq!((pending.unpolled(), pending.in_flight()), (0, 1));
        // The round's wake came (outside a runtime it comes at once): written.
        assert!(flush(&mut c).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!((pending.unpolled(), pending.in_flight()), (0, 0));
    }

    #[test]
    fn a_multiplexing_client_waits_once_per_batch_until_the_round_ends() {
        let pending = Pending::default();
        let (mut c, writes) = plain(&pending);
        // Two requests going at once: the client multiplexes.
        let a = pending.enter();
        let b = pending.enter();
        drop((a, b));
        assert!(pending.recently_multiplexed());
        write(&mut c, b"one");
        assert!(
            flush(&mut c).is_pending(),
            "the first flush of a batch waits"
        );
        // A round that has not ended (another task woke the connection first) keeps
        // the batch open; what is written meanwhile joins it.
        // (The round is replaced by one that has not ended and cannot grow too old while
        // the test runs.)
        let round = Arc::new(Round {
            done: std::sync::atomic::AtomicBool::new(false),
            task: std::task::Waker::noop().clone(),
            started: std::time::Instant::now() + std::time::Duration::from_secs(3600),
        });
        c.round = Some(round.clone());
        write(&mut c, b"two");
        assert!(flush(&mut c).is_pending());
        assert_eq!(writes.load(Ordering::Relaxed), 0);
        // A round that holds on for too long lets the batch go when polled.
        let old = Arc::new(Round {
            done: std::sync::atomic::AtomicBool::new(false),
            task: std::task::Waker::noop().clone(),
            started: std::time::Instant::now() - 2 * ROUND_BOUND,
        });
        assert!(!old.holds());
        assert!(round.holds());
        // The round's own wake: the batch goes out in one write.
        std::task::Wake::wake_by_ref(&round);
        assert!(flush(&mut c).is_ready());
        assert_eq!(c.inner.out, b"onetwo");
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        // After MULTIPLEXED_WINDOW requests one at a time it writes at once again.
        for _ in 0..MULTIPLEXED_WINDOW {
            drop(pending.enter());
        }
        assert!(!pending.recently_multiplexed());
        write(&mut c, b"three");
        assert!(flush(&mut c).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn count_pending_counts_a_call_until_its_response_is_ready() {
        use tower::{Service, ServiceExt};
        let pending = Pending::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let rx = std::sync::Mutex::new(Some(rx));
        let inner = tower::service_fn(move |_: ()| {
            let rx = rx.lock().unwrap().take();
            Box::pin(async move {
                match rx {
                    Some(rx) => Ok::<_, std::convert::Infallible>(rx.await.unwrap()),
                    None => Ok(0),
                }
            })
        });
        let mut svc = CountPending::new(inner, pending.clone());
        let mut fut = svc.ready().await.unwrap().call(());
        assert_eq!((pending.unpolled(), pending.in_flight()), (1, 1));
        // First poll: no longer unpolled, still in flight.
        assert!(futures::poll!(&mut fut).is_pending());
        assert_eq!((pending.unpolled(), pending.in_flight()), (0, 1));
        tx.send(7).unwrap();
        assert_eq!(fut.await.unwrap(), 7);
        assert_eq!((pending.unpolled(), pending.in_flight()), (0, 0));
        // A call dropped before it was polled stops counting too.
        let fut = svc.call(());
        assert_eq!((pending.unpolled(), pending.in_flight()), (1, 1));
        drop(fut);
        assert_eq!((pending.unpolled(), pending.in_flight()), (0, 0));
        assert!(!pending.recently_multiplexed());
    }

    #[tokio::test]
    async fn large_writes_and_partial_writes_keep_every_byte_in_order() {
        let (mut c, _) = counting();
        let mut expect = Vec::new();
        for i in 0..200u32 {
            // Sizes from a few bytes to beyond the limit.
            let len = (i as usize * 7919) % (LIMIT + 5000) + 1;
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            c.write_all(&chunk).await.unwrap();
            expect.extend_from_slice(&chunk);
            assert!(c.held() <= LIMIT);
            if i % 13 == 0 {
                c.flush().await.unwrap();
                assert_eq!(c.inner.out.len(), expect.len());
            }
        }
        c.shutdown().await.unwrap();
        assert_eq!(c.inner.out, expect, "shutdown writes what is held");
        // Batches that stay large keep their buffer; a small batch after them trims it.
        c.write_all(&[7u8; 40_000]).await.unwrap();
        c.flush().await.unwrap();
        let cap = c.buf.capacity();
        assert!(cap >= 40_000);
        c.write_all(&[8u8; 30_000]).await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(c.buf.capacity(), cap, "a large batch reuses the buffer");
        c.write_all(b"x").await.unwrap();
        c.flush().await.unwrap();
        assert!(c.buf.capacity() <= KEEP, "a small batch trims the buffer");
    }

    #[tokio::test]
    async fn round_trip_over_a_real_stream() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let pending = Pending::default();
        let _busy = pending.enter();
        let mut c = Coalesce::new(a, pending.clone());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut expect = Vec::new();
        for i in 0..1000u32 {
            let msg = format!("message {i};");
            c.write_all(msg.as_bytes()).await.unwrap();
            expect.extend_from_slice(msg.as_bytes());
            if i % 10 == 0 {
                c.flush().await.unwrap();
            }
        }
        c.shutdown().await.unwrap();
        drop(c);
        assert_eq!(reader.await.unwrap(), expect);
    }
}
