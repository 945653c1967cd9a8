//! Deterministic apply of committed entries: the single decoder of what goes into the
//! raft log ([`InternalRequest`]) and the [`StateMachine`] the raft loop feeds.
//!
//! Guarantees:
//! - Every data entry's changes and the applied index are written in one RocksDB batch,
//!   so a restart resumes exactly after the last applied entry (no entry applied twice,
//!   none lost: the raft log before the applied index is only discarded after a sync).
//!   Consecutive plain puts (no `prev_kv`, `ignore_value` or `ignore_lease`) committed
//!   together share one batch, each at its own revision: they become visible, reach
//!   watchers and are answered together, after the batch is written.
//! - Watchers learn of a revision only after it is written.
//! - Each result is delivered to the proposer waiting on the entry's request id.

pub mod alarm;
pub mod slow;
pub mod txn;

use std::sync::Arc;

use prost::Message as _;

use crate::auth::{requests as auth_req, AuthInfo, AuthStore};
use crate::cluster::Membership;
use crate::lease::{LeaseError, Lessor};
use crate::mvcc::{MvccError, Store};
use crate::proto::etcdinternal::StoredMember;
use crate::proto::etcdinternal::{internal_request::Request, InternalRequest, RequestAuth};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmType, DeleteRangeResponse, PutRequest,
    PutResponse, TxnResponse,
};
use crate::proto::mvccpb::Event;
use crate::raft::{RaftError, StateMachine, WaitRegistry};
use crate::rpctypes::EtcdError;
use crate::storage::{Cf, Durability, Storage};
use crate::watch::WatchHub;
use ::raft::prelude::{ConfChange, ConfChangeType, Entry};

pub use alarm::Alarms;

/// Key of the applied index in the `meta` column family.
pub const APPLIED_INDEX_KEY: &[u8] = b"applied_index";

/// Key of this member's own ID in the `meta` column family: a fact about the data dir,
/// never shipped in a snapshot to other members.
pub const LOCAL_MEMBER_KEY: &[u8] = b"local_member_id";

/// What applying one request produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResponse {
    /// A Put.
    Put(PutResponse),
    /// A DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// A Txn.
    Txn(TxnResponse),
    /// A compaction was applied.
    Compacted,
    /// A lease was granted with this TTL.
    LeaseGranted {
        /// Lease id.
        id: i64,
        /// Effective TTL.
        ttl: i64,
    },
    /// A lease was revoked.
    LeaseRevoked,
    /// Alarm changes.
    Alarm(Vec<AlarmMember>),
    /// Membership attributes published.
    MemberPublished,
    /// A membership change was applied.
    MembersChanged,
    /// Users, roles or the auth flag changed (or stayed, for a no-op change).
    AuthChanged,
    /// Authenticate: the token handed out.
    Token(String),
}

/// The result of an applied entry together with the store revision after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The response or the request's error.
    pub result: Result<ApplyResponse, EtcdError>,
    /// Store revision after applying (the header revision).
    pub revision: i64,
}

/// Everything apply touches.
pub struct Applier {
    storage: Storage,
    store: Arc<Store>,
    lessor: Arc<Lessor>,
    hub: Arc<WatchHub>,
    alarms: Arc<Alarms>,
    members: Arc<Membership>,
    auth: Arc<AuthStore>,
    wait: Arc<WaitRegistry<Applied>>,
    applied: u64,
    local_id: u64,
    removed: Option<tokio::sync::watch::Sender<bool>>,
    /// `--warning-apply-duration`: applies slower than this are logged and counted.
    warn_after: std::time::Duration,
    /// RocksDB writes of applied requests (tests count them).
    #[cfg(test)]
    writes: usize,
}

/// Reads the persisted applied index.
pub fn load_applied_index(storage: &Storage) -> Result<u64, crate::storage::StorageError> {
    Ok(storage
        .get(Cf::Meta, APPLIED_INDEX_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

impl Applier {
    /// An applier resuming after `applied`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Storage,
        store: Arc<Store>,
        lessor: Arc<Lessor>,
        hub: Arc<WatchHub>,
        alarms: Arc<Alarms>,
        members: Arc<Membership>,
        auth: Arc<AuthStore>,
        wait: Arc<WaitRegistry<Applied>>,
        applied: u64,
    ) -> Self {
        Applier {
            storage,
            store,
            lessor,
            hub,
            alarms,
            members,
            auth,
            wait,
            applied,
            local_id: 0,
            removed: None,
            warn_after: slow::DEFAULT_WARNING,
            #[cfg(test)]
            writes: 0,
        }
    }

    /// Sets `--warning-apply-duration`: a request whose apply takes longer is logged
    /// ("apply request took too long") and counted in `etcd_server_slow_apply_total`.
    pub fn with_apply_warning(mut self, bound: std::time::Duration) -> Self {
        self.warn_after = bound;
        self
    }

    /// Tells the applier which member it runs on; `removed` turns true when a
    /// committed change removes this member from the cluster.
    pub fn with_local_member(mut self, id: u64, removed: tokio::sync::watch::Sender<bool>) -> Self {
        self.local_id = id;
        self.removed = Some(removed);
        self
    }

    fn apply_membership(&mut self, index: u64, cc: &ConfChange) -> Result<(), MvccError> {
        let storage = self.storage.clone();
        let mut batch = storage.batch();
        batch.put(Cf::Meta, APPLIED_INDEX_KEY, &index.to_be_bytes());
        let node = cc.node_id;
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                match self.members.get(node) {
                    Some(m) if m.is_learner && !learner => self.members.promote(node, &mut batch),
                    Some(_) => {}
                    None => {
                        let mut m = StoredMember::decode(cc.context.as_ref()).unwrap_or_default();
                        m.id = node;
                        m.is_learner = learner;
                        self.members.add(m, &mut batch);
                    }
                }
                tracing::info!(member = %format!("{node:x}"), learner, "added member to the cluster");
            }
            ConfChangeType::RemoveNode => {
                self.members.remove(node, &mut batch);
                tracing::info!(member = %format!("{node:x}"), "removed member from the cluster");
            }
        }
        self.storage.write(batch, Durability::Unlogged)?;
        if cc.get_change_type() == ConfChangeType::RemoveNode && node == self.local_id {
            tracing::warn!("{}", crate::raft::transport::REMOVED_MESSAGE);
            if let Some(r) = &self.removed {
                r.send_replace(true);
            }
        }
        Ok(())
    }

    /// Why the caller of a client request may not have it applied, when auth is
    /// enabled (etcd checks writes at apply, against the auth revision the request was
    /// received at). The server's own requests carry no caller and pass.
    fn auth_denial(&self, who: Option<&RequestAuth>, req: &Request) -> Option<EtcdError> {
        if !self.auth.is_enabled() {
            return None;
        }
        let who = who?;
        let info = AuthInfo {
            user: who.username.clone(),
            revision: who.revision,
        };
        let ai = (!info.user.is_empty()).then_some(&info);
        let auth = &*self.auth;
        let keys_of = |lease: i64| self.lessor.info(lease).map(|l| l.keys).unwrap_or_default();
        let checked = match req {
            Request::Put(p) => auth_req::check_put(auth, ai, p, keys_of),
            Request::DeleteRange(d) => auth_req::check_delete(auth, ai, d),
            Request::Txn(t) => auth_req::check_txn(auth, ai, t),
            Request::LeaseRevoke(r) => auth_req::check_keys(auth, ai, &keys_of(r.id)),
            Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::RoleAdd(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_) => auth.check_admin(ai),
            _ => Ok(()),
        };
        checked.err()
    }

    /// Applies an auth request to the auth store (its changes go into `batch`).
    fn apply_auth(
        &self,
        index: u64,
        req: &Request,
        batch: &mut crate::storage::Batch<'_>,
    ) -> Result<ApplyResponse, EtcdError> {
        let a = &*self.auth;
        let changed = |r: Result<(), EtcdError>| r.map(|()| ApplyResponse::AuthChanged);
        match req {
            Request::AuthEnable(_) => changed(a.enable(batch)),
            Request::AuthDisable(_) => {
                a.disable(batch);
                Ok(ApplyResponse::AuthChanged)
            }
            Request::Authenticate(r) => a
                .authenticate(&r.name, &r.simple_token_prefix, index)
                .map(ApplyResponse::Token),
            Request::UserAdd(r) => {
                changed(a.user_add(&r.name, &r.hashed_password, r.options, batch))
            }
            Request::UserDelete(r) => changed(a.user_delete(&r.name, batch)),
            Request::UserChangePassword(r) => {
                changed(a.user_change_password(&r.name, &r.hashed_password, batch))
            }
            Request::UserGrantRole(r) => changed(a.user_grant_role(&r.user, &r.role, batch)),
            Request::UserRevokeRole(r) => changed(a.user_revoke_role(&r.name, &r.role, batch)),
            Request::RoleAdd(r) => changed(a.role_add(&r.name, batch)),
            Request::RoleDelete(r) => changed(a.role_delete(&r.role, batch)),
            Request::RoleGrantPermission(r) => match &r.perm {
                Some(p) => changed(a.role_grant_permission(&r.name, p.clone(), batch)),
                None => Err(EtcdError::PermissionNotGiven),
            },
            Request::RoleRevokePermission(r) => {
                changed(a.role_revoke_permission(&r.role, &r.key, &r.range_end, batch))
            }
            _ => Err(EtcdError::Internal("not an auth request".into())),
        }
    }

    fn apply_request(
        &mut self,
        index: u64,
        id: u64,
        who: Option<RequestAuth>,
        mut req: Request,
    ) -> Result<Applied, MvccError> {
        let started = std::time::Instant::now();
        let op = op_name(&req);
        // A put's value moves into the store; the slow-apply warning gives its size.
        let value_size = match &req {
            Request::Put(p) => p.value.len(),
            _ => 0,
        };
        let storage = self.storage.clone();
        let mut batch = storage.batch();
        batch.put(Cf::Meta, APPLIED_INDEX_KEY, &index.to_be_bytes());
        let mut wtxn = self.store.write();
        let no_space = self.alarms.is_active(AlarmType::Nospace);
        // With the CORRUPT alarm raised, etcd applies no writes (reads are served).
        let corrupt = self.alarms.is_active(AlarmType::Corrupt)
            && matches!(
                req,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            );
        let refused = if corrupt {
            Some(EtcdError::Corrupt)
        } else {
            self.auth_denial(who.as_ref(), &req)
        };
        let result = match refused {
            Some(e) => Err(e),
            None => match &mut req {
                Request::Put(p) => {
                    if no_space {
                        Err(EtcdError::NoSpace)
                    } else {
                        txn::put_owned(&mut wtxn, &self.lessor, p).map(ApplyResponse::Put)
                    }
                }
                Request::DeleteRange(d) => {
                    txn::delete_range(&mut wtxn, &self.lessor, d).map(ApplyResponse::DeleteRange)
                }
                Request::Txn(t) => {
                    if no_space && txn::has_puts(t) {
                        Err(EtcdError::NoSpace)
                    } else {
                        let compact = self.store.compact_revision();
                        txn::txn(&mut wtxn, &self.lessor, compact, t).map(ApplyResponse::Txn)
                    }
                }
                Request::Compaction(c) => match self.store.compact(c.revision, &mut batch) {
                    Ok(()) => Ok(ApplyResponse::Compacted),
                    Err(MvccError::Compacted) => Err(EtcdError::Compacted),
                    Err(MvccError::FutureRevision) => Err(EtcdError::FutureRev),
                    Err(e) => return Err(e),
                },
                Request::LeaseGrant(g) => {
                    if no_space {
                        Err(EtcdError::NoSpace)
                    } else {
                        match self.lessor.grant(g.id, g.ttl, &mut batch) {
                            Ok(ttl) => Ok(ApplyResponse::LeaseGranted { id: g.id, ttl }),
                            Err(LeaseError::Exists) => Err(EtcdError::LeaseExist),
                            Err(LeaseError::TtlTooLarge) => Err(EtcdError::LeaseTtlTooLarge),
                            Err(_) => Err(EtcdError::LeaseNotFound),
                        }
                    }
                }
                Request::LeaseRevoke(r) => match self.lessor.revoke(r.id, &mut batch) {
                    Ok(mut keys) => {
                        keys.sort();
                        let mut res = Ok(ApplyResponse::LeaseRevoked);
                        for k in keys {
                            if let Err(e) = wtxn.delete_range(&k, &[], false) {
                                res = Err(EtcdError::Internal(e.to_string()));
                                break;
                            }
                        }
                        res
                    }
                    Err(_) => Err(EtcdError::LeaseNotFound),
                },
                Request::Alarm(a) => {
                    let changed = match AlarmAction::try_from(a.action) {
                        Ok(AlarmAction::Activate) => {
                            self.alarms.activate(a.member_id, a.alarm, &mut batch)
                        }
                        Ok(AlarmAction::Deactivate) => {
                            self.alarms.deactivate(a.member_id, a.alarm, &mut batch)
                        }
                        _ => self.alarms.list(a.alarm),
                    };
                    Ok(ApplyResponse::Alarm(changed))
                }
                Request::MemberPeerUrls(m) => {
                    if self.members.get(m.member_id).is_some() {
                        self.members
                            .update_peer_urls(m.member_id, &m.peer_urls, &mut batch);
                        Ok(ApplyResponse::MembersChanged)
                    } else {
                        Err(EtcdError::MemberNotFound)
                    }
                }
                Request::MemberAttributes(m) => {
                    self.members
                        .set_attributes(m.member_id, &m.name, &m.client_urls, &mut batch);
                    Ok(ApplyResponse::MemberPublished)
                }
                auth => self.apply_auth(index, auth, &mut batch),
            },
        };
        // A failed request changes nothing but the applied index.
        let pending = if result.is_ok() {
            Some(wtxn.finish(&mut batch))
        } else {
            drop(wtxn);
            None
        };
        let commit = std::time::Instant::now();
        self.storage.write(batch, Durability::Unlogged)?;
        #[cfg(test)]
        {
            self.writes += 1;
        }
        crate::metrics::BACKEND_COMMIT.observe(commit.elapsed().as_secs_f64());
        if let Some(p) = pending {
            let events = self.store.publish(p);
            if !events.is_empty() {
                self.hub.notify(self.store.current_revision(), &events);
            }
        }
        count_op(op, result.is_ok());
        let took = started.elapsed();
        crate::metrics::APPLY_DURATION
            .with_label_values(&["v3", op, if result.is_ok() { "true" } else { "false" }])
            .observe(took.as_secs_f64());
        slow::check(
            took,
            self.warn_after,
            "",
            || slow::describe(id, &req, value_size),
            || response_size(&result),
            result.as_ref().err().map(|e| e as &dyn std::fmt::Display),
        );
        Ok(Applied {
            result,
            revision: self.store.current_revision(),
        })
    }
}

/// The `op` label of `etcd_server_apply_duration_seconds` (etcd's request names).
fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Put(_) => "Put",
        Request::DeleteRange(_) => "DeleteRange",
        Request::Txn(_) => "Txn",
        Request::Compaction(_) => "Compaction",
        Request::LeaseGrant(_) => "LeaseGrant",
        Request::LeaseRevoke(_) => "LeaseRevoke",
        Request::Alarm(_) => "Alarm",
        Request::MemberPeerUrls(_) => "ClusterMemberAttrSet",
        Request::MemberAttributes(_) => "ClusterMemberAttrSet",
        Request::AuthEnable(_) => "AuthEnable",
        Request::AuthDisable(_) => "AuthDisable",
        Request::Authenticate(_) => "Authenticate",
        Request::UserAdd(_) => "AuthUserAdd",
        Request::UserDelete(_) => "AuthUserDelete",
        Request::UserChangePassword(_) => "AuthUserChangePassword",
        Request::UserGrantRole(_) => "AuthUserGrantRole",
        Request::UserRevokeRole(_) => "AuthUserRevokeRole",
        Request::RoleAdd(_) => "AuthRoleAdd",
        Request::RoleDelete(_) => "AuthRoleDelete",
        Request::RoleGrantPermission(_) => "AuthRoleGrantPermission",
        Request::RoleRevokePermission(_) => "AuthRoleRevokePermission",
    }
}

/// The `response` field of a slow-apply warning: the encoded size of a KV response, as
/// etcd gives it (`size:N`); empty for other requests and for errors.
fn response_size(result: &Result<ApplyResponse, EtcdError>) -> String {
    let n = match result {
        Ok(ApplyResponse::Put(r)) => r.encoded_len(),
        Ok(ApplyResponse::DeleteRange(r)) => r.encoded_len(),
        Ok(ApplyResponse::Txn(r)) => r.encoded_len(),
        _ => return String::new(),
    };
    format!("size:{n}")
}

/// Counts an applied KV request in `etcd_mvcc_{put,delete,txn}_total`.
fn count_op(op: &str, ok: bool) {
    if !ok {
        return;
    }
    match op {
        "Put" => crate::metrics::PUT_TOTAL.inc(),
        "DeleteRange" => crate::metrics::DELETE_TOTAL.inc(),
        "Txn" => crate::metrics::TXN_TOTAL.inc(),
        _ => {}
    }
}

/// A plain put of a run: applied together with its neighbours.
struct PlainPut {
    index: u64,
    id: u64,
    put: PutRequest,
    /// Its caller: only runs without auth enabled are gathered, a lone put applied on
    /// its own is checked.
    who: Option<RequestAuth>,
}

/// Whether a put reads nothing of the key's previous value (etcd's fast path), so a run
/// of them can be applied as one write.
fn is_plain(p: &PutRequest) -> bool {
    !p.prev_kv && !p.ignore_value && !p.ignore_lease
}

/// The revision of an event's key-value.
fn event_revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// Decodes the entry at `index`; None for an undecodable entry (logged) or one without a
/// request: the caller applies it as a no-op.
fn decode(index: u64, data: &[u8]) -> Option<InternalRequest> {
    match InternalRequest::decode(data) {
        Ok(r) if r.request.is_some() => Some(r),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(index, error = %e, "apply: undecodable entry skipped");
            None
        }
    }
}

impl Applier {
    /// Applies one decoded entry on its own and answers its proposer.
    fn apply_decoded(&mut self, index: u64, req: InternalRequest) {
        let id = req.id;
        let Some(request) = req.request else {
            self.apply_noop(index);
            return;
        };
        match self.apply_request(index, id, req.auth, request) {
            Ok(applied) => {
                self.applied = index;
                self.wait.trigger(id, applied);
            }
            Err(e) => {
                // The store cannot take writes: stopping is the only safe answer, since
                // continuing would acknowledge writes that are not there.
                tracing::error!(index, error = %e, "apply: storage failure; exiting");
                std::process::exit(1);
            }
        }
    }

    /// Applies consecutive plain puts as one write: each at its own revision, in order,
    /// then one RocksDB batch with all their records and the last applied index; only
    /// then are they published, watchers notified revision by revision, and proposers
    /// answered. One put alone takes the ordinary path.
    fn apply_puts(&mut self, mut puts: Vec<PlainPut>) {
        if puts.len() <= 1 {
            if let Some(p) = puts.pop() {
                let req = InternalRequest {
                    id: p.id,
                    request: Some(Request::Put(p.put)),
                    auth: p.who,
                };
                self.apply_decoded(p.index, req);
            }
            return;
        }
        let Some(last) = puts.last().map(|p| p.index) else {
            return;
        };
        match self.write_puts(puts, last) {
            Ok(answers) => {
                self.applied = last;
                for (id, applied) in answers {
                    self.wait.trigger(id, applied);
                }
            }
            Err(e) => {
                tracing::error!(index = last, error = %e, "apply: storage failure; exiting");
                std::process::exit(1);
            }
        }
    }

    /// The write of [`apply_puts`](Self::apply_puts); returns each proposer's answer.
    fn write_puts(
        &mut self,
        mut puts: Vec<PlainPut>,
        last: u64,
    ) -> Result<Vec<(u64, Applied)>, MvccError> {
        let started = std::time::Instant::now();
        let storage = self.storage.clone();
        let store = self.store.clone();
        let mut batch = storage.batch();
        let no_space = self.alarms.is_active(AlarmType::Nospace);
        let corrupt = self.alarms.is_active(AlarmType::Corrupt);
        let mut wtxn = store.write();
        let mut revision = store.current_revision();
        let count = puts.len();
        let mut answers = Vec::with_capacity(count);
        let mut sizes = Vec::with_capacity(count);
        for p in &mut puts {
            wtxn.next_revision();
            sizes.push(p.put.value.len());
            let result = if corrupt {
                Err(EtcdError::Corrupt)
            } else if no_space {
                Err(EtcdError::NoSpace)
            } else {
                txn::put_owned(&mut wtxn, &self.lessor, &mut p.put).map(ApplyResponse::Put)
            };
            if result.is_ok() {
                revision = wtxn.revision();
            }
            count_op("Put", result.is_ok());
            answers.push((p.id, Applied { result, revision }));
        }
        batch.put(Cf::Meta, APPLIED_INDEX_KEY, &last.to_be_bytes());
        let pending = wtxn.finish(&mut batch);
        let commit = std::time::Instant::now();
        storage.write(batch, Durability::Unlogged)?;
        #[cfg(test)]
        {
            self.writes += 1;
        }
        crate::metrics::BACKEND_COMMIT.observe(commit.elapsed().as_secs_f64());
        let events = store.publish(pending);
        for group in events.chunk_by(|a, b| event_revision(a) == event_revision(b)) {
            self.hub.notify(event_revision(&group[0]), group);
        }
        // The run's duration is shared among its entries (one label lookup per outcome),
        // for the histogram and for the slow-apply warning alike.
        let each_took = started.elapsed() / u32::try_from(count).unwrap_or(u32::MAX);
        if each_took > self.warn_after {
            for ((p, size), (_, a)) in puts.iter().zip(&sizes).zip(&answers) {
                let req = Request::Put(p.put.clone());
                slow::check(
                    each_took,
                    self.warn_after,
                    "",
                    || slow::describe(p.id, &req, *size),
                    || response_size(&a.result),
                    a.result.as_ref().err().map(|e| e as &dyn std::fmt::Display),
                );
            }
        }
        let each = each_took.as_secs_f64();
        let failed = answers.iter().filter(|(_, a)| a.result.is_err()).count();
        for (ok, n) in [("true", answers.len() - failed), ("false", failed)] {
            if n > 0 {
                let h = crate::metrics::APPLY_DURATION.with_label_values(&["v3", "Put", ok]);
                for _ in 0..n {
                    h.observe(each);
                }
            }
        }
        Ok(answers)
    }
}

impl StateMachine for Applier {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) {
        if index <= self.applied {
            return;
        }
        match decode(index, data) {
            Some(req) => self.apply_decoded(index, req),
            None => self.apply_noop(index),
        }
    }

    fn apply_run(&mut self, entries: &[Entry]) {
        let mut puts: Vec<PlainPut> = Vec::new();
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            let Some(req) = decode(e.index, &e.data) else {
                self.apply_puts(std::mem::take(&mut puts));
                self.apply_noop(e.index);
                continue;
            };
            match req.request {
                // With auth enabled each put is checked on its own (`auth_denial`).
                Some(Request::Put(put)) if is_plain(&put) && !self.auth.is_enabled() => {
                    puts.push(PlainPut {
                        index: e.index,
                        id: req.id,
                        put,
                        who: req.auth,
                    })
                }
                request => {
                    self.apply_puts(std::mem::take(&mut puts));
                    self.apply_decoded(e.index, InternalRequest { request, ..req });
                }
            }
        }
        self.apply_puts(puts);
    }

    fn apply_noop(&mut self, index: u64) {
        if index > self.applied {
            self.applied = index;
        }
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn proposal_dropped(&mut self, tag: u64, err: RaftError) {
        // The tag is the request id the proposer waits on.
        self.wait.fail(tag, err);
    }

    fn apply_conf_change(&mut self, index: u64, cc: &ConfChange) {
        if index <= self.applied {
            return;
        }
        if let Err(e) = self.apply_membership(index, cc) {
            tracing::error!(index, error = %e, "apply: storage failure; exiting");
            std::process::exit(1);
        }
        self.applied = index;
        self.wait.trigger(
            cc.id,
            Applied {
                result: Ok(ApplyResponse::MembersChanged),
                revision: self.store.current_revision(),
            },
        );
    }

    fn snapshot_data(&mut self) -> Result<Vec<u8>, String> {
        self.storage
            .export_state(&[LOCAL_MEMBER_KEY])
            .map_err(|e| e.to_string())
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        self.storage
            .import_state(data, &[LOCAL_MEMBER_KEY])
            .map_err(|e| err(&e))?;
        self.store.reload().map_err(|e| err(&e))?;
        self.lessor.reload(&self.storage).map_err(|e| err(&e))?;
        let lessor = self.lessor.clone();
        self.store
            .for_each_current(|kv| {
                if kv.lease != 0 {
                    lessor.attach(kv.lease, &kv.key);
                }
            })
            .map_err(|e| err(&e))?;
        self.alarms.reload(&self.storage).map_err(|e| err(&e))?;
        self.members.reload(&self.storage).map_err(|e| err(&e))?;
        self.auth.reload(&self.storage).map_err(|e| err(&e))?;
        self.applied = load_applied_index(&self.storage).map_err(|e| err(&e))?;
        self.hub.resync_all();
        tracing::info!(
            applied_index = self.applied,
            revision = self.store.current_revision(),
            "restored the store from the leader's snapshot"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
