//! Sound proof of storage: the nonce picks one 64-byte segment of the object; the provider
//! reveals it with its path inside the chunk and the chunk's path to the root, which anyone
//! holding only the object id and length can check.

use rand::{CryptoRng, RngCore};

use crate::commitment::{
    CHUNK_SIZE, SEGMENT_SIZE, SEGMENTS_PER_CHUNK, TreeKind, chunk_count, chunk_len, context,
    object_root, segment_leaf, segment_leaves,
};
use crate::id::ObjectId;
use crate::merkle::{self, FoldError};
use crate::reading::MerklePath;
use crate::wire::{DecodeError, Reader};

/// Depth of the segment tree of a full chunk (64 segments).
const SEGMENT_PATH_MAX: u8 = 6;

/// Why a storage proof cannot be built or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The empty object has no segment to challenge.
    #[error("the empty object cannot be challenged")]
    EmptyObject,
    /// The challenge names another object than the one being verified.
    #[error("challenge is for object {challenged}, verifying object {expected}")]
    WrongObject {
        /// Object being verified.
        expected: ObjectId,
        /// Object named in the challenge.
        challenged: ObjectId,
    },
    /// The proof answers a different segment than the one the nonce selects.
    #[error(
        "proof is for chunk {got_chunk} segment {got_segment}, the nonce selects chunk {chunk} segment {segment}"
    )]
    WrongSegment {
        /// Chunk the nonce selects.
        chunk: u64,
        /// Segment the nonce selects.
        segment: u8,
        /// Chunk in the proof.
        got_chunk: u64,
        /// Segment in the proof.
        got_segment: u8,
    },
    /// The revealed segment does not have the length its position implies.
    #[error("segment has {got} bytes, expected {expected}")]
    SegmentLength {
        /// Length implied by the object length and the position.
        expected: usize,
        /// Length in the proof.
        got: usize,
    },
    /// The path inside the chunk does not have the depth of the segment.
    #[error("segment path has {got} siblings, expected {expected}")]
    SegmentPathLength {
        /// Depth of the segment in its chunk.
        expected: usize,
        /// Siblings in the proof.
        got: usize,
    },
    /// The path to the root does not have the depth of the chunk.
    #[error("chunk path has {got} siblings, expected {expected}")]
    ChunkPathLength {
        /// Depth of the chunk in the object.
        expected: usize,
        /// Siblings in the proof.
        got: usize,
    },
    /// The proof does not hash to the object id: wrong bytes or wrong siblings.
    #[error("proof does not hash to object {expected}")]
    RootMismatch {
        /// The object id.
        expected: ObjectId,
    },
    /// Proving: the chunk handed in does not have the selected chunk's length.
    #[error("chunk {index} has {got} bytes, expected {expected}")]
    ChunkLength {
        /// Selected chunk.
        index: u64,
        /// Its length in the object.
        expected: usize,
        /// Length handed in.
        got: usize,
    },
    /// Proving: the stored chunk or its path does not lead to the challenged object (local
    /// corruption, or a path for another chunk).
    #[error("stored chunk {index} or its path does not match the challenged object")]
    CorruptChunk {
        /// Selected chunk.
        index: u64,
    },
}

/// A storage challenge: the consumer sends a fresh random nonce for an object it keeps the id
/// and length of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge {
    /// The challenged object (or erasure shard, which is an object of its own).
    pub object: ObjectId,
    /// Fresh randomness; a reused nonce selects the same segment again.
    pub nonce: [u8; 32],
}

/// The segment a challenge selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Chunk index in the object.
    pub chunk: u64,
    /// Segment index in the chunk, `0..64`.
    pub segment: u8,
}

impl Challenge {
    /// Encoded size: `object[32] ‖ nonce[32]`.
    pub const ENCODED_LEN: usize = 64;

    /// A challenge with a nonce drawn from `rng`.
    pub fn random<R: RngCore + CryptoRng>(object: ObjectId, rng: &mut R) -> Self {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        Self { object, nonce }
    }

    /// The segment this challenge selects in an object of `length` bytes: uniform over the
    /// object's `ceil(length / 64)` segments.
    pub fn select(&self, length: u64) -> Result<Selection, ProofError> {
        let segments = length.div_ceil(SEGMENT_SIZE as u64);
        if segments == 0 {
            return Err(ProofError::EmptyObject);
        }
        let mut hasher = blake3::Hasher::new_keyed(&self.nonce);
        hasher.update(context::CHALLENGE.as_bytes());
        hasher.update(self.object.as_bytes());
        hasher.update(&length.to_le_bytes());
        let mut draw = [0u8; 8];
        hasher.finalize_xof().fill(&mut draw);
        // Multiply-shift maps a uniform u64 onto 0..segments with bias below segments / 2^64.
        let global = ((u128::from(u64::from_le_bytes(draw)) * u128::from(segments)) >> 64) as u64;
        Ok(Selection {
            chunk: global / SEGMENTS_PER_CHUNK as u64,
            segment: (global % SEGMENTS_PER_CHUNK as u64) as u8,
        })
    }

    /// `object[32] ‖ nonce[32]`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..32].copy_from_slice(self.object.as_bytes());
        out[32..].copy_from_slice(&self.nonce);
        out
    }

    /// Parses exactly [`Self::ENCODED_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let object = ObjectId::from_bytes(reader.array("challenge object")?);
        let nonce = reader.array("challenge nonce")?;
        reader.finish("challenge")?;
        Ok(Self { object, nonce })
    }
}

/// A provider's answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageProof {
    chunk: u64,
    segment_index: u8,
    segment: Vec<u8>,
    segment_path: MerklePath,
    chunk_path: MerklePath,
}

impl StorageProof {
    /// The chunk the proof answers for.
    pub fn chunk_index(&self) -> u64 {
        self.chunk
    }

    /// The segment index inside the chunk.
    pub fn segment_index(&self) -> u8 {
        self.segment_index
    }

    /// The revealed segment bytes (1 to 64).
    pub fn segment(&self) -> &[u8] {
        &self.segment
    }

    /// Bytes of [`Self::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        8 + 1
            + 1
            + self.segment.len()
            + self.segment_path.encoded_len()
            + self.chunk_path.encoded_len()
    }

    /// `chunk_index u64 ‖ segment_index u8 ‖ segment_len u8 ‖ segment ‖ segment_path ‖
    /// chunk_path`, each path as `count u8 ‖ count × 32 bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.push(self.segment_index);
        // Construction and decoding keep the segment at 1..=64 bytes.
        out.push(self.segment.len() as u8);
        out.extend_from_slice(&self.segment);
        self.segment_path.encode_into(&mut out);
        self.chunk_path.encode_into(&mut out);
        out
    }

    /// Parses one encoded proof; checks the format only, [`verify_proof`] checks the content.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let chunk = reader.u64("chunk index")?;
        let segment_index = reader.u8_in("segment index", 0, SEGMENTS_PER_CHUNK as u8 - 1)?;
        let segment_len = reader.u8_in("segment length", 1, SEGMENT_SIZE as u8)?;
        let segment = reader.bytes("segment", segment_len.into())?.to_vec();
        let segment_path = MerklePath::read(&mut reader, "segment path length", SEGMENT_PATH_MAX)?;
        let chunk_path =
            MerklePath::read(&mut reader, "chunk path length", MerklePath::MAX_LEN as u8)?;
        reader.finish("storage proof")?;
        Ok(Self {
            chunk,
            segment_index,
            segment,
            segment_path,
            chunk_path,
        })
    }
}

/// Provider side: answers `challenge` for an object of `length` bytes from the selected chunk's
/// bytes and that chunk's path (see [`Challenge::select`], [`chunk_path`](crate::chunk_path) and
/// [`ChunkPathBuilder`](crate::ChunkPathBuilder)). The proof is verified before it is returned,
/// so a provider never sends one built from corrupt data.
pub fn prove(
    challenge: &Challenge,
    length: u64,
    chunk: &[u8],
    chunk_path: &MerklePath,
) -> Result<StorageProof, ProofError> {
    let selection = challenge.select(length)?;
    let expected = chunk_len(length, selection.chunk).unwrap_or(0);
    let wrong_length = ProofError::ChunkLength {
        index: selection.chunk,
        expected,
        got: chunk.len(),
    };
    if chunk.len() != expected {
        return Err(wrong_length);
    }
    let (leaves, used) = segment_leaves(chunk);
    let leaves = leaves.get(..used).ok_or(wrong_length.clone())?;
    let segment_path = merkle::path(TreeKind::Chunk, leaves, selection.segment.into())
        .map(MerklePath::from_nodes)
        .ok_or(wrong_length.clone())?;
    let start = usize::from(selection.segment) * SEGMENT_SIZE;
    let segment = chunk
        .get(start..chunk.len().min(start + SEGMENT_SIZE))
        .ok_or(wrong_length)?
        .to_vec();
    let proof = StorageProof {
        chunk: selection.chunk,
        segment_index: selection.segment,
        segment,
        segment_path,
        chunk_path: chunk_path.clone(),
    };
    match verify_proof(&challenge.object, length, challenge, &proof) {
        Ok(()) => Ok(proof),
        Err(ProofError::RootMismatch { .. }) => Err(ProofError::CorruptChunk {
            index: selection.chunk,
        }),
        Err(other) => Err(other),
    }
}

/// Consumer side: checks `proof` against `challenge` using only the object id and length.
pub fn verify_proof(
    root: &ObjectId,
    length: u64,
    challenge: &Challenge,
    proof: &StorageProof,
) -> Result<(), ProofError> {
    if challenge.object != *root {
        return Err(ProofError::WrongObject {
            expected: *root,
            challenged: challenge.object,
        });
    }
    let selection = challenge.select(length)?;
    if selection.chunk != proof.chunk || selection.segment != proof.segment_index {
        return Err(ProofError::WrongSegment {
            chunk: selection.chunk,
            segment: selection.segment,
            got_chunk: proof.chunk,
            got_segment: proof.segment_index,
        });
    }
    // The selection lies inside the object, so its chunk exists and holds the segment.
    let in_chunk = chunk_len(length, selection.chunk).unwrap_or(CHUNK_SIZE);
    let start = usize::from(selection.segment) * SEGMENT_SIZE;
    let expected = in_chunk.saturating_sub(start).min(SEGMENT_SIZE);
    if proof.segment.len() != expected {
        return Err(ProofError::SegmentLength {
            expected,
            got: proof.segment.len(),
        });
    }
    let segments = in_chunk.div_ceil(SEGMENT_SIZE) as u64;
    let chunk_root = merkle::fold(
        TreeKind::Chunk,
        segment_leaf(&proof.segment),
        selection.segment.into(),
        segments,
        proof.segment_path.siblings(),
    )
    .map_err(|e| match e {
        FoldError::PathLength { expected, got } => ProofError::SegmentPathLength { expected, got },
        FoldError::IndexOutOfRange => ProofError::RootMismatch { expected: *root },
    })?;
    let top = merkle::fold(
        TreeKind::Object,
        chunk_root,
        selection.chunk,
        chunk_count(length),
        proof.chunk_path.siblings(),
    )
    .map_err(|e| match e {
        FoldError::PathLength { expected, got } => ProofError::ChunkPathLength { expected, got },
        FoldError::IndexOutOfRange => ProofError::RootMismatch { expected: *root },
    })?;
    if object_root(&top, length) != *root {
        return Err(ProofError::RootMismatch { expected: *root });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Chunk, ObjectBuilder};
    use crate::id::ChunkHash;
    use crate::reading::chunk_path;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::convert::Infallible;

    struct Stored {
        id: ObjectId,
        length: u64,
        chunks: Vec<Vec<u8>>,
        hashes: Vec<ChunkHash>,
    }

    fn store(data: &[u8]) -> Stored {
        let mut chunks = Vec::new();
        let mut hashes = Vec::new();
        let mut keep = |c: Chunk<'_>| {
            chunks.push(c.bytes.to_vec());
            hashes.push(c.hash);
            Ok::<_, Infallible>(())
        };
        let mut b = ObjectBuilder::new();
        b.update(data, &mut keep).expect("infallible");
        let built = b.finish(&mut keep).expect("infallible");
        Stored {
            id: built.id,
            length: built.length,
            chunks,
            hashes,
        }
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13) ^ seed ^ (i >> 9) as u8)
            .collect()
    }

    fn answer(s: &Stored, challenge: &Challenge) -> StorageProof {
        let sel = challenge.select(s.length).expect("non-empty");
        let path = chunk_path(&s.hashes, sel.chunk).expect("in range");
        prove(challenge, s.length, &s.chunks[sel.chunk as usize], &path).expect("honest provider")
    }

    #[test]
    fn honest_proofs_verify_for_many_sizes_and_nonces() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in [
            1usize,
            63,
            64,
            65,
            4095,
            4096,
            4097,
            3 * 4096 + 1,
            10 * 4096 + 700,
        ] {
            let s = store(&data(len, len as u8));
            for _ in 0..40 {
                let c = Challenge::random(s.id, &mut rng);
                let proof = answer(&s, &c);
                assert_eq!(
                    verify_proof(&s.id, s.length, &c, &proof),
                    Ok(()),
                    "len {len}"
                );
                let decoded = StorageProof::decode(&proof.encode()).expect("round trip");
                assert_eq!(decoded, proof);
            }
        }
    }

    #[test]
    fn selection_covers_every_segment_including_the_short_tail() {
        let length = 2 * 4096 + 100; // 128 full segments and 2 in the last chunk
        let object = ObjectId::from_bytes([9; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0u32..5000 {
            let mut nonce = [0u8; 32];
            nonce[..4].copy_from_slice(&n.to_le_bytes());
            let sel = Challenge { object, nonce }
                .select(length)
                .expect("non-empty");
            assert!(sel.segment < 64);
            assert!(sel.chunk < 3);
            if sel.chunk == 2 {
                assert!(sel.segment < 2);
            }
            seen.insert((sel.chunk, sel.segment));
        }
        assert_eq!(seen.len(), 130);
        assert_eq!(
            Challenge {
                object,
                nonce: [0; 32]
            }
            .select(0),
            Err(ProofError::EmptyObject)
        );
    }

    #[test]
    fn selection_depends_on_nonce_object_and_length() {
        let a = Challenge {
            object: ObjectId::from_bytes([1; 32]),
            nonce: [2; 32],
        };
        let b = Challenge {
            object: ObjectId::from_bytes([3; 32]),
            nonce: [2; 32],
        };
        let c = Challenge {
            object: ObjectId::from_bytes([1; 32]),
            nonce: [4; 32],
        };
        let len = 1 << 30;
        let sa = a.select(len).expect("non-empty");
        assert_eq!(a.select(len), Ok(sa));
        assert!(b.select(len) != Ok(sa) || c.select(len) != Ok(sa));
        assert_ne!(a.select(len), a.select(len + 64 * 1000));
    }

    fn nonce_selecting_other_segment(s: &Stored, c: &Challenge) -> Challenge {
        let sel = c.select(s.length).expect("non-empty");
        (0u8..=255)
            .map(|n| Challenge {
                object: s.id,
                nonce: [n; 32],
            })
            .find(|other| other.select(s.length).expect("non-empty") != sel)
            .expect("some nonce selects another segment")
    }

    #[test]
    fn forged_proofs_are_rejected() {
        let s = store(&data(300 * 1024 + 5, 7));
        let c = Challenge {
            object: s.id,
            nonce: [42; 32],
        };
        let honest = answer(&s, &c);
        let check = |p: &StorageProof| verify_proof(&s.id, s.length, &c, p);

        let mut wrong_bytes = honest.clone();
        wrong_bytes.segment[0] ^= 1;
        assert_eq!(
            check(&wrong_bytes),
            Err(ProofError::RootMismatch { expected: s.id })
        );

        let mut wrong_segment_path = honest.clone();
        let mut sib = wrong_segment_path.segment_path.siblings().to_vec();
        sib[2][5] ^= 1;
        wrong_segment_path.segment_path = MerklePath::from_nodes(sib);
        assert_eq!(
            check(&wrong_segment_path),
            Err(ProofError::RootMismatch { expected: s.id })
        );

        let mut wrong_chunk_path = honest.clone();
        let mut sib = wrong_chunk_path.chunk_path.siblings().to_vec();
        let last = sib.len() - 1;
        sib[last][0] ^= 1;
        wrong_chunk_path.chunk_path = MerklePath::from_nodes(sib);
        assert_eq!(
            check(&wrong_chunk_path),
            Err(ProofError::RootMismatch { expected: s.id })
        );

        let mut short_path = honest.clone();
        let mut sib = short_path.chunk_path.siblings().to_vec();
        sib.pop();
        short_path.chunk_path = MerklePath::from_nodes(sib);
        assert!(matches!(
            check(&short_path),
            Err(ProofError::ChunkPathLength { .. })
        ));

        let mut wrong_index = honest.clone();
        wrong_index.chunk ^= 1;
        assert!(matches!(
            check(&wrong_index),
            Err(ProofError::WrongSegment { .. })
        ));
        let mut wrong_seg_index = honest.clone();
        wrong_seg_index.segment_index ^= 1;
        assert!(matches!(
            check(&wrong_seg_index),
            Err(ProofError::WrongSegment { .. })
        ));

        let other = nonce_selecting_other_segment(&s, &c);
        let other_proof = answer(&s, &other);
        assert!(matches!(
            check(&other_proof),
            Err(ProofError::WrongSegment { .. })
        ));
        // Relabelling another segment's proof with the expected indices fails too.
        let mut relabelled = other_proof.clone();
        relabelled.chunk = honest.chunk;
        relabelled.segment_index = honest.segment_index;
        assert!(check(&relabelled).is_err());

        let mut truncated_segment = honest.clone();
        truncated_segment.segment.pop();
        assert!(matches!(
            check(&truncated_segment),
            Err(ProofError::SegmentLength { .. })
        ));

        // Right proof, wrong claimed length or object.
        assert!(verify_proof(&s.id, s.length + 1, &c, &honest).is_err());
        let other_object = ObjectId::from_bytes([0; 32]);
        assert!(matches!(
            verify_proof(&other_object, s.length, &c, &honest),
            Err(ProofError::WrongObject { .. })
        ));
    }

    #[test]
    fn a_provider_without_the_data_cannot_answer() {
        // Keeping only the chunk hashes is not enough: the segment bytes are needed.
        let s = store(&data(64 * 1024, 3));
        let c = Challenge {
            object: s.id,
            nonce: [5; 32],
        };
        let sel = c.select(s.length).expect("non-empty");
        let path = chunk_path(&s.hashes, sel.chunk).expect("in range");
        let wrong_chunk = vec![0u8; s.chunks[sel.chunk as usize].len()];
        assert_eq!(
            prove(&c, s.length, &wrong_chunk, &path),
            Err(ProofError::CorruptChunk { index: sel.chunk })
        );
        // Another chunk's bytes with their own (valid) path do not answer either.
        let other = (sel.chunk + 1) % 16;
        let other_path = chunk_path(&s.hashes, other).expect("in range");
        assert_eq!(
            prove(&c, s.length, &s.chunks[other as usize], &other_path),
            Err(ProofError::CorruptChunk { index: sel.chunk })
        );
        assert!(matches!(
            prove(&c, s.length, &s.chunks[sel.chunk as usize][1..], &path),
            Err(ProofError::ChunkLength { .. })
        ));
        let short = MerklePath::from_nodes(path.siblings()[1..].to_vec());
        assert!(matches!(
            prove(&c, s.length, &s.chunks[sel.chunk as usize], &short),
            Err(ProofError::ChunkPathLength { .. })
        ));
    }

    #[test]
    fn proof_size_for_one_megabyte_is_about_half_a_kilobyte() {
        let s = store(&data(1 << 20, 1));
        let c = Challenge {
            object: s.id,
            nonce: [8; 32],
        };
        let proof = answer(&s, &c);
        // 8 + 1 + 1 + 64 + (1 + 6·32) + (1 + 8·32)
        assert_eq!(proof.encode().len(), 524);
        assert_eq!(proof.encoded_len(), 524);
    }

    #[test]
    fn malformed_encodings_are_rejected() {
        let s = store(&data(5000, 2));
        let c = Challenge {
            object: s.id,
            nonce: [1; 32],
        };
        let bytes = answer(&s, &c).encode();
        for cut in 0..bytes.len() {
            assert!(StorageProof::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            StorageProof::decode(&trailing),
            Err(DecodeError::TrailingBytes { .. })
        ));
        let mut bad_segment_index = bytes.clone();
        bad_segment_index[8] = 64;
        assert!(matches!(
            StorageProof::decode(&bad_segment_index),
            Err(DecodeError::OutOfRange { .. })
        ));
        let mut zero_segment = bytes.clone();
        zero_segment[9] = 0;
        assert!(matches!(
            StorageProof::decode(&zero_segment),
            Err(DecodeError::OutOfRange { .. })
        ));
        let mut long_segment = bytes.clone();
        long_segment[9] = 65;
        assert!(matches!(
            StorageProof::decode(&long_segment),
            Err(DecodeError::OutOfRange { .. })
        ));

        let encoded = c.encode();
        assert_eq!(Challenge::decode(&encoded), Ok(c));
        assert!(Challenge::decode(&encoded[..63]).is_err());
        assert!(Challenge::decode(&[0u8; 65]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2200)) {
            if let Ok(p) = StorageProof::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes.clone());
                // A random proof never verifies against an unrelated object.
                let c = Challenge { object: ObjectId::from_bytes([1; 32]), nonce: [2; 32] };
                prop_assert!(verify_proof(&c.object, 12345, &c, &p).is_err());
            }
            let _ = Challenge::decode(&bytes);
        }

        #[test]
        fn structured_random_proofs_never_panic(
            chunk in any::<u64>(), seg in 0u8..64, seg_len in 1u8..=64,
            seg_path in 0u8..=6, chunk_path in 0u8..=64, length in any::<u64>(),
        ) {
            let mut bytes = chunk.to_le_bytes().to_vec();
            bytes.push(seg);
            bytes.push(seg_len);
            bytes.extend(std::iter::repeat_n(7u8, seg_len.into()));
            bytes.push(seg_path);
            bytes.extend(std::iter::repeat_n(1u8, 32 * usize::from(seg_path)));
            bytes.push(chunk_path);
            bytes.extend(std::iter::repeat_n(2u8, 32 * usize::from(chunk_path)));
            let p = StorageProof::decode(&bytes).expect("well-formed");
            let c = Challenge { object: ObjectId::from_bytes([1; 32]), nonce: [2; 32] };
            prop_assert!(verify_proof(&c.object, length, &c, &p).is_err());
        }
    }
}
