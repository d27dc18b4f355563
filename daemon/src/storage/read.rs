//! Verified reads: nothing leaves the store unless it was checked against the object id.
//!
//! A read first authenticates the stored chunk-hash list in O(log n) memory: the hashes stream
//! through a [`ChunkPathBuilder`] that yields the Merkle path of the first chunk read, and that
//! chunk's own bytes, folded with the path, must reach the object id. Each sibling on the path is
//! the root of a subtree computed from stored hashes, so (short of a Blake3 collision) reaching
//! the id proves every stored hash. Every later chunk is then checked against its stored hash
//! before it is released. A damaged chunk or hash ends the read with [`StorageError::Corrupt`].

use std::{
    ops::{ControlFlow, Range},
    sync::mpsc,
};

use mehr_storage::{
    CHUNK_SIZE, Challenge, ChunkHash, ChunkPathBuilder, MerklePath, ObjectId, StorageProof,
    chunk_hash, chunk_len, chunk_range, verify_chunk,
};

use super::{
    ObjectInfo, ObjectStore, StorageError,
    records::{CHUNK_HASHES, CHUNKS, ChunkKey, UploadId},
};
use crate::store::{Key, Store};

/// Chunks a long read fetches ahead of verification, per batch (256 KiB); reads of at most this
/// many chunks stay on one thread.
const READ_AHEAD_CHUNKS: u64 = 64;

/// A chunk as stored, not yet checked.
struct StoredChunk {
    index: u64,
    bytes: Vec<u8>,
    hash: [u8; 32],
}

fn corrupt(id: &ObjectId, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        id: *id,
        detail: detail.into(),
    }
}

/// The Merkle path of chunk `index` of object `id` (`length` bytes, chunks under `upload`),
/// computed from every stored chunk hash in one pass. Fails when a hash is missing or extra.
/// The path is only as good as the stored hashes: check a chunk with it to authenticate them.
pub(super) fn authenticated_path(
    store: &Store,
    id: &ObjectId,
    length: u64,
    upload: UploadId,
    index: u64,
) -> Result<MerklePath, StorageError> {
    let mut builder =
        ChunkPathBuilder::new(length, index).map_err(|e| corrupt(id, e.to_string()))?;
    let count = mehr_storage::chunk_count(length);
    let mut next = 0u64;
    for item in store.scan_prefix(CHUNK_HASHES, &upload.0.to_be_bytes()) {
        let (key, hash) = item?;
        if key.index != next || next >= count {
            return Err(corrupt(
                id,
                format!(
                    "the chunk hashes jump from {next} to {} (the object has {count} chunks)",
                    key.index
                ),
            ));
        }
        builder.push(&ChunkHash::from_bytes(hash));
        next += 1;
    }
    builder
        .finish()
        .map_err(|_| corrupt(id, format!("{next} of {count} chunk hashes are stored")))
}

/// One chunk checked against its object id, with the Merkle path that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChunk {
    /// The chunk's index.
    pub index: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its path to the object id (`mehr_storage::verify_chunk` checks it).
    pub path: MerklePath,
    /// The object's length.
    pub object_length: u64,
}

/// A read whose hash list and first chunk are already verified; [`ObjectRead::for_each`]
/// streams the rest.
#[derive(Debug)]
pub struct ObjectRead {
    objects: ObjectStore,
    info: ObjectInfo,
    upload: UploadId,
    range: Range<u64>,
    chunks: Range<u64>,
    first: Vec<u8>,
}

impl ObjectStore {
    /// Opens a read of `length` bytes (all the rest when `None`) from `offset` of object `id`.
    /// Errors that concern the whole read (unknown object, range, damaged hash list) come here,
    /// before any byte is released.
    pub fn open_read(
        &self,
        id: &ObjectId,
        offset: u64,
        length: Option<u64>,
    ) -> Result<ObjectRead, StorageError> {
        let record = self.record(id)?;
        let want = length.unwrap_or(record.length.saturating_sub(offset));
        let chunks = chunk_range(record.length, offset, want).map_err(|_| {
            StorageError::RangeOutOfBounds {
                id: *id,
                offset,
                length: want,
                object_length: record.length,
            }
        })?;
        if record.length == 0 && mehr_storage::object_id(&[], 0) != Some(*id) {
            return Err(corrupt(
                id,
                "the record says 0 bytes, but the id is not the empty object's",
            ));
        }
        let first = if chunks.is_empty() {
            Vec::new()
        } else {
            self.verified_chunk(id, record.length, record.upload, chunks.start)?
                .bytes
        };
        Ok(ObjectRead {
            objects: self.clone(),
            info: ObjectInfo::from_record(*id, &record),
            upload: record.upload,
            range: offset..offset + want,
            chunks,
            first,
        })
    }

    /// Chunk `index` of object `id` with its Merkle path, verified (what a challenge answer or
    /// a chunk transfer to another node needs).
    pub fn read_chunk(&self, id: &ObjectId, index: u64) -> Result<VerifiedChunk, StorageError> {
        let record = self.record(id)?;
        if index >= record.chunk_count() {
            return Err(StorageError::ChunkIndexOutOfRange {
                id: *id,
                index,
                chunk_count: record.chunk_count(),
            });
        }
        self.verified_chunk(id, record.length, record.upload, index)
    }

    /// The stored hashes of chunks `first .. first + count` of object `id` (fewer at the end of
    /// the object), as stored: the receiver checks them against the id
    /// (`mehr_storage::VerifiedChunkHashes`) before trusting them.
    pub fn chunk_hashes(
        &self,
        id: &ObjectId,
        first: u64,
        count: u64,
    ) -> Result<Vec<ChunkHash>, StorageError> {
        let record = self.record(id)?;
        let total = record.chunk_count();
        if first > total || (first == total && count > 0 && total > 0) {
            return Err(StorageError::ChunkIndexOutOfRange {
                id: *id,
                index: first,
                chunk_count: total,
            });
        }
        let end = first.saturating_add(count).min(total);
        let from = ChunkKey {
            upload: record.upload,
            index: first,
        }
        .encode_key();
        let mut hashes = Vec::with_capacity(usize::try_from(end - first).unwrap_or(0));
        let mut next = first;
        for item in
            self.store()
                .scan_prefix_from(CHUNK_HASHES, &record.upload.0.to_be_bytes(), &from)
        {
            if next >= end {
                break;
            }
            let (key, hash) = item?;
            if key.index != next {
                return Err(corrupt(id, format!("the hash of chunk {next} is missing")));
            }
            hashes.push(ChunkHash::from_bytes(hash));
            next += 1;
        }
        if next < end {
            return Err(corrupt(id, format!("the hash of chunk {next} is missing")));
        }
        Ok(hashes)
    }

    /// Answers `challenge` for a stored object (the provider's side of the storage proof).
    pub fn prove(&self, challenge: &Challenge) -> Result<StorageProof, StorageError> {
        let id = challenge.object;
        let record = self.record(&id)?;
        let selection = challenge
            .select(record.length)
            .map_err(|_| StorageError::EmptyObject { id })?;
        let chunk = self.verified_chunk(&id, record.length, record.upload, selection.chunk)?;
        mehr_storage::prove(challenge, record.length, &chunk.bytes, &chunk.path)
            .map_err(|e| corrupt(&id, e.to_string()))
    }

    fn verified_chunk(
        &self,
        id: &ObjectId,
        length: u64,
        upload: UploadId,
        index: u64,
    ) -> Result<VerifiedChunk, StorageError> {
        let path = authenticated_path(self.store(), id, length, upload, index)?;
        let bytes = self
            .store()
            .get(CHUNKS, &ChunkKey { upload, index })?
            .ok_or_else(|| self.missing_chunk(id, index))?;
        verify_chunk(id, length, index, &bytes, &path).map_err(|e| corrupt(id, e.to_string()))?;
        Ok(VerifiedChunk {
            index,
            bytes,
            path,
            object_length: length,
        })
    }

    /// A chunk that is not there: the object was deleted meanwhile, or the store is damaged.
    fn missing_chunk(&self, id: &ObjectId, index: u64) -> StorageError {
        match self.contains(id) {
            Ok(false) => StorageError::NotFound { id: *id },
            Ok(true) => corrupt(id, format!("chunk {index} is missing")),
            Err(e) => e,
        }
    }
}

impl ObjectRead {
    /// The object.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The bytes of the object this read returns.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Hands the range's bytes to `sink` in order, one verified chunk (or the part of it in the
    /// range) at a time; stops early when `sink` breaks. Long reads fetch chunks from the
    /// database on a second thread while this one verifies, as both cost about as much.
    pub fn for_each(
        self,
        mut sink: impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let Range { start, end } = self.chunks.clone();
        if start == end || self.emit(start, &self.first, &mut sink).is_break() {
            return Ok(());
        }
        let rest = start + 1..end;
        if rest.end - rest.start <= READ_AHEAD_CHUNKS {
            let mut result = Ok(());
            self.fetch(rest, |chunk| {
                match chunk.and_then(|chunk| self.check_and_emit(chunk, &mut sink)) {
                    Ok(flow) => flow,
                    Err(e) => {
                        result = Err(e);
                        ControlFlow::Break(())
                    }
                }
            });
            return result;
        }
        let this = &self;
        std::thread::scope(|scope| {
            let (batches, received) = mpsc::sync_channel(2);
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(READ_AHEAD_CHUNKS as usize);
                this.fetch(rest, |chunk| {
                    let failed = chunk.is_err();
                    batch.push(chunk);
                    if !failed && batch.len() < READ_AHEAD_CHUNKS as usize {
                        return ControlFlow::Continue(());
                    }
                    let full = std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(READ_AHEAD_CHUNKS as usize),
                    );
                    // A failed send means the verifier stopped: stop reading.
                    match batches.send(full) {
                        Ok(()) if !failed => ControlFlow::Continue(()),
                        _ => ControlFlow::Break(()),
                    }
                });
                if !batch.is_empty() {
                    let _ = batches.send(batch);
                }
            });
            // Returning drops `received`, which stops the reader before the scope joins it.
            for batch in received {
                for chunk in batch {
                    if self.check_and_emit(chunk?, &mut sink)?.is_break() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    /// Reads the chunks `indices` with their stored hashes, in order, into `each`, until it
    /// breaks; a missing chunk or hash is handed over as an error, and ends the reading.
    fn fetch(
        &self,
        indices: Range<u64>,
        mut each: impl FnMut(Result<StoredChunk, StorageError>) -> ControlFlow<()>,
    ) {
        let id = self.info.id;
        let store = self.objects.store();
        let prefix = self.upload.0.to_be_bytes();
        let from = ChunkKey {
            upload: self.upload,
            index: indices.start,
        }
        .encode_key();
        let mut data = store.scan_prefix_from(CHUNKS, &prefix, &from);
        let mut hashes = store.scan_prefix_from(CHUNK_HASHES, &prefix, &from);
        for index in indices {
            let bytes = match data.next().transpose() {
                Ok(Some((key, bytes))) if key.index == index => Ok(bytes),
                Ok(_) => Err(self.objects.missing_chunk(&id, index)),
                Err(e) => Err(e.into()),
            };
            let hash = match hashes.next().transpose() {
                Ok(Some((key, hash))) if key.index == index => Ok(hash),
                Ok(_) => Err(corrupt(
                    &id,
                    format!("the hash of chunk {index} is missing"),
                )),
                Err(e) => Err(e.into()),
            };
            let chunk = bytes.and_then(|bytes| {
                Ok(StoredChunk {
                    index,
                    bytes,
                    hash: hash?,
                })
            });
            let failed = chunk.is_err();
            if each(chunk).is_break() || failed {
                return;
            }
        }
    }

    /// Checks a chunk against its stored hash, then hands its part of the range to `sink`.
    fn check_and_emit(
        &self,
        chunk: StoredChunk,
        sink: &mut impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StorageError> {
        let StoredChunk { index, bytes, hash } = chunk;
        let id = &self.info.id;
        let expected = chunk_len(self.info.length, index).unwrap_or(0);
        if bytes.len() != expected {
            return Err(corrupt(
                id,
                format!(
                    "chunk {index} has {} bytes, expected {expected}",
                    bytes.len()
                ),
            ));
        }
        if chunk_hash(&bytes) != Some(ChunkHash::from_bytes(hash)) {
            return Err(corrupt(
                id,
                format!("chunk {index} does not match its hash"),
            ));
        }
        Ok(self.emit(index, &bytes, sink))
    }

    /// Hands `sink` the part of chunk `index` inside the range.
    fn emit(
        &self,
        index: u64,
        chunk: &[u8],
        sink: &mut impl FnMut(&[u8]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let chunk_start = index * CHUNK_SIZE as u64;
        let from = self.range.start.saturating_sub(chunk_start) as usize;
        let to = self
            .range
            .end
            .saturating_sub(chunk_start)
            .min(chunk.len() as u64) as usize;
        match chunk.get(from..to) {
            Some(part) if !part.is_empty() => sink(part),
            _ => ControlFlow::Continue(()),
        }
    }
}
