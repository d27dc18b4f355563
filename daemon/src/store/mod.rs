//! The node's durable state: one RocksDB database under the data dir, one column family per
//! kind of record, typed tables on top.
//!
//! A [`Table`] names a column family and fixes the key and value types, so callers never
//! handle raw bytes. Changes that belong together go into one [`Batch`], which RocksDB applies
//! atomically and, on [`Store::commit`], syncs to the write-ahead log before returning: state a
//! peer was told about survives a crash at any moment.

mod codec;
mod schema;

use std::{marker::PhantomData, path::Path, sync::Arc};

pub use codec::{CodecError, Key, Value};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteOptions};
pub(crate) use schema::{
    CF_COMPUTE_MODULES, CF_LEDGER_CHANNELS, CF_LEDGER_DUES, CF_LEDGER_EPOCHS, CF_LEDGER_OPENS,
    CF_LEDGER_RECORDS, CF_LEDGER_REDEEMED, CF_LEDGER_REQUESTS, CF_LEDGER_TRUST,
    CF_MARKET_AGREEMENTS, CF_MARKET_STATE, CF_STORAGE_CHUNK_HASHES, CF_STORAGE_CHUNKS,
    CF_STORAGE_HELD_SHARDS, CF_STORAGE_OBJECTS, CF_STORAGE_OBJECTS_BY_CREATED,
    CF_STORAGE_REMOTE_OBJECTS,
};
pub use schema::{COLUMN_FAMILIES, META};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database lock.
    #[error("store {path} is locked by another process: {message}")]
    Locked {
        /// The database directory.
        path: String,
        /// RocksDB's message.
        message: String,
    },
    /// RocksDB reported an error.
    #[error("store error: {0}")]
    Db(#[from] rocksdb::Error),
    /// A stored record could not be decoded: the store is damaged or from an incompatible version.
    #[error("store table {table}: {source}")]
    Corrupt {
        /// The column family.
        table: &'static str,
        /// What did not decode.
        source: CodecError,
    },
}

/// A typed view of one column family.
pub struct Table<K, V> {
    name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Table<K, V> {
    /// A table over the column family `name`, which must be listed in [`COLUMN_FAMILIES`].
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            _types: PhantomData,
        }
    }

    /// The column family's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Table<K, V> {}

/// The node's database. Cheap to clone; all clones share one RocksDB instance.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the database at `path` with every column family of [`COLUMN_FAMILIES`].
    /// Column families written by a newer version are opened too, and left alone.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_keep_log_file_num(4);
        // A write-ahead log file is deleted only once every column family with data in it has
        // been flushed. Without a cap, a column family that fills slowly (chunk hashes beside
        // chunk bytes) would keep gigabytes of log alive after a bulk upload; past the cap
        // RocksDB flushes the column families holding the oldest log.
        options.set_max_total_wal_size(256 << 20);
        let mut families: Vec<String> = COLUMN_FAMILIES.iter().map(|s| s.to_string()).collect();
        if let Ok(existing) = DB::list_cf(&options, path) {
            for name in existing {
                if !families.contains(&name) {
                    families.push(name);
                }
            }
        }
        let descriptors = families
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, schema::column_family_options(name)));
        let db = DB::open_cf_descriptors(&options, path, descriptors).map_err(|e| {
            let message = e.to_string();
            if message.contains("lock") {
                StoreError::Locked {
                    path: path.display().to_string(),
                    message,
                }
            } else {
                StoreError::Db(e)
            }
        })?;
        Ok(Store { db: Arc::new(db) })
    }

    fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is not in store::COLUMN_FAMILIES"))
    }

    /// Reads one record.
    pub fn get<K: Key, V: Value>(
        &self,
        table: Table<K, V>,
        key: &K,
    ) -> Result<Option<V>, StoreError> {
        let bytes = self
            .db
            .get_pinned_cf(self.cf(table.name), key.encode_key())?;
        bytes
            .map(|b| {
                V::decode_value(&b).map_err(|source| StoreError::Corrupt {
                    table: table.name,
                    source,
                })
            })
            .transpose()
    }

    /// Writes one record durably (a batch of one).
    pub fn put<K: Key, V: Value>(
        &self,
        table: Table<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), StoreError> {
        let mut batch = self.batch();
        batch.put(table, key, value);
        self.commit(batch)
    }

    /// Starts an atomic batch of changes.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            inner: rocksdb::WriteBatch::default(),
        }
    }

    /// Applies `batch` atomically and syncs it to the write-ahead log before returning.
    pub fn commit(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch.inner, &options)?;
        Ok(())
    }

    /// Applies `batch` atomically without waiting for the disk. Use only for data that can be
    /// lost on a crash without breaking a promise (bulk data whose commit record follows in a
    /// synced batch).
    pub fn commit_unsynced(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.write_opt(batch.inner, &options)?;
        Ok(())
    }

    /// Iterates over the records whose encoded key starts with `prefix`, in key order.
    pub fn scan_prefix<'a, K: Key + 'a, V: Value + 'a>(
        &'a self,
        table: Table<K, V>,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(K, V), StoreError>> + 'a {
        self.scan_prefix_from(table, prefix, prefix)
    }

    /// Iterates over the records with keys at or after `start` (encoded), in key order.
    pub fn scan_from<'a, K: Key + 'a, V: Value + 'a>(
        &'a self,
        table: Table<K, V>,
        start: &[u8],
    ) -> impl Iterator<Item = Result<(K, V), StoreError>> + 'a {
        self.scan_prefix_from(table, &[], start)
    }

    /// Iterates over the records whose key starts with `prefix`, beginning at `start`.
    pub fn scan_prefix_from<'a, K: Key + 'a, V: Value + 'a>(
        &'a self,
        table: Table<K, V>,
        prefix: &[u8],
        start: &[u8],
    ) -> impl Iterator<Item = Result<(K, V), StoreError>> + 'a {
        let prefix = prefix.to_vec();
        self.db
            .iterator_cf(
                self.cf(table.name),
                IteratorMode::From(start, rocksdb::Direction::Forward),
            )
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(move |item| {
                let (k, v) = item?;
                let corrupt = |source| StoreError::Corrupt {
                    table: table.name,
                    source,
                };
                Ok((
                    K::decode_key(&k).map_err(corrupt)?,
                    V::decode_value(&v).map_err(corrupt)?,
                ))
            })
    }

    /// Compacts the records of `table` whose encoded keys are in `from..to`, so that the space
    /// of records deleted there goes back to the file system now rather than at some later
    /// compaction.
    pub fn compact_range<K: Key, V: Value>(&self, table: Table<K, V>, from: &K, to: &K) {
        self.db.compact_range_cf(
            self.cf(table.name),
            Some(from.encode_key()),
            Some(to.encode_key()),
        );
    }

    /// Flushes memtables and the write-ahead log to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        for name in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }
}

/// Changes applied together by [`Store::commit`].
pub struct Batch<'a> {
    store: &'a Store,
    inner: rocksdb::WriteBatch,
}

impl Batch<'_> {
    /// Adds a write.
    pub fn put<K: Key, V: Value>(&mut self, table: Table<K, V>, key: &K, value: &V) {
        self.inner.put_cf(
            self.store.cf(table.name),
            key.encode_key(),
            value.encode_value(),
        );
    }

    /// Adds a deletion.
    pub fn delete<K: Key, V: Value>(&mut self, table: Table<K, V>, key: &K) {
        self.inner
            .delete_cf(self.store.cf(table.name), key.encode_key());
    }

    /// Adds a deletion of every record whose encoded key is in `from..to` (`to` excluded): one
    /// range tombstone, whatever the number of records it covers.
    pub fn delete_range<K: Key, V: Value>(&mut self, table: Table<K, V>, from: &K, to: &K) {
        self.inner.delete_range_cf(
            self.store.cf(table.name),
            from.encode_key(),
            to.encode_key(),
        );
    }

    /// Number of changes in the batch.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBERS: Table<u64, String> = Table::new(schema::CF_META);

    #[test]
    fn typed_round_trip_and_atomic_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put(META, &"greeting".to_string(), &b"hello".to_vec())
            .unwrap();
        assert_eq!(
            store.get(META, &"greeting".to_string()).unwrap(),
            Some(b"hello".to_vec())
        );
        let mut batch = store.batch();
        batch.put(META, &"a".to_string(), &vec![1]);
        batch.put(META, &"b".to_string(), &vec![2]);
        batch.delete(META, &"greeting".to_string());
        assert_eq!(batch.len(), 3);
        store.commit(batch).unwrap();
        assert_eq!(store.get(META, &"greeting".to_string()).unwrap(), None);
        let all: Vec<_> = store
            .scan_prefix(META, b"")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            all,
            vec![("a".to_string(), vec![1]), ("b".to_string(), vec![2])]
        );
    }

    #[test]
    fn survives_reopen_and_scans_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for n in [30u64, 1, 200] {
                store.put(NUMBERS, &n, &format!("n{n}")).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let keys: Vec<u64> = store
            .scan_from(NUMBERS, &[])
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(
            keys,
            vec![1, 30, 200],
            "u64 keys are big-endian so they sort numerically"
        );
    }

    #[test]
    fn undecodable_record_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put(META, &"n".to_string(), &vec![0xff, 0xfe])
            .unwrap();
        let as_string: Table<String, String> = Table::new(schema::CF_META);
        assert!(matches!(
            store.get(as_string, &"n".to_string()),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
