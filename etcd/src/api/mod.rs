//! The client API edge: one tonic service per file, the HTTP endpoints and the JSON
//! gateway. Every RPC is validate -> facade -> etcd error mapping.

pub mod auth;
pub mod cluster;
pub mod dispatch;
pub mod gateway;
pub mod grpc_metrics;
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod request_stats;
pub mod watch;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::server::EtcdServer;

/// The largest gRPC request message the client port accepts: `--max-request-bytes` +
/// 512 KiB, as etcd's.
fn max_recv(server: &EtcdServer) -> usize {
    server.settings().max_request_bytes + 512 * 1024
}

/// The KV service with etcd's message size limits (requests up to [`max_recv`],
/// responses unbounded).
pub fn kv_server(server: Arc<EtcdServer>) -> KvServer<kv::KvService> {
    let max_recv = max_recv(&server);
    KvServer::new(kv::KvService(server))
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX)
}

/// All gRPC services of the client port, with etcd's message size limits: requests up
/// to `--max-request-bytes` + 512 KiB, responses unbounded.
pub async fn grpc_routes(server: Arc<EtcdServer>) -> tonic::service::Routes {
    let max_recv = max_recv(&server);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    macro_rules! limits {
        ($svc:expr) => {
            $svc.max_decoding_message_size(max_recv)
                .max_encoding_message_size(usize::MAX)
        };
    }
    tonic::service::Routes::new(kv_server(server.clone()))
        .add_service(limits!(WatchServer::new(watch::WatchService(
            server.clone()
        ))))
        .add_service(limits!(LeaseServer::new(lease::LeaseService(
            server.clone()
        ))))
        .add_service(limits!(ClusterServer::new(cluster::ClusterService(
            server.clone()
        ))))
        .add_service(limits!(MaintenanceServer::new(
            maintenance::MaintenanceService(server.clone())
        )))
        .add_service(limits!(AuthServer::new(auth::AuthService(server.clone()))))
        .add_service(health)
}

/// gRPC methods a learner serves (Range only when serializable, checked by the facade).
const LEARNER_METHODS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Cluster/MemberList",
];

/// Whether `path` is a gRPC method this member refuses because it is a learner.
fn learner_refuses(path: &str, server: &EtcdServer) -> bool {
    let allowed = LEARNER_METHODS.contains(&path) || path.starts_with("/grpc.health.v1.");
    !allowed && path.starts_with("/etcdserverpb.") && server.is_learner()
}

/// Middleware for the gRPC routes: a learner refuses every other method with
/// "etcdserver: rpc not supported for learner", as etcd's interceptors do.
pub async fn learner_gate(
    State(server): State<Arc<EtcdServer>>,
    req: Request,
    next: Next,
) -> Response {
    if learner_refuses(req.uri().path(), &server) {
        return crate::rpctypes::EtcdError::NotSupportedForLearner
            .to_status()
            .into_http::<axum::body::Body>()
            .into_response();
    }
    next.run(req).await
}
