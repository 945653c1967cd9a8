//! What each client request needs from its caller when authentication is enabled, as
//! etcd checks it: reads need read access to their keys, writes write access, `prev_kv`
//! read access too, a put that attaches a lease write access to the lease's other keys,
//! a lease revoke write access to every key on the lease.

use super::{Access, AuthInfo, AuthStore};
use crate::proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};
use crate::rpctypes::EtcdError;

/// Range: read access to its keys.
pub fn check_range(
    auth: &AuthStore,
    who: Option<&AuthInfo>,
    r: &RangeRequest,
) -> Result<(), EtcdError> {
    auth.check_range(who, &r.key, &r.range_end, Access::Read)
}

/// Put: write access to the key, read access with `prev_kv`, and write access to the
/// keys already on the lease it attaches (`lease_keys`, asked only when auth is on).
pub fn check_put(
    auth: &AuthStore,
    who: Option<&AuthInfo>,
    p: &PutRequest,
    lease_keys: impl FnOnce(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    if !auth.is_enabled() {
        return Ok(());
    }
    auth.check_range(who, &p.key, &[], Access::Write)?;
    if p.prev_kv {
        auth.check_range(who, &p.key, &[], Access::Read)?;
    }
    if p.lease != 0 {
        check_keys(auth, who, &lease_keys(p.lease))?;
    }
    Ok(())
}

/// DeleteRange: write access to its keys, read access too with `prev_kv`.
pub fn check_delete(
    auth: &AuthStore,
    who: Option<&AuthInfo>,
    d: &DeleteRangeRequest,
) -> Result<(), EtcdError> {
    auth.check_range(who, &d.key, &d.range_end, Access::Write)?;
    if d.prev_kv {
        auth.check_range(who, &d.key, &d.range_end, Access::Read)?;
    }
    Ok(())
}

/// LeaseRevoke (and the keys of a put's lease): write access to each of `keys`.
pub fn check_keys(
    auth: &AuthStore,
    who: Option<&AuthInfo>,
    keys: &[Vec<u8>],
) -> Result<(), EtcdError> {
    let ranges: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_slice(), &[][..])).collect();
    auth.check_ranges(who, &ranges, Access::Write)
}

/// Txn: read access to every compared key and every range, write access to every put's
/// key and every delete's keys (read access too with `prev_kv`), in nested txns too.
pub fn check_txn(
    auth: &AuthStore,
    who: Option<&AuthInfo>,
    t: &TxnRequest,
) -> Result<(), EtcdError> {
    if !auth.is_enabled() {
        return Ok(());
    }
    let mut reads: Vec<(&[u8], &[u8])> = t
        .compare
        .iter()
        .map(|c| (c.key.as_slice(), c.range_end.as_slice()))
        .collect();
    let mut writes: Vec<(&[u8], &[u8])> = Vec::new();
    collect_ops(t, &mut reads, &mut writes);
    auth.check_ranges(who, &reads, Access::Read)?;
    auth.check_ranges(who, &writes, Access::Write)
}

fn collect_ops<'a>(
    t: &'a TxnRequest,
    reads: &mut Vec<(&'a [u8], &'a [u8])>,
    writes: &mut Vec<(&'a [u8], &'a [u8])>,
) {
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                reads.push((&r.key, &r.range_end));
            }
            Some(request_op::Request::RequestPut(p)) => {
                writes.push((&p.key, &[]));
                if p.prev_kv {
                    reads.push((&p.key, &[]));
                }
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                writes.push((&d.key, &d.range_end));
                if d.prev_kv {
                    reads.push((&d.key, &d.range_end));
                }
            }
            Some(request_op::Request::RequestTxn(inner)) => {
                reads.extend(
                    inner
                        .compare
                        .iter()
                        .map(|c| (c.key.as_slice(), c.range_end.as_slice())),
                );
                collect_ops(inner, reads, writes);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authpb::{permission::Type, Permission};
    use crate::proto::etcdserverpb::{Compare, RequestOp};
    use crate::storage::{Durability, Storage};

    fn op(r: request_op::Request) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn txn_and_put_needs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let a = AuthStore::load(
            &s,
            crate::auth::TokenProvider::Simple(std::time::Duration::from_secs(60)),
        )
        .unwrap();
        let mut b = s.batch();
        let h = super::super::hash_password("pw", 4).unwrap();
        a.user_add("root", &h, None, &mut b).unwrap();
        a.user_grant_role("root", "root", &mut b).unwrap();
        a.user_add("u", &h, None, &mut b).unwrap();
        a.role_add("r", &mut b).unwrap();
        for (t, k) in [
            (Type::Read, "r"),
            (Type::Write, "w"),
            (Type::Readwrite, "rw"),
        ] {
            let p = Permission {
                perm_type: t as i32,
                key: k.into(),
                range_end: vec![],
            };
            a.role_grant_permission("r", p, &mut b).unwrap();
        }
        a.user_grant_role("u", "r", &mut b).unwrap();
        a.enable(&mut b).unwrap();
        s.write(b, Durability::Synced).unwrap();
        let u = a.info_for_user("u");
        let u = Some(&u);
        let put = |k: &str, prev: bool, lease: i64| PutRequest {
            key: k.into(),
            prev_kv: prev,
            lease,
            ..Default::default()
        };
        let none = |_| vec![];
        check_put(&a, u, &put("w", false, 0), none).unwrap();
        assert_eq!(
            check_put(&a, u, &put("w", true, 0), none),
            Err(EtcdError::PermissionDenied),
            "prev_kv reads"
        );
        check_put(&a, u, &put("rw", true, 0), none).unwrap();
        assert_eq!(
            check_put(&a, u, &put("w", false, 7), |_| vec![b"r".to_vec()]),
            Err(EtcdError::PermissionDenied),
            "the lease's other keys"
        );
        check_put(&a, u, &put("w", false, 7), |_| vec![b"rw".to_vec()]).unwrap();
        let cmp = |k: &str| Compare {
            key: k.into(),
            ..Default::default()
        };
        let range = |k: &str| {
            op(request_op::Request::RequestRange(RangeRequest {
                key: k.into(),
                ..Default::default()
            }))
        };
        let txn = TxnRequest {
            compare: vec![cmp("r")],
            success: vec![
                range("rw"),
                op(request_op::Request::RequestPut(put("w", false, 0))),
            ],
            failure: vec![range("r")],
        };
        check_txn(&a, u, &txn).unwrap();
        let nested = TxnRequest {
            success: vec![op(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![cmp("w")],
                ..Default::default()
            }))],
            ..Default::default()
        };
        assert_eq!(
            check_txn(&a, u, &nested),
            Err(EtcdError::PermissionDenied),
            "a nested compare reads"
        );
        let del = TxnRequest {
            failure: vec![op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: "r".into(),
                    ..Default::default()
                },
            ))],
            ..Default::default()
        };
        assert_eq!(check_txn(&a, u, &del), Err(EtcdError::PermissionDenied));
        assert_eq!(check_txn(&a, None, &txn), Err(EtcdError::UserEmpty));
        check_keys(&a, u, &[b"w".to_vec(), b"rw".to_vec()]).unwrap();
        assert_eq!(
            check_keys(&a, u, &[b"w".to_vec(), b"r".to_vec()]),
            Err(EtcdError::PermissionDenied)
        );
    }
}
