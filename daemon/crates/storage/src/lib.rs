//! MHR-Store protocol logic, without I/O: chunking, the Merkle commitment that names an object,
//! verified reads, the sound storage proof, Reed-Solomon erasure coding with per-shard roots,
//! and the challenge-failure rule.
//!
//! Everything streams: objects of many gigabytes are built, coded and decoded in memory bounded
//! by one chunk or one stripe plus O(log n) hashes. The exact constructions are specified in the
//! crate's `README.md`.
//!
//! - Writing: [`ObjectBuilder`] emits [`Chunk`]s to persist and returns the [`ObjectId`].
//! - Reading: [`verify_chunk`] with a [`MerklePath`] (range reads) or [`VerifiedChunkHashes`]
//!   (whole-object streams).
//! - Auditing: [`Challenge`] → [`prove`] → [`StorageProof`] → [`verify_proof`].
//! - Redundancy: [`ErasureEncoder`] → [`ErasureManifest`] → [`ErasureDecoder`] /
//!   [`ShardRebuilder`].
//! - Policy: [`FailureTracker`] and [`Priority`].
//! - Between nodes: [`remote`], the signed control messages a consumer and a provider of
//!   remote storage exchange.

mod builder;
mod commitment;
mod erasure;
mod id;
mod merkle;
mod proof;
mod reading;
pub mod remote;
mod tracker;
mod wire;

pub use builder::{BuiltObject, Chunk, ObjectBuilder};
pub use commitment::{
    CHUNK_SIZE, SEGMENT_SIZE, SEGMENTS_PER_CHUNK, chunk_count, chunk_hash, chunk_len, object_id,
};
pub use erasure::{
    DEFAULT_PIECE_SIZE, ErasureDecoder, ErasureEncoder, ErasureError, ErasureManifest,
    ErasureParams, MAX_PIECE_SIZE, MAX_SHARDS, ShardChunk, ShardInfo, ShardRebuilder, Stripe,
};
pub use id::{ChunkHash, ManifestId, ObjectId, ParseIdError};
pub use proof::{Challenge, ProofError, Selection, StorageProof, prove, verify_proof};
pub use reading::{
    ChunkPathBuilder, MerklePath, VerifiedChunkHashes, VerifyError, chunk_path, chunk_range,
    verify_chunk,
};
pub use tracker::{ChallengeOutcome, FAILURES_BEFORE_LOST, FailureTracker, Health, Priority};
pub use wire::DecodeError;
