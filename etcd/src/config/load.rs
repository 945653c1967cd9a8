//! Collects settings from the command line, the environment and the config file, applies
//! them in precedence order, then validates the result.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use url::{Host, Url};

use super::flags::{self, Action, FlagSpec, Kind};
use super::values::parse_bool;
use super::{
    etcd_url_string, help_text, parse_auto_compaction, version_text, Config, ConfigError,
    LoadOutcome, Setting, Source, TlsVersion, MAX_ELECTION_TIMEOUT_MS, MAX_QUOTA_BYTES,
};

/// One value for one flag from one source.
struct Entry {
    /// The name as used (possibly an alias).
    spec: &'static FlagSpec,
    /// For messages: `--flag`, `ETCD_FLAG`, or the file key (`table.key` when nested).
    name: String,
    value: String,
    source: Source,
}

impl Entry {
    fn origin(&self) -> String {
        match &self.source {
            Source::Flag(n) => format!("flag {n}"),
            Source::Env(v) => format!("environment variable {v}"),
            Source::File(p) => format!("key {:?} in config file {}", self.name, p.display()),
            Source::Default => format!("flag --{}", self.spec.name),
        }
    }

    fn invalid(&self, reason: String) -> ConfigError {
        ConfigError::InvalidValue {
            origin: self.origin(),
            value: self.value.clone(),
            reason,
        }
    }
}

fn origin_of(cfg: &Config, key: &str) -> String {
    match cfg.source_of(key) {
        Source::Flag(n) => format!("flag {n}"),
        Source::Env(v) => format!("environment variable {v}"),
        Source::File(p) => format!("key {key:?} in config file {}", p.display()),
        Source::Default => format!("flag --{key}"),
    }
}

fn push_unique(warnings: &mut Vec<String>, msg: String) {
    if !warnings.contains(&msg) {
        warnings.push(msg);
    }
}

enum Cmdline {
    Help,
    Entries(Vec<Entry>),
}

/// Go `flag` package semantics: `-x`/`--x`, `=value` or next word (not for bools),
/// parsing stops at `--`; any non-flag argument is an error in etcd.
fn parse_args(args: &[String]) -> Result<Cmdline, ConfigError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(next) = args.get(i) {
                return Err(ConfigError::UnexpectedArgument(next.clone()));
            }
            break;
        }
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            if i == 1 && (arg == "gateway" || arg == "grpc-proxy") {
                return Err(ConfigError::UnsupportedSubcommand(arg.clone()));
            }
            return Err(ConfigError::UnexpectedArgument(arg.clone()));
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::BadSyntax(arg.clone()));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Ok(Cmdline::Help);
        }
        let flag = format!("--{name}");
        let spec = flags::lookup(name)
            .filter(|s| !s.file_only)
            .ok_or_else(|| ConfigError::UnknownFlag(flag.clone()))?;
        let value = if spec.value_kind().is_boolish() {
            inline.unwrap_or("true").to_string()
        } else if let Some(v) = inline {
            v.to_string()
        } else if let Some(next) = args.get(i) {
            i += 1;
            next.clone()
        } else {
            return Err(ConfigError::MissingValue(flag));
        };
        out.push(Entry {
            spec,
            name: flag.clone(),
            value,
            source: Source::Flag(flag),
        });
    }
    Ok(Cmdline::Entries(out))
}

fn env_lookup(var: &str) -> Option<&'static FlagSpec> {
    flags::all()
        .iter()
        .find(|s| !s.file_only && s.env_name() == var)
}

/// Turns a TOML value into the string the flag parser takes.
fn toml_to_raw(kind: Kind, value: &toml::Value) -> Result<String, String> {
    use toml::Value;
    match (value, kind) {
        (Value::String(s), _) => Ok(s.clone()),
        (Value::Boolean(b), _) => Ok(b.to_string()),
        // etcd's YAML carries Go durations as integer nanoseconds.
        (Value::Integer(n), Kind::Duration) if *n >= 0 => Ok(format!("{n}ns")),
        (Value::Integer(n), _) => Ok(n.to_string()),
        (Value::Float(f), Kind::Str) => Ok(f.to_string()),
        (Value::Array(items), Kind::Urls | Kind::List) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    other => {
                        return Err(format!(
                            "list items must be strings, found {}",
                            other.type_str()
                        ))
                    }
                }
            }
            Ok(parts.join(","))
        }
        (other, _) => Err(format!("unexpected {} value", other.type_str())),
    }
}

fn read_file(path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    // etcd's own YAML files (`*.yml`, `*.yaml`) are read with a small YAML subset;
    // anything else is TOML, falling back to the YAML subset when it is not TOML but
    // reads as YAML (an etcd config under another name).
    let is_yaml = path.extension().is_some_and(|x| x == "yml" || x == "yaml");
    let table: toml::Table = if is_yaml {
        super::yaml::parse(&text)
            .map_err(|e| file_err(format!("unsupported or invalid YAML: {e}")))?
    } else {
        match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => match super::yaml::parse(&text) {
                Ok(t) if !t.is_empty() => t,
                _ => return Err(file_err(format!("not valid TOML: {e}"))),
            },
        }
    };
    let mut entries = Vec::new();
    let mut push =
        |spec: &'static FlagSpec, key: String, value: &toml::Value| -> Result<(), ConfigError> {
            let source = Source::File(path.to_path_buf());
            let raw = toml_to_raw(spec.value_kind(), value).map_err(|reason| {
                ConfigError::InvalidValue {
                    origin: format!("key {key:?} in config file {}", path.display()),
                    value: value.to_string(),
                    reason,
                }
            })?;
            entries.push(Entry {
                spec,
                name: key,
                value: raw,
                source,
            });
            Ok(())
        };
    let unknown = |key: String| ConfigError::UnknownFileKey {
        path: path.to_path_buf(),
        key,
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner)
                if key == "client-transport-security" || key == "peer-transport-security" =>
            {
                for (k, v) in inner {
                    let full = format!("{key}.{k}");
                    let spec = flags::transport_key(key, k)
                        .and_then(flags::lookup)
                        .ok_or_else(|| unknown(full.clone()))?;
                    push(spec, full, v)?;
                }
            }
            _ => {
                let spec = flags::lookup(key)
                    .filter(|s| !matches!(s.action, Action::ConfigFile | Action::Version))
                    .filter(|s| !s.name.contains('.'))
                    .ok_or_else(|| unknown(key.clone()))?;
                push(spec, key.clone(), value)?;
            }
        }
    }
    Ok(entries)
}

fn redact(key: &str, value: &str) -> String {
    if key.contains("password") {
        "<redacted>".into()
    } else {
        value.to_string()
    }
}

/// "flag --X is accepted but has no effect yet", with where it was set unless on the
/// command line.
fn no_effect_warning(e: &Entry) -> String {
    let mut msg = format!("flag --{} is accepted but has no effect yet", e.spec.name);
    if !matches!(e.source, Source::Flag(_)) {
        msg.push_str(&format!(" (set by {})", e.source));
    }
    msg
}

fn apply(cfg: &mut Config, e: &Entry, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let canon = e.spec.canonical();
    if let Some(msg) = e.spec.deprecated {
        push_unique(warnings, msg.to_string());
    } else if !std::ptr::eq(canon, e.spec) && !e.spec.file_only {
        push_unique(
            warnings,
            format!(
                "--{} is deprecated in v3.6 and will be decommissioned in v3.7. Use '--{}' instead.",
                e.spec.name, canon.name
            ),
        );
    }
    let setting = || Setting {
        value: redact(canon.name, &e.value),
        source: e.source.clone(),
    };
    match canon.action {
        Action::Set(f) => {
            f(cfg, &e.value).map_err(|reason| e.invalid(reason))?;
            if canon.no_effect {
                push_unique(warnings, no_effect_warning(e));
            }
            cfg.record_source(canon.name, setting());
        }
        Action::Ignore | Action::Alias(_) => {
            canon
                .kind
                .check(&e.value)
                .map_err(|reason| e.invalid(reason))?;
            push_unique(warnings, no_effect_warning(e));
            cfg.record_source(canon.name, setting());
        }
        Action::ConfigFile => cfg.record_source(canon.name, setting()),
        Action::Version => {}
    }
    Ok(())
}

pub(crate) fn load(
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadOutcome, ConfigError> {
    let args = args
        .into_iter()
        .skip(1)
        .map(|a| a.into_string().map_err(ConfigError::NotUtf8))
        .collect::<Result<Vec<_>, _>>()?;
    let flag_entries = match parse_args(&args)? {
        Cmdline::Help => return Ok(LoadOutcome::PrintAndExit(help_text())),
        Cmdline::Entries(e) => e,
    };

    // Type-check the command line before anything else (a bad value beats --version, as
    // in Go), and find --version / --config-file.
    let mut scratch = Config::default();
    let mut version = false;
    let mut config_file: Option<PathBuf> = None;
    for e in &flag_entries {
        match e.spec.canonical().action {
            Action::Version => version = parse_bool(&e.value).map_err(|r| e.invalid(r))?,
            Action::ConfigFile => {
                config_file = (!e.value.is_empty()).then(|| PathBuf::from(&e.value))
            }
            _ => apply(&mut scratch, e, &mut Vec::new())?,
        }
    }
    if version {
        return Ok(LoadOutcome::PrintAndExit(version_text()));
    }

    let mut warnings = Vec::new();
    let on_cmdline: BTreeSet<&str> = flag_entries
        .iter()
        .map(|e| e.spec.canonical().name)
        .collect();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("ETCD_"))
        .collect();
    env.sort();
    let mut env_entries = Vec::new();
    for (var, value) in env {
        match var.as_str() {
            "ETCD_VERSION" => {
                warnings
                    .push("cannot set special environment variable ETCD_VERSION; ignored".into());
                continue;
            }
            // Read by etcd itself on non-amd64/arm64 builds; nothing to do here.
            "ETCD_UNSUPPORTED_ARCH" => continue,
            _ => {}
        }
        let Some(spec) = env_lookup(&var) else {
            warnings.push(format!("unrecognized environment variable {var}; ignored"));
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let canon = spec.canonical();
        if on_cmdline.contains(canon.name) {
            warnings.push(format!(
                "environment variable {var} is shadowed by the command-line flag --{}; using the flag",
                canon.name
            ));
            continue;
        }
        if matches!(canon.action, Action::ConfigFile) {
            config_file = Some(PathBuf::from(&value));
        }
        env_entries.push(Entry {
            spec,
            name: var.clone(),
            value,
            source: Source::Env(var),
        });
    }

    let file_entries = match &config_file {
        Some(path) => read_file(path)?,
        None => Vec::new(),
    };

    let mut cfg = Config {
        config_file: config_file.clone(),
        ..Config::default()
    };
    for mut entries in [file_entries, env_entries, flag_entries] {
        // 3.5 spellings first, so the 3.6 name wins within one source.
        entries.sort_by_key(|e| !e.spec.applies_early());
        for e in &entries {
            apply(&mut cfg, e, &mut warnings)?;
        }
    }

    finish(&mut cfg, &mut warnings);
    validate(&cfg, &mut warnings)?;
    Ok(LoadOutcome::Run(cfg, warnings))
}

/// Values derived from others, as etcd derives them.
fn finish(cfg: &mut Config, warnings: &mut Vec<String>) {
    // etcd drops the default advertise URL when --listen-client-urls is given on the
    // command line or in the environment (not in a config file) without it.
    let listen_explicit = matches!(
        cfg.source_of("listen-client-urls"),
        Source::Flag(_) | Source::Env(_)
    );
    if listen_explicit && cfg.source_of("advertise-client-urls") == Source::Default {
        cfg.advertise_client_urls.clear();
    }
    if cfg.source_of("initial-cluster") == Source::Default {
        let discovery = [
            "discovery",
            "discovery-srv",
            "discovery-srv-name",
            "discovery-endpoints",
        ]
        .into_iter()
        .find(|k| cfg.sources().get(*k).is_some_and(|s| !s.value.is_empty()));
        if let Some(flag) = discovery {
            cfg.initial_cluster = String::new();
            warnings.push(format!(
                "cluster discovery (--{flag}) is not supported; --initial-cluster is empty, so this member can only restart from existing data"
            ));
        } else {
            cfg.initial_cluster = cfg.default_initial_cluster();
        }
    }
}

fn check_bind(urls: &[Url]) -> Result<(), ConfigError> {
    for u in urls {
        if matches!(u.scheme(), "unix" | "unixs") {
            continue;
        }
        match u.host() {
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => {}
            Some(Host::Domain("localhost")) => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "expected IP in URL for binding ({})",
                    etcd_url_string(u)
                )))
            }
        }
    }
    Ok(())
}

fn tls_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLS1.2",
        TlsVersion::Tls13 => "TLS1.3",
    }
}

/// etcd's `Config.Validate`, plus the TLS file checks etcd makes when it opens listeners.
fn validate(cfg: &Config, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    check_bind(&cfg.listen_peer_urls)?;
    check_bind(&cfg.listen_client_urls)?;
    check_bind(&cfg.listen_client_http_urls)?;
    check_bind(&cfg.listen_metrics_urls)?;

    let (hb, el) = (cfg.heartbeat_interval_ms, cfg.election_timeout_ms);
    if hb == 0 {
        return invalid(format!("--heartbeat-interval must be >0 (set to {hb}ms)"));
    }
    if el == 0 {
        return invalid(format!("--election-timeout must be >0 (set to {el}ms)"));
    }
    if hb.saturating_mul(5) > el {
        return invalid(format!(
            "--election-timeout[{el}ms] should be at least as 5 times as --heartbeat-interval[{hb}ms]"
        ));
    }
    if el > MAX_ELECTION_TIMEOUT_MS {
        return invalid(format!(
            "--election-timeout[{el}ms] is too long, and should be set less than {MAX_ELECTION_TIMEOUT_MS}ms"
        ));
    }
    if !cfg.listen_client_urls.is_empty() && cfg.advertise_client_urls.is_empty() {
        return invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        );
    }
    if cfg.initial_advertise_peer_urls.is_empty() {
        return invalid("--initial-advertise-peer-urls must not be empty".into());
    }

    parse_auto_compaction(cfg.auto_compaction_mode, &cfg.auto_compaction_retention).map_err(
        |reason| ConfigError::InvalidValue {
            origin: origin_of(cfg, "auto-compaction-retention"),
            value: cfg.auto_compaction_retention.clone(),
            reason,
        },
    )?;

    let gates = &cfg.feature_gates;
    for name in gates.on_without_effect() {
        warnings.push(format!(
            "feature gate {name} is accepted but has no effect yet"
        ));
    }
    if gates.lease_checkpoint_persist && !gates.lease_checkpoint {
        return invalid("enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint".into());
    }
    if gates.lease_checkpoint && !gates.lease_checkpoint_persist {
        warnings.push(
            "Detected that checkpointing is enabled without persistence. Consider enabling feature gate LeaseCheckpointPersist"
                .into(),
        );
    }

    if let (Some(min), Some(max)) = (cfg.tls_min_version, cfg.tls_max_version) {
        if min > max {
            return invalid(format!(
                "min version ({}) is greater than max version ({})",
                tls_name(min),
                tls_name(max)
            ));
        }
    }
    if cfg.tls_min_version == Some(TlsVersion::Tls13) && !cfg.cipher_suites.is_empty() {
        return invalid("cipher suites cannot be configured when only TLS1.3 is enabled".into());
    }

    let pairs = [
        (
            &cfg.client_tls.cert_file,
            &cfg.client_tls.key_file,
            "--cert-file",
            "--key-file",
        ),
        (
            &cfg.client_tls.client_cert_file,
            &cfg.client_tls.client_key_file,
            "--client-cert-file",
            "--client-key-file",
        ),
        (
            &cfg.peer_tls.cert_file,
            &cfg.peer_tls.key_file,
            "--peer-cert-file",
            "--peer-key-file",
        ),
        (
            &cfg.peer_tls.client_cert_file,
            &cfg.peer_tls.client_key_file,
            "--peer-client-cert-file",
            "--peer-client-key-file",
        ),
    ];
    for (cert, key, cert_flag, key_flag) in pairs {
        if cert.is_some() != key.is_some() {
            let (given, missing) = if cert.is_some() {
                (cert_flag, key_flag)
            } else {
                (key_flag, cert_flag)
            };
            return invalid(format!(
                "{given} is set but {missing} is not; both are required"
            ));
        }
    }

    let client_tls_ok = cfg.client_tls.has_cert() || cfg.client_tls.auto_tls;
    let client_side = cfg
        .listen_client_urls
        .iter()
        .chain(&cfg.listen_client_http_urls)
        .map(|u| ("client", u));
    let metrics_side = cfg.listen_metrics_urls.iter().map(|u| ("metrics", u));
    for (what, u) in client_side.chain(metrics_side) {
        if matches!(u.scheme(), "https" | "unixs") && !client_tls_ok {
            return invalid(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for {what} url {} with HTTPS scheme",
                etcd_url_string(u)
            ));
        }
    }
    let peer_tls_ok = cfg.peer_tls.has_cert() || cfg.peer_tls.auto_tls;
    for u in &cfg.listen_peer_urls {
        if matches!(u.scheme(), "https" | "unixs") && !peer_tls_ok {
            return invalid(format!(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {} with HTTPS scheme",
                etcd_url_string(u)
            ));
        }
    }

    if cfg.log_outputs.is_empty() {
        return invalid("--log-outputs must name at least one output".into());
    }

    if let Some(q) = cfg.quota_bytes() {
        if q > MAX_QUOTA_BYTES {
            warnings.push(format!(
                "quota-backend-bytes {q} exceeds the maximum recommended value {MAX_QUOTA_BYTES}"
            ));
        }
    } else {
        warnings.push("disabled backend quota (--quota-backend-bytes is negative)".into());
    }
    if cfg.name == "default" {
        warnings.push(
            "it isn't recommended to use default name, please set a value for --name. \
             Note that etcd might run into issue when multiple members have the same default name"
                .into(),
        );
    }
    Ok(())
}
