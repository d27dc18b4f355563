//! Verified reading: checking chunks fetched from an untrusted store against an object id and
//! length.
//!
//! Two ways, for two access patterns:
//! - range reads carry a [`MerklePath`] per chunk and use [`verify_chunk`];
//! - a whole-object `Get` first fetches the chunk-hash list (32 bytes per 4 KB), checks it once
//!   with [`VerifiedChunkHashes::new`], then checks each streamed chunk against its entry, so no
//!   byte is released before it is verified.

use std::ops::Range;

use crate::commitment::{
    CHUNK_SIZE, Node, TreeKind, chunk_count, chunk_hash, chunk_len, object_id, object_root,
};
use crate::id::{ChunkHash, ObjectId};
use crate::merkle::{self, FoldError, MAX_DEPTH, PathBuilder};
use crate::wire::{DecodeError, Reader};

/// Why a chunk, a path or a chunk-hash list does not match an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The chunk index is past the last chunk of the object.
    #[error("chunk {index} does not exist: the object has {chunk_count} chunks")]
    ChunkIndexOutOfRange {
        /// Index asked for.
        index: u64,
        /// Chunks in the object.
        chunk_count: u64,
    },
    /// The chunk does not have the length its position implies.
    #[error("chunk {index} has {got} bytes, expected {expected}")]
    ChunkLength {
        /// Chunk index.
        index: u64,
        /// Length implied by the object length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The Merkle path does not have the depth of the chunk in the object's tree.
    #[error("path has {got} siblings, the chunk's depth is {expected}")]
    PathLength {
        /// Depth of the chunk.
        expected: usize,
        /// Siblings received.
        got: usize,
    },
    /// The chunk-hash list does not have one entry per chunk.
    #[error("{got} chunk hashes for an object of {expected} chunks")]
    HashCount {
        /// Chunks in the object.
        expected: u64,
        /// Hashes received.
        got: u64,
    },
    /// The chunk does not hash to its entry in the verified chunk-hash list.
    #[error("chunk {index} does not match its hash")]
    ChunkHashMismatch {
        /// Chunk index.
        index: u64,
    },
    /// The data does not hash to the object id.
    #[error("data does not hash to object {expected}")]
    RootMismatch {
        /// The object id the data should have.
        expected: ObjectId,
    },
    /// A byte range extends past the end of the object.
    #[error("range {offset}+{len} exceeds the object length {length}")]
    RangeOutOfBounds {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Object length.
        length: u64,
    },
}

/// Sibling hashes from a leaf up to the top of a tree, bottom-up. Left or right is not stored:
/// both follow from the leaf index and the leaf count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MerklePath {
    siblings: Vec<[u8; 32]>,
}

impl MerklePath {
    /// Most siblings a path may have (a tree of 2^64 leaves).
    pub const MAX_LEN: usize = MAX_DEPTH;

    /// Wraps siblings, bottom-up; `None` beyond [`Self::MAX_LEN`].
    pub fn from_siblings(siblings: Vec<[u8; 32]>) -> Option<Self> {
        (siblings.len() <= Self::MAX_LEN).then_some(Self { siblings })
    }

    /// The siblings, bottom-up.
    pub fn siblings(&self) -> &[[u8; 32]] {
        &self.siblings
    }

    /// Bytes of [`Self::encode`]'s output: one count byte and 32 bytes per sibling.
    pub fn encoded_len(&self) -> usize {
        1 + 32 * self.siblings.len()
    }

    /// `count u8 ‖ count × 32-byte sibling`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Parses exactly one encoded path.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let path = Self::read(&mut reader, "path length", Self::MAX_LEN as u8)?;
        reader.finish("Merkle path")?;
        Ok(path)
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        // The constructors cap the length at 64, so it fits the count byte.
        out.push(self.siblings.len() as u8);
        for sibling in &self.siblings {
            out.extend_from_slice(sibling);
        }
    }

    pub(crate) fn read(
        reader: &mut Reader<'_>,
        field: &'static str,
        max: u8,
    ) -> Result<Self, DecodeError> {
        let count = reader.u8_in(field, 0, max)?;
        let siblings = (0..count)
            .map(|_| reader.array::<32>("path sibling"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { siblings })
    }

    pub(crate) fn from_nodes(siblings: Vec<Node>) -> Self {
        Self { siblings }
    }
}

pub(crate) fn map_fold_error(error: FoldError, index: u64, count: u64) -> VerifyError {
    match error {
        FoldError::IndexOutOfRange => VerifyError::ChunkIndexOutOfRange {
            index,
            chunk_count: count,
        },
        FoldError::PathLength { expected, got } => VerifyError::PathLength { expected, got },
    }
}

/// The path from chunk `index` to the top of the chunk tree, from the object's chunk hashes
/// (what a provider keeps). O(n) hashing; see [`ChunkPathBuilder`] to avoid holding the list.
pub fn chunk_path(chunk_hashes: &[ChunkHash], index: u64) -> Result<MerklePath, VerifyError> {
    let out_of_range = VerifyError::ChunkIndexOutOfRange {
        index,
        chunk_count: chunk_hashes.len() as u64,
    };
    let position = usize::try_from(index).map_err(|_| out_of_range.clone())?;
    merkle::path(TreeKind::Object, chunk_hashes, position)
        .map(MerklePath::from_nodes)
        .ok_or(out_of_range)
}

/// Computes the path of one chunk while the object's chunk hashes stream past in order (for
/// example from a database iterator), in O(log n) memory whatever the object size.
#[derive(Debug, Clone)]
pub struct ChunkPathBuilder {
    inner: PathBuilder,
    chunk_count: u64,
    pushed: u64,
}

impl ChunkPathBuilder {
    /// A builder for the path of chunk `index` of an object of `length` bytes.
    pub fn new(length: u64, index: u64) -> Result<Self, VerifyError> {
        let chunk_count = chunk_count(length);
        let inner = PathBuilder::new(TreeKind::Object, index, chunk_count)
            .ok_or(VerifyError::ChunkIndexOutOfRange { index, chunk_count })?;
        Ok(Self {
            inner,
            chunk_count,
            pushed: 0,
        })
    }

    /// The next chunk hash, in index order.
    pub fn push(&mut self, hash: &ChunkHash) {
        self.pushed = self.pushed.saturating_add(1);
        self.inner.push(hash.as_bytes());
    }

    /// The path; fails unless exactly one hash per chunk was pushed.
    pub fn finish(self) -> Result<MerklePath, VerifyError> {
        let (expected, got) = (self.chunk_count, self.pushed);
        self.inner
            .finish()
            .map(MerklePath::from_nodes)
            .ok_or(VerifyError::HashCount { expected, got })
    }
}

/// Checks that `chunk` is chunk `index` of the object `root` of `length` bytes, given its path.
pub fn verify_chunk(
    root: &ObjectId,
    length: u64,
    index: u64,
    chunk: &[u8],
    path: &MerklePath,
) -> Result<(), VerifyError> {
    let count = chunk_count(length);
    let expected = chunk_len(length, index).ok_or(VerifyError::ChunkIndexOutOfRange {
        index,
        chunk_count: count,
    })?;
    if chunk.len() != expected {
        return Err(VerifyError::ChunkLength {
            index,
            expected,
            got: chunk.len(),
        });
    }
    let leaf = chunk_hash(chunk).ok_or(VerifyError::ChunkLength {
        index,
        expected,
        got: chunk.len(),
    })?;
    let top = merkle::fold(
        TreeKind::Object,
        leaf.to_bytes(),
        index,
        count,
        path.siblings(),
    )
    .map_err(|e| map_fold_error(e, index, count))?;
    if object_root(&top, length) != *root {
        return Err(VerifyError::RootMismatch { expected: *root });
    }
    Ok(())
}

/// Indices of the chunks holding bytes `offset .. offset + len` of an object of `length` bytes.
pub fn chunk_range(length: u64, offset: u64, len: u64) -> Result<Range<u64>, VerifyError> {
    let end = offset.checked_add(len).filter(|end| *end <= length).ok_or(
        VerifyError::RangeOutOfBounds {
            offset,
            len,
            length,
        },
    )?;
    let chunk = CHUNK_SIZE as u64;
    if len == 0 {
        let at = offset / chunk;
        return Ok(at..at);
    }
    Ok(offset / chunk..(end - 1) / chunk + 1)
}

/// A chunk-hash list checked against an object id, for verifying chunks streamed in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChunkHashes {
    length: u64,
    hashes: Vec<ChunkHash>,
}

impl VerifiedChunkHashes {
    /// Checks the list against `root` and `length` (O(n) hashing, once).
    pub fn new(root: &ObjectId, length: u64, hashes: Vec<ChunkHash>) -> Result<Self, VerifyError> {
        let id = object_id(&hashes, length).ok_or(VerifyError::HashCount {
            expected: chunk_count(length),
            got: hashes.len() as u64,
        })?;
        if id != *root {
            return Err(VerifyError::RootMismatch { expected: *root });
        }
        Ok(Self { length, hashes })
    }

    /// The object length.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The verified chunk hashes, in order.
    pub fn hashes(&self) -> &[ChunkHash] {
        &self.hashes
    }

    /// Checks one chunk against its verified hash.
    pub fn verify_chunk(&self, index: u64, chunk: &[u8]) -> Result<(), VerifyError> {
        let count = self.hashes.len() as u64;
        let out_of_range = VerifyError::ChunkIndexOutOfRange {
            index,
            chunk_count: count,
        };
        let expected = chunk_len(self.length, index).ok_or(out_of_range.clone())?;
        if chunk.len() != expected {
            return Err(VerifyError::ChunkLength {
                index,
                expected,
                got: chunk.len(),
            });
        }
        let stored = usize::try_from(index)
            .ok()
            .and_then(|i| self.hashes.get(i))
            .ok_or(out_of_range)?;
        if chunk_hash(chunk).as_ref() != Some(stored) {
            return Err(VerifyError::ChunkHashMismatch { index });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ObjectBuilder;
    use proptest::prelude::*;
    use std::convert::Infallible;

    fn object(len: usize) -> (ObjectId, Vec<Vec<u8>>, Vec<ChunkHash>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ (i >> 8) as u8).collect();
        let mut chunks = Vec::new();
        let mut hashes = Vec::new();
        let mut b = ObjectBuilder::new();
        b.update(&data, |c| {
            chunks.push(c.bytes.to_vec());
            hashes.push(c.hash);
            Ok::<_, Infallible>(())
        })
        .expect("infallible");
        let built = b
            .finish(|c| {
                chunks.push(c.bytes.to_vec());
                hashes.push(c.hash);
                Ok::<_, Infallible>(())
            })
            .expect("infallible");
        (built.id, chunks, hashes)
    }

    #[test]
    fn every_chunk_verifies_with_its_path() {
        for len in [1usize, 4096, 4097, 5 * 4096 + 3, 17 * 4096] {
            let (id, chunks, hashes) = object(len);
            let length = len as u64;
            for (i, chunk) in chunks.iter().enumerate() {
                let path = chunk_path(&hashes, i as u64).expect("in range");
                assert_eq!(verify_chunk(&id, length, i as u64, chunk, &path), Ok(()));
            }
        }
    }

    #[test]
    fn streamed_paths_match_paths_from_the_list() {
        let len = 37 * 4096 + 5;
        let (id, chunks, hashes) = object(len);
        for index in 0..hashes.len() as u64 {
            let mut builder = ChunkPathBuilder::new(len as u64, index).expect("in range");
            for h in &hashes {
                builder.push(h);
            }
            let path = builder.finish().expect("complete");
            assert_eq!(Ok(path.clone()), chunk_path(&hashes, index));
            assert_eq!(
                verify_chunk(&id, len as u64, index, &chunks[index as usize], &path),
                Ok(())
            );
        }
        let mut short = ChunkPathBuilder::new(len as u64, 3).expect("in range");
        for h in &hashes[1..] {
            short.push(h);
        }
        assert_eq!(
            short.finish(),
            Err(VerifyError::HashCount {
                expected: 38,
                got: 37
            })
        );
        let mut long = ChunkPathBuilder::new(len as u64, 3).expect("in range");
        for h in hashes.iter().chain(&hashes[..1]) {
            long.push(h);
        }
        assert!(long.finish().is_err());
        assert_eq!(
            ChunkPathBuilder::new(len as u64, 38).map(|_| ()),
            Err(VerifyError::ChunkIndexOutOfRange {
                index: 38,
                chunk_count: 38
            })
        );
        assert!(ChunkPathBuilder::new(0, 0).is_err());
    }

    #[test]
    fn tampered_chunks_and_paths_are_rejected() {
        let (id, chunks, hashes) = object(5 * 4096 + 3);
        let length = (5 * 4096 + 3) as u64;
        let path = chunk_path(&hashes, 2).expect("in range");

        let mut bad = chunks[2].clone();
        bad[100] ^= 0x80;
        assert_eq!(
            verify_chunk(&id, length, 2, &bad, &path),
            Err(VerifyError::RootMismatch { expected: id })
        );
        // Right chunk, wrong position.
        assert!(verify_chunk(&id, length, 3, &chunks[2], &path).is_err());
        // Short last chunk presented at a full position, and the reverse.
        assert_eq!(
            verify_chunk(&id, length, 5, &chunks[2], &path),
            Err(VerifyError::ChunkLength {
                index: 5,
                expected: 3,
                got: 4096
            })
        );
        assert_eq!(
            verify_chunk(&id, length, 6, &chunks[2], &path),
            Err(VerifyError::ChunkIndexOutOfRange {
                index: 6,
                chunk_count: 6
            })
        );
        // Wrong length claimed for the object.
        assert!(verify_chunk(&id, length + 1, 2, &chunks[2], &path).is_err());
        // Tampered and truncated path.
        let mut siblings = path.siblings().to_vec();
        siblings[0][0] ^= 1;
        let tampered = MerklePath::from_siblings(siblings.clone()).expect("short");
        assert!(verify_chunk(&id, length, 2, &chunks[2], &tampered).is_err());
        siblings.pop();
        let truncated = MerklePath::from_siblings(siblings).expect("short");
        assert_eq!(
            verify_chunk(&id, length, 2, &chunks[2], &truncated),
            Err(VerifyError::PathLength {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn chunk_hash_list_verifies_streamed_chunks() {
        let (id, chunks, hashes) = object(3 * 4096 + 10);
        let length = (3 * 4096 + 10) as u64;
        let list = VerifiedChunkHashes::new(&id, length, hashes.clone()).expect("valid");
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(list.verify_chunk(i as u64, chunk), Ok(()));
        }
        assert_eq!(
            list.verify_chunk(0, &chunks[1]),
            Err(VerifyError::ChunkHashMismatch { index: 0 })
        );
        assert!(list.verify_chunk(4, &chunks[3]).is_err());

        let mut swapped = hashes.clone();
        swapped.swap(0, 1);
        assert_eq!(
            VerifiedChunkHashes::new(&id, length, swapped),
            Err(VerifyError::RootMismatch { expected: id })
        );
        assert_eq!(
            VerifiedChunkHashes::new(&id, length, hashes[..3].to_vec()),
            Err(VerifyError::HashCount {
                expected: 4,
                got: 3
            })
        );
        let empty = ObjectId::for_bytes(&[]);
        assert!(VerifiedChunkHashes::new(&empty, 0, Vec::new()).is_ok());
    }

    #[test]
    fn ranges_map_to_overlapping_chunks() {
        assert_eq!(chunk_range(10_000, 0, 10_000), Ok(0..3));
        assert_eq!(chunk_range(10_000, 4095, 2), Ok(0..2));
        assert_eq!(chunk_range(10_000, 4096, 4096), Ok(1..2));
        assert_eq!(chunk_range(10_000, 9_999, 1), Ok(2..3));
        assert_eq!(chunk_range(10_000, 5000, 0), Ok(1..1));
        assert_eq!(
            chunk_range(10_000, 9_999, 2),
            Err(VerifyError::RangeOutOfBounds {
                offset: 9_999,
                len: 2,
                length: 10_000
            })
        );
        assert!(chunk_range(10, u64::MAX, 2).is_err());
    }

    #[test]
    fn path_encoding_round_trips_and_rejects_malformed_input() {
        let path = MerklePath::from_siblings(vec![[1; 32], [2; 32]]).expect("short");
        let bytes = path.encode();
        assert_eq!(bytes.len(), path.encoded_len());
        assert_eq!(MerklePath::decode(&bytes), Ok(path));
        assert!(MerklePath::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            MerklePath::decode(&long),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            MerklePath::decode(&[65]),
            Err(DecodeError::OutOfRange { value: 65, .. })
        ));
        assert!(MerklePath::from_siblings(vec![[0; 32]; 65]).is_none());
    }

    proptest! {
        #[test]
        fn path_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(path) = MerklePath::decode(&bytes) {
                prop_assert_eq!(path.encode(), bytes);
            }
        }
    }
}
