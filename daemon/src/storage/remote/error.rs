//! Why a remote-storage operation failed.

use mehr_storage::{ErasureError, ObjectId};
use mehr_transport::hashes::IdentityHash;

use super::wire::ErrorCode;
use crate::{storage::StorageError, store::StoreError, transport::TransportError};

/// Why a remote-storage operation failed. `api/status.rs` maps each case to a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No providers were given, and the marketplace found none.
    #[error(
        "providers: none given and none found by the marketplace; give the node ids of the \
         providers to store on (at least {needed}, one per shard; more are kept as spares for \
         repair)"
    )]
    NoProviders {
        /// Shards to place.
        needed: usize,
    },
    /// Fewer distinct providers than shards.
    #[error(
        "providers: {needed} distinct providers are needed (one per shard), {got} given or found"
    )]
    TooFewProviders {
        /// Shards to place.
        needed: usize,
        /// Distinct providers given.
        got: usize,
    },
    /// A provider id is this node.
    #[error("providers: {0} is this node; shards go to other nodes")]
    SelfProvider(String),
    /// A provider id does not have 16 bytes.
    #[error("providers: a node id has 16 bytes, got {0}")]
    BadProviderId(usize),
    /// The erasure parameters are out of range.
    #[error("erasure code: {0}")]
    Code(#[from] ErasureError),
    /// The object is neither stored here nor placed remotely.
    #[error("object {0} is not placed on providers")]
    NotPlaced(ObjectId),
    /// The object is already placed on providers.
    #[error("object {0} is already placed on providers (delete it first to place it again)")]
    AlreadyPlaced(ObjectId),
    /// A provider refused or failed a request.
    #[error("provider {provider}: {} ({reason})", code.describe())]
    Provider {
        /// The provider.
        provider: IdentityHash,
        /// Its answer.
        code: ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// A provider could not be reached or did not answer in time.
    #[error("provider {provider}: {detail}")]
    Unreachable {
        /// The provider.
        provider: IdentityHash,
        /// What happened.
        detail: String,
    },
    /// A provider did not answer within the wait.
    #[error("provider {provider}: no answer within {:.1} s", waited.as_secs_f64())]
    NoAnswer {
        /// The provider.
        provider: IdentityHash,
        /// How long the node waited.
        waited: std::time::Duration,
    },
    /// A provider sent data that does not match the shard root.
    #[error("provider {provider} sent bad data for shard {shard}: {detail}")]
    BadData {
        /// The provider.
        provider: IdentityHash,
        /// The shard index.
        shard: u8,
        /// What was wrong.
        detail: String,
    },
    /// Fewer than `k` shards could be read.
    #[error("object {id}: only {available} of the {needed} shards needed could be read ({detail})")]
    NotEnoughShards {
        /// The object.
        id: ObjectId,
        /// Shards that could be read.
        available: usize,
        /// `k`.
        needed: usize,
        /// What went wrong with the others.
        detail: String,
    },
    /// No spare provider is left to repair a shard onto.
    #[error("object {id}: shard {shard} is lost and no spare provider is left to repair it onto")]
    NoSpare {
        /// The object.
        id: ObjectId,
        /// The lost shard.
        shard: u8,
    },
    /// The stored record of an object is damaged.
    #[error("object {id}: its remote record is damaged: {detail}")]
    Corrupt {
        /// The object.
        id: ObjectId,
        /// What was wrong.
        detail: String,
    },
    /// The local object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport is gone (the node is stopping).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The reader of a Get went away.
    #[error("the reader stopped")]
    Cancelled,
}
