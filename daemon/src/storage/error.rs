//! Why a storage operation failed.

use mehr_storage::ObjectId;

use super::records::MAX_NAME_BYTES;
use crate::store::StoreError;

/// Why a storage operation failed. `api/status.rs` maps each case to a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object with this id is stored.
    #[error("object {id} is not stored")]
    NotFound {
        /// The id asked for.
        id: ObjectId,
    },
    /// The object is larger than `storage.max_object_size`.
    #[error("the object has {size} bytes or more, over storage.max_object_size ({limit} bytes)")]
    ObjectTooLarge {
        /// Bytes the object has at least.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// Storing the object would go over `storage.available_bytes`.
    #[error(
        "{needed} more bytes would exceed storage.available_bytes ({available} bytes: {used} \
         stored, {reserved} held by uploads in progress)"
    )]
    OutOfSpace {
        /// Bytes asked for.
        needed: u64,
        /// Bytes of committed objects.
        used: u64,
        /// Bytes held by uploads in progress (this one included).
        reserved: u64,
        /// The configured limit.
        available: u64,
    },
    /// The upload did not hold the announced number of bytes.
    #[error("expected_size is {expected} bytes, but the upload {}", if *.ended {
        format!("ended after {received}")
    } else {
        format!("sent {received} or more")
    })]
    SizeMismatch {
        /// The announced size.
        expected: u64,
        /// Bytes received when the mismatch was seen.
        received: u64,
        /// True when the upload ended short; false when it sent too much.
        ended: bool,
    },
    /// The object name is too long.
    #[error("name has {len} bytes, at most {MAX_NAME_BYTES} are allowed")]
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A read asked for bytes past the end of the object.
    #[error("range {offset}+{length} is outside object {id} of {object_length} bytes")]
    RangeOutOfBounds {
        /// The object.
        id: ObjectId,
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        length: u64,
        /// The object's size.
        object_length: u64,
    },
    /// Stored data does not match the object id: the disk or the database is damaged.
    #[error("object {id} is damaged: {detail}")]
    Corrupt {
        /// The object.
        id: ObjectId,
        /// What did not match.
        detail: String,
    },
    /// A chunk given to a chunk-set upload has an index past the object's end.
    #[error("chunk {index} does not exist: object {id} has {chunk_count} chunks")]
    ChunkIndexOutOfRange {
        /// The object being uploaded.
        id: ObjectId,
        /// The index given.
        index: u64,
        /// The object's number of chunks.
        chunk_count: u64,
    },
    /// A chunk given to a chunk-set upload has the wrong length for its position.
    #[error("chunk {index} has {got} bytes, expected {expected}")]
    ChunkLength {
        /// The chunk's index.
        index: u64,
        /// Its length for the object's size.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A chunk-set upload was finished before every chunk arrived.
    #[error("{missing} of the {chunk_count} chunks of object {id} have not been received")]
    IncompleteChunkSet {
        /// The object being uploaded.
        id: ObjectId,
        /// Chunks still missing.
        missing: u64,
        /// The object's number of chunks.
        chunk_count: u64,
    },
    /// The chunks of a chunk-set upload do not hash to the announced object id.
    #[error("the received chunks do not hash to object {expected}")]
    ContentMismatch {
        /// The announced id.
        expected: ObjectId,
    },
    /// The empty object has no bytes to prove.
    #[error("object {id} is empty and cannot be challenged")]
    EmptyObject {
        /// The object.
        id: ObjectId,
    },
    /// A List page token was not issued by this node for this order.
    #[error("page_token is invalid: {reason}")]
    InvalidPageToken {
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
