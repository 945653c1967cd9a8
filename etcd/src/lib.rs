//! An etcd v3 compatible server: the gRPC and HTTP API of etcd, Raft
//! replication (raft-rs) and RocksDB storage.
pub mod config;
pub mod logging;
pub mod proto;
pub mod storage;
