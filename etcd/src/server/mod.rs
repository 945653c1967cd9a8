//! The composition root: opens storage, recovers state, starts raft, the background
//! tasks and the listeners, reports readiness, and shuts everything down in order.
//! The only module that sees every other one.

mod auth_ops;
pub mod auto_compaction;
mod bbolt;
mod bbolt_writer;
pub mod client_san;
pub mod coalesce;
pub mod corrupt_check;
mod desk;
mod etcd_data_dir;
mod etcd_wal;
pub mod facade;
pub mod listener;
pub mod readiness;
mod reconfig;
pub mod restore;
pub mod snapshot;
pub mod tick_advance;
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
use crate::proto::etcdpeer::PeerMember;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::raft::transport::{
    GrpcTransport, LeaderLink, PeerClientTls, PeerService, TransportOptions,
};
use crate::raft::{LogStore, RaftConfig, WaitRegistry};
use crate::storage::{Cf, Durability, Storage};
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
    /// `--wal-dir`: where the raft log's files go; `None` = `<data-dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
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
    /// `--metrics=extensive`: export `grpc_server_handling_seconds` too.
    pub grpc_handling_histogram: bool,
    /// `--max-concurrent-streams`, `--grpc-keepalive-interval`/`-timeout`: the client
    /// ports' HTTP/2 settings.
    pub client_http2: listener::Http2Settings,
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
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<Url>,
    /// Peer TLS (`--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`, `--peer-cert-allowed-cn`) for `https` peer URLs.
    pub peer_tls: Option<TlsFiles>,
    /// `--peer-auto-tls`.
    pub peer_auto_tls: bool,
    /// `--self-signed-cert-validity`: years the `--auto-tls`/`--peer-auto-tls`
    /// certificates are valid for.
    pub self_signed_cert_validity: u32,
    /// `--peer-client-cert-file`/`--peer-client-key-file` (default: the peer cert).
    pub peer_client_cert: Option<(PathBuf, PathBuf)>,
    /// `--strict-reconfig-check`: refuse membership changes that would leave too few
    /// started voters for a quorum.
    pub strict_reconfig_check: bool,
    /// `--max-learners`: learners the cluster may have at once.
    pub max_learners: usize,
    /// `--force-new-cluster`: on a restart, make this member a one-member cluster of its
    /// data ([`LogStore::force_standalone`]); ignored when the data dir is new.
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`: the raft log is written without syncing
    /// ([`LogStore::set_unsafe_no_fsync`]).
    pub unsafe_no_fsync: bool,
    /// The `InitialCorruptCheck` feature gate (`--experimental-initial-corrupt-check`):
    /// a restarted member of a multi-member cluster compares its store's hash with its
    /// peers' before it starts ([`corrupt_check`]).
    pub initial_corrupt_check: bool,
    /// `--socket-reuse-port` / `--socket-reuse-address`: options of every TCP listener.
    pub socket: listener::SocketOptions,
    /// `--warning-apply-duration`: applies and read-only ranges slower than this are
    /// logged ("apply request took too long") and counted (`etcd_server_slow_apply_total`).
    pub warning_apply_duration: Duration,
    /// `--warning-unary-request-duration`: KV calls slower than this are logged
    /// ("request stats").
    pub warning_unary_request_duration: Duration,
    /// `--initial-election-tick-advance`: a member of a multi-member cluster
    /// fast-forwards its election clock once other members answer ([`tick_advance`]).
    pub initial_election_tick_advance: bool,
    /// `--auth-token-ttl`: a simple auth token lives this long after its last use.
    pub auth_token_ttl: Duration,
    /// `--auth-token jwt,...`: JWT tokens with these keys instead of simple ones.
    pub jwt: Option<JwtOptions>,
    /// `--bcrypt-cost`: the cost of the password hashes this member makes.
    pub bcrypt_cost: u32,
    /// `--corrupt-check-time`: how often the leader compares the members' hashes (0:
    /// never).
    pub corrupt_check_time: Duration,
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

use crate::apply::LOCAL_MEMBER_KEY;
use crate::auth::jwt::{JwtOptions, JwtTokens};
use crate::auth::{AuthStore, TokenProvider};

/// A started server: its facade and the bound URLs.
pub struct Running {
    /// The facade.
    pub server: Arc<EtcdServer>,
    /// Client URLs actually bound (ports resolved).
    pub client_urls: Vec<Url>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    raft_thread: Option<std::thread::JoinHandle<()>>,
    transport: GrpcTransport,
    removed: watch::Receiver<bool>,
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

/// How this member came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    /// Restarted from its data dir.
    Restart,
    /// First start of a member of a new cluster.
    New,
    /// First start of a member joining a running cluster.
    Join,
}

/// Groups `--initial-cluster` by member name (URLs in flag order).
fn initial_members(opts: &ServerOptions) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (n, u) in &opts.initial_cluster {
        by_name.entry(n.clone()).or_default().push(u.clone());
    }
    by_name
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Checks that this member's name is in `--initial-cluster` with exactly its
/// `--initial-advertise-peer-urls`; returns its URLs there.
fn check_initial_cluster(opts: &ServerOptions) -> Result<Vec<String>, ServerError> {
    let by_name = initial_members(opts);
    let Some(mine) = by_name.get(&opts.name) else {
        return Err(ServerError::Bootstrap(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            opts.name
        )));
    };
    if sorted(mine) != sorted(&opts.initial_advertise_peer_urls) {
        return Err(ServerError::Bootstrap(format!(
            "--initial-cluster has {}={} but --initial-advertise-peer-urls is {}: they must match",
            opts.name,
            mine.join(","),
            opts.initial_advertise_peer_urls.join(",")
        )));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (n, u) in &opts.initial_cluster {
        if let Some(other) = seen.insert(u.clone(), n.clone()) {
            if other != *n {
                return Err(ServerError::Bootstrap(format!(
                    "--initial-cluster lists peer URL {u} for both {other} and {n}"
                )));
            }
        }
    }
    Ok(mine.clone())
}

/// Decides this member's id and the cluster membership: from the data dir if it was
/// bootstrapped before (the initial-* flags are then ignored, as in etcd), from
/// `--initial-cluster` for a new cluster, or from the running cluster's members for
/// `--initial-cluster-state existing`.
async fn bootstrap(
    opts: &ServerOptions,
    storage: &Storage,
    members: &Membership,
    peer_client: Option<&PeerClientTls>,
) -> Result<(u64, Boot), ServerError> {
    if let Some(v) = storage.get(Cf::Meta, LOCAL_MEMBER_KEY)? {
        if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
            if !members.is_empty() {
                return Ok((u64::from_be_bytes(b), Boot::Restart));
            }
        }
    }
    let mine = check_initial_cluster(opts)?;
    let (id, boot) = if opts.join_existing {
        (
            join_cluster(opts, storage, members, &mine, peer_client).await?,
            Boot::Join,
        )
    } else {
        let stored: Vec<StoredMember> = initial_members(opts)
            .iter()
            .map(|(n, urls)| StoredMember {
                id: member_id(urls, &opts.initial_cluster_token, None),
                name: n.clone(),
                peer_urls: urls.clone(),
                client_urls: vec![],
                is_learner: false,
            })
            .collect();
        members.bootstrap(storage, stored)?;
        (
            member_id(&mine, &opts.initial_cluster_token, None),
            Boot::New,
        )
    };
    let mut batch = storage.batch();
    batch.put(Cf::Meta, LOCAL_MEMBER_KEY, &id.to_be_bytes());
    storage.write(batch, Durability::Synced)?;
    Ok((id, boot))
}

/// `--initial-cluster-state existing`: asks the other members of `--initial-cluster`
/// for the cluster ID and member list, and finds this member in it (it must have been
/// added with MemberAdd before).
async fn join_cluster(
    opts: &ServerOptions,
    storage: &Storage,
    members: &Membership,
    mine: &[String],
    peer_client: Option<&PeerClientTls>,
) -> Result<u64, ServerError> {
    let peers: Vec<String> = opts
        .initial_cluster
        .iter()
        .filter(|(n, _)| *n != opts.name)
        .map(|(_, u)| u.clone())
        .collect();
    if peers.is_empty() {
        return Err(ServerError::Bootstrap(
            "--initial-cluster-state existing needs the running members in --initial-cluster"
                .into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let mut last = String::new();
        let mut got = None;
        for u in &peers {
            match crate::raft::transport::fetch_members(u, peer_client, Duration::from_secs(2))
                .await
            {
                Ok(r) => {
                    got = Some(r);
                    break;
                }
                Err(e) => last = format!("{u}: {e}"),
            }
        }
        if let Some(r) = got {
            break r;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Bootstrap(format!(
                "cannot fetch cluster info from the peer URLs of --initial-cluster: {last}"
            )));
        }
        tracing::warn!(error = %last, "cannot fetch cluster info from peers yet; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let want = sorted(mine);
    let Some(me) = resp.members.iter().find(|m| sorted(&m.peer_urls) == want) else {
        return Err(ServerError::Bootstrap(format!(
            "member with peer URLs {} has not been added to cluster {:x}; add it with `etcdctl member add` first",
            mine.join(","),
            resp.cluster_id
        )));
    };
    let id = me.id;
    let stored = resp
        .members
        .iter()
        .map(|m| StoredMember {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
        })
        .collect();
    members.join(storage, resp.cluster_id, stored)?;
    tracing::info!(
        member_id = %format!("{id:x}"),
        cluster_id = %format!("{:x}", resp.cluster_id),
        "joining a running cluster"
    );
    Ok(id)
}

/// Starts the server: recovers state, starts raft and listeners, publishes this member
/// and returns once it serves linearizable requests (then sd-notify `READY=1`), or,
/// never having served, once it learns it was removed from the cluster
/// ([`Running::removed`] is then already true).
pub async fn start(opts: ServerOptions) -> Result<Running, ServerError> {
    crate::metrics::init();
    crate::api::grpc_metrics::init(opts.grpc_handling_histogram);
    prepare_data_dir(&opts.data_dir)?;
    let wal_dir = opts
        .wal_dir
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("member").join("wal"));
    etcd_data_dir::adopt(&opts.data_dir, &wal_dir).map_err(|e| {
        ServerError::Bootstrap(format!(
            "adopting the data dir {} restored by etcd's tools: {e}",
            opts.data_dir.display()
        ))
    })?;
    let storage = Storage::open(&opts.data_dir.join("member").join("db"))?;
    let members = Arc::new(Membership::load(&storage)?);
    let peer_tls = peer_server_tls(&opts)?;
    let peer_client = peer_client_tls(&opts, peer_tls.as_ref());
    let (id, boot) = bootstrap(&opts, &storage, &members, peer_client.as_ref()).await?;
    let fresh = boot != Boot::Restart;
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
    let provider = match &opts.jwt {
        None => TokenProvider::Simple(opts.auth_token_ttl),
        Some(o) => TokenProvider::Jwt(
            JwtTokens::load(o).map_err(|e| ServerError::Bootstrap(format!("--auth-token: {e}")))?,
        ),
    };
    let auth = Arc::new(AuthStore::load(&storage, provider)?);
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
        auth.clone(),
        wait.clone(),
        applied,
    );
    // True once this member learns it was removed: by applying its own removal (also
    // before a restart, from the persisted removed IDs) or from a peer's refusal.
    let removed_before = members.is_removed(id);
    let (removed_tx, removed) = watch::channel(removed_before);
    if removed_before {
        tracing::warn!(
            member_id = %format!("{id:x}"),
            "{}; the data-dir used by this member must be removed",
            crate::raft::transport::REMOVED_MESSAGE
        );
    }
    let applier = applier
        .with_local_member(id, removed_tx.clone())
        .with_apply_warning(opts.warning_apply_duration);
    let initial_voters = if boot == Boot::Join {
        Vec::new()
    } else {
        members.voter_ids()
    };
    if applied > 0 && !LogStore::exists(&wal_dir, &storage)? {
        // Starting a new log here would let the state machine skip the entries it
        // believes it has applied: refuse, as the data dir and the log belong together.
        return Err(ServerError::Bootstrap(format!(
            "the data dir {} holds state applied up to raft index {applied}, but there is no raft log in {}; start with the --wal-dir this member ran with",
            opts.data_dir.display(),
            wal_dir.display()
        )));
    }
    let (log, _) = LogStore::open(&wal_dir, storage.clone(), &initial_voters)?;
    if opts.unsafe_no_fsync {
        tracing::warn!("--unsafe-no-fsync: the raft log is not synced; a machine crash may lose acknowledged writes");
        log.set_unsafe_no_fsync()?;
    }
    let forced = opts.force_new_cluster && boot == Boot::Restart;
    if forced {
        force_standalone(&opts, id, &log, applied)?;
    }
    let raft_cfg = RaftConfig {
        id,
        tick: opts.heartbeat,
        election_ticks,
        pre_vote: opts.pre_vote,
        snapshot_count: opts.snapshot_count,
        catchup_entries: opts.snapshot_catchup_entries,
        max_inflight: 5000,
    };
    let single = forced || members.voter_ids() == vec![id];
    let cluster_id = members.cluster_id();
    if opts.initial_corrupt_check && boot == Boot::Restart && !single {
        corrupt_check::run(corrupt_check::InitialCheck {
            store: &store,
            local_id: id,
            cluster_id,
            peers: peer_urls(&members, id).collect(),
            tls: peer_client.clone(),
            timeout: Duration::from_secs(5) + 2 * opts.election_timeout,
        })
        .await
        .map_err(ServerError::Bootstrap)?;
    }
    let transport = GrpcTransport::new(
        id,
        cluster_id,
        peer_client.clone(),
        TransportOptions::default(),
    )
    .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    sync_peers(&transport, &members, id);
    // Bind the peer listeners before raft runs, so a bad URL fails the start.
    let mut peer_bound = Vec::new();
    for u in &opts.listen_peer_urls {
        peer_bound.push(listener::bind(u, peer_tls.as_ref(), opts.socket).await?);
    }
    let (raft, raft_thread) =
        crate::raft::start(raft_cfg, log, applier, transport.clone(), single)?;
    transport.attach(raft.clone());
    transport.signal_removal(removed_tx);
    let link = LeaderLink::new(cluster_id, peer_client.clone());

    let settings = Settings {
        member_id: id,
        name: opts.name.clone(),
        max_txn_ops: opts.max_txn_ops,
        max_request_bytes: opts.max_request_bytes,
        quota_bytes: opts.quota_bytes,
        request_timeout: Duration::from_secs(5) + 2 * opts.election_timeout,
        cluster_token: opts.initial_cluster_token.clone(),
        strict_reconfig_check: opts.strict_reconfig_check,
        max_learners: opts.max_learners,
        warning_apply_duration: opts.warning_apply_duration,
        warning_unary_request_duration: opts.warning_unary_request_duration,
        bcrypt_cost: opts.bcrypt_cost,
        client_cert_auth: opts.client_tls.as_ref().is_some_and(|t| t.client_cert_auth),
    };
    let server = EtcdServer::new(facade::Parts {
        settings,
        raft,
        wait,
        store,
        lessor,
        hub,
        alarms,
        members: members.clone(),
        auth,
        storage,
        link: Some(link),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(leadership_task(
        server.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(peer_sync_task(
        transport.clone(),
        members.clone(),
        id,
        shutdown_rx.clone(),
    )));
    for b in peer_bound {
        let url = b.local_url();
        let directory = PeerDirectory(members.clone());
        let svc = PeerService::new(id, cluster_id, server.raft().clone(), directory)
            .with_desk(Arc::new(desk::Desk(server.clone())))
            .with_shutdown(shutdown_rx.clone());
        tracing::info!(address = %url, "serving peer traffic");
        tasks.push(tokio::spawn(listener::serve(
            b,
            svc.into_router(),
            shutdown_rx.clone(),
            Duration::from_secs(1),
        )));
    }
    let advance = tick_advance::TickAdvance {
        raft: server.raft().clone(),
        enabled: opts.initial_election_tick_advance,
        peers: if single {
            Vec::new()
        } else {
            peer_urls(&members, id).collect()
        },
        cluster_id,
        tls: peer_client.clone(),
        election_ticks,
        tick: opts.heartbeat,
    };
    let advance_shutdown = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        tick_advance::run(advance, advance_shutdown).await;
    }));
    tasks.push(tokio::spawn(lease_expiry_task(
        server.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(wait_sweep_task(
        server.p.wait.clone(),
        server.settings().request_timeout,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(progress_task(
        server.clone(),
        opts.watch_progress_notify_interval,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(corrupt_check::periodic(
        corrupt_check::PeriodicCheck {
            server: server.clone(),
            members: members.clone(),
            local_id: id,
            cluster_id,
            tls: peer_client.clone(),
            timeout: Duration::from_secs(5) + 2 * opts.election_timeout,
            interval: opts.corrupt_check_time,
        },
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
        let (cert, key) = tls::self_signed(
            &opts.data_dir.join("fixtures").join("client"),
            &hosts,
            opts.self_signed_cert_validity,
        )?;
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
            crl_file: None,
            allowed_hostname: Vec::new(),
            check_client_san: false,
        });
    }
    if let Some(t) = &client_tls {
        if needs_tls {
            t.server_config()?;
        }
    }

    let grpc = crate::api::grpc_routes(server.clone()).await;
    let http = crate::api::http::router(server.clone());
    let grpc = grpc
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            crate::api::learner_gate,
        ));
    let mut client_app = grpc.merge(http.clone());
    if opts.enable_grpc_gateway {
        client_app = client_app.merge(crate::api::gateway::router(server.clone()));
    }
    let grace = Duration::from_secs(5);
    let mut client_urls = Vec::new();
    let mut bound_all = Vec::new();
    for u in &opts.listen_client_urls {
        let b = listener::bind(u, client_tls.as_ref(), opts.socket)
            .await?
            .with_http2(opts.client_http2);
        client_urls.push(b.local_url());
        if b.local_url().scheme() == "http" {
            tracing::warn!(address = %b.local_url(), "serving client traffic insecurely; this is strongly discouraged!");
        }
        bound_all.push((
            b,
            crate::api::dispatch::PortApp::new(server.clone(), client_app.clone()),
        ));
    }
    for u in opts
        .listen_client_http_urls
        .iter()
        .chain(opts.listen_metrics_urls.iter())
    {
        let b = listener::bind(u, client_tls.as_ref(), opts.socket).await?;
        bound_all.push((b, http.clone().into()));
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
    if publish(&server, &opts.advertise_client_urls, removed.clone()).await {
        tracing::info!(
            local_member_id = %format!("{id:x}"),
            client_urls = %opts.advertise_client_urls.join(","),
            "published local member to cluster through raft"
        );
        tracing::info!("ready to serve client requests");
        readiness::ready("serving client requests");
        readiness::spawn_watchdog();
    }
    Ok(Running {
        server,
        client_urls,
        shutdown_tx,
        tasks,
        raft_thread: Some(raft_thread),
        transport,
        removed,
    })
}

/// Publishes this member's attributes through raft, retrying until it is applied
/// (true) or the member learns it was removed from the cluster (false: it never
/// becomes ready, and the caller stops it on `removed`).
async fn publish(
    server: &EtcdServer,
    client_urls: &[String],
    mut removed: watch::Receiver<bool>,
) -> bool {
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            r = server.publish(client_urls.to_vec()) => r,
            Ok(_) = removed.wait_for(|r| *r) => return false,
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                attempt += 1;
                if attempt % 10 == 1 {
                    tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Server-side TLS for the peer listeners: the given files, or a self-signed pair
/// with `--peer-auto-tls`.
fn peer_server_tls(opts: &ServerOptions) -> Result<Option<TlsFiles>, ServerError> {
    let needs = opts.listen_peer_urls.iter().any(|u| u.scheme() == "https");
    if !needs || opts.peer_tls.is_some() || !opts.peer_auto_tls {
        if let (true, Some(t)) = (needs, &opts.peer_tls) {
            t.server_config()?;
        }
        return Ok(opts.peer_tls.clone());
    }
    let hosts: Vec<String> = opts
        .listen_peer_urls
        .iter()
        .filter_map(|u| u.host_str().map(str::to_string))
        .collect();
    let (cert, key) = tls::self_signed(
        &opts.data_dir.join("fixtures").join("peer"),
        &hosts,
        opts.self_signed_cert_validity,
    )?;
    tracing::warn!("automatically generated a self-signed peer certificate (--peer-auto-tls)");
    Ok(Some(TlsFiles {
        cert_file: cert,
        key_file: key,
        trusted_ca_file: None,
        client_cert_auth: false,
        min_version_13: false,
        max_version_12: false,
        cipher_suites: Vec::new(),
        allowed_cn: Vec::new(),
        crl_file: None,
        allowed_hostname: Vec::new(),
        check_client_san: false,
    }))
}

/// `--force-new-cluster` on a restart: the log is rewritten so that raft applies every
/// entry this member holds and then the removal of every other member at startup, and
/// this member elects itself. Its data, member id and cluster id stay.
fn force_standalone(
    opts: &ServerOptions,
    id: u64,
    log: &LogStore,
    applied: u64,
) -> Result<(), ServerError> {
    let me = StoredMember {
        id,
        name: opts.name.clone(),
        peer_urls: opts.initial_advertise_peer_urls.clone(),
        ..Default::default()
    };
    let err = |e: crate::raft::LogStoreError| ServerError::Bootstrap(e.to_string());
    log.ensure_commit_covers(applied).map_err(err)?;
    let forced = log
        .force_standalone(id, prost::Message::encode_to_vec(&me))
        .map_err(err)?;
    tracing::warn!(
        member_id = %format!("{id:x}"),
        removed = ?forced.removed.iter().map(|r| format!("{r:x}")).collect::<Vec<_>>(),
        added_self = forced.added_self,
        commit_index = forced.commit,
        applied_index = applied,
        entries_past_recorded_commit = forced.past_commit,
        "forcing restart as a one-member cluster (--force-new-cluster); remove the flag once \
         the cluster is running again"
    );
    Ok(())
}

/// What this member presents when it calls its peers over `https`.
fn peer_client_tls(opts: &ServerOptions, server: Option<&TlsFiles>) -> Option<PeerClientTls> {
    let (cert, key) = match (&opts.peer_client_cert, server) {
        (Some((c, k)), _) => (Some(c.clone()), Some(k.clone())),
        (None, Some(t)) => (Some(t.cert_file.clone()), Some(t.key_file.clone())),
        (None, None) => (None, None),
    };
    let trusted = server.and_then(|t| t.trusted_ca_file.clone());
    if cert.is_none() && trusted.is_none() && !opts.peer_auto_tls {
        return None;
    }
    Some(PeerClientTls {
        cert_file: cert,
        key_file: key,
        insecure_skip_verify: trusted.is_none() && opts.peer_auto_tls,
        trusted_ca_file: trusted,
    })
}

/// What the peer service serves from the member table: the members (for joining
/// members) and the removed IDs (whose raft messages are refused).
struct PeerDirectory(Arc<Membership>);

impl crate::raft::transport::MemberDirectory for PeerDirectory {
    fn members(&self) -> Vec<PeerMember> {
        self.0
            .records()
            .into_iter()
            .map(|m| PeerMember {
                id: m.id,
                name: m.name,
                peer_urls: m.peer_urls,
                client_urls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect()
    }

    fn is_removed(&self, id: u64) -> bool {
        self.0.is_removed(id)
    }
}

/// Every member but `me`, with its peer URLs.
fn peer_urls(members: &Membership, me: u64) -> impl Iterator<Item = (u64, Vec<String>)> {
    members
        .records()
        .into_iter()
        .filter(move |m| m.id != me)
        .map(|m| (m.id, m.peer_urls))
}

/// Makes the transport's peer table match the member table (everyone but `me`).
fn sync_peers(transport: &GrpcTransport, members: &Membership, me: u64) {
    let want: std::collections::HashMap<u64, Vec<String>> = peer_urls(members, me).collect();
    for id in transport.peers() {
        if !want.contains_key(&id) {
            transport.remove_peer(id);
        }
    }
    for (id, urls) in want {
        if let Err(e) = transport.update_peer(id, &urls) {
            tracing::warn!(peer = %format!("{id:x}"), error = %e, "cannot reach peer with these URLs");
        }
    }
}

async fn peer_sync_task(
    transport: GrpcTransport,
    members: Arc<Membership>,
    me: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = members.subscribe();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        sync_peers(&transport, &members, me);
    }
}

impl Running {
    /// Turns true when this member learns it was removed from the cluster: it applied
    /// its own removal (now or before a restart), or a peer refused its raft messages
    /// for that reason. The process should then shut down (etcd exits 0).
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.clone()
    }

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
        if let Err(e) = storage.flush() {
            tracing::error!(error = %e, "failed to flush the database on shutdown");
        }
        self.transport.shutdown();
        // Stop the raft loop and wait for its thread: it owns the state machine and the
        // log, and RocksDB must be closed (every handle dropped) before the process
        // exits, or its background threads race the C++ static destructors.
        self.server.raft().stop();
        drop(self.server);
        if let Some(t) = self.raft_thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            if tokio::time::timeout(Duration::from_secs(5), joined)
                .await
                .is_err()
            {
                tracing::warn!("the raft loop did not stop within 5s");
            }
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

/// How often waits for proposals are checked against the request timeout.
const WAIT_SWEEP: Duration = Duration::from_millis(100);

/// Ends the waits of proposals that were not applied within the request timeout
/// ("etcdserver: request timed out"): one registry sweep per [`WAIT_SWEEP`], instead of
/// a timer per request. Missed ticks are delayed, not burst, so a sweep round is never
/// shorter than the period and a wait never ends before the timeout.
async fn wait_sweep_task<T>(
    wait: Arc<WaitRegistry<T>>,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let rounds = timeout.as_millis().div_ceil(WAIT_SWEEP.as_millis()) as u64;
    let mut t = tokio::time::interval(WAIT_SWEEP);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = t.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let expired = wait.sweep(rounds);
        if expired > 0 {
            tracing::warn!(expired, "proposals not applied within the request timeout");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Waited;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_the_request_timeout_and_not_before() {
        let wait = Arc::new(WaitRegistry::<u32>::new(1));
        let (_stop, shutdown) = watch::channel(false);
        let timeout = Duration::from_millis(7_000);
        tokio::spawn(wait_sweep_task(wait.clone(), timeout, shutdown));
        // Registered between two sweeps, the worst case for being early.
        tokio::time::sleep(WAIT_SWEEP * 3 + WAIT_SWEEP / 2).await;
        let (early, mut rx) = wait.register();
        tokio::time::sleep(timeout - Duration::from_millis(1)).await;
        assert!(rx.try_recv().is_err(), "not ended before the timeout");
        assert!(wait.is_registered(early));
        tokio::time::sleep(WAIT_SWEEP + Duration::from_millis(1)).await;
        assert_eq!(rx.try_recv(), Ok(Waited::TimedOut));
        // An answered wait is not touched by later sweeps.
        let (answered, rx) = wait.register();
        assert!(wait.trigger(answered, 5));
        tokio::time::sleep(timeout * 2).await;
        assert_eq!(rx.await, Ok(Waited::Done(5)));
    }
}
