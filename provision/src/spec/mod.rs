//! The cluster spec: which members exist, how they are addressed, whether TLS is on, which
//! release to install and where files go.
//!
//! A spec comes from a TOML file ([`load_file`]) or from quick-start flags
//! ([`quick::QuickStart`]); both produce a [`RawSpec`] that [`validate`] turns into a
//! checked [`ClusterSpec`]. Every later step (certificates, render, install, join) takes
//! only a `ClusterSpec`, so it never sees an invalid name, address or port.

mod file;
pub mod quick;
mod validate;

pub use file::{load_file, parse_str, RawMember, RawSpec};
pub use validate::{validate, Problem, SpecError};

use std::net::IpAddr;
use std::path::PathBuf;

/// Default client port.
pub const DEFAULT_CLIENT_PORT: u16 = 2379;
/// Default peer port.
pub const DEFAULT_PEER_PORT: u16 = 2380;
/// Default release downloaded and installed.
pub const DEFAULT_VERSION: &str = "3.5.17";
/// Default base of release download URLs (`<base>/v<ver>/etcd-v<ver>-linux-amd64.tar.gz`).
pub const DEFAULT_RELEASE_URL: &str = "https://github.com/etcd-io/etcd/releases/download";

/// A validated cluster spec. Invariants (checked by [`validate`]): at least one member;
/// member names unique and usable as DNS names; every member has at least one IP; no two
/// members listen on the same IP and port; ports are non-zero and a member's client and
/// peer ports differ; validity periods are positive and the renewal window is shorter than
/// a leaf's validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Initial cluster token (`--initial-cluster-token`).
    pub token: String,
    /// TLS settings.
    pub tls: TlsSpec,
    /// Release to download and install.
    pub release: ReleaseSpec,
    /// Install locations and the service account.
    pub paths: Paths,
    /// Members in spec order (the order of `--initial-cluster`).
    pub members: Vec<Member>,
}

impl ClusterSpec {
    /// The member named `name`, if any.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// URL scheme of every client and peer URL: `https` with TLS on, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.enabled {
            "https"
        } else {
            "http"
        }
    }
}

/// Key algorithm of every generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (the default).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
    /// RSA with PKCS#1 v1.5 SHA-256 signatures; `bits` is 2048, 3072 or 4096.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl KeyAlgorithm {
    /// The spellings [`parse`](Self::parse) accepts, for messages.
    pub const NAMES: &'static str = "ecdsa-p256, ed25519, rsa (= rsa-2048), rsa-3072, rsa-4096";

    /// Parses the spec's spelling (`ecdsa-p256`, `ed25519`, `rsa`, `rsa-2048`, `rsa-3072`,
    /// `rsa-4096`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ecdsa-p256" | "ecdsa" | "p256" => Some(Self::EcdsaP256),
            "ed25519" => Some(Self::Ed25519),
            "rsa" | "rsa-2048" => Some(Self::Rsa { bits: 2048 }),
            "rsa-3072" => Some(Self::Rsa { bits: 3072 }),
            "rsa-4096" => Some(Self::Rsa { bits: 4096 }),
            _ => None,
        }
    }
}

/// TLS settings of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Client and peer traffic use TLS with client-certificate authentication.
    pub enabled: bool,
    /// Algorithm for newly generated keys.
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of leaf certificates, in days.
    pub validity_days: u32,
    /// Lifetime of a newly generated CA, in days.
    pub ca_validity_days: u32,
    /// `renew` reissues a leaf that expires within this many days.
    pub renew_before_days: u32,
    /// Extra SANs (DNS names or IPs) added to every member's server certificate.
    pub extra_sans: Vec<String>,
}

/// Which release to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSpec {
    /// Version without the leading `v` (`3.5.17`).
    pub version: String,
    /// Base URL; the tarball is `<base>/v<ver>/etcd-v<ver>-linux-amd64.tar.gz`.
    pub base_url: String,
    /// Pinned SHA-256 of the tarball (lowercase hex); when absent `SHA256SUMS` is used.
    pub sha256: Option<String>,
}

/// Install locations. Each path may contain `{name}`, replaced by the member name (so
/// several members can share one host, as in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Where `etcd`, `etcdctl` and `etcdutl` go.
    pub bin_dir: PathBuf,
    /// Where the config file and environment files go.
    pub config_dir: PathBuf,
    /// Where the CA, member and admin certificates go.
    pub pki_dir: PathBuf,
    /// The member's data directory (mode 0700, owned by the service user).
    pub data_dir: PathBuf,
    /// Where the systemd unit goes.
    pub unit_dir: PathBuf,
    /// systemd unit name without `.service`.
    pub unit_name: String,
    /// Service user.
    pub user: String,
    /// Service group.
    pub group: String,
}

impl Paths {
    /// `path` with every `{name}` replaced by `member`.
    pub fn for_member(path: &std::path::Path, member: &str) -> PathBuf {
        PathBuf::from(path.to_string_lossy().replace("{name}", member))
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member name (`--name`), also a DNS SAN of its certificates.
    pub name: String,
    /// IP addresses; the first is advertised, all are listened on.
    pub ips: Vec<IpAddr>,
    /// Host names put into the certificates.
    pub hostnames: Vec<String>,
    /// Client port.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Data directory override (else [`Paths::data_dir`]).
    pub data_dir: Option<PathBuf>,
}

impl Member {
    /// The advertised address: the first IP.
    pub fn advertise_ip(&self) -> IpAddr {
        // validate() guarantees at least one IP; fall back to loopback defensively.
        self.ips
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }
}
