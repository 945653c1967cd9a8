//! [`PeerService`]: the receiving side of the peer transport.

use std::sync::Arc;

use ::raft::prelude::{Message, MessageType};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

use super::codec::{self, SnapshotAssembler};
use super::leader::{check_cluster, LeaderDesk, NoDesk};
use super::{hex, MemberDirectory, PeerInbox};
use crate::proto::etcdpeer::peer_server::{Peer, PeerServer};
use crate::proto::etcdpeer::snapshot_chunk::Chunk;
use crate::proto::etcdpeer::{
    LeaseRenewRequest, LeaseRenewResponse, LeaseTtlRequest, LeaseTtlResponse, MembersRequest,
    MembersResponse, PeerAck, PeerEnvelope, PeerHashKvRequest, PeerHashKvResponse, ProgressRequest,
    ProgressResponse, SnapshotChunk,
};

/// Metadata key of the receiver's cluster ID (hex) on a cluster-ID refusal.
pub(super) const CLUSTER_ID_HEADER: &str = "x-etcd-cluster-id";
/// Metadata key naming the sender's member ID (hex) on a refusal because the sender
/// was removed from the cluster.
pub(super) const REMOVED_HEADER: &str = "x-etcd-member-removed";
/// etcd's words for a member that learns it was removed from the cluster (logged by
/// the member itself, and the message of a peer's refusal).
pub const REMOVED_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// Whether `status` is a peer's refusal because we were removed from the cluster.
pub(super) fn is_removal(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition && status.metadata().get(REMOVED_HEADER).is_some()
}

/// The largest peer message accepted by default (one raft message, or one snapshot
/// chunk).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves `etcdpeer.Peer` for the local member.
///
/// Guarantees:
/// - An envelope whose cluster ID differs from ours ends its stream with
///   `FailedPrecondition` "etcdserver: cluster ID mismatch" (our cluster ID in the
///   `x-etcd-cluster-id` metadata) and a log line naming both IDs and the sender;
///   nothing from that stream after it is stepped.
/// - An envelope from a member the directory reports removed
///   ([`MemberDirectory::is_removed`]) ends its stream with `FailedPrecondition`
///   "the member has been permanently removed from the cluster" (the sender's ID in
///   the `x-etcd-member-removed` metadata), as etcd answers a removed member with
///   HTTP 410; the sender stops on it. Nothing from a removed member is stepped.
/// - A message addressed to another member is ignored (logged once per stream).
/// - Every other message is stepped into the [`PeerInbox`] in the order it arrived on
///   its stream; a snapshot is stepped only once all its data arrived intact.
/// - With a shutdown signal ([`with_shutdown`](Self::with_shutdown)), open streams
///   end (`Unavailable`) as soon as it fires, so a graceful listener shutdown does
///   not wait for them.
#[derive(Clone)]
pub struct PeerService {
    local_id: u64,
    cluster_id: u64,
    inbox: Arc<dyn PeerInbox>,
    members: Arc<dyn MemberDirectory>,
    desk: Arc<dyn LeaderDesk>,
    shutdown: Option<watch::Receiver<bool>>,
    max_message_bytes: usize,
}

impl PeerService {
    /// A service for member `local_id` of cluster `cluster_id`, stepping messages into
    /// `inbox` (the raft handle) and answering `Members` from `members`.
    pub fn new(
        local_id: u64,
        cluster_id: u64,
        inbox: impl PeerInbox,
        members: impl MemberDirectory,
    ) -> Self {
        PeerService {
            local_id,
            cluster_id,
            inbox: Arc::new(inbox),
            members: Arc::new(members),
            desk: Arc::new(NoDesk),
            shutdown: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Answers leader-only requests of followers with `desk`.
    pub fn with_desk(mut self, desk: Arc<dyn LeaderDesk>) -> Self {
        self.desk = desk;
        self
    }

    /// Ends open streams once `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Accepts peer messages up to `bytes` (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The gRPC routes to serve on the peer listener.
    pub fn routes(self) -> tonic::service::Routes {
        let max = self.max_message_bytes;
        tonic::service::Routes::new(
            PeerServer::new(self)
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX),
        )
    }

    /// The routes as an axum router (what `server::listener::serve` takes).
    pub fn into_router(self) -> axum::Router {
        self.routes().into_axum_router()
    }

    /// Whether `env` may be delivered: `Err` for another cluster or a removed sender
    /// (ends the stream), `Ok(false)` for another member.
    fn admit(&self, env: &PeerEnvelope) -> Result<bool, Status> {
        if env.cluster_id != self.cluster_id {
            tracing::warn!(
                local_cluster_id = %hex(self.cluster_id),
                remote_cluster_id = %hex(env.cluster_id),
                remote_member_id = %hex(env.from),
                "refused raft messages from a peer: cluster ID mismatch"
            );
            return Err(refusal(
                "etcdserver: cluster ID mismatch",
                CLUSTER_ID_HEADER,
                self.cluster_id,
            ));
        }
        if self.members.is_removed(env.from) {
            tracing::warn!(
                local_member_id = %hex(self.local_id),
                remote_member_id = %hex(env.from),
                "rejected raft messages from a removed member"
            );
            return Err(refusal(REMOVED_MESSAGE, REMOVED_HEADER, env.from));
        }
        Ok(env.to == self.local_id)
    }

    fn deliver(&self, msg: Message) -> Result<(), Status> {
        self.inbox
            .step(msg)
            .map_err(|_| Status::unavailable("etcdserver: server stopped"))
    }
}

/// A refusal that ends a peer's stream: `FailedPrecondition` with `message`, and `id`
/// (hex) under the metadata key `header` so the sender can tell the refusals apart.
fn refusal(message: &'static str, header: &'static str, id: u64) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = hex(id).parse() {
        md.insert(header, v);
    }
    Status::with_metadata(Code::FailedPrecondition, message, md)
}

fn undecodable(e: protobuf::ProtobufError) -> Status {
    Status::invalid_argument(format!("undecodable raft message: {e}"))
}

/// Waits for `shutdown` to turn true; never resolves without a signal.
async fn stopped(shutdown: Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(mut rx) => {
            if rx.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        req: Request<Streaming<PeerEnvelope>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let stop = stopped(self.shutdown.clone());
        tokio::pin!(stop);
        let mut warned_to = false;
        loop {
            let env = tokio::select! {
                m = stream.message() => m?,
                _ = &mut stop => return Err(Status::unavailable("etcdserver: server stopped")),
            };
            let Some(env) = env else { break };
            if !self.admit(&env)? {
                if !warned_to {
                    tracing::warn!(
                        local_member_id = %hex(self.local_id),
                        to = %hex(env.to),
                        from = %hex(env.from),
                        "ignored raft messages addressed to another member"
                    );
                    warned_to = true;
                }
                continue;
            }
            let msg = codec::decode(&env).map_err(undecodable)?;
            if msg.to != self.local_id {
                continue;
            }
            self.deliver(msg)?;
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let Some(Chunk::Header(header)) = stream.message().await?.and_then(|c| c.chunk) else {
            return Err(Status::invalid_argument(
                "a snapshot stream must start with its header",
            ));
        };
        let env = header
            .envelope
            .ok_or_else(|| Status::invalid_argument("snapshot header without envelope"))?;
        let deliver = self.admit(&env)?;
        let mut msg = codec::decode(&env).map_err(undecodable)?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument(
                "the Snapshot RPC carries MsgSnapshot only",
            ));
        }
        let mut asm = SnapshotAssembler::new(header.data_size);
        while let Some(chunk) = stream.message().await? {
            asm.push(chunk)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        asm.finish(&mut msg)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !deliver || msg.to != self.local_id {
            tracing::warn!(
                local_member_id = %hex(self.local_id),
                to = %hex(env.to),
                from = %hex(env.from),
                "ignored a snapshot addressed to another member"
            );
            return Ok(Response::new(PeerAck {}));
        }
        tracing::info!(
            from = %hex(msg.from),
            index = msg.get_snapshot().get_metadata().index,
            size = header.data_size,
            "received database snapshot from peer"
        );
        crate::metrics::SNAPSHOT_RECEIVE_SUCCESS
            .with_label_values(&[&hex(msg.from)])
            .inc();
        self.deliver(msg)?;
        Ok(Response::new(PeerAck {}))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.members.members(),
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let r = req.into_inner();
        check_cluster(self.cluster_id, r.cluster_id)?;
        let ttl = self.desk.lease_renew(r.id).await?;
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTtlRequest>,
    ) -> Result<Response<LeaseTtlResponse>, Status> {
        let r = req.into_inner();
        check_cluster(self.cluster_id, r.cluster_id)?;
        let (ttl, granted_ttl) = self.desk.lease_ttl(r.id).await?;
        Ok(Response::new(LeaseTtlResponse { ttl, granted_ttl }))
    }

    async fn progress(
        &self,
        req: Request<ProgressRequest>,
    ) -> Result<Response<ProgressResponse>, Status> {
        check_cluster(self.cluster_id, req.into_inner().cluster_id)?;
        let p = self.desk.progress().await?;
        Ok(Response::new(ProgressResponse {
            commit: p.commit,
            matched: p.matched.into_iter().collect(),
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<PeerHashKvRequest>,
    ) -> Result<Response<PeerHashKvResponse>, Status> {
        let req = req.into_inner();
        check_cluster(self.cluster_id, req.cluster_id)?;
        let (hash, compact_revision, revision) = self.desk.hash_kv(req.revision).await?;
        Ok(Response::new(PeerHashKvResponse {
            hash,
            compact_revision,
            revision,
        }))
    }
}
