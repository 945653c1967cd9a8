//! Three real raft loops (RocksDB-backed logs, a recording state machine) connected
//! by `GrpcTransport`s and `PeerService`s over loopback, plain and with mutual TLS:
//! election, replication in one order, fail-over when the leader goes away.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::test_util::{bind, init_tracing, serve_bound, Pki, Served};
use super::{GrpcTransport, PeerService, TransportOptions};
use crate::raft::{LogStore, RaftConfig, RaftError, RaftHandle, StateMachine};
use crate::storage::Storage;

const CLUSTER: u64 = 0x5eed;
const IDS: [u64; 3] = [1, 2, 3];

/// Applied entries as (index, data), shared with the test.
type AppliedLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Records applied entries (index, data) and the tags of dropped proposals.
#[derive(Clone, Default)]
struct Recorder {
    applied: AppliedLog,
    dropped: Arc<Mutex<Vec<u64>>>,
    index: u64,
}

impl StateMachine for Recorder {
    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) {
        self.applied.lock().unwrap().push((index, data.to_vec()));
        self.index = index;
    }
    fn apply_noop(&mut self, index: u64) {
        self.index = index;
    }
    fn applied_index(&self) -> u64 {
        self.index
    }
    fn proposal_dropped(&mut self, tag: u64, _err: RaftError) {
        self.dropped.lock().unwrap().push(tag);
    }
}

struct Member {
    id: u64,
    raft: RaftHandle,
    transport: GrpcTransport,
    served: Option<Served>,
    applied: AppliedLog,
    dropped: Arc<Mutex<Vec<u64>>>,
    _dir: tempfile::TempDir,
}

impl Member {
    fn data(&self) -> Vec<Vec<u8>> {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Cuts the member off: its transport stops, its peer listener closes.
    async fn isolate(&mut self) {
        self.transport.shutdown();
        if let Some(s) = self.served.take() {
            s.stop().await;
        }
    }
}

/// Starts three members; with `pki`, peers talk mutual TLS.
async fn start_cluster(pki: Option<&Pki>) -> Vec<Member> {
    init_tracing();
    // Bind first (port 0) so every member knows the others' URLs.
    let mut bound = Vec::new();
    let mut client_tls = Vec::new();
    for id in IDS {
        let cn = format!("member-{id}");
        let server_tls = pki.map(|p| p.server_tls(&cn, &[]));
        client_tls.push(pki.map(|p| p.client_tls(&cn)));
        bound.push(bind(server_tls.as_ref()).await);
    }
    let urls: Vec<String> = bound.iter().map(|b| b.local_url().to_string()).collect();
    let mut members = Vec::new();
    for ((id, b), tls) in IDS.into_iter().zip(bound).zip(client_tls) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let (log, fresh) = LogStore::open(&dir.path().join("wal"), storage, &IDS).unwrap();
        assert!(fresh);
        let opts = TransportOptions {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_millis(500),
            keepalive_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let transport = GrpcTransport::new(id, CLUSTER, tls, opts).unwrap();
        for (peer, url) in IDS.iter().zip(&urls) {
            if *peer != id {
                transport
                    .add_peer(*peer, std::slice::from_ref(url))
                    .unwrap();
            }
        }
        let sm = Recorder::default();
        let applied = sm.applied.clone();
        let dropped = sm.dropped.clone();
        let cfg = RaftConfig {
            id,
            tick: Duration::from_millis(20),
            election_ticks: 10,
            pre_vote: true,
            snapshot_count: 10_000,
            catchup_entries: 5_000,
            max_inflight: 1_000,
        };
        let (raft, _join) = crate::raft::start(cfg, log, sm, transport.clone(), false).unwrap();
        transport.attach(raft.clone());
        let svc = PeerService::new(id, CLUSTER, raft.clone(), Vec::new);
        members.push(Member {
            id,
            raft,
            transport,
            served: Some(serve_bound(svc, b)),
            applied,
            dropped,
            _dir: dir,
        });
    }
    members
}

/// Waits until every member in `live` agrees on one leader among them.
async fn agreed_leader(members: &[Member], live: &[u64], not: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<u64> = members
            .iter()
            .filter(|m| live.contains(&m.id))
            .map(|m| m.raft.status().leader())
            .collect();
        let l = leaders[0];
        if l != 0 && l != not && live.contains(&l) && leaders.iter().all(|&x| x == l) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader among {live:?}: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every member in `live` applied `want` (in that order).
async fn all_applied(members: &[Member], live: &[u64], want: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = members
            .iter()
            .filter(|m| live.contains(&m.id))
            .all(|m| m.data().len() >= want.len());
        if done {
            for m in members.iter().filter(|m| live.contains(&m.id)) {
                assert_eq!(m.data(), want, "member {} applied in order", m.id);
            }
            return;
        }
        assert!(Instant::now() < deadline, "entries not applied everywhere");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Proposes `data` on `leader` and waits until that member applied it.
async fn propose_on(members: &[Member], leader: u64, data: &[u8]) {
    static TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let m = members.iter().find(|m| m.id == leader).unwrap();
    let tag = TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    m.raft.propose(tag, data.to_vec()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.data().iter().any(|d| d == data) {
        assert!(
            !m.dropped.lock().unwrap().contains(&tag),
            "proposal dropped"
        );
        assert!(
            Instant::now() < deadline,
            "proposal not applied on the leader"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn elect_replicate_fail_over(pki: Option<&Pki>) {
    let mut members = start_cluster(pki).await;
    let leader = agreed_leader(&members, &IDS, 0).await;

    let mut want = Vec::new();
    for i in 0..20u32 {
        let d = format!("entry-{i}").into_bytes();
        propose_on(&members, leader, &d).await;
        want.push(d);
    }
    all_applied(&members, &IDS, &want).await;
    // Identical (index, data) on every member.
    let logs: Vec<_> = members
        .iter()
        .map(|m| m.applied.lock().unwrap().clone())
        .collect();
    assert!(logs.windows(2).all(|w| w[0] == w[1]));

    // The leader drops off the network: the other two elect one of themselves and
    // keep replicating.
    let old = members.iter_mut().find(|m| m.id == leader).unwrap();
    old.isolate().await;
    let live: Vec<u64> = IDS.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = agreed_leader(&members, &live, leader).await;
    assert_ne!(new_leader, leader);
    let d = b"after-failover".to_vec();
    propose_on(&members, new_leader, &d).await;
    want.push(d);
    all_applied(&members, &live, &want).await;

    for m in &mut members {
        m.isolate().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_and_fail_over() {
    elect_replicate_fail_over(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    elect_replicate_fail_over(Some(&pki)).await;
}

/// ReadIndex rounds issued at the same moment on every member (followers forward
/// theirs to the leader, which deduplicates rounds by context) all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_index_on_every_member_completes() {
    let mut members = start_cluster(None).await;
    let leader = agreed_leader(&members, &IDS, 0).await;
    propose_on(&members, leader, b"x").await;
    all_applied(&members, &IDS, &[b"x".to_vec()]).await;
    for _ in 0..5 {
        let rounds = members.iter().map(|m| {
            let raft = m.raft.clone();
            async move { tokio::time::timeout(Duration::from_secs(3), raft.read_index()).await }
        });
        for (i, r) in futures::future::join_all(rounds)
            .await
            .into_iter()
            .enumerate()
        {
            let index = r
                .unwrap_or_else(|_| panic!("read index on member {} timed out", IDS[i]))
                .unwrap();
            assert!(index >= 2, "read index {index} covers the committed entry");
        }
    }
    for m in &mut members {
        m.isolate().await;
    }
}
