//! An etcd v3 compatible server: the gRPC and HTTP API of etcd, Raft
//! replication (raft-rs) and RocksDB storage.
//!
//! Layering (lower layers never import higher ones):
//! `storage <- {mvcc, lease, cluster} <- apply <- server -> api`, with `raft` depending
//! only on `storage`, and `watch` consuming what `mvcc` emits. `config` and `logging`
//! depend on nothing else in the crate.
pub mod api;
pub mod apply;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod mvcc;
pub mod proto;
pub mod raft;
pub mod rpctypes;
pub mod server;
pub mod storage;
pub mod watch;
