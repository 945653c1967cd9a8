//! Revisions and their on-disk key encoding.
//!
//! A record in the `kv` column family is keyed by its revision: `main` (8 bytes,
//! big-endian) followed by `sub` (8 bytes, big-endian). Deletion records (tombstones)
//! carry one more byte, [`TOMBSTONE_MARKER`]. Big-endian encoding makes the RocksDB key
//! order equal to revision order, so a scan of the column family visits records in the
//! order they were written.

use super::MvccError;

/// Byte appended to the key of a deletion record.
pub const TOMBSTONE_MARKER: u8 = b't';

/// Length of an encoded revision without the tombstone marker.
pub const REVISION_KEY_LEN: usize = 16;

/// A point in the store's history: `main` is the revision of the write request,
/// `sub` orders the changes inside that request (0, 1, 2, ...).
///
/// Ordering is by `main`, then `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The store revision produced by the write request.
    pub main: i64,
    /// The position of the change inside its write request.
    pub sub: i64,
}

impl Revision {
    /// A revision from its two parts.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The 16-byte key of a put record at this revision.
    pub fn to_key(self) -> Vec<u8> {
        let mut k = Vec::with_capacity(REVISION_KEY_LEN + 1);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        k
    }

    /// The key of a record at this revision: 16 bytes, plus the tombstone marker when
    /// `tombstone` is set.
    pub fn to_record_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = self.to_key();
        if tombstone {
            k.push(TOMBSTONE_MARKER);
        }
        k
    }
}

/// A decoded record key: the revision and whether the record is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey {
    /// Revision of the record.
    pub rev: Revision,
    /// True for deletion records.
    pub tombstone: bool,
}

impl RecordKey {
    /// Decodes a `kv` column family key; fails with [`MvccError::Corrupt`] on any key that
    /// is not 16 bytes, or 17 bytes ending in the tombstone marker.
    pub fn decode(key: &[u8]) -> Result<RecordKey, MvccError> {
        let tombstone = match key.len() {
            REVISION_KEY_LEN => false,
            n if n == REVISION_KEY_LEN + 1 && key[REVISION_KEY_LEN] == TOMBSTONE_MARKER => true,
            _ => {
                return Err(MvccError::Corrupt(format!(
                    "bad revision key of {} bytes",
                    key.len()
                )))
            }
        };
        let mut main = [0u8; 8];
        let mut sub = [0u8; 8];
        main.copy_from_slice(&key[..8]);
        sub.copy_from_slice(&key[8..REVISION_KEY_LEN]);
        Ok(RecordKey {
            rev: Revision::new(
                u64::from_be_bytes(main) as i64,
                u64::from_be_bytes(sub) as i64,
            ),
            tombstone,
        })
    }
}

/// Encodes an `i64` stored in the `meta` column family (8 bytes, big-endian).
pub(crate) fn encode_i64(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes an `i64` written by [`encode_i64`].
pub(crate) fn decode_i64(what: &str, bytes: &[u8]) -> Result<i64, MvccError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        MvccError::Corrupt(format!("{what}: expected 8 bytes, got {}", bytes.len()))
    })?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_order() {
        let a = Revision::new(2, 0);
        let b = Revision::new(2, 1);
        let c = Revision::new(3, 0);
        assert!(a.to_key() < a.to_record_key(true));
        assert!(a.to_record_key(true) < b.to_key());
        assert!(b.to_key() < c.to_key());
        assert!(Revision::new(255, 0).to_key() < Revision::new(256, 0).to_key());
        for (rev, tomb) in [(a, false), (b, true), (Revision::new(1 << 40, 7), false)] {
            let d = RecordKey::decode(&rev.to_record_key(tomb)).unwrap();
            assert_eq!(d.rev, rev);
            assert_eq!(d.tombstone, tomb);
        }
        assert_eq!(a.to_key().len(), 16);
    }

    #[test]
    fn bad_keys_are_corrupt() {
        assert!(matches!(
            RecordKey::decode(b"short"),
            Err(MvccError::Corrupt(_))
        ));
        let mut k = Revision::new(1, 0).to_key();
        k.push(b'x');
        assert!(matches!(RecordKey::decode(&k), Err(MvccError::Corrupt(_))));
        assert!(decode_i64("x", b"123").is_err());
        assert_eq!(decode_i64("x", &encode_i64(-5)).unwrap(), -5);
    }
}
