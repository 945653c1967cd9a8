//! The client port's service: KV calls go straight to the tonic KV service, everything
//! else (the other gRPC services, the HTTP endpoints, the JSON gateway) to the axum
//! router.
//!
//! KV is nearly all of a loaded server's requests, and the router's layers cost it
//! several boxed futures, a boxed request and response body and two route lookups per
//! call. The direct path applies the same learner rule as [`learner_gate`](super::learner_gate)
//! (a learner serves only `Range`) and the same message size limits.
//!
//! Guarantees: a request reaches exactly the handler the router would have chosen, with
//! the same answer for a learner.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Either;

use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::server::EtcdServer;

/// The path prefix of the KV service's methods.
const KV_PREFIX: &str = "/etcdserverpb.KV/";

/// The response body: a tonic service's or the router's.
pub type AppBody = Either<tonic::body::Body, axum::body::Body>;

/// The service answering a listener: a client port (see the module documentation), or
/// any port served by a router alone (peer port, HTTP-only client and metrics ports).
#[derive(Clone)]
pub struct PortApp {
    kv: Option<(KvServer<super::kv::KvService>, Arc<EtcdServer>)>,
    router: axum::Router,
}

impl PortApp {
    /// KV calls to the KV service of `server` (with its message size limits), the rest to
    /// `router`.
    pub fn new(server: Arc<EtcdServer>, router: axum::Router) -> Self {
        let kv = super::kv_server(server.clone());
        PortApp {
            kv: Some((kv, server)),
            router,
        }
    }

    /// Everything to `router` (the peer port, `--listen-client-http-urls`, metrics).
    pub fn router_only(router: axum::Router) -> Self {
        PortApp { kv: None, router }
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

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        if let Some((kv, server)) = &mut self.kv {
            let path = req.uri().path();
            if path.starts_with(KV_PREFIX) {
                if super::learner_refuses(path, server) {
                    let refusal = crate::rpctypes::EtcdError::NotSupportedForLearner
                        .to_status()
                        .into_http::<tonic::body::Body>();
                    return Box::pin(std::future::ready(Ok(refusal.map(Either::Left))));
                }
                let fut = tower::Service::call(kv, req);
                return Box::pin(async move {
                    let resp = match fut.await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    Ok(resp.map(Either::Left))
                });
            }
        }
        let fut = tower::Service::call(&mut self.router, req.map(axum::body::Body::new));
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(resp.map(Either::Right))
        })
    }
}
