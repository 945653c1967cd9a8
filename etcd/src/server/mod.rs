//! The composition root: opens storage, recovers state, starts raft, the background
//! tasks and the listeners, reports readiness, and shuts everything down in order.
//! The only module that sees every other one.

pub mod auto_compaction;
pub mod facade;
pub mod listener;
pub mod readiness;
pub mod snapshot;
pub mod tls;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use url::Url;

use crate::apply::{load_applied_index, Alarms, Applier};
use crate::cluster::{member_id, Membership};
use crate::lease::Lessor;
use crate::mvcc::Store;
use crate::proto::etcdinternal::StoredMember;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::raft::{LogStore, NoPeers, RaftConfig, WaitRegistry};
use crate::storage::{Cf, Storage};
use crate::watch::WatchHub;

pub use facade::{EtcdServer, Settings};
pub use tls::TlsFiles;

/// Auto-compaction policy (`--auto-compaction-mode`/`-retention`).
#[derive(Debug, Clone, PartialEq)]
pub enum AutoCompaction {
    /// Off.
    Off,
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Everything the server needs to start, already validated.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<Url>,
    /// `--listen-client-http-urls` (HTTP only).
    pub listen_client_http_urls: Vec<Url>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URL) pairs.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--initial-cluster-state existing`.
    pub join_existing: bool,
    /// `--listen-metrics-urls`.
    pub listen_metrics_urls: Vec<Url>,
    /// `--heartbeat-interval`.
    pub heartbeat: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--pre-vote`.
    pub pre_vote: bool,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`.
    pub snapshot_catchup_entries: u64,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Effective backend quota in bytes.
    pub quota_bytes: u64,
    /// Auto compaction.
    pub auto_compaction: AutoCompaction,
    /// `--watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// Client TLS (for https/unixs client URLs).
    pub client_tls: Option<TlsFiles>,
    /// `--auto-tls`: generate a self-signed certificate when no files are given.
    pub auto_tls: bool,
    /// `--enable-grpc-gateway`.
    pub enable_grpc_gateway: bool,
}

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The store did not load.
    #[error("mvcc: {0}")]
    Mvcc(#[from] crate::mvcc::MvccError),
    /// The raft log did not load.
    #[error("raft log: {0}")]
    Log(#[from] crate::raft::LogStoreError),
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(#[from] crate::raft::RaftError),
    /// Membership did not load.
    #[error("membership: {0}")]
    Members(#[from] crate::cluster::MembershipError),
    /// Leases did not load.
    #[error("leases: {0}")]
    Leases(#[from] crate::lease::LeaseLoadError),
    /// A listener could not start.
    #[error(transparent)]
    Listen(#[from] listener::ListenError),
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Startup flags contradict each other or the data dir.
    #[error("{0}")]
    Bootstrap(String),
    /// A filesystem operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

const LOCAL_MEMBER_KEY: &[u8] = b"local_member_id";

/// A started server: its facade and the bound URLs.
pub struct Running {
    /// The facade.
    pub server: Arc<EtcdServer>,
    /// Client URLs actually bound (ports resolved).
    pub client_urls: Vec<Url>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    raft_thread: Option<std::thread::JoinHandle<()>>,
}

fn prepare_data_dir(dir: &PathBuf) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir.join("member"))
        .map_err(|e| ServerError::Io(dir.display().to_string(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Decides this member's id and the cluster membership: from the data dir if it was
/// bootstrapped before (the initial-* flags are then ignored, as in etcd), otherwise
/// from `--initial-cluster`.
fn bootstrap(
    opts: &ServerOptions,
    storage: &Storage,
    members: &Membership,
) -> Result<u64, ServerError> {
    if let Some(v) = storage.get(Cf::Meta, LOCAL_MEMBER_KEY)? {
        if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
            if !members.is_empty() {
                return Ok(u64::from_be_bytes(b));
            }
        }
    }
    if opts.join_existing {
        return Err(ServerError::Bootstrap(
            "--initial-cluster-state existing: joining a running cluster is not supported by this build yet (the data dir is empty)".into(),
        ));
    }
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (n, u) in &opts.initial_cluster {
        by_name.entry(n.clone()).or_default().push(u.clone());
    }
    let Some(mine) = by_name.get(&opts.name) else {
        return Err(ServerError::Bootstrap(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            opts.name
        )));
    };
    let mut a = mine.clone();
    a.sort();
    let mut b = opts.initial_advertise_peer_urls.clone();
    b.sort();
    if a != b {
        return Err(ServerError::Bootstrap(format!(
            "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}: they must match",
            opts.name,
            mine.join(","),
            opts.initial_advertise_peer_urls.join(",")
        )));
    }
    if by_name.len() > 1 {
        return Err(ServerError::Bootstrap(
            "multi-member clusters are not supported by this build yet; --initial-cluster must list only this member".into(),
        ));
    }
    let stored: Vec<StoredMember> = by_name
        .iter()
        .map(|(n, urls)| StoredMember {
            id: member_id(urls, &opts.initial_cluster_token, None),
            name: if *n == opts.name {
                String::new()
            } else {
                n.clone()
            },
            peer_urls: urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect();
    let id = member_id(mine, &opts.initial_cluster_token, None);
    members.bootstrap(storage, stored)?;
    let mut batch = storage.batch();
    batch.put(Cf::Meta, LOCAL_MEMBER_KEY, &id.to_be_bytes());
    storage.write(batch, true)?;
    Ok(id)
}

/// Starts the server: recovers state, starts raft and listeners, publishes this member
/// and returns once it serves linearizable requests (then sd-notify `READY=1`).
pub async fn start(opts: ServerOptions) -> Result<Running, ServerError> {
    crate::metrics::init();
    prepare_data_dir(&opts.data_dir)?;
    let storage = Storage::open(&opts.data_dir.join("member").join("db"))?;
    let members = Arc::new(Membership::load(&storage)?);
    let fresh = members.is_empty();
    let id = bootstrap(&opts, &storage, &members)?;
    tracing::info!(
        name = %opts.name,
        data_dir = %opts.data_dir.display(),
        member_id = %format!("{id:x}"),
        cluster_id = %format!("{:x}", members.cluster_id()),
        "{}",
        if fresh { "starting a new member" } else { "restarting member from its data dir" }
    );

    let store = Arc::new(Store::open(storage.clone())?);
    let election_ticks =
        (opts.election_timeout.as_millis() / opts.heartbeat.as_millis().max(1)) as usize;
    let min_ttl =
        ((3 * election_ticks as u64 * opts.heartbeat.as_millis() as u64) / 2).div_ceil(1000) as i64;
    let lessor = Arc::new(Lessor::new(min_ttl));
    lessor.load(&storage)?;
    store.for_each_current(|kv| {
        if kv.lease != 0 {
            lessor.attach(kv.lease, &kv.key);
        }
    })?;
    let alarms = Arc::new(Alarms::load(&storage)?);
    let hub = WatchHub::new(store.clone());
    let wait = Arc::new(WaitRegistry::new(id));
    let applied = load_applied_index(&storage)?;
    tracing::info!(
        revision = store.current_revision(),
        compact_revision = store.compact_revision(),
        applied_index = applied,
        "recovered the key-value store"
    );
    let applier = Applier::new(
        storage.clone(),
        store.clone(),
        lessor.clone(),
        hub.clone(),
        alarms.clone(),
        members.clone(),
        wait.clone(),
        applied,
    );
    let (log, _) = LogStore::open(storage.clone(), &members.voter_ids())?;
    let raft_cfg = RaftConfig {
        id,
        tick: opts.heartbeat,
        election_ticks,
        pre_vote: opts.pre_vote,
        snapshot_count: opts.snapshot_count,
        catchup_entries: opts.snapshot_catchup_entries,
        max_inflight: 5000,
    };
    let single = members.voter_ids() == vec![id];
    let (raft, raft_thread) = crate::raft::start(raft_cfg, log, applier, NoPeers, single)?;

    let settings = Settings {
        member_id: id,
        name: opts.name.clone(),
        max_txn_ops: opts.max_txn_ops,
        max_request_bytes: opts.max_request_bytes,
        quota_bytes: opts.quota_bytes,
        request_timeout: Duration::from_secs(5) + 2 * opts.election_timeout,
    };
    let server = EtcdServer::new(facade::Parts {
        settings,
        raft,
        wait,
        store,
        lessor,
        hub,
        alarms,
        members,
        storage,
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(leadership_task(
        server.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(lease_expiry_task(
        server.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(progress_task(
        server.clone(),
        opts.watch_progress_notify_interval,
        shutdown_rx.clone(),
    )));
    if opts.auto_compaction != AutoCompaction::Off {
        tasks.push(tokio::spawn(auto_compaction_task(
            server.clone(),
            opts.auto_compaction.clone(),
            shutdown_rx.clone(),
        )));
    }

    // TLS material: given files, or a self-signed pair with --auto-tls.
    let mut client_tls = opts.client_tls.clone();
    let needs_tls = opts
        .listen_client_urls
        .iter()
        .any(|u| matches!(u.scheme(), "https" | "unixs"));
    if needs_tls && client_tls.is_none() && opts.auto_tls {
        let hosts: Vec<String> = opts
            .listen_client_urls
            .iter()
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect();
        let (cert, key) = tls::self_signed(&opts.data_dir.join("fixtures").join("client"), &hosts)?;
        tracing::warn!("automatically generated a self-signed client certificate (--auto-tls)");
        client_tls = Some(TlsFiles {
            cert_file: cert,
            key_file: key,
            trusted_ca_file: None,
            client_cert_auth: false,
            min_version_13: false,
            max_version_12: false,
            cipher_suites: Vec::new(),
            allowed_cn: Vec::new(),
        });
    }
    if let Some(t) = &client_tls {
        if needs_tls {
            t.server_config()?;
        }
    }

    let grpc = crate::api::grpc_routes(server.clone()).await;
    let http = crate::api::http::router(server.clone());
    let mut client_app = grpc.into_axum_router().merge(http.clone());
    if opts.enable_grpc_gateway {
        client_app = client_app.merge(crate::api::gateway::router(server.clone()));
    }
    let grace = Duration::from_secs(5);
    let mut client_urls = Vec::new();
    let mut bound_all = Vec::new();
    for u in &opts.listen_client_urls {
        let b = listener::bind(u, client_tls.as_ref()).await?;
        client_urls.push(b.local_url());
        if b.local_url().scheme() == "http" {
            tracing::warn!(address = %b.local_url(), "serving client traffic insecurely; this is strongly discouraged!");
        }
        bound_all.push((b, client_app.clone()));
    }
    for u in opts
        .listen_client_http_urls
        .iter()
        .chain(opts.listen_metrics_urls.iter())
    {
        let b = listener::bind(u, client_tls.as_ref()).await?;
        bound_all.push((b, http.clone()));
    }
    for (b, app) in bound_all {
        let url = b.local_url();
        tracing::info!(address = %url, "serving client traffic");
        tasks.push(tokio::spawn(listener::serve(
            b,
            app,
            shutdown_rx.clone(),
            grace,
        )));
    }

    // Publish through raft: once applied, linearizable requests work.
    readiness::status("publishing member attributes");
    let mut attempt = 0u32;
    loop {
        match server.publish(opts.advertise_client_urls.clone()).await {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                if attempt % 10 == 1 {
                    tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::info!(
        local_member_id = %format!("{id:x}"),
        client_urls = %opts.advertise_client_urls.join(","),
        "published local member to cluster through raft"
    );
    tracing::info!("ready to serve client requests");
    readiness::ready("serving client requests");
    readiness::spawn_watchdog();
    Ok(Running {
        server,
        client_urls,
        shutdown_tx,
        tasks,
        raft_thread: Some(raft_thread),
    })
}

impl Running {
    /// Graceful shutdown: stop accepting, let in-flight requests finish, stop raft,
    /// make everything durable.
    pub async fn shutdown(mut self) {
        readiness::stopping();
        tracing::info!("received shutdown signal; closing listeners and draining requests");
        self.server.hub().close();
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(6), t).await;
        }
        let storage = self.server.storage().clone();
        if let Err(e) = storage.sync_wal() {
            tracing::error!(error = %e, "failed to sync the database on shutdown");
        }
        drop(self.server);
        if let Some(t) = self.raft_thread.take() {
            drop(t);
        }
        tracing::info!("stopped serving; data is on disk");
    }
}

async fn leadership_task(server: Arc<EtcdServer>, mut shutdown: watch::Receiver<bool>) {
    let mut w = server.raft().leader_watch();
    let mut was_leader = false;
    let mut last_leader = 0;
    loop {
        let info = *w.borrow_and_update();
        if info.leader != last_leader {
            if info.leader != 0 && last_leader != 0 {
                crate::metrics::LEADER_CHANGES.inc();
            }
            last_leader = info.leader;
        }
        if info.is_self != was_leader {
            server.set_lease_primary(info.is_self);
            was_leader = info.is_self;
        }
        tokio::select! {
            r = w.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn lease_expiry_task(server: Arc<EtcdServer>, mut shutdown: watch::Receiver<bool>) {
    let mut t = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = t.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        for id in server.expired_leases(500) {
            let s = server.clone();
            tokio::spawn(async move {
                if let Err(e) = s.lease_expire(id).await {
                    if e != crate::rpctypes::EtcdError::LeaseNotFound {
                        tracing::warn!(lease = %format!("{id:x}"), error = %e, "failed to revoke expired lease");
                    }
                }
            });
        }
    }
}

async fn progress_task(
    server: Arc<EtcdServer>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut t = tokio::time::interval(every.max(Duration::from_millis(100)));
    t.tick().await;
    loop {
        tokio::select! {
            _ = t.tick() => server.hub().progress_tick(),
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn auto_compaction_task(
    server: Arc<EtcdServer>,
    mode: AutoCompaction,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mut schedule) = auto_compaction::Schedule::new(mode, std::time::Instant::now()) else {
        return;
    };
    let mut t = tokio::time::interval(schedule.sample_interval());
    loop {
        tokio::select! {
            _ = t.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let store = server.store();
        let target = schedule.observe(
            std::time::Instant::now(),
            store.current_revision(),
            store.compact_revision(),
        );
        let Some(target) = target else { continue };
        if !server.raft().status().is_leader() {
            continue;
        }
        match server
            .compact(CompactionRequest {
                revision: target,
                physical: false,
            })
            .await
        {
            Ok(_) => tracing::info!(revision = target, "completed auto compaction"),
            Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
        }
    }
}
