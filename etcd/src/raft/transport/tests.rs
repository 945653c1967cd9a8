//! Transport tests against real `PeerService`s on loopback: ordering, cluster-ID
//! refusal, unreachable reports, chunked snapshots, membership updates, TLS.

use std::time::Duration;

use ::raft::prelude::{Message, MessageType};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::test_util::{
    init_tracing, numbered, recording_service, recv_within, serve, service_refusing, Pki, Report,
    Reports,
};
use super::{
    fetch_hash_kv, fetch_members, GrpcTransport, PeerClientTls, TransportError, TransportOptions,
};
use crate::proto::etcdpeer::peer_client::PeerClient;
use crate::raft::Transport as _;

const CLUSTER: u64 = 0xc1;

fn transport(
    id: u64,
    cluster: u64,
    tls: Option<PeerClientTls>,
) -> (GrpcTransport, mpsc::UnboundedReceiver<Report>) {
    init_tracing();
    let opts = TransportOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let t = GrpcTransport::new(id, cluster, tls, opts).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    t.attach(Reports(tx));
    (t, rx)
}

/// A loopback URL nothing listens on.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

async fn expect_report(rx: &mut mpsc::UnboundedReceiver<Report>, want: Report) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(r)) if r == want => return,
            Ok(Some(_)) => continue,
            _ => panic!("no {want:?} reported"),
        }
    }
}

#[tokio::test]
async fn delivers_in_order_to_each_peer() {
    let (s2, mut in2) = recording_service(2, CLUSTER);
    let (s3, mut in3) = recording_service(3, CLUSTER);
    let (s2, s3) = (serve(s2, None).await, serve(s3, None).await);
    let (mut t, _reports) = transport(1, CLUSTER, None);
    t.add_peer(2, &[s2.url.to_string()]).unwrap();
    t.add_peer(3, &[s3.url.to_string()]).unwrap();
    const N: u64 = 2000;
    for batch in 0..N / 100 {
        let msgs: Vec<Message> = (batch * 100..(batch + 1) * 100)
            .flat_map(|n| [numbered(1, 2, n), numbered(1, 3, n)])
            .collect();
        t.send(msgs);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for inbox in [&mut in2, &mut in3] {
        for n in 0..N {
            let m = recv_within(inbox, 5).await.expect("message delivered");
            assert_eq!(m.commit, n, "in order");
            assert_eq!(m.from, 1);
        }
    }
    let st = t.stats(2).unwrap();
    assert_eq!((st.sent, st.dropped), (N, 0));
    assert!(st.connected);
    t.shutdown();
    s2.stop().await;
    s3.stop().await;
}

#[tokio::test]
async fn refuses_another_cluster() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;

    // The RPC itself: FailedPrecondition with etcd's message and our cluster ID.
    let mut client = PeerClient::connect(served.url.to_string()).await.unwrap();
    let env = super::codec::envelope(0xbad, &numbered(1, 2, 1)).unwrap();
    let err = client
        .raft(futures::stream::iter(vec![env]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.message(), "etcdserver: cluster ID mismatch");
    assert_eq!(
        err.metadata().get("x-etcd-cluster-id").unwrap(),
        &format!("{CLUSTER:x}")
    );

    // Through the transport: nothing delivered, the peer reported unreachable.
    let (mut t, mut reports) = transport(1, 0xbad, None);
    t.add_peer(2, &[served.url.to_string()]).unwrap();
    t.send(vec![numbered(1, 2, 1)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    assert!(
        recv_within(&mut inbox, 1).await.is_none(),
        "nothing stepped"
    );
    assert!(t.stats(2).unwrap().failures >= 1);
    t.shutdown();
    served.stop().await;
}

#[tokio::test]
async fn refuses_a_removed_member_which_then_learns_it() {
    let (svc, mut inbox) = service_refusing(2, CLUSTER, vec![1]);
    let served = serve(svc, None).await;

    // The RPC itself: FailedPrecondition with etcd's words and the sender's ID.
    let mut client = PeerClient::connect(served.url.to_string()).await.unwrap();
    let env = super::codec::envelope(CLUSTER, &numbered(1, 2, 1)).unwrap();
    let err = client
        .raft(futures::stream::iter(vec![env]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "the member has been permanently removed from the cluster"
    );
    assert_eq!(err.metadata().get("x-etcd-member-removed").unwrap(), "1");
    // A member that was not removed is served.
    let env = super::codec::envelope(CLUSTER, &numbered(3, 2, 7)).unwrap();
    client.raft(futures::stream::iter(vec![env])).await.unwrap();
    assert_eq!(recv_within(&mut inbox, 2).await.unwrap().commit, 7);

    // Through the transport: the removed member's removal signal turns true and
    // nothing it sent is stepped.
    let (mut t, _reports) = transport(1, CLUSTER, None);
    let (signal, mut removed) = tokio::sync::watch::channel(false);
    t.signal_removal(signal);
    t.add_peer(2, &[served.url.to_string()]).unwrap();
    t.send(vec![numbered(1, 2, 1)]);
    tokio::time::timeout(Duration::from_secs(5), removed.wait_for(|r| *r))
        .await
        .expect("the refusal is signalled")
        .unwrap();
    assert!(
        recv_within(&mut inbox, 1).await.is_none(),
        "nothing stepped"
    );

    // A cluster-ID refusal is not a removal.
    let (mut other, mut reports) = transport(1, 0xbad, None);
    let (signal, removed) = tokio::sync::watch::channel(false);
    other.signal_removal(signal);
    other.add_peer(2, &[served.url.to_string()]).unwrap();
    other.send(vec![numbered(1, 2, 1)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    assert!(!*removed.borrow());
    t.shutdown();
    other.shutdown();
    served.stop().await;
}

#[tokio::test]
async fn ignores_messages_for_another_member() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let mut client = PeerClient::connect(served.url.to_string()).await.unwrap();
    let envs = vec![
        super::codec::envelope(CLUSTER, &numbered(1, 9, 1)).unwrap(),
        super::codec::envelope(CLUSTER, &numbered(1, 2, 2)).unwrap(),
    ];
    client.raft(futures::stream::iter(envs)).await.unwrap();
    assert_eq!(recv_within(&mut inbox, 2).await.unwrap().commit, 2);
    assert!(recv_within(&mut inbox, 1).await.is_none());
    served.stop().await;
}

#[tokio::test]
async fn unreachable_peer_is_reported() {
    let (mut t, mut reports) = transport(1, CLUSTER, None);
    t.add_peer(2, &[dead_url().await]).unwrap();
    t.send(vec![numbered(1, 2, 1)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    let mut snap = numbered(1, 2, 2);
    snap.set_msg_type(MessageType::MsgSnapshot);
    t.send(vec![snap]);
    expect_report(&mut reports, Report::Snapshot(2, false)).await;
    let st = t.stats(2).unwrap();
    assert!(
        st.dropped >= 1 && st.failures >= 1 && !st.connected,
        "{st:?}"
    );

    // Unknown peers: dropped, and a snapshot to one is reported failed.
    let mut snap = numbered(1, 7, 2);
    snap.set_msg_type(MessageType::MsgSnapshot);
    t.send(vec![snap]);
    expect_report(&mut reports, Report::Snapshot(7, false)).await;
    t.shutdown();
}

#[tokio::test]
async fn full_queue_drops_without_blocking() {
    // A peer that accepts TCP but never speaks HTTP/2: the task hangs connecting.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (t, mut reports) = {
        let opts = TransportOptions {
            queue_size: 2,
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let t = GrpcTransport::new(1, CLUSTER, None, opts).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        t.attach(Reports(tx));
        (t, rx)
    };
    t.add_peer(2, &[url]).unwrap();
    let mut sender = t.clone();
    let started = std::time::Instant::now();
    for n in 0..50 {
        sender.send(vec![numbered(1, 2, n)]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "send never blocks"
    );
    assert!(t.stats(2).unwrap().dropped >= 47);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    t.shutdown();
}

#[tokio::test]
async fn large_snapshot_arrives_intact() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let (mut t, mut reports) = transport(1, CLUSTER, None);
    t.add_peer(2, &[served.url.to_string()]).unwrap();

    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut snap = Message::default();
    snap.set_msg_type(MessageType::MsgSnapshot);
    snap.from = 1;
    snap.to = 2;
    snap.term = 3;
    snap.mut_snapshot().mut_metadata().index = 1234;
    snap.mut_snapshot().mut_metadata().term = 3;
    snap.mut_snapshot().data = Bytes::from(data);
    // Ordinary traffic around it keeps flowing.
    t.send(vec![numbered(1, 2, 1), snap.clone(), numbered(1, 2, 2)]);

    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(recv_within(&mut inbox, 10).await.expect("delivered"));
    }
    let received = got
        .iter()
        .find(|m| m.get_msg_type() == MessageType::MsgSnapshot)
        .unwrap();
    assert_eq!(received, &snap, "snapshot arrives intact");
    let beats: Vec<u64> = got
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgHeartbeat)
        .map(|m| m.commit)
        .collect();
    assert_eq!(beats, vec![1, 2]);
    expect_report(&mut reports, Report::Snapshot(2, true)).await;
    t.shutdown();
    served.stop().await;
}

#[tokio::test]
async fn snapshot_stream_must_be_complete() {
    use crate::proto::etcdpeer::{snapshot_chunk::Chunk, SnapshotChunk};
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let mut client = PeerClient::connect(served.url.to_string()).await.unwrap();
    let mut snap = numbered(1, 2, 0);
    snap.set_msg_type(MessageType::MsgSnapshot);
    snap.mut_snapshot().data = Bytes::from(vec![7u8; 100]);
    let mut chunks = super::codec::snapshot_chunks(CLUSTER, snap, 30).unwrap();
    chunks.pop();
    let err = client
        .snapshot(futures::stream::iter(chunks))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let only_data = vec![SnapshotChunk {
        chunk: Some(Chunk::Data(Bytes::from_static(b"x"))),
    }];
    let err = client
        .snapshot(futures::stream::iter(only_data))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(recv_within(&mut inbox, 1).await.is_none());
    served.stop().await;
}

#[tokio::test]
async fn peers_can_be_updated_and_removed() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let (mut t, mut reports) = transport(1, CLUSTER, None);
    assert!(
        t.add_peer(1, &[served.url.to_string()]).is_err(),
        "not itself"
    );
    assert!(t.add_peer(2, &["unix:///x".to_string()]).is_err());
    assert!(t.add_peer(2, &[]).is_err(), "needs a URL");
    assert!(t.peers().is_empty());
    t.add_peer(2, &[dead_url().await]).unwrap();
    t.send(vec![numbered(1, 2, 1)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;

    t.update_peer(2, &[served.url.to_string()]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let got = loop {
        t.send(vec![numbered(1, 2, 2)]);
        if let Some(m) = recv_within(&mut inbox, 1).await {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivered after update"
        );
    };
    assert_eq!(got.commit, 2);
    assert_eq!(t.peers(), vec![2]);

    assert!(t.remove_peer(2));
    assert!(!t.remove_peer(2));
    assert!(t.stats(2).is_none());
    t.send(vec![numbered(1, 2, 3)]);
    assert!(
        recv_within(&mut inbox, 1).await.is_none(),
        "removed peer gets nothing"
    );
    t.shutdown();
    assert!(matches!(
        t.add_peer(2, &[served.url.to_string()]),
        Err(TransportError::Stopped)
    ));
    served.stop().await;
}

#[tokio::test]
async fn messages_queued_before_a_removal_are_delivered() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let (mut t, _reports) = transport(1, CLUSTER, None);
    t.add_peer(2, &[served.url.to_string()]).unwrap();
    // Queued and removed before the peer's task ran at all (one-thread runtime).
    t.send((0..50).map(|n| numbered(1, 2, n)).collect());
    assert!(t.remove_peer(2));
    for n in 0..50 {
        let m = recv_within(&mut inbox, 5)
            .await
            .expect("queued before the removal, so delivered");
        assert_eq!(m.commit, n, "in order");
    }
    t.send(vec![numbered(1, 2, 50)]);
    assert!(
        recv_within(&mut inbox, 1).await.is_none(),
        "nothing queued after the removal"
    );
    t.shutdown();
    served.stop().await;
}

#[tokio::test]
async fn members_are_served() {
    let (svc, _inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let resp = fetch_members(served.url.as_str(), None, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(resp.cluster_id, CLUSTER);
    assert_eq!(resp.members.len(), 1);
    assert_eq!(resp.members[0].id, 2);
    assert_eq!(resp.members[0].name, "m2");
    let dead = fetch_members(&dead_url().await, None, Duration::from_millis(500)).await;
    assert!(dead.is_err());
    served.stop().await;
}

/// A hash is asked of a member of this cluster only; a peer service without a store
/// (here: no desk) refuses rather than answering a hash of nothing.
#[tokio::test]
async fn hash_requests_check_the_cluster_and_need_a_store() {
    let (svc, _inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let t = Duration::from_secs(2);
    let other = fetch_hash_kv(served.url.as_str(), None, CLUSTER + 1, 0, t)
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition);
    assert!(other.message().contains("cluster ID mismatch"), "{other:?}");
    let no_store = fetch_hash_kv(served.url.as_str(), None, CLUSTER, 0, t)
        .await
        .unwrap_err();
    assert_eq!(no_store.code(), tonic::Code::Unimplemented);
    let dead = fetch_hash_kv(
        &dead_url().await,
        None,
        CLUSTER,
        0,
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert_eq!(dead.code(), tonic::Code::Unavailable);
    served.stop().await;
}

#[tokio::test]
async fn stopping_the_service_ends_open_streams() {
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, None).await;
    let (mut t, mut reports) = transport(1, CLUSTER, None);
    t.add_peer(2, &[served.url.to_string()]).unwrap();
    t.send(vec![numbered(1, 2, 1)]);
    assert!(recv_within(&mut inbox, 5).await.is_some());
    let started = std::time::Instant::now();
    served.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no wait for the stream"
    );
    expect_report(&mut reports, Report::Unreachable(2)).await;
    t.shutdown();
}

#[tokio::test]
async fn mutual_tls_needs_a_trusted_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let other = Pki::new(dir.path(), "other");
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, Some(&pki.server_tls("member-2", &[]))).await;
    assert_eq!(served.url.scheme(), "https");

    // A member certificate from the cluster CA: delivered.
    let (mut good, _r) = transport(1, CLUSTER, Some(pki.client_tls("member-1")));
    good.add_peer(2, &[served.url.to_string()]).unwrap();
    good.send(vec![numbered(1, 2, 1)]);
    assert_eq!(recv_within(&mut inbox, 5).await.unwrap().commit, 1);
    good.shutdown();

    // No client certificate, or one from another CA: refused, reported unreachable.
    let anonymous = PeerClientTls {
        cert_file: None,
        key_file: None,
        trusted_ca_file: Some(pki.ca_file.clone()),
        insecure_skip_verify: false,
    };
    let foreign = PeerClientTls {
        trusted_ca_file: Some(pki.ca_file.clone()),
        ..other.client_tls("member-1")
    };
    for tls in [anonymous, foreign] {
        let (mut bad, mut reports) = transport(1, CLUSTER, Some(tls));
        bad.add_peer(2, &[served.url.to_string()]).unwrap();
        bad.send(vec![numbered(1, 2, 2)]);
        expect_report(&mut reports, Report::Unreachable(2)).await;
        assert!(recv_within(&mut inbox, 1).await.is_none(), "not delivered");
        bad.shutdown();
    }

    // The server certificate must chain to the CA the client trusts.
    let (mut wrong_ca, mut reports) = transport(1, CLUSTER, Some(other.client_tls("member-1")));
    wrong_ca.add_peer(2, &[served.url.to_string()]).unwrap();
    wrong_ca.send(vec![numbered(1, 2, 3)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    assert!(recv_within(&mut inbox, 1).await.is_none());
    wrong_ca.shutdown();

    // https without client TLS settings cannot connect at all.
    let (mut plain, mut reports) = transport(1, CLUSTER, None);
    plain.add_peer(2, &[served.url.to_string()]).unwrap();
    plain.send(vec![numbered(1, 2, 4)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    plain.shutdown();
    served.stop().await;
}

#[tokio::test]
async fn allowed_cn_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let (svc, mut inbox) = recording_service(2, CLUSTER);
    let served = serve(svc, Some(&pki.server_tls("member-2", &["member-1"]))).await;

    let (mut allowed, _r) = transport(1, CLUSTER, Some(pki.client_tls("member-1")));
    allowed.add_peer(2, &[served.url.to_string()]).unwrap();
    allowed.send(vec![numbered(1, 2, 1)]);
    assert_eq!(recv_within(&mut inbox, 5).await.unwrap().commit, 1);
    allowed.shutdown();

    let (mut denied, mut reports) = transport(3, CLUSTER, Some(pki.client_tls("member-3")));
    denied.add_peer(2, &[served.url.to_string()]).unwrap();
    denied.send(vec![numbered(3, 2, 2)]);
    expect_report(&mut reports, Report::Unreachable(2)).await;
    assert!(recv_within(&mut inbox, 1).await.is_none(), "CN not allowed");
    denied.shutdown();
    served.stop().await;
}

#[test]
fn client_tls_files_are_reread_per_build() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let tls = pki.client_tls("member-1");
    let cfg = tls.client_config().unwrap();
    assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
    let no_ca = PeerClientTls {
        trusted_ca_file: None,
        ..tls.clone()
    };
    assert!(no_ca.client_config().is_err(), "needs a CA or insecure");
    let insecure = PeerClientTls {
        insecure_skip_verify: true,
        ..no_ca
    };
    assert!(insecure.client_config().is_ok());
    std::fs::write(tls.cert_file.as_ref().unwrap(), "garbage").unwrap();
    assert!(tls.client_config().is_err(), "files are read again");
}
