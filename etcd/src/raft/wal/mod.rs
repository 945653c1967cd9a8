//! The raft log's files: a directory (`--wal-dir`, default `<data-dir>/member/wal`) of
//! segments named by their sequence number (`0000000000000001.seg`, ...), each holding
//! records in the format of [`record`].
//!
//! A new segment is written full of zeros and synced before it is used, and a segment
//! that is no longer needed is reused under a new sequence number, so appending a record
//! overwrites blocks the file already owns: the sync then writes the data alone, not the
//! inode and the file system's allocation metadata as an append to a growing file does
//! (about half the time and kernel CPU on this project's test machines). Records are
//! written with `O_DIRECT | O_DSYNC` in whole 4 KiB blocks (the last, partial block is
//! rewritten with the same bytes plus the new ones), which makes the write and its sync
//! one system call; where the file system refuses direct I/O (tmpfs) a plain write and
//! `fdatasync` do the same.
//!
//! Guarantees:
//! - [`Wal::append`] returns only after its records are durable (`fdatasync`), unless
//!   [`Wal::set_unsafe_no_fsync`] was called (`--unsafe-no-fsync`): then nothing the log
//!   writes is synced, and a crash of the machine (not of the process) may lose or tear
//!   any of it.
//! - Replay ([`Wal::open`]) returns every durable record in the order written, across
//!   segments, and stops within a segment at the first record that is torn, not yet
//!   written, or left over from the file's earlier use.
//! - A segment is reused only after [`Wal::release`] was told every entry in it (and in
//!   every older segment) is compacted away; the directory entry of every segment in
//!   use is synced.

pub mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

pub use record::Kind;

/// Bytes of a new segment (written full of zeros before use). A Ready bigger than a
/// segment still fits: the segment then grows.
pub const SEGMENT_SIZE: u64 = 8 << 20;

/// Reusable segments kept beyond the ones in use; more are deleted.
const MAX_FREE: usize = 8;

/// A synced write slower than this is logged as etcd logs a slow WAL sync.
const SYNC_WARNING: std::time::Duration = std::time::Duration::from_secs(1);

/// Logs "slow fdatasync" (etcd's message and fields) for a synced write that took longer
/// than [`SYNC_WARNING`]: the disk is too slow for a member to keep its leadership or
/// its followers' heartbeats. Returns whether it warned.
fn warn_if_slow_sync(took: std::time::Duration) -> bool {
    if took <= SYNC_WARNING {
        return false;
    }
    tracing::warn!(took = ?took, "expected-duration" = ?SYNC_WARNING, "slow fdatasync");
    true
}

/// The block size of direct writes (and their memory alignment).
const BLOCK: usize = 4096;

/// Errors of the raft log files.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record the log points at did not read back intact.
    #[error("raft log record at {path} offset {offset} is damaged")]
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a record is: segment sequence number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The segment's sequence number.
    pub seq: u64,
    /// Offset of the record's header in the segment.
    pub offset: u64,
}

/// A record to append.
#[derive(Debug, Clone)]
pub struct Rec {
    /// What the payload is.
    pub kind: Kind,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// The raft index the record holds (entries), 0 otherwise.
    pub index: u64,
}

struct Segment {
    path: PathBuf,
    file: File,
    /// Highest entry index written to the segment.
    max_index: u64,
}

/// Writes to the segment in use.
struct Writer {
    /// `O_DIRECT | O_DSYNC` when the file system allows it and writes are synced, else a
    /// plain handle.
    file: File,
    direct: bool,
    /// The bytes of the last, partial block before the write offset (direct writes
    /// rewrite that block whole).
    tail: Vec<u8>,
    /// Staging memory for direct writes; the block-aligned part is used.
    staging: Vec<u8>,
}

impl Writer {
    /// A writer for `path` whose first `header.len()` bytes are `header`; its writes are
    /// synced when `sync` is set.
    fn open(path: &Path, plain: &File, header: &[u8], sync: bool) -> Result<Writer, WalError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let flags = nix::fcntl::OFlag::O_DIRECT | nix::fcntl::OFlag::O_DSYNC;
        let direct = if sync {
            OpenOptions::new()
                .write(true)
                .custom_flags(flags.bits())
                .open(path)
                .ok()
        } else {
            None
        };
        let (file, direct) = match direct {
            Some(f) => (f, true),
            // No direct I/O here (tmpfs): a plain handle and fdatasync; or no syncing.
            None => (plain.try_clone().map_err(io(path))?, false),
        };
        Ok(Writer {
            file,
            direct,
            tail: header.to_vec(),
            staging: Vec::new(),
        })
    }

    /// Writes `data` at `offset` (where the tail ends), durably when `sync` is set (a
    /// direct writer's writes are always durable: it exists only when syncing).
    fn write(&mut self, path: &Path, data: &[u8], offset: u64, sync: bool) -> Result<(), WalError> {
        if self.direct {
            match self.write_direct(data, offset) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    // The file system takes direct opens but not these writes.
                    tracing::warn!(path = %path.display(), "raft log: direct I/O refused; using fdatasync");
                    self.file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io(path))?;
                    self.direct = false;
                }
                Err(e) => return Err(io(path)(e)),
            }
        }
        self.file.write_all_at(data, offset).map_err(io(path))?;
        if sync {
            self.file.sync_data().map_err(io(path))?;
        }
        Ok(())
    }

    fn write_direct(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        let start = offset - self.tail.len() as u64;
        let len = self.tail.len() + data.len();
        let padded = len.div_ceil(BLOCK) * BLOCK;
        if self.staging.len() < padded + BLOCK {
            self.staging = vec![0u8; (padded + BLOCK).next_power_of_two()];
        }
        let at = self.staging.as_ptr().align_offset(BLOCK);
        let buf = &mut self.staging[at..at + padded];
        buf[..self.tail.len()].copy_from_slice(&self.tail);
        buf[self.tail.len()..len].copy_from_slice(data);
        buf[len..].fill(0);
        self.file.write_all_at(buf, start)?;
        let keep = len % BLOCK;
        self.tail.clear();
        self.tail.extend_from_slice(&buf[len - keep..len]);
        Ok(())
    }
}

/// The open log directory, appending to its newest segment.
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    /// Segments in use, oldest first; the last one is written.
    segments: BTreeMap<u64, Segment>,
    /// Files of released segments, ready to be reused.
    free: Vec<PathBuf>,
    /// Sequence number of the segment written.
    seq: u64,
    /// Where the next record goes in it.
    offset: u64,
    /// Writes to it (`None` only before the first segment is started).
    writer: Option<Writer>,
    buf: Vec<u8>,
    /// Whether writes are synced (false only with `--unsafe-no-fsync`).
    sync: bool,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.seg")
}

/// What a log directory holds.
struct Listing {
    /// Segment files by sequence number, oldest first.
    segments: Vec<(u64, PathBuf)>,
    /// Files of segments whose preparation never finished.
    unfinished: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, WalError> {
    let mut segments = Vec::new();
    let mut unfinished = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let item = item.map_err(io(dir))?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            match u64::from_str_radix(stem, 16) {
                Ok(seq) if stem.len() == 16 => segments.push((seq, item.path())),
                _ => {}
            }
        } else if name.ends_with(".tmp") {
            unfinished.push(item.path());
        }
    }
    segments.sort();
    Ok(Listing {
        segments,
        unfinished,
    })
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and hands every valid record to
    /// `replay`, oldest first, with its location; `replay` returns the raft index an
    /// entry record holds (0 for other records). Writing then continues in a new
    /// segment, so a torn tail of the last one is never followed by new records.
    pub fn open<E: From<WalError>>(
        dir: &Path,
        segment_size: u64,
        mut replay: impl FnMut(Loc, Kind, &[u8]) -> Result<u64, E>,
    ) -> Result<Wal, E> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // Like the data dir, the log is readable by its owner only.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io(dir))?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segment_size,
            segments: BTreeMap::new(),
            free: Vec::new(),
            seq: 0,
            offset: 0,
            writer: None,
            buf: Vec::new(),
            sync: true,
        };
        let Listing {
            segments: found,
            unfinished,
        } = list(dir)?;
        for path in unfinished {
            // A segment whose preparation a crash interrupted.
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let mut next = 1;
        for (seq, path) in found {
            next = seq + 1;
            let data = std::fs::read(&path).map_err(io(&path))?;
            if record::parse_segment_header(&data) != Some(seq) {
                // Crashed while being reused: holds nothing of this sequence number.
                wal.free.push(path);
                continue;
            }
            let mut max_index = 0;
            let mut at = record::SEGMENT_HEADER as usize;
            while let Some((kind, payload, len)) =
                data.get(at..).and_then(|b| record::decode(seq, b))
            {
                let loc = Loc {
                    seq,
                    offset: at as u64,
                };
                max_index = max_index.max(replay(loc, kind, payload)?);
                at += len;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            wal.segments.insert(
                seq,
                Segment {
                    path,
                    file,
                    max_index,
                },
            );
        }
        wal.start_segment(next)?;
        Ok(wal)
    }

    /// `--unsafe-no-fsync`: from now on nothing the log writes is synced (records,
    /// segment preparation, the directory), and the segment written is reopened without
    /// `O_DSYNC`. Fast, and unsafe: a crash of the machine may lose or tear what was
    /// written, including entries this member acknowledged to raft. A process crash loses
    /// nothing, as the writes are in the page cache.
    pub fn set_unsafe_no_fsync(&mut self) -> Result<(), WalError> {
        self.sync = false;
        if let (Some(seg), Some(w)) = (self.segments.get(&self.seq), self.writer.as_mut()) {
            // A plain handle; the bytes of the last partial block matter only to direct
            // writes.
            w.file = seg.file.try_clone().map_err(io(&seg.path))?;
            w.direct = false;
        }
        Ok(())
    }

    /// Whether `dir` holds any segment file (a missing directory holds none).
    pub fn has_segments(dir: &Path) -> Result<bool, WalError> {
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            _ => Ok(!list(dir)?.segments.is_empty()),
        }
    }

    /// Makes segment `seq` the one written: a reused file gets its new header, or a new
    /// file is written full of zeros; either is synced, then named, then the directory
    /// is synced.
    fn start_segment(&mut self, seq: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(seq));
        let header = record::segment_header(seq);
        let file = if let Some(old) = self.free.pop() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&old)
                .map_err(io(&old))?;
            file.write_all_at(&header, 0).map_err(io(&old))?;
            if self.sync {
                file.sync_data().map_err(io(&old))?;
            }
            std::fs::rename(&old, &path).map_err(io(&path))?;
            file
        } else {
            let tmp = self.dir.join(format!("{seq:016x}.tmp"));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            file.write_all(&header).map_err(io(&tmp))?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = self.segment_size.saturating_sub(record::SEGMENT_HEADER);
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n]).map_err(io(&tmp))?;
                left -= n as u64;
            }
            if self.sync {
                file.sync_all().map_err(io(&tmp))?;
            }
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            file
        };
        if self.sync {
            sync_dir(&self.dir)?;
        }
        self.writer = Some(Writer::open(&path, &file, &header, self.sync)?);
        self.segments.insert(
            seq,
            Segment {
                path,
                file,
                max_index: 0,
            },
        );
        self.seq = seq;
        self.offset = record::SEGMENT_HEADER;
        Ok(())
    }

    /// Bytes `recs` take in a segment.
    pub fn encoded_len(recs: &[Rec]) -> u64 {
        recs.iter()
            .map(|r| (record::RECORD_HEADER + r.payload.len()) as u64)
            .sum()
    }

    /// Whether appending `bytes` more would overflow the segment written (a segment
    /// that holds nothing yet takes any amount).
    pub fn is_full_for(&self, bytes: u64) -> bool {
        self.offset > record::SEGMENT_HEADER && self.offset + bytes > self.segment_size
    }

    /// Starts the next segment and writes `state` (the log's state records) at its
    /// beginning, durably: replay from that segment on needs nothing older.
    pub fn rotate(&mut self, state: &[Rec]) -> Result<(), WalError> {
        self.start_segment(self.seq + 1)?;
        self.append(state)?;
        Ok(())
    }

    /// Writes `recs` at the end of the segment written and syncs it; returns where each
    /// record went.
    pub fn append(&mut self, recs: &[Rec]) -> Result<Vec<Loc>, WalError> {
        let seq = self.seq;
        let mut locs = Vec::with_capacity(recs.len());
        self.buf.clear();
        let mut max_index = 0;
        for r in recs {
            locs.push(Loc {
                seq,
                offset: self.offset + self.buf.len() as u64,
            });
            record::encode(seq, r.kind, &r.payload, &mut self.buf);
            max_index = max_index.max(r.index);
        }
        let (Some(seg), Some(writer)) = (self.segments.get_mut(&seq), self.writer.as_mut()) else {
            return Err(WalError::Damaged {
                path: self.dir.join(segment_name(seq)),
                offset: self.offset,
            });
        };
        let started = std::time::Instant::now();
        writer.write(&seg.path, &self.buf, self.offset, self.sync)?;
        if self.sync {
            // Like etcd, unsynced writes are not fsyncs: the histogram leaves them out.
            let took = started.elapsed();
            crate::metrics::WAL_FSYNC.observe(took.as_secs_f64());
            warn_if_slow_sync(took);
        }
        seg.max_index = seg.max_index.max(max_index);
        self.offset += self.buf.len() as u64;
        if self.buf.capacity() > 4 * self.segment_size as usize {
            self.buf = Vec::new();
        }
        Ok(locs)
    }

    /// The segment written and the offset the next record goes to.
    #[cfg(test)]
    pub fn position(&self) -> (u64, u64) {
        (self.seq, self.offset)
    }

    /// Reads back the record at `loc`, checking it is intact.
    pub fn read(&self, loc: Loc) -> Result<(Kind, Vec<u8>), WalError> {
        let Some(seg) = self.segments.get(&loc.seq) else {
            return Err(WalError::Damaged {
                path: self.dir.join(segment_name(loc.seq)),
                offset: loc.offset,
            });
        };
        let damaged = || WalError::Damaged {
            path: seg.path.clone(),
            offset: loc.offset,
        };
        let mut head = [0u8; record::RECORD_HEADER];
        seg.file
            .read_exact_at(&mut head, loc.offset)
            .map_err(io(&seg.path))?;
        let (kind, len, sum) = record::decode_header(&head).ok_or_else(damaged)?;
        let mut payload = vec![0u8; len];
        seg.file
            .read_exact_at(&mut payload, loc.offset + record::RECORD_HEADER as u64)
            .map_err(io(&seg.path))?;
        if !record::verify(loc.seq, kind, &payload, sum) {
            return Err(damaged());
        }
        Ok((kind, payload))
    }

    /// Releases the oldest segments whose entries all precede `first_index` (the log's
    /// first entry after a compaction), keeping their files for reuse. The segment
    /// written is never released, and neither is anything after a segment still needed.
    pub fn release(&mut self, first_index: u64) -> Result<(), WalError> {
        while let Some(entry) = self.segments.first_entry() {
            if *entry.key() == self.seq || entry.get().max_index >= first_index {
                break;
            }
            let seg = entry.remove();
            if self.free.len() < MAX_FREE {
                self.free.push(seg.path);
            } else {
                std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn segments_in_use(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, payload: &[u8], index: u64) -> Rec {
        Rec {
            kind,
            payload: payload.to_vec(),
            index,
        }
    }

    fn replay_all(dir: &Path, size: u64) -> (Wal, Vec<(Kind, Vec<u8>)>) {
        let mut seen = Vec::new();
        let wal = Wal::open::<WalError>(dir, size, |_, k, p| {
            seen.push((k, p.to_vec()));
            Ok(u64::from(p.first().copied().unwrap_or(0)))
        })
        .unwrap();
        (wal, seen)
    }

    #[test]
    fn records_replay_in_order_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, seen) = replay_all(dir.path(), 4096);
        assert!(seen.is_empty());
        let locs = wal
            .append(&[rec(Kind::Entry, &[1, 1], 1), rec(Kind::HardState, b"hs", 0)])
            .unwrap();
        assert_eq!(wal.read(locs[0]).unwrap(), (Kind::Entry, vec![1, 1]));
        assert_eq!(
            wal.read(locs[1]).unwrap(),
            (Kind::HardState, b"hs".to_vec())
        );
        let big = vec![2u8; 4050];
        assert!(wal.is_full_for(Wal::encoded_len(&[rec(Kind::Entry, &big, 2)])));
        wal.rotate(&[rec(Kind::ConfState, b"cs", 0)]).unwrap();
        let at = wal.append(&[rec(Kind::Entry, &big, 2)]).unwrap();
        // Bigger than a segment: the segment grows.
        let huge = vec![3u8; 9000];
        wal.rotate(&[]).unwrap();
        wal.append(&[rec(Kind::Entry, &huge, 3)]).unwrap();
        drop(wal);
        let (wal, seen) = replay_all(dir.path(), 4096);
        let kinds: Vec<Kind> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                Kind::Entry,
                Kind::HardState,
                Kind::ConfState,
                Kind::Entry,
                Kind::Entry
            ]
        );
        assert_eq!(seen[3].1, big);
        assert_eq!(seen[4].1, huge);
        assert_eq!(wal.read(at[0]).unwrap().1, big);
        // Reopening started a fresh segment after the three written.
        assert_eq!(wal.segments_in_use(), 4);
    }

    #[test]
    fn unsafe_no_fsync_writes_without_o_dsync_and_replays_everything() {
        let dsync = |w: &Wal| {
            let f = &w.writer.as_ref().unwrap().file;
            let flags = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_DSYNC)
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = replay_all(dir.path(), 4096);
        wal.append(&[rec(Kind::Entry, &[1; 100], 1)]).unwrap();
        let was_direct = wal.writer.as_ref().unwrap().direct;
        assert_eq!(dsync(&wal), was_direct);
        wal.set_unsafe_no_fsync().unwrap();
        assert!(!dsync(&wal) && !wal.sync);
        // Mid-block after direct writes, then across a new segment.
        wal.append(&[rec(Kind::Entry, &[2; 5000], 2)]).unwrap();
        wal.rotate(&[rec(Kind::ConfState, b"cs", 0)]).unwrap();
        assert!(!dsync(&wal) && !wal.writer.as_ref().unwrap().direct);
        wal.append(&[rec(Kind::Entry, &[3; 10], 3)]).unwrap();
        drop(wal);
        let (_, seen) = replay_all(dir.path(), 4096);
        assert_eq!(
            seen,
            vec![
                (Kind::Entry, vec![1; 100]),
                (Kind::Entry, vec![2; 5000]),
                (Kind::ConfState, b"cs".to_vec()),
                (Kind::Entry, vec![3; 10]),
            ]
        );
    }

    #[test]
    fn replay_stops_at_a_torn_record_and_new_writes_go_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = replay_all(dir.path(), 4096);
        let locs = wal
            .append(&[
                rec(Kind::Entry, &[1], 1),
                rec(Kind::Entry, &[2], 2),
                rec(Kind::Entry, &[3], 3),
            ])
            .unwrap();
        let seg = wal.segments[&wal.seq].path.clone();
        drop(wal);
        // Damage the second record: the third, intact, must not be replayed.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0xff], locs[1].offset + record::RECORD_HEADER as u64)
            .unwrap();
        let (mut wal, seen) = replay_all(dir.path(), 4096);
        assert_eq!(seen, vec![(Kind::Entry, vec![1])]);
        wal.append(&[rec(Kind::Entry, &[9], 2)]).unwrap();
        drop(wal);
        let (_, seen) = replay_all(dir.path(), 4096);
        assert_eq!(seen, vec![(Kind::Entry, vec![1]), (Kind::Entry, vec![9])]);
    }

    #[test]
    fn released_segments_are_reused_without_their_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = replay_all(dir.path(), 4096);
        wal.append(&[rec(Kind::Entry, &[1], 1), rec(Kind::Entry, &[2], 2)])
            .unwrap();
        wal.rotate(&[rec(Kind::Compact, &[0], 0)]).unwrap();
        wal.append(&[rec(Kind::Entry, &[3], 3)]).unwrap();
        wal.rotate(&[rec(Kind::Compact, &[0], 0)]).unwrap();
        assert_eq!(wal.segments_in_use(), 3);
        // Entries before 3 are compacted: only the first segment goes.
        wal.release(3).unwrap();
        assert_eq!(wal.segments_in_use(), 2);
        let files = |d: &Path| std::fs::read_dir(d).unwrap().count();
        assert_eq!(files(dir.path()), 3, "the released file is kept for reuse");
        // The next segment reuses it: no new file, and its old records are not replayed.
        wal.rotate(&[rec(Kind::HardState, b"x", 0)]).unwrap();
        assert_eq!(files(dir.path()), 3);
        drop(wal);
        let (_, seen) = replay_all(dir.path(), 4096);
        let expect: Vec<(Kind, Vec<u8>)> = vec![
            (Kind::Compact, vec![0]),
            (Kind::Entry, vec![3]),
            (Kind::Compact, vec![0]),
            (Kind::HardState, b"x".to_vec()),
        ];
        assert_eq!(seen, expect);
    }

    /// Many appends of odd sizes: each rewrites the partial block before it, and none
    /// may damage the records already there.
    fn odd_sized_appends_replay_exactly(dir: &Path, plain: bool) {
        let (mut wal, _) = replay_all(dir, 1 << 20);
        let mut want = Vec::new();
        for i in 0..600u32 {
            let len = (i * 37 % 700) as usize;
            let payload: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            let recs = [rec(Kind::HardState, &payload, 0)];
            if wal.is_full_for(Wal::encoded_len(&recs)) {
                wal.rotate(&[]).unwrap();
            }
            if plain && i % 50 == 0 {
                // What a refused direct write falls back to.
                let w = wal.writer.as_mut().unwrap();
                w.file = wal.segments[&wal.seq].file.try_clone().unwrap();
                w.direct = false;
            }
            let loc = wal.append(&recs).unwrap()[0];
            assert_eq!(wal.read(loc).unwrap().1, payload);
            want.push((Kind::HardState, payload));
        }
        drop(wal);
        let (_, seen) = replay_all(dir, 1 << 20);
        assert_eq!(seen, want);
    }

    #[test]
    fn odd_sized_appends_survive_partial_block_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        odd_sized_appends_replay_exactly(dir.path(), false);
    }

    #[test]
    fn plain_writes_after_a_direct_write_refusal_keep_the_log_intact() {
        let dir = tempfile::tempdir().unwrap();
        odd_sized_appends_replay_exactly(dir.path(), true);
    }

    #[test]
    fn only_a_sync_over_a_second_is_slow() {
        assert!(!warn_if_slow_sync(std::time::Duration::from_millis(3)));
        assert!(!warn_if_slow_sync(SYNC_WARNING));
        assert!(warn_if_slow_sync(std::time::Duration::from_millis(1001)));
    }

    #[test]
    fn new_segments_are_preallocated_with_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = replay_all(dir.path(), 1 << 16);
        let len = std::fs::metadata(&wal.segments[&wal.seq].path)
            .unwrap()
            .len();
        assert_eq!(len, 1 << 16);
    }
}
