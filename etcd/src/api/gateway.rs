//! etcd's JSON gateway (grpc-gateway) under `/v3/` and `/v3beta/`: POST a request
//! message as JSON, get the response message as JSON. Field names are the proto names,
//! `bytes` are base64, 64-bit integers are strings, enums are names, and zero values are
//! omitted — what etcd's gateway produces. Streaming endpoints (watch, lease keepalive)
//! answer one `{"result": ...}` object per line.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::proto::etcdserverpb as pb;
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
            .route(&format!("{prefix}/cluster/member/list"), post(member_list))
            .route(&format!("{prefix}/auth/enable"), post(auth_enable))
            .route(&format!("{prefix}/auth/disable"), post(auth_disable))
            .route(&format!("{prefix}/auth/status"), post(auth_status))
            .route(&format!("{prefix}/auth/authenticate"), post(authenticate))
            .route(&format!("{prefix}/auth/user/add"), post(user_add))
            .route(&format!("{prefix}/auth/user/get"), post(user_get))
            .route(&format!("{prefix}/auth/user/list"), post(user_list))
            .route(&format!("{prefix}/auth/user/delete"), post(user_delete))
            .route(&format!("{prefix}/auth/user/changepw"), post(user_changepw))
            .route(&format!("{prefix}/auth/user/grant"), post(user_grant))
            .route(&format!("{prefix}/auth/user/revoke"), post(user_revoke))
            .route(&format!("{prefix}/auth/role/add"), post(role_add))
            .route(&format!("{prefix}/auth/role/get"), post(role_get))
            .route(&format!("{prefix}/auth/role/list"), post(role_list))
            .route(&format!("{prefix}/auth/role/delete"), post(role_delete))
            .route(&format!("{prefix}/auth/role/grant"), post(role_grant))
            .route(&format!("{prefix}/auth/role/revoke"), post(role_revoke));
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
        unary!($name, $req, |$s, $r, _who| $call);
    };
    ($name:ident, $req:ty, |$s:ident, $r:ident, $w:ident| $call:expr) => {
        async fn $name(State($s): Srv, headers: HeaderMap, body: Bytes) -> Response {
            let $r: $req = match parse(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            // The token in `Authorization`; a client certificate does not name the
            // caller here (as in etcd, whose gateway dials with its own certificate).
            #[allow(unused_variables)]
            let $w = match super::auth::caller_of(&$s, &headers, None) {
                Ok(w) => w,
                Err(e) => return error(&e),
            };
            #[allow(unused_variables)]
            let $w = $w.as_ref();
            match $call {
                Ok(v) => json(&v),
                Err(e) => error(&e),
            }
        }
    };
}

unary!(range, RangeRequest, |s, r, w| s.range(&r, w).await);
unary!(put, PutRequest, |s, r, w| s.put(&r, w).await);
unary!(delete_range, DeleteRangeRequest, |s, r, w| s
    .delete_range(&r, w)
    .await);
unary!(txn, TxnRequest, |s, r, w| s.txn(&r, w).await);
unary!(compaction, CompactionRequest, |s, r| s.compact(r).await);
unary!(lease_grant, LeaseGrantRequest, |s, r| s
    .lease_grant(r)
    .await);
unary!(lease_revoke, LeaseRevokeRequest, |s, r, w| s
    .lease_revoke(r, w)
    .await);
unary!(lease_ttl, LeaseTimeToLiveRequest, |s, r, w| s
    .lease_time_to_live(r.id, r.keys, w)
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
unary!(
    hash_kv,
    HashKvRequest,
    |s, r, w| match s.auth().check_admin(w) {
        Ok(()) => s.hash_kv(r.revision).await,
        Err(e) => Err(e),
    }
);
unary!(
    defragment,
    crate::proto::etcdserverpb::DefragmentRequest,
    |s, _r, w| match s.auth().check_admin(w) {
        Ok(()) => s.defragment().await.map(|_| DefragmentResponse {
            header: Some(s.header(0)),
        }),
        Err(e) => Err(e),
    }
);
unary!(auth_enable, pb::AuthEnableRequest, |s, _r, w| s
    .auth_enable(w)
    .await
    .map(|h| pb::AuthEnableResponse { header: Some(h) }));
unary!(auth_disable, pb::AuthDisableRequest, |s, _r, w| s
    .auth_disable(w)
    .await
    .map(|h| pb::AuthDisableResponse { header: Some(h) }));
unary!(auth_status, pb::AuthStatusRequest, |s, _r| s
    .auth_status()
    .await
    .map(|(h, enabled, auth_revision)| pb::AuthStatusResponse {
        header: Some(h),
        enabled,
        auth_revision
    }));
unary!(authenticate, pb::AuthenticateRequest, |s, r| s
    .authenticate(&r.name, &r.password)
    .await
    .map(|(h, token)| pb::AuthenticateResponse {
        header: Some(h),
        token
    }));
unary!(user_add, pb::AuthUserAddRequest, |s, r, w| s
    .user_add(r, w)
    .await
    .map(|h| pb::AuthUserAddResponse { header: Some(h) }));
unary!(user_get, pb::AuthUserGetRequest, |s, r, w| s
    .user_get(&r.name, w)
    .await
    .map(|(h, roles)| pb::AuthUserGetResponse {
        header: Some(h),
        roles
    }));
unary!(user_list, pb::AuthUserListRequest, |s, _r, w| s
    .user_list(w)
    .await
    .map(|(h, users)| pb::AuthUserListResponse {
        header: Some(h),
        users
    }));
unary!(user_delete, pb::AuthUserDeleteRequest, |s, r, w| s
    .user_delete(r.name, w)
    .await
    .map(|h| pb::AuthUserDeleteResponse { header: Some(h) }));
unary!(
    user_changepw,
    pb::AuthUserChangePasswordRequest,
    |s, r, w| s
        .user_change_password(r, w)
        .await
        .map(|h| pb::AuthUserChangePasswordResponse { header: Some(h) })
);
unary!(user_grant, pb::AuthUserGrantRoleRequest, |s, r, w| s
    .user_grant_role(r, w)
    .await
    .map(|h| pb::AuthUserGrantRoleResponse { header: Some(h) }));
unary!(user_revoke, pb::AuthUserRevokeRoleRequest, |s, r, w| s
    .user_revoke_role(r, w)
    .await
    .map(|h| pb::AuthUserRevokeRoleResponse { header: Some(h) }));
unary!(role_add, pb::AuthRoleAddRequest, |s, r, w| s
    .role_add(r.name, w)
    .await
    .map(|h| pb::AuthRoleAddResponse { header: Some(h) }));
unary!(role_get, pb::AuthRoleGetRequest, |s, r, w| s
    .role_get(&r.role, w)
    .await
    .map(|(h, perm)| pb::AuthRoleGetResponse {
        header: Some(h),
        perm
    }));
unary!(role_list, pb::AuthRoleListRequest, |s, _r, w| s
    .role_list(w)
    .await
    .map(|(h, roles)| pb::AuthRoleListResponse {
        header: Some(h),
        roles
    }));
unary!(role_delete, pb::AuthRoleDeleteRequest, |s, r, w| s
    .role_delete(r.role, w)
    .await
    .map(|h| pb::AuthRoleDeleteResponse { header: Some(h) }));
unary!(role_grant, pb::AuthRoleGrantPermissionRequest, |s, r, w| s
    .role_grant_permission(r, w)
    .await
    .map(|h| pb::AuthRoleGrantPermissionResponse {
        header: Some(h)
    }));
unary!(
    role_revoke,
    pb::AuthRoleRevokePermissionRequest,
    |s, r, w| s
        .role_revoke_permission(r, w)
        .await
        .map(|h| pb::AuthRoleRevokePermissionResponse { header: Some(h) })
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

async fn watch(State(s): Srv, headers: HeaderMap, body: Bytes) -> Response {
    let reqs: Vec<WatchRequest> = match messages(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let input = futures::stream::iter(reqs.into_iter().map(Ok));
    let creds = super::watch::Credentials { headers, cn: None };
    let out = super::watch::session(s, creds, input).map(|r| match r {
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
