//! Plain HTTP endpoints on the client (and metrics) URLs: `/health`, `/livez`,
//! `/readyz`, `/version`, `/metrics`, with etcd's formats and status codes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::proto::etcdserverpb::{AlarmType, RangeRequest};
use crate::rpctypes::EtcdError;
use crate::server::facade::{CLUSTER_VERSION, SERVER_VERSION};
use crate::server::EtcdServer;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Router with the health, version and metrics endpoints.
pub fn router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/livez/{check}", get(livez_one))
        .route("/readyz", get(readyz))
        .route("/readyz/{check}", get(readyz_one))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

fn params(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

async fn range_check(server: &EtcdServer, serializable: bool) -> Result<(), String> {
    let req = RangeRequest {
        key: b"health".to_vec(),
        limit: 1,
        keys_only: true,
        serializable,
        ..Default::default()
    };
    // Without a caller: with auth enabled the read is refused after its ReadIndex
    // round, which is what the check needs (etcd counts these refusals as healthy).
    match tokio::time::timeout(CHECK_TIMEOUT, server.range(&req, None)).await {
        Ok(Ok(_)) | Ok(Err(EtcdError::UserEmpty | EtcdError::PermissionDenied)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("context deadline exceeded".into()),
    }
}

async fn health(State(server): State<Arc<EtcdServer>>, RawQuery(q): RawQuery) -> Response {
    let ps = params(&q);
    let excluded: Vec<String> = ps
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.clone())
        .collect();
    let serializable = ps.iter().any(|(k, v)| k == "serializable" && v == "true");
    let mut reason = String::new();
    for a in server.alarms().list(AlarmType::None as i32) {
        let name = AlarmType::try_from(a.alarm)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        if !excluded.iter().any(|e| e == name) {
            reason = format!("ALARM {name}");
            break;
        }
    }
    if reason.is_empty() && !serializable && server.raft().status().leader() == 0 {
        reason = "RAFT NO LEADER".into();
    }
    if reason.is_empty() {
        if let Err(e) = range_check(&server, serializable).await {
            reason = format!("RANGE ERROR:{e}");
        }
    }
    let ok = reason.is_empty();
    let body = serde_json::json!({"health": if ok {"true"} else {"false"}, "reason": reason});
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Check = (&'static str, Result<(), String>);

async fn run_checks(
    server: &EtcdServer,
    ready: bool,
    only: Option<&str>,
    excluded: &[String],
) -> Vec<Check> {
    let mut names: Vec<&'static str> = if ready {
        vec![
            "data_corruption",
            "serializable_read",
            "linearizable_read",
            "non_learner",
        ]
    } else {
        vec!["serializable_read"]
    };
    if let Some(o) = only {
        names.retain(|n| *n == o);
    }
    let mut out = Vec::new();
    for n in names {
        if excluded.iter().any(|e| e == n) {
            continue;
        }
        let r = match n {
            "data_corruption" => {
                if server.alarms().is_active(AlarmType::Corrupt) {
                    Err("alarm activated: CORRUPT".into())
                } else {
                    Ok(())
                }
            }
            "serializable_read" => range_check(server, true).await,
            "linearizable_read" => range_check(server, false).await,
            _ => Ok(()),
        };
        out.push((n, r));
    }
    out
}

fn render_checks(kind: &str, checks: Vec<Check>, verbose: bool, excluded: &[String]) -> Response {
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    let mut body = String::new();
    if verbose || !ok {
        for (n, r) in &checks {
            match r {
                Ok(()) => body.push_str(&format!("[+]{n} ok\n")),
                Err(e) => body.push_str(&format!("[-]{n} failed: {e}\n")),
            }
        }
        for e in excluded {
            body.push_str(&format!("[+]{e} excluded: ok\n"));
        }
    }
    if ok {
        if verbose {
            body.push_str(&format!("{kind} check passed\n"));
        } else {
            body.push_str("ok\n");
        }
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    } else {
        body.push_str(&format!("{kind} check failed\n"));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

async fn probe(
    server: Arc<EtcdServer>,
    ready: bool,
    only: Option<String>,
    q: Option<String>,
) -> Response {
    let ps = params(&q);
    let verbose = ps.iter().any(|(k, _)| k == "verbose");
    let excluded: Vec<String> = ps
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.clone())
        .collect();
    let checks = run_checks(&server, ready, only.as_deref(), &excluded).await;
    if only.is_some() && checks.is_empty() {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    render_checks(
        if ready { "readyz" } else { "livez" },
        checks,
        verbose,
        &excluded,
    )
}

async fn livez(State(s): State<Arc<EtcdServer>>, RawQuery(q): RawQuery) -> Response {
    probe(s, false, None, q).await
}
async fn readyz(State(s): State<Arc<EtcdServer>>, RawQuery(q): RawQuery) -> Response {
    probe(s, true, None, q).await
}
async fn livez_one(
    State(s): State<Arc<EtcdServer>>,
    axum::extract::Path(check): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    probe(s, false, Some(check), q).await
}
async fn readyz_one(
    State(s): State<Arc<EtcdServer>>,
    axum::extract::Path(check): axum::extract::Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    probe(s, true, Some(check), q).await
}

async fn version(_q: Query<HashMap<String, String>>) -> Response {
    let body = serde_json::json!({
        "etcdserver": SERVER_VERSION,
        "etcdcluster": CLUSTER_VERSION,
        "storage": CLUSTER_VERSION,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> Response {
    server.refresh_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
