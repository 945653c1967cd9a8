//! Client listeners: gRPC (HTTP/2) and HTTP/1.1 on the same socket, plain, TLS or unix.
//! Sockets are bound first ([`bind`]) so failures surface at startup and tests can pass
//! port 0; serving starts later ([`serve`]). On shutdown, listeners stop accepting and
//! open connections finish their in-flight requests (bounded by a grace period).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use url::Url;

use super::coalesce::{Coalesce, CountPending, Pending};
use super::tls::TlsFiles;
use crate::api::auth::ClientCn;
use crate::api::dispatch::PortApp;

/// Errors binding listeners.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The URL cannot be listened on.
    #[error("invalid listen URL {0}: {1}")]
    BadUrl(String, String),
    /// Binding failed.
    #[error("listen {0}: {1}")]
    Bind(String, std::io::Error),
    /// https without certificates.
    #[error("{0}: TLS listener needs --cert-file/--key-file or --auto-tls")]
    NoTls(String),
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// The HTTP/2 settings of a listener's connections: etcd's gRPC server options
/// `--max-concurrent-streams`, `--grpc-keepalive-interval` and `--grpc-keepalive-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS announced to each client.
    pub max_concurrent_streams: u32,
    /// How long a connection may be idle before the server pings it.
    pub keepalive_interval: Duration,
    /// How long the server waits for the ping's answer before closing the connection.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Settings {
    /// grpc-go's (and so etcd's) defaults: no stream limit, a ping after 2 h idle,
    /// answered within 20 s.
    fn default() -> Self {
        Http2Settings {
            max_concurrent_streams: u32::MAX,
            keepalive_interval: Duration::from_secs(2 * 3600),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl Http2Settings {
    /// The settings of etcd's client gRPC server for these flag values. As in etcd, the
    /// keepalive pair applies only when both are above zero; otherwise the defaults do.
    pub fn from_flags(
        max_concurrent_streams: u32,
        keepalive_interval: Duration,
        keepalive_timeout: Duration,
    ) -> Self {
        let mut s = Http2Settings {
            max_concurrent_streams,
            ..Http2Settings::default()
        };
        if !keepalive_interval.is_zero() && !keepalive_timeout.is_zero() {
            s.keepalive_interval = keepalive_interval;
            s.keepalive_timeout = keepalive_timeout;
        }
        s
    }
}

/// Socket options of the TCP listeners: etcd's `--socket-reuse-port` and
/// `--socket-reuse-address`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// SO_REUSEPORT: other sockets with it may bind the same address and port (the
    /// kernel spreads connections between them), as for a restart that overlaps.
    pub reuse_port: bool,
    /// SO_REUSEADDR, set explicitly. A listener here has it in any case (as Go's
    /// listeners, and so etcd's, do on Linux): a port left in TIME_WAIT can be bound.
    pub reuse_address: bool,
}

/// A bound listener, not yet serving.
pub struct Bound {
    url: Url,
    socket: Socket,
    tls: Option<TlsFiles>,
    http2: Http2Settings,
}

impl Bound {
    /// Serves HTTP/2 with `settings` (default: [`Http2Settings::default`]).
    pub fn with_http2(mut self, settings: Http2Settings) -> Self {
        self.http2 = settings;
        self
    }

    /// The URL with the actual port (after binding port 0).
    pub fn local_url(&self) -> Url {
        let mut u = self.url.clone();
        if let Socket::Tcp(l) = &self.socket {
            if let Ok(a) = l.local_addr() {
                let _ = u.set_port(Some(a.port()));
            }
        }
        u
    }
}

/// Binds `url` (`http`, `https`, `unix`, `unixs`); TLS schemes need `tls`; `opts`
/// apply to TCP listeners.
pub async fn bind(
    url: &Url,
    tls: Option<&TlsFiles>,
    opts: SocketOptions,
) -> Result<Bound, ListenError> {
    let secure = matches!(url.scheme(), "https" | "unixs");
    if secure && tls.is_none() {
        return Err(ListenError::NoTls(url.to_string()));
    }
    let socket = match url.scheme() {
        "http" | "https" => {
            let host = url
                .host_str()
                .ok_or_else(|| ListenError::BadUrl(url.to_string(), "no host".into()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = url.port().unwrap_or(2379);
            // Like Go's net.Listen (what etcd uses): a host name is bound on one of its
            // addresses, IPv4 first, so `localhost` means 127.0.0.1 even where
            // /etc/hosts lists ::1 first.
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ListenError::Bind(url.to_string(), e))?
                .collect();
            let addr = listen_addr(&addrs).ok_or_else(|| {
                ListenError::BadUrl(url.to_string(), "host has no address".into())
            })?;
            let l = bind_tcp(addr, opts).map_err(|e| ListenError::Bind(url.to_string(), e))?;
            Socket::Tcp(l)
        }
        "unix" | "unixs" => {
            // etcd: the socket path is the URL's host (with port) followed by its path:
            // `unix://localhost:2379` is the file `localhost:2379` in the working
            // directory, `unix:///run/etcd.sock` is `/run/etcd.sock`.
            let mut path = url.host_str().unwrap_or("").to_string();
            if let Some(port) = url.port() {
                path.push_str(&format!(":{port}"));
            }
            path.push_str(url.path());
            let path = PathBuf::from(path);
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(|e| ListenError::Bind(url.to_string(), e))?;
            Socket::Unix(l, path)
        }
        s => {
            return Err(ListenError::BadUrl(
                url.to_string(),
                format!("unsupported scheme {s}"),
            ))
        }
    };
    Ok(Bound {
        url: url.clone(),
        socket,
        tls: if secure { tls.cloned() } else { None },
        http2: Http2Settings::default(),
    })
}

/// A listening TCP socket on `addr` with `opts` (SO_REUSEADDR always on, as tokio's
/// and Go's listeners have it on Linux).
fn bind_tcp(addr: std::net::SocketAddr, opts: SocketOptions) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // With or without `opts.reuse_address`: on, as etcd's listeners have it on Linux.
    socket.set_reuseaddr(true)?;
    if opts.reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `app` on `bound` until `shutdown` turns true; then stops accepting, asks every
/// open connection to finish (HTTP/2 GOAWAY: in-flight requests are answered, no new
/// ones start) and waits for them for at most `grace`.
pub async fn serve(
    bound: Bound,
    app: impl Into<PortApp>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let app: PortApp = app.into();
    let url = bound.local_url();
    let tls = bound.tls.clone();
    let http2 = bound.http2;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = accept(&bound.socket) => a,
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
        let (io, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(address = %url, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.for_connection(remote);
        let tls = tls.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            match tls {
                None => serve_conn(io, app, http2, stop, grace).await,
                Some(files) => {
                    if let Some(s) = tls_accept(io, remote, &files).await {
                        let app = app.with_client_cn(verified_common_name(&s, &files));
                        serve_conn(s, app, http2, stop, grace).await
                    }
                }
            }
        });
    }
    if let Socket::Unix(_, path) = &bound.socket {
        let _ = std::fs::remove_file(path);
    }
    drop(bound);
    let drained = tokio::time::timeout(grace + Duration::from_millis(200), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// The TLS handshake of a new connection from `remote`, with the certificate files as
/// they are now (rotation needs no restart), and the client SAN check when `files` asks
/// for it. `None` (logged) when the connection is refused.
async fn tls_accept(
    io: Box<dyn Io>,
    remote: Option<SocketAddr>,
    files: &TlsFiles,
) -> Option<tokio_rustls::server::TlsStream<Box<dyn Io>>> {
    let cfg = match files.server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load TLS certificates");
            return None;
        }
    };
    let s = match tokio_rustls::TlsAcceptor::from(cfg).accept(io).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "rejected TLS connection");
            return None;
        }
    };
    let cert = s.get_ref().1.peer_certificates().and_then(|c| c.first());
    if let (true, Some(remote), Some(cert)) = (files.check_client_san, remote, cert) {
        if let Err(e) = super::client_san::check(cert, remote.ip()).await {
            tracing::warn!(
                remote = %remote,
                error = %e,
                "rejected connection: the client certificate is not valid for the address \
                 it connects from (--peer-skip-client-san-verification turns this check off)"
            );
            return None;
        }
    }
    Some(s)
}

/// The common name of the client certificate the handshake verified against the CA
/// (`--client-cert-auth`); with auth enabled it names the user of requests without a
/// token.
fn verified_common_name(
    s: &tokio_rustls::server::TlsStream<Box<dyn Io>>,
    files: &TlsFiles,
) -> Option<ClientCn> {
    if !files.client_cert_auth {
        return None;
    }
    let cert = s.get_ref().1.peer_certificates()?.first()?;
    super::tls::subject_common_name(cert.as_ref()).map(|cn| ClientCn(cn.into()))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The next connection, with the remote address of a TCP one.
async fn accept(socket: &Socket) -> std::io::Result<(Box<dyn Io>, Option<SocketAddr>)> {
    match socket {
        Socket::Tcp(l) => {
            let (s, remote) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s), Some(remote)))
        }
        Socket::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok((Box::new(s), None))
        }
    }
}

async fn serve_conn<S>(
    io: S,
    app: PortApp,
    http2: Http2Settings,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(http2.max_concurrent_streams)
        // gRPC responses carry no `date` header (etcd's grpc-go server sends none);
        // HTTP/1 responses keep theirs.
        .auto_date_header(false)
        .keep_alive_interval(Some(http2.keepalive_interval))
        .keep_alive_timeout(http2.keepalive_timeout);
    // Responses that are ready in the same scheduler round leave in one write.
    let pending = Pending::default();
    let svc = TowerToHyperService::new(CountPending::new(app, pending.clone()));
    let io = Coalesce::new(io, pending);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with error");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}

/// The address a host name is bound on: its first IPv4 address, else its first one.
fn listen_addr(addrs: &[std::net::SocketAddr]) -> Option<std::net::SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[test]
    fn a_host_name_is_bound_on_its_ipv4_address_first() {
        let v6: std::net::SocketAddr = "[::1]:2379".parse().unwrap();
        let v4: std::net::SocketAddr = "127.0.0.1:2379".parse().unwrap();
        assert_eq!(listen_addr(&[v6, v4]), Some(v4));
        assert_eq!(listen_addr(&[v6]), Some(v6));
        assert_eq!(listen_addr(&[]), None);
    }

    #[test]
    fn keepalive_flags_apply_only_as_a_pair_above_zero() {
        let s = |i, t| Http2Settings::from_flags(7, Duration::from_secs(i), Duration::from_secs(t));
        let d = Http2Settings::default();
        assert_eq!(s(30, 5).max_concurrent_streams, 7);
        assert_eq!(
            (s(30, 5).keepalive_interval, s(30, 5).keepalive_timeout),
            (Duration::from_secs(30), Duration::from_secs(5))
        );
        for (i, t) in [(0, 5), (30, 0), (0, 0)] {
            assert_eq!(
                (s(i, t).keepalive_interval, s(i, t).keepalive_timeout),
                (d.keepalive_interval, d.keepalive_timeout),
                "interval {i}s timeout {t}s"
            );
        }
    }

    #[tokio::test]
    async fn localhost_binds_ipv4_loopback_as_go_does() {
        let url = Url::parse("http://localhost:0").unwrap();
        let b = bind(&url, None, SocketOptions::default()).await.unwrap();
        match &b.socket {
            Socket::Tcp(l) => assert!(l.local_addr().unwrap().ip().is_ipv4()),
            _ => panic!("a TCP socket"),
        }
    }
}
