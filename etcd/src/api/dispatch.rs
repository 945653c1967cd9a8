//! The client port's service: KV calls go straight to the tonic KV service, everything
//! else (the other gRPC services, the HTTP endpoints, the JSON gateway) to the axum
//! router.
//!
//! KV is nearly all of a loaded server's requests, and the router's layers cost it
//! several boxed futures, a boxed request and response body and two route lookups per
//! call. The direct path applies the same learner rule as [`learner_gate`](super::learner_gate)
//! (a learner serves only `Range`) and the same message size limits.
//!
//! On a client port every call of a served gRPC method is metered here
//! ([`grpc_metrics`](super::grpc_metrics)), except those a learner refuses (etcd's
//! interceptors refuse them before its metrics see them).
//!
//! A connection's copy of the service ([`PortApp::for_connection`]) attaches the client's
//! address to each KV request ([`ClientAddr`]) for the "request stats" warning.
//!
//! Guarantees: a request reaches exactly the handler the router would have chosen, with
//! the same answer for a learner.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Either;

use super::auth::ClientCn;
use super::grpc_metrics::{self, CallMeter, CountedBody, MeteredBody};
use super::request_stats::ClientAddr;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::server::EtcdServer;

/// The path prefix of the KV service's methods.
const KV_PREFIX: &str = "/etcdserverpb.KV/";

/// The response body: a tonic service's or the router's, reporting a metered call's end.
pub type AppBody = MeteredBody<Either<tonic::body::Body, axum::body::Body>>;

/// The response with its body wrapped to report to `meter`: at once when the headers carry
/// the status (a trailers-only response), else when the trailers come.
fn metered<B>(
    resp: http::Response<B>,
    mut meter: Option<CallMeter>,
    side: fn(B) -> Either<tonic::body::Body, axum::body::Body>,
) -> http::Response<AppBody> {
    if let Some(m) = meter.as_mut() {
        if m.finish_from(resp.headers()) {
            meter = None;
        }
    }
    resp.map(|b| MeteredBody::new(side(b), meter))
}

/// The service answering a listener: a client port (see the module documentation), or
/// any port served by a router alone (peer port, HTTP-only client and metrics ports).
#[derive(Clone)]
pub struct PortApp {
    kv: Option<(KvServer<super::kv::KvService>, Arc<EtcdServer>)>,
    router: axum::Router,
    /// The client of the connection this copy serves (TCP), attached to KV requests.
    remote: Option<SocketAddr>,
    /// The verified client certificate's common name of this copy's connection,
    /// attached to every request (auth's caller, see [`ClientCn`]).
    cn: Option<ClientCn>,
}

impl PortApp {
    /// KV calls to the KV service of `server` (with its message size limits), the rest to
    /// `router`.
    pub fn new(server: Arc<EtcdServer>, router: axum::Router) -> Self {
        let kv = super::kv_server(server.clone());
        PortApp {
            kv: Some((kv, server)),
            router,
            remote: None,
            cn: None,
        }
    }

    /// This service for one connection from `remote`: its KV requests carry the address
    /// ([`ClientAddr`], for the "request stats" warning).
    pub fn for_connection(&self, remote: Option<SocketAddr>) -> Self {
        PortApp {
            remote,
            ..self.clone()
        }
    }

    /// This service for a TLS connection whose verified client certificate names `cn`:
    /// every request carries it ([`ClientCn`]).
    pub fn with_client_cn(self, cn: Option<ClientCn>) -> Self {
        PortApp { cn, ..self }
    }

    /// Everything to `router` (the peer port, `--listen-client-http-urls`, metrics).
    pub fn router_only(router: axum::Router) -> Self {
        PortApp {
            kv: None,
            router,
            remote: None,
            cn: None,
        }
    }
}

impl From<axum::Router> for PortApp {
    fn from(router: axum::Router) -> Self {
        PortApp::router_only(router)
    }
}

impl tower::Service<http::Request<hyper::body::Incoming>> for PortApp {
    type Response = http::Response<AppBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both the tonic service and the router are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let mut meter = None;
        if let Some(cn) = &self.cn {
            req.extensions_mut().insert(cn.clone());
        }
        if let Some((kv, server)) = &mut self.kv {
            let path = req.uri().path();
            let refused = super::learner_refuses(path, server);
            if path.starts_with(KV_PREFIX) {
                if refused {
                    let refusal = crate::rpctypes::EtcdError::NotSupportedForLearner
                        .to_status()
                        .into_http::<tonic::body::Body>();
                    return Box::pin(std::future::ready(Ok(
                        refusal.map(|b| MeteredBody::new(Either::Left(b), None))
                    )));
                }
                let meter = grpc_metrics::method_index(path).and_then(CallMeter::start);
                if let Some(a) = self.remote {
                    req.extensions_mut().insert(ClientAddr(a));
                }
                let fut = tower::Service::call(kv, req);
                return Box::pin(async move {
                    let resp = match fut.await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    Ok(metered(resp, meter, Either::Left))
                });
            }
            if !refused {
                meter = grpc_metrics::method_index(path).and_then(CallMeter::start);
            }
        }
        let received = meter.as_ref().and_then(CallMeter::received_counter);
        let req = match received {
            Some(counter) => req.map(|b| axum::body::Body::new(CountedBody::new(b, counter))),
            None => req.map(axum::body::Body::new),
        };
        let fut = tower::Service::call(&mut self.router, req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(metered(resp, meter, Either::Right))
        })
    }
}
