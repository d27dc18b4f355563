//! The storage part: the node's local object store (MHR-Store, local part).
//!
//! Objects are immutable and named by their content ([`ObjectId`], computed by `mehr-storage`).
//! Their 4 KiB chunks and the chunk hashes live in RocksDB under the id of the upload that wrote
//! them (see [`records`]); an object becomes visible only when its record is committed in one
//! synced batch after its last chunk, so a crash never leaves a partial object listed, and the
//! chunks of uploads that never committed are removed at the next start.
//!
//! The same [`ObjectStore`] serves the API's Put/Get/Stat/List/Delete and, later, the remote
//! part: it stores erasure shards for other nodes ([`ChunkSetUpload`]), reads single chunks
//! with their Merkle path ([`ObjectStore::read_chunk`]) and answers challenges
//! ([`ObjectStore::prove`]).
//!
//! Every call is blocking (RocksDB); async callers run them on the blocking pool.

mod error;
mod listing;
mod read;
pub mod records;
pub mod remote;
mod upload;

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

pub use error::StorageError;
pub use listing::{DEFAULT_PAGE_SIZE, ListOrder, MAX_PAGE_SIZE, ObjectPage};
pub(crate) use listing::{Listing, page};
pub use mehr_storage::ObjectId;
pub use read::{ObjectRead, VerifiedChunk};
use records::{
    CHUNK_HASHES, CHUNKS, ChunkKey, CreatedKey, OBJECTS, OBJECTS_BY_CREATED, ObjectKey,
    ObjectRecord, UploadId,
};
pub use upload::{ChunkSetUpload, Upload, UploadOptions};

use crate::{
    events::{EventBus, EventKind},
    store::{Key, Store, Table, Value},
};

/// Deleting an object at least this large compacts its key range at once, so its disk space is
/// given back now rather than at some later compaction.
const COMPACT_AFTER_DELETING: u64 = 16 << 20;

/// The limits a node puts on what it stores (config section `[storage]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Bytes of object data stored in total, committed objects and uploads in progress together.
    pub available_bytes: u64,
    /// The largest object.
    pub max_object_size: u64,
}

/// What Stat, List and Put report about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object id.
    pub id: ObjectId,
    /// Size in bytes.
    pub length: u64,
    /// Number of chunks.
    pub chunk_count: u64,
    /// When it was committed, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The label given at Put; empty for none.
    pub name: String,
}

impl ObjectInfo {
    fn from_record(id: ObjectId, record: &ObjectRecord) -> Self {
        ObjectInfo {
            id,
            length: record.length,
            chunk_count: record.chunk_count(),
            created_unix_ms: record.created_unix_ms,
            name: record.name.clone(),
        }
    }
}

/// The result of a finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The object.
    pub info: ObjectInfo,
    /// True when the bytes were already stored: the upload's chunks were dropped and the
    /// existing object (its name, its creation time) is returned.
    pub already_stored: bool,
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Committed objects.
    pub objects: u64,
    /// Bytes of committed objects.
    pub used_bytes: u64,
    /// Bytes held by uploads in progress.
    pub reserved_bytes: u64,
    /// The configured `storage.available_bytes`.
    pub available_bytes: u64,
}

/// What start-up found and cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Committed objects.
    pub objects: u64,
    /// Their bytes.
    pub used_bytes: u64,
    /// Uploads that never committed (the daemon stopped during them), whose chunks were removed.
    pub orphaned_uploads: u64,
    /// Chunks those uploads had written.
    pub orphaned_chunks: u64,
}

/// The local object store. Cheap to clone; clones share one store and one quota.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("limits", &self.inner.limits)
            .field("usage", &self.usage())
            .finish()
    }
}

struct Inner {
    store: Store,
    events: Arc<EventBus>,
    limits: StorageLimits,
    /// Held while an object record is checked and written (commit, delete), so two uploads of
    /// the same bytes cannot both commit.
    commit: Mutex<()>,
    counters: Mutex<Counters>,
}

struct Counters {
    objects: u64,
    used_bytes: u64,
    reserved_bytes: u64,
    next_upload: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay consistent under a panic elsewhere: every update is a single assignment.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ObjectStore {
    /// Opens the object store kept in `store`: counts the committed objects and removes the
    /// chunks of uploads that never committed (logged with their number).
    pub fn open(
        store: Store,
        limits: StorageLimits,
        events: Arc<EventBus>,
    ) -> Result<(ObjectStore, Recovery), StorageError> {
        let mut recovery = Recovery::default();
        let mut live = HashSet::new();
        let mut highest_upload = 0;
        for item in store.scan_from(OBJECTS, &[]) {
            let (_, record) = item?;
            recovery.objects += 1;
            recovery.used_bytes = recovery.used_bytes.saturating_add(record.length);
            highest_upload = highest_upload.max(record.upload.0);
            live.insert(record.upload);
        }

        let mut orphans = BTreeSet::new();
        for uploads in [
            upload_ids_in(&store, CHUNK_HASHES)?,
            upload_ids_in(&store, CHUNKS)?,
        ] {
            for upload in uploads {
                highest_upload = highest_upload.max(upload.0);
                if !live.contains(&upload) {
                    orphans.insert(upload);
                }
            }
        }
        if !orphans.is_empty() {
            let mut batch = store.batch();
            for &upload in &orphans {
                recovery.orphaned_chunks += store
                    .scan_prefix(CHUNK_HASHES, &upload.0.to_be_bytes())
                    .count() as u64;
                delete_upload_chunks(&mut batch, upload);
            }
            store.commit(batch)?;
            for &upload in &orphans {
                compact_upload_chunks(&store, upload);
            }
            recovery.orphaned_uploads = orphans.len() as u64;
        }
        tracing::info!(
            objects = recovery.objects,
            bytes = recovery.used_bytes,
            orphaned_uploads = recovery.orphaned_uploads,
            orphaned_chunks = recovery.orphaned_chunks,
            "object store opened; removed {} orphaned upload chunks",
            recovery.orphaned_chunks
        );

        let counters = Counters {
            objects: recovery.objects,
            used_bytes: recovery.used_bytes,
            reserved_bytes: 0,
            next_upload: highest_upload.saturating_add(1),
        };
        let objects = ObjectStore {
            inner: Arc::new(Inner {
                store,
                events,
                limits,
                commit: Mutex::new(()),
                counters: Mutex::new(counters),
            }),
        };
        Ok((objects, recovery))
    }

    /// The configured limits.
    pub fn limits(&self) -> StorageLimits {
        self.inner.limits
    }

    /// What the store holds now.
    pub fn usage(&self) -> Usage {
        let counters = lock(&self.inner.counters);
        Usage {
            objects: counters.objects,
            used_bytes: counters.used_bytes,
            reserved_bytes: counters.reserved_bytes,
            available_bytes: self.inner.limits.available_bytes,
        }
    }

    /// Describes object `id`.
    pub fn stat(&self, id: &ObjectId) -> Result<ObjectInfo, StorageError> {
        let record = self.record(id)?;
        Ok(ObjectInfo::from_record(*id, &record))
    }

    /// True when object `id` is stored.
    pub fn contains(&self, id: &ObjectId) -> Result<bool, StorageError> {
        Ok(self.inner.store.get(OBJECTS, &ObjectKey(*id))?.is_some())
    }

    /// Removes object `id` and its chunks; returns what it was.
    pub fn delete(&self, id: &ObjectId) -> Result<ObjectInfo, StorageError> {
        let store = &self.inner.store;
        let (info, upload) = {
            let _commit = lock(&self.inner.commit);
            let record = self.record(id)?;
            let mut batch = store.batch();
            batch.delete(OBJECTS, &ObjectKey(*id));
            batch.delete(
                OBJECTS_BY_CREATED,
                &CreatedKey {
                    created_unix_ms: record.created_unix_ms,
                    id: *id,
                },
            );
            delete_upload_chunks(&mut batch, record.upload);
            store.commit(batch)?;
            let mut counters = lock(&self.inner.counters);
            counters.objects = counters.objects.saturating_sub(1);
            counters.used_bytes = counters.used_bytes.saturating_sub(record.length);
            (ObjectInfo::from_record(*id, &record), record.upload)
        };
        if info.length >= COMPACT_AFTER_DELETING {
            compact_upload_chunks(store, upload);
        }
        self.inner.events.publish(EventKind::ObjectDeleted {
            id: *id,
            length: info.length,
        });
        Ok(info)
    }

    fn record(&self, id: &ObjectId) -> Result<ObjectRecord, StorageError> {
        self.inner
            .store
            .get(OBJECTS, &ObjectKey(*id))?
            .ok_or(StorageError::NotFound { id: *id })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn allocate_upload(&self) -> UploadId {
        let mut counters = lock(&self.inner.counters);
        let upload = UploadId(counters.next_upload);
        counters.next_upload += 1;
        upload
    }

    /// Reserves `more` bytes for an upload that holds `held` already, checking both limits.
    fn reserve(&self, held: u64, more: u64) -> Result<(), StorageError> {
        let limits = self.inner.limits;
        let size = held.saturating_add(more);
        if size > limits.max_object_size {
            return Err(StorageError::ObjectTooLarge {
                size,
                limit: limits.max_object_size,
            });
        }
        let mut counters = lock(&self.inner.counters);
        let total = counters
            .used_bytes
            .saturating_add(counters.reserved_bytes)
            .saturating_add(more);
        if total > limits.available_bytes {
            return Err(StorageError::OutOfSpace {
                needed: more,
                used: counters.used_bytes,
                reserved: counters.reserved_bytes,
                available: limits.available_bytes,
            });
        }
        counters.reserved_bytes += more;
        Ok(())
    }

    fn release(&self, reserved: u64) {
        let mut counters = lock(&self.inner.counters);
        counters.reserved_bytes = counters.reserved_bytes.saturating_sub(reserved);
    }

    /// Makes the chunks of `upload` object `id`: one synced batch writes the object record
    /// (which also makes every earlier unsynced chunk write durable, the WAL being sequential).
    /// When `id` is already stored the upload's chunks are dropped instead.
    fn commit(
        &self,
        upload: UploadId,
        id: ObjectId,
        length: u64,
        name: &str,
        reserved: u64,
        now_unix_ms: u64,
    ) -> Result<StoredObject, StorageError> {
        let store = &self.inner.store;
        let stored = {
            let _commit = lock(&self.inner.commit);
            if let Some(existing) = store.get(OBJECTS, &ObjectKey(id))? {
                let mut batch = store.batch();
                delete_upload_chunks(&mut batch, upload);
                store.commit_unsynced(batch)?;
                self.release(reserved);
                return Ok(StoredObject {
                    info: ObjectInfo::from_record(id, &existing),
                    already_stored: true,
                });
            }
            let record = ObjectRecord {
                length,
                created_unix_ms: now_unix_ms,
                upload,
                name: name.to_string(),
            };
            let mut batch = store.batch();
            batch.put(OBJECTS, &ObjectKey(id), &record);
            batch.put(
                OBJECTS_BY_CREATED,
                &CreatedKey {
                    created_unix_ms: now_unix_ms,
                    id,
                },
                &records::IndexEntry,
            );
            store.commit(batch)?;
            let mut counters = lock(&self.inner.counters);
            counters.objects += 1;
            counters.used_bytes = counters.used_bytes.saturating_add(length);
            counters.reserved_bytes = counters.reserved_bytes.saturating_sub(reserved);
            StoredObject {
                info: ObjectInfo::from_record(id, &record),
                already_stored: false,
            }
        };
        self.inner.events.publish(EventKind::ObjectStored {
            id,
            length,
            name: stored.info.name.clone(),
        });
        Ok(stored)
    }

    /// Removes whatever `upload` wrote (an upload that failed or was cancelled).
    fn discard(&self, upload: UploadId) -> Result<(), StorageError> {
        let mut batch = self.inner.store.batch();
        delete_upload_chunks(&mut batch, upload);
        self.inner.store.commit_unsynced(batch)?;
        Ok(())
    }
}

fn delete_upload_chunks(batch: &mut crate::store::Batch<'_>, upload: UploadId) {
    let (from, to) = (ChunkKey::first(upload), ChunkKey::end(upload));
    batch.delete_range(CHUNKS, &from, &to);
    batch.delete_range(CHUNK_HASHES, &from, &to);
}

fn compact_upload_chunks(store: &Store, upload: UploadId) {
    let (from, to) = (ChunkKey::first(upload), ChunkKey::end(upload));
    store.compact_range(CHUNKS, &from, &to);
    store.compact_range(CHUNK_HASHES, &from, &to);
}

/// Every upload id with a record in `table`: one seek per upload, not one step per chunk.
fn upload_ids_in<V: Value>(
    store: &Store,
    table: Table<ChunkKey, V>,
) -> Result<Vec<UploadId>, StorageError> {
    let mut found = Vec::new();
    let mut from = ChunkKey::first(UploadId(0));
    while let Some(item) = store.scan_from(table, &from.encode_key()).next() {
        let (key, _) = item?;
        found.push(key.upload);
        if key.upload.0 == u64::MAX {
            break;
        }
        from = ChunkKey::end(key.upload);
    }
    Ok(found)
}

/// What the market advertises of the store.
impl crate::seams::storage::StorageRoom for ObjectStore {
    fn quota_left_bytes(&self) -> u64 {
        let usage = self.usage();
        usage
            .available_bytes
            .saturating_sub(usage.used_bytes)
            .saturating_sub(usage.reserved_bytes)
    }

    fn max_object_size(&self) -> u64 {
        self.limits().max_object_size
    }
}

#[cfg(test)]
mod tests;
