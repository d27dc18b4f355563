//! Streaming construction of an object's chunks and id.

use std::convert::Infallible;

use crate::commitment::{CHUNK_SIZE, TreeKind, chunk_hash, object_root};
use crate::id::{ChunkHash, ObjectId};
use crate::merkle::RootAccumulator;

/// A completed chunk handed to the caller to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Position of the chunk in the object, from 0.
    pub index: u64,
    /// The chunk's bytes: [`CHUNK_SIZE`] except for a short last chunk.
    pub bytes: &'a [u8],
    /// The chunk's hash (leaf of the object's chunk tree).
    pub hash: ChunkHash,
}

/// What [`ObjectBuilder::finish`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltObject {
    /// The object id (root of the commitment).
    pub id: ObjectId,
    /// Total bytes fed.
    pub length: u64,
    /// Number of chunks emitted.
    pub chunk_count: u64,
}

/// Cuts a byte stream into chunks and computes the object id, keeping one chunk buffer and
/// O(log n) hashes whatever the object size.
///
/// ```
/// use mehr_storage::ObjectBuilder;
/// let mut stored = Vec::new();
/// let mut builder = ObjectBuilder::new();
/// for piece in [&b"hello "[..], &b"world"[..]] {
///     builder.update(piece, |chunk| {
///         stored.push((chunk.index, chunk.bytes.to_vec()));
///         Ok::<_, std::convert::Infallible>(())
///     })?;
/// }
/// let built = builder.finish(|chunk| {
///     stored.push((chunk.index, chunk.bytes.to_vec()));
///     Ok::<_, std::convert::Infallible>(())
/// })?;
/// assert_eq!(built.length, 11);
/// assert_eq!(stored, vec![(0, b"hello world".to_vec())]);
/// # Ok::<(), std::convert::Infallible>(())
/// ```
#[derive(Debug, Clone)]
pub struct ObjectBuilder {
    pending: Vec<u8>,
    length: u64,
    chunks: u64,
    tree: RootAccumulator,
}

impl Default for ObjectBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            pending: Vec::with_capacity(CHUNK_SIZE),
            length: 0,
            chunks: 0,
            tree: RootAccumulator::new(TreeKind::Object),
        }
    }

    /// Bytes fed so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Feeds the next bytes; `on_chunk` receives every chunk completed by them, in order. An
    /// error from `on_chunk` is returned as is; the builder then holds an unspecified state and
    /// should be dropped.
    pub fn update<E>(
        &mut self,
        mut data: &[u8],
        mut on_chunk: impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.length += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (CHUNK_SIZE - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() < CHUNK_SIZE {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.pending);
            let result = self.emit(&pending, &mut on_chunk);
            self.pending = pending;
            self.pending.clear();
            result?;
        }
        // A chunk is emitted as soon as it is full: the boundaries never depend on what follows.
        let mut full = data.chunks_exact(CHUNK_SIZE);
        for chunk in &mut full {
            self.emit(chunk, &mut on_chunk)?;
        }
        self.pending.extend_from_slice(full.remainder());
        Ok(())
    }

    /// Emits the short last chunk, if any, and returns the object id.
    pub fn finish<E>(
        mut self,
        mut on_chunk: impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<BuiltObject, E> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.emit(&pending, &mut on_chunk)?;
        }
        let top = self.tree.root().unwrap_or([0u8; 32]);
        Ok(BuiltObject {
            id: object_root(&top, self.length),
            length: self.length,
            chunk_count: self.chunks,
        })
    }

    fn emit<E>(
        &mut self,
        bytes: &[u8],
        on_chunk: &mut impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // `bytes` is never empty and never longer than a chunk here, so the hash always exists.
        if let Some(hash) = chunk_hash(bytes) {
            self.tree.push(hash.to_bytes());
            let index = self.chunks;
            self.chunks += 1;
            on_chunk(Chunk { index, bytes, hash })?;
        }
        Ok(())
    }
}

impl ObjectId {
    /// The id of an object held in memory (for small objects and tests; stream large ones
    /// through [`ObjectBuilder`]).
    pub fn for_bytes(data: &[u8]) -> Self {
        let mut builder = ObjectBuilder::new();
        let ignore = |_: Chunk<'_>| Ok::<(), Infallible>(());
        match builder
            .update(data, ignore)
            .and_then(|()| builder.finish(ignore))
        {
            Ok(built) => built.id,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitment::object_id;
    use proptest::prelude::*;

    fn build_in_pieces(
        data: &[u8],
        cuts: &[usize],
    ) -> (BuiltObject, Vec<(u64, Vec<u8>, ChunkHash)>) {
        let mut chunks = Vec::new();
        let mut builder = ObjectBuilder::new();
        let mut start = 0;
        for &cut in cuts {
            let end = cut.clamp(start, data.len());
            builder
                .update(&data[start..end], |c| {
                    chunks.push((c.index, c.bytes.to_vec(), c.hash));
                    Ok::<_, Infallible>(())
                })
                .expect("infallible");
            start = end;
        }
        builder
            .update(&data[start..], |c| {
                chunks.push((c.index, c.bytes.to_vec(), c.hash));
                Ok::<_, Infallible>(())
            })
            .expect("infallible");
        let built = builder
            .finish(|c| {
                chunks.push((c.index, c.bytes.to_vec(), c.hash));
                Ok::<_, Infallible>(())
            })
            .expect("infallible");
        (built, chunks)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
            .collect()
    }

    #[test]
    fn empty_object_has_no_chunks() {
        let (built, chunks) = build_in_pieces(&[], &[]);
        assert!(chunks.is_empty());
        assert_eq!(built.chunk_count, 0);
        assert_eq!(built.length, 0);
        assert_eq!(Some(built.id), object_id(&[], 0));
    }

    #[test]
    fn chunk_boundaries_and_ids_do_not_depend_on_how_bytes_arrive() {
        for len in [1, 63, 64, 65, 4095, 4096, 4097, 8192, 3 * 4096 + 77] {
            let data = pattern(len);
            let (whole, whole_chunks) = build_in_pieces(&data, &[]);
            let (split, split_chunks) = build_in_pieces(&data, &[1, 100, 4095, 4096, 5000]);
            assert_eq!(whole, split, "len {len}");
            assert_eq!(whole_chunks, split_chunks, "len {len}");
            let hashes: Vec<ChunkHash> = whole_chunks.iter().map(|c| c.2).collect();
            assert_eq!(object_id(&hashes, len as u64), Some(whole.id));
            assert_eq!(ObjectId::for_bytes(&data), whole.id);
            let rebuilt: Vec<u8> = whole_chunks.iter().flat_map(|c| c.1.clone()).collect();
            assert_eq!(rebuilt, data);
            for (i, c) in whole_chunks.iter().enumerate() {
                assert_eq!(c.0, i as u64);
            }
        }
    }

    #[test]
    fn truncation_and_extension_change_the_id() {
        let data = pattern(4096 * 2);
        let id = ObjectId::for_bytes(&data);
        assert_ne!(ObjectId::for_bytes(&data[..4096]), id);
        assert_ne!(ObjectId::for_bytes(&data[..data.len() - 1]), id);
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(ObjectId::for_bytes(&longer), id);
    }

    #[test]
    fn callback_errors_stop_the_build() {
        let mut builder = ObjectBuilder::new();
        let result = builder.update(&pattern(3 * 4096), |c| {
            if c.index == 1 { Err(c.index) } else { Ok(()) }
        });
        assert_eq!(result, Err(1));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_object(len in 0usize..20_000, cuts in proptest::collection::vec(0usize..20_000, 0..8)) {
            let data = pattern(len);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (a, ca) = build_in_pieces(&data, &[]);
            let (b, cb) = build_in_pieces(&data, &cuts);
            prop_assert_eq!(a, b);
            prop_assert_eq!(ca, cb);
        }
    }
}
