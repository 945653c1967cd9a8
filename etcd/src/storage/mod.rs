//! RocksDB under the data dir: the only module that imports `rocksdb`.
//!
//! One database holds every column family the server needs:
//! - `raft`: empty; earlier versions kept the raft log here (the log store moves it to its
//!   own files, see `raft::wal`);
//! - `kv`: MVCC revisions (key = main revision ‖ sub revision, big-endian), values are
//!   encoded `mvccpb.KeyValue`s; tombstones carry a trailing `t` on the key;
//! - `meta`: applied index, compaction revisions, alarms and other small records;
//! - `lease`: granted leases; `members`: cluster membership.
//!
//! Durability: a [`Storage::write`] with [`Durability::Synced`] is logged in RocksDB's
//! write-ahead log and returns only after it is fsynced. One with [`Durability::Unlogged`]
//! (the state machine applying raft entries) is not logged at all: it lives in a memtable until
//! RocksDB flushes the memtables of every column family together (`atomic_flush`), so
//! after a crash the database is exactly as of some earlier flush (the applied index
//! included) and the raft log, which is durable on its own, replays what came after.
//! [`Storage::flush`] forces that flush; the raft log is never compacted past it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod transfer;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

/// The first key after every key that starts with `prefix` (the `end` of a prefix scan),
/// or `None` when no such key exists (`prefix` empty or all `0xff`): scan to the end.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Column families of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Raft log entries, hard state, conf state.
    Raft,
    /// MVCC revisions.
    Kv,
    /// Small records: applied index, compaction revision, alarms.
    Meta,
    /// Leases.
    Lease,
    /// Cluster members.
    Members,
}

impl Cf {
    const ALL: [Cf; 5] = [Cf::Raft, Cf::Kv, Cf::Meta, Cf::Lease, Cf::Members];

    fn name(self) -> &'static str {
        match self {
            Cf::Raft => "raft",
            Cf::Kv => "kv",
            Cf::Meta => "meta",
            Cf::Lease => "lease",
            Cf::Members => "members",
        }
    }
}

/// How durable a [`Storage::write`] is when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Logged in RocksDB's write-ahead log, which is fsynced before the call returns.
    Synced,
    /// Not logged: in a memtable until the next flush of all column families (see the
    /// module documentation). Only for writes a crash may lose because something else
    /// (the raft log) can redo them.
    Unlogged,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A filesystem operation on the data dir failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation touched.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// An open RocksDB database with the server's column families. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

/// Owned key/value pair returned by iteration.
pub type KvPair = (Box<[u8]>, Box<[u8]>);

/// Bytes of RocksDB memtables, all column families together. Small: a write is durable
/// in the WAL, values are read back from SSTs through the block cache and the OS page
/// cache, and every memtable byte is resident memory.
const MEMTABLE_BUDGET: usize = 8 << 20;
/// Bytes of RocksDB's block cache (uncompressed SST blocks), shared by every column
/// family; the OS page cache holds the files themselves.
const BLOCK_CACHE: usize = 8 << 20;

impl Storage {
    /// Opens (creating if needed) the database at `dir`, with every column family.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(3);
        // Logged writes reach the WAL file at once (a synced write is durable when it
        // returns).
        opts.set_manual_wal_flush(false);
        // Memory: all memtables together stay under MEMTABLE_BUDGET (the largest is
        // flushed beyond it). Values are read back from SSTs through the block cache, so
        // large memtables buy little and cost resident memory.
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        // Unlogged writes (see the module documentation) are only consistent across
        // column families if the memtables of all of them are flushed together.
        opts.set_atomic_flush(true);
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            o.set_block_based_table_factory(&table);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size(MEMTABLE_BUDGET / 2);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(Storage {
            db: Arc::new(db),
            path: dir.to_path_buf(),
        })
    }

    /// The directory this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every column family in `Cf::ALL` is created by `open`, so the handle exists.
        #[allow(clippy::expect_used)]
        self.db
            .cf_handle(cf.name())
            .expect("column family created at open")
    }

    /// Reads one key.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// All pairs with `start <= key < end` (`end = None`: to the end), in key order.
    pub fn scan(&self, cf: Cf, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KvPair>> {
        let mut out = Vec::new();
        self.for_each(cf, start, end, |k, v| {
            out.push((k.into(), v.into()));
            true
        })?;
        Ok(out)
    }

    /// Visits pairs with `start <= key < end` in key order until `f` returns `false`.
    /// A scan: the blocks it reads do not displace the block cache.
    pub fn for_each(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.fill_cache(false);
        let iter = self.db.iterator_cf_opt(
            self.cf(cf),
            ro,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        walk(iter, end, f)
    }

    /// A consistent point-in-time view for reads.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            storage: self,
            snap: self.db.snapshot(),
        }
    }

    /// Starts an empty write batch.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            storage: self,
            inner: rocksdb::WriteBatch::default(),
        }
    }

    /// Applies `batch` atomically, as durable as `durability` says.
    pub fn write(&self, batch: Batch<'_>, durability: Durability) -> Result<()> {
        let mut wo = WriteOptions::default();
        let synced = durability == Durability::Synced;
        wo.set_sync(synced);
        wo.disable_wal(!synced);
        self.db.write_opt(batch.inner, &wo)?;
        Ok(())
    }

    /// Makes every earlier write durable: the WAL is synced and the memtables of all
    /// column families are flushed to SST files, atomically.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        let cfs: Vec<&rocksdb::ColumnFamily> = Cf::ALL.iter().map(|cf| self.cf(*cf)).collect();
        self.db.flush_cfs_opt(&cfs, &fo)?;
        Ok(())
    }

    /// Writes a consistent copy of the whole database to `dir` (must not exist).
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dir)?;
        Ok(())
    }

    /// Rewrites every column family's files, dropping deleted data (etcd's defragment).
    /// Runs alongside reads and writes.
    pub fn compact_all(&self) -> Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf))?;
            let mut opts = rocksdb::CompactOptions::default();
            opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            self.db
                .compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    /// Bytes the database occupies on disk (SST files plus memtables).
    pub fn size_on_disk(&self) -> u64 {
        let mut total = 0u64;
        for cf in Cf::ALL {
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                if let Ok(Some(v)) = self.db.property_int_value_cf(self.cf(cf), prop) {
                    total += v;
                }
            }
        }
        total
    }

    /// Bytes the backend holds before compression, as etcd's quota counts them (etcd's
    /// bbolt file stores values uncompressed): keys and values of every SST (from
    /// RocksDB's table properties) plus the memtables, over every column family but
    /// the raft log (etcd keeps its log in the WAL, outside the quota). Never less than
    /// [`Storage::size_on_disk`] minus the raft log.
    pub fn quota_size(&self) -> u64 {
        let mut total = 0u64;
        for cf in Cf::ALL.into_iter().filter(|cf| *cf != Cf::Raft) {
            let h = self.cf(cf);
            let int = |prop: &str| {
                self.db
                    .property_int_value_cf(h, prop)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            let raw = self
                .db
                .property_value_cf(h, "rocksdb.aggregated-table-properties")
                .ok()
                .flatten()
                .map_or(0, |p| raw_table_bytes(&p));
            total += raw.max(int("rocksdb.total-sst-files-size"));
            total += int("rocksdb.cur-size-all-mem-tables");
        }
        total
    }

    /// Bytes of live data (estimate): what the database would shrink to after compaction.
    pub fn size_in_use(&self) -> u64 {
        let mut total = 0u64;
        for cf in Cf::ALL {
            for prop in [
                "rocksdb.estimate-live-data-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                if let Ok(Some(v)) = self.db.property_int_value_cf(self.cf(cf), prop) {
                    total += v;
                }
            }
        }
        total
    }
}

/// `raw key size` + `raw value size` of a RocksDB table-properties string
/// (`name=value; name=value; ...`).
fn raw_table_bytes(props: &str) -> u64 {
    props
        .split(';')
        .filter_map(|item| item.split_once('='))
        .filter(|(k, _)| matches!(k.trim(), "raw key size" | "raw value size"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// A point-in-time view of the database.
pub struct Snapshot<'a> {
    storage: &'a Storage,
    snap: rocksdb::Snapshot<'a>,
}

impl Snapshot<'_> {
    /// Reads one key as of the snapshot.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&self.snap);
        Ok(self.storage.db.get_cf_opt(self.storage.cf(cf), key, &ro)?)
    }

    /// Reads every key of `keys` as of the snapshot in one batched lookup (RocksDB's
    /// MultiGet: data blocks shared by several keys are read once). Results are in the
    /// order of `keys`.
    pub fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&self.snap);
        self.storage
            .db
            .batched_multi_get_cf_opt(self.storage.cf(cf), keys.iter(), false, &ro)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(StorageError::from))
            .collect()
    }

    /// Visits pairs with `start <= key < end` as of the snapshot until `f` returns `false`.
    pub fn for_each(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&self.snap);
        let iter = self.storage.db.iterator_cf_opt(
            self.storage.cf(cf),
            ro,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        walk(iter, end, f)
    }
}

/// Feeds iterator items to `f` until `end` (exclusive) is reached or `f` says stop.
fn walk<I>(iter: I, end: Option<&[u8]>, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()>
where
    I: Iterator<Item = std::result::Result<KvPair, rocksdb::Error>>,
{
    for item in iter {
        let (k, v) = item?;
        if end.is_some_and(|end| &*k >= end) {
            break;
        }
        if !f(&k, &v) {
            break;
        }
    }
    Ok(())
}

/// An atomic group of writes, applied by [`Storage::write`].
pub struct Batch<'a> {
    storage: &'a Storage,
    inner: rocksdb::WriteBatch,
}

impl Batch<'_> {
    /// Sets `key` to `value`.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.inner.put_cf(self.storage.cf(cf), key, value);
    }

    /// Removes `key`.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.inner.delete_cf(self.storage.cf(cf), key);
    }

    /// Removes every key in `[start, end)`.
    pub fn delete_range(&mut self, cf: Cf, start: &[u8], end: &[u8]) {
        self.inner.delete_range_cf(self.storage.cf(cf), start, end);
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"alarm/"), Some(b"alarm0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn quota_size_counts_values_uncompressed() {
        let dir = tempfile::tempdir().unwrap();
        let st = Storage::open(dir.path()).unwrap();
        let value = vec![b'a'; 1 << 20];
        for i in 0..20u8 {
            let mut b = st.batch();
            b.put(Cf::Kv, &[i], &value);
            st.write(b, Durability::Unlogged).unwrap();
        }
        st.compact_all().unwrap();
        // LZ4 shrinks these values to almost nothing on disk; the quota still sees them.
        assert!(st.size_on_disk() < 10 << 20, "{}", st.size_on_disk());
        assert!(st.quota_size() >= 20 << 20, "{}", st.quota_size());
        assert_eq!(raw_table_bytes("# entries=3; raw key size=17; raw average key size=5.6; raw value size=1000; data block size=9"), 1017);
    }

    #[test]
    fn write_read_scan_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path()).unwrap();
            let mut b = s.batch();
            b.put(Cf::Kv, b"a", b"1");
            b.put(Cf::Kv, b"b", b"2");
            b.put(Cf::Meta, b"a", b"x");
            s.write(b, Durability::Synced).unwrap();
            let all = s.scan(Cf::Kv, b"", None).unwrap();
            assert_eq!(all.len(), 2);
            let snap = s.snapshot();
            let mut b = s.batch();
            b.delete(Cf::Kv, b"a");
            s.write(b, Durability::Synced).unwrap();
            assert_eq!(snap.get(Cf::Kv, b"a").unwrap().as_deref(), Some(&b"1"[..]));
            assert_eq!(s.get(Cf::Kv, b"a").unwrap(), None);
        }
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.get(Cf::Kv, b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(s.get(Cf::Meta, b"a").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(s.scan(Cf::Kv, b"", Some(b"b")).unwrap().len(), 0);
    }
}
