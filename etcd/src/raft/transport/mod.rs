//! The peer transport: raft messages between members over gRPC (`etcdpeer.Peer`, see
//! `proto/peer.proto`).
//!
//! - Sending ([`GrpcTransport`], the raft loop's [`Transport`](super::Transport)): one
//!   bounded queue and one task per peer; the raft thread never blocks (a full queue
//!   drops the message and reports the peer unreachable). Each task connects lazily,
//!   keeps one long-lived `Raft` stream that delivers messages in the order raft
//!   produced them, sends `MsgSnapshot` through the chunked `Snapshot` RPC, and
//!   reconnects with backoff. Delivery problems go back to raft through
//!   [`DeliveryReports`] (implemented by [`RaftHandle`]).
//! - Receiving ([`PeerService`]): refuses envelopes from another cluster, ignores
//!   messages for another member, and steps the rest into the local node through
//!   [`PeerInbox`] (implemented by [`RaftHandle`]). It also answers `Members` for
//!   members joining a running cluster ([`fetch_members`] is the client side).
//! - TLS: the receiving side is served by the server's listener (`server::listener`,
//!   with `server::tls::TlsFiles`); the sending side presents
//!   [`PeerClientTls`]'s certificate, re-reading the files for every new connection.

mod client;
mod codec;
mod connect;
mod leader;
mod peer_task;
mod service;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

use ::raft::prelude::Message;

pub use client::{GrpcTransport, PeerStats};
pub use connect::{fetch_hash_kv, fetch_members, PeerClientTls, TransportOptions};
pub use leader::{LeaderDesk, LeaderLink};
pub use service::{PeerService, DEFAULT_MAX_MESSAGE_BYTES, REMOVED_MESSAGE};

pub use crate::proto::etcdpeer::{MembersResponse, PeerMember};

use super::node::{RaftError, RaftHandle};

/// Errors of the peer transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A peer URL cannot be used.
    #[error("invalid peer URL {0:?}: {1}")]
    BadUrl(String, String),
    /// A member cannot be its own peer.
    #[error("member {0:x} cannot be its own peer")]
    SelfPeer(u64),
    /// TLS material could not be loaded or is unusable.
    #[error("peer TLS: {0}")]
    Tls(String),
    /// The connection could not be established.
    #[error("connect to {0}: {1}")]
    Connect(String, String),
    /// The peer answered with an error.
    #[error("peer refused: {0}")]
    Rpc(#[from] tonic::Status),
    /// A raft message did not encode or decode.
    #[error("raft message codec: {0}")]
    Codec(#[from] protobuf::ProtobufError),
    /// The transport was shut down.
    #[error("the peer transport is shut down")]
    Stopped,
    /// The transport was created outside a tokio runtime.
    #[error("the peer transport needs a tokio runtime")]
    NoRuntime,
}

/// Where the receiving side delivers messages: the local raft node.
pub trait PeerInbox: Send + Sync + 'static {
    /// Hands `msg` to the local node; an error means the node no longer runs.
    fn step(&self, msg: Message) -> Result<(), RaftError>;
}

impl PeerInbox for RaftHandle {
    fn step(&self, msg: Message) -> Result<(), RaftError> {
        RaftHandle::step(self, msg)
    }
}

/// Where the sending side reports delivery problems: the local raft node. Both calls
/// must return quickly (they may run on the raft thread).
pub trait DeliveryReports: Send + Sync + 'static {
    /// Messages to peer `id` may have been lost.
    fn report_unreachable(&self, id: u64);
    /// The snapshot sent to peer `id` was delivered (`true`) or lost (`false`).
    fn report_snapshot(&self, id: u64, success: bool);
}

impl DeliveryReports for RaftHandle {
    fn report_unreachable(&self, id: u64) {
        let _ = RaftHandle::report_unreachable(self, id);
    }
    fn report_snapshot(&self, id: u64, success: bool) {
        let _ = RaftHandle::report_snapshot(self, id, success);
    }
}

/// The member list served to joining members, and the members removed for good.
pub trait MemberDirectory: Send + Sync + 'static {
    /// The current members.
    fn members(&self) -> Vec<PeerMember>;
    /// Whether member `id` was removed from the cluster (its raft messages are
    /// refused). Asked for every incoming envelope, so it must be cheap. A plain
    /// closure directory knows of no removed member.
    fn is_removed(&self, _id: u64) -> bool {
        false
    }
}

impl<F> MemberDirectory for F
where
    F: Fn() -> Vec<PeerMember> + Send + Sync + 'static,
{
    fn members(&self) -> Vec<PeerMember> {
        self()
    }
}

/// Formats a member or cluster id as etcd logs it (lowercase hex).
fn hex(id: u64) -> String {
    format!("{id:x}")
}
