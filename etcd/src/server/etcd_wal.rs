//! A reader of etcd's write-ahead log (`member/wal/*.wal`), enough to adopt a data dir
//! that etcd's `snapshot restore` wrote: the member and cluster IDs, the entries and the
//! last hard state.
//!
//! Format, as etcd writes it: files named `<seq>-<index>.wal` (16 hex digits each), read
//! in name order; each holds frames of an 8-byte little-endian length field (the low 56
//! bits are the record's length; when the top bit is set, the top byte's low 3 bits are
//! the zero bytes that follow the record to align the frame to 8 bytes) and a
//! `walpb.Record {type = 1, crc = 2, data = 3}`. A zero length
//! ends a file (the rest is preallocated space). Record types: 1 metadata
//! (`etcdserverpb.Metadata {NodeID, ClusterID}`), 2 a `raftpb.Entry`, 3 a
//! `raftpb.HardState`, 4 a CRC (the running checksum carried over from the previous
//! file), 5 a `walpb.Snapshot`. Every record's `crc` is the running CRC-32C (Castagnoli)
//! over the data of all records so far.
//!
//! Guarantees: reads only; a record whose checksum does not match, a torn frame or a
//! malformed message is an error (never a panic).

use std::path::Path;

use prost::Message as _;

const METADATA: i64 = 1;
const ENTRY: i64 = 2;
const STATE: i64 = 3;
const CRC: i64 = 4;
const SNAPSHOT: i64 = 5;

#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(int64, tag = "1")]
    kind: i64,
    #[prost(uint32, tag = "2")]
    crc: u32,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Metadata {
    #[prost(uint64, tag = "1")]
    node_id: u64,
    #[prost(uint64, tag = "2")]
    cluster_id: u64,
}

/// A raft log entry as etcd's WAL holds it (`raftpb.Entry`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// 0 normal, 1 configuration change, 2 configuration change v2.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The entry's term.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// The entry's index.
    #[prost(uint64, tag = "3")]
    pub index: u64,
    /// The payload (for kind 1 a `raftpb.ConfChange`).
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HardState {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    vote: u64,
    #[prost(uint64, tag = "3")]
    commit: u64,
}

/// A configuration change (`raftpb.ConfChange`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfChange {
    /// Its ID.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// 0 add node, 1 remove node, 2 update node, 3 add learner.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The member concerned.
    #[prost(uint64, tag = "3")]
    pub node_id: u64,
    /// For additions, etcd's JSON of the member.
    #[prost(bytes = "vec", tag = "4")]
    pub context: Vec<u8>,
}

/// What a WAL directory holds.
#[derive(Debug, Default)]
pub struct EtcdWal {
    /// This member's ID (from the metadata record).
    pub node_id: u64,
    /// The cluster's ID (from the metadata record).
    pub cluster_id: u64,
    /// Every entry, in log order, later writes of an index replacing earlier ones.
    pub entries: Vec<Entry>,
    /// The commit index of the last hard state.
    pub commit: u64,
}

/// The `.wal` files of `dir`, in name (= log) order; none when the directory is missing.
pub fn files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "wal") {
                    out.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Reads every `.wal` file of `dir` (see the module documentation).
pub fn read_dir(dir: &Path) -> Result<EtcdWal, String> {
    let files = files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!("{}: no etcd WAL files", dir.display()));
    }
    let mut wal = EtcdWal::default();
    let mut crc = 0u32;
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        read_file(&bytes, &mut crc, &mut wal).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(wal)
}

fn read_file(bytes: &[u8], crc: &mut u32, wal: &mut EtcdWal) -> Result<(), String> {
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let field = u64::from_le_bytes(bytes[at..at + 8].try_into().map_err(|_| "frame")?);
        if field == 0 {
            break;
        }
        let len = (field & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if field >> 63 == 1 {
            ((field >> 56) & 0x7) as usize
        } else {
            0
        };
        let start = at + 8;
        let end = start
            .checked_add(len)
            .and_then(|e| e.checked_add(pad))
            .filter(|e| *e <= bytes.len())
            .ok_or("torn record")?;
        let rec = Record::decode(&bytes[start..start + len]).map_err(|e| e.to_string())?;
        at = end;
        if rec.kind == CRC {
            if *crc != 0 && rec.crc != *crc {
                return Err("CRC mismatch between files".into());
            }
            *crc = rec.crc;
            continue;
        }
        *crc = crc32c(*crc, &rec.data);
        if rec.crc != *crc {
            return Err(format!("record at offset {} fails its CRC", start - 8));
        }
        match rec.kind {
            METADATA => {
                let m = Metadata::decode(rec.data.as_slice()).map_err(|e| e.to_string())?;
                wal.node_id = m.node_id;
                wal.cluster_id = m.cluster_id;
            }
            ENTRY => {
                let e = Entry::decode(rec.data.as_slice()).map_err(|e| e.to_string())?;
                // A rewritten index replaces the tail from there on (raft's log rule).
                wal.entries.retain(|old| old.index < e.index);
                wal.entries.push(e);
            }
            STATE => {
                let h = HardState::decode(rec.data.as_slice()).map_err(|e| e.to_string())?;
                wal.commit = h.commit;
            }
            SNAPSHOT => {}
            other => return Err(format!("unknown record type {other}")),
        }
    }
    Ok(())
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`, continuing from
/// `crc` as Go's `crc32.Update` does.
fn crc32c(crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !crc;
    for b in data {
        c = table[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as etcd writes it.
    fn frame(kind: i64, data: Vec<u8>, crc: &mut u32) -> Vec<u8> {
        let rec_crc = if kind == CRC {
            *crc
        } else {
            *crc = crc32c(*crc, &data);
            *crc
        };
        let rec = Record {
            kind,
            crc: rec_crc,
            data,
        }
        .encode_to_vec();
        let pad = (8 - rec.len() % 8) % 8;
        let mut field = rec.len() as u64;
        if pad != 0 {
            field |= (0x80 | pad as u64) << 56;
        }
        let mut out = field.to_le_bytes().to_vec();
        out.extend_from_slice(&rec);
        out.extend(std::iter::repeat_n(0u8, pad));
        out
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn reads_a_restored_log_and_refuses_a_damaged_one() {
        let mut crc = 0;
        let mut file = frame(CRC, vec![], &mut crc);
        file.extend(frame(
            METADATA,
            Metadata {
                node_id: 7,
                cluster_id: 9,
            }
            .encode_to_vec(),
            &mut crc,
        ));
        let cc = ConfChange {
            node_id: 7,
            context: br#"{"id":7,"peerURLs":["http://a:2380"],"name":"a"}"#.to_vec(),
            ..Default::default()
        };
        file.extend(frame(
            ENTRY,
            Entry {
                kind: 1,
                term: 1,
                index: 1,
                data: cc.encode_to_vec(),
            }
            .encode_to_vec(),
            &mut crc,
        ));
        file.extend(frame(
            STATE,
            HardState {
                term: 1,
                vote: 7,
                commit: 1,
            }
            .encode_to_vec(),
            &mut crc,
        ));
        file.extend(vec![0u8; 64]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            &file,
        )
        .unwrap();
        let wal = read_dir(dir.path()).unwrap();
        assert_eq!((wal.node_id, wal.cluster_id, wal.commit), (7, 9, 1));
        assert_eq!(wal.entries.len(), 1);
        let got = ConfChange::decode(wal.entries[0].data.as_slice()).unwrap();
        assert_eq!(got, cc);

        let mut bad = file.clone();
        bad[40] ^= 0x01;
        std::fs::write(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            &bad,
        )
        .unwrap();
        assert!(read_dir(dir.path()).is_err());
        std::fs::write(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            &file[..file.len() - 70],
        )
        .unwrap();
        assert!(read_dir(dir.path()).is_err());
        assert!(read_dir(&dir.path().join("none")).is_err());
        // Any damaged byte or cut is an error or a shorter log, never a panic.
        let mut crc = 0;
        let mut sink = EtcdWal::default();
        for i in 0..file.len() {
            let mut b = file.clone();
            b[i] ^= 0xff;
            let _ = read_file(&b, &mut crc, &mut sink);
            let _ = read_file(&file[..i], &mut crc, &mut sink);
        }
    }
}
