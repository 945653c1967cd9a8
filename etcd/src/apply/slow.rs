//! etcd's warning for slow applies: "apply request took too long", logged with etcd's
//! fields (`took`, `expected-duration`, `prefix`, `request`, `response`, `error`) and
//! counted in `etcd_server_slow_apply_total`, when applying a committed request, or
//! serving a read-only range (prefix `read-only range `), takes longer than
//! `--warning-apply-duration` (default 100 ms). Operators grep for this line and alert on
//! the counter: it is how etcd says the disk or the CPU is too slow for the load.
//!
//! Guarantees:
//! - nothing is rendered or logged for a request within the bound (the check is one
//!   comparison on the request path);
//! - the request is described as etcd's loggable form does: keys quoted, values
//!   replaced by their size, so a warning never copies a value into the log.

use std::fmt::Write as _;
use std::time::Duration;

use crate::proto::etcdinternal::internal_request::Request;
use crate::proto::etcdserverpb::{
    compare, request_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};

/// etcd's default `--warning-apply-duration`.
pub const DEFAULT_WARNING: Duration = Duration::from_millis(100);

/// Logs and counts one request whose apply (or read) took `took`, if that exceeds
/// `bound`; `describe` and `response` are called only then. Returns whether it warned.
pub fn check(
    took: Duration,
    bound: Duration,
    prefix: &str,
    describe: impl FnOnce() -> String,
    response: impl FnOnce() -> String,
    error: Option<&dyn std::fmt::Display>,
) -> bool {
    if took <= bound {
        return false;
    }
    // etcd's field `error` is there only for a request that failed.
    match error {
        Some(e) => tracing::warn!(
            took = ?took,
            "expected-duration" = ?bound,
            prefix,
            request = %describe(),
            response = %response(),
            error = %e,
            "apply request took too long"
        ),
        None => tracing::warn!(
            took = ?took,
            "expected-duration" = ?bound,
            prefix,
            request = %describe(),
            response = %response(),
            "apply request took too long"
        ),
    }
    crate::metrics::SLOW_APPLIES.inc();
    true
}

/// A key as Go's `%q` prints it closely enough for a log: quoted, with escapes.
fn quoted(out: &mut String, field: &str, key: &[u8]) {
    let _ = write!(
        out,
        "{field}:\"{}\" ",
        String::from_utf8_lossy(key).escape_debug()
    );
}

fn range_end(out: &mut String, end: &[u8]) {
    if !end.is_empty() {
        quoted(out, "range_end", end);
    }
}

/// Appends `name:true ` when `set` (the text form leaves false fields out).
fn flag(out: &mut String, name: &str, set: bool) {
    if set {
        let _ = write!(out, "{name}:true ");
    }
}

/// Appends `name:n ` when `n` is not zero.
fn number(out: &mut String, name: &str, n: i64) {
    if n != 0 {
        let _ = write!(out, "{name}:{n} ");
    }
}

/// `out` without its trailing space.
fn trimmed(mut out: String) -> String {
    out.truncate(out.trim_end().len());
    out
}

fn put(out: &mut String, p: &PutRequest, value_size: usize) {
    quoted(out, "key", &p.key);
    let _ = write!(out, "value_size:{value_size} ");
    number(out, "lease", p.lease);
    flag(out, "prev_kv", p.prev_kv);
    flag(out, "ignore_value", p.ignore_value);
    flag(out, "ignore_lease", p.ignore_lease);
}

fn delete(out: &mut String, d: &DeleteRangeRequest) {
    quoted(out, "key", &d.key);
    range_end(out, &d.range_end);
    flag(out, "prev_kv", d.prev_kv);
}

/// A range request as etcd logs it (the fields that are set).
pub fn describe_range(r: &RangeRequest) -> String {
    let mut out = String::new();
    quoted(&mut out, "key", &r.key);
    range_end(&mut out, &r.range_end);
    number(&mut out, "limit", r.limit);
    number(&mut out, "revision", r.revision);
    flag(&mut out, "serializable", r.serializable);
    flag(&mut out, "keys_only", r.keys_only);
    flag(&mut out, "count_only", r.count_only);
    trimmed(out)
}

fn txn(out: &mut String, t: &TxnRequest) {
    for c in &t.compare {
        out.push_str("compare:<");
        // Zero values (EQUAL, VERSION) are left out, as in etcd's text form.
        if let Ok(r) = compare::CompareResult::try_from(c.result) {
            if c.result != 0 {
                let _ = write!(out, "result:{} ", r.as_str_name());
            }
        }
        if let Ok(t) = compare::CompareTarget::try_from(c.target) {
            if c.target != 0 {
                let _ = write!(out, "target:{} ", t.as_str_name());
            }
        }
        quoted(out, "key", &c.key);
        range_end(out, &c.range_end);
        match &c.target_union {
            Some(compare::TargetUnion::Value(v)) => {
                let _ = write!(out, "value_size:{} ", v.len());
            }
            Some(compare::TargetUnion::Version(v)) => {
                let _ = write!(out, "version:{v} ");
            }
            Some(compare::TargetUnion::CreateRevision(v)) => {
                let _ = write!(out, "create_revision:{v} ");
            }
            Some(compare::TargetUnion::ModRevision(v)) => {
                let _ = write!(out, "mod_revision:{v} ");
            }
            Some(compare::TargetUnion::Lease(v)) => {
                let _ = write!(out, "lease:{v} ");
            }
            None => {}
        }
        out.truncate(out.trim_end().len());
        out.push_str("> ");
    }
    for (name, ops) in [("success", &t.success), ("failure", &t.failure)] {
        for op in ops {
            let _ = write!(out, "{name}:<");
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    let _ = write!(out, "request_range:<{}>", describe_range(r));
                }
                Some(request_op::Request::RequestPut(p)) => {
                    let _ = write!(out, "request_put:<{}>", describe_put(p, p.value.len()));
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    let _ = write!(out, "request_delete_range:<{}>", describe_delete(d));
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    let _ = write!(out, "request_txn:<{}>", describe_txn(inner));
                }
                None => {}
            }
            out.push_str("> ");
        }
    }
}

/// A put as etcd's loggable put shows it: `key:"k" value_size:3` (and the flags that
/// are set); `value_size` is given since the value may have moved on already.
pub fn describe_put(p: &PutRequest, value_size: usize) -> String {
    let mut out = String::new();
    put(&mut out, p, value_size);
    trimmed(out)
}

/// A delete as etcd logs it: `key:"a" range_end:"b"`.
pub fn describe_delete(d: &DeleteRangeRequest) -> String {
    let mut out = String::new();
    delete(&mut out, d);
    trimmed(out)
}

/// A txn as etcd's loggable txn shows it: its compares and operations, values given as
/// their sizes.
pub fn describe_txn(t: &TxnRequest) -> String {
    let mut out = String::new();
    txn(&mut out, t);
    trimmed(out)
}

/// A committed request as etcd's loggable form shows it: `header:<ID:… > put:<key:"k"
/// value_size:3 >` and the like, values never included. A put's value has moved into
/// the store by the time a slow apply is noticed: `put_value_size` is its size.
pub fn describe(id: u64, req: &Request, put_value_size: usize) -> String {
    let (name, body) = match req {
        Request::Put(p) => ("put", describe_put(p, put_value_size)),
        Request::DeleteRange(d) => ("delete_range", describe_delete(d)),
        Request::Txn(t) => ("txn", describe_txn(t)),
        Request::Compaction(c) => ("compaction", format!("revision:{}", c.revision)),
        Request::LeaseGrant(g) => ("lease_grant", format!("TTL:{} ID:{}", g.ttl, g.id)),
        Request::LeaseRevoke(r) => ("lease_revoke", format!("ID:{}", r.id)),
        Request::Alarm(a) => (
            "alarm",
            format!(
                "action:{} memberID:{} alarm:{}",
                a.action, a.member_id, a.alarm
            ),
        ),
        Request::MemberPeerUrls(m) => (
            "cluster_member_attr_set",
            format!("member_ID:{}", m.member_id),
        ),
        Request::MemberAttributes(m) => (
            "cluster_member_attr_set",
            format!("member_ID:{}", m.member_id),
        ),
        // Names only: passwords and their hashes never reach a log.
        Request::AuthEnable(_) => ("auth_enable", String::new()),
        Request::AuthDisable(_) => ("auth_disable", String::new()),
        Request::Authenticate(r) => ("authenticate", format!("name:{:?}", r.name)),
        Request::UserAdd(r) => ("auth_user_add", format!("name:{:?}", r.name)),
        Request::UserDelete(r) => ("auth_user_delete", format!("name:{:?}", r.name)),
        Request::UserChangePassword(r) => {
            ("auth_user_change_password", format!("name:{:?}", r.name))
        }
        Request::UserGrantRole(r) => (
            "auth_user_grant_role",
            format!("user:{:?} role:{:?}", r.user, r.role),
        ),
        Request::UserRevokeRole(r) => (
            "auth_user_revoke_role",
            format!("name:{:?} role:{:?}", r.name, r.role),
        ),
        Request::RoleAdd(r) => ("auth_role_add", format!("name:{:?}", r.name)),
        Request::RoleDelete(r) => ("auth_role_delete", format!("role:{:?}", r.role)),
        Request::RoleGrantPermission(r) => {
            ("auth_role_grant_permission", format!("name:{:?}", r.name))
        }
        Request::RoleRevokePermission(r) => {
            ("auth_role_revoke_permission", format!("role:{:?}", r.role))
        }
    };
    format!("header:<ID:{id} > {name}:<{body} >")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{Compare, RequestOp};

    #[test]
    fn within_the_bound_nothing_is_rendered() {
        let warned = check(
            Duration::from_millis(5),
            DEFAULT_WARNING,
            "",
            || panic!("described a fast request"),
            || panic!("rendered a fast response"),
            None,
        );
        assert!(!warned);
    }

    #[test]
    fn beyond_the_bound_it_warns_and_counts() {
        let before = crate::metrics::SLOW_APPLIES.get();
        let warned = check(
            Duration::from_millis(150),
            DEFAULT_WARNING,
            "",
            || "put:<>".into(),
            || "size:5".into(),
            None,
        );
        assert!(warned);
        assert!(crate::metrics::SLOW_APPLIES.get() > before);
    }

    #[test]
    fn a_put_is_logged_without_its_value() {
        let p = PutRequest {
            key: b"a\"b".to_vec(),
            value: Vec::new(),
            lease: 7,
            ..Default::default()
        };
        let s = describe(9, &Request::Put(p), 6);
        assert_eq!(
            s,
            r#"header:<ID:9 > put:<key:"a\"b" value_size:6 lease:7 >"#
        );
    }

    #[test]
    fn a_txn_shows_compares_and_ops_without_values() {
        let t = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Greater as i32,
                target: compare::CompareTarget::Value as i32,
                key: b"k".to_vec(),
                target_union: Some(compare::TargetUnion::Value(b"hidden".to_vec())),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    value: b"hidden".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
            }],
        };
        let s = describe(1, &Request::Txn(t), 0);
        assert_eq!(
            s,
            r#"header:<ID:1 > txn:<compare:<result:GREATER target:VALUE key:"k" value_size:6> success:<request_put:<key:"k" value_size:6>> failure:<request_range:<key:"k">> >"#
        );
        assert!(!s.contains("hidden"));
    }

    #[test]
    fn a_range_names_its_set_fields() {
        let r = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 10,
            serializable: true,
            ..Default::default()
        };
        assert_eq!(
            describe_range(&r),
            r#"key:"a" range_end:"b" limit:10 serializable:true"#
        );
    }
}
