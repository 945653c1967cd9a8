//! etcd's key range conventions (`key`, `range_end`), shared by Range, DeleteRange,
//! Watch and Compare:
//! - empty `range_end`: only `key` itself;
//! - `range_end == [0]`: every key `>= key` (with `key == [0]` that is every key);
//! - otherwise the half-open interval `[key, range_end)`, empty when `range_end <= key`.

use std::ops::Bound;

/// True when `key` falls in the range described by `start` and `range_end` under etcd's
/// conventions (see the module documentation).
pub fn key_in_range(key: &[u8], start: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        return key == start;
    }
    if range_end == [0] {
        return key >= start;
    }
    key >= start && key < range_end
}

/// Lower and upper bound of a key range, for `BTreeMap::range`.
pub(crate) type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The range as `BTreeMap` bounds, or `None` when it contains no key. Safe to pass to
/// `BTreeMap::range` (never an inverted interval).
pub(crate) fn bounds<'a>(start: &'a [u8], range_end: &'a [u8]) -> Option<KeyBounds<'a>> {
    if range_end.is_empty() {
        return Some((Bound::Included(start), Bound::Included(start)));
    }
    if range_end == [0] {
        return Some((Bound::Included(start), Bound::Unbounded));
    }
    if range_end <= start {
        return None;
    }
    Some((Bound::Included(start), Bound::Excluded(range_end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn collect(map: &BTreeMap<Vec<u8>, ()>, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        match bounds(start, end) {
            None => vec![],
            Some(b) => map.range::<[u8], _>(b).map(|(k, _)| k.clone()).collect(),
        }
    }

    #[test]
    fn conventions() {
        assert!(key_in_range(b"a", b"a", b""));
        assert!(!key_in_range(b"ab", b"a", b""));
        assert!(key_in_range(b"zz", b"a", b"\0"));
        assert!(!key_in_range(b"0", b"a", b"\0"));
        assert!(key_in_range(b"\x01", b"\0", b"\0"));
        assert!(key_in_range(b"ab", b"a", b"b"));
        assert!(!key_in_range(b"b", b"a", b"b"));
        assert!(!key_in_range(b"a", b"b", b"a"));
    }

    #[test]
    fn bounds_match_key_in_range() {
        let keys: Vec<&[u8]> = vec![b"\x01", b"a", b"ab", b"a\xff", b"b", b"c", b"\xff"];
        let map: BTreeMap<Vec<u8>, ()> = keys.iter().map(|k| (k.to_vec(), ())).collect();
        let cases: Vec<(&[u8], &[u8])> = vec![
            (b"a", b""),
            (b"x", b""),
            (b"a", b"b"),
            (b"a", b"\0"),
            (b"\0", b"\0"),
            (b"b", b"a"),
            (b"b", b"b"),
            (b"a", b"\xff"),
        ];
        for (s, e) in cases {
            let want: Vec<Vec<u8>> = keys
                .iter()
                .filter(|k| key_in_range(k, s, e))
                .map(|k| k.to_vec())
                .collect();
            assert_eq!(collect(&map, s, e), want, "range {s:?}..{e:?}");
        }
    }
}
