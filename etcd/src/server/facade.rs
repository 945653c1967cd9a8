//! The server facade: every client operation as one async call. Writes are proposed
//! through raft and answered when applied; linearizable reads wait for a ReadIndex
//! round and the matching applied index; serializable reads are served locally.
//! Errors are etcd's ([`EtcdError`]); headers are filled here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use crate::apply::{Alarms, Applied, ApplyResponse};
use crate::auth::{requests as auth_req, AuthInfo, AuthStore};
use crate::cluster::Membership;
use crate::lease::{Lessor, MAX_LEASE_TTL};
use crate::mvcc::{MvccError, Store};
use crate::proto::etcdinternal::{
    internal_request::Request, InternalRequest, MemberAttributes, RequestAuth,
};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, HashKvResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveResponse, Member, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader, StatusResponse, TxnRequest, TxnResponse,
};
use crate::raft::transport::LeaderLink;
use crate::raft::{RaftError, RaftHandle, WaitRegistry, Waited};
use crate::rpctypes::EtcdError;
use crate::server::validate;
use crate::storage::Storage;
use crate::watch::WatchHub;

/// etcd's server version string reported by Status and `/version`.
pub const SERVER_VERSION: &str = crate::config::ETCD_VERSION;
/// Cluster and storage version reported alongside.
pub const CLUSTER_VERSION: &str = "3.6.0";

/// Limits and identity the facade enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This member's id.
    pub member_id: u64,
    /// This member's name.
    pub name: String,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Effective `--quota-backend-bytes`.
    pub quota_bytes: u64,
    /// Consensus timeout (etcd: 5 s + 2 × election timeout).
    pub request_timeout: Duration,
    /// `--initial-cluster-token` (part of the ID of members added at runtime).
    pub cluster_token: String,
    /// `--strict-reconfig-check`.
    pub strict_reconfig_check: bool,
    /// `--max-learners`: `MemberAdd` of one more learner is refused beyond it.
    pub max_learners: usize,
    /// `--warning-apply-duration`: slower read-only ranges are logged and counted.
    pub warning_apply_duration: Duration,
    /// `--warning-unary-request-duration`: slower KV calls are logged ("request stats").
    pub warning_unary_request_duration: Duration,
    /// `--bcrypt-cost`: the cost of the password hashes UserAdd and
    /// UserChangePassword make.
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: with auth enabled, a verified client certificate's common
    /// name is the user of a request without token.
    pub client_cert_auth: bool,
}

/// Everything the facade reaches.
pub struct Parts {
    /// Settings.
    pub settings: Settings,
    /// Raft handle.
    pub raft: RaftHandle,
    /// Result waiters.
    pub wait: Arc<WaitRegistry<Applied>>,
    /// The MVCC store.
    pub store: Arc<Store>,
    /// Leases.
    pub lessor: Arc<Lessor>,
    /// Watchers.
    pub hub: Arc<WatchHub>,
    /// Alarms.
    pub alarms: Arc<Alarms>,
    /// Members.
    pub members: Arc<Membership>,
    /// Users, roles, tokens.
    pub auth: Arc<AuthStore>,
    /// RocksDB.
    pub storage: Storage,
    /// How followers reach the leader for leader-only work (`None`: single process
    /// tests without peers).
    pub link: Option<Arc<LeaderLink>>,
}

/// The etcd server as seen by its API edge.
pub struct EtcdServer {
    pub(super) p: Parts,
    db_size: SizeCache,
}

/// The database size for quota checks, refreshed at most every [`SizeCache::TTL`]: the
/// RocksDB size properties are too costly to read on every write.
#[derive(Default)]
struct SizeCache {
    bytes: std::sync::atomic::AtomicU64,
    read_at_ms: std::sync::atomic::AtomicU64,
}

impl SizeCache {
    const TTL: Duration = Duration::from_millis(100);

    fn get(&self, storage: &Storage) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
            + 1;
        let at = self.read_at_ms.load(Relaxed);
        if at == 0 || now.saturating_sub(at) >= Self::TTL.as_millis() as u64 {
            let size = storage.quota_size();
            self.bytes.store(size, Relaxed);
            self.read_at_ms.store(now, Relaxed);
            return size;
        }
        self.bytes.load(Relaxed)
    }
}

fn mvcc_err(e: MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRevision => EtcdError::FutureRev,
        other => EtcdError::Internal(other.to_string()),
    }
}

/// What a proposer gets from the end of its wait: the applied result, or etcd's error
/// for a dropped proposal, a timeout, or a registry that went away with the server.
pub(super) fn waited(
    w: Result<Waited<Applied>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Applied, EtcdError> {
    match w {
        Ok(Waited::Done(a)) => Ok(a),
        Ok(Waited::Dropped(e)) => Err(raft_err(e)),
        Ok(Waited::TimedOut) => Err(EtcdError::Timeout),
        Err(_) => Err(EtcdError::Stopped),
    }
}

pub(super) fn raft_err(e: RaftError) -> EtcdError {
    match e {
        RaftError::NoLeader => EtcdError::NoLeader,
        RaftError::Stopped => EtcdError::Stopped,
        RaftError::TooManyRequests => EtcdError::TooManyRequests,
        RaftError::BadTransferee => EtcdError::BadLeaderTransferee,
        RaftError::Other(s) => EtcdError::Internal(s),
    }
}

impl EtcdServer {
    /// A facade over `parts`.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new(EtcdServer {
            p: parts,
            db_size: SizeCache::default(),
        })
    }

    /// Settings in force.
    pub fn settings(&self) -> &Settings {
        &self.p.settings
    }

    /// The watch hub.
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.p.hub
    }

    /// The raft handle.
    pub fn raft(&self) -> &RaftHandle {
        &self.p.raft
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.p.store
    }

    /// The database.
    pub fn storage(&self) -> &Storage {
        &self.p.storage
    }

    /// The alarms.
    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.p.alarms
    }

    /// The auth store.
    pub fn auth(&self) -> &Arc<AuthStore> {
        &self.p.auth
    }

    /// A response header at `revision` (0 = current).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.p.members.cluster_id(),
            member_id: self.p.settings.member_id,
            revision: if revision == 0 {
                self.p.store.current_revision()
            } else {
                revision
            },
            raft_term: self.p.raft.status().term(),
        }
    }

    /// Proposes the server's own `req` (no caller: apply does not check it against
    /// auth) and waits for its applied result.
    pub(super) async fn propose(&self, req: Request) -> Result<Applied, EtcdError> {
        self.propose_with(req, None).await
    }

    /// Proposes a client's `req` made by `who` (apply checks it when auth is enabled)
    /// and waits for its applied result.
    pub(super) async fn propose_as(
        &self,
        req: Request,
        who: Option<&AuthInfo>,
    ) -> Result<Applied, EtcdError> {
        self.propose_with(req, Some(request_auth(who))).await
    }

    async fn propose_with(
        &self,
        req: Request,
        auth: Option<RequestAuth>,
    ) -> Result<Applied, EtcdError> {
        self.propose_encoded(|id| {
            InternalRequest {
                id,
                request: Some(req),
                auth,
            }
            .encode_to_vec()
        })
        .await
    }

    /// [`propose_as`](Self::propose_as) of a KV request the caller keeps: `msg` is
    /// written as `InternalRequest`'s oneof field `tag` (the bytes `propose_as` writes
    /// for it), so the request is not copied and stays the caller's (for its
    /// slow-request log).
    async fn propose_kv<M: Message>(
        &self,
        tag: u32,
        msg: &M,
        who: Option<&AuthInfo>,
    ) -> Result<Applied, EtcdError> {
        let auth = request_auth(who);
        self.propose_encoded(|id| encode_internal(id, tag, msg, &auth))
            .await
    }

    /// Registers a waiter, encodes the proposal for its id with `encode`, proposes it
    /// and waits for its applied result.
    async fn propose_encoded(
        &self,
        encode: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Applied, EtcdError> {
        let _pending = crate::metrics::PendingProposal::start();
        let (id, rx) = self.p.wait.register();
        let data = encode(id);
        if data.len() > self.p.settings.max_request_bytes {
            self.p.wait.cancel(id);
            return Err(EtcdError::RequestTooLarge);
        }
        // The only request in flight (this one, or none: a proposal of the server's own)
        // may take the raft loop's work on its own thread when the loop is idle: no
        // other request needs this thread meanwhile, and two thread hand-offs leave the
        // write's path (see `RaftHandle::propose_or_drive`). Not while anyone watches:
        // watchers wait on the apply too, and get their events sooner from the raft
        // thread (woken from there, their tasks run on both workers at once; woken on
        // this worker, they would wait for it to finish this request's response first:
        // put -> every watcher p50 0.09-0.11 ms against 0.18-0.24 ms, A/B of 100 watchers).
        let lone = super::coalesce::in_flight_everywhere() <= 1 && self.p.hub.watcher_count() == 0;
        let proposed = if lone {
            self.p.raft.propose_or_drive(id, data)
        } else {
            self.p.raft.propose(id, data)
        };
        if let Err(e) = proposed {
            self.p.wait.cancel(id);
            crate::metrics::PROPOSALS_FAILED.inc();
            return Err(raft_err(e));
        }
        // Apply answers the id; a dropped proposal and the request timeout (the
        // registry's sweeps, `server::wait_sweep_task`) end the wait too.
        match waited(rx.await) {
            Ok(a) => Ok(a),
            Err(e) => {
                crate::metrics::PROPOSALS_FAILED.inc();
                Err(e)
            }
        }
    }

    /// Waits until this member has applied everything committed before the call
    /// (a ReadIndex round).
    ///
    /// A new leader while the round is outstanding ends it with "etcdserver: leader
    /// changed" (the round may have gone to the old leader), as in etcd. As etcd counts
    /// them, a round that fails (a new leader, no leader, a stopped loop) adds to
    /// `etcd_server_read_indexes_failed_total`, and one still unanswered at the request
    /// timeout logs "timed out waiting for read index response (local node might have
    /// slow network)" and adds to `etcd_server_slow_read_indexes_total`.
    pub async fn linearizable_barrier(&self) -> Result<(), EtcdError> {
        let mut leader = self.p.raft.leader_watch();
        let before = *leader.borrow_and_update();
        let answered = AtomicBool::new(false);
        let fut = async {
            // As for proposals (`propose`): the only request in flight may take the raft
            // loop's work on its own thread when the loop is idle.
            let index = if super::coalesce::in_flight_everywhere() <= 1 {
                self.p.raft.read_index_or_drive().await
            } else {
                self.p.raft.read_index().await
            }
            .map_err(|e| {
                crate::metrics::READ_INDEXES_FAILED.inc();
                raft_err(e)
            })?;
            answered.store(true, Ordering::Relaxed);
            self.p.raft.wait_applied(index).await.map_err(raft_err)
        };
        let changed = async {
            loop {
                if leader.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let now = *leader.borrow_and_update();
                // As in etcd, only a new leader counts (losing one ends in a timeout).
                if now.leader != 0 && (now.leader != before.leader || now.term != before.term) {
                    return EtcdError::LeaderChanged;
                }
            }
        };
        let raced = async {
            tokio::select! {
                r = fut => r,
                e = changed => {
                    if !answered.load(Ordering::Relaxed) {
                        crate::metrics::READ_INDEXES_FAILED.inc();
                    }
                    Err(e)
                }
            }
        };
        let timeout = self.p.settings.request_timeout;
        match tokio::time::timeout(timeout, raced).await {
            Ok(r) => r,
            Err(_) => {
                if !answered.load(Ordering::Relaxed) {
                    tracing::warn!(
                        ?timeout,
                        "timed out waiting for read index response (local node might have slow network)"
                    );
                    crate::metrics::SLOW_READ_INDEXES.inc();
                }
                Err(EtcdError::Timeout)
            }
        }
    }

    fn quota_check(&self, cost: usize) -> Result<(), EtcdError> {
        if self.p.alarms.is_active(AlarmType::Nospace) {
            return Err(EtcdError::NoSpace);
        }
        let size = self.db_size.get(&self.p.storage);
        if size + cost as u64 > self.p.settings.quota_bytes {
            Err(EtcdError::NoSpace)
        } else {
            Ok(())
        }
    }

    async fn raise_nospace(&self) {
        tracing::warn!(
            quota = self.p.settings.quota_bytes,
            "backend quota exceeded; raising NOSPACE alarm"
        );
        let req = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.p.settings.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        let _ = self.propose(Request::Alarm(req)).await;
    }

    async fn guarded_quota(&self, cost: usize) -> Result<(), EtcdError> {
        match self.quota_check(cost) {
            Ok(()) => Ok(()),
            Err(e) => {
                if !self.p.alarms.is_active(AlarmType::Nospace) {
                    self.raise_nospace().await;
                }
                Err(e)
            }
        }
    }

    /// KV.Range by `who` (read access to the keys when auth is enabled). A range that
    /// takes longer than `--warning-apply-duration` (the wait for a linearizable read
    /// included, as in etcd) is logged as a slow read-only range.
    pub async fn range(
        &self,
        req: &RangeRequest,
        who: Option<&AuthInfo>,
    ) -> Result<RangeResponse, EtcdError> {
        let started = std::time::Instant::now();
        let res = self.range_inner(req, who).await;
        crate::apply::slow::check(
            started.elapsed(),
            self.p.settings.warning_apply_duration,
            "read-only range ",
            || crate::apply::slow::describe_range(req),
            || match &res {
                Ok(r) => format!(
                    "range_response_count:{} size:{}",
                    r.kvs.len(),
                    r.encoded_len()
                ),
                Err(_) => String::new(),
            },
            res.as_ref().err().map(|e| e as &dyn std::fmt::Display),
        );
        res
    }

    async fn range_inner(
        &self,
        req: &RangeRequest,
        who: Option<&AuthInfo>,
    ) -> Result<RangeResponse, EtcdError> {
        validate::range(req)?;
        if !req.serializable {
            if self.is_learner() {
                return Err(EtcdError::NotSupportedForLearner);
            }
            self.linearizable_barrier().await?;
        }
        // After the ReadIndex round, as in etcd (the health check relies on it).
        auth_req::check_range(&self.p.auth, who, req)?;
        let r = self.p.store.range(req).map_err(mvcc_err)?;
        crate::metrics::RANGE_TOTAL.inc();
        Ok(RangeResponse {
            header: Some(self.header(r.revision)),
            kvs: r.kvs,
            more: r.more,
            count: r.count,
        })
    }

    /// Whether this member is a learner (it then serves only serializable reads,
    /// Status, MemberList and snapshots, as in etcd).
    pub fn is_learner(&self) -> bool {
        self.p.members.is_learner(self.p.settings.member_id)
    }

    /// The keys attached to `lease` (none for an unknown one).
    fn lease_keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self.p
            .lessor
            .info(lease)
            .map(|l| l.keys)
            .unwrap_or_default()
    }

    /// KV.Put by `who` (checked when auth is enabled, here and again at apply).
    pub async fn put(
        &self,
        req: &PutRequest,
        who: Option<&AuthInfo>,
    ) -> Result<PutResponse, EtcdError> {
        validate::put(req)?;
        auth_req::check_put(&self.p.auth, who, req, |l| self.lease_keys(l))?;
        self.guarded_quota(req.key.len() + req.value.len()).await?;
        let a = self.propose_kv(TAG_PUT, req, who).await?;
        match a.result? {
            ApplyResponse::Put(mut r) => {
                r.header = Some(self.header(a.revision));
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// KV.DeleteRange by `who` (checked when auth is enabled, here and at apply).
    pub async fn delete_range(
        &self,
        req: &DeleteRangeRequest,
        who: Option<&AuthInfo>,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        validate::delete_range(req)?;
        auth_req::check_delete(&self.p.auth, who, req)?;
        let a = self.propose_kv(TAG_DELETE_RANGE, req, who).await?;
        match a.result? {
            ApplyResponse::DeleteRange(mut r) => {
                r.header = Some(self.header(a.revision));
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// KV.Txn by `who` (checked when auth is enabled, here and at apply).
    pub async fn txn(
        &self,
        req: &TxnRequest,
        who: Option<&AuthInfo>,
    ) -> Result<TxnResponse, EtcdError> {
        validate::txn(req, self.p.settings.max_txn_ops)?;
        auth_req::check_txn(&self.p.auth, who, req)?;
        if crate::apply::txn::has_puts(req) {
            self.guarded_quota(req.encoded_len()).await?;
        }
        let a = self.propose_kv(TAG_TXN, req, who).await?;
        match a.result? {
            ApplyResponse::Txn(mut r) => {
                let h = self.header(a.revision);
                fill_txn_headers(&mut r, &h);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// KV.Compact. The compaction is applied (and physically done) before this returns.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, EtcdError> {
        let a = self.propose(Request::Compaction(req)).await?;
        a.result?;
        Ok(CompactionResponse {
            header: Some(self.header(a.revision)),
        })
    }

    /// Lease.LeaseGrant. ID 0 picks a fresh positive id.
    pub async fn lease_grant(
        &self,
        mut req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        self.guarded_quota(64).await?;
        if req.id == 0 {
            loop {
                let id = (self.p.wait.next_id() & (i64::MAX as u64)) as i64;
                if id != 0 && !self.p.lessor.exists(id) {
                    req.id = id;
                    break;
                }
            }
        }
        let a = self.propose(Request::LeaseGrant(req)).await?;
        match a.result? {
            ApplyResponse::LeaseGranted { id, ttl } => Ok(LeaseGrantResponse {
                header: Some(self.header(a.revision)),
                id,
                ttl,
                error: String::new(),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Lease.LeaseRevoke by `who`: deletes every attached key (write access to each
    /// when auth is enabled).
    pub async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
        who: Option<&AuthInfo>,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        if self.p.auth.is_enabled() {
            auth_req::check_keys(&self.p.auth, who, &self.lease_keys(req.id))?;
        }
        let a = self.propose_as(Request::LeaseRevoke(req), who).await?;
        a.result?;
        Ok(LeaseRevokeResponse {
            header: Some(self.header(a.revision)),
        })
    }

    /// Revokes an expired lease (leader's expiry loop; the server's own request).
    pub async fn lease_expire(&self, id: i64) -> Result<(), EtcdError> {
        self.propose(Request::LeaseRevoke(LeaseRevokeRequest { id }))
            .await?
            .result
            .map(|_| ())
    }

    /// One keep-alive: renews the lease on the leader (forwarded there from a
    /// follower); returns its TTL, 0 if it does not exist.
    pub async fn lease_renew(&self, id: i64) -> Result<(ResponseHeader, i64), EtcdError> {
        let header = self.header(0);
        if self.p.raft.status().is_leader() {
            return Ok((header, self.lease_renew_local(id)?));
        }
        let timeout = self.p.settings.request_timeout;
        let ttl = self
            .with_leader(|link, urls| async move { link.lease_renew(&urls, id, timeout).await })
            .await?;
        Ok((header, ttl))
    }

    /// Renews lease `id` in this member's lessor (it must lead): its TTL, or 0 if the
    /// lease does not exist.
    pub fn lease_renew_local(&self, id: i64) -> Result<i64, EtcdError> {
        match self.p.lessor.renew(id) {
            Ok(ttl) => Ok(ttl),
            Err(crate::lease::LeaseError::NotFound) => Ok(0),
            Err(_) => Err(EtcdError::NotLeader),
        }
    }

    /// Remaining and granted TTL of lease `id` as this member counts it; remaining
    /// -1 if the lease does not exist.
    pub fn lease_ttl_local(&self, id: i64) -> (i64, i64) {
        match self.p.lessor.info(id) {
            Some(i) => (i.remaining_ttl, i.granted_ttl),
            None => (-1, 0),
        }
    }

    /// Runs `f` against the current leader's peer URLs (a follower's forwarding).
    pub(super) async fn with_leader<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        F: FnOnce(Arc<LeaderLink>, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let leader = self.p.raft.status().leader();
        if leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        let link = self.p.link.clone().ok_or(EtcdError::NotLeader)?;
        let urls = self
            .p
            .members
            .get(leader)
            .map(|m| m.peer_urls)
            .ok_or(EtcdError::NoLeader)?;
        f(link, urls).await.map_err(|s| status_to_etcd(&s))
    }

    /// Lease.LeaseTimeToLive by `who`: TTL -1 for an unknown lease; listing the keys
    /// needs read access to each when auth is enabled.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
        who: Option<&AuthInfo>,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        self.linearizable_barrier().await?;
        if keys && self.p.auth.is_enabled() {
            let held = self.lease_keys(id);
            let ranges: Vec<(&[u8], &[u8])> =
                held.iter().map(|k| (k.as_slice(), &[][..])).collect();
            self.p
                .auth
                .check_ranges(who, &ranges, crate::auth::Access::Read)?;
        }
        let header = Some(self.header(0));
        // Leases count down on the leader: a follower asks it for the remaining TTL.
        let leader_view = if self.p.raft.status().is_leader() {
            None
        } else {
            let timeout = self.p.settings.request_timeout;
            Some(
                self.with_leader(
                    |link, urls| async move { link.lease_ttl(&urls, id, timeout).await },
                )
                .await?,
            )
        };
        Ok(match self.p.lessor.info(id) {
            Some(_) if leader_view.is_some_and(|(ttl, _)| ttl < 0) => LeaseTimeToLiveResponse {
                header,
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Some(info) => LeaseTimeToLiveResponse {
                header,
                id,
                ttl: leader_view.map_or(info.remaining_ttl, |(ttl, _)| ttl),
                granted_ttl: info.granted_ttl,
                keys: if keys { info.keys } else { Vec::new() },
            },
            None => LeaseTimeToLiveResponse {
                header,
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        })
    }

    /// Lease.LeaseLeases.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, EtcdError> {
        self.linearizable_barrier().await?;
        Ok(LeaseLeasesResponse {
            header: Some(self.header(0)),
            leases: self
                .p
                .lessor
                .ids()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        })
    }

    /// Maintenance.Alarm.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        let action = AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get);
        if action == AlarmAction::Get {
            return Ok(AlarmResponse {
                header: Some(self.header(0)),
                alarms: self.p.alarms.list(req.alarm),
            });
        }
        let a = self.propose(Request::Alarm(req)).await?;
        match a.result? {
            ApplyResponse::Alarm(alarms) => Ok(AlarmResponse {
                header: Some(self.header(a.revision)),
                alarms,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes this member's name and client URLs through raft (etcd's publish);
    /// once applied, the member serves linearizable requests.
    pub async fn publish(&self, client_urls: Vec<String>) -> Result<(), EtcdError> {
        let req = MemberAttributes {
            member_id: self.p.settings.member_id,
            name: self.p.settings.name.clone(),
            client_urls,
        };
        self.propose(Request::MemberAttributes(req)).await?.result?;
        Ok(())
    }

    /// Cluster.MemberList.
    pub async fn member_list(
        &self,
        linearizable: bool,
    ) -> Result<(ResponseHeader, Vec<Member>), EtcdError> {
        if linearizable {
            self.linearizable_barrier().await?;
        }
        let mut h = self.header(0);
        h.revision = 0;
        Ok((h, self.p.members.list()))
    }

    /// Maintenance.Status.
    pub fn status(&self) -> StatusResponse {
        let st = self.p.raft.status();
        let mut errors = Vec::new();
        for a in self.p.alarms.list(AlarmType::None as i32) {
            let name = AlarmType::try_from(a.alarm)
                .map(|t| t.as_str_name())
                .unwrap_or("UNKNOWN");
            errors.push(format!("memberID:{} alarm:{} ", a.member_id, name));
        }
        if st.leader() == 0 {
            errors.push(EtcdError::NoLeader.to_string());
        }
        StatusResponse {
            header: Some(self.header(0)),
            version: SERVER_VERSION.to_string(),
            db_size: self.p.storage.size_on_disk() as i64,
            leader: st.leader(),
            raft_index: st.commit(),
            raft_term: st.term(),
            raft_applied_index: st.applied(),
            errors,
            db_size_in_use: self.p.storage.size_in_use() as i64,
            is_learner: self
                .p
                .members
                .get(self.p.settings.member_id)
                .is_some_and(|m| m.is_learner),
            storage_version: CLUSTER_VERSION.to_string(),
            db_size_quota: self.p.settings.quota_bytes as i64,
            downgrade_info: None,
        }
    }

    /// Maintenance.HashKV.
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, EtcdError> {
        let store = self.p.store.clone();
        let (hash, compact, rev) = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .map_err(mvcc_err)?;
        Ok(HashKvResponse {
            header: Some(self.header(0)),
            hash,
            compact_revision: compact,
            hash_revision: rev,
        })
    }

    /// Maintenance.Defragment: rewrites the database files while clients keep working.
    pub async fn defragment(&self) -> Result<(), EtcdError> {
        let storage = self.p.storage.clone();
        tokio::task::spawn_blocking(move || storage.compact_all())
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .map_err(|e| EtcdError::Internal(e.to_string()))
    }

    /// Maintenance.MoveLeader.
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let st = self.p.raft.status();
        if !st.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        if self.p.members.get(target).is_none() {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target == self.p.settings.member_id {
            return Ok(());
        }
        self.p.raft.transfer_leader(target).map_err(raft_err)?;
        let deadline = tokio::time::Instant::now() + self.p.settings.request_timeout;
        let mut w = self.p.raft.leader_watch();
        loop {
            if w.borrow().leader == target {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, w.changed())
                .await
                .is_err()
            {
                return Err(EtcdError::Timeout);
            }
        }
    }

    /// Lease ids past expiry (leader only).
    pub fn expired_leases(&self, limit: usize) -> Vec<i64> {
        self.p.lessor.expired(limit)
    }

    /// Makes leases count down (became leader) or stop (lost leadership).
    pub fn set_lease_primary(&self, primary: bool) {
        if primary {
            self.p.lessor.promote();
        } else {
            self.p.lessor.demote();
        }
    }
}

/// The top-level txn response carries the full header; sub-responses carry only the
/// revision, as etcd fills them.
fn fill_txn_headers(r: &mut TxnResponse, h: &ResponseHeader) {
    r.header = Some(*h);
    fill_sub_headers(r, h.revision);
}

fn fill_sub_headers(r: &mut TxnResponse, revision: i64) {
    use crate::proto::etcdserverpb::response_op::Response;
    let only_rev = || {
        Some(ResponseHeader {
            revision,
            ..Default::default()
        })
    };
    for op in &mut r.responses {
        match &mut op.response {
            Some(Response::ResponseRange(x)) if x.header.is_none() => x.header = only_rev(),
            Some(Response::ResponseRange(_)) => {}
            Some(Response::ResponsePut(x)) => x.header = only_rev(),
            Some(Response::ResponseDeleteRange(x)) => x.header = only_rev(),
            Some(Response::ResponseTxn(x)) => {
                x.header = only_rev();
                fill_sub_headers(x, revision);
            }
            None => {}
        }
    }
}

/// An etcd error a leader answered with, recognised by its message.
fn status_to_etcd(s: &tonic::Status) -> EtcdError {
    for e in [
        EtcdError::NotLeader,
        EtcdError::NoLeader,
        EtcdError::Stopped,
        EtcdError::Timeout,
        EtcdError::LeaseNotFound,
    ] {
        if s.message() == e.to_string() {
            return e;
        }
    }
    match s.code() {
        tonic::Code::DeadlineExceeded => EtcdError::Timeout,
        tonic::Code::Unavailable => EtcdError::NoLeader,
        _ => EtcdError::Internal(s.message().to_string()),
    }
}

/// `InternalRequest`'s oneof field numbers of the KV requests proposed by reference.
const TAG_PUT: u32 = 2;
const TAG_DELETE_RANGE: u32 = 3;
const TAG_TXN: u32 = 4;

/// The bytes of `InternalRequest { id, request: <field tag>(msg), auth }`, as its
/// derived encoding writes them (field 1 when non-zero, the message field, then the
/// caller).
fn encode_internal<M: Message>(id: u64, tag: u32, msg: &M, auth: &RequestAuth) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut buf = Vec::with_capacity(11 + 5 + len + 3 + auth.encoded_len());
    if id != 0 {
        prost::encoding::uint64::encode(1, &id, &mut buf);
    }
    prost::encoding::message::encode(tag, msg, &mut buf);
    prost::encoding::message::encode(AUTH_TAG, auth, &mut buf);
    buf
}

/// The field number of `InternalRequest.auth`.
const AUTH_TAG: u32 = 30;

/// What a client request records of its caller: the user and the auth revision it was
/// checked at (empty without a caller, which apply refuses once auth is enabled).
fn request_auth(who: Option<&AuthInfo>) -> RequestAuth {
    who.map(|w| RequestAuth {
        username: w.user.clone(),
        revision: w.revision,
    })
    .unwrap_or_default()
}

fn unexpected(r: ApplyResponse) -> EtcdError {
    EtcdError::Internal(format!("unexpected apply result {r:?}"))
}

impl EtcdServer {
    /// Refreshes the gauges that mirror state (called on scrape).
    pub fn refresh_metrics(&self) {
        use crate::metrics as m;
        let st = self.p.raft.status();
        m::HAS_LEADER.set((st.leader() != 0) as i64);
        m::IS_LEADER.set(st.is_leader() as i64);
        m::PROPOSALS_COMMITTED.set(st.commit() as i64);
        m::PROPOSALS_APPLIED.set(st.applied() as i64);
        m::DB_TOTAL_SIZE.set(self.p.storage.size_on_disk() as i64);
        m::DB_IN_USE_SIZE.set(self.p.storage.size_in_use() as i64);
        m::QUOTA_BYTES.set(self.p.settings.quota_bytes as i64);
        m::KEYS_TOTAL.set(self.p.store.key_count() as i64);
        m::CURRENT_REVISION.set(self.p.store.current_revision());
        m::COMPACT_REVISION.set(self.p.store.compact_revision());
        m::WATCHERS.set(self.p.hub.watcher_count() as i64);
        m::LEASES.set(self.p.lessor.ids().len() as i64);
        m::SERVER_VERSION
            .with_label_values(&[SERVER_VERSION])
            .set(1);
        m::CLUSTER_VERSION
            .with_label_values(&[&CLUSTER_VERSION[..3]])
            .set(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{request_op, RequestOp};

    /// A KV request proposed by reference is the same entry as one proposed by value.
    #[test]
    fn by_reference_encoding_matches_the_derived_one() {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 300],
            lease: 5,
            prev_kv: true,
            ..Default::default()
        };
        let del = DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        };
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put.clone())),
            }],
            ..Default::default()
        };
        let callers = [
            RequestAuth::default(),
            RequestAuth {
                username: "alice".into(),
                revision: 7,
            },
        ];
        for (id, auth) in [0, 1, u64::MAX]
            .into_iter()
            .flat_map(|id| callers.iter().map(move |a| (id, a)))
        {
            let derived = |r: Request| {
                InternalRequest {
                    id,
                    request: Some(r),
                    auth: Some(auth.clone()),
                }
                .encode_to_vec()
            };
            assert_eq!(
                encode_internal(id, TAG_PUT, &put, auth),
                derived(Request::Put(put.clone()))
            );
            assert_eq!(
                encode_internal(id, TAG_DELETE_RANGE, &del, auth),
                derived(Request::DeleteRange(del.clone()))
            );
            assert_eq!(
                encode_internal(id, TAG_TXN, &txn, auth),
                derived(Request::Txn(txn.clone()))
            );
            let back =
                InternalRequest::decode(&encode_internal(id, TAG_PUT, &put, auth)[..]).unwrap();
            assert_eq!(back.auth.as_ref(), Some(auth));
        }
    }
}
