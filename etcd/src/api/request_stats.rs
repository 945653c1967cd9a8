//! etcd's "request stats" warning for slow unary KV calls: a `Range`, `Put`,
//! `DeleteRange`, `Txn` or `Compact` that takes longer than
//! `--warning-unary-request-duration` (default 300 ms) from the call reaching the KV
//! service to its answer is logged at warn level with etcd's fields (`start time`,
//! `time spent`, `remote`, `response type`, `request count`, `request size`,
//! `response count`, `response size`, `request content`).
//!
//! Guarantees:
//! - a call within the bound costs two monotonic clock reads and a comparison; nothing is
//!   rendered;
//! - values never reach the log: a put's and a txn's content gives their sizes
//!   instead, as etcd's loggable requests do;
//! - counts and sizes follow etcd's: a range counts the keys it matched, a delete the
//!   keys it deleted, a txn the operations of the branch that ran; a call that failed
//!   logs -1 for each, as etcd does for a call without a response.
//!
//! `remote` is the client's address (`ip:port`) as its connection attached it to the
//! request ([`ClientAddr`]), or etcd's own text for an unknown one (a Unix socket). The
//! JSON gateway calls the server directly, so its requests are not logged here (etcd's
//! gateway dials its own gRPC port, so they are there).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use prost::Message as _;

use crate::apply::slow::{describe_delete, describe_put, describe_range, describe_txn};
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

/// What etcd says for `remote` when it does not know the client's address.
const NO_REMOTE: &str = "No remote client info.";

/// The address of the client that sent a request: a TCP connection attaches it to each
/// KV request (an `http` extension) for the "request stats" warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// When a call started and who made it (the wall-clock start is derived only for a
/// call that is logged).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    at: Instant,
    remote: Option<SocketAddr>,
}

impl Started {
    /// Now, for a call from an unknown client.
    pub fn now() -> Self {
        Started {
            at: Instant::now(),
            remote: None,
        }
    }

    /// Now, for the call `r` (from the client address its connection attached).
    pub fn of<T>(r: &tonic::Request<T>) -> Self {
        Started {
            at: Instant::now(),
            remote: r.extensions().get::<ClientAddr>().map(|a| a.0),
        }
    }
}

/// A KV call's request and its outcome, for the warning.
pub enum Call<'a> {
    /// `KV.Range`.
    Range(&'a RangeRequest, Option<&'a RangeResponse>),
    /// `KV.Put`.
    Put(&'a PutRequest, Option<&'a PutResponse>),
    /// `KV.DeleteRange`.
    DeleteRange(&'a DeleteRangeRequest, Option<&'a DeleteRangeResponse>),
    /// `KV.Txn`.
    Txn(&'a TxnRequest, Option<&'a TxnResponse>),
    /// `KV.Compact` (etcd gives no counts or sizes for it).
    Compact(Option<&'a CompactionResponse>),
}

/// The fields etcd derives from a call: (response type, request count, request size,
/// response count, response size, request content).
fn fields(call: &Call<'_>) -> (&'static str, i64, i64, i64, i64, String) {
    const UNKNOWN: (i64, i64, i64, i64) = (-1, -1, -1, -1);
    let size = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    match call {
        Call::Range(req, resp) => {
            let (rc, rs, pc, ps) = resp.map_or(UNKNOWN, |r| {
                (0, size(req.encoded_len()), r.count, size(r.encoded_len()))
            });
            (
                "/etcdserverpb.KV/Range",
                rc,
                rs,
                pc,
                ps,
                describe_range(req),
            )
        }
        Call::Put(req, resp) => {
            let (rc, rs, pc, ps) = resp.map_or(UNKNOWN, |r| {
                (1, size(req.encoded_len()), 0, size(r.encoded_len()))
            });
            let content = describe_put(req, req.value.len());
            ("/etcdserverpb.KV/Put", rc, rs, pc, ps, content)
        }
        Call::DeleteRange(req, resp) => {
            let (rc, rs, pc, ps) = resp.map_or(UNKNOWN, |r| {
                (0, size(req.encoded_len()), r.deleted, size(r.encoded_len()))
            });
            let content = describe_delete(req);
            ("/etcdserverpb.KV/DeleteRange", rc, rs, pc, ps, content)
        }
        Call::Txn(req, resp) => {
            let (rc, rs, pc, ps) = resp.map_or(UNKNOWN, |r| {
                let branch = if r.succeeded {
                    &req.success
                } else {
                    &req.failure
                };
                let ops: usize = branch.iter().map(|op| op.encoded_len()).sum();
                (size(branch.len()), size(ops), 0, size(r.encoded_len()))
            });
            let content = describe_txn(req);
            ("/etcdserverpb.KV/Txn", rc, rs, pc, ps, content)
        }
        Call::Compact(_) => {
            let (rc, rs, pc, ps) = UNKNOWN;
            ("/etcdserverpb.KV/Compact", rc, rs, pc, ps, String::new())
        }
    }
}

/// Logs "request stats" for `call` if it took longer than `bound` since `started`.
/// Returns whether it warned.
pub fn log_if_slow(started: Started, bound: Duration, call: Call<'_>) -> bool {
    let spent = started.at.elapsed();
    if spent <= bound {
        return false;
    }
    let (kind, req_count, req_size, resp_count, resp_size, content) = fields(&call);
    let start = wall_clock(
        SystemTime::now()
            .checked_sub(spent)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    tracing::warn!(
        "start time" = %start,
        "time spent" = ?spent,
        remote = %started.remote.map_or_else(|| NO_REMOTE.to_string(), |a| a.to_string()),
        "response type" = kind,
        "request count" = req_count,
        "request size" = req_size,
        "response count" = resp_count,
        "response size" = resp_size,
        "request content" = %content,
        "request stats"
    );
    true
}

/// A wall-clock time as RFC 3339 in UTC with microseconds, like the log's own `ts`.
fn wall_clock(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{request_op, RequestOp};

    #[test]
    fn a_call_within_the_bound_is_not_logged() {
        let req = RangeRequest::default();
        assert!(!log_if_slow(
            Started::now(),
            Duration::from_secs(3600),
            Call::Range(&req, None)
        ));
    }

    #[test]
    fn a_slow_call_is_logged() {
        let req = RangeRequest::default();
        assert!(log_if_slow(
            Started::now(),
            Duration::ZERO,
            Call::Range(&req, None)
        ));
    }

    #[test]
    fn a_put_counts_one_and_hides_its_value() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: b"hidden".to_vec(),
            ..Default::default()
        };
        let resp = PutResponse::default();
        let (kind, rc, rs, pc, ps, content) = fields(&Call::Put(&req, Some(&resp)));
        assert_eq!(kind, "/etcdserverpb.KV/Put");
        assert_eq!((rc, rs, pc, ps), (1, req.encoded_len() as i64, 0, 0));
        assert_eq!(content, r#"key:"k" value_size:6"#);
    }

    #[test]
    fn a_txn_counts_the_branch_that_ran() {
        let op = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        };
        let req = TxnRequest {
            success: vec![op.clone(), op.clone()],
            failure: vec![op.clone()],
            ..Default::default()
        };
        let resp = TxnResponse {
            succeeded: false,
            ..Default::default()
        };
        let (_, rc, rs, ..) = fields(&Call::Txn(&req, Some(&resp)));
        assert_eq!((rc, rs), (1, op.encoded_len() as i64));
    }

    #[test]
    fn a_failed_call_has_no_counts() {
        let req = DeleteRangeRequest::default();
        let (_, rc, rs, pc, ps, _) = fields(&Call::DeleteRange(&req, None));
        assert_eq!((rc, rs, pc, ps), (-1, -1, -1, -1));
    }

    #[test]
    fn wall_clock_renders_as_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_644_800_123_456);
        assert_eq!(wall_clock(t), "2026-12-07T12:00:00.123456Z");
    }
}
