//! The object commitment: domain-separated Blake3 over 64-byte segments, 4096-byte chunks and
//! the object's byte length.
//!
//! Every hash is `blake3::keyed_hash(key, input)` with a key derived once per purpose as
//! `blake3::derive_key(context, b"")`. Keyed mode (rather than a prefix tag) keeps every leaf and
//! inner node at exactly one 64-byte Blake3 block, so a full chunk costs 127 compressions.

use std::sync::LazyLock;

use crate::id::{ChunkHash, ObjectId};

/// Bytes in a chunk; the last chunk of an object may be shorter.
pub const CHUNK_SIZE: usize = 4096;
/// Bytes in a segment, the unit a storage proof reveals; the last segment of a chunk may be
/// shorter.
pub const SEGMENT_SIZE: usize = 64;
/// Segments in a full chunk.
pub const SEGMENTS_PER_CHUNK: usize = CHUNK_SIZE / SEGMENT_SIZE;

/// One hash in a tree: a leaf, an inner node or a subtree root.
pub(crate) type Node = [u8; 32];

/// Blake3 `derive_key` context strings, one per purpose. Changing any of them changes every id.
pub(crate) mod context {
    /// Leaf: hash of one segment (1 to 64 bytes).
    pub(crate) const SEGMENT: &str = "mehr storage v1 segment";
    /// Inner node of the segment tree inside a chunk.
    pub(crate) const CHUNK_NODE: &str = "mehr storage v1 chunk node";
    /// Inner node of the chunk tree of an object.
    pub(crate) const OBJECT_NODE: &str = "mehr storage v1 object node";
    /// Object id: the chunk tree's top bound to the object's byte length.
    pub(crate) const OBJECT_ROOT: &str = "mehr storage v1 object root";
    /// Erasure manifest id.
    pub(crate) const MANIFEST: &str = "mehr storage v1 erasure manifest";
    /// Message prefix of the challenge selection, keyed by the challenge nonce.
    pub(crate) const CHALLENGE: &str = "mehr storage v1 challenge";
}

struct DomainKeys {
    segment: [u8; 32],
    chunk_node: [u8; 32],
    object_node: [u8; 32],
    object_root: [u8; 32],
    manifest: [u8; 32],
}

static KEYS: LazyLock<DomainKeys> = LazyLock::new(|| DomainKeys {
    segment: blake3::derive_key(context::SEGMENT, b""),
    chunk_node: blake3::derive_key(context::CHUNK_NODE, b""),
    object_node: blake3::derive_key(context::OBJECT_NODE, b""),
    object_root: blake3::derive_key(context::OBJECT_ROOT, b""),
    manifest: blake3::derive_key(context::MANIFEST, b""),
});

/// Which tree an inner node belongs to; the two use different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeKind {
    /// Segments of one chunk.
    Chunk,
    /// Chunks of one object.
    Object,
}

pub(crate) fn node_hash(kind: TreeKind, left: &Node, right: &Node) -> Node {
    let key = match kind {
        TreeKind::Chunk => &KEYS.chunk_node,
        TreeKind::Object => &KEYS.object_node,
    };
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    *blake3::keyed_hash(key, &block).as_bytes()
}

/// Leaf hash of a segment. Blake3 absorbs the input length, so a short last segment never
/// collides with a zero-padded one.
pub(crate) fn segment_leaf(segment: &[u8]) -> Node {
    *blake3::keyed_hash(&KEYS.segment, segment).as_bytes()
}

/// Binds the chunk tree's top (all zeros for the empty object, which has no chunks) to the
/// object's length.
pub(crate) fn object_root(tree_top: &Node, length: u64) -> ObjectId {
    let mut input = [0u8; 40];
    input[..32].copy_from_slice(tree_top);
    input[32..].copy_from_slice(&length.to_le_bytes());
    ObjectId::from_bytes(*blake3::keyed_hash(&KEYS.object_root, &input).as_bytes())
}

pub(crate) fn manifest_hash(encoding: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(&KEYS.manifest, encoding).as_bytes()
}

/// Leaf hashes of a chunk's segments, in a fixed array; returns how many are used.
pub(crate) fn segment_leaves(chunk: &[u8]) -> ([Node; SEGMENTS_PER_CHUNK], usize) {
    let mut leaves = [[0u8; 32]; SEGMENTS_PER_CHUNK];
    let mut used = 0;
    for (slot, segment) in leaves.iter_mut().zip(chunk.chunks(SEGMENT_SIZE)) {
        *slot = segment_leaf(segment);
        used += 1;
    }
    (leaves, used)
}

/// Merkle root of a chunk's segments; `None` unless `1 <= chunk.len() <= CHUNK_SIZE`.
pub fn chunk_hash(chunk: &[u8]) -> Option<ChunkHash> {
    if chunk.is_empty() || chunk.len() > CHUNK_SIZE {
        return None;
    }
    let (leaves, used) = segment_leaves(chunk);
    crate::merkle::root(TreeKind::Chunk, leaves.get(..used)?).map(ChunkHash::from_bytes)
}

/// Number of chunks of an object of `length` bytes (zero for the empty object).
pub fn chunk_count(length: u64) -> u64 {
    length.div_ceil(CHUNK_SIZE as u64)
}

/// Length of chunk `index` of an object of `length` bytes; `None` past the last chunk.
pub fn chunk_len(length: u64, index: u64) -> Option<usize> {
    let start = index.checked_mul(CHUNK_SIZE as u64)?;
    let remaining = length.checked_sub(start).filter(|r| *r > 0)?;
    Some(remaining.min(CHUNK_SIZE as u64) as usize)
}

/// The object id of an object of `length` bytes whose chunk hashes are `chunk_hashes`;
/// `None` when their number is not [`chunk_count`]`(length)`.
pub fn object_id(chunk_hashes: &[ChunkHash], length: u64) -> Option<ObjectId> {
    if chunk_hashes.len() as u64 != chunk_count(length) {
        return None;
    }
    let top = crate::merkle::root(TreeKind::Object, chunk_hashes).unwrap_or([0u8; 32]);
    Some(object_root(&top, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_give_distinct_keys() {
        let keys = [
            KEYS.segment,
            KEYS.chunk_node,
            KEYS.object_node,
            KEYS.object_root,
            KEYS.manifest,
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn chunk_hash_of_a_single_segment_is_its_leaf() {
        let seg = [7u8; 10];
        assert_eq!(
            chunk_hash(&seg).map(|h| h.to_bytes()),
            Some(segment_leaf(&seg))
        );
    }

    #[test]
    fn chunk_hash_binds_every_byte_and_the_length() {
        let chunk: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 31 % 251) as u8).collect();
        let base = chunk_hash(&chunk).expect("valid chunk");
        for pos in [0, 63, 64, 2000, CHUNK_SIZE - 1] {
            let mut flipped = chunk.clone();
            flipped[pos] ^= 1;
            assert_ne!(chunk_hash(&flipped), Some(base), "byte {pos}");
        }
        // Short chunk vs the same bytes zero-padded.
        let short = &chunk[..100];
        let mut padded = short.to_vec();
        padded.resize(128, 0);
        assert_ne!(chunk_hash(short), chunk_hash(&padded));
        assert_eq!(chunk_hash(&[]), None);
        assert_eq!(chunk_hash(&vec![0u8; CHUNK_SIZE + 1]), None);
    }

    #[test]
    fn full_chunk_matches_a_hand_built_six_level_tree() {
        let chunk: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i % 256) as u8).collect();
        let mut level: Vec<Node> = chunk.chunks(SEGMENT_SIZE).map(segment_leaf).collect();
        let mut levels = 0;
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| node_hash(TreeKind::Chunk, &pair[0], &pair[1]))
                .collect();
            levels += 1;
        }
        assert_eq!(levels, 6);
        assert_eq!(chunk_hash(&chunk).map(|h| h.to_bytes()), Some(level[0]));
    }

    #[test]
    fn chunk_layout() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(4096), 1);
        assert_eq!(chunk_count(4097), 2);
        assert_eq!(chunk_count(u64::MAX), u64::MAX / 4096 + 1);
        assert_eq!(chunk_len(0, 0), None);
        assert_eq!(chunk_len(4097, 0), Some(4096));
        assert_eq!(chunk_len(4097, 1), Some(1));
        assert_eq!(chunk_len(4097, 2), None);
        assert_eq!(chunk_len(u64::MAX, u64::MAX), None);
        assert_eq!(chunk_len(u64::MAX, u64::MAX / 4096), Some(4095));
    }

    #[test]
    fn object_id_binds_the_length() {
        let h = chunk_hash(b"abc").expect("valid chunk");
        assert_eq!(object_id(&[h], 0), None);
        assert_eq!(object_id(&[h], 4097), None);
        assert_ne!(object_id(&[h], 3), object_id(&[h], 4));
        assert_ne!(object_id(&[], 0), object_id(&[h], 3));
    }
}
