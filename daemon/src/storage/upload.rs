//! Writing objects: [`Upload`] takes a byte stream (the API's Put), [`ChunkSetUpload`] takes
//! numbered chunks of an object whose id is known in advance (shards stored for other nodes).
//!
//! Both write chunks and chunk hashes under a fresh upload id in modest unsynced batches, hold a
//! quota reservation for the bytes they have, and end in [`ObjectStore::commit`]. Dropping an
//! upload that did not commit removes what it wrote and gives the reservation back, so a failed
//! or cancelled upload leaves nothing behind (and if the process dies first, start-up does it).

use std::{sync::mpsc, thread};

use mehr_storage::{
    ChunkHash, ObjectBuilder, ObjectId, chunk_count, chunk_hash, chunk_len, verify_chunk,
};

use super::{
    ObjectStore, StorageError, StoredObject,
    read::authenticated_path,
    records::{CHUNK_HASHES, CHUNKS, ChunkKey, MAX_NAME_BYTES, UploadId},
};

/// Chunk bytes gathered before one unsynced write batch (256 full chunks): big enough to amortise
/// a RocksDB write, small enough to keep an upload's memory flat.
const BATCH_BYTES: usize = 1 << 20;

/// What a Put says before its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// A label for people; empty for none (at most 256 bytes).
    pub name: String,
    /// The object's size when known in advance: the limits are checked (and the space reserved)
    /// before any data, and a stream of another length fails.
    pub expected_size: Option<u64>,
}

fn check_name(name: &str) -> Result<(), StorageError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(StorageError::NameTooLong { len: name.len() });
    }
    Ok(())
}

/// The bookkeeping both kinds of upload share: the upload id, the reservation, and clean-up on
/// drop unless committed.
struct UploadSlot {
    objects: ObjectStore,
    upload: UploadId,
    reserved: u64,
    committed: bool,
}

impl UploadSlot {
    fn new(objects: &ObjectStore) -> Self {
        UploadSlot {
            upload: objects.allocate_upload(),
            objects: objects.clone(),
            reserved: 0,
            committed: false,
        }
    }

    fn reserve(&mut self, more: u64) -> Result<(), StorageError> {
        self.objects.reserve(self.reserved, more)?;
        self.reserved += more;
        Ok(())
    }

    fn commit(
        &mut self,
        id: ObjectId,
        length: u64,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<StoredObject, StorageError> {
        let stored =
            self.objects
                .commit(self.upload, id, length, name, self.reserved, now_unix_ms)?;
        self.committed = true;
        Ok(stored)
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        self.objects.release(self.reserved);
        if let Err(e) = self.objects.discard(self.upload) {
            // Start-up removes what is left (the chunks have no object record).
            tracing::warn!(upload = self.upload.0, error = %e, "cannot remove the chunks of a failed upload");
        }
    }
}

/// Chunks waiting for the next write batch.
#[derive(Default)]
struct PendingChunks {
    bytes: Vec<u8>,
    chunks: Vec<(u64, usize, usize, ChunkHash)>,
}

impl PendingChunks {
    fn push(&mut self, index: u64, bytes: &[u8], hash: ChunkHash) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.chunks.push((index, start, bytes.len(), hash));
    }

    fn write(&mut self, objects: &ObjectStore, upload: UploadId) -> Result<(), StorageError> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        let store = objects.store();
        let mut batch = store.batch();
        for &(index, start, len, hash) in &self.chunks {
            let key = ChunkKey { upload, index };
            let bytes = self.bytes.get(start..start + len).unwrap_or_default();
            batch.put(CHUNKS, &key, &bytes.to_vec());
            batch.put(CHUNK_HASHES, &key, hash.as_bytes());
        }
        store.commit_unsynced(batch)?;
        self.bytes.clear();
        self.chunks.clear();
        Ok(())
    }
}

/// Writes an upload's full batches on a thread of its own, so hashing the next megabyte
/// overlaps writing the last one (both cost about as much). Emptied batches come back for
/// reuse, so a long upload allocates its buffers once. At most three batches exist: one being
/// filled, one queued, one being written.
struct BatchWriter {
    objects: ObjectStore,
    upload: UploadId,
    full: Option<mpsc::SyncSender<PendingChunks>>,
    empty: mpsc::Receiver<PendingChunks>,
    thread: Option<thread::JoinHandle<Result<(), StorageError>>>,
}

impl BatchWriter {
    fn start(objects: &ObjectStore, upload: UploadId) -> Self {
        let (full, batches) = mpsc::sync_channel::<PendingChunks>(1);
        let (spare, empty) = mpsc::channel();
        let writer_objects = objects.clone();
        let spawned = thread::Builder::new()
            .name("mehrd-upload".into())
            .spawn(move || {
                for mut batch in batches {
                    batch.write(&writer_objects, upload)?;
                    // The uploader may be gone already; then the buffer is simply freed.
                    let _ = spare.send(batch);
                }
                Ok(())
            });
        let (full, thread) = match spawned {
            Ok(thread) => (Some(full), Some(thread)),
            Err(e) => {
                // Without a thread the batches are written in line: slower, still correct.
                tracing::warn!(error = %e, "cannot start an upload writer thread");
                (None, None)
            }
        };
        BatchWriter {
            objects: objects.clone(),
            upload,
            full,
            empty,
            thread,
        }
    }

    /// Hands `batch` over to be written; returns an empty batch to fill next.
    fn send(&mut self, mut batch: PendingChunks) -> Result<PendingChunks, StorageError> {
        if let Some(full) = &self.full {
            match full.send(batch) {
                Ok(()) => return Ok(self.empty.try_recv().unwrap_or_default()),
                // The thread stopped on an error, which `stop` returns.
                Err(mpsc::SendError(returned)) => {
                    self.stop()?;
                    batch = returned;
                }
            }
        }
        batch.write(&self.objects, self.upload)?;
        Ok(batch)
    }

    /// Waits until every batch handed over is written; the first write error, if any.
    fn stop(&mut self) -> Result<(), StorageError> {
        self.full = None;
        match self.thread.take().map(thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    /// Waits for the thread without looking at its result (the upload is being abandoned).
    fn abandon(&mut self) {
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An object being written from a byte stream. Feed it with [`Upload::write`], then
/// [`Upload::finish`]; drop it to cancel.
pub struct Upload {
    slot: UploadSlot,
    options: UploadOptions,
    builder: ObjectBuilder,
    pending: PendingChunks,
    /// Started with the first full batch; small objects never need it.
    writer: Option<BatchWriter>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Before the slot removes the upload's chunks, so no write lands after the removal.
        if let Some(writer) = &mut self.writer {
            writer.abandon();
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("upload", &self.slot.upload)
            .field("received", &self.builder.length())
            .finish()
    }
}

impl ObjectStore {
    /// Starts an upload. With an expected size, the limits are checked and the space reserved
    /// now; otherwise as the bytes arrive.
    pub fn begin_upload(&self, options: UploadOptions) -> Result<Upload, StorageError> {
        check_name(&options.name)?;
        let mut slot = UploadSlot::new(self);
        if let Some(size) = options.expected_size {
            slot.reserve(size)?;
        }
        Ok(Upload {
            slot,
            options,
            builder: ObjectBuilder::new(),
            pending: PendingChunks::default(),
            writer: None,
        })
    }

    /// Starts storing object `id` of `length` bytes from numbered chunks (an erasure shard or a
    /// replica held for another node). The whole length is reserved now. Check
    /// [`ObjectStore::contains`] first: an object already stored needs no upload.
    pub fn begin_chunk_set(
        &self,
        id: ObjectId,
        length: u64,
        name: &str,
    ) -> Result<ChunkSetUpload, StorageError> {
        check_name(name)?;
        let limit = self.inner.limits.max_object_size;
        if length > limit {
            return Err(StorageError::ObjectTooLarge {
                size: length,
                limit,
            });
        }
        // Space is reserved chunk by chunk as the bytes arrive (`put_chunk`), so a peer that
        // declares a large shard and sends nothing holds no room.
        let slot = UploadSlot::new(self);
        let count = chunk_count(length);
        let words = usize::try_from(count.div_ceil(64)).unwrap_or(usize::MAX);
        Ok(ChunkSetUpload {
            slot,
            id,
            length,
            name: name.to_string(),
            received: vec![0; words],
            missing: count,
        })
    }
}

impl Upload {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.builder.length()
    }

    /// Takes the next bytes (any amount; chunk boundaries do not matter).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let more = data.len() as u64;
        let received = self.builder.length();
        match self.options.expected_size {
            Some(expected) if received.saturating_add(more) > expected => {
                return Err(StorageError::SizeMismatch {
                    expected,
                    received: received.saturating_add(more),
                    ended: false,
                });
            }
            Some(_) => {}
            None => self.slot.reserve(more)?,
        }
        let pending = &mut self.pending;
        self.builder.update(data, |chunk| {
            pending.push(chunk.index, chunk.bytes, chunk.hash);
            Ok::<_, StorageError>(())
        })?;
        if self.pending.bytes.len() >= BATCH_BYTES {
            let (objects, upload) = (&self.slot.objects, self.slot.upload);
            let writer = self
                .writer
                .get_or_insert_with(|| BatchWriter::start(objects, upload));
            self.pending = writer.send(std::mem::take(&mut self.pending))?;
        }
        Ok(())
    }

    /// Writes the last chunk and commits the object (durably) at `now_unix_ms`.
    pub fn finish(mut self, now_unix_ms: u64) -> Result<StoredObject, StorageError> {
        let builder = std::mem::take(&mut self.builder);
        let pending = &mut self.pending;
        let built = builder.finish(|chunk| {
            pending.push(chunk.index, chunk.bytes, chunk.hash);
            Ok::<_, StorageError>(())
        })?;
        if let Some(expected) = self.options.expected_size
            && built.length != expected
        {
            return Err(StorageError::SizeMismatch {
                expected,
                received: built.length,
                ended: true,
            });
        }
        if let Some(writer) = &mut self.writer {
            writer.stop()?;
        }
        self.pending.write(&self.slot.objects, self.slot.upload)?;
        self.slot
            .commit(built.id, built.length, &self.options.name, now_unix_ms)
    }
}

/// An object of known id and length being written from numbered chunks, in any order; a chunk
/// sent twice replaces the first copy. [`ChunkSetUpload::finish`] checks the chunks against the
/// id before committing.
pub struct ChunkSetUpload {
    slot: UploadSlot,
    id: ObjectId,
    length: u64,
    name: String,
    received: Vec<u64>,
    missing: u64,
}

impl std::fmt::Debug for ChunkSetUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSetUpload")
            .field("id", &self.id)
            .field("length", &self.length)
            .field("missing", &self.missing)
            .finish()
    }
}

impl ChunkSetUpload {
    /// The object being stored.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Chunks not received yet.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The index of every chunk not received yet, in order (what to ask the sender again for).
    pub fn missing_indices(&self) -> impl Iterator<Item = u64> + '_ {
        (0..chunk_count(self.length)).filter(|&index| !self.has(index))
    }

    fn has(&self, index: u64) -> bool {
        usize::try_from(index / 64)
            .ok()
            .and_then(|word| self.received.get(word))
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Stores chunk `index` (its length must be the one its position implies).
    pub fn put_chunk(&mut self, index: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let expected = chunk_len(self.length, index).ok_or(StorageError::ChunkIndexOutOfRange {
            id: self.id,
            index,
            chunk_count: chunk_count(self.length),
        })?;
        let hash = chunk_hash(bytes)
            .filter(|_| bytes.len() == expected)
            .ok_or(StorageError::ChunkLength {
                index,
                expected,
                got: bytes.len(),
            })?;
        if !self.has(index) {
            self.slot.reserve(expected as u64)?;
        }
        let mut pending = PendingChunks::default();
        pending.push(index, bytes, hash);
        pending.write(&self.slot.objects, self.slot.upload)?;
        if !self.has(index) {
            // `has` is false only for indices inside the bitmap.
            if let Some(word) = usize::try_from(index / 64)
                .ok()
                .and_then(|word| self.received.get_mut(word))
            {
                *word |= 1 << (index % 64);
                self.missing -= 1;
            }
        }
        Ok(())
    }

    /// Checks that the chunks hash to the object id and commits the object (durably).
    pub fn finish(mut self, now_unix_ms: u64) -> Result<StoredObject, StorageError> {
        let count = chunk_count(self.length);
        if self.missing > 0 {
            return Err(StorageError::IncompleteChunkSet {
                id: self.id,
                missing: self.missing,
                chunk_count: count,
            });
        }
        let mismatch = StorageError::ContentMismatch { expected: self.id };
        if count == 0 {
            if mehr_storage::object_id(&[], 0) != Some(self.id) {
                return Err(mismatch);
            }
        } else {
            // The path of chunk 0 is built from every other stored hash; chunk 0's own bytes
            // folded with it reaching the id proves the whole hash list (see `read`).
            let store = self.slot.objects.store();
            let path = authenticated_path(store, &self.id, self.length, self.slot.upload, 0)
                .map_err(|e| match e {
                    StorageError::Corrupt { .. } => {
                        StorageError::ContentMismatch { expected: self.id }
                    }
                    other => other,
                })?;
            let first = store
                .get(
                    CHUNKS,
                    &ChunkKey {
                        upload: self.slot.upload,
                        index: 0,
                    },
                )?
                .ok_or(StorageError::ContentMismatch { expected: self.id })?;
            verify_chunk(&self.id, self.length, 0, &first, &path).map_err(|_| mismatch)?;
        }
        let name = std::mem::take(&mut self.name);
        self.slot.commit(self.id, self.length, &name, now_unix_ms)
    }
}
