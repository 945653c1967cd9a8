//! etcd's JSON gateway (grpc-gateway) under `/v3/` and `/v3beta/`: POST a request
//! message as JSON, get the response message as JSON. Field names are the proto names,
//! `bytes` are base64, 64-bit integers are strings, enums are names, and zero values are
//! omitted — what etcd's gateway produces. Streaming endpoints (watch, lease keepalive)
//! answer one `{"result": ...}` object per line.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, DefragmentResponse, DeleteRangeRequest, HashKvRequest,
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    MemberListRequest, MemberListResponse, PutRequest, RangeRequest, TxnRequest, WatchRequest,
};
use crate::rpctypes::EtcdError;
use crate::server::EtcdServer;

type Srv = State<Arc<EtcdServer>>;

/// Router with every gateway path under `/v3/` and `/v3beta/`.
pub fn router(server: Arc<EtcdServer>) -> Router {
    let mut r = Router::new();
    for prefix in ["/v3", "/v3beta"] {
        r = r
            .route(&format!("{prefix}/kv/range"), post(range))
            .route(&format!("{prefix}/kv/put"), post(put))
            .route(&format!("{prefix}/kv/deleterange"), post(delete_range))
            .route(&format!("{prefix}/kv/txn"), post(txn))
            .route(&format!("{prefix}/kv/compaction"), post(compaction))
            .route(&format!("{prefix}/lease/grant"), post(lease_grant))
            .route(&format!("{prefix}/lease/revoke"), post(lease_revoke))
            .route(&format!("{prefix}/kv/lease/revoke"), post(lease_revoke))
            .route(&format!("{prefix}/lease/timetolive"), post(lease_ttl))
            .route(&format!("{prefix}/kv/lease/timetolive"), post(lease_ttl))
            .route(&format!("{prefix}/lease/leases"), post(lease_leases))
            .route(&format!("{prefix}/kv/lease/leases"), post(lease_leases))
            .route(&format!("{prefix}/lease/keepalive"), post(lease_keepalive))
            .route(&format!("{prefix}/watch"), post(watch))
            .route(&format!("{prefix}/maintenance/status"), post(status))
            .route(&format!("{prefix}/maintenance/alarm"), post(alarm))
            .route(&format!("{prefix}/maintenance/hashkv"), post(hash_kv))
            .route(
                &format!("{prefix}/maintenance/defragment"),
                post(defragment),
            )
            .route(&format!("{prefix}/cluster/member/list"), post(member_list));
    }
    r.with_state(server)
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => error(&EtcdError::Internal(e.to_string())),
    }
}

/// grpc-gateway's error body and HTTP status for a gRPC code.
fn error(e: &EtcdError) -> Response {
    let st = e.to_status();
    let code = st.code() as i32;
    let http = match st.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::OutOfRange
        | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({"error": st.message(), "code": code, "message": st.message()});
    (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Box::new(bad_request(&e)))
}

macro_rules! unary {
    ($name:ident, $req:ty, |$s:ident, $r:ident| $call:expr) => {
        async fn $name(State($s): Srv, body: Bytes) -> Response {
            let $r: $req = match parse(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            match $call {
                Ok(v) => json(&v),
                Err(e) => error(&e),
            }
        }
    };
}

unary!(range, RangeRequest, |s, r| s.range(&r).await);
unary!(put, PutRequest, |s, r| s.put(&r).await);
unary!(delete_range, DeleteRangeRequest, |s, r| s
    .delete_range(&r)
    .await);
unary!(txn, TxnRequest, |s, r| s.txn(&r).await);
unary!(compaction, CompactionRequest, |s, r| s.compact(r).await);
unary!(lease_grant, LeaseGrantRequest, |s, r| s
    .lease_grant(r)
    .await);
unary!(lease_revoke, LeaseRevokeRequest, |s, r| s
    .lease_revoke(r)
    .await);
unary!(lease_ttl, LeaseTimeToLiveRequest, |s, r| s
    .lease_time_to_live(r.id, r.keys)
    .await);
unary!(
    lease_leases,
    crate::proto::etcdserverpb::LeaseLeasesRequest,
    |s, _r| s.lease_leases().await
);
unary!(
    status,
    crate::proto::etcdserverpb::StatusRequest,
    |s, _r| Ok::<_, EtcdError>(s.status())
);
unary!(alarm, AlarmRequest, |s, r| s.alarm(r).await);
unary!(hash_kv, HashKvRequest, |s, r| s.hash_kv(r.revision).await);
unary!(
    defragment,
    crate::proto::etcdserverpb::DefragmentRequest,
    |s, _r| s.defragment().await.map(|_| DefragmentResponse {
        header: Some(s.header(0))
    })
);
unary!(member_list, MemberListRequest, |s, r| s
    .member_list(r.linearizable)
    .await
    .map(|(h, members)| MemberListResponse {
        header: Some(h),
        members
    }));

/// Splits a request body into the JSON messages it holds (one object, or several
/// objects one after another).
fn messages<T: DeserializeOwned>(body: &Bytes) -> Result<Vec<T>, Box<Response>> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| Box::new(bad_request(&e)))
}

/// A malformed JSON body: InvalidArgument, as grpc-gateway answers.
fn bad_request(e: &serde_json::Error) -> Response {
    let body = serde_json::json!({"error": e.to_string(), "code": 3, "message": e.to_string()});
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn line<T: Serialize>(v: &T) -> Bytes {
    let mut s = serde_json::json!({ "result": v }).to_string();
    s.push('\n');
    Bytes::from(s)
}

async fn watch(State(s): Srv, body: Bytes) -> Response {
    let reqs: Vec<WatchRequest> = match messages(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let input = futures::stream::iter(reqs.into_iter().map(Ok));
    let out = super::watch::session(s, input).map(|r| match r {
        Ok(resp) => Ok::<_, std::convert::Infallible>(line(&resp)),
        Err(st) => Ok(Bytes::from(
            serde_json::json!({"error": {"message": st.message(), "code": st.code() as i32}})
                .to_string()
                + "\n",
        )),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(out),
    )
        .into_response()
}

async fn lease_keepalive(State(s): Srv, body: Bytes) -> Response {
    let reqs: Vec<LeaseKeepAliveRequest> = match messages(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut out = Vec::new();
    for r in reqs {
        match super::lease::keep_alive_once(&s, r.id).await {
            Ok(resp) => out.extend_from_slice(&line(&resp)),
            Err(st) => out.extend_from_slice(
                (serde_json::json!({"error": {"message": st.message(), "code": st.code() as i32}})
                    .to_string()
                    + "\n")
                    .as_bytes(),
            ),
        }
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}
