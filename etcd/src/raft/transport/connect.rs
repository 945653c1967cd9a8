//! Dialing a peer: plain HTTP/2 or HTTP/2 over rustls (ALPN `h2`), with the TLS files
//! re-read for every new connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};
use url::Url;

use super::TransportError;
use crate::proto::etcdpeer::{
    peer_client::PeerClient, MembersRequest, MembersResponse, PeerHashKvRequest, PeerHashKvResponse,
};

/// Tuning of the sending side. [`Default`] gives the values the server uses.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Messages queued per peer before new ones are dropped.
    pub queue_size: usize,
    /// Time allowed to establish a connection (TCP + TLS + HTTP/2).
    pub connect_timeout: Duration,
    /// First wait after a failed connection; doubles per failure.
    pub backoff_min: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
    /// HTTP/2 ping interval on idle and busy connections (detects dead peers).
    pub keepalive_interval: Duration,
    /// A ping unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Snapshot data bytes per chunk of the `Snapshot` RPC.
    pub snapshot_chunk_size: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_size: 4096,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(4),
            snapshot_chunk_size: 1024 * 1024,
        }
    }
}

/// TLS of this member when it connects to peers (https peer URLs).
#[derive(Debug, Clone, Default)]
pub struct PeerClientTls {
    /// Certificate presented to peers (`--peer-client-cert-file`, else
    /// `--peer-cert-file`); `None` presents none.
    pub cert_file: Option<PathBuf>,
    /// Its key (`--peer-client-key-file`, else `--peer-key-file`).
    pub key_file: Option<PathBuf>,
    /// CA bundle peers' certificates must chain to (`--peer-trusted-ca-file`).
    pub trusted_ca_file: Option<PathBuf>,
    /// Accept any server certificate (peers with `--peer-auto-tls` self-signed ones).
    pub insecure_skip_verify: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TransportError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?
        .ok_or_else(|| TransportError::Tls(format!("{}: no private key found", path.display())))
}

impl PeerClientTls {
    /// Builds a rustls client configuration from the files as they are now: trusts
    /// `trusted_ca_file` (or nothing but `insecure_skip_verify`), presents the client
    /// certificate if one is configured, offers ALPN `h2`.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            let Some(ca) = &self.trusted_ca_file else {
                return Err(TransportError::Tls(
                    "https peer URLs need --peer-trusted-ca-file (or --peer-auto-tls)".into(),
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TransportError::Tls(format!("{}: {e}", ca.display())))?;
            }
            builder.with_root_certificates(roots)
        };
        let mut cfg = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(certs(c)?, key(k)?)
                .map_err(|e| TransportError::Tls(e.to_string()))?,
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TransportError::Tls(
                    "a peer client certificate needs both a cert and a key file".into(),
                ))
            }
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Accepts any server certificate (still checking the handshake signature).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks that `raw` is a usable peer URL (`http` or `https` with a host).
pub(super) fn parse_peer_url(raw: &str) -> Result<Url, TransportError> {
    let url = Url::parse(raw).map_err(|e| TransportError::BadUrl(raw.into(), e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TransportError::BadUrl(
            raw.into(),
            "peer URLs must be http or https".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(TransportError::BadUrl(raw.into(), "no host".into()));
    }
    Ok(url)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Opens an HTTP/2 channel to the peer at `url`. An `https` URL needs `tls`; its
/// files are read again for every connection the channel makes.
pub(super) async fn connect(
    url: &Url,
    tls: Option<&PeerClientTls>,
    opts: &TransportOptions,
) -> Result<Channel, TransportError> {
    let bad = |why: &str| TransportError::BadUrl(url.to_string(), why.into());
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    let tls = match url.scheme() {
        "http" => None,
        "https" => Some(
            tls.cloned()
                .ok_or_else(|| bad("https peer URL but no peer TLS configured"))?,
        ),
        _ => return Err(bad("peer URLs must be http or https")),
    };
    // The URI only names the authority: TLS (if any) is done by the connector below,
    // so tonic is told `http` to keep it from insisting on its own TLS.
    let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(opts.connect_timeout)
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let tls = tls.clone();
        let bare = bare.clone();
        async move {
            let tcp = TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let cfg = tls.client_config().map_err(std::io::Error::other)?;
                    let name = ServerName::try_from(bare).map_err(std::io::Error::other)?;
                    let s = tokio_rustls::TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await?;
                    Box::new(s)
                }
            };
            Ok::<_, std::io::Error>(TokioIo::new(io))
        }
    });
    // The connect timeout covers TCP and TLS; this one also covers the HTTP/2
    // handshake, so a peer that accepts connections but never answers cannot hang
    // the caller.
    match tokio::time::timeout(
        opts.connect_timeout * 2,
        endpoint.connect_with_connector(connector),
    )
    .await
    {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(TransportError::Connect(url.to_string(), error_chain(&e))),
        Err(_) => Err(TransportError::Connect(url.to_string(), "timed out".into())),
    }
}

/// An error and its sources on one line (tonic's top-level message is just
/// "transport error").
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A client of the peer service at `url` for a single call, connected within `timeout`
/// (no channel is kept).
async fn one_call_client(
    url: &Url,
    tls: Option<&PeerClientTls>,
    timeout: Duration,
) -> Result<PeerClient<Channel>, TransportError> {
    let opts = TransportOptions {
        connect_timeout: timeout,
        ..Default::default()
    };
    Ok(PeerClient::new(connect(url, tls, &opts).await?))
}

/// Asks the member at peer URL `url` (of cluster `cluster_id`) for its key-value
/// store's hash at `revision`, as a starting member's initial corruption check does.
/// The member's refusal is its status (etcd's message, such as a compacted or future
/// revision); an unreachable member is `Unavailable`, no answer within `timeout`
/// `DeadlineExceeded`.
pub async fn fetch_hash_kv(
    url: &str,
    tls: Option<&PeerClientTls>,
    cluster_id: u64,
    revision: i64,
    timeout: Duration,
) -> Result<PeerHashKvResponse, tonic::Status> {
    let url = parse_peer_url(url).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let work = async {
        let mut client = one_call_client(&url, tls, timeout)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = PeerHashKvRequest {
            cluster_id,
            revision,
        };
        Ok(client.hash_kv(req).await?.into_inner())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded(format!("{url}: timed out")))?
}

/// Asks the member at `url` (a peer URL) for the cluster ID and member list, as a
/// member joining a running cluster does. Fails after `timeout`.
pub async fn fetch_members(
    url: &str,
    tls: Option<&PeerClientTls>,
    timeout: Duration,
) -> Result<MembersResponse, TransportError> {
    let url = parse_peer_url(url)?;
    let work = async {
        let mut client = one_call_client(&url, tls, timeout).await?;
        Ok(client.members(MembersRequest {}).await?.into_inner())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| TransportError::Connect(url.to_string(), "timed out".into()))?
}
