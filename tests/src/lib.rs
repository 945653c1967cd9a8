//! End-to-end test harness: real server processes driven by the real
//! `etcdctl`, the `etcd-client` crate and plain HTTP.
//!
//! * [`EtcdProcess`] starts one server (binary from `ETCD_BIN`, default the
//!   workspace build) on free loopback ports with a temporary data dir, and
//!   supports `kill9`, `sigterm` and `restart` on the same data dir.
//! * [`EtcdProcess::etcdctl`] runs `etcdctl` (from `ETCDCTL_BIN`, default
//!   `/usr/bin/etcdctl`) against it; [`EtcdctlChild`] runs a long-lived one
//!   such as `etcdctl watch`.
//! * [`Harness::is_reference`] tells whether the server is the reference Go
//!   etcd (3.4/3.5) rather than the etcd 3.6 re-implementation, so that
//!   assertions about 3.6-only behaviour can be skipped there.

#![warn(missing_docs)]

pub mod bins;
pub mod certs;
pub mod child;
pub mod cluster;
pub mod env;
pub mod etcdctl;
pub mod extra;
pub mod grpc;
pub mod http;
pub mod netns;
pub mod ports;
pub mod process;
pub mod util;

pub use bins::{etcd_bin, etcdctl_bin, Version};
pub use child::EtcdctlChild;
pub use cluster::{ClusterOptions, EtcdCluster};
pub use etcdctl::Output;
pub use process::{EtcdOptions, EtcdProcess};

/// Facts about the binaries under test.
pub struct Harness;

impl Harness {
    /// True when the server under test is the reference Go etcd (below 3.6).
    /// See [`bins::is_reference`].
    pub fn is_reference() -> bool {
        bins::is_reference()
    }

    /// Version reported by `etcd --version` of the server under test.
    pub fn server_version() -> Version {
        bins::server_version()
    }

    /// Version of the `etcdctl` in use.
    pub fn etcdctl_version() -> Version {
        bins::etcdctl_version()
    }

    /// True when `etcdctl` is 3.5 or newer (it has `get --count-only`, prints
    /// `endpoint health` to stdout, and so on).
    pub fn etcdctl_is_35_or_newer() -> bool {
        bins::etcdctl_version() >= Version::new(3, 5, 0)
    }
}

/// Marks an assertion that only holds for etcd 3.6: runs `$body` unless the
/// server is the reference (then prints a note naming the skipped check).
#[macro_export]
macro_rules! only_36 {
    ($what:expr, $body:block) => {
        if $crate::Harness::is_reference() {
            eprintln!("[3.6-only] skipped under the reference server: {}", $what);
        } else $body
    };
}
