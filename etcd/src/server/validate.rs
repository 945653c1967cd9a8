//! Request checks done before a request is proposed (etcd's `v3rpc/key.go`): empty
//! keys, sort options, ignore_* combinations, the txn op limit and duplicate keys.

use crate::proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::rpctypes::EtcdError;

/// Checks a Range.
pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// Checks a Put.
pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange.
pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn: op count against `max_ops` (nested txns get the remaining budget),
/// every op, then the duplicate-key rule on both branches.
pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    txn_ops(r, max_ops as i64)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn txn_ops(r: &TxnRequest, max_ops: i64) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        request_op(op, max_ops - opc)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(p)) => put(p),
        Some(Request::RequestDeleteRange(d)) => delete_range(d),
        Some(Request::RequestTxn(t)) => txn_ops(t, max_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted interval: `[start, end)`, `end == None` for unbounded, point if `point`.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    point: bool,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        if self.point {
            return self.start == k;
        }
        k >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| k < e)
    }
}

type Puts = std::collections::HashSet<Vec<u8>>;

/// etcd's `checkIntervals`: within one branch, a key may be put once, and not put where a
/// DeleteRange of the same branch (or of a nested txn) covers it; the then- and
/// else-branches of a nested txn may put the same key.
fn intervals(reqs: &[RequestOp]) -> Result<(Puts, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|r| match &r.request {
            Some(Request::RequestDeleteRange(d)) => Some(if d.range_end.is_empty() {
                Interval {
                    start: d.key.clone(),
                    end: None,
                    point: true,
                }
            } else {
                Interval {
                    start: d.key.clone(),
                    end: (d.range_end != [0]).then(|| d.range_end.clone()),
                    point: false,
                }
            }),
            _ => None,
        })
        .collect();
    let hit = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));
    let mut puts = Puts::new();
    for r in reqs {
        let Some(Request::RequestTxn(t)) = &r.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hit(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if hit(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for r in reqs {
        let Some(Request::RequestPut(p)) = &r.request else {
            continue;
        };
        if puts.contains(&p.key) || hit(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn_op(s: Vec<RequestOp>, f: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success: s,
                failure: f,
            })),
        }
    }
    fn t(s: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success: s,
            failure: vec![],
        }
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            txn(&t(vec![put_op("a"), put_op("a")]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            txn(&t(vec![del_op("a", "c"), put_op("b")]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(txn(&t(vec![del_op("a", ""), put_op("b")]), 128), Ok(()));
        assert_eq!(
            txn(&t(vec![del_op("a", "c"), del_op("b", "d")]), 128),
            Ok(())
        );
        // then/else of a nested txn may share a key
        assert_eq!(
            txn(&t(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]), 128),
            Ok(())
        );
        // nested put vs outer put
        assert_eq!(
            txn(
                &t(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]),
                128
            ),
            Err(EtcdError::DuplicateKey)
        );
        // nested delete vs outer put
        assert_eq!(
            txn(
                &t(vec![put_op("b"), txn_op(vec![del_op("a", "c")], vec![])]),
                128
            ),
            Err(EtcdError::DuplicateKey)
        );
        // from-key delete covers everything after
        assert_eq!(
            txn(&t(vec![del_op("a", "\0"), put_op("zz")]), 128),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn op_limits_and_keys() {
        let ops: Vec<RequestOp> = (0..3).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(txn(&t(ops.clone()), 2), Err(EtcdError::TooManyOps));
        assert_eq!(txn(&t(ops), 3), Ok(()));
        assert_eq!(
            txn(&t(vec![RequestOp { request: None }]), 3),
            Err(EtcdError::KeyNotFound)
        );
        assert_eq!(txn(&t(vec![put_op("")]), 3), Err(EtcdError::EmptyKey));
        let bad_sort = RangeRequest {
            key: b"a".to_vec(),
            sort_order: 9,
            ..Default::default()
        };
        assert_eq!(range(&bad_sort), Err(EtcdError::InvalidSortOption));
        let p = PutRequest {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(put(&p), Err(EtcdError::ValueProvided));
    }
}
