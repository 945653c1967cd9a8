//! The on-disk format of a raft log segment.
//!
//! A segment file starts with a header (magic, the segment's sequence number, a CRC of
//! both), followed by records:
//!
//! ```text
//! | payload length: u32 LE | crc32: u32 LE | kind: u8 | payload |
//! ```
//!
//! The CRC covers the segment's sequence number, the kind and the payload. A segment is
//! pre-filled with zeros (or is an old segment reused under a new sequence number), so
//! the valid log of a segment ends at the first record that is all zeros, does not fit,
//! or fails its CRC: records left over from the file's previous use carry the old
//! sequence number and never verify.

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"etcdrsw1";
/// Bytes of the segment header: magic, sequence number, CRC, padding.
pub const SEGMENT_HEADER: u64 = 32;
/// Bytes of a record header: length, CRC, kind.
pub const RECORD_HEADER: usize = 9;

/// What a record holds. The discriminants are the on-disk kind bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// One raft entry (`raftpb.Entry`); it replaces any entry at or after its index.
    Entry = 1,
    /// The hard state (`raftpb.HardState`).
    HardState = 2,
    /// The configuration (`raftpb.ConfState`).
    ConfState = 3,
    /// The log is compacted up to a snapshot point (`raftpb.SnapshotMetadata`): entries
    /// at or before its index are gone, later ones stay.
    Compact = 4,
    /// A snapshot was installed (`raftpb.SnapshotMetadata`): every entry is gone and
    /// the log continues after its index.
    Install = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Entry,
            2 => Kind::HardState,
            3 => Kind::ConfState,
            4 => Kind::Compact,
            5 => Kind::Install,
            _ => return None,
        })
    }
}

fn crc(seq: u64, kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

/// The header of segment `seq`.
pub fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    let sum = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&sum.to_le_bytes());
    h
}

/// The sequence number of a segment whose file starts with `buf`, if the header is
/// intact.
pub fn parse_segment_header(buf: &[u8]) -> Option<u64> {
    if buf.len() < SEGMENT_HEADER as usize || &buf[..8] != MAGIC {
        return None;
    }
    let sum = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    if crc32fast::hash(&buf[..16]) != sum {
        return None;
    }
    Some(u64::from_le_bytes(buf[8..16].try_into().ok()?))
}

/// Appends the encoding of one record of segment `seq` to `out`.
pub fn encode(seq: u64, kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    // A payload never approaches 4 GiB: raft entries are bounded by the request size.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(seq, kind as u8, payload).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// Decodes the record of segment `seq` at the start of `buf`: its kind, payload and
/// encoded length. `None` marks the end of the segment's valid log.
pub fn decode(seq: u64, buf: &[u8]) -> Option<(Kind, &[u8], usize)> {
    let head: &[u8; RECORD_HEADER] = buf.get(..RECORD_HEADER)?.try_into().ok()?;
    let (kind, len, sum) = decode_header(head)?;
    let payload = buf.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    verify(seq, kind, payload, sum).then_some((kind, payload, RECORD_HEADER + len))
}

/// Decodes a record header read on its own: the kind, payload length and CRC.
pub fn decode_header(head: &[u8; RECORD_HEADER]) -> Option<(Kind, usize, u32)> {
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(head[4..8].try_into().ok()?);
    Some((Kind::from_byte(head[8])?, len, sum))
}

/// Whether `payload` is the intact payload of a record of segment `seq` with `kind`
/// and CRC `sum`.
pub fn verify(seq: u64, kind: Kind, payload: &[u8], sum: u32) -> bool {
    crc(seq, kind as u8, payload) == sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_end_at_zeros_torn_writes_and_other_segments() {
        let mut buf = Vec::new();
        encode(7, Kind::Entry, b"first", &mut buf);
        encode(7, Kind::HardState, b"", &mut buf);
        let second = buf.len();
        encode(7, Kind::Compact, b"third record", &mut buf);
        buf.extend_from_slice(&[0u8; 64]);

        let (k, p, n) = decode(7, &buf).unwrap();
        assert_eq!((k, p), (Kind::Entry, &b"first"[..]));
        let (k, p, n2) = decode(7, &buf[n..]).unwrap();
        assert_eq!((k, p, n + n2), (Kind::HardState, &b""[..], second));
        let (k, p, n3) = decode(7, &buf[second..]).unwrap();
        assert_eq!((k, p), (Kind::Compact, &b"third record"[..]));
        assert!(
            decode(7, &buf[second + n3..]).is_none(),
            "zeros end the log"
        );

        // The same bytes read as another segment's (a reused file) do not verify.
        assert!(decode(8, &buf).is_none());
        // A torn record (payload cut short or a flipped byte) ends the log.
        assert!(decode(7, &buf[second..second + n3 - 1]).is_none());
        let mut bad = buf.clone();
        bad[second + RECORD_HEADER + 2] ^= 1;
        assert!(decode(7, &bad[second..]).is_none());
        // An unknown kind ends the log.
        let mut bad = buf.clone();
        bad[8] = 99;
        assert!(decode(7, &bad).is_none());
    }

    #[test]
    fn record_headers_verify_payloads_read_separately() {
        let mut buf = Vec::new();
        encode(3, Kind::Entry, b"payload", &mut buf);
        let head: [u8; RECORD_HEADER] = buf[..RECORD_HEADER].try_into().unwrap();
        let (kind, len, sum) = decode_header(&head).unwrap();
        assert_eq!((kind, len), (Kind::Entry, 7));
        assert!(verify(3, kind, &buf[RECORD_HEADER..], sum));
        assert!(!verify(4, kind, &buf[RECORD_HEADER..], sum));
    }

    #[test]
    fn segment_headers_carry_their_sequence_number() {
        let h = segment_header(42);
        assert_eq!(parse_segment_header(&h), Some(42));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(parse_segment_header(&bad), None);
        assert_eq!(parse_segment_header(&[0u8; 32]), None);
    }
}
