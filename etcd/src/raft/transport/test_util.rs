//! Shared helpers of the transport tests: recording inbox and reports, a served
//! `PeerService` on loopback port 0, a throwaway PKI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::raft::prelude::{Message, MessageType};
use tokio::sync::{mpsc, watch};
use url::Url;

use super::{DeliveryReports, PeerInbox, PeerMember, PeerService};
use crate::raft::RaftError;
use crate::server::{listener, TlsFiles};

/// Sends logs to the test's captured output (shown when a test fails).
pub(super) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "etcd=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Collects stepped messages.
pub(super) struct Inbox(pub(super) mpsc::UnboundedSender<Message>);

impl PeerInbox for Inbox {
    fn step(&self, msg: Message) -> Result<(), RaftError> {
        self.0.send(msg).map_err(|_| RaftError::Stopped)
    }
}

/// What a transport reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    Unreachable(u64),
    Snapshot(u64, bool),
}

/// Collects delivery reports.
pub(super) struct Reports(pub(super) mpsc::UnboundedSender<Report>);

impl DeliveryReports for Reports {
    fn report_unreachable(&self, id: u64) {
        let _ = self.0.send(Report::Unreachable(id));
    }
    fn report_snapshot(&self, id: u64, success: bool) {
        let _ = self.0.send(Report::Snapshot(id, success));
    }
}

/// A served peer service; dropping it leaves the server running until `stop`.
pub(super) struct Served {
    pub(super) url: Url,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Stops the listener and ends open streams.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds a loopback listener on port 0 (`https` with `tls`).
pub(super) async fn bind(tls: Option<&TlsFiles>) -> listener::Bound {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = Url::parse(&format!("{scheme}://127.0.0.1:0")).unwrap();
    listener::bind(&url, tls, Default::default()).await.unwrap()
}

/// Serves `svc` on an already bound listener.
pub(super) fn serve_bound(svc: PeerService, bound: listener::Bound) -> Served {
    let url = bound.local_url();
    let (stop, stop_rx) = watch::channel(false);
    let router = svc.with_shutdown(stop_rx.clone()).into_router();
    let task = tokio::spawn(listener::serve(
        bound,
        router,
        stop_rx,
        Duration::from_millis(200),
    ));
    Served { url, stop, task }
}

/// Serves `svc` on loopback port 0 (`https` with `tls`).
pub(super) async fn serve(svc: PeerService, tls: Option<&TlsFiles>) -> Served {
    serve_bound(svc, bind(tls).await)
}

/// A service for member `id` of cluster `cluster` recording into a fresh inbox.
pub(super) fn recording_service(
    id: u64,
    cluster: u64,
) -> (PeerService, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let members = move || {
        vec![PeerMember {
            id,
            name: format!("m{id}"),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: false,
        }]
    };
    (PeerService::new(id, cluster, Inbox(tx), members), rx)
}

/// A member directory that knows no members and reports the given IDs removed.
pub(super) struct RemovedIds(pub(super) Vec<u64>);

impl super::MemberDirectory for RemovedIds {
    fn members(&self) -> Vec<PeerMember> {
        Vec::new()
    }
    fn is_removed(&self, id: u64) -> bool {
        self.0.contains(&id)
    }
}

/// A service for member `id` of cluster `cluster` that refuses the members in
/// `removed`, recording into a fresh inbox.
pub(super) fn service_refusing(
    id: u64,
    cluster: u64,
    removed: Vec<u64>,
) -> (PeerService, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        PeerService::new(id, cluster, Inbox(tx), RemovedIds(removed)),
        rx,
    )
}

/// A heartbeat from `from` to `to` numbered by its commit field.
pub(super) fn numbered(from: u64, to: u64, n: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.commit = n;
    m
}

/// Receives the next item within `secs` seconds.
pub(super) async fn recv_within<T>(rx: &mut mpsc::UnboundedReceiver<T>, secs: u64) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .ok()
        .flatten()
}

/// A CA and certificates it signs, written to a directory.
pub(super) struct Pki {
    dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub(super) ca_file: PathBuf,
    issued: std::sync::atomic::AtomicUsize,
}

impl Pki {
    /// A fresh CA named `name` in `dir`.
    pub(super) fn new(dir: &Path, name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_file,
            issued: Default::default(),
        }
    }

    /// A certificate for 127.0.0.1/localhost with subject CN `cn`: (cert, key) files.
    pub(super) fn issue(&self, cn: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cert_file = self.dir.join(format!("{cn}-{n}.pem"));
        let key_file = self.dir.join(format!("{cn}-{n}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    /// Server-side TLS for member `cn` requiring client certificates from this CA.
    pub(super) fn server_tls(&self, cn: &str, allowed_cn: &[&str]) -> TlsFiles {
        let (cert_file, key_file) = self.issue(cn);
        TlsFiles {
            cert_file,
            key_file,
            trusted_ca_file: Some(self.ca_file.clone()),
            client_cert_auth: true,
            allowed_cn: allowed_cn.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Client-side TLS for member `cn` trusting this CA.
    pub(super) fn client_tls(&self, cn: &str) -> super::PeerClientTls {
        let (cert, key) = self.issue(cn);
        super::PeerClientTls {
            cert_file: Some(cert),
            key_file: Some(key),
            trusted_ca_file: Some(self.ca_file.clone()),
            insecure_skip_verify: false,
        }
    }
}
