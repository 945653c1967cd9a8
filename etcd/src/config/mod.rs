//! Server configuration: etcd 3.6's command line, `ETCD_*` environment variables and a
//! TOML config file, merged into one typed [`Config`].
//!
//! # Sources and precedence
//!
//! Every setting can come from three places, and the first one that sets it wins:
//!
//! 1. **command-line flag** (`--snapshot-count=5000`, `--snapshot-count 5000`,
//!    `-snapshot-count 5000`; Go-style booleans: `--client-cert-auth` or
//!    `--client-cert-auth=false`, never a separate word);
//! 2. **environment variable** `ETCD_` + the flag name upper-cased with `-` → `_`
//!    (`ETCD_SNAPSHOT_COUNT=5000`); empty values are ignored, as etcd does;
//! 3. **config file** given by `--config-file` / `ETCD_CONFIG_FILE`: TOML keyed by flag
//!    name (`snapshot-count = 5000`), see below;
//! 4. etcd's default.
//!
//! This deliberately differs from etcd, where a config file makes etcd ignore every
//! other flag and variable, and where setting a flag both ways is fatal: here they
//! merge, the command line wins, and a shadowed variable only produces a warning.
//! [`Config::sources`] records where each non-default value came from.
//!
//! # Config file
//!
//! TOML, or etcd's own YAML (files named `*.yml`/`*.yaml`, or any file that is not TOML
//! but reads as YAML) through a small YAML subset — flat `key: value`, the two nested
//! transport-security maps, lists — enough for etcd's `etcd.conf.yml.sample`.
//! Keys are flag names. Lists (URLs, `log-outputs`, `cipher-suites`, ...) may be a
//! comma-separated string, as in etcd's YAML, or a TOML array. Durations are Go
//! strings (`"10m"`); a bare integer is read as nanoseconds, which is what etcd's YAML
//! (Go `time.Duration` via JSON) means by one. etcd's nested
//! `[client-transport-security]` / `[peer-transport-security]` tables are accepted with
//! keys `cert-file`, `key-file`, `client-cert-file`, `client-key-file`,
//! `client-cert-auth`, `trusted-ca-file`, `auto-tls`, `allowed-cn`, `allowed-hostname`,
//! `skip-client-san-verification` (and `crl-file`), so an etcd YAML file rewritten as
//! TOML works. An unknown key is an error.
//!
//! # Flags we do not act on
//!
//! Every other etcd 3.6 flag, the 3.5 `--experimental-*` spellings, and 3.4/3.5 flags
//! that 3.6 dropped (`--enable-v2`, `--proxy*`, ...) are parsed with the right arity and
//! type and then reported as "flag --X is accepted but has no effect yet", so existing
//! unit files keep starting. Flags whose values the configuration keeps but the server
//! does not act on yet (`--grpc-keepalive-min-time`, `--enable-pprof`, ...) are marked so in the flag
//! table and get the same warning when set; `--help` says "no effect yet" for both kinds.
//! Renamed flags (`--experimental-watch-progress-notify-interval`
//! → `--watch-progress-notify-interval`) set the same field as the new name.
//! `--feature-gates` and the 3.5 gate flags (`--experimental-initial-corrupt-check`, ...)
//! fill [`FeatureGates`]; which gates the server honours is up to the server.

mod duration;
mod flags;
mod load;
mod values;
mod yaml;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use duration::{format_go_duration, parse_go_duration};
pub use values::parse_auth_token;

/// The etcd release this server reports (`etcd --version`, `/version`, Status).
pub const ETCD_VERSION: &str = "3.6.0";

/// The etcd cluster API version this server speaks (`/version` `etcdcluster`).
pub const API_VERSION: &str = "3.6";

/// Backend quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Largest quota etcd recommends (8 GiB); larger values only produce a warning.
pub const MAX_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Upper bound etcd puts on `--election-timeout`, in milliseconds.
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;

/// What [`Config::load`] asks the caller to do.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once at startup; boxing buys nothing
pub enum LoadOutcome {
    /// Start the server with this configuration; log the warnings once logging is up.
    Run(Config, Vec<String>),
    /// `--help` or `--version`: print this text to stdout and exit 0.
    PrintAndExit(String),
}

/// Why the configuration could not be loaded. The message names the flag, variable or
/// file key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line flag that etcd does not define.
    #[error("flag provided but not defined: {0}")]
    UnknownFlag(String),
    /// A value-taking flag at the end of the command line.
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    /// Malformed flag syntax such as `---x` or `-=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// A non-flag argument (etcd takes none, apart from subcommands we do not have).
    #[error("{0:?} is not a valid flag")]
    UnexpectedArgument(String),
    /// `etcd gateway` / `etcd grpc-proxy`.
    #[error("the \"{0}\" subcommand is not supported by this server")]
    UnsupportedSubcommand(String),
    /// A command-line argument that is not valid UTF-8.
    #[error("argument is not valid UTF-8: {0:?}")]
    NotUtf8(std::ffi::OsString),
    /// A value that does not parse or is out of range; `origin` is e.g.
    /// `flag --snapshot-count` or `environment variable ETCD_SNAPSHOT_COUNT`.
    #[error("invalid value {value:?} for {origin}: {reason}")]
    InvalidValue {
        /// Where the value came from, naming the flag.
        origin: String,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The config file could not be read or is not valid TOML.
    #[error("cannot load config file {}: {reason}", path.display())]
    File {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A config-file key that names no flag.
    #[error("config file {}: unknown key {key:?}", path.display())]
    UnknownFileKey {
        /// The config file.
        path: PathBuf,
        /// The offending key (`table.key` inside a nested table).
        key: String,
    },
    /// The settings parse but do not make sense together (etcd's `Validate`).
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// Process exit status etcd uses for this error: 2 for command-line syntax errors
    /// (Go's `flag` package), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::UnknownFlag(_)
            | ConfigError::MissingValue(_)
            | ConfigError::BadSyntax(_)
            | ConfigError::NotUtf8(_) => 2,
            _ => 1,
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// etcd's default (or derived from other settings, like `--initial-cluster`).
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag (the spelling used, e.g. a 3.5 `--experimental-*` name).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// One explicitly set value, as recorded by [`Config::sources`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The raw value as given (secrets redacted).
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster this member was added to with MemberAdd.
    Existing,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompactionMode {
    /// Retention is a time window.
    Periodic,
    /// Retention is a number of revisions.
    Revision,
}

/// The effective auto-compaction policy ([`Config::auto_compaction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Retention `0`: no automatic compaction.
    Disabled,
    /// Keep this much history (`--auto-compaction-mode=periodic`).
    Periodic(Duration),
    /// Keep this many revisions (`--auto-compaction-mode=revision`).
    Revision(u64),
}

/// `--tls-min-version` / `--tls-max-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLS1.2`.
    Tls12,
    /// `TLS1.3`.
    Tls13,
}

/// `--log-level` (zap's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info` (default).
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// `dpanic`.
    DPanic,
    /// `panic`.
    Panic,
    /// `fatal`.
    Fatal,
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "dpanic" => LogLevel::DPanic,
            "panic" => LogLevel::Panic,
            "fatal" => LogLevel::Fatal,
            _ => {
                return Err(
                    "supported levels are debug, info, warn, error, dpanic, panic, fatal".into(),
                )
            }
        })
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `json` (default): one JSON object per line, zap's field names.
    Json,
    /// `console` (or `text`): human-readable lines.
    Console,
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsLevel {
    /// `basic` (default).
    Basic,
    /// `extensive`: adds gRPC handling-time histograms.
    Extensive,
}

/// etcd 3.6 server feature gates (`--feature-gates=Name=bool,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGates {
    /// `StopGRPCServiceOnDefrag` (alpha, off).
    pub stop_grpc_service_on_defrag: bool,
    /// `InitialCorruptCheck` (alpha, off).
    pub initial_corrupt_check: bool,
    /// `CompactHashCheck` (alpha, off).
    pub compact_hash_check: bool,
    /// `TxnModeWriteWithSharedBuffer` (beta, on).
    pub txn_mode_write_with_shared_buffer: bool,
    /// `LeaseCheckpoint` (alpha, off).
    pub lease_checkpoint: bool,
    /// `LeaseCheckpointPersist` (alpha, off).
    pub lease_checkpoint_persist: bool,
    /// `SetMemberLocalAddr` (alpha, off).
    pub set_member_local_addr: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            stop_grpc_service_on_defrag: false,
            initial_corrupt_check: false,
            compact_hash_check: false,
            txn_mode_write_with_shared_buffer: true,
            lease_checkpoint: false,
            lease_checkpoint_persist: false,
            set_member_local_addr: false,
        }
    }
}

impl FeatureGates {
    /// Gate names with their stage (`true` = alpha, `false` = beta).
    pub const NAMES: [(&'static str, bool); 7] = [
        ("StopGRPCServiceOnDefrag", true),
        ("InitialCorruptCheck", true),
        ("CompactHashCheck", true),
        ("TxnModeWriteWithSharedBuffer", false),
        ("LeaseCheckpoint", true),
        ("LeaseCheckpointPersist", true),
        ("SetMemberLocalAddr", true),
    ];

    /// Gates whose setting this server honours, or that have nothing to act on here:
    /// `TxnModeWriteWithSharedBuffer` is how etcd's read path is built and has no
    /// counterpart here, on or off. Every other gate of [`NAMES`](Self::NAMES) is
    /// warned about when turned on.
    const NOT_WARNED: [&'static str; 2] = ["InitialCorruptCheck", "TxnModeWriteWithSharedBuffer"];

    /// The gates turned on that this server does not act on yet, in [`NAMES`](Self::NAMES)
    /// order.
    pub fn on_without_effect(&self) -> Vec<&'static str> {
        let mut gates = self.clone();
        Self::NAMES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !Self::NOT_WARNED.contains(name))
            .filter(|name| gates.get_mut(name).is_some_and(|on| *on))
            .collect()
    }

    /// The gate called `name`, if there is one.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "StopGRPCServiceOnDefrag" => &mut self.stop_grpc_service_on_defrag,
            "InitialCorruptCheck" => &mut self.initial_corrupt_check,
            "CompactHashCheck" => &mut self.compact_hash_check,
            "TxnModeWriteWithSharedBuffer" => &mut self.txn_mode_write_with_shared_buffer,
            "LeaseCheckpoint" => &mut self.lease_checkpoint,
            "LeaseCheckpointPersist" => &mut self.lease_checkpoint_persist,
            "SetMemberLocalAddr" => &mut self.set_member_local_addr,
            _ => return None,
        })
    }

    /// Applies a `--feature-gates` value: `Name=bool` pairs separated by commas, plus
    /// `AllAlpha=bool` / `AllBeta=bool`. Gates not named keep their value.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("missing bool value for {item}"))?;
            let name = name.trim();
            let on = values::parse_bool(value.trim()).map_err(|_| {
                format!("invalid value of {name}={value}, err: expected true or false")
            })?;
            match name {
                "AllAlpha" | "AllBeta" => {
                    let alpha = name == "AllAlpha";
                    for (gate, is_alpha) in Self::NAMES {
                        if is_alpha == alpha {
                            if let Some(g) = self.get_mut(gate) {
                                *g = on;
                            }
                        }
                    }
                }
                _ => {
                    *self
                        .get_mut(name)
                        .ok_or_else(|| format!("unrecognized feature gate: {name}"))? = on
                }
            }
        }
        Ok(())
    }
}

/// TLS settings of one side (client or peer), like etcd's `transport.TLSInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportSecurity {
    /// Server certificate (`--cert-file` / `--peer-cert-file`).
    pub cert_file: Option<PathBuf>,
    /// Server key (`--key-file` / `--peer-key-file`).
    pub key_file: Option<PathBuf>,
    /// Certificate used when this server acts as a client (`--client-cert-file` /
    /// `--peer-client-cert-file`); defaults to `cert_file`.
    pub client_cert_file: Option<PathBuf>,
    /// Key used when this server acts as a client.
    pub client_key_file: Option<PathBuf>,
    /// Require and verify client certificates (`--client-cert-auth` /
    /// `--peer-client-cert-auth`).
    pub client_cert_auth: bool,
    /// CA bundle for verifying the other side (`--trusted-ca-file` /
    /// `--peer-trusted-ca-file`).
    pub trusted_ca_file: Option<PathBuf>,
    /// Certificate revocation list (`--client-crl-file` / `--peer-crl-file`).
    pub crl_file: Option<PathBuf>,
    /// Accepted client-certificate CNs (`--peer-cert-allowed-cn`; for clients only via
    /// the config file's `allowed-cn`). Empty = any.
    pub allowed_cn: Vec<String>,
    /// Accepted client-certificate SAN hostnames (`--client-cert-allowed-hostname` /
    /// `--peer-cert-allowed-hostname`). Empty = any.
    pub allowed_hostname: Vec<String>,
    /// Generate a self-signed certificate (`--auto-tls` / `--peer-auto-tls`).
    pub auto_tls: bool,
    /// Skip SAN verification of client certificates
    /// (`--peer-skip-client-san-verification`).
    pub skip_client_san_verification: bool,
}

impl TransportSecurity {
    /// True when a certificate and key are configured (TLS can be served).
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// The server configuration: every etcd 3.6 setting the server acts on, under etcd's
/// names and defaults. Build it with [`Config::load`]; [`Config::default`] gives
/// etcd's defaults (handy in tests).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    // ---- member ----
    /// `--name` (default `default`).
    pub name: String,
    /// `--data-dir`; `None` means `${name}.etcd` — use [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// `--wal-dir`; `None` = inside the data dir.
    pub wal_dir: Option<PathBuf>,
    /// `--snapshot-count`: applied entries between raft snapshots (10000).
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`: entries kept after a raft log compaction (5000).
    pub snapshot_catchup_entries: u64,
    /// `--heartbeat-interval` in milliseconds (100).
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in milliseconds (1000).
    pub election_timeout_ms: u64,
    /// `--initial-election-tick-advance` (true).
    pub initial_election_tick_advance: bool,
    /// `--listen-peer-urls` (`http://localhost:2380`).
    pub listen_peer_urls: Vec<Url>,
    /// `--listen-client-urls` (`http://localhost:2379`): gRPC, and HTTP unless
    /// `listen_client_http_urls` is set.
    pub listen_client_urls: Vec<Url>,
    /// `--listen-client-http-urls` (none): HTTP-only client listeners.
    pub listen_client_http_urls: Vec<Url>,
    /// `--listen-metrics-urls` (none): extra `/metrics` and `/health` listeners.
    pub listen_metrics_urls: Vec<Url>,
    /// `--quota-backend-bytes` as given (0 = 2 GiB, negative = no quota); use
    /// [`Config::quota_bytes`].
    pub quota_backend_bytes: i64,
    /// `--max-txn-ops` (128).
    pub max_txn_ops: u64,
    /// `--max-request-bytes` (1572864).
    pub max_request_bytes: u64,
    /// `--max-concurrent-streams` per client connection (`u32::MAX`).
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-min-time` (5s).
    pub grpc_keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval` (2h; zero disables).
    pub grpc_keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout` (20s; zero disables).
    pub grpc_keepalive_timeout: Duration,
    /// `--enable-grpc-gateway` (true): the JSON `/v3/...` HTTP API.
    pub enable_grpc_gateway: bool,
    /// `--max-learners` (1).
    pub max_learners: u64,

    // ---- clustering ----
    /// `--initial-advertise-peer-urls` (`http://localhost:2380`).
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `--initial-cluster` (`name=url,...`); defaults to `<name>=<each advertise peer
    /// URL>`, and to empty when a discovery flag is set. See
    /// [`Config::initial_cluster_members`].
    pub initial_cluster: String,
    /// `--initial-cluster-state` (`new`).
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token` (`etcd-cluster`).
    pub initial_cluster_token: String,
    /// `--advertise-client-urls` (`http://localhost:2379`).
    pub advertise_client_urls: Vec<Url>,
    /// `--strict-reconfig-check` (true).
    pub strict_reconfig_check: bool,
    /// `--pre-vote` (true).
    pub pre_vote: bool,
    /// `--auto-compaction-mode` (`periodic`).
    pub auto_compaction_mode: AutoCompactionMode,
    /// `--auto-compaction-retention` as given (`0`); use [`Config::auto_compaction`].
    pub auto_compaction_retention: String,
    /// `--watch-progress-notify-interval` (10m).
    pub watch_progress_notify_interval: Duration,

    // ---- security ----
    /// Client-facing TLS (`--cert-file`, `--key-file`, `--trusted-ca-file`, ...).
    pub client_tls: TransportSecurity,
    /// Peer TLS (`--peer-*`).
    pub peer_tls: TransportSecurity,
    /// `--self-signed-cert-validity` in years (1).
    pub self_signed_cert_validity: u32,
    /// `--cipher-suites` (Go names; empty = library defaults).
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` (`TLS1.2`; `None` = library default).
    pub tls_min_version: Option<TlsVersion>,
    /// `--tls-max-version` (`None` = library default).
    pub tls_max_version: Option<TlsVersion>,

    // ---- auth ----
    /// `--auth-token` as given: `simple` or `jwt,pub-key=...,priv-key=...,sign-method=...`.
    pub auth_token: String,
    /// `--bcrypt-cost` (10).
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl` in seconds (300).
    pub auth_token_ttl: u64,

    // ---- monitoring ----
    /// `--enable-pprof` (false).
    pub enable_pprof: bool,
    /// `--metrics` (`basic`).
    pub metrics: MetricsLevel,

    // ---- logging ----
    /// `--logger` (`zap`, the only value etcd 3.5+ accepts).
    pub logger: String,
    /// `--log-level` (`info`).
    pub log_level: LogLevel,
    /// `--log-format` (`json`).
    pub log_format: LogFormat,
    /// `--log-outputs` (`default` = stderr; `stderr`, `stdout`, or file paths).
    pub log_outputs: Vec<String>,

    // ---- features and unsafe ----
    /// `--feature-gates` and the 3.5 gate flags.
    pub feature_gates: FeatureGates,
    /// `--force-new-cluster` (false).
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync` (false).
    pub unsafe_no_fsync: bool,
    /// `--socket-reuse-port` (false): SO_REUSEPORT on the TCP listeners.
    pub socket_reuse_port: bool,
    /// `--socket-reuse-address` (false): SO_REUSEADDR on the TCP listeners, set
    /// explicitly (Linux listeners here, as Go's, have it on in any case).
    pub socket_reuse_address: bool,
    /// `--memory-mlock` (alias `--experimental-memory-mlock`, false): the process's
    /// memory is locked in RAM.
    pub memory_mlock: bool,
    /// `--corrupt-check-time` (alias `--experimental-corrupt-check-time`, 0 = off): how
    /// often the leader compares its store's hash with the other members'.
    pub corrupt_check_time: Duration,
    /// `--warning-apply-duration` (alias `--experimental-warning-apply-duration`, 100ms):
    /// applies and read-only ranges slower than this are logged and counted.
    pub warning_apply_duration: Duration,
    /// `--warning-unary-request-duration` (alias
    /// `--experimental-warning-unary-request-duration`, 300ms): slower KV calls are logged.
    pub warning_unary_request_duration: Duration,

    /// `--config-file` / `ETCD_CONFIG_FILE`, if one was loaded.
    pub config_file: Option<PathBuf>,

    /// Where each explicitly set value came from, by canonical flag name.
    sources: BTreeMap<String, Setting>,
}

fn default_url(s: &str) -> Vec<Url> {
    Url::parse(s).map(|u| vec![u]).unwrap_or_default()
}

impl Default for Config {
    fn default() -> Self {
        let mut cfg = Config {
            name: "default".into(),
            data_dir: None,
            wal_dir: None,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1_000,
            initial_election_tick_advance: true,
            listen_peer_urls: default_url("http://localhost:2380"),
            listen_client_urls: default_url("http://localhost:2379"),
            listen_client_http_urls: Vec::new(),
            listen_metrics_urls: Vec::new(),
            quota_backend_bytes: 0,
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
            max_concurrent_streams: u32::MAX,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 3600),
            grpc_keepalive_timeout: Duration::from_secs(20),
            enable_grpc_gateway: true,
            max_learners: 1,
            initial_advertise_peer_urls: default_url("http://localhost:2380"),
            initial_cluster: String::new(),
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".into(),
            advertise_client_urls: default_url("http://localhost:2379"),
            strict_reconfig_check: true,
            pre_vote: true,
            auto_compaction_mode: AutoCompactionMode::Periodic,
            auto_compaction_retention: "0".into(),
            watch_progress_notify_interval: Duration::from_secs(600),
            client_tls: TransportSecurity::default(),
            peer_tls: TransportSecurity::default(),
            self_signed_cert_validity: 1,
            cipher_suites: Vec::new(),
            tls_min_version: Some(TlsVersion::Tls12),
            tls_max_version: None,
            auth_token: "simple".into(),
            bcrypt_cost: 10,
            auth_token_ttl: 300,
            enable_pprof: false,
            metrics: MetricsLevel::Basic,
            logger: "zap".into(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Json,
            log_outputs: vec!["default".into()],
            feature_gates: FeatureGates::default(),
            force_new_cluster: false,
            unsafe_no_fsync: false,
            socket_reuse_port: false,
            socket_reuse_address: false,
            memory_mlock: false,
            corrupt_check_time: Duration::ZERO,
            warning_apply_duration: Duration::from_millis(100),
            warning_unary_request_duration: Duration::from_millis(300),
            config_file: None,
            sources: BTreeMap::new(),
        };
        cfg.initial_cluster = cfg.default_initial_cluster();
        cfg
    }
}

/// A URL the way Go's `url.URL.String` prints etcd URLs: no trailing `/` for an empty
/// path (`http://10.0.0.1:2379`, not `http://10.0.0.1:2379/`). Use this wherever a URL
/// is shown to clients (member lists, `/version`, logs) or hashed into member IDs.
pub fn etcd_url_string(url: &Url) -> String {
    let s = url.as_str();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        s.strip_suffix('/').unwrap_or(s).to_string()
    } else {
        s.to_string()
    }
}

/// URLs joined with commas, each as [`etcd_url_string`].
pub fn join_urls(urls: &[Url]) -> String {
    urls.iter()
        .map(etcd_url_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses an `--initial-cluster` string (`name=url,name=url,...`; a name may repeat to
/// give a member several peer URLs) into members in first-appearance order.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<Url>)>, String> {
    let mut members: Vec<(String, Vec<Url>)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, raw) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not of the form name=url"))?;
        let url = values::parse_url(raw.trim())?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_string(), vec![url])),
        }
    }
    Ok(members)
}

/// Parses `--auto-compaction-retention` for a mode, as etcd does: periodic takes a Go
/// duration or a bare integer number of hours; revision takes an integer.
pub fn parse_auto_compaction(
    mode: AutoCompactionMode,
    retention: &str,
) -> Result<AutoCompaction, String> {
    let retention = retention.trim();
    let auto = match mode {
        AutoCompactionMode::Periodic => {
            if let Ok(hours) = retention.parse::<u64>() {
                AutoCompaction::Periodic(Duration::from_secs(hours.saturating_mul(3600)))
            } else {
                AutoCompaction::Periodic(parse_go_duration(retention).map_err(|e| {
                    format!("periodic retention must be a duration (e.g. 1h, 30m) or a number of hours: {e}")
                })?)
            }
        }
        AutoCompactionMode::Revision => AutoCompaction::Revision(
            retention
                .parse::<u64>()
                .map_err(|_| "revision retention must be a non-negative integer".to_string())?,
        ),
    };
    Ok(match auto {
        AutoCompaction::Periodic(d) if d.is_zero() => AutoCompaction::Disabled,
        AutoCompaction::Revision(0) => AutoCompaction::Disabled,
        other => other,
    })
}

impl Config {
    /// Parses the command line (`args` as from [`std::env::args_os`], program name
    /// first), the environment (`ETCD_*` entries; others are ignored) and the config
    /// file they point to, then validates the result. See the module documentation
    /// for precedence.
    pub fn load(
        args: impl IntoIterator<Item = std::ffi::OsString>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<LoadOutcome, ConfigError> {
        load::load(args, env)
    }

    /// The data directory: `--data-dir`, or `${name}.etcd` in the working directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// The dedicated WAL directory, if `--wal-dir` was given.
    pub fn wal_dir(&self) -> Option<&Path> {
        self.wal_dir.as_deref()
    }

    /// The backend quota in bytes: 2 GiB when `--quota-backend-bytes` is 0, `None` when
    /// it is negative (quota disabled, as in etcd).
    pub fn quota_bytes(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            0 => Some(DEFAULT_QUOTA_BYTES),
            n if n < 0 => None,
            n => u64::try_from(n).ok(),
        }
    }

    /// `--heartbeat-interval` as a duration (one raft tick).
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// `--election-timeout` as a duration.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms)
    }

    /// Raft election ticks: election timeout / heartbeat interval (etcd's
    /// `ElectionTicks`); the heartbeat is one tick.
    pub fn election_ticks(&self) -> usize {
        let ticks = self.election_timeout_ms / self.heartbeat_interval_ms.max(1);
        usize::try_from(ticks).unwrap_or(usize::MAX)
    }

    /// The auto-compaction policy. `Disabled` also if the retention is unparsable,
    /// which [`Config::load`] never lets through.
    pub fn auto_compaction(&self) -> AutoCompaction {
        parse_auto_compaction(self.auto_compaction_mode, &self.auto_compaction_retention)
            .unwrap_or(AutoCompaction::Disabled)
    }

    /// `--initial-cluster` parsed into `(name, peer URLs)` in order.
    pub fn initial_cluster_members(&self) -> Result<Vec<(String, Vec<Url>)>, ConfigError> {
        parse_initial_cluster(&self.initial_cluster).map_err(|reason| ConfigError::InvalidValue {
            origin: "flag --initial-cluster".into(),
            value: self.initial_cluster.clone(),
            reason,
        })
    }

    /// True for `--initial-cluster-state=new`.
    pub fn is_new_cluster(&self) -> bool {
        self.initial_cluster_state == ClusterState::New
    }

    /// The default `--initial-cluster`: this member's name with each advertised peer URL.
    pub fn default_initial_cluster(&self) -> String {
        let name = if self.name.is_empty() {
            "default"
        } else {
            &self.name
        };
        self.initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{name}={}", etcd_url_string(u)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every explicitly set value by canonical (etcd 3.6) flag name, with its source.
    /// Settings not listed have their default.
    pub fn sources(&self) -> &BTreeMap<String, Setting> {
        &self.sources
    }

    /// Where the setting with this canonical flag name came from.
    pub fn source_of(&self, flag: &str) -> Source {
        self.sources
            .get(flag)
            .map_or(Source::Default, |s| s.source.clone())
    }

    /// One line per explicitly set value, `name=value (source)`, for the startup log.
    pub fn summary(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|(k, s)| format!("{k}={} ({})", s.value, s.source))
            .collect()
    }

    pub(crate) fn record_source(&mut self, key: &str, setting: Setting) {
        self.sources.insert(key.to_string(), setting);
    }
}

/// The text `etcd --version` prints.
pub fn version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!(
        "etcd Version: {ETCD_VERSION}\nGit SHA: {}\nGo Version: {}\nGo OS/Arch: {}/{arch}\n",
        option_env!("ETCD_GIT_SHA").unwrap_or("Not provided"),
        option_env!("ETCD_RUSTC_VERSION").unwrap_or("rust"),
        std::env::consts::OS,
    )
}

/// The text `etcd --help` prints.
pub fn help_text() -> String {
    flags::help_text()
}
