use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<LoadOutcome, ConfigError> {
    let argv = std::iter::once("etcd")
        .chain(args.iter().copied())
        .map(OsString::from);
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(argv, env)
}

/// `warnings` says that `--flag`, set on the command line, has no effect yet.
fn assert_no_effect_warning(warnings: &[String], flag: &str) {
    let want = format!("flag --{flag} is accepted but has no effect yet");
    assert!(warnings.contains(&want), "missing {want:?} in {warnings:?}");
}

fn load(args: &[&str], env: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
    match run(args, env)? {
        LoadOutcome::Run(cfg, warnings) => Ok((cfg, warnings)),
        LoadOutcome::PrintAndExit(text) => panic!("unexpected print-and-exit: {text}"),
    }
}

fn cfg(args: &[&str]) -> Config {
    load(args, &[]).unwrap().0
}

fn err(args: &[&str], env: &[(&str, &str)]) -> String {
    load(args, env).unwrap_err().to_string()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn urls(v: &[Url]) -> Vec<String> {
    v.iter().map(etcd_url_string).collect()
}

#[test]
fn defaults() {
    let (c, warnings) = load(&[], &[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir(), PathBuf::from("default.etcd"));
    assert_eq!(c.wal_dir(), None);
    assert_eq!(c.snapshot_count, 10_000);
    assert_eq!(c.snapshot_catchup_entries, 5_000);
    assert_eq!(c.heartbeat_interval(), Duration::from_millis(100));
    assert_eq!(c.election_timeout(), Duration::from_millis(1000));
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(urls(&c.listen_peer_urls), ["http://localhost:2380"]);
    assert_eq!(urls(&c.listen_client_urls), ["http://localhost:2379"]);
    assert_eq!(urls(&c.advertise_client_urls), ["http://localhost:2379"]);
    assert_eq!(
        urls(&c.initial_advertise_peer_urls),
        ["http://localhost:2380"]
    );
    assert!(c.listen_client_http_urls.is_empty() && c.listen_metrics_urls.is_empty());
    assert_eq!(c.initial_cluster, "default=http://localhost:2380");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.quota_bytes(), Some(2 * 1024 * 1024 * 1024));
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.max_concurrent_streams, u32::MAX);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(5));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(7200));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(c.auto_compaction(), AutoCompaction::Disabled);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert_eq!(c.tls_min_version, Some(TlsVersion::Tls12));
    assert_eq!(c.tls_max_version, None);
    assert!(c.strict_reconfig_check && c.pre_vote && c.enable_grpc_gateway);
    assert!(!c.client_tls.client_cert_auth && !c.force_new_cluster && !c.unsafe_no_fsync);
    assert_eq!(
        (c.logger.as_str(), c.log_level, c.log_format),
        ("zap", LogLevel::Info, LogFormat::Json)
    );
    assert_eq!(c.log_outputs, ["default"]);
    assert_eq!(c.metrics, MetricsLevel::Basic);
    assert_eq!(
        (c.auth_token.as_str(), c.bcrypt_cost, c.auth_token_ttl),
        ("simple", 10, 300)
    );
    assert_eq!(c.feature_gates, FeatureGates::default());
    assert!(c.sources().is_empty());
    assert_eq!(c.source_of("name"), Source::Default);
    // Only etcd's "default name" warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("default name"));
}

#[test]
fn flags_alone() {
    let c = cfg(&[
        "--name",
        "infra0",
        "--data-dir=/var/lib/etcd",
        "--snapshot-count",
        "5000",
        "--heartbeat-interval=250",
        "--election-timeout=2500",
        "--listen-client-urls=https://10.0.0.1:2379,https://127.0.0.1:2379",
        "--advertise-client-urls=https://10.0.0.1:2379",
        "--listen-peer-urls=https://10.0.0.1:2380",
        "--initial-advertise-peer-urls=https://10.0.0.1:2380",
        "--initial-cluster=infra0=https://10.0.0.1:2380,infra1=https://10.0.0.2:2380",
        "--initial-cluster-state=existing",
        "--cert-file=/pki/server.crt",
        "--key-file=/pki/server.key",
        "--trusted-ca-file=/pki/ca.crt",
        "--client-cert-auth",
        "--peer-cert-file=/pki/peer.crt",
        "--peer-key-file=/pki/peer.key",
        "--peer-client-cert-auth=true",
        "--peer-cert-allowed-cn=etcd-peer,other",
        "--quota-backend-bytes=8589934592",
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--grpc-keepalive-interval=1m30s",
        "--log-level=debug",
        "--log-format=console",
        "--log-outputs=stdout,/tmp/etcd.log",
        "--metrics=extensive",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--feature-gates=InitialCorruptCheck=true",
    ]);
    assert_eq!(c.name, "infra0");
    assert_eq!(c.data_dir(), PathBuf::from("/var/lib/etcd"));
    assert_eq!(c.snapshot_count, 5000);
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(
        urls(&c.listen_client_urls),
        ["https://10.0.0.1:2379", "https://127.0.0.1:2379"]
    );
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert!(!c.is_new_cluster());
    let members = c.initial_cluster_members().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1].0, "infra1");
    assert_eq!(
        c.client_tls.cert_file.as_deref(),
        Some(std::path::Path::new("/pki/server.crt"))
    );
    assert!(c.client_tls.client_cert_auth && c.peer_tls.client_cert_auth);
    assert_eq!(c.peer_tls.allowed_cn, ["etcd-peer", "other"]);
    assert_eq!(c.quota_bytes(), Some(8 * 1024 * 1024 * 1024));
    assert_eq!(c.auto_compaction(), AutoCompaction::Revision(1000));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(90));
    assert_eq!(
        (c.log_level, c.log_format),
        (LogLevel::Debug, LogFormat::Console)
    );
    assert_eq!(c.log_outputs, ["/tmp/etcd.log", "stdout"]);
    assert_eq!(c.metrics, MetricsLevel::Extensive);
    assert!(c.feature_gates.initial_corrupt_check);
    assert_eq!(c.source_of("name"), Source::Flag("--name".into()));
    assert_eq!(
        c.source_of("client-cert-auth"),
        Source::Flag("--client-cert-auth".into())
    );
}

#[test]
fn env_alone() {
    let (c, warnings) = load(
        &[],
        &[
            ("ETCD_NAME", "envnode"),
            ("ETCD_DATA_DIR", "/data"),
            ("ETCD_INITIAL_CLUSTER_TOKEN", "tok"),
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:2379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://10.1.1.1:2379"),
            ("ETCD_WAL_DIR", ""),
            ("ETCD_BOGUS", "1"),
            ("ETCDCTL_API", "3"),
            ("HOME", "/root"),
            ("ETCD_VERSION", "3.4"),
        ],
    )
    .unwrap();
    assert_eq!(c.name, "envnode");
    assert_eq!(c.data_dir(), PathBuf::from("/data"));
    assert_eq!(c.initial_cluster_token, "tok");
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(urls(&c.advertise_client_urls), ["http://10.1.1.1:2379"]);
    assert_eq!(c.wal_dir, None, "empty variables are ignored");
    assert_eq!(c.initial_cluster, "envnode=http://localhost:2380");
    assert_eq!(c.source_of("name"), Source::Env("ETCD_NAME".into()));
    assert!(
        warnings.iter().any(|w| w.contains("ETCD_BOGUS")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("ETCD_VERSION")),
        "{warnings:?}"
    );
    assert!(!warnings
        .iter()
        .any(|w| w.contains("ETCDCTL_API") || w.contains("HOME")));
    assert!(err(&[], &[("ETCD_SNAPSHOT_COUNT", "lots")])
        .contains("invalid value \"lots\" for environment variable ETCD_SNAPSHOT_COUNT"));
}

#[test]
fn file_alone() {
    let f = toml_file(
        r#"
name = "filenode"
data-dir = "/srv/etcd"
snapshot-count = 5000
heartbeat-interval = 200
election-timeout = 2000
listen-client-urls = "http://10.0.0.5:2379,http://127.0.0.1:2379"
advertise-client-urls = ["http://10.0.0.5:2379"]
initial-cluster-state = "existing"
strict-reconfig-check = false
log-outputs = ["stderr"]
cipher-suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
auto-compaction-retention = "30m"
watch-progress-notify-interval = 5000000000
grpc-keepalive-timeout = "30s"
quota-backend-bytes = 4294967296
client-cert-auth = true
"#,
    );
    let path = f.path().to_str().unwrap();
    let (c, _) = load(&["--config-file", path], &[]).unwrap();
    assert_eq!(c.name, "filenode");
    assert_eq!(c.data_dir(), PathBuf::from("/srv/etcd"));
    assert_eq!(c.snapshot_count, 5000);
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(
        urls(&c.listen_client_urls),
        ["http://10.0.0.5:2379", "http://127.0.0.1:2379"]
    );
    assert_eq!(urls(&c.advertise_client_urls), ["http://10.0.0.5:2379"]);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert!(!c.strict_reconfig_check);
    assert_eq!(c.log_outputs, ["stderr"]);
    assert_eq!(c.cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]);
    assert_eq!(
        c.auto_compaction(),
        AutoCompaction::Periodic(Duration::from_secs(1800))
    );
    assert_eq!(
        c.watch_progress_notify_interval,
        Duration::from_secs(5),
        "integer = nanoseconds"
    );
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(30));
    assert_eq!(c.quota_bytes(), Some(4 << 30));
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.config_file.as_deref(), Some(f.path()));
    assert_eq!(c.source_of("name"), Source::File(f.path().to_path_buf()));
    assert_eq!(
        c.source_of("config-file"),
        Source::Flag("--config-file".into())
    );

    // ETCD_CONFIG_FILE works too.
    let (c, _) = load(&[], &[("ETCD_CONFIG_FILE", path)]).unwrap();
    assert_eq!(c.name, "filenode");
    assert_eq!(
        c.source_of("config-file"),
        Source::Env("ETCD_CONFIG_FILE".into())
    );
}

#[test]
fn precedence_flag_over_env_over_file() {
    let f = toml_file("name = \"from-file\"\nsnapshot-count = 1\nmax-txn-ops = 7\n");
    let path = f.path().to_str().unwrap();
    let env = [("ETCD_NAME", "from-env"), ("ETCD_SNAPSHOT_COUNT", "2")];
    let (c, warnings) = load(&["--config-file", path, "--name=from-flag"], &env).unwrap();
    assert_eq!(c.name, "from-flag");
    assert_eq!(c.snapshot_count, 2);
    assert_eq!(c.max_txn_ops, 7);
    assert_eq!(c.source_of("name"), Source::Flag("--name".into()));
    assert_eq!(
        c.source_of("snapshot-count"),
        Source::Env("ETCD_SNAPSHOT_COUNT".into())
    );
    assert_eq!(
        c.source_of("max-txn-ops"),
        Source::File(f.path().to_path_buf())
    );
    assert!(
        warnings.iter().any(|w| w.contains("ETCD_NAME is shadowed")),
        "{warnings:?}"
    );
    // A shadowed variable's value is not even parsed.
    let (c, _) = load(&["--snapshot-count=3"], &[("ETCD_SNAPSHOT_COUNT", "bad")]).unwrap();
    assert_eq!(c.snapshot_count, 3);
    let summary = c.summary();
    assert!(
        summary.contains(&"snapshot-count=3 (flag --snapshot-count)".to_string()),
        "{summary:?}"
    );
}

#[test]
fn single_dash_and_equals_forms() {
    let c = cfg(&[
        "-name",
        "a",
        "-data-dir=/d",
        "--snapshot-count",
        "7",
        "--max-txn-ops=9",
        "-initial-cluster-token",
        "--looks-like-a-flag",
    ]);
    assert_eq!(c.name, "a");
    assert_eq!(c.data_dir(), PathBuf::from("/d"));
    assert_eq!((c.snapshot_count, c.max_txn_ops), (7, 9));
    // Go takes the next word as the value even if it starts with a dash.
    assert_eq!(c.initial_cluster_token, "--looks-like-a-flag");
    assert_eq!(cfg(&["--wal-dir="]).wal_dir, None);
    assert!(matches!(load(&["--name"], &[]), Err(ConfigError::MissingValue(f)) if f == "--name"));
    assert!(matches!(
        load(&["---name=x"], &[]),
        Err(ConfigError::BadSyntax(_))
    ));
}

#[test]
fn bool_forms() {
    assert!(cfg(&["--client-cert-auth"]).client_tls.client_cert_auth);
    assert!(cfg(&["-client-cert-auth=true"]).client_tls.client_cert_auth);
    assert!(cfg(&["--client-cert-auth=1"]).client_tls.client_cert_auth);
    assert!(
        !cfg(&["--client-cert-auth=false"])
            .client_tls
            .client_cert_auth
    );
    assert!(!cfg(&["--pre-vote=false"]).pre_vote);
    assert!(!cfg(&["--strict-reconfig-check=F"]).strict_reconfig_check);
    // A bool never consumes the next word.
    let e = load(&["--client-cert-auth", "true"], &[]).unwrap_err();
    assert!(
        matches!(e, ConfigError::UnexpectedArgument(ref a) if a == "true"),
        "{e}"
    );
    assert!(err(&["--client-cert-auth=yes"], &[]).contains("for flag --client-cert-auth"));
    // The next flag after a bool is still a flag.
    let c = cfg(&["--force-new-cluster", "--name", "x"]);
    assert!(c.force_new_cluster);
    assert_eq!(c.name, "x");
}

#[test]
fn unknown_flag_is_named() {
    let e = load(&["--snapshot-cout=5"], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "flag provided but not defined: --snapshot-cout"
    );
    assert_eq!(e.exit_code(), 2);
    assert!(err(&["-nmae", "x"], &[]).contains("--nmae"));
    // File-only keys are not flags.
    assert!(err(&["--client-transport-security.allowed-cn=x"], &[]).contains("not defined"));
    assert!(matches!(
        load(&["stray"], &[]),
        Err(ConfigError::UnexpectedArgument(_))
    ));
    assert!(matches!(
        load(&["gateway"], &[]),
        Err(ConfigError::UnsupportedSubcommand(_))
    ));
    assert!(matches!(
        load(&["--", "x"], &[]),
        Err(ConfigError::UnexpectedArgument(_))
    ));
}

#[test]
fn bad_values_name_the_flag() {
    let e = err(&["--snapshot-count", "abc"], &[]);
    assert!(
        e.starts_with("invalid value \"abc\" for flag --snapshot-count: "),
        "{e}"
    );
    let cases: &[(&[&str], &str)] = &[
        (&["--heartbeat-interval=-1"], "--heartbeat-interval"),
        (
            &["--grpc-keepalive-interval=5"],
            "--grpc-keepalive-interval",
        ),
        (
            &["--listen-client-urls=localhost:2379"],
            "--listen-client-urls",
        ),
        (
            &["--listen-peer-urls=http://10.0.0.1"],
            "--listen-peer-urls",
        ),
        (&["--initial-cluster-state=old"], "--initial-cluster-state"),
        (&["--auto-compaction-mode=daily"], "--auto-compaction-mode"),
        (&["--log-level=loud"], "--log-level"),
        (&["--log-format=xml"], "--log-format"),
        (&["--logger=capnslog"], "--logger"),
        (&["--tls-min-version=TLS1.1"], "--tls-min-version"),
        (&["--feature-gates=NoSuchGate=true"], "--feature-gates"),
        (
            &["--max-concurrent-streams=4294967296"],
            "--max-concurrent-streams",
        ),
        (&["--bcrypt-cost=3"], "--bcrypt-cost"),
        (&["--auth-token=oauth"], "--auth-token"),
        (&["--auth-token=jwt,sign-method=RS256"], "--auth-token"),
        (&["--initial-cluster=nonsense"], "--initial-cluster"),
        (
            &["--auto-compaction-retention=abc"],
            "--auto-compaction-retention",
        ),
        (
            &[
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1h",
            ],
            "--auto-compaction-retention",
        ),
        (&["--max-wals=many"], "--max-wals"),
        (
            &["--experimental-corrupt-check-time=soon"],
            "--experimental-corrupt-check-time",
        ),
    ];
    for (args, flag) in cases {
        let e = load(args, &[]).unwrap_err();
        assert!(
            e.to_string().contains(&format!("for flag {flag}:")),
            "{args:?}: {e}"
        );
        assert_eq!(e.exit_code(), 1);
    }
    // A bad value beats --version, as in Go.
    assert!(run(&["--version", "--snapshot-count=x"], &[]).is_err());
}

#[test]
fn validation() {
    assert_eq!(
        err(&["--election-timeout=400"], &[]),
        "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    assert_eq!(
        err(&["--election-timeout=60000"], &[]),
        "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
    );
    assert!(err(&["--heartbeat-interval=0"], &[]).contains("must be >0"));
    assert_eq!(
        err(&["--listen-client-urls=http://127.0.0.1:2379"], &[]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert!(err(&["--listen-peer-urls=http://example.com:2380"], &[])
        .contains("expected IP in URL for binding"));
    assert!(err(&["--cert-file=/a.crt"], &[]).contains("--key-file"));
    assert!(err(&["--peer-key-file=/a.key"], &[]).contains("--peer-cert-file"));
    assert!(err(
        &[
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379"
        ],
        &[]
    )
    .contains("TLS key/cert (--cert-file, --key-file) must be provided"));
    assert!(
        cfg(&[
            "--auto-tls",
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379"
        ])
        .client_tls
        .auto_tls
    );
    assert!(err(&["--listen-peer-urls=https://127.0.0.1:2380"], &[]).contains("--peer-cert-file"));
    assert!(err(
        &["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"],
        &[]
    )
    .contains("greater than max"));
    assert!(err(&["--tls-min-version=TLS1.3", "--cipher-suites=X"], &[]).contains("TLS1.3"));
    assert!(
        err(&["--feature-gates=LeaseCheckpointPersist=true"], &[]).contains("requires enabling")
    );
    assert!(err(&["--log-outputs="], &[]).contains("--log-outputs"));
    // unix sockets and localhost bind fine.
    cfg(&[
        "--listen-client-urls=unix://localhost:2379,http://localhost:2379",
        "--advertise-client-urls=http://a:2379",
    ]);
}

#[test]
fn ignored_flags_warn() {
    let (c, warnings) = load(
        &[
            "--enable-v2",
            "--experimental-enable-v2v3=/v2",
            "--proxy=off",
            "--max-wals",
            "10",
            "--backend-batch-limit=100",
            "--cors=*",
            "--enable-log-rotation=false",
            "--experimental-compaction-batch-limit=100",
            "--v2-deprecation=write-only",
            "--snapshot",
            "-v",
            "--name=x",
        ],
        &[("ETCD_HOST_WHITELIST", "*")],
    )
    .unwrap();
    assert_eq!(c.name, "x", "parsing continues after ignored flags");
    for flag in [
        "enable-v2",
        "experimental-enable-v2v3",
        "proxy",
        "max-wals",
        "backend-batch-limit",
        "cors",
        "enable-log-rotation",
        "experimental-compaction-batch-limit",
        "snapshot",
        "v",
    ] {
        assert_no_effect_warning(&warnings, flag);
    }
    assert!(warnings
        .iter()
        .any(|w| w.starts_with("flag --host-whitelist is accepted")
            && w.contains("ETCD_HOST_WHITELIST")));
    assert!(warnings
        .iter()
        .any(|w| w.contains("--v2-deprecation is deprecated")));
    // Value-taking ignored flags consumed their value ("10" above); bool ones did not.
    assert!(matches!(
        load(&["--enable-v2", "true"], &[]),
        Err(ConfigError::UnexpectedArgument(_))
    ));
    // Ignored flags still get their values type-checked.
    assert!(err(&["--enable-v2=maybe"], &[]).contains("--enable-v2"));
}

#[test]
fn socket_options_and_mlock_are_flags_with_effect() {
    let (c, _) = load(&[], &[]).unwrap();
    assert!(!c.socket_reuse_port && !c.socket_reuse_address && !c.memory_mlock);
    let (c, warnings) = load(
        &["--socket-reuse-port", "--experimental-memory-mlock=true"],
        &[("ETCD_SOCKET_REUSE_ADDRESS", "true")],
    )
    .unwrap();
    assert!(c.socket_reuse_port && c.socket_reuse_address && c.memory_mlock);
    assert!(
        !warnings.iter().any(|w| w.contains("no effect")),
        "{warnings:?}"
    );
    let (c, _) = load(&["--memory-mlock"], &[]).unwrap();
    assert!(c.memory_mlock);
    assert!(err(&["--socket-reuse-port=maybe"], &[]).contains("--socket-reuse-port"));
}

#[test]
fn renamed_experimental_flags_map() {
    let (c, warnings) = load(
        &[
            "--experimental-watch-progress-notify-interval=5s",
            "--experimental-snapshot-catchup-entries=100",
            "--experimental-peer-skip-client-san-verification",
            "--experimental-max-learners=3",
            "--experimental-initial-corrupt-check=true",
            "--experimental-compact-hash-check-enabled",
            "--experimental-enable-lease-checkpoint",
            "--experimental-enable-lease-checkpoint-persist",
            "--experimental-txn-mode-write-with-shared-buffer=false",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert_eq!(c.snapshot_catchup_entries, 100);
    assert!(c.peer_tls.skip_client_san_verification);
    assert_eq!(c.max_learners, 3);
    let g = &c.feature_gates;
    assert!(
        g.initial_corrupt_check
            && g.compact_hash_check
            && g.lease_checkpoint
            && g.lease_checkpoint_persist
    );
    assert!(!g.txn_mode_write_with_shared_buffer);
    assert_eq!(
        c.source_of("watch-progress-notify-interval"),
        Source::Flag("--experimental-watch-progress-notify-interval".into())
    );
    assert!(warnings.iter().any(|w| w
        == "--experimental-watch-progress-notify-interval is deprecated in v3.6 and will be decommissioned in v3.7. Use '--watch-progress-notify-interval' instead."));
    assert!(warnings
        .iter()
        .any(|w| w.contains("--feature-gates=InitialCorruptCheck=true")));

    // Both spellings in one place: the 3.6 name wins whatever the order.
    let c = cfg(&[
        "--watch-progress-notify-interval=1m",
        "--experimental-watch-progress-notify-interval=5s",
    ]);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(60));
    let c = cfg(&[
        "--feature-gates=InitialCorruptCheck=false",
        "--experimental-initial-corrupt-check",
    ]);
    assert!(!c.feature_gates.initial_corrupt_check);
    // Env spelling of an alias.
    let (c, _) = load(&[], &[("ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", "42")]).unwrap();
    assert_eq!(c.snapshot_catchup_entries, 42);
}

#[test]
fn toml_unknown_key_and_bad_values() {
    let f = toml_file("name = \"x\"\nsnapshot-cout = 5\n");
    let e = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(
        matches!(e, ConfigError::UnknownFileKey { ref key, .. } if key == "snapshot-cout"),
        "{e}"
    );
    assert!(e.to_string().contains("snapshot-cout"));

    let f = toml_file("[client-transport-security]\ncert-fil = \"/x\"\n");
    let e = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(
        e.to_string().contains("client-transport-security.cert-fil"),
        "{e}"
    );

    let f = toml_file("snapshot-count = \"many\"\n");
    let e = load(&["--config-file", f.path().to_str().unwrap()], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("key \"snapshot-count\" in config file") && e.contains("many"),
        "{e}"
    );

    let f = toml_file("version = true\n");
    assert!(load(&["--config-file", f.path().to_str().unwrap()], &[]).is_err());

    let f = toml_file("name = = x\n");
    assert!(matches!(
        load(&["--config-file", f.path().to_str().unwrap()], &[]),
        Err(ConfigError::File { .. })
    ));
    // Not TOML but etcd-style YAML: read as YAML.
    let f = toml_file("name: yaml\n");
    let (c, _) = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(c.name, "yaml");
    assert!(matches!(
        load(&["--config-file=/nonexistent/etcd.toml"], &[]),
        Err(ConfigError::File { .. })
    ));
}

#[test]
fn nested_transport_security() {
    let f = toml_file(
        r#"
name = "tls"
listen-client-urls = "https://10.0.0.1:2379"
advertise-client-urls = "https://10.0.0.1:2379"
listen-peer-urls = "https://10.0.0.1:2380"
initial-advertise-peer-urls = "https://10.0.0.1:2380"
experimental-snapshot-catch-up-entries = 77

[client-transport-security]
cert-file = "/pki/server.crt"
key-file = "/pki/server.key"
client-cert-auth = true
trusted-ca-file = "/pki/ca.crt"
auto-tls = false
allowed-cn = ["kube-apiserver"]

[peer-transport-security]
cert-file = "/pki/peer.crt"
key-file = "/pki/peer.key"
client-cert-auth = true
trusted-ca-file = "/pki/ca.crt"
allowed-cn = "etcd-peer"
allowed-hostname = ["a.example", "b.example"]
skip-client-san-verification = true
"#,
    );
    let (c, _) = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(
        c.client_tls.cert_file,
        Some(PathBuf::from("/pki/server.crt"))
    );
    assert_eq!(
        c.client_tls.key_file,
        Some(PathBuf::from("/pki/server.key"))
    );
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(
        c.client_tls.trusted_ca_file,
        Some(PathBuf::from("/pki/ca.crt"))
    );
    assert_eq!(c.client_tls.allowed_cn, ["kube-apiserver"]);
    assert_eq!(c.peer_tls.cert_file, Some(PathBuf::from("/pki/peer.crt")));
    assert!(c.peer_tls.client_cert_auth && c.peer_tls.skip_client_san_verification);
    assert_eq!(c.peer_tls.allowed_cn, ["etcd-peer"]);
    assert_eq!(c.peer_tls.allowed_hostname, ["a.example", "b.example"]);
    assert_eq!(c.snapshot_catchup_entries, 77);
    assert_eq!(c.initial_cluster, "tls=https://10.0.0.1:2380");
    // A flag still overrides a nested file value.
    let (c, _) = load(
        &[
            "--config-file",
            f.path().to_str().unwrap(),
            "--cert-file=/other.crt",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("/other.crt")));
}

#[test]
fn derived_values() {
    // --initial-cluster follows --name and the advertised peer URLs.
    let c = cfg(&[
        "--name=n1",
        "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.0.2:2380",
    ]);
    assert_eq!(
        c.initial_cluster,
        "n1=http://10.0.0.1:2380,n1=http://10.0.0.2:2380"
    );
    assert_eq!(c.data_dir(), PathBuf::from("n1.etcd"));
    assert_eq!(c.source_of("initial-cluster"), Source::Default);
    // Discovery clears the default initial cluster, with a warning.
    let (c, warnings) = load(&["--discovery-srv=example.com"], &[]).unwrap();
    assert_eq!(c.initial_cluster, "");
    assert!(warnings.iter().any(|w| w.contains("discovery")));
    // --listen-client-urls in a file keeps the default advertise URL (etcd does too).
    let f = toml_file("listen-client-urls = \"http://127.0.0.1:2379\"\n");
    let (c, _) = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(urls(&c.advertise_client_urls), ["http://localhost:2379"]);
    // Quota.
    assert_eq!(cfg(&["--quota-backend-bytes=-1"]).quota_bytes(), None);
    assert_eq!(
        cfg(&["--quota-backend-bytes=1024"]).quota_bytes(),
        Some(1024)
    );
}

#[test]
fn auto_compaction_retention() {
    use AutoCompactionMode::*;
    assert_eq!(
        parse_auto_compaction(Periodic, "0"),
        Ok(AutoCompaction::Disabled)
    );
    assert_eq!(
        parse_auto_compaction(Periodic, "1"),
        Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
    );
    assert_eq!(
        parse_auto_compaction(Periodic, "1h"),
        Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
    );
    assert_eq!(
        parse_auto_compaction(Periodic, "30m"),
        Ok(AutoCompaction::Periodic(Duration::from_secs(1800)))
    );
    assert_eq!(
        parse_auto_compaction(Periodic, "0s"),
        Ok(AutoCompaction::Disabled)
    );
    assert!(parse_auto_compaction(Periodic, "1.5").is_err());
    assert_eq!(
        parse_auto_compaction(Revision, "1000"),
        Ok(AutoCompaction::Revision(1000))
    );
    assert_eq!(
        parse_auto_compaction(Revision, "0"),
        Ok(AutoCompaction::Disabled)
    );
    assert!(parse_auto_compaction(Revision, "1h").is_err());
    assert_eq!(
        cfg(&["--auto-compaction-retention=2"]).auto_compaction(),
        AutoCompaction::Periodic(Duration::from_secs(7200))
    );
}

#[test]
fn feature_gates() {
    let mut g = FeatureGates::default();
    g.apply("CompactHashCheck=true, StopGRPCServiceOnDefrag=1")
        .unwrap();
    assert!(g.compact_hash_check && g.stop_grpc_service_on_defrag);
    g.apply("AllAlpha=true").unwrap();
    assert!(g.set_member_local_addr && g.lease_checkpoint);
    g.apply("AllBeta=false").unwrap();
    assert!(!g.txn_mode_write_with_shared_buffer);
    assert!(g
        .apply("Nope=true")
        .unwrap_err()
        .contains("unrecognized feature gate: Nope"));
    assert!(g.apply("CompactHashCheck").is_err());
    assert!(g.apply("CompactHashCheck=maybe").is_err());
}

#[test]
fn feature_gates_without_effect_are_warned_about_one_by_one() {
    let (c, warnings) = load(&["--feature-gates=InitialCorruptCheck=true"], &[]).unwrap();
    assert!(c.feature_gates.initial_corrupt_check);
    assert!(
        !warnings.iter().any(|w| w.contains("no effect")),
        "{warnings:?}"
    );
    let (_, warnings) = load(
        &["--feature-gates=CompactHashCheck=true,InitialCorruptCheck=true"],
        &[],
    )
    .unwrap();
    assert!(
        warnings
            .contains(&"feature gate CompactHashCheck is accepted but has no effect yet".into()),
        "{warnings:?}"
    );
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("InitialCorruptCheck is accepted")),
        "{warnings:?}"
    );
    let (_, warnings) = load(&["--experimental-compact-hash-check-enabled=true"], &[]).unwrap();
    assert!(
        warnings
            .contains(&"feature gate CompactHashCheck is accepted but has no effect yet".into()),
        "{warnings:?}"
    );
}

#[test]
fn help_and_version() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["-help"],
        &["--name=x", "--help"],
    ] {
        match run(args, &[]).unwrap() {
            LoadOutcome::PrintAndExit(text) => {
                assert!(
                    text.contains("--initial-cluster-token 'etcd-cluster'"),
                    "{text}"
                );
                assert!(text.contains("--snapshot-count '10000'"));
                assert!(
                    !text.contains("experimental-watch-progress"),
                    "aliases are hidden"
                );
            }
            LoadOutcome::Run(..) => panic!("{args:?} should print help"),
        }
    }
    match run(&["--version"], &[]).unwrap() {
        LoadOutcome::PrintAndExit(text) => {
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "etcd Version: 3.6.0");
            assert!(lines[1].starts_with("Git SHA: "));
            assert!(lines[2].starts_with("Go Version: "));
            assert!(lines[3].starts_with("Go OS/Arch: linux/"));
        }
        LoadOutcome::Run(..) => panic!("--version should print"),
    }
    assert!(matches!(
        run(&["--version=false"], &[]).unwrap(),
        LoadOutcome::Run(..)
    ));
    assert_eq!(ETCD_VERSION, "3.6.0");
    assert_eq!(API_VERSION, "3.6");
}

#[test]
fn every_flag_parses_its_default() {
    // Each help-listed default must be accepted by its own flag (keeps the table honest).
    for spec in flags::all() {
        if spec.file_only
            || matches!(
                spec.action,
                flags::Action::Alias(_) | flags::Action::ConfigFile
            )
        {
            continue;
        }
        if spec.default.is_empty() || spec.default.contains("${") {
            continue;
        }
        let arg = format!("--{}={}", spec.name, spec.default);
        let args = [arg.as_str()];
        let res = match spec.name {
            "listen-client-urls" => {
                load(&[arg.as_str(), "--advertise-client-urls=http://a:1"], &[])
            }
            "version" => continue,
            _ => load(&args, &[]),
        };
        assert!(res.is_ok(), "{arg}: {:?}", res.err());
    }
}

#[test]
fn url_rendering() {
    let u = Url::parse("http://10.0.0.1:2379").unwrap();
    assert_eq!(u.as_str(), "http://10.0.0.1:2379/");
    assert_eq!(etcd_url_string(&u), "http://10.0.0.1:2379");
    assert_eq!(
        join_urls(&[u.clone(), u]),
        "http://10.0.0.1:2379,http://10.0.0.1:2379"
    );
    let m =
        parse_initial_cluster("a=http://1.1.1.1:2380,b=http://2.2.2.2:2380,a=http://1.1.1.2:2380")
            .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].1.len(), 2);
}

#[test]
fn etcd_yaml_config_file() {
    let mut f = tempfile::Builder::new()
        .suffix(".conf.yml")
        .tempfile()
        .unwrap();
    f.write_all(
        br#"# etcd member configuration
name: 'infra1'
data-dir: /var/lib/etcd
wal-dir:
snapshot-count: 20000
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 0
listen-peer-urls: https://10.0.1.11:2380
listen-client-urls: https://10.0.1.11:2379,https://127.0.0.1:2379
max-wals: 5
cors:
initial-advertise-peer-urls: https://10.0.1.11:2380
advertise-client-urls: https://10.0.1.11:2379
discovery:
discovery-fallback: 'exit'
initial-cluster: "infra0=https://10.0.1.10:2380,infra1=https://10.0.1.11:2380"
initial-cluster-token: 'prod-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: true
enable-pprof: false
proxy: 'off'
client-transport-security:
  cert-file: /etc/etcd/server.crt
  key-file: /etc/etcd/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file: /etc/etcd/peer.crt
  key-file: /etc/etcd/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/ca.crt
  allowed-cn:
    - infra0
    - infra1
self-signed-cert-validity: 1
log-level: info
logger: zap
log-outputs: [stderr]
auto-compaction-mode: periodic
auto-compaction-retention: "8"
experimental-watch-progress-notify-interval: 300000000000
cipher-suites: [
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
]
tls-min-version: 'TLS1.2'
"#,
    )
    .unwrap();
    let (c, warnings) = load(&["--config-file", f.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(c.name, "infra1");
    assert_eq!(c.data_dir(), PathBuf::from("/var/lib/etcd"));
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.snapshot_count, 20_000);
    assert_eq!(c.election_ticks(), 10);
    assert_eq!(
        urls(&c.listen_client_urls),
        ["https://10.0.1.11:2379", "https://127.0.0.1:2379"]
    );
    assert_eq!(c.initial_cluster_members().unwrap().len(), 2);
    assert_eq!(c.initial_cluster_token, "prod-cluster");
    assert!(c.client_tls.client_cert_auth && c.peer_tls.client_cert_auth);
    assert_eq!(
        c.client_tls.key_file,
        Some(PathBuf::from("/etc/etcd/server.key"))
    );
    assert_eq!(c.peer_tls.allowed_cn, ["infra0", "infra1"]);
    assert_eq!(c.log_outputs, ["stderr"]);
    assert_eq!(c.cipher_suites.len(), 2);
    assert_eq!(
        c.auto_compaction(),
        AutoCompaction::Periodic(Duration::from_secs(8 * 3600))
    );
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(300));
    let want = format!(
        "flag --proxy is accepted but has no effect yet (set by config file {})",
        f.path().display()
    );
    assert!(warnings.contains(&want), "{warnings:?}");
    // Flags still override the YAML file.
    let (c, _) = load(
        &[
            "--config-file",
            f.path().to_str().unwrap(),
            "--name=override",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "override");

    let mut bad = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    bad.write_all(b"name: x\nsnapshot-cout: 1\n").unwrap();
    let e = load(&["--config-file", bad.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(
        matches!(e, ConfigError::UnknownFileKey { ref key, .. } if key == "snapshot-cout"),
        "{e}"
    );
}

#[test]
fn kubeadm_manifest_flags() {
    // The command line kubeadm writes into /etc/kubernetes/manifests/etcd.yaml (1.30-1.33).
    let (c, warnings) = load(
        &[
            "--advertise-client-urls=https://192.168.1.10:2379",
            "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
            "--client-cert-auth=true",
            "--data-dir=/var/lib/etcd",
            "--experimental-initial-corrupt-check=true",
            "--experimental-watch-progress-notify-interval=5s",
            "--initial-advertise-peer-urls=https://192.168.1.10:2380",
            "--initial-cluster=cp1=https://192.168.1.10:2380",
            "--key-file=/etc/kubernetes/pki/etcd/server.key",
            "--listen-client-urls=https://127.0.0.1:2379,https://192.168.1.10:2379",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--listen-peer-urls=https://192.168.1.10:2380",
            "--name=cp1",
            "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
            "--peer-client-cert-auth=true",
            "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
            "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            "--snapshot-count=10000",
            "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "cp1");
    assert!(c.client_tls.has_cert() && c.client_tls.client_cert_auth);
    assert!(c.peer_tls.has_cert() && c.peer_tls.client_cert_auth);
    assert!(c.feature_gates.initial_corrupt_check);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
    assert_eq!(urls(&c.listen_metrics_urls), ["http://127.0.0.1:2381"]);
    assert!(
        !warnings.iter().any(|w| w.contains("no effect")),
        "{warnings:?}"
    );
    // The 3.6 spelling kubeadm uses with etcd 3.6.
    let c = cfg(&[
        "--feature-gates=InitialCorruptCheck=true",
        "--watch-progress-notify-interval=5s",
    ]);
    assert!(c.feature_gates.initial_corrupt_check);
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
}

#[test]
fn flags_not_acted_on_are_stored_and_warned_about_only_when_set() {
    let (c, warnings) = load(
        &[
            "--grpc-keepalive-min-time=7s",
            "--enable-pprof",
            "--initial-election-tick-advance=false",
            "--unsafe-no-fsync",
        ],
        &[("ETCD_AUTH_TOKEN", "simple")],
    )
    .unwrap();
    // The values are parsed and kept (and checked: see the bad-value tests).
    assert!(c.enable_pprof && !c.initial_election_tick_advance);
    for flag in ["grpc-keepalive-min-time", "enable-pprof"] {
        assert_no_effect_warning(&warnings, flag);
    }
    // Auth flags are acted on (a JWT without its keys is refused: see the bad values).
    assert!(!warnings.iter().any(|w| w.contains("auth")), "{warnings:?}");
    let (c, quiet) = load(
        &[
            "--bcrypt-cost=12",
            "--auth-token-ttl=60",
            "--experimental-corrupt-check-time=2s",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.corrupt_check_time, Duration::from_secs(2));
    assert!(!quiet.iter().any(|w| w.contains("no effect")), "{quiet:?}");
    assert_eq!((c.bcrypt_cost, c.auth_token_ttl), (12, 60));
    assert!(
        !quiet
            .iter()
            .any(|w| w.contains("bcrypt") || w.contains("auth")),
        "{quiet:?}"
    );
    // Flags the server acts on, and flags left at their defaults, get no such warning.
    let (_, quiet) = load(&["--name=x"], &[]).unwrap();
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("--unsafe-no-fsync")
                || w.contains("--initial-election-tick-advance")),
        "{warnings:?}"
    );
    assert!(!quiet.iter().any(|w| w.contains("no effect")), "{quiet:?}");
    assert!(flags::help_text().contains("no effect yet"));
}

#[test]
fn slow_request_warnings_take_their_flags_and_the_experimental_names() {
    let d = cfg(&[]);
    assert_eq!(
        (d.warning_apply_duration, d.warning_unary_request_duration),
        (Duration::from_millis(100), Duration::from_millis(300))
    );
    let c = cfg(&[
        "--warning-apply-duration=250ms",
        "--warning-unary-request-duration=1s",
    ]);
    assert_eq!(
        (c.warning_apply_duration, c.warning_unary_request_duration),
        (Duration::from_millis(250), Duration::from_secs(1))
    );
    let (e, warnings) = load(
        &[],
        &[
            ("ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", "2s"),
            ("ETCD_EXPERIMENTAL_WARNING_UNARY_REQUEST_DURATION", "5ms"),
        ],
    )
    .unwrap();
    assert_eq!(
        (e.warning_apply_duration, e.warning_unary_request_duration),
        (Duration::from_secs(2), Duration::from_millis(5))
    );
    assert!(
        !warnings.iter().any(|w| w.contains("no effect")),
        "{warnings:?}"
    );
    assert!(load(&["--warning-apply-duration=fast"], &[]).is_err());
}
