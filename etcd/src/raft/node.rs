//! The Raft Ready loop: one thread drives `raft::RawNode` through the documented Ready
//! steps (send, apply snapshot, apply committed, persist, send persisted, advance).
//!
//! Guarantees:
//! - Entries and hard state of one Ready are persisted with exactly one synced write,
//!   however many proposals the Ready carries (proposals queued while a write is in
//!   progress all land in the next Ready: batching is how throughput beats fsync).
//! - Committed entries are handed to the [`StateMachine`] in log order, exactly once per
//!   run; after a restart raft redelivers everything after the state machine's applied
//!   index.
//! - Linearizable reads are batched: all read requests waiting when the loop turns
//!   share one ReadIndex round. A round unanswered for 500 ms is sent again (etcd's
//!   retry, with its warning), so a lost message costs a retry, not the request timeout.
//! - A proposal made with [`RaftHandle::propose_or_drive`] while the loop is idle
//!   (nothing queued, nothing in the log beyond what is applied, the loop's thread
//!   waiting for work) is stepped, persisted and, on a single member, applied on the
//!   proposer's own thread: the same steps under the same lock, without the two thread
//!   hand-offs (to the loop and back) that otherwise sit on a lone client's every write.
//!   A ReadIndex round asked for with [`RaftHandle::read_index_or_drive`] while the loop
//!   is idle is started and, on a single member, answered the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};

use ::raft::{RawNode, StateRole};
use protobuf::Message as _;
use raft_proto::ConfChangeI as _;
use tokio::sync::{oneshot, watch};

use super::heartbeat::LateHeartbeats;
use super::log_store::{Flush, LogStore, LogStoreError};

/// The state machine fed by the loop.
pub trait StateMachine: Send + 'static {
    /// Applies the committed normal entry at `index` carrying `data` (never empty).
    fn apply(&mut self, index: u64, term: u64, data: &[u8]);
    /// Applies consecutive committed normal entries, each with data, in order: the same
    /// as [`apply`](Self::apply) for each (the default), but an implementation may
    /// apply them together as long as each proposer's result is the same.
    fn apply_run(&mut self, entries: &[Entry]) {
        for e in entries {
            self.apply(e.index, e.term, &e.data);
        }
    }
    /// Records that `index` was applied without changing state (empty or conf entries).
    fn apply_noop(&mut self, index: u64);
    /// The last applied index (durable: what a restart resumes from).
    fn applied_index(&self) -> u64;
    /// Applies the committed membership change at `index` (raft's configuration has
    /// already changed). Called for every conf change entry, also for those at or
    /// below [`applied_index`](Self::applied_index) after a snapshot (skip those).
    fn apply_conf_change(&mut self, index: u64, cc: &ConfChange) {
        let _ = (index, cc);
        self.apply_noop(index);
    }
    /// The whole state as of [`applied_index`](Self::applied_index), to ship to a
    /// member that is too far behind (the data of a raft snapshot).
    fn snapshot_data(&mut self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    /// Replaces the whole state with `data` made by [`snapshot_data`](Self::snapshot_data)
    /// on another member; durable when it returns `Ok`.
    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let _ = data;
        Ok(())
    }
    /// Learns that the proposal made with `tag` (see [`RaftHandle::propose`]) was
    /// dropped with `err`: nothing of it was appended, it will never be applied. Called
    /// on the loop's thread, once per dropped proposal; the default ignores it.
    fn proposal_dropped(&mut self, tag: u64, err: RaftError) {
        let _ = (tag, err);
    }
}

/// The leader's view of replication, for promotion checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationProgress {
    /// The leader's commit index.
    pub commit: u64,
    /// Highest index known to be replicated, per member.
    pub matched: HashMap<u64, u64>,
}

/// Errors of the raft layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RaftError {
    /// No leader accepts proposals right now.
    #[error("no leader")]
    NoLeader,
    /// The loop has stopped.
    #[error("raft stopped")]
    Stopped,
    /// Too many proposals wait to be applied.
    #[error("too many requests")]
    TooManyRequests,
    /// Leadership transfer target is not a voter.
    #[error("bad leader transferee")]
    BadTransferee,
    /// Anything raft-rs reported.
    #[error("raft: {0}")]
    Other(String),
}

/// Timing and identity of this member's raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's id.
    pub id: u64,
    /// `--heartbeat-interval`: one raft tick.
    pub tick: Duration,
    /// `--election-timeout` in ticks.
    pub election_ticks: usize,
    /// `--pre-vote`.
    pub pre_vote: bool,
    /// `--snapshot-count`: applied entries between log compactions.
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`: entries kept behind a compaction for slow followers.
    pub catchup_entries: u64,
    /// Backpressure bound: proposals waiting for the raft loop, and committed-but-not-
    /// applied entries, beyond which new proposals get "too many requests".
    pub max_inflight: u64,
}

/// What every task may read about the node without asking the loop.
#[derive(Debug, Default)]
pub struct RaftStatus {
    leader: AtomicU64,
    term: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    last_index: AtomicU64,
    is_leader: AtomicBool,
    inflight: AtomicU64,
    /// One bit per recent batch of proposals stepped together (newest lowest): set when
    /// the batch held more than one.
    shared_batches: AtomicU64,
}

impl RaftStatus {
    /// Current leader id (0 = none known).
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    /// Commit index.
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }
    /// Applied index.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    /// Index of the last log entry.
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Acquire)
    }
    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
}

/// Leadership as seen by this member; published on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderInfo {
    /// Leader id, 0 if none.
    pub leader: u64,
    /// Term of that leadership.
    pub term: u64,
    /// This member leads.
    pub is_self: bool,
}

enum Command {
    Propose { tag: u64, data: Vec<u8> },
    ProposeConfChange(ConfChange),
    ReadIndex(oneshot::Sender<Result<u64, RaftError>>),
    Progress(oneshot::Sender<Option<ReplicationProgress>>),
    Stop,
    TransferLeader(u64),
    Step(Message),
    ReportUnreachable(u64),
    ReportSnapshot { id: u64, success: bool },
    AdvanceTicks(usize),
}

/// Handle to the raft loop. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    tx: Sender<Command>,
    status: Arc<RaftStatus>,
    applied: watch::Receiver<u64>,
    leader: watch::Receiver<LeaderInfo>,
    max_inflight: u64,
    /// The loop, for proposals made while it is idle (`None`: only through the queue).
    inline: Option<Arc<dyn Drive>>,
}

/// A loop that a proposer may drive on its own thread while the loop's thread waits.
trait Drive: Send + Sync {
    /// Steps the proposal and handles the resulting Ready on the caller's thread if the
    /// loop is free at once; gives `data` back when the loop is busy.
    fn try_propose(&self, tag: u64, data: Vec<u8>) -> Result<Result<(), RaftError>, Vec<u8>>;
    /// Starts a ReadIndex round for `waiter` and handles the resulting Ready on the
    /// caller's thread if the loop is free at once; gives `waiter` back when it is busy.
    fn try_read_index(&self, waiter: ReadWaiter) -> Result<(), ReadWaiter>;
}

/// Where the index of a ReadIndex round goes.
type ReadWaiter = oneshot::Sender<Result<u64, RaftError>>;

/// How long a ReadIndex round waits for its answer before it is sent again (etcd's
/// `readIndexRetryTime`).
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// A ReadIndex round in flight: when its message was last sent, and who waits for it.
struct ReadRound {
    sent: Instant,
    waiters: Vec<ReadWaiter>,
}

/// The loop as its thread and proposers share it: `None` once the thread has ended it
/// (the state machine and the log are dropped then, so the database can close).
type SharedLoop<S, T> = std::sync::Mutex<Option<Loop<S, T>>>;

impl<S: StateMachine, T: Transport> Drive for SharedLoop<S, T> {
    fn try_propose(&self, tag: u64, data: Vec<u8>) -> Result<Result<(), RaftError>, Vec<u8>> {
        let Ok(mut guard) = self.try_lock() else {
            return Err(data);
        };
        let Some(lp) = guard.as_mut().filter(|lp| !lp.ended) else {
            return Ok(Err(RaftError::Stopped));
        };
        lp.proposals.push(Entry {
            data: data.into(),
            ..Default::default()
        });
        lp.proposal_tags.push(tag);
        // A drop is reported to the state machine (and so to the proposer) here.
        lp.step_proposals();
        lp.ready_on_this_thread();
        Ok(Ok(()))
    }

    fn try_read_index(&self, waiter: ReadWaiter) -> Result<(), ReadWaiter> {
        let Ok(mut guard) = self.try_lock() else {
            return Err(waiter);
        };
        let Some(lp) = guard.as_mut().filter(|lp| !lp.ended) else {
            let _ = waiter.send(Err(RaftError::Stopped));
            return Ok(());
        };
        lp.pending_reads.push(waiter);
        lp.issue_read_index();
        lp.ready_on_this_thread();
        Ok(())
    }
}

impl RaftHandle {
    /// Proposes `data`. `Err` means it was refused at once; otherwise it either reaches
    /// the state machine through apply or, if the loop drops it (no leader, a leadership
    /// transfer), the state machine is told so with `tag`
    /// ([`StateMachine::proposal_dropped`]). A proposal still queued when the loop stops
    /// gets neither.
    pub fn propose(&self, tag: u64, data: Vec<u8>) -> Result<(), RaftError> {
        self.check_backpressure()?;
        self.enqueue(tag, data)
    }

    /// Proposes `data` as [`propose`](Self::propose) does, with the same outcomes, but
    /// when the loop is idle (no proposal queued, every entry of the log applied, its
    /// thread waiting) and proposals have been coming one at a time (none of the last 64
    /// batches of proposals held more than one), the caller's thread steps it, writes it
    /// and, if it commits at once (a single member), applies it before returning: the
    /// proposer's result is then ready without a wake-up. The caller's thread is blocked
    /// meanwhile (one synced write), so this suits a caller with nothing else to do, such
    /// as the only request a server has in flight.
    pub fn propose_or_drive(&self, tag: u64, data: Vec<u8>) -> Result<(), RaftError> {
        self.check_backpressure()?;
        // Only while proposals come one at a time: none of the last 64 batches held two
        // or more (batching is what a loaded server needs, and a proposer that drives
        // the loop writes a batch of one).
        let data = match &self.inline {
            Some(inline)
                if self.status.shared_batches.load(Ordering::Relaxed) == 0
                    && self.status.inflight.load(Ordering::Acquire) == 0
                    && self.status.last_index() == self.status.applied() =>
            {
                match inline.try_propose(tag, data) {
                    Ok(r) => return r,
                    Err(data) => data,
                }
            }
            _ => data,
        };
        self.enqueue(tag, data)
    }

    /// etcd's backpressure: refuse when apply lags commit too far, or when too many
    /// proposals wait for the raft loop to take them.
    fn check_backpressure(&self) -> Result<(), RaftError> {
        let lag = self.status.commit().saturating_sub(self.status.applied());
        if lag > self.max_inflight
            || self.status.inflight.load(Ordering::Acquire) >= self.max_inflight
        {
            return Err(RaftError::TooManyRequests);
        }
        Ok(())
    }

    /// Queues a proposal for the loop's thread.
    fn enqueue(&self, tag: u64, data: Vec<u8>) -> Result<(), RaftError> {
        self.status.inflight.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(Command::Propose { tag, data })
            .map_err(|_| RaftError::Stopped)
    }

    /// Proposes a membership change. Its `id` is its tag: as for
    /// [`propose`](Self::propose), a drop is reported to the state machine with it.
    pub fn propose_conf_change(&self, cc: ConfChange) -> Result<(), RaftError> {
        self.tx
            .send(Command::ProposeConfChange(cc))
            .map_err(|_| RaftError::Stopped)
    }

    /// The replication progress if this member leads, `None` otherwise.
    pub async fn progress(&self) -> Result<Option<ReplicationProgress>, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Progress(tx))
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)
    }

    /// Runs a ReadIndex round and returns the index the state machine must reach
    /// before a linearizable read may be served.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::ReadIndex(tx))
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// [`read_index`](Self::read_index), but when the loop is idle (no proposal queued,
    /// its thread waiting) the caller's thread starts the round and handles the Ready
    /// that answers it: on a single member the index is known before the first await.
    /// As with [`propose_or_drive`](Self::propose_or_drive), the caller's thread is
    /// blocked meanwhile, so this suits the only request a server has in flight.
    pub async fn read_index_or_drive(&self) -> Result<u64, RaftError> {
        let (tx, rx) = oneshot::channel();
        let tx = match &self.inline {
            Some(inline) if self.status.inflight.load(Ordering::Acquire) == 0 => {
                match inline.try_read_index(tx) {
                    Ok(()) => return rx.await.map_err(|_| RaftError::Stopped)?,
                    Err(tx) => tx,
                }
            }
            _ => tx,
        };
        self.tx
            .send(Command::ReadIndex(tx))
            .map_err(|_| RaftError::Stopped)?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Waits until the applied index reaches `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), RaftError> {
        let mut rx = self.applied.clone();
        rx.wait_for(|a| *a >= index)
            .await
            .map(|_| ())
            .map_err(|_| RaftError::Stopped)
    }

    /// Asks raft to hand leadership to `target`.
    pub fn transfer_leader(&self, target: u64) -> Result<(), RaftError> {
        self.tx
            .send(Command::TransferLeader(target))
            .map_err(|_| RaftError::Stopped)
    }

    /// Feeds a message from a peer into the node.
    pub fn step(&self, msg: Message) -> Result<(), RaftError> {
        self.tx
            .send(Command::Step(msg))
            .map_err(|_| RaftError::Stopped)
    }

    /// Tells raft that the last message to peer `id` may not have arrived (the
    /// transport could not connect or send): raft stops optimistic replication to it
    /// and probes again. Never blocks.
    pub fn report_unreachable(&self, id: u64) -> Result<(), RaftError> {
        self.tx
            .send(Command::ReportUnreachable(id))
            .map_err(|_| RaftError::Stopped)
    }

    /// Tells raft whether the snapshot it sent to peer `id` was delivered
    /// (`success`) or lost; until one of these arrives raft keeps that peer paused
    /// waiting for the snapshot. Never blocks.
    pub fn report_snapshot(&self, id: u64, success: bool) -> Result<(), RaftError> {
        self.tx
            .send(Command::ReportSnapshot { id, success })
            .map_err(|_| RaftError::Stopped)
    }

    /// Fast-forwards the election clock by `ticks` ticks, as if that much time had
    /// passed without hearing from a leader (etcd's initial election tick advance): only
    /// while no leader is known; once one is, the request is ignored. Never blocks.
    pub fn advance_ticks(&self, ticks: usize) -> Result<(), RaftError> {
        self.tx
            .send(Command::AdvanceTicks(ticks))
            .map_err(|_| RaftError::Stopped)
    }

    /// Ends the loop (its thread returns and drops the state machine and log, so the
    /// database can close) even while other handles exist.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }

    /// Live status counters.
    pub fn status(&self) -> &RaftStatus {
        &self.status
    }

    /// Leadership changes.
    pub fn leader_watch(&self) -> watch::Receiver<LeaderInfo> {
        self.leader.clone()
    }
}

/// Sends raft messages to peers. A single member has none.
pub trait Transport: Send + 'static {
    /// Sends `msgs`; failures are reported to raft as unreachable by the caller later.
    fn send(&mut self, msgs: Vec<Message>);
}

/// The transport of a cluster with no peers.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _msgs: Vec<Message>) {}
}

/// Starts the loop on its own thread and returns its handle and join handle.
pub fn start<S: StateMachine, T: Transport>(
    cfg: RaftConfig,
    log: LogStore,
    sm: S,
    transport: T,
    campaign: bool,
) -> Result<(RaftHandle, std::thread::JoinHandle<()>), RaftError> {
    let (mut handle, rx, lp) = build(cfg, log, sm, transport, campaign)?;
    let shared: Arc<SharedLoop<S, T>> = Arc::new(std::sync::Mutex::new(Some(lp)));
    handle.inline = Some(shared.clone());
    let join = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || Loop::run(&shared, rx))
        .map_err(|e| RaftError::Other(e.to_string()))?;
    Ok((handle, join))
}

/// The loop, its handle and the handle's command queue, before the loop runs.
#[allow(clippy::type_complexity)]
fn build<S: StateMachine, T: Transport>(
    cfg: RaftConfig,
    log: LogStore,
    sm: S,
    transport: T,
    campaign: bool,
) -> Result<(RaftHandle, Receiver<Command>, Loop<S, T>), RaftError> {
    let raft_cfg = ::raft::Config {
        id: cfg.id,
        election_tick: cfg.election_ticks.max(2),
        heartbeat_tick: 1,
        applied: sm.applied_index(),
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        // Not `batch_append`: it merges entries into a MsgAppend already in the outbox
        // without regard to `max_size_per_msg`, so a follower catching up could be sent
        // one message beyond the receiver's limit. Proposals are batched before they
        // are stepped instead (`step_proposals`), which is where the gain was (A/B, 3
        // members, put 10/100: 60-64 µs/put summed without it, 56-64 with it).
        check_quorum: true,
        pre_vote: cfg.pre_vote,
        ..Default::default()
    };
    raft_cfg
        .validate()
        .map_err(|e| RaftError::Other(e.to_string()))?;
    log.ensure_commit_covers(sm.applied_index())
        .map_err(|e| RaftError::Other(e.to_string()))?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let mut node = RawNode::new(&raft_cfg, log.raft_storage(), &logger)
        .map_err(|e| RaftError::Other(e.to_string()))?;
    if campaign {
        node.campaign()
            .map_err(|e| RaftError::Other(e.to_string()))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let status = Arc::new(RaftStatus::default());
    let (applied_tx, applied_rx) = watch::channel(sm.applied_index());
    let (leader_tx, leader_rx) = watch::channel(LeaderInfo::default());
    let handle = RaftHandle {
        tx,
        status: status.clone(),
        applied: applied_rx,
        leader: leader_rx,
        max_inflight: cfg.max_inflight,
        inline: None,
    };
    let tick = cfg.tick;
    let lp = Loop {
        node,
        log,
        sm,
        transport,
        cfg,
        status,
        applied_tx,
        leader_tx,
        pending_reads: Vec::new(),
        inflight_reads: HashMap::new(),
        read_seq: 0,
        held_snapshots: Vec::new(),
        flush: None,
        proposals: Vec::new(),
        proposal_tags: Vec::new(),
        ended: false,
        heartbeats: LateHeartbeats::new(tick),
    };
    Ok((handle, rx, lp))
}

/// What a proposer is told when raft refuses its proposal: a dropped proposal means no
/// leader takes it (no leader known, a leadership transfer, or this member removed).
fn proposal_error(e: ::raft::Error) -> RaftError {
    match e {
        ::raft::Error::ProposalDropped => RaftError::NoLeader,
        other => RaftError::Other(other.to_string()),
    }
}

struct Loop<S, T> {
    node: RawNode<LogStore>,
    log: LogStore,
    sm: S,
    transport: T,
    cfg: RaftConfig,
    status: Arc<RaftStatus>,
    applied_tx: watch::Sender<u64>,
    leader_tx: watch::Sender<LeaderInfo>,
    pending_reads: Vec<oneshot::Sender<Result<u64, RaftError>>>,
    /// ReadIndex rounds sent and not answered yet, by sequence number.
    inflight_reads: HashMap<u64, ReadRound>,
    read_seq: u64,
    held_snapshots: Vec<Message>,
    /// A state machine flush in progress, and the index the log is compacted to once
    /// it completes.
    flush: Option<(u64, Flush)>,
    /// Proposals taken from the queue and not yet stepped: stepped together as one
    /// `MsgPropose` before any other command, tick or Ready (see
    /// [`step_proposals`](Self::step_proposals)).
    proposals: Vec<Entry>,
    /// The tags of `proposals`, in the same order.
    proposal_tags: Vec<u64>,
    /// The loop has stopped, or must stop (a failed write on a proposer's thread): no
    /// proposal or read is taken on another thread any more.
    ended: bool,
    /// Heartbeats sent late (the loop stalled, as by a slow disk) are logged and counted.
    heartbeats: LateHeartbeats,
}

impl<S: StateMachine, T: Transport> Loop<S, T> {
    /// The loop's thread: waits for commands (without holding the loop, so an idle loop
    /// can be driven by a proposer meanwhile), then handles them and the Ready under the
    /// lock. Returns when stopped, when the queue is gone, or after a failed write.
    fn run(shared: &SharedLoop<S, T>, rx: Receiver<Command>) {
        // A panic while the loop was held (on this thread or a proposer's) leaves it in
        // an unknown state: the loop stops.
        let lock = || shared.lock().ok();
        let mut last_tick = Instant::now();
        let Some(tick) = lock().and_then(|mut g| {
            let lp = g.as_mut()?;
            lp.publish_status();
            Some(lp.cfg.tick)
        }) else {
            return;
        };
        loop {
            let first = match rx.recv_timeout(tick.saturating_sub(last_tick.elapsed())) {
                Ok(Command::Stop) => break,
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let Some(mut guard) = lock() else { break };
            let Some(lp) = guard.as_mut().filter(|lp| !lp.ended) else {
                break;
            };
            if let Some(cmd) = first {
                lp.handle(cmd);
            }
            let mut stop = false;
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, Command::Stop) {
                    stop = true;
                    break;
                }
                lp.handle(cmd);
            }
            lp.step_proposals();
            if stop {
                break;
            }
            if last_tick.elapsed() >= tick {
                lp.node.tick();
                last_tick = Instant::now();
            }
            if !lp.pending_reads.is_empty() {
                lp.issue_read_index();
            }
            if !lp.inflight_reads.is_empty() {
                lp.retry_reads(Instant::now());
            }
            if let Err(e) = lp.on_ready() {
                tracing::error!(error = %e, "raft: failed to persist; stopping the raft loop");
                break;
            }
        }
        let ended = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut lp) = ended {
            lp.finish();
        }
    }

    /// Handles the Ready of a step taken on a proposer's (or reader's) thread; a failed
    /// write ends the loop, whose thread sees it at its next turn and stops.
    fn ready_on_this_thread(&mut self) {
        if let Err(e) = self.on_ready() {
            tracing::error!(error = %e, "raft: failed to persist; stopping the raft loop");
            self.ended = true;
        }
    }

    /// Ends the loop: no proposer drives it any more, a flush in progress completes and
    /// waiting reads learn that it stopped.
    fn finish(&mut self) {
        self.ended = true;
        if let Some((_, flush)) = self.flush.take() {
            if let Err(e) = flush.wait() {
                tracing::error!(error = %e, "raft: state machine flush failed");
            }
        }
        for (_, round) in self.inflight_reads.drain() {
            for w in round.waiters {
                let _ = w.send(Err(RaftError::Stopped));
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        if let Command::Propose { tag, data } = cmd {
            // The proposal has left the queue (the bound counts queued proposals).
            self.status.inflight.fetch_sub(1, Ordering::AcqRel);
            self.proposals.push(Entry {
                data: data.into(),
                ..Default::default()
            });
            self.proposal_tags.push(tag);
            return;
        }
        // Everything else sees the proposals queued before it already stepped.
        self.step_proposals();
        match cmd {
            Command::Propose { .. } => {}
            Command::ProposeConfChange(cc) => {
                let tag = cc.id;
                let res = if self.node.raft.leader_id == ::raft::INVALID_ID {
                    Err(::raft::Error::ProposalDropped)
                } else {
                    self.node.propose_conf_change(vec![], cc)
                };
                if let Err(e) = res {
                    self.sm.proposal_dropped(tag, proposal_error(e));
                }
            }
            Command::Progress(tx) => {
                let r = &self.node.raft;
                let p = (r.state == StateRole::Leader).then(|| ReplicationProgress {
                    commit: r.raft_log.committed,
                    matched: r.prs().iter().map(|(id, pr)| (*id, pr.matched)).collect(),
                });
                let _ = tx.send(p);
            }
            Command::ReadIndex(tx) => self.pending_reads.push(tx),
            Command::Stop => {}
            Command::TransferLeader(target) => self.node.transfer_leader(target),
            Command::Step(msg) => {
                if let Err(e) = self.node.step(msg) {
                    tracing::debug!(error = %e, "raft: dropped peer message");
                }
            }
            Command::ReportUnreachable(id) => self.node.report_unreachable(id),
            Command::ReportSnapshot { id, success } => {
                let status = if success {
                    ::raft::SnapshotStatus::Finish
                } else {
                    ::raft::SnapshotStatus::Failure
                };
                self.node.report_snapshot(id, status);
            }
            Command::AdvanceTicks(ticks) => {
                if self.node.raft.leader_id == ::raft::INVALID_ID {
                    for _ in 0..ticks {
                        self.node.tick();
                    }
                }
            }
        }
    }

    /// Steps the proposals taken so far as one `MsgPropose`, so that a batch becomes
    /// one append to the local log and one `MsgAppend` per follower instead of one per
    /// proposal. raft accepts or drops a proposal message as a whole; on a drop every
    /// proposal of the batch gets the error (nothing of it was appended).
    fn step_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        // raft takes the entries; the tags' vector keeps its capacity for the next batch
        // (only a dropped batch needs them).
        let entries = std::mem::take(&mut self.proposals);
        let shared = u64::from(entries.len() > 1);
        let bits = self.status.shared_batches.load(Ordering::Relaxed);
        self.status
            .shared_batches
            .store((bits << 1) | shared, Ordering::Relaxed);
        let res = if self.node.raft.leader_id == ::raft::INVALID_ID {
            Err(::raft::Error::ProposalDropped)
        } else {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgPropose);
            m.from = self.node.raft.id;
            m.set_entries(entries.into());
            self.node.raft.step(m)
        };
        match res {
            Ok(()) => self.proposal_tags.clear(),
            Err(e) => {
                let err = proposal_error(e);
                for tag in self.proposal_tags.drain(..) {
                    self.sm.proposal_dropped(tag, err.clone());
                }
            }
        }
    }

    fn issue_read_index(&mut self) {
        if self.node.raft.leader_id == ::raft::INVALID_ID {
            for w in self.pending_reads.drain(..) {
                let _ = w.send(Err(RaftError::NoLeader));
            }
            return;
        }
        self.read_seq += 1;
        self.node.read_index(self.read_ctx(self.read_seq));
        let waiters = std::mem::take(&mut self.pending_reads);
        self.inflight_reads.insert(
            self.read_seq,
            ReadRound {
                sent: Instant::now(),
                waiters,
            },
        );
    }

    /// The context of read round `seq`. The leader deduplicates rounds by context, and
    /// followers forward theirs to it: the member id makes every member's contexts
    /// distinct.
    fn read_ctx(&self, seq: u64) -> Vec<u8> {
        let mut ctx = self.cfg.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&seq.to_be_bytes());
        ctx
    }

    /// As etcd does, sends again (same context) every read round unanswered for
    /// [`READ_INDEX_RETRY`] while a leader is known: a round whose message was lost on
    /// the way to the leader, or whose heartbeat round was, completes then instead of at
    /// the request timeout. Rounds nobody waits for any more are dropped.
    fn retry_reads(&mut self, now: Instant) {
        self.inflight_reads.retain(|_, round| {
            round.waiters.retain(|w| !w.is_closed());
            !round.waiters.is_empty()
        });
        if self.node.raft.leader_id == ::raft::INVALID_ID {
            return;
        }
        let due: Vec<u64> = self
            .inflight_reads
            .iter()
            .filter(|(_, round)| now.saturating_duration_since(round.sent) >= READ_INDEX_RETRY)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            tracing::warn!(
                "sent-request-id" = seq,
                "retry-timeout" = ?READ_INDEX_RETRY,
                "waiting for ReadIndex response took too long, retrying"
            );
            self.node.read_index(self.read_ctx(seq));
            if let Some(round) = self.inflight_reads.get_mut(&seq) {
                round.sent = now;
            }
        }
    }

    /// Sends `msgs`, holding back snapshots until the state machine has applied
    /// everything this Ready commits (their data is attached then).
    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let (snaps, rest): (Vec<Message>, Vec<Message>) = msgs
            .into_iter()
            .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let mut now = None;
        for m in &rest {
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                let at = *now.get_or_insert_with(Instant::now);
                self.heartbeats.observe(m.to, at);
            }
        }
        self.held_snapshots.extend(snaps);
        if !rest.is_empty() {
            self.transport.send(rest);
        }
    }

    /// Attaches the state machine's data to held snapshot messages and sends them.
    /// The data covers at least the snapshot's index (applied >= snapshot index), so
    /// the receiver never misses an entry; entries it already holds are skipped by
    /// its state machine.
    fn send_held_snapshots(&mut self) {
        if self.held_snapshots.is_empty() {
            return;
        }
        let msgs = std::mem::take(&mut self.held_snapshots);
        let mut data = None;
        let mut out = Vec::new();
        for mut m in msgs {
            let index = m.get_snapshot().get_metadata().index;
            if self.sm.applied_index() < index {
                tracing::warn!(
                    index,
                    applied = self.sm.applied_index(),
                    "raft: snapshot ahead of the applied state; retrying later"
                );
                self.node
                    .report_snapshot(m.to, ::raft::SnapshotStatus::Failure);
                continue;
            }
            if data.is_none() {
                match self.sm.snapshot_data() {
                    Ok(d) => data = Some(d),
                    Err(e) => {
                        tracing::error!(error = %e, "raft: cannot export the state for a snapshot");
                        self.node
                            .report_snapshot(m.to, ::raft::SnapshotStatus::Failure);
                        continue;
                    }
                }
            }
            if let Some(d) = &data {
                m.mut_snapshot().data = d.clone().into();
            }
            tracing::info!(to = %format!("{:x}", m.to), index, "raft: sending a snapshot to a member that is behind");
            out.push(m);
        }
        if !out.is_empty() {
            self.transport.send(out);
        }
    }

    fn on_ready(&mut self) -> Result<(), LogStoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        let msgs = ready.take_messages();
        self.send(msgs);
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            let meta = snap.get_metadata();
            tracing::info!(
                index = meta.index,
                term = meta.term,
                size = snap.data.len(),
                "raft: installing a snapshot from the leader"
            );
            if let Err(e) = self.sm.restore(&snap.data) {
                tracing::error!(error = %e, "raft: cannot install the snapshot; exiting");
                std::process::exit(1);
            }
            self.log.apply_snapshot(&snap)?;
            let applied = self.sm.applied_index().max(meta.index);
            self.status.applied.store(applied, Ordering::Release);
            let _ = self.applied_tx.send(applied);
            tracing::info!(applied, "raft: installed the snapshot");
        }
        self.apply_entries(ready.take_committed_entries());
        for rs in ready.take_read_states() {
            let mut id = [0u8; 8];
            if rs.request_ctx.len() == 16 && rs.request_ctx[..8] == self.cfg.id.to_be_bytes() {
                id.copy_from_slice(&rs.request_ctx[8..]);
            }
            if let Some(round) = self.inflight_reads.remove(&u64::from_be_bytes(id)) {
                for w in round.waiters {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }
        match ready.hs() {
            // Only the commit index moved (raft's `must_sync` is false: no entries, same
            // term and vote): like etcd, no durable write for it. The commit index is
            // kept in memory and written with the next record; one lost in a crash is
            // raised to the applied index at startup and sent again by the leader.
            Some(hs) if !ready.must_sync() => self.log.set_commit(hs.commit)?,
            hs => self.log.persist(ready.entries(), hs)?,
        }
        let persisted = ready.take_persisted_messages();
        self.send(persisted);
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        let msgs = light.take_messages();
        self.send(msgs);
        self.apply_entries(light.take_committed_entries());
        self.node.advance_apply();
        self.send_held_snapshots();
        self.publish_status();
        self.maybe_compact_log()?;
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let with_data =
            |e: &Entry| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty();
        let mut last = 0;
        let mut i = 0;
        while i < entries.len() {
            let e = &entries[i];
            last = e.index;
            if with_data(e) {
                // Consecutive data entries go to the state machine as one run.
                let end = entries[i..]
                    .iter()
                    .position(|e| !with_data(e))
                    .map_or(entries.len(), |n| i + n);
                last = entries[end - 1].index;
                self.sm.apply_run(&entries[i..end]);
                i = end;
                continue;
            }
            i += 1;
            match e.get_entry_type() {
                EntryType::EntryNormal => self.sm.apply_noop(e.index),
                EntryType::EntryConfChange => match ConfChange::parse_from_bytes(&e.data) {
                    Ok(cc) => {
                        self.apply_conf_change(cc.clone().into_v2());
                        self.sm.apply_conf_change(e.index, &cc);
                    }
                    Err(_) => self.sm.apply_noop(e.index),
                },
                EntryType::EntryConfChangeV2 => {
                    if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data) {
                        self.apply_conf_change(cc);
                    }
                    self.sm.apply_noop(e.index);
                }
            }
        }
        self.status.applied.store(last, Ordering::Release);
        let _ = self.applied_tx.send(last);
    }

    fn apply_conf_change(&mut self, cc: ConfChangeV2) {
        match self.node.apply_conf_change(&cc) {
            Ok(cs) => {
                if let Err(e) = self.log.set_conf_state(cs) {
                    tracing::error!(error = %e, "raft: failed to persist conf state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "raft: conf change rejected"),
        }
    }

    fn publish_status(&mut self) {
        let r = &self.node.raft;
        let is_leader = r.state == StateRole::Leader;
        self.status.leader.store(r.leader_id, Ordering::Release);
        self.status.term.store(r.term, Ordering::Release);
        self.status
            .commit
            .store(r.raft_log.committed, Ordering::Release);
        self.status
            .last_index
            .store(r.raft_log.last_index(), Ordering::Release);
        self.status.is_leader.store(is_leader, Ordering::Release);
        let info = LeaderInfo {
            leader: r.leader_id,
            term: r.term,
            is_self: is_leader,
        };
        if *self.leader_tx.borrow() != info {
            if is_leader {
                tracing::info!(term = r.term, "raft: became leader");
                self.heartbeats.reset();
            } else if r.leader_id != ::raft::INVALID_ID {
                tracing::info!(leader = %format!("{:x}", r.leader_id), term = r.term, "raft: leader elected");
            } else {
                tracing::warn!(term = r.term, "raft: no leader");
            }
            let _ = self.leader_tx.send(info);
        }
    }

    /// Compacts the log once `snapshot_count` entries beyond the retained
    /// `catchup_entries` are applied: the state machine is flushed on its own thread
    /// first (the raft thread goes on), and the entries applied before that flush
    /// started are discarded on a later Ready, once it has completed.
    fn maybe_compact_log(&mut self) -> Result<(), LogStoreError> {
        if let Some((upto, flush)) = self.flush.take() {
            if !flush.is_done() {
                self.flush = Some((upto, flush));
                return Ok(());
            }
            flush.wait()?;
            self.log.compact_flushed(upto)?;
            tracing::info!(index = upto, "raft: compacted the raft log");
            return Ok(());
        }
        let applied = self.sm.applied_index();
        let first = self.log.first_index();
        if applied > first + self.cfg.snapshot_count + self.cfg.catchup_entries {
            // Everything up to `applied` is written to the state machine's database;
            // the flush started now makes it durable.
            let upto = applied.saturating_sub(self.cfg.catchup_entries);
            self.flush = Some((upto, self.log.start_flush()?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;
    use ::raft::Storage as _;

    /// Applies slowly, like a state machine behind a busy disk.
    struct SlowMachine {
        applied: u64,
    }

    impl StateMachine for SlowMachine {
        fn apply(&mut self, index: u64, _term: u64, _data: &[u8]) {
            std::thread::sleep(Duration::from_millis(20));
            self.applied = index;
        }
        fn apply_noop(&mut self, index: u64) {
            self.applied = self.applied.max(index);
        }
        fn applied_index(&self) -> u64 {
            self.applied
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proposals_beyond_the_bound_get_too_many_requests() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, _) = LogStore::open(&dir.path().join("wal"), storage, &[1]).unwrap();
        let cfg = RaftConfig {
            id: 1,
            tick: Duration::from_millis(10),
            election_ticks: 10,
            pre_vote: true,
            snapshot_count: 10_000,
            catchup_entries: 1_000,
            max_inflight: 4,
        };
        let (raft, _join) = start(cfg, log, SlowMachine { applied: 0 }, NoPeers, true).unwrap();
        let mut leader = raft.leader_watch();
        tokio::time::timeout(Duration::from_secs(5), leader.wait_for(|l| l.is_self))
            .await
            .unwrap()
            .unwrap();
        let mut refused = 0;
        let mut accepted = 0;
        for i in 0..200u32 {
            match raft.propose(u64::from(i), i.to_be_bytes().to_vec()) {
                Ok(_) => accepted += 1,
                Err(RaftError::TooManyRequests) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(
            refused > 0,
            "a burst against a slow state machine is refused"
        );
        assert!(accepted >= 4, "up to the bound is accepted ({accepted})");
        // Once the backlog is applied, proposals are accepted again.
        tokio::time::timeout(Duration::from_secs(20), raft.wait_applied(accepted + 1))
            .await
            .unwrap()
            .unwrap();
        assert!(raft.propose(1_000, b"after".to_vec()).is_ok());
    }

    /// Applies instantly; keeps the tags of dropped proposals.
    #[derive(Default)]
    struct Quick {
        applied: u64,
        dropped: Vec<(u64, RaftError)>,
    }

    impl StateMachine for Quick {
        fn apply(&mut self, index: u64, _term: u64, _data: &[u8]) {
            self.applied = index;
        }
        fn apply_noop(&mut self, index: u64) {
            self.applied = self.applied.max(index);
        }
        fn applied_index(&self) -> u64 {
            self.applied
        }
        fn proposal_dropped(&mut self, tag: u64, err: RaftError) {
            self.dropped.push((tag, err));
        }
    }

    /// What the loop sent, shared with the test.
    type Sent = Arc<std::sync::Mutex<Vec<Message>>>;

    /// Keeps every message the loop sends.
    struct Outbox(Sent);

    impl Transport for Outbox {
        fn send(&mut self, msgs: Vec<Message>) {
            self.0.lock().unwrap().extend(msgs);
        }
    }

    /// Member 1's raft settings in these tests (a 100 ms tick, never reached: the tests
    /// turn the loop by hand).
    fn member_one() -> RaftConfig {
        RaftConfig {
            id: 1,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            pre_vote: false,
            snapshot_count: 10_000,
            catchup_entries: 1_000,
            max_inflight: 1_000,
        }
    }

    fn three_voters(
        dir: &std::path::Path,
        campaign: bool,
    ) -> (RaftHandle, Receiver<Command>, Loop<Quick, Outbox>, Sent) {
        let storage = Storage::open(&dir.join("db")).unwrap();
        let (log, _) = LogStore::open(&dir.join("wal"), storage, &[1, 2, 3]).unwrap();
        let cfg = member_one();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (handle, rx, lp) =
            build(cfg, log, Quick::default(), Outbox(sent.clone()), campaign).unwrap();
        (handle, rx, lp, sent)
    }

    fn reply(from: u64, kind: MessageType, term: u64, index: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = from;
        m.to = 1;
        m.term = term;
        m.index = index;
        m
    }

    /// Makes member 1 leader with member 2's vote; returns the term.
    fn elect(lp: &mut Loop<Quick, Outbox>) -> u64 {
        lp.on_ready().unwrap();
        let term = lp.node.raft.term;
        let vote = reply(2, MessageType::MsgRequestVoteResponse, term, 0);
        lp.handle(Command::Step(vote));
        assert_eq!(lp.node.raft.state, StateRole::Leader);
        lp.on_ready().unwrap();
        term
    }

    /// Member `from` acknowledges the leader's log up to `index`; the loop handles it.
    fn acknowledge(lp: &mut Loop<Quick, Outbox>, from: u64, term: u64, index: u64) {
        let ack = reply(from, MessageType::MsgAppendResponse, term, index);
        lp.handle(Command::Step(ack));
        lp.on_ready().unwrap();
    }

    /// Does what one turn of the loop does with its queue.
    fn take_queue(lp: &mut Loop<Quick, Outbox>, rx: &Receiver<Command>) {
        while let Ok(cmd) = rx.try_recv() {
            lp.handle(cmd);
        }
        lp.step_proposals();
    }

    /// The contexts of the ReadIndex messages member 1 sent.
    fn read_contexts(sent: &Sent) -> Vec<Vec<u8>> {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgReadIndex)
            .map(|m| m.get_entries()[0].data.to_vec())
            .collect()
    }

    /// Member 1 follows member 2 (learnt from a heartbeat at term 2) and has forwarded
    /// one read round to it; returns the loop, its outbox and the round's answer.
    fn read_on_follower(
        dir: &std::path::Path,
    ) -> (
        Loop<Quick, Outbox>,
        Sent,
        oneshot::Receiver<Result<u64, RaftError>>,
    ) {
        let (_handle, _rx, mut lp, sent) = three_voters(dir, false);
        lp.handle(Command::Step(reply(2, MessageType::MsgHeartbeat, 2, 0)));
        lp.on_ready().unwrap();
        assert_eq!(lp.node.raft.leader_id, 2);
        let (tx, answer) = oneshot::channel();
        lp.handle(Command::ReadIndex(tx));
        lp.issue_read_index();
        lp.on_ready().unwrap();
        (lp, sent, answer)
    }

    #[test]
    fn an_unanswered_read_round_is_sent_again_and_completes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lp, sent, mut answer) = read_on_follower(dir.path());
        let first = read_contexts(&sent);
        assert_eq!(first.len(), 1, "one round forwarded to the leader");
        let sent_at = lp.inflight_reads.values().next().unwrap().sent;

        // Within the retry time nothing is sent again; past it the same round is.
        lp.retry_reads(sent_at + READ_INDEX_RETRY / 2);
        lp.on_ready().unwrap();
        assert_eq!(read_contexts(&sent).len(), 1);
        lp.retry_reads(sent_at + READ_INDEX_RETRY);
        lp.on_ready().unwrap();
        let again = read_contexts(&sent);
        assert_eq!(again.len(), 2, "sent again after {READ_INDEX_RETRY:?}");
        assert_eq!(again[1], first[0], "with the same context");

        // The leader's answer completes the waiter and ends the round.
        let mut resp = reply(2, MessageType::MsgReadIndexResp, 2, 7);
        resp.set_entries(
            vec![Entry {
                data: first[0].clone().into(),
                ..Default::default()
            }]
            .into(),
        );
        lp.handle(Command::Step(resp));
        lp.on_ready().unwrap();
        assert_eq!(answer.try_recv().unwrap(), Ok(7));
        assert!(lp.inflight_reads.is_empty());
    }

    #[test]
    fn a_read_round_nobody_waits_for_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lp, sent, answer) = read_on_follower(dir.path());
        drop(answer);
        let later = Instant::now() + READ_INDEX_RETRY;
        lp.retry_reads(later);
        lp.on_ready().unwrap();
        assert!(lp.inflight_reads.is_empty());
        assert_eq!(read_contexts(&sent).len(), 1, "not sent again for nobody");
    }

    #[test]
    fn proposals_queued_together_reach_a_follower_in_one_append() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, sent) = three_voters(dir.path(), true);
        let term = elect(&mut lp);
        // Member 2 acknowledges the leader's first entry: its progress replicates.
        let last = lp.node.raft.raft_log.last_index();
        acknowledge(&mut lp, 2, term, last);
        sent.lock().unwrap().clear();

        for i in 0..5u8 {
            handle.propose(u64::from(i), vec![i]).unwrap();
        }
        take_queue(&mut lp, &rx);
        lp.on_ready().unwrap();
        let sent = sent.lock().unwrap();
        let to_2: Vec<_> = sent
            .iter()
            .filter(|m| m.to == 2 && m.get_msg_type() == MessageType::MsgAppend)
            .collect();
        assert_eq!(
            to_2.len(),
            1,
            "one MsgAppend for the five proposals: {to_2:?}"
        );
        let data: Vec<_> = to_2[0].entries.iter().map(|e| e.data.to_vec()).collect();
        assert_eq!(data, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
        assert_eq!(lp.node.raft.raft_log.last_index(), last + 5);
    }

    #[test]
    fn a_dropped_batch_fails_every_proposal_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, _sent) = three_voters(dir.path(), false);
        let before = lp.node.raft.raft_log.last_index();
        for tag in [7, 8, 9] {
            handle.propose(tag, vec![tag as u8]).unwrap();
        }
        take_queue(&mut lp, &rx);
        assert_eq!(
            lp.sm.dropped,
            [7, 8, 9].map(|tag| (tag, RaftError::NoLeader)).to_vec()
        );
        assert_eq!(lp.node.raft.raft_log.last_index(), before);
    }

    #[test]
    fn a_dropped_conf_change_is_reported_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, _sent) = three_voters(dir.path(), false);
        let cc = ConfChange {
            id: 42,
            node_id: 4,
            ..Default::default()
        };
        handle.propose_conf_change(cc).unwrap();
        take_queue(&mut lp, &rx);
        assert_eq!(lp.sm.dropped, vec![(42, RaftError::NoLeader)]);
    }

    #[test]
    fn a_commit_index_alone_is_not_written_durably() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, _sent) = three_voters(dir.path(), true);
        let term = elect(&mut lp);
        let last = lp.node.raft.raft_log.last_index();
        assert!(lp.node.raft.raft_log.committed < last);
        let before = lp.log.wal_position();
        // Member 2 has the leader's entry: it commits, and only the commit index of the
        // hard state changes.
        acknowledge(&mut lp, 2, term, last);
        assert_eq!(lp.node.raft.raft_log.committed, last);
        assert_eq!(
            lp.log.wal_position(),
            before,
            "nothing written for a commit index"
        );
        assert_eq!(
            lp.log
                .raft_storage()
                .initial_state()
                .unwrap()
                .hard_state
                .commit,
            last
        );
        // A new entry is written durably, as before.
        handle.propose(1, b"x".to_vec()).unwrap();
        take_queue(&mut lp, &rx);
        lp.on_ready().unwrap();
        assert_ne!(lp.log.wal_position(), before);
    }

    #[test]
    fn advanced_ticks_bring_the_first_election_closer_unless_a_leader_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, _sent) = three_voters(dir.path(), false);
        let timeout = lp.node.raft.randomized_election_timeout();
        assert!(timeout >= 10, "randomized timeout {timeout}");
        handle.advance_ticks(8).unwrap();
        take_queue(&mut lp, &rx);
        assert_eq!(lp.node.raft.election_elapsed, 8);
        assert_eq!(lp.node.raft.state, StateRole::Follower);
        // The election starts once the rest of the randomized timeout has passed, not
        // a whole one.
        for _ in 0..timeout - 8 - 1 {
            lp.node.tick();
        }
        assert_eq!(lp.node.raft.state, StateRole::Follower);
        lp.node.tick();
        assert_eq!(lp.node.raft.state, StateRole::Candidate);

        // A member that has heard from a leader keeps its clock.
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, mut lp, _sent) = three_voters(dir.path(), false);
        let term = lp.node.raft.term + 1;
        lp.handle(Command::Step(reply(2, MessageType::MsgHeartbeat, term, 0)));
        assert_eq!(lp.node.raft.leader_id, 2);
        lp.node.tick();
        handle.advance_ticks(8).unwrap();
        take_queue(&mut lp, &rx);
        assert_eq!(lp.node.raft.election_elapsed, 1);
    }

    /// A single voter that has elected itself and applied everything, with its handle
    /// able to drive it (as [`start`] sets it up, without the loop's thread).
    fn lone_leader(
        dir: &std::path::Path,
    ) -> (
        RaftHandle,
        Receiver<Command>,
        Arc<SharedLoop<Quick, NoPeers>>,
    ) {
        let storage = Storage::open(&dir.join("db")).unwrap();
        let (log, _) = LogStore::open(&dir.join("wal"), storage, &[1]).unwrap();
        let cfg = member_one();
        let (mut handle, rx, mut lp) = build(cfg, log, Quick::default(), NoPeers, true).unwrap();
        while lp.node.has_ready() {
            lp.on_ready().unwrap();
        }
        assert_eq!(lp.node.raft.state, StateRole::Leader);
        assert_eq!(lp.sm.applied, lp.node.raft.raft_log.last_index());
        let shared = Arc::new(std::sync::Mutex::new(Some(lp)));
        handle.inline = Some(shared.clone());
        (handle, rx, shared)
    }

    #[test]
    fn a_lone_proposer_drives_an_idle_loop_and_returns_with_its_entry_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, shared) = lone_leader(dir.path());
        let before = handle.status().applied();
        let wal = shared.lock().unwrap().as_ref().unwrap().log.wal_position();
        handle.propose_or_drive(7, b"one".to_vec()).unwrap();
        // Written and applied on this thread before the call returned; nothing queued.
        assert_eq!(handle.status().applied(), before + 1);
        assert_eq!(
            shared.lock().unwrap().as_ref().unwrap().sm.applied,
            before + 1
        );
        assert_ne!(
            shared.lock().unwrap().as_ref().unwrap().log.wal_position(),
            wal
        );
        assert!(rx.try_recv().is_err());
        // `propose` never drives the loop, idle or not.
        handle.propose(8, b"two".to_vec()).unwrap();
        assert_eq!(handle.status().applied(), before + 1);
        assert!(matches!(rx.try_recv(), Ok(Command::Propose { tag: 8, .. })));
    }

    #[test]
    fn a_busy_loop_takes_the_proposal_through_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, shared) = lone_leader(dir.path());
        let before = handle.status().applied();
        {
            // The loop's thread (or another proposer) holds the loop.
            let _held = shared.lock().unwrap();
            handle.propose_or_drive(7, b"one".to_vec()).unwrap();
        }
        assert_eq!(handle.status().applied(), before);
        let queued = rx.try_recv().unwrap();
        assert!(matches!(queued, Command::Propose { tag: 7, .. }));
        // With a proposal queued the loop is not idle: the next one queues too.
        handle.propose_or_drive(8, b"two".to_vec()).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Command::Propose { tag: 8, .. })));
        let mut guard = shared.lock().unwrap();
        let lp = guard.as_mut().unwrap();
        lp.handle(queued);
        assert_eq!(handle.status().inflight.load(Ordering::Acquire), 1);
    }

    #[test]
    fn once_proposals_arrive_together_they_go_through_the_queue_to_be_batched() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, shared) = lone_leader(dir.path());
        handle.propose(1, b"a".to_vec()).unwrap();
        handle.propose(2, b"b".to_vec()).unwrap();
        {
            let mut guard = shared.lock().unwrap();
            let lp = guard.as_mut().unwrap();
            while let Ok(cmd) = rx.try_recv() {
                lp.handle(cmd);
            }
            lp.step_proposals();
            lp.on_ready().unwrap();
            assert_eq!(lp.sm.applied, lp.node.raft.raft_log.last_index());
        }
        let applied = handle.status().applied();
        // Idle again, but the last batch held two proposals.
        handle.propose_or_drive(3, b"c".to_vec()).unwrap();
        assert_eq!(handle.status().applied(), applied);
        let queued = rx.try_recv().unwrap();
        assert!(matches!(queued, Command::Propose { tag: 3, .. }));
        // 64 batches of one later, a lone proposer drives the loop again.
        let mut guard = shared.lock().unwrap();
        let lp = guard.as_mut().unwrap();
        lp.handle(queued);
        lp.step_proposals();
        lp.on_ready().unwrap();
        for tag in 4..67u64 {
            handle.propose(tag, b"d".to_vec()).unwrap();
            while let Ok(cmd) = rx.try_recv() {
                lp.handle(cmd);
                lp.step_proposals();
            }
            lp.on_ready().unwrap();
        }
        drop(guard);
        assert_eq!(handle.status().shared_batches.load(Ordering::Relaxed), 0);
        let applied = handle.status().applied();
        handle.propose_or_drive(67, b"e".to_vec()).unwrap();
        assert_eq!(handle.status().applied(), applied + 1);
    }

    #[test]
    fn a_lone_reader_gets_its_read_index_without_the_loops_thread() {
        use futures::FutureExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, shared) = lone_leader(dir.path());
        let commit = handle.status().commit();
        // Answered on this thread: ready at the first poll, nothing queued.
        let index = handle.read_index_or_drive().now_or_never();
        assert_eq!(index, Some(Ok(commit)));
        assert!(rx.try_recv().is_err());
        // A held loop takes the round through its queue.
        let guard = shared.lock().unwrap();
        let mut read = Box::pin(handle.read_index_or_drive());
        assert!((&mut read).now_or_never().is_none());
        drop(guard);
        assert!(matches!(rx.try_recv(), Ok(Command::ReadIndex(_))));
    }

    #[test]
    fn a_stopped_loop_is_not_driven() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, rx, shared) = lone_leader(dir.path());
        // As the loop's thread ends it: the loop is taken out and dropped.
        let ended = shared.lock().unwrap().take();
        ended.unwrap().finish();
        drop(rx);
        assert_eq!(
            handle.propose_or_drive(7, b"one".to_vec()),
            Err(RaftError::Stopped)
        );
        use futures::FutureExt as _;
        assert_eq!(
            handle.read_index_or_drive().now_or_never(),
            Some(Err(RaftError::Stopped))
        );
    }
}
