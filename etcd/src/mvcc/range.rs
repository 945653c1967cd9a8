//! Execution of a `RangeRequest` on top of a key-ordered fetch, exactly like etcd 3.6's
//! `executeRange`: revision checks, `count_only`, fetch size, min/max filters, sort,
//! limit / `more`, `count`, `keys_only`.

use std::cmp::Ordering;

use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::KeyValue;

use super::MvccError;

/// The outcome of a range read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeResult {
    /// Matching key-values after filters, sort and limit.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut off further results.
    pub more: bool,
    /// Number of keys in the whole range at the read revision, regardless of limit and
    /// filters.
    pub count: i64,
    /// The reader's current revision at read time (not the requested revision).
    pub revision: i64,
}

/// What the range executor asks of a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchOptions {
    /// Requested revision; `<= 0` means the reader's current revision.
    pub rev: i64,
    /// Maximum number of kvs to return; 0 = all.
    pub limit: usize,
    /// Only count; return no kvs.
    pub count_only: bool,
}

/// What a reader returns: kvs in key order (at most `limit`), the number of keys in the
/// whole range, and the reader's current revision.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Fetched {
    pub kvs: Vec<KeyValue>,
    pub count: i64,
    pub revision: i64,
}

/// Resolves a requested revision against a reader: future and compacted checks, in
/// etcd's order. Returns the revision to read at.
pub(crate) fn resolve_revision(
    requested: i64,
    current: i64,
    compacted: i64,
) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compacted {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

/// Runs `req` with `fetch` reading `[req.key, req.range_end)` in key order.
pub(crate) fn execute(
    req: &RangeRequest,
    fetch: impl FnOnce(FetchOptions) -> Result<Fetched, MvccError>,
) -> Result<RangeResult, MvccError> {
    let order = SortOrder::try_from(req.sort_order).map_err(|_| MvccError::InvalidSortOption)?;
    let target = SortTarget::try_from(req.sort_target).map_err(|_| MvccError::InvalidSortOption)?;
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let limit = if order != SortOrder::None || filtered || req.limit <= 0 {
        0
    } else {
        // One extra to learn whether there is more.
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let fetched = fetch(FetchOptions {
        rev: req.revision,
        limit,
        count_only: req.count_only,
    })?;
    let mut kvs = fetched.kvs;

    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    let order = match (target, order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (t, SortOrder::None) if t != SortTarget::Key => SortOrder::Ascend,
        (_, o) => o,
    };
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable: ties stay in key order, as etcd's sort does for the same input.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }

    let mut more = false;
    if req.limit > 0 {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResult {
        kvs,
        more,
        count: fetched.count,
        revision: fetched.revision,
    })
}
