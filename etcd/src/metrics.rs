//! Prometheus metrics under etcd's names. Counters and histograms are updated where the
//! work happens; gauges that mirror state are refreshed at scrape time by the server.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry every metric of this process is in (process collector included).
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        let _ = r.register(Box::new(pc));
    }
    r
});

fn reg<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    let _ = REGISTRY.register(Box::new(c.clone()));
    c
}

fn buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, n).unwrap_or_default()
}

macro_rules! gauge {
    ($name:ident, $metric:literal, $help:literal) => {
        #[doc = $help]
        pub static $name: LazyLock<IntGauge> =
            LazyLock::new(|| reg(IntGauge::new($metric, $help).unwrap_or_else(|_| unreachable!())));
    };
}
macro_rules! counter {
    ($name:ident, $metric:literal, $help:literal) => {
        #[doc = $help]
        pub static $name: LazyLock<IntCounter> = LazyLock::new(|| {
            reg(IntCounter::new($metric, $help).unwrap_or_else(|_| unreachable!()))
        });
    };
}

gauge!(
    HAS_LEADER,
    "etcd_server_has_leader",
    "Whether or not a leader exists. 1 is existence, 0 is not."
);
gauge!(
    IS_LEADER,
    "etcd_server_is_leader",
    "Whether or not this member is a leader. 1 if is, 0 otherwise."
);
counter!(
    LEADER_CHANGES,
    "etcd_server_leader_changes_seen_total",
    "The number of leader changes seen."
);
gauge!(
    PROPOSALS_COMMITTED,
    "etcd_server_proposals_committed_total",
    "The total number of consensus proposals committed."
);
gauge!(
    PROPOSALS_APPLIED,
    "etcd_server_proposals_applied_total",
    "The total number of consensus proposals applied."
);
gauge!(
    PROPOSALS_PENDING,
    "etcd_server_proposals_pending",
    "The current number of pending proposals to commit."
);

/// Counts a proposal as pending (`etcd_server_proposals_pending`) until dropped: made
/// by the proposer for as long as it waits for the result.
pub struct PendingProposal(());

impl PendingProposal {
    /// Counts one more pending proposal.
    pub fn start() -> Self {
        PROPOSALS_PENDING.inc();
        PendingProposal(())
    }
}

impl Drop for PendingProposal {
    fn drop(&mut self) {
        PROPOSALS_PENDING.dec();
    }
}
counter!(
    PROPOSALS_FAILED,
    "etcd_server_proposals_failed_total",
    "The total number of failed proposals seen."
);
gauge!(
    DB_TOTAL_SIZE,
    "etcd_mvcc_db_total_size_in_bytes",
    "Total size of the underlying database physically allocated in bytes."
);
gauge!(
    DB_IN_USE_SIZE,
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "Total size of the underlying database logically in use in bytes."
);
gauge!(
    QUOTA_BYTES,
    "etcd_server_quota_backend_bytes",
    "Current backend storage quota size in bytes."
);
gauge!(
    KEYS_TOTAL,
    "etcd_debugging_mvcc_keys_total",
    "Total number of keys."
);
gauge!(
    CURRENT_REVISION,
    "etcd_debugging_mvcc_current_revision",
    "The current revision of store."
);
gauge!(
    COMPACT_REVISION,
    "etcd_debugging_mvcc_compact_revision",
    "The revision of the last compaction in store."
);
gauge!(
    WATCHERS,
    "etcd_debugging_mvcc_watcher_total",
    "Total number of watchers."
);
gauge!(
    LEASES,
    "etcd_debugging_lease_total",
    "The number of leases."
);
counter!(
    HEARTBEAT_SEND_FAILURES,
    "etcd_server_heartbeat_send_failures_total",
    "The total number of leader heartbeat send failures (likely overloaded from slow disk)."
);
counter!(
    SLOW_READ_INDEXES,
    "etcd_server_slow_read_indexes_total",
    "The total number of pending read indexes not in sync with leader's or timed out read index requests."
);
counter!(
    READ_INDEXES_FAILED,
    "etcd_server_read_indexes_failed_total",
    "The total number of failed read indexes seen."
);
counter!(
    SLOW_APPLIES,
    "etcd_server_slow_apply_total",
    "The total number of slow apply requests (likely overloaded from slow disk)."
);
counter!(
    PUT_TOTAL,
    "etcd_mvcc_put_total",
    "Total number of puts seen by this member."
);
counter!(
    DELETE_TOTAL,
    "etcd_mvcc_delete_total",
    "Total number of deletes seen by this member."
);
counter!(
    TXN_TOTAL,
    "etcd_mvcc_txn_total",
    "Total number of txns seen by this member."
);
counter!(
    RANGE_TOTAL,
    "etcd_mvcc_range_total",
    "Total number of ranges seen by this member."
);

/// `etcd_disk_wal_fsync_duration_seconds`: latency of the synced raft log writes.
pub static WAL_FSYNC: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        )
        .buckets(buckets(0.001, 2.0, 14)),
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_disk_backend_commit_duration_seconds`: latency of apply writes.
pub static BACKEND_COMMIT: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        )
        .buckets(buckets(0.001, 2.0, 14)),
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_server_apply_duration_seconds{version,op,success}`: time to apply one committed
/// request to the state machine (etcd 3.5's buckets: 100 µs doubling 20 times).
pub static APPLY_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    reg(HistogramVec::new(
        HistogramOpts::new(
            "etcd_server_apply_duration_seconds",
            "The latency distributions of v2 apply called by backend.",
        )
        .buckets(buckets(0.0001, 2.0, 20)),
        &["version", "op", "success"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_server_version{server_version}` = 1.
pub static SERVER_VERSION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
        ),
        &["server_version"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_cluster_version{cluster_version}` = 1.
pub static CLUSTER_VERSION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
        ),
        &["cluster_version"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_network_snapshot_send_success{To}`: snapshots delivered to a peer.
pub static SNAPSHOT_SEND_SUCCESS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new(
            "etcd_network_snapshot_send_success",
            "Total number of successful snapshot sends",
        ),
        &["To"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_network_snapshot_send_failures{To}`: snapshots that did not reach a peer.
pub static SNAPSHOT_SEND_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new(
            "etcd_network_snapshot_send_failures",
            "Total number of snapshot send failures",
        ),
        &["To"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// `etcd_network_snapshot_receive_success{From}`: snapshots received from a peer.
pub static SNAPSHOT_RECEIVE_SUCCESS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new(
            "etcd_network_snapshot_receive_success",
            "Total number of successful snapshot receives",
        ),
        &["From"],
    )
    .unwrap_or_else(|_| unreachable!()))
});

/// Forces registration of every metric (so a scrape lists them all from the start).
pub fn init() {
    for g in [
        &HAS_LEADER,
        &IS_LEADER,
        &PROPOSALS_COMMITTED,
        &PROPOSALS_APPLIED,
        &PROPOSALS_PENDING,
        &DB_TOTAL_SIZE,
        &DB_IN_USE_SIZE,
        &QUOTA_BYTES,
        &KEYS_TOTAL,
        &CURRENT_REVISION,
        &COMPACT_REVISION,
        &WATCHERS,
        &LEASES,
    ] {
        LazyLock::force(g);
    }
    for c in [
        &LEADER_CHANGES,
        &PROPOSALS_FAILED,
        &SLOW_APPLIES,
        &SLOW_READ_INDEXES,
        &READ_INDEXES_FAILED,
        &HEARTBEAT_SEND_FAILURES,
        &PUT_TOTAL,
        &DELETE_TOTAL,
        &TXN_TOTAL,
        &RANGE_TOTAL,
    ] {
        LazyLock::force(c);
    }
    LazyLock::force(&WAL_FSYNC);
    LazyLock::force(&BACKEND_COMMIT);
    LazyLock::force(&APPLY_DURATION);
    LazyLock::force(&SERVER_VERSION);
    LazyLock::force(&CLUSTER_VERSION);
    LazyLock::force(&SNAPSHOT_SEND_SUCCESS);
    LazyLock::force(&SNAPSHOT_SEND_FAILURES);
    LazyLock::force(&SNAPSHOT_RECEIVE_SUCCESS);
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
