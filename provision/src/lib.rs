//! `etcd-provision`: everything a TLS etcd cluster needs, from an inventory of members.
//!
//! * [`spec`]: the cluster spec (TOML or flags) and its validation.
//! * [`pki`]: CA, member and client certificates; idempotent generation and renewal.
//! * [`render`]: per-member unit, TOML config, `ETCD_*` and `ETCDCTL_*` env files, bundles.
//! * [`download`]: verified, cached release downloads.
//! * [`install`]: putting a member bundle in place on a node (as root) and starting it.
//! * [`cluster`]: join (learner add, promote) and status, over etcd's gRPC API.
//!
//! This crate never depends on the server crate: it speaks the wire protocol through
//! `etcd-client` and writes the server's documented config formats.

#![warn(missing_docs)]

pub mod cluster;
pub mod download;
pub mod errtext;
pub mod fsx;
pub mod install;
pub mod pki;
pub mod render;
pub mod spec;
