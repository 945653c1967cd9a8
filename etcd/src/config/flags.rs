//! The flag table: every name etcd 3.6 (and, for compatibility, 3.4/3.5) accepts, with
//! its value type, what it sets, its default and help line.

use std::path::PathBuf;
use std::sync::LazyLock;

use super::values::{parse_bool, parse_int, parse_list, parse_uint, parse_unique_list, parse_urls};
use super::{
    parse_go_duration, AutoCompactionMode, ClusterState, Config, LogFormat, LogLevel, MetricsLevel,
    TlsVersion,
};

/// Applies a raw value to the config, or says why the value is invalid.
pub(crate) type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// A flag's value type: decides arity on the command line, how a config-file value is
/// turned into a string, and how values of ignored flags are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Go bool: `--x`, `--x=true|false`; never a separate word.
    Bool,
    /// Free-form string.
    Str,
    /// Unsigned integer (Go `uint`/`uint64`).
    Uint,
    /// Signed integer (Go `int`/`int64`).
    Int,
    /// Go duration (`5s`).
    Duration,
    /// Comma-separated URLs.
    Urls,
    /// Comma-separated strings.
    List,
    /// etcd's legacy ignored flags: bool-like, `=anything` accepted.
    Legacy,
}

impl Kind {
    /// True if the flag takes no separate-word value.
    pub(crate) fn is_boolish(self) -> bool {
        matches!(self, Kind::Bool | Kind::Legacy)
    }

    /// Type-checks a value of an ignored flag.
    pub(crate) fn check(self, v: &str) -> Result<(), String> {
        match self {
            Kind::Bool => parse_bool(v).map(drop),
            Kind::Uint => parse_uint(v, 64).map(drop),
            Kind::Int => parse_int(v).map(drop),
            Kind::Duration => parse_go_duration(v).map(drop),
            Kind::Urls => parse_urls(v).map(drop),
            Kind::Str | Kind::List | Kind::Legacy => Ok(()),
        }
    }
}

/// What a flag does.
#[derive(Clone, Copy)]
pub(crate) enum Action {
    /// Acted on: sets a [`Config`] field.
    Set(Setter),
    /// Accepted, type-checked, warned about, otherwise ignored.
    Ignore,
    /// Another (older) name for the named flag.
    Alias(&'static str),
    /// `--config-file`.
    ConfigFile,
    /// `--version`.
    Version,
}

/// Help-text section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Member,
    Clustering,
    Security,
    Auth,
    Monitoring,
    Logging,
    Tracing,
    Experimental,
    Unsafe,
    Other,
    /// Not listed in `--help`: aliases, legacy and removed flags, file-only keys.
    Hidden,
}

/// One accepted name.
pub(crate) struct FlagSpec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) action: Action,
    pub(crate) group: Group,
    pub(crate) default: &'static str,
    pub(crate) help: &'static str,
    /// Only reachable from the config file (nested transport-security keys, quirks).
    pub(crate) file_only: bool,
    /// Warning printed when set (etcd's deprecation notices).
    pub(crate) deprecated: Option<&'static str>,
    /// Parsed and stored, but the server does not act on it yet: setting it explicitly
    /// gets the "accepted but has no effect yet" warning, and `--help` says so.
    pub(crate) no_effect: bool,
}

impl FlagSpec {
    /// The environment variable for this flag: `ETCD_` + upper-case, `-` → `_`.
    pub(crate) fn env_name(&self) -> String {
        format!("ETCD_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    /// The flag this name stands for (itself unless an alias).
    pub(crate) fn canonical(&'static self) -> &'static FlagSpec {
        match self.action {
            Action::Alias(target) => lookup(target).unwrap_or(self),
            _ => self,
        }
    }

    /// The value type, following aliases.
    pub(crate) fn value_kind(&'static self) -> Kind {
        self.canonical().kind
    }

    /// Applied before the other entries of the same source, so the 3.6 name wins when
    /// both spellings are given in one place.
    pub(crate) fn applies_early(&self) -> bool {
        matches!(self.action, Action::Alias(_)) || self.deprecated.is_some()
    }
}

static SPECS: LazyLock<Vec<FlagSpec>> = LazyLock::new(build);

/// All accepted names.
pub(crate) fn all() -> &'static [FlagSpec] {
    &SPECS
}

/// The spec called `name`, including aliases and file-only keys.
pub(crate) fn lookup(name: &str) -> Option<&'static FlagSpec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Maps a key of a `[client-transport-security]` / `[peer-transport-security]` table
/// to the flag it sets.
pub(crate) fn transport_key(table: &str, key: &str) -> Option<&'static str> {
    let peer = match table {
        "client-transport-security" => false,
        "peer-transport-security" => true,
        _ => return None,
    };
    Some(match (key, peer) {
        ("cert-file", false) => "cert-file",
        ("key-file", false) => "key-file",
        ("client-cert-file", false) => "client-cert-file",
        ("client-key-file", false) => "client-key-file",
        ("client-cert-auth", false) => "client-cert-auth",
        ("trusted-ca-file", false) => "trusted-ca-file",
        ("auto-tls", false) => "auto-tls",
        ("allowed-cn", false) => "client-transport-security.allowed-cn",
        ("allowed-hostname", false) => "client-cert-allowed-hostname",
        ("skip-client-san-verification", false) => {
            "client-transport-security.skip-client-san-verification"
        }
        ("crl-file", false) => "client-crl-file",
        ("cert-file", true) => "peer-cert-file",
        ("key-file", true) => "peer-key-file",
        ("client-cert-file", true) => "peer-client-cert-file",
        ("client-key-file", true) => "peer-client-key-file",
        ("client-cert-auth", true) => "peer-client-cert-auth",
        ("trusted-ca-file", true) => "peer-trusted-ca-file",
        ("auto-tls", true) => "peer-auto-tls",
        ("allowed-cn", true) => "peer-cert-allowed-cn",
        ("allowed-hostname", true) => "peer-cert-allowed-hostname",
        ("skip-client-san-verification", true) => "peer-skip-client-san-verification",
        ("crl-file", true) => "peer-crl-file",
        _ => return None,
    })
}

fn path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn tls_version(v: &str) -> Result<Option<TlsVersion>, String> {
    match v {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        _ => Err("unexpected TLS version (must be one of: TLS1.2, TLS1.3)".into()),
    }
}

fn u32_of(v: &str) -> Result<u32, String> {
    u32::try_from(parse_uint(v, 64)?).map_err(|_| "value out of range".to_string())
}

fn set(
    name: &'static str,
    kind: Kind,
    group: Group,
    default: &'static str,
    help: &'static str,
    f: Setter,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        action: Action::Set(f),
        group,
        default,
        help,
        file_only: false,
        deprecated: None,
        no_effect: false,
    }
}

fn ignore(
    name: &'static str,
    kind: Kind,
    group: Group,
    default: &'static str,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        action: Action::Ignore,
        group,
        default,
        help,
        file_only: false,
        deprecated: None,
        no_effect: false,
    }
}

/// A flag whose value is parsed and stored but not acted on yet (see
/// [`FlagSpec::no_effect`]).
fn no_effect(spec: FlagSpec) -> FlagSpec {
    FlagSpec {
        no_effect: true,
        ..spec
    }
}

/// A flag 3.6 no longer has (or never listed): accepted, ignored, not in `--help`.
fn removed(name: &'static str, kind: Kind) -> FlagSpec {
    ignore(name, kind, Group::Hidden, "", "")
}

/// A 3.5 `--experimental-*` (or older) spelling of a 3.6 flag.
fn alias(name: &'static str, target: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        kind: Kind::Str, // unused: aliases take the target's kind
        action: Action::Alias(target),
        group: Group::Hidden,
        default: "",
        help: "",
        file_only: false,
        deprecated: None,
        no_effect: false,
    }
}

fn deprecated(mut spec: FlagSpec, msg: &'static str) -> FlagSpec {
    spec.deprecated = Some(msg);
    spec
}

fn file_only(mut spec: FlagSpec) -> FlagSpec {
    spec.file_only = true;
    spec.group = Group::Hidden;
    spec
}

/// A 3.5 gate flag that 3.6 replaced with `--feature-gates=Gate=...`.
fn gate_flag(name: &'static str, msg: &'static str, f: Setter) -> FlagSpec {
    deprecated(set(name, Kind::Bool, Group::Hidden, "", "", f), msg)
}

#[allow(clippy::too_many_lines)]
fn build() -> Vec<FlagSpec> {
    use Group::*;
    use Kind::*;
    vec![
        // ---- member ----
        set("name", Str, Member, "default", "Human-readable name for this member.", |c, v| {
            c.name = v.to_string();
            Ok(())
        }),
        set("data-dir", Str, Member, "${name}.etcd", "Path to the data directory.", |c, v| {
            c.data_dir = path(v);
            Ok(())
        }),
        set("wal-dir", Str, Member, "", "Path to the dedicated wal directory.", |c, v| {
            c.wal_dir = path(v);
            Ok(())
        }),
        deprecated(
            set("snapshot-count", Uint, Member, "10000", "Number of committed transactions to trigger a snapshot to disk.", |c, v| {
                c.snapshot_count = parse_uint(v, 64)?;
                Ok(())
            }),
            "--snapshot-count is deprecated in 3.6 and will be decommissioned in 3.7.",
        ),
        set("snapshot-catchup-entries", Uint, Member, "5000", "Number of entries for a slow follower to catch up after compacting the raft storage entries.", |c, v| {
            c.snapshot_catchup_entries = parse_uint(v, 64)?;
            Ok(())
        }),
        set("heartbeat-interval", Uint, Member, "100", "Time (in milliseconds) of a heartbeat interval.", |c, v| {
            c.heartbeat_interval_ms = parse_uint(v, 64)?;
            Ok(())
        }),
        set("election-timeout", Uint, Member, "1000", "Time (in milliseconds) for an election to timeout.", |c, v| {
            c.election_timeout_ms = parse_uint(v, 64)?;
            Ok(())
        }),
        set("initial-election-tick-advance", Bool, Member, "true", "Whether to fast-forward initial election ticks on boot for faster election.", |c, v| {
            c.initial_election_tick_advance = parse_bool(v)?;
            Ok(())
        }),
        set("listen-peer-urls", Urls, Member, "http://localhost:2380", "List of URLs to listen on for peer traffic.", |c, v| {
            c.listen_peer_urls = parse_urls(v)?;
            Ok(())
        }),
        set("listen-client-urls", Urls, Member, "http://localhost:2379", "List of URLs to listen on for client grpc traffic and http as long as --listen-client-http-urls is not specified.", |c, v| {
            c.listen_client_urls = parse_urls(v)?;
            Ok(())
        }),
        set("listen-client-http-urls", Urls, Member, "", "List of URLs to listen on for http only client traffic.", |c, v| {
            c.listen_client_http_urls = parse_urls(v)?;
            Ok(())
        }),
        deprecated(
            ignore("max-snapshots", Uint, Member, "5", "Maximum number of snapshot files to retain (0 is unlimited)."),
            "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.7.",
        ),
        ignore("max-wals", Uint, Member, "5", "Maximum number of wal files to retain (0 is unlimited)."),
        set("quota-backend-bytes", Int, Member, "0", "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).", |c, v| {
            c.quota_backend_bytes = parse_int(v)?;
            Ok(())
        }),
        ignore("backend-bbolt-freelist-type", Str, Member, "map", "The freelist type of the bbolt backend (array or map)."),
        ignore("backend-batch-interval", Duration, Member, "", "Maximum time before committing the backend transaction."),
        ignore("backend-batch-limit", Int, Member, "0", "Maximum operations before committing the backend transaction."),
        set("max-txn-ops", Uint, Member, "128", "Maximum number of operations permitted in a transaction.", |c, v| {
            c.max_txn_ops = parse_uint(v, 64)?;
            Ok(())
        }),
        set("max-request-bytes", Uint, Member, "1572864", "Maximum client request size in bytes the server will accept.", |c, v| {
            c.max_request_bytes = parse_uint(v, 64)?;
            Ok(())
        }),
        set("max-concurrent-streams", Uint, Member, "4294967295", "Maximum concurrent streams that each client can open at a time.", |c, v| {
            c.max_concurrent_streams = u32::try_from(parse_uint(v, 32)?).map_err(|_| "value out of range".to_string())?;
            Ok(())
        }),
        set("enable-grpc-gateway", Bool, Member, "true", "Enable GRPC gateway.", |c, v| {
            c.enable_grpc_gateway = parse_bool(v)?;
            Ok(())
        }),
        no_effect(set("grpc-keepalive-min-time", Duration, Member, "5s", "Minimum duration interval that a client should wait before pinging server.", |c, v| {
            c.grpc_keepalive_min_time = parse_go_duration(v)?;
            Ok(())
        })),
        set("grpc-keepalive-interval", Duration, Member, "2h", "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).", |c, v| {
            c.grpc_keepalive_interval = parse_go_duration(v)?;
            Ok(())
        }),
        set("grpc-keepalive-timeout", Duration, Member, "20s", "Additional duration of wait before closing a non-responsive connection (0 to disable).", |c, v| {
            c.grpc_keepalive_timeout = parse_go_duration(v)?;
            Ok(())
        }),
        set("socket-reuse-port", Bool, Member, "false", "Enable to set socket option SO_REUSEPORT on listeners.", |c, v| {
            c.socket_reuse_port = parse_bool(v)?;
            Ok(())
        }),
        set("socket-reuse-address", Bool, Member, "false", "Enable to set socket option SO_REUSEADDR on listeners.", |c, v| {
            c.socket_reuse_address = parse_bool(v)?;
            Ok(())
        }),
        ignore("raft-read-timeout", Duration, Member, "5s", "Read timeout set on each rafthttp connection."),
        ignore("raft-write-timeout", Duration, Member, "5s", "Write timeout set on each rafthttp connection."),
        set("memory-mlock", Bool, Member, "false", "Enable to enforce etcd pages to stay in RAM.", |c, v| {
            c.memory_mlock = parse_bool(v)?;
            Ok(())
        }),
        set("max-learners", Int, Member, "1", "Maximum number of learners that can be available in the cluster membership.", |c, v| {
            c.max_learners = u64::try_from(parse_int(v)?).map_err(|_| "must not be negative".to_string())?;
            Ok(())
        }),
        // ---- clustering ----
        set("initial-advertise-peer-urls", Urls, Clustering, "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster.", |c, v| {
            c.initial_advertise_peer_urls = parse_urls(v)?;
            Ok(())
        }),
        set("initial-cluster", Str, Clustering, "default=http://localhost:2380", "Initial cluster configuration for bootstrapping.", |c, v| {
            super::parse_initial_cluster(v)?;
            c.initial_cluster = v.to_string();
            Ok(())
        }),
        set("initial-cluster-state", Str, Clustering, "new", "Initial cluster state ('new' or 'existing'); ignored on restarts.", |c, v| {
            c.initial_cluster_state = match v {
                "new" => ClusterState::New,
                "existing" => ClusterState::Existing,
                _ => return Err("valid values are: new, existing".into()),
            };
            Ok(())
        }),
        set("initial-cluster-token", Str, Clustering, "etcd-cluster", "Initial cluster token for the etcd cluster during bootstrap.", |c, v| {
            c.initial_cluster_token = v.to_string();
            Ok(())
        }),
        set("advertise-client-urls", Urls, Clustering, "http://localhost:2379", "List of this member's client URLs to advertise to the public.", |c, v| {
            c.advertise_client_urls = parse_urls(v)?;
            Ok(())
        }),
        ignore("discovery", Str, Clustering, "", "V2 discovery URL used to bootstrap the cluster."),
        ignore("discovery-fallback", Str, Clustering, "exit", "Expected behavior ('exit') when discovery services fails."),
        ignore("discovery-proxy", Str, Clustering, "", "HTTP proxy to use for traffic to discovery service."),
        ignore("discovery-srv", Str, Clustering, "", "DNS srv domain used to bootstrap the cluster."),
        ignore("discovery-srv-name", Str, Clustering, "", "Suffix to the dns srv name queried when bootstrapping."),
        ignore("discovery-token", Str, Clustering, "", "V3 discovery: discovery token for the etcd cluster to be bootstrapped."),
        ignore("discovery-endpoints", List, Clustering, "", "V3 discovery: List of gRPC endpoints of the discovery service."),
        ignore("discovery-dial-timeout", Duration, Clustering, "2s", "V3 discovery: dial timeout for client connections."),
        ignore("discovery-request-timeout", Duration, Clustering, "5s", "V3 discovery: timeout for discovery requests."),
        ignore("discovery-keepalive-time", Duration, Clustering, "2s", "V3 discovery: keepalive time for client connections."),
        ignore("discovery-keepalive-timeout", Duration, Clustering, "6s", "V3 discovery: keepalive timeout for client connections."),
        ignore("discovery-insecure-transport", Bool, Clustering, "true", "V3 discovery: disable transport security for client connections."),
        ignore("discovery-insecure-skip-tls-verify", Bool, Clustering, "false", "V3 discovery: skip server certificate verification."),
        ignore("discovery-cert", Str, Clustering, "", "V3 discovery: identify secure client using this TLS certificate file."),
        ignore("discovery-key", Str, Clustering, "", "V3 discovery: identify secure client using this TLS key file."),
        ignore("discovery-cacert", Str, Clustering, "", "V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle."),
        ignore("discovery-user", Str, Clustering, "", "V3 discovery: username[:password] for authentication."),
        ignore("discovery-password", Str, Clustering, "", "V3 discovery: password for authentication."),
        set("strict-reconfig-check", Bool, Clustering, "true", "Reject reconfiguration requests that would cause quorum loss.", |c, v| {
            c.strict_reconfig_check = parse_bool(v)?;
            Ok(())
        }),
        set("pre-vote", Bool, Clustering, "true", "Enable the raft Pre-Vote algorithm.", |c, v| {
            c.pre_vote = parse_bool(v)?;
            Ok(())
        }),
        set("auto-compaction-retention", Str, Clustering, "0", "Auto compaction retention length. 0 means disable auto compaction.", |c, v| {
            c.auto_compaction_retention = v.to_string();
            Ok(())
        }),
        set("auto-compaction-mode", Str, Clustering, "periodic", "Interpret 'auto-compaction-retention' one of: periodic|revision.", |c, v| {
            c.auto_compaction_mode = match v {
                "periodic" => AutoCompactionMode::Periodic,
                "revision" => AutoCompactionMode::Revision,
                _ => return Err("valid values are: periodic, revision".into()),
            };
            Ok(())
        }),
        deprecated(
            ignore("v2-deprecation", Str, Clustering, "write-only", "Phase of v2store deprecation (the default is enforced)."),
            "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
        ),
        // ---- security ----
        set("cert-file", Str, Security, "", "Path to the client server TLS cert file.", |c, v| {
            c.client_tls.cert_file = path(v);
            Ok(())
        }),
        set("key-file", Str, Security, "", "Path to the client server TLS key file.", |c, v| {
            c.client_tls.key_file = path(v);
            Ok(())
        }),
        set("client-cert-auth", Bool, Security, "false", "Enable client cert authentication.", |c, v| {
            c.client_tls.client_cert_auth = parse_bool(v)?;
            Ok(())
        }),
        no_effect(set("client-cert-file", Str, Security, "", "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required.", |c, v| {
            c.client_tls.client_cert_file = path(v);
            Ok(())
        })),
        no_effect(set("client-key-file", Str, Security, "", "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required.", |c, v| {
            c.client_tls.client_key_file = path(v);
            Ok(())
        })),
        set("client-crl-file", Str, Security, "", "Path to the client certificate revocation list file.", |c, v| {
            c.client_tls.crl_file = path(v);
            Ok(())
        }),
        set("client-cert-allowed-hostname", List, Security, "", "Comma-separated list of SAN hostnames for client cert authentication.", |c, v| {
            c.client_tls.allowed_hostname = parse_list(v);
            Ok(())
        }),
        set("trusted-ca-file", Str, Security, "", "Path to the client server TLS trusted CA cert file.", |c, v| {
            c.client_tls.trusted_ca_file = path(v);
            Ok(())
        }),
        set("auto-tls", Bool, Security, "false", "Client TLS using generated certificates.", |c, v| {
            c.client_tls.auto_tls = parse_bool(v)?;
            Ok(())
        }),
        set("peer-cert-file", Str, Security, "", "Path to the peer server TLS cert file.", |c, v| {
            c.peer_tls.cert_file = path(v);
            Ok(())
        }),
        set("peer-key-file", Str, Security, "", "Path to the peer server TLS key file.", |c, v| {
            c.peer_tls.key_file = path(v);
            Ok(())
        }),
        set("peer-client-cert-auth", Bool, Security, "false", "Enable peer client cert authentication.", |c, v| {
            c.peer_tls.client_cert_auth = parse_bool(v)?;
            Ok(())
        }),
        set("peer-trusted-ca-file", Str, Security, "", "Path to the peer server TLS trusted CA file.", |c, v| {
            c.peer_tls.trusted_ca_file = path(v);
            Ok(())
        }),
        set("peer-cert-allowed-cn", List, Security, "", "Comma-separated list of allowed CNs for inter-peer TLS authentication.", |c, v| {
            c.peer_tls.allowed_cn = parse_list(v);
            Ok(())
        }),
        set("peer-cert-allowed-hostname", List, Security, "", "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.", |c, v| {
            c.peer_tls.allowed_hostname = parse_list(v);
            Ok(())
        }),
        set("peer-auto-tls", Bool, Security, "false", "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.", |c, v| {
            c.peer_tls.auto_tls = parse_bool(v)?;
            Ok(())
        }),
        set("peer-client-cert-file", Str, Security, "", "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.", |c, v| {
            c.peer_tls.client_cert_file = path(v);
            Ok(())
        }),
        set("peer-client-key-file", Str, Security, "", "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.", |c, v| {
            c.peer_tls.client_key_file = path(v);
            Ok(())
        }),
        set("peer-skip-client-san-verification", Bool, Security, "false", "Skip verification of SAN field in client certificate for peer connections.", |c, v| {
            c.peer_tls.skip_client_san_verification = parse_bool(v)?;
            Ok(())
        }),
        set("self-signed-cert-validity", Uint, Security, "1", "The validity period of the client and peer certificates that are automatically generated by etcd, in years.", |c, v| {
            c.self_signed_cert_validity = u32_of(v)?;
            Ok(())
        }),
        set("peer-crl-file", Str, Security, "", "Path to the peer certificate revocation list file.", |c, v| {
            c.peer_tls.crl_file = path(v);
            Ok(())
        }),
        set("cipher-suites", List, Security, "", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty = library defaults).", |c, v| {
            c.cipher_suites = parse_list(v);
            Ok(())
        }),
        ignore("cors", List, Security, "*", "Comma-separated whitelist of origins for CORS."),
        ignore("host-whitelist", List, Security, "*", "Acceptable hostnames from HTTP client requests, if server is not secure."),
        set("tls-min-version", Str, Security, "TLS1.2", "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.", |c, v| {
            c.tls_min_version = tls_version(v)?;
            Ok(())
        }),
        set("tls-max-version", Str, Security, "", "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty = library default).", |c, v| {
            c.tls_max_version = tls_version(v)?;
            Ok(())
        }),
        file_only(set("client-transport-security.allowed-cn", List, Security, "", "", |c, v| {
            c.client_tls.allowed_cn = parse_list(v);
            Ok(())
        })),
        file_only(set("client-transport-security.skip-client-san-verification", Bool, Security, "", "", |c, v| {
            c.client_tls.skip_client_san_verification = parse_bool(v)?;
            Ok(())
        })),
        // ---- auth ----
        set("auth-token", Str, Auth, "simple", "Specify a v3 authentication token type and its options ('simple' or 'jwt').", |c, v| {
            super::values::parse_auth_token(v)?;
            c.auth_token = v.to_string();
            Ok(())
        }),
        set("bcrypt-cost", Uint, Auth, "10", "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.", |c, v| {
            let cost = u32_of(v)?;
            if !(4..=31).contains(&cost) {
                return Err("must be between 4 and 31".into());
            }
            c.bcrypt_cost = cost;
            Ok(())
        }),
        set("auth-token-ttl", Uint, Auth, "300", "Time (in seconds) of the auth-token-ttl.", |c, v| {
            c.auth_token_ttl = parse_uint(v, 64)?;
            Ok(())
        }),
        // ---- monitoring ----
        no_effect(set("enable-pprof", Bool, Monitoring, "false", "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"", |c, v| {
            c.enable_pprof = parse_bool(v)?;
            Ok(())
        })),
        set("metrics", Str, Monitoring, "basic", "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics.", |c, v| {
            c.metrics = match v {
                "basic" => MetricsLevel::Basic,
                "extensive" => MetricsLevel::Extensive,
                _ => return Err("valid values are: basic, extensive".into()),
            };
            Ok(())
        }),
        set("listen-metrics-urls", Urls, Monitoring, "", "List of URLs to listen on for the /metrics and /health endpoints.", |c, v| {
            c.listen_metrics_urls = parse_urls(v)?;
            Ok(())
        }),
        // ---- logging ----
        set("logger", Str, Logging, "zap", "Currently only supports 'zap' for structured logging.", |c, v| {
            match v {
                "zap" => {}
                "capnslog" => return Err("--logger=capnslog is removed in v3.5".into()),
                _ => return Err("unknown logger option (only 'zap' is supported)".into()),
            }
            c.logger = v.to_string();
            Ok(())
        }),
        set("log-outputs", List, Logging, "default", "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.", |c, v| {
            c.log_outputs = parse_unique_list(v);
            Ok(())
        }),
        set("log-level", Str, Logging, "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal.", |c, v| {
            c.log_level = v.parse::<LogLevel>()?;
            Ok(())
        }),
        set("log-format", Str, Logging, "json", "Configures log format. Only supports json, console.", |c, v| {
            c.log_format = match v {
                "json" => LogFormat::Json,
                "console" | "text" => LogFormat::Console,
                _ => return Err("valid values are: json, console".into()),
            };
            Ok(())
        }),
        ignore("enable-log-rotation", Bool, Logging, "false", "Enable log rotation of a single log-outputs file target."),
        ignore("log-rotation-config-json", Str, Logging, "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}", "Configures log rotation if enabled with a JSON logger config."),
        set("warning-unary-request-duration", Duration, Logging, "300ms", "Time duration after which a warning is logged if a unary request takes more time.", |c, v| {
            c.warning_unary_request_duration = parse_go_duration(v)?;
            Ok(())
        }),
        set("warning-apply-duration", Duration, Logging, "100ms", "Time duration after which a warning is generated if applying a request takes more time.", |c, v| {
            c.warning_apply_duration = parse_go_duration(v)?;
            Ok(())
        }),
        // ---- tracing ----
        ignore("enable-distributed-tracing", Bool, Tracing, "false", "Enable distributed tracing using OpenTelemetry Tracing."),
        ignore("distributed-tracing-address", Str, Tracing, "localhost:4317", "Address for distributed tracing used for OpenTelemetry Tracing."),
        ignore("distributed-tracing-service-name", Str, Tracing, "etcd", "Configures service name for distributed tracing."),
        ignore("distributed-tracing-instance-id", Str, Tracing, "", "Configures service instance ID for distributed tracing."),
        ignore("distributed-tracing-sampling-rate", Int, Tracing, "0", "Number of samples to collect per million spans for OpenTelemetry Tracing."),
        // ---- features / experimental (3.6 names) ----
        set("feature-gates", Str, Experimental, "", "A set of key=value pairs that describe server level feature gates for alpha/experimental features.", |c, v| {
            c.feature_gates.apply(v)
        }),
        set("watch-progress-notify-interval", Duration, Experimental, "10m", "Duration of periodical watch progress notification.", |c, v| {
            c.watch_progress_notify_interval = parse_go_duration(v)?;
            Ok(())
        }),
        set("corrupt-check-time", Duration, Experimental, "0s", "Duration of time between cluster corruption check passes.", |c, v| {
            c.corrupt_check_time = parse_go_duration(v)?;
            Ok(())
        }),
        ignore("compact-hash-check-time", Duration, Experimental, "1m", "Duration of time between leader checks followers compaction hashes."),
        ignore("compaction-batch-limit", Int, Experimental, "0", "Sets the maximum revisions deleted in each compaction batch."),
        ignore("compaction-sleep-interval", Duration, Experimental, "10ms", "Sets the sleep interval between each compaction batch."),
        ignore("downgrade-check-time", Duration, Experimental, "5s", "Duration of time between two downgrade status checks."),
        ignore("bootstrap-defrag-threshold-megabytes", Uint, Experimental, "0", "Defragment during bootstrap if it frees at least this many megabytes."),
        // ---- unsafe ----
        set("force-new-cluster", Bool, Unsafe, "false", "Force to create a new one-member cluster.", |c, v| {
            c.force_new_cluster = parse_bool(v)?;
            Ok(())
        }),
        set("unsafe-no-fsync", Bool, Unsafe, "false", "Disables fsync, unsafe, will cause data loss.", |c, v| {
            c.unsafe_no_fsync = parse_bool(v)?;
            Ok(())
        }),
        // ---- other ----
        FlagSpec {
            name: "config-file",
            kind: Str,
            action: Action::ConfigFile,
            group: Other,
            default: "",
            help: "Path to the server configuration file (TOML). Command-line flags and ETCD_* variables override its values.",
            file_only: false,
            deprecated: None,
            no_effect: false,
        },
        FlagSpec {
            name: "version",
            kind: Bool,
            action: Action::Version,
            group: Other,
            default: "false",
            help: "Print the version and exit.",
            file_only: false,
            deprecated: None,
            no_effect: false,
        },
        // ---- 3.5 spellings of 3.6 flags ----
        alias("experimental-snapshot-catchup-entries", "snapshot-catchup-entries"),
        file_only(alias("experimental-snapshot-catch-up-entries", "snapshot-catchup-entries")),
        alias("experimental-watch-progress-notify-interval", "watch-progress-notify-interval"),
        alias("experimental-peer-skip-client-san-verification", "peer-skip-client-san-verification"),
        alias("experimental-max-learners", "max-learners"),
        alias("experimental-memory-mlock", "memory-mlock"),
        alias("experimental-corrupt-check-time", "corrupt-check-time"),
        alias("experimental-compact-hash-check-time", "compact-hash-check-time"),
        alias("experimental-compaction-batch-limit", "compaction-batch-limit"),
        alias("experimental-compaction-sleep-interval", "compaction-sleep-interval"),
        alias("experimental-downgrade-check-time", "downgrade-check-time"),
        alias("experimental-warning-apply-duration", "warning-apply-duration"),
        alias("experimental-warning-unary-request-duration", "warning-unary-request-duration"),
        alias("experimental-bootstrap-defrag-threshold-megabytes", "bootstrap-defrag-threshold-megabytes"),
        alias("experimental-enable-distributed-tracing", "enable-distributed-tracing"),
        alias("experimental-distributed-tracing-address", "distributed-tracing-address"),
        alias("experimental-distributed-tracing-service-name", "distributed-tracing-service-name"),
        alias("experimental-distributed-tracing-instance-id", "distributed-tracing-instance-id"),
        alias("experimental-distributed-tracing-sampling-rate", "distributed-tracing-sampling-rate"),
        alias("experimental-backend-bbolt-freelist-type", "backend-bbolt-freelist-type"),
        alias("log-output", "log-outputs"),
        // ---- 3.5 gate flags (3.6: --feature-gates) ----
        gate_flag(
            "experimental-initial-corrupt-check",
            "--experimental-initial-corrupt-check is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=InitialCorruptCheck=true' instead.",
            |c, v| {
                c.feature_gates.initial_corrupt_check = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-compact-hash-check-enabled",
            "--experimental-compact-hash-check-enabled is deprecated in 3.6 and will be decommissioned in 3.7. Use '--feature-gates=CompactHashCheck=true' instead.",
            |c, v| {
                c.feature_gates.compact_hash_check = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-enable-lease-checkpoint",
            "--experimental-enable-lease-checkpoint is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=LeaseCheckpoint=true' instead.",
            |c, v| {
                c.feature_gates.lease_checkpoint = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-enable-lease-checkpoint-persist",
            "--experimental-enable-lease-checkpoint-persist is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=LeaseCheckpointPersist=true' instead.",
            |c, v| {
                c.feature_gates.lease_checkpoint_persist = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-stop-grpc-service-on-defrag",
            "--experimental-stop-grpc-service-on-defrag is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=StopGRPCServiceOnDefrag=true' instead.",
            |c, v| {
                c.feature_gates.stop_grpc_service_on_defrag = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-txn-mode-write-with-shared-buffer",
            "--experimental-txn-mode-write-with-shared-buffer is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=TxnModeWriteWithSharedBuffer=true' instead.",
            |c, v| {
                c.feature_gates.txn_mode_write_with_shared_buffer = parse_bool(v)?;
                Ok(())
            },
        ),
        gate_flag(
            "experimental-set-member-localaddr",
            "--experimental-set-member-localaddr is deprecated in v3.6 and will be decommissioned in v3.7. Use '--feature-gates=SetMemberLocalAddr=true' instead.",
            |c, v| {
                c.feature_gates.set_member_local_addr = parse_bool(v)?;
                Ok(())
            },
        ),
        // ---- removed in 3.6 (3.4/3.5 only) ----
        removed("enable-v2", Bool),
        removed("experimental-enable-v2v3", Str),
        removed("proxy", Str),
        removed("proxy-failure-wait", Uint),
        removed("proxy-refresh-interval", Uint),
        removed("proxy-dial-timeout", Uint),
        removed("proxy-write-timeout", Uint),
        removed("proxy-read-timeout", Uint),
        removed("experimental-wait-cluster-ready-timeout", Duration),
        removed("disable-log-sampling", Bool),
        removed("log-package-levels", Str),
        removed("debug", Bool),
        // ---- flags etcd has always accepted and ignored ----
        removed("cluster-active-size", Legacy),
        removed("cluster-remove-delay", Legacy),
        removed("cluster-sync-interval", Legacy),
        removed("config", Legacy),
        removed("force", Legacy),
        removed("max-result-buffer", Legacy),
        removed("max-retry-attempts", Legacy),
        removed("peer-heartbeat-interval", Legacy),
        removed("peer-election-timeout", Legacy),
        removed("retry-interval", Legacy),
        removed("snapshot", Legacy),
        removed("v", Legacy),
        removed("vv", Legacy),
    ]
}

const SECTIONS: [(Group, &str); 10] = [
    (Group::Member, "Member"),
    (Group::Clustering, "Clustering"),
    (Group::Security, "Security"),
    (Group::Auth, "Auth"),
    (Group::Monitoring, "Profiling and Monitoring"),
    (Group::Logging, "Logging"),
    (Group::Tracing, "Distributed tracing"),
    (Group::Experimental, "Features"),
    (Group::Unsafe, "Unsafe feature"),
    (Group::Other, "Other"),
];

/// The `--help` text: usage, then each visible flag with its default.
pub(crate) fn help_text() -> String {
    let mut out = String::from(
        "Usage:\n\n  etcd [flags]\n    Start an etcd server.\n\n  etcd --version\n    Show the version of etcd.\n\n  \
         etcd -h | --help\n    Show the help information about etcd.\n\n  etcd --config-file\n    \
         Path to the server configuration file (TOML).\n",
    );
    for (group, title) in SECTIONS {
        out.push_str(&format!("\n{title}:\n"));
        for spec in all().iter().filter(|s| s.group == group) {
            out.push_str(&format!(
                "  --{} '{}'\n    {}",
                spec.name, spec.default, spec.help
            ));
            if matches!(spec.action, Action::Ignore) || spec.no_effect {
                out.push_str(" (accepted; no effect yet)");
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\nEvery flag can also be set as ETCD_<FLAG> (upper case, '-' -> '_'), e.g. ETCD_DATA_DIR.\n\
         Precedence: command-line flag > environment variable > config file > default.\n\
         The etcd 3.5 --experimental-* names of these flags, and flags removed in 3.6\n\
         (--enable-v2, --proxy*, ...), are accepted with a warning.\n\n\
         CAUTIOUS with unsafe flag! It may break the guarantees given by the consensus protocol!\n",
    );
    out
}
