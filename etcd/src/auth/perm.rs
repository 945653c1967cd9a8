//! Key permissions as intervals: whether the permissions of a user's roles cover the
//! keys a request touches.
//!
//! A permission (and a request) names `key` and `range_end` as etcd does: an empty
//! `range_end` is the single key `key`, `range_end == "\0"` every key from `key` on, any
//! other `range_end` the keys in `[key, range_end)`. A request is permitted when the union
//! of the permissions of the wanted kind covers all of its keys, also when no single
//! permission does (etcd merges them the same way).

use std::cmp::Ordering;

/// The upper end of an interval: exclusive `Key`, or no end at all.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Key(Vec<u8>),
    Unbounded,
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (End::Unbounded, End::Unbounded) => Ordering::Equal,
            (End::Unbounded, _) => Ordering::Greater,
            (_, End::Unbounded) => Ordering::Less,
            (End::Key(a), End::Key(b)) => a.cmp(b),
        }
    }
}

/// `[start, end)` for etcd's `key`/`range_end` pair; `None` when it holds no key.
fn interval(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, End)> {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Key(next)
        }
        [0] => End::Unbounded,
        e => End::Key(e.to_vec()),
    };
    match &end {
        End::Key(e) if e.as_slice() <= key => None,
        _ => Some((key.to_vec(), end)),
    }
}

/// Whether the permissions `perms` (`(key, range_end)` pairs) together cover every key
/// of the request's `key`/`range_end`. A request that holds no key (an empty interval)
/// is covered only if its start key is.
pub fn covers<'a>(
    perms: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let (start, end) = match interval(key, range_end) {
        Some(i) => i,
        None => match interval(key, &[]) {
            Some(i) => i,
            None => return false,
        },
    };
    let mut have: Vec<(Vec<u8>, End)> = perms
        .into_iter()
        .filter_map(|(k, e)| interval(k, e))
        .collect();
    have.sort();
    // Walk the sorted intervals, extending how far from `start` on is covered.
    let mut reached: Option<End> = None;
    for (s, e) in have {
        let from = match &reached {
            None => {
                if s.as_slice() > start.as_slice() {
                    return false;
                }
                e
            }
            Some(r) => {
                if End::Key(s) > *r {
                    break;
                }
                e.max(r.clone())
            }
        };
        if from >= end {
            return true;
        }
        if End::Key(start.clone()) < from {
            reached = Some(from);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::covers;

    fn c(perms: &[(&str, &str)], key: &str, end: &str) -> bool {
        covers(
            perms.iter().map(|(k, e)| (k.as_bytes(), e.as_bytes())),
            key.as_bytes(),
            end.as_bytes(),
        )
    }

    #[test]
    fn single_keys_and_ranges() {
        let p = [("a", ""), ("b", "d")];
        assert!(c(&p, "a", ""));
        assert!(!c(&p, "aa", ""));
        assert!(c(&p, "b", ""));
        assert!(c(&p, "c", ""));
        assert!(c(&p, "czz", ""));
        assert!(!c(&p, "d", ""));
        assert!(c(&p, "b", "d"));
        assert!(c(&p, "b", "c"));
        assert!(!c(&p, "b", "e"));
        assert!(
            !c(&p, "a", "c"),
            "the gap between a\\0 and b is not covered"
        );
        assert!(!c(&[], "a", ""));
    }

    #[test]
    fn unbounded_and_merged() {
        assert!(c(&[("\0", "\0")], "\0", "\0"), "every key");
        assert!(c(&[("\0", "\0")], "zzz", ""));
        assert!(c(&[("k", "\0")], "k", "\0"));
        assert!(!c(&[("k", "\0")], "j", "\0"));
        assert!(!c(&[("a", "z")], "a", "\0"));
        // Two roles' permissions joined cover what neither does alone.
        let p = [("a", "m"), ("m", "\0")];
        assert!(c(&p, "a", "\0"));
        assert!(c(&p, "b", "x"));
        let p = [("m", "\0"), ("a", "n")];
        assert!(c(&p, "a", "\0"));
        let p = [("a", "c"), ("b", "e"), ("e", "g")];
        assert!(c(&p, "a", "g"));
        assert!(!c(&p, "a", "h"));
        // A prefix permission (etcdctl --prefix) covers the prefix's keys only.
        let p = [("foo", "fop")];
        assert!(c(&p, "foo", "fop"));
        assert!(c(&p, "foo/bar", ""));
        assert!(!c(&p, "fop", ""));
    }

    #[test]
    fn empty_request_interval_checks_its_start() {
        assert!(c(&[("b", "")], "b", "a"));
        assert!(!c(&[("c", "")], "b", "a"));
    }
}
