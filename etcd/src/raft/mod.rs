//! Raft replication: the Ready loop, the durable log (its files: [`wal`]) and the wait
//! registry. Knows nothing of the key-value store: it moves opaque entries into a
//! [`StateMachine`]. [`transport`] carries raft messages between members.

pub mod heartbeat;
pub mod log_store;
pub mod node;
pub mod transport;
pub mod wait;
pub mod wal;

pub use log_store::{LogStore, LogStoreError};
pub use node::{
    start, LeaderInfo, NoPeers, RaftConfig, RaftError, RaftHandle, RaftStatus, ReplicationProgress,
    StateMachine, Transport,
};
pub use transport::{GrpcTransport, PeerService};
pub use wait::{WaitRegistry, Waited};
