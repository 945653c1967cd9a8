//! A reader of bbolt files, the format of etcd's backend and of the snapshots `etcdctl
//! snapshot save` takes from etcd: enough to list the records of a top-level bucket, so
//! a backup of etcd can be restored into this server (`etcdutl snapshot restore`).
//!
//! Format, as bbolt lays it out: pages of `page_size` bytes, each with a 16-byte header
//! (`id` u64, `flags` u16, `count` u16, `overflow` u32; little-endian). Pages 0 and 1 are
//! meta pages (magic `0xED0CDAED`, version 2, the page size, the root bucket, the
//! transaction ID and an FNV-1a checksum); the valid one with the higher transaction ID
//! is current. Branch pages hold `count` elements `{pos u32, ksize u32, pgid u64}`, leaf
//! pages `{flags u32, pos u32, ksize u32, vsize u32}`, `pos` counted from the element
//! itself. A leaf element flagged `0x01` is a nested bucket: its value is a bucket header
//! `{root pgid u64, sequence u64}`, followed, when `root` is 0, by the bucket's only page
//! (an inline bucket).
//!
//! Guarantees: reads only; every offset is bounds-checked, a malformed file is an error
//! (never a panic).

const MAGIC: u32 = 0xED0C_DAED;
const HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;

/// Whether `data` starts like a bbolt file (a meta page with bbolt's magic).
pub fn is_bbolt(data: &[u8]) -> bool {
    u32_at(data, HEADER) == Some(MAGIC)
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A key and its value.
#[cfg(test)]
pub type Record = (Vec<u8>, Vec<u8>);

/// An open bbolt file.
pub struct Bolt<'a> {
    data: &'a [u8],
    page_size: usize,
    root: u64,
}

/// Where a bucket's records live.
#[derive(Clone, Copy)]
enum Node<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

fn bad(what: &str) -> String {
    format!("not a valid bbolt file: {what}")
}

impl<'a> Bolt<'a> {
    /// Reads the current meta page of `data`.
    pub fn open(data: &'a [u8]) -> Result<Self, String> {
        let mut best: Option<(u64, usize, u64)> = None;
        for pg in 0..2usize {
            // Page 1 sits one page size in; the size is in either meta page.
            let size = if pg == 0 {
                0
            } else {
                u32_at(data, HEADER + 8).ok_or_else(|| bad("short file"))? as usize
            };
            let m = pg * size + HEADER;
            if u32_at(data, m) != Some(MAGIC) || u32_at(data, m + 4) != Some(2) {
                continue;
            }
            // magic, version, page size, flags (4 bytes each), root bucket (16),
            // freelist, high water mark, txid (8 each), then the checksum of all that.
            let Some(meta) = data.get(m..m + 56) else {
                continue;
            };
            if u64_at(data, m + 56) != Some(fnv1a64(meta)) {
                continue;
            }
            let page_size = u32_at(data, m + 8).unwrap_or(0) as usize;
            let root = u64_at(data, m + 16).unwrap_or(0);
            let txid = u64_at(data, m + 48).unwrap_or(0);
            if page_size >= 512 && best.is_none_or(|(t, _, _)| txid > t) {
                best = Some((txid, page_size, root));
            }
        }
        let (_, page_size, root) = best.ok_or_else(|| bad("no valid meta page"))?;
        Ok(Bolt {
            data,
            page_size,
            root,
        })
    }

    fn page(&self, id: u64) -> Result<&'a [u8], String> {
        let start = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_mul(self.page_size))
            .ok_or_else(|| bad("page id"))?;
        let overflow = u32_at(self.data, start + 12).ok_or_else(|| bad("page out of range"))?;
        let len = (overflow as usize + 1) * self.page_size;
        self.data
            .get(start..start + len)
            .ok_or_else(|| bad("page out of range"))
    }

    fn node_bytes(&self, n: Node<'a>) -> Result<&'a [u8], String> {
        match n {
            Node::Page(id) => self.page(id),
            Node::Inline(b) => Ok(b),
        }
    }

    /// Calls `f` with every record of the node (a bucket's tree), in key order; nested
    /// buckets are reported with `is_bucket`.
    fn walk(
        &self,
        n: Node<'a>,
        depth: usize,
        f: &mut dyn FnMut(&'a [u8], &'a [u8], bool) -> Result<(), String>,
    ) -> Result<(), String> {
        if depth > 64 {
            return Err(bad("tree too deep"));
        }
        let p = self.node_bytes(n)?;
        let flags = u16_at(p, 8).ok_or_else(|| bad("page header"))?;
        let count = u16_at(p, 10).ok_or_else(|| bad("page header"))? as usize;
        for i in 0..count {
            let e = HEADER + i * 16;
            if flags & BRANCH != 0 {
                let child = u64_at(p, e + 8).ok_or_else(|| bad("branch element"))?;
                self.walk(Node::Page(child), depth + 1, f)?;
            } else if flags & LEAF != 0 {
                let (Some(eflags), Some(pos), Some(ksize), Some(vsize)) = (
                    u32_at(p, e),
                    u32_at(p, e + 4),
                    u32_at(p, e + 8),
                    u32_at(p, e + 12),
                ) else {
                    return Err(bad("leaf element"));
                };
                let k = e + pos as usize;
                let v = k + ksize as usize;
                let key = p.get(k..v).ok_or_else(|| bad("leaf key"))?;
                let value = p
                    .get(v..v + vsize as usize)
                    .ok_or_else(|| bad("leaf value"))?;
                f(key, value, eflags & BUCKET_LEAF != 0)?;
            } else {
                return Err(bad("unexpected page type"));
            }
        }
        Ok(())
    }

    fn bucket_node(value: &'a [u8]) -> Result<Node<'a>, String> {
        let root = u64_at(value, 0).ok_or_else(|| bad("bucket header"))?;
        Ok(if root == 0 {
            Node::Inline(value.get(16..).ok_or_else(|| bad("inline bucket"))?)
        } else {
            Node::Page(root)
        })
    }

    /// The names of the top-level buckets.
    #[cfg(test)]
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut names = Vec::new();
        self.walk(Node::Page(self.root), 0, &mut |k, _, is_bucket| {
            if is_bucket {
                names.push(k.to_vec());
            }
            Ok(())
        })?;
        Ok(names)
    }

    /// Every record of the top-level bucket `name`, in key order.
    #[cfg(test)]
    pub fn records(&self, name: &[u8]) -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        self.for_each(name, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every key and value of the top-level bucket `name`, in key order;
    /// a missing bucket has none.
    pub fn for_each(
        &self,
        name: &[u8],
        mut f: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut found = None;
        self.walk(Node::Page(self.root), 0, &mut |k, v, is_bucket| {
            if is_bucket && k == name {
                found = Some(v);
            }
            Ok(())
        })?;
        let Some(header) = found else {
            return Ok(());
        };
        let node = Self::bucket_node(header)?;
        self.walk(node, 0, &mut |k, v, is_bucket| {
            if is_bucket {
                Ok(())
            } else {
                f(k, v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf page of `page_size` bytes holding `items` (`(flags, key, value)`).
    fn leaf(id: u64, items: &[(u32, &[u8], Vec<u8>)], page_size: usize) -> Vec<u8> {
        let mut p = vec![0u8; page_size];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&LEAF.to_le_bytes());
        p[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
        let mut data = HEADER + items.len() * 16;
        for (i, (flags, k, v)) in items.iter().enumerate() {
            let e = HEADER + i * 16;
            p[e..e + 4].copy_from_slice(&flags.to_le_bytes());
            p[e + 4..e + 8].copy_from_slice(&((data - e) as u32).to_le_bytes());
            p[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            p[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            p[data..data + k.len()].copy_from_slice(k);
            data += k.len();
            p[data..data + v.len()].copy_from_slice(v);
            data += v.len();
        }
        p
    }

    fn meta(id: u64, page_size: usize, root: u64, txid: u64) -> Vec<u8> {
        let mut p = vec![0u8; page_size];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&4u16.to_le_bytes());
        let m = HEADER;
        p[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
        p[m + 4..m + 8].copy_from_slice(&2u32.to_le_bytes());
        p[m + 8..m + 12].copy_from_slice(&(page_size as u32).to_le_bytes());
        p[m + 16..m + 24].copy_from_slice(&root.to_le_bytes());
        p[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&p[m..m + 56]);
        p[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
        p
    }

    #[test]
    fn reads_page_and_inline_buckets() {
        let ps = 512;
        // Page 3: bucket "big" as a page; "small" inline after its header.
        let big = leaf(3, &[(0, b"a", b"1".to_vec()), (0, b"b", b"2".to_vec())], ps);
        let small_page = leaf(0, &[(0, b"x", b"9".to_vec())], 64);
        let mut small = vec![0u8; 16];
        small.extend_from_slice(&small_page);
        let mut big_header = vec![0u8; 16];
        big_header[0..8].copy_from_slice(&3u64.to_le_bytes());
        let root = leaf(2, &[(1, b"big", big_header), (1, b"small", small)], ps);
        let mut file = meta(0, ps, 2, 7);
        file.extend(meta(1, ps, 2, 6));
        file.extend(root);
        file.extend(big);
        assert!(is_bbolt(&file));
        let b = Bolt::open(&file).unwrap();
        assert_eq!(
            b.buckets().unwrap(),
            vec![b"big".to_vec(), b"small".to_vec()]
        );
        let mut got = Vec::new();
        b.for_each(b"big", |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        let mut got = Vec::new();
        b.for_each(b"small", |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(b"x".to_vec(), b"9".to_vec())]);
        b.for_each(b"none", |_, _| Err("no records".into()))
            .unwrap();
        // A damaged meta page falls back to the other one; both damaged is an error.
        let mut one = file.clone();
        one[HEADER + 20] ^= 1;
        assert!(Bolt::open(&one).is_ok());
        one[ps + HEADER + 20] ^= 1;
        assert!(Bolt::open(&one).is_err());
        // Truncated: an error, not a panic.
        assert!(Bolt::open(&file[..ps * 3 + 10])
            .and_then(|b| b.for_each(b"big", |_, _| Ok(())))
            .is_err());
    }
}
