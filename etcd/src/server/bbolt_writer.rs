//! A writer of bbolt files, the format of etcd's backend: `Maintenance.Snapshot` streams
//! one, so `etcdctl snapshot status` and `snapshot restore` of etcd itself read this
//! server's backups, as they read etcd's.
//!
//! The file is written in one pass, bucket by bucket, each bucket's records given in
//! ascending key order: leaf pages are filled and written as records arrive, then the
//! branch levels above them, then the root bucket's page. Pages 0 and 1 (the two meta
//! pages) and 2 (an empty freelist) are written last, over placeholders. The layout is
//! bbolt's (see [`super::bbolt`] for the reader): 16-byte page headers, leaf elements
//! `{flags, pos, ksize, vsize}`, branch elements `{pos, ksize, pgid}`, an element larger
//! than a page spilling into overflow pages, every top-level bucket a leaf element
//! flagged `0x01` whose value is `{root pgid, sequence}`.
//!
//! Guarantees: the output is a complete bbolt file (high-water mark = pages written, both
//! meta pages valid with bbolt's FNV-1a checksum) or an error; keys that are not strictly
//! ascending within a bucket are refused, never written out of order.

use std::io::{Seek, SeekFrom, Write};

/// The page size written (bbolt's default on Linux x86-64 and etcd's).
pub const PAGE_SIZE: usize = 4096;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// Pages 0, 1 (meta) and 2 (freelist) come first; data pages follow.
const FIRST_DATA_PAGE: u64 = 3;
const FREELIST_PAGE: u64 = 2;

/// Why a bbolt file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BoltWriteError {
    /// Writing the output failed.
    #[error("writing the bbolt file: {0}")]
    Io(#[from] std::io::Error),
    /// A bucket's keys were not given in strictly ascending order.
    #[error("bbolt bucket {bucket:?}: keys out of order")]
    Unordered {
        /// The bucket's name.
        bucket: String,
    },
    /// A bucket name was given twice.
    #[error("bbolt bucket {0:?} written twice")]
    DuplicateBucket(String),
}

/// Elements of one page being filled.
#[derive(Default)]
struct Node {
    /// (key, value) of a leaf, or (key, pgid as 8 bytes) of a branch.
    elements: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes the page would take: header, elements and their data.
    size: usize,
}

impl Node {
    fn fits(&self, data: usize) -> bool {
        self.elements.is_empty() || self.size + ELEMENT + data <= PAGE_SIZE
    }

    fn push(&mut self, k: Vec<u8>, v: Vec<u8>) {
        if self.elements.is_empty() {
            self.size = HEADER;
        }
        self.size += ELEMENT + k.len() + v.len();
        self.elements.push((k, v));
    }
}

/// Writes one bbolt file; see the module documentation.
pub struct BoltWriter<F: Write + Seek> {
    out: F,
    /// The next page id to write.
    next: u64,
    /// Top-level buckets written: name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
}

impl<F: Write + Seek> BoltWriter<F> {
    /// Starts a file at the current position of `out` (which must be its start).
    pub fn new(mut out: F) -> Result<Self, BoltWriteError> {
        out.write_all(&vec![0u8; PAGE_SIZE * FIRST_DATA_PAGE as usize])?;
        Ok(BoltWriter {
            out,
            next: FIRST_DATA_PAGE,
            buckets: Vec::new(),
        })
    }

    /// Starts a top-level bucket named `name`; its records go through the returned
    /// writer, which must be finished before the next bucket starts.
    pub fn bucket(&mut self, name: &[u8]) -> Result<BucketWriter<'_, F>, BoltWriteError> {
        if self.buckets.iter().any(|(n, _)| n == name) {
            return Err(BoltWriteError::DuplicateBucket(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        Ok(BucketWriter {
            w: self,
            name: name.to_vec(),
            leaf: Node::default(),
            children: Vec::new(),
            last: None,
        })
    }

    /// Writes a page of `node`'s elements; returns its page id.
    fn write_page(&mut self, kind: Kind, node: &Node) -> Result<u64, BoltWriteError> {
        let flags = if kind == Kind::Branch { BRANCH } else { LEAF };
        let size = node.size.max(HEADER);
        let pages = size.div_ceil(PAGE_SIZE);
        let mut buf = vec![0u8; pages * PAGE_SIZE];
        let id = self.next;
        header(&mut buf, id, flags, node.elements.len(), pages - 1);
        let mut data = HEADER + ELEMENT * node.elements.len();
        for (i, (k, v)) in node.elements.iter().enumerate() {
            let at = HEADER + ELEMENT * i;
            let pos = (data - at) as u32;
            if kind == Kind::Branch {
                put32(&mut buf, at, pos);
                put32(&mut buf, at + 4, k.len() as u32);
                buf[at + 8..at + 16].copy_from_slice(v);
                buf[data..data + k.len()].copy_from_slice(k);
                data += k.len();
            } else {
                let leaf_flags = if kind == Kind::Buckets {
                    BUCKET_LEAF
                } else {
                    0
                };
                put32(&mut buf, at, leaf_flags);
                put32(&mut buf, at + 4, pos);
                put32(&mut buf, at + 8, k.len() as u32);
                put32(&mut buf, at + 12, v.len() as u32);
                buf[data..data + k.len()].copy_from_slice(k);
                buf[data + k.len()..data + k.len() + v.len()].copy_from_slice(v);
                data += k.len() + v.len();
            }
        }
        self.out.write_all(&buf)?;
        self.next += pages as u64;
        Ok(id)
    }

    /// Writes the root bucket, the freelist and both meta pages; returns the output and
    /// the file's size in bytes.
    pub fn finish(mut self) -> Result<(F, u64), BoltWriteError> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        // The root bucket's records: one per top-level bucket, `{root, sequence}`.
        let mut node = Node::default();
        let mut children = Vec::new();
        for (name, root) in buckets {
            let mut value = root.to_le_bytes().to_vec();
            value.extend_from_slice(&0u64.to_le_bytes());
            if !node.fits(name.len() + value.len()) {
                let first = node.elements[0].0.clone();
                children.push((first, self.write_page(Kind::Buckets, &node)?));
                node = Node::default();
            }
            node.push(name, value);
        }
        let first = node
            .elements
            .first()
            .map(|e| e.0.clone())
            .unwrap_or_default();
        children.push((first, self.write_page(Kind::Buckets, &node)?));
        let root = self.branches(children)?;
        let high_water = self.next;
        self.out.flush()?;
        let end = self.out.stream_position()?;
        // The freelist (empty: every page is in use) and the two meta pages.
        let mut free = vec![0u8; PAGE_SIZE];
        header(&mut free, FREELIST_PAGE, FREELIST, 0, 0);
        self.out
            .seek(SeekFrom::Start(FREELIST_PAGE * PAGE_SIZE as u64))?;
        self.out.write_all(&free)?;
        for (pg, txid) in [(0u64, 1u64), (1, 2)] {
            let page = meta_page(pg, root, high_water, txid);
            self.out.seek(SeekFrom::Start(pg * PAGE_SIZE as u64))?;
            self.out.write_all(&page)?;
        }
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok((self.out, high_water * PAGE_SIZE as u64))
    }

    /// Builds the branch levels above `children` (first key, page id) and returns the
    /// root page id.
    fn branches(&mut self, mut children: Vec<(Vec<u8>, u64)>) -> Result<u64, BoltWriteError> {
        while children.len() > 1 {
            let mut parents = Vec::new();
            let mut node = Node::default();
            for (key, pgid) in children {
                if !node.fits(key.len()) {
                    let first = node.elements[0].0.clone();
                    parents.push((first, self.write_page(Kind::Branch, &node)?));
                    node = Node::default();
                }
                push_branch(&mut node, key, pgid);
            }
            let first = node.elements[0].0.clone();
            parents.push((first, self.write_page(Kind::Branch, &node)?));
            children = parents;
        }
        Ok(children.first().map_or(0, |c| c.1))
    }
}

/// What a page holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Child page references.
    Branch,
    /// A bucket's records.
    Leaf,
    /// The root bucket's records: bucket headers (elements flagged as buckets).
    Buckets,
}

/// Adds a branch element: its data is the key only, the pgid sits in the element.
fn push_branch(node: &mut Node, key: Vec<u8>, pgid: u64) {
    if node.elements.is_empty() {
        node.size = HEADER;
    }
    node.size += ELEMENT + key.len();
    node.elements.push((key, pgid.to_le_bytes().to_vec()));
}

/// Writes the records of one top-level bucket; see [`BoltWriter::bucket`].
pub struct BucketWriter<'a, F: Write + Seek> {
    w: &'a mut BoltWriter<F>,
    name: Vec<u8>,
    leaf: Node,
    /// Leaf pages written: first key and page id.
    children: Vec<(Vec<u8>, u64)>,
    last: Option<Vec<u8>>,
}

impl<F: Write + Seek> BucketWriter<'_, F> {
    /// Adds a record; keys must come in strictly ascending byte order.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltWriteError> {
        if self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(BoltWriteError::Unordered {
                bucket: String::from_utf8_lossy(&self.name).into_owned(),
            });
        }
        if !self.leaf.fits(key.len() + value.len()) {
            let node = std::mem::take(&mut self.leaf);
            let first = node.elements[0].0.clone();
            self.children
                .push((first, self.w.write_page(Kind::Leaf, &node)?));
        }
        self.leaf.push(key.to_vec(), value.to_vec());
        self.last = Some(key.to_vec());
        Ok(())
    }

    /// Writes the last leaf and the branch pages, and records the bucket.
    pub fn finish(mut self) -> Result<(), BoltWriteError> {
        if !self.leaf.elements.is_empty() || self.children.is_empty() {
            let node = std::mem::take(&mut self.leaf);
            let first = node
                .elements
                .first()
                .map(|e| e.0.clone())
                .unwrap_or_default();
            self.children
                .push((first, self.w.write_page(Kind::Leaf, &node)?));
        }
        let children = std::mem::take(&mut self.children);
        let root = self.w.branches(children)?;
        self.w.buckets.push((std::mem::take(&mut self.name), root));
        Ok(())
    }
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn header(buf: &mut [u8], id: u64, flags: u16, count: usize, overflow: usize) {
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&(count as u16).to_le_bytes());
    buf[12..16].copy_from_slice(&(overflow as u32).to_le_bytes());
}

/// A meta page: magic, version, page size, flags, root bucket `{root, sequence}`,
/// freelist page, high-water mark, transaction id and the FNV-1a checksum of those.
fn meta_page(pg: u64, root: u64, high_water: u64, txid: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    header(&mut page, pg, META, 0, 0);
    let m = HEADER;
    put32(&mut page, m, MAGIC);
    put32(&mut page, m + 4, VERSION);
    put32(&mut page, m + 8, PAGE_SIZE as u32);
    put32(&mut page, m + 12, 0);
    page[m + 16..m + 24].copy_from_slice(&root.to_le_bytes());
    page[m + 24..m + 32].copy_from_slice(&0u64.to_le_bytes());
    page[m + 32..m + 40].copy_from_slice(&FREELIST_PAGE.to_le_bytes());
    page[m + 40..m + 48].copy_from_slice(&high_water.to_le_bytes());
    page[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
    let sum = super::bbolt::fnv1a64(&page[m..m + 56]);
    page[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::bbolt::Bolt;
    use std::io::Cursor;

    #[test]
    fn written_file_reads_back_with_branches_overflow_and_empty_buckets() {
        // Enough records for three levels of pages, one value larger than a page, and
        // an empty bucket; buckets given out of name order.
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0u32..40_000)
            .map(|i| (i.to_be_bytes().to_vec(), format!("value-{i}").into_bytes()))
            .collect();
        let big = vec![
            (b"a".to_vec(), vec![7u8; 3 * PAGE_SIZE + 5]),
            (b"b".to_vec(), vec![1]),
        ];
        let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
        for (name, records) in [(&b"zz"[..], &many), (b"big", &big), (b"empty", &vec![])] {
            let mut b = w.bucket(name).unwrap();
            for (k, v) in records.iter() {
                b.put(k, v).unwrap();
            }
            b.finish().unwrap();
        }
        let (out, size) = w.finish().unwrap();
        let data = out.into_inner();
        assert_eq!(data.len() as u64, size);
        assert_eq!(size % PAGE_SIZE as u64, 0);
        let bolt = Bolt::open(&data).unwrap();
        assert_eq!(
            bolt.buckets().unwrap(),
            vec![b"big".to_vec(), b"empty".to_vec(), b"zz".to_vec()]
        );
        assert_eq!(bolt.records(b"zz").unwrap(), many);
        assert_eq!(bolt.records(b"big").unwrap(), big);
        assert!(bolt.records(b"empty").unwrap().is_empty());
        // The high-water mark in the meta pages is the number of pages written.
        let hwm = u64::from_le_bytes(data[HEADER + 40..HEADER + 48].try_into().unwrap());
        assert_eq!(hwm * PAGE_SIZE as u64, size);
        // Walk the pages by their headers: ids in place, several branch pages (three
        // levels for "zz"), one leaf spilling into overflow pages.
        let (mut pg, mut branches, mut overflowed) = (FIRST_DATA_PAGE as usize, 0, 0);
        while pg * PAGE_SIZE < data.len() {
            let p = &data[pg * PAGE_SIZE..];
            assert_eq!(u64::from_le_bytes(p[..8].try_into().unwrap()), pg as u64);
            let flags = u16::from_le_bytes(p[8..10].try_into().unwrap());
            let overflow = u32::from_le_bytes(p[12..16].try_into().unwrap()) as usize;
            branches += usize::from(flags == BRANCH);
            overflowed += usize::from(overflow > 0);
            pg += 1 + overflow;
        }
        assert!(branches >= 3, "{branches} branch pages");
        assert_eq!(overflowed, 1);
    }

    #[test]
    fn keys_out_of_order_and_repeated_buckets_are_refused() {
        let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
        let mut b = w.bucket(b"k").unwrap();
        b.put(b"b", b"1").unwrap();
        assert!(matches!(
            b.put(b"a", b"2"),
            Err(BoltWriteError::Unordered { .. })
        ));
        assert!(matches!(
            b.put(b"b", b"2"),
            Err(BoltWriteError::Unordered { .. })
        ));
        b.finish().unwrap();
        assert!(matches!(
            w.bucket(b"k"),
            Err(BoltWriteError::DuplicateBucket(_))
        ));
    }
}
