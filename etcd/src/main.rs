//! The `etcd` binary: load the configuration, set up logging, start the server, wait for
//! SIGTERM/SIGINT, shut down gracefully.

use std::process::ExitCode;

use anyhow::Context as _;
use etcd::config::{self, Config, LoadOutcome, TlsVersion};
use etcd::server::{self, AutoCompaction, ServerOptions, TlsFiles};

/// Every Rust allocation of the server goes through jemalloc (RocksDB's own C++
/// allocations stay with the system allocator).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn options(cfg: &Config) -> anyhow::Result<ServerOptions> {
    let members = cfg
        .initial_cluster_members()
        .context("invalid --initial-cluster")?;
    let mut initial_cluster = Vec::new();
    for (name, urls) in members {
        for u in urls {
            initial_cluster.push((name.clone(), config::etcd_url_string(&u)));
        }
    }
    let tls = &cfg.client_tls;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
            trusted_ca_file: tls.trusted_ca_file.clone(),
            client_cert_auth: tls.client_cert_auth,
            min_version_13: cfg.tls_min_version == Some(TlsVersion::Tls13),
            max_version_12: cfg.tls_max_version == Some(TlsVersion::Tls12),
            cipher_suites: cfg.cipher_suites.clone(),
            allowed_cn: tls.allowed_cn.clone(),
            crl_file: tls.crl_file.clone(),
            allowed_hostname: tls.allowed_hostname.clone(),
            check_client_san: false,
        }),
        _ => None,
    };
    let ptls = &cfg.peer_tls;
    let peer_tls = match (&ptls.cert_file, &ptls.key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
            trusted_ca_file: ptls.trusted_ca_file.clone(),
            client_cert_auth: ptls.client_cert_auth,
            min_version_13: cfg.tls_min_version == Some(TlsVersion::Tls13),
            max_version_12: cfg.tls_max_version == Some(TlsVersion::Tls12),
            cipher_suites: cfg.cipher_suites.clone(),
            allowed_cn: ptls.allowed_cn.clone(),
            crl_file: ptls.crl_file.clone(),
            allowed_hostname: ptls.allowed_hostname.clone(),
            check_client_san: !ptls.skip_client_san_verification,
        }),
        _ => None,
    };
    let peer_client_cert = match (&ptls.client_cert_file, &ptls.client_key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    let auto_compaction = match cfg.auto_compaction() {
        config::AutoCompaction::Disabled => AutoCompaction::Off,
        config::AutoCompaction::Periodic(d) => AutoCompaction::Periodic(d),
        config::AutoCompaction::Revision(n) => AutoCompaction::Revision(n as i64),
    };
    Ok(ServerOptions {
        name: cfg.name.clone(),
        data_dir: cfg.data_dir(),
        wal_dir: cfg.wal_dir().map(Into::into),
        listen_client_urls: cfg.listen_client_urls.clone(),
        listen_client_http_urls: cfg.listen_client_http_urls.clone(),
        advertise_client_urls: cfg
            .advertise_client_urls
            .iter()
            .map(config::etcd_url_string)
            .collect(),
        initial_advertise_peer_urls: cfg
            .initial_advertise_peer_urls
            .iter()
            .map(config::etcd_url_string)
            .collect(),
        initial_cluster,
        initial_cluster_token: cfg.initial_cluster_token.clone(),
        join_existing: !cfg.is_new_cluster(),
        listen_metrics_urls: cfg.listen_metrics_urls.clone(),
        grpc_handling_histogram: cfg.metrics == config::MetricsLevel::Extensive,
        client_http2: server::listener::Http2Settings::from_flags(
            cfg.max_concurrent_streams,
            cfg.grpc_keepalive_interval,
            cfg.grpc_keepalive_timeout,
        ),
        heartbeat: cfg.heartbeat_interval(),
        election_timeout: cfg.election_timeout(),
        pre_vote: cfg.pre_vote,
        snapshot_count: cfg.snapshot_count,
        snapshot_catchup_entries: cfg.snapshot_catchup_entries,
        max_txn_ops: cfg.max_txn_ops as usize,
        max_request_bytes: cfg.max_request_bytes as usize,
        quota_bytes: cfg.quota_bytes().unwrap_or(u64::MAX),
        auto_compaction,
        watch_progress_notify_interval: cfg.watch_progress_notify_interval,
        client_tls,
        auto_tls: tls.auto_tls,
        listen_peer_urls: cfg.listen_peer_urls.clone(),
        peer_tls,
        peer_auto_tls: ptls.auto_tls,
        self_signed_cert_validity: cfg.self_signed_cert_validity,
        peer_client_cert,
        strict_reconfig_check: cfg.strict_reconfig_check,
        max_learners: usize::try_from(cfg.max_learners).unwrap_or(usize::MAX),
        force_new_cluster: cfg.force_new_cluster,
        unsafe_no_fsync: cfg.unsafe_no_fsync,
        initial_corrupt_check: cfg.feature_gates.initial_corrupt_check,
        socket: server::listener::SocketOptions {
            reuse_port: cfg.socket_reuse_port,
            reuse_address: cfg.socket_reuse_address,
        },
        warning_apply_duration: cfg.warning_apply_duration,
        warning_unary_request_duration: cfg.warning_unary_request_duration,
        initial_election_tick_advance: cfg.initial_election_tick_advance,
        auth_token_ttl: std::time::Duration::from_secs(cfg.auth_token_ttl),
        jwt: config::parse_auth_token(&cfg.auth_token)
            .map_err(|e| anyhow::anyhow!("--auth-token: {e}"))?,
        bcrypt_cost: cfg.bcrypt_cost,
        corrupt_check_time: cfg.corrupt_check_time,
        enable_grpc_gateway: cfg.enable_grpc_gateway,
    })
}

/// `--memory-mlock`: locks every page of the process, present and future, in RAM, so
/// that memory pressure cannot page the server out (etcd locks its database's pages for
/// the same reason: tail latency). Fails when the kernel refuses (no CAP_IPC_LOCK and a
/// `LimitMEMLOCK` below the process's size).
fn lock_memory() -> anyhow::Result<()> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).context(
        "--memory-mlock: cannot lock the process's memory in RAM (mlockall); \
         it needs CAP_IPC_LOCK or a memory-lock limit (LimitMEMLOCK) above etcd's size",
    )?;
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).context("getrlimit(RLIMIT_MEMLOCK)")?;
    if soft != RLIM_INFINITY && !nix::unistd::geteuid().is_root() {
        tracing::warn!(
            limit = soft,
            "memory is locked in RAM under a finite memory-lock limit: allocations beyond it will fail"
        );
    }
    tracing::info!("locked the process's memory in RAM (--memory-mlock)");
    Ok(())
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    if cfg.memory_mlock {
        lock_memory()?;
    }
    let opts = options(&cfg)?;
    let running = server::start(opts).await.context("failed to start etcd")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let mut removed = running.removed();
    let sig = tokio::select! {
        _ = term.recv() => "terminated",
        _ = int.recv() => "interrupt",
        _ = removed.wait_for(|r| *r) => "removed from the cluster",
    };
    tracing::info!(reason = sig, "shutting down");
    running.shutdown().await;
    Ok(())
}

/// How often (in tasks run) a worker thread takes a task from the runtime's shared
/// queue before its own: every time.
///
/// Results of writes are delivered from the raft thread, and a task woken from a thread
/// outside the runtime waits in the shared queue, which tokio's default visits only every
/// few dozen tasks or when a worker's own queue is empty. With 500 connections of one
/// request each (`etcdctl check perf --load=l`), 30% of writes then waited more than
/// 16 ms after being applied before their request task ran again (1.4% with this
/// setting); see BENCHMARKS.md.
const REMOTE_FIRST: u32 = 1;

fn main() -> ExitCode {
    let (cfg, warnings) = match Config::load(std::env::args_os(), std::env::vars()) {
        Ok(LoadOutcome::Run(cfg, warnings)) => (cfg, warnings),
        Ok(LoadOutcome::PrintAndExit(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("etcd: {e}");
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
    };
    let _guard = match etcd::logging::init(&cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("etcd: failed to set up logging: {e}");
            return ExitCode::from(1);
        }
    };
    etcd::logging::log_startup(&cfg, &warnings);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        // Take woken-from-outside tasks first (see `REMOTE_FIRST`).
        .global_queue_interval(REMOTE_FIRST)
        .enable_all()
        .thread_name("etcd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "failed to start the async runtime");
            return ExitCode::from(1);
        }
    };
    let code = match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "etcd stopped with an error");
            eprintln!("etcd: {e:#}");
            ExitCode::from(1)
        }
    };
    // Cancel what is left (lingering connections hold the server and its database):
    // the database closes before the process exits.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
