//! Execution of Put, DeleteRange, Range and Txn requests against one MVCC write
//! transaction (etcd's `txn.go`): all changes of a request share one revision.

use crate::lease::Lessor;
use crate::mvcc::{MvccError, RangeResult, WriteTxn};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response,
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;
use crate::rpctypes::EtcdError;

fn mvcc_err(e: MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRevision => EtcdError::FutureRev,
        other => EtcdError::Internal(other.to_string()),
    }
}

/// Converts a store range result into etcd's response.
pub fn range_response(r: RangeResult) -> RangeResponse {
    RangeResponse {
        header: Some(ResponseHeader {
            revision: r.revision,
            ..Default::default()
        }),
        kvs: r.kvs,
        more: r.more,
        count: r.count,
    }
}

/// Executes a Range inside the transaction (sees the transaction's own writes).
pub fn range(txn: &WriteTxn<'_>, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    txn.range(req).map(range_response).map_err(mvcc_err)
}

/// What checking a Put found.
struct CheckedPut {
    /// The key's current value, read only for ignore_value / ignore_lease.
    prev: Option<KeyValue>,
    /// The lease the key will have.
    lease: i64,
}

/// Checks a Put before anything is written: ignore_* puts need an existing key, and the
/// lease the key will have must exist.
fn check_put(
    txn: &WriteTxn<'_>,
    lessor: &Lessor,
    req: &PutRequest,
) -> Result<CheckedPut, EtcdError> {
    let prev = if req.ignore_value || req.ignore_lease {
        let prev = txn.get(&req.key).map_err(mvcc_err)?;
        if prev.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        prev
    } else {
        None
    };
    let lease = match (&prev, req.ignore_lease) {
        (Some(p), true) => p.lease,
        _ => req.lease,
    };
    if lease != 0 && !lessor.exists(lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    Ok(CheckedPut { prev, lease })
}

/// Executes a Put. Like etcd, it reads the key's previous value only when the request
/// needs it: create_revision and version come from the index, and the lessor knows
/// which lease, if any, the key was attached to.
pub fn put(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    req: &PutRequest,
) -> Result<PutResponse, EtcdError> {
    put_value(txn, lessor, req, req.value.clone())
}

/// [`put`] that moves the request's value into the store without a copy (`req.value`
/// is left empty; the key and flags stay for the caller).
pub fn put_owned(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    req: &mut PutRequest,
) -> Result<PutResponse, EtcdError> {
    let value = std::mem::take(&mut req.value);
    put_value(txn, lessor, req, value)
}

/// [`put`] with the request's value given separately (`req.value` is not read).
fn put_value(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    req: &PutRequest,
    value: Vec<u8>,
) -> Result<PutResponse, EtcdError> {
    let CheckedPut { prev, lease } = check_put(txn, lessor, req)?;
    let value = match (&prev, req.ignore_value) {
        (Some(p), true) => p.value.clone(),
        _ => bytes::Bytes::from(value),
    };
    let prev = if prev.is_some() {
        txn.put_over(&req.key, value, lease, prev)
            .map_err(mvcc_err)?
    } else if req.prev_kv {
        txn.put(&req.key, value, lease).map_err(mvcc_err)?
    } else {
        txn.put_unread(&req.key, value, lease);
        None
    };
    // A key belongs to at most one lease: attaching moves it from any other one.
    if lease == 0 {
        lessor.detach_key(&req.key);
    } else {
        lessor.attach(lease, &req.key);
    }
    Ok(PutResponse {
        header: None,
        prev_kv: if req.prev_kv { prev } else { None },
    })
}

/// Executes a DeleteRange.
pub fn delete_range(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let deleted = txn
        .delete_range(&req.key, &req.range_end, req.prev_kv)
        .map_err(mvcc_err)?;
    for k in &deleted.keys {
        lessor.detach_key(k);
    }
    Ok(DeleteRangeResponse {
        header: None,
        deleted: deleted.keys.len() as i64,
        prev_kvs: deleted.prev_kvs,
    })
}

fn compare_one(kv: &KeyValue, c: &Compare) -> bool {
    use std::cmp::Ordering;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let ord = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value[..].cmp(want)
        }
        _ => {
            let (have, want) = match target {
                CompareTarget::Version => (kv.version, union_int(&c.target_union)),
                CompareTarget::Create => (kv.create_revision, union_int(&c.target_union)),
                CompareTarget::Mod => (kv.mod_revision, union_int(&c.target_union)),
                CompareTarget::Lease => (kv.lease, union_int(&c.target_union)),
                CompareTarget::Value => (0, 0),
            };
            have.cmp(&want)
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn union_int(u: &Option<TargetUnion>) -> i64 {
    match u {
        Some(TargetUnion::Version(v))
        | Some(TargetUnion::CreateRevision(v))
        | Some(TargetUnion::ModRevision(v))
        | Some(TargetUnion::Lease(v)) => *v,
        _ => 0,
    }
}

/// Evaluates one compare against the transaction's view: a missing key compares as a
/// zero KeyValue (except VALUE, which is then false); with a range every key must match.
fn compare(txn: &WriteTxn<'_>, c: &Compare) -> Result<bool, EtcdError> {
    let kvs = if c.range_end.is_empty() {
        txn.get(&c.key)
            .map_err(mvcc_err)?
            .into_iter()
            .collect::<Vec<_>>()
    } else {
        let req = RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        };
        txn.range(&req).map_err(mvcc_err)?.kvs
    };
    if kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_one(&KeyValue::default(), c));
    }
    Ok(kvs.iter().all(|kv| compare_one(kv, c)))
}

/// Checks the branch that will run, recursively, before anything is written: leases of
/// puts exist, ignore_* puts have keys, range revisions are readable.
fn check_branch(
    txn: &WriteTxn<'_>,
    lessor: &Lessor,
    compact_rev: i64,
    req: &TxnRequest,
) -> Result<(), EtcdError> {
    let ok = evaluate(txn, req)?;
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                check_put(txn, lessor, p)?;
            }
            Some(Request::RequestRange(r)) => {
                let cur = txn.revision() - 1;
                if r.revision > cur {
                    return Err(EtcdError::FutureRev);
                }
                if r.revision > 0 && r.revision < compact_rev {
                    return Err(EtcdError::Compacted);
                }
            }
            Some(Request::RequestTxn(t)) => check_branch(txn, lessor, compact_rev, t)?,
            Some(Request::RequestDeleteRange(_)) => {}
            None => return Err(EtcdError::KeyNotFound),
        }
    }
    Ok(())
}

fn evaluate(txn: &WriteTxn<'_>, req: &TxnRequest) -> Result<bool, EtcdError> {
    for c in &req.compare {
        if !compare(txn, c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Executes a Txn: compares, then the chosen branch's ops in order.
pub fn txn(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    compact_rev: i64,
    req: &TxnRequest,
) -> Result<TxnResponse, EtcdError> {
    check_branch(txn, lessor, compact_rev, req)?;
    execute(txn, lessor, req)
}

fn execute(
    txn: &mut WriteTxn<'_>,
    lessor: &Lessor,
    req: &TxnRequest,
) -> Result<TxnResponse, EtcdError> {
    let succeeded = evaluate(txn, req)?;
    let ops: &[RequestOp] = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let resp = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(range(txn, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(put(txn, lessor, p)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(delete_range(txn, lessor, d)?)
            }
            Some(Request::RequestTxn(t)) => Response::ResponseTxn(execute(txn, lessor, t)?),
            None => return Err(EtcdError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(resp),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

/// True when the txn could write (has a Put or DeleteRange anywhere).
pub fn has_writes(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(req.failure.iter())
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
            Some(Request::RequestTxn(t)) => has_writes(t),
            _ => false,
        })
}

/// True when the txn has a Put anywhere (NOSPACE blocks those).
pub fn has_puts(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(req.failure.iter())
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(t)) => has_puts(t),
            _ => false,
        })
}
