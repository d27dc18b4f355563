//! The one map from domain errors to gRPC status codes. Every service returns its domain's
//! error type and lets `?` convert it here, so codes stay consistent across services and a
//! client can act on the code without parsing messages.

use tonic::Status;

use crate::{storage::StorageError, store::StoreError};

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            // A record that does not decode is damaged data, not a server bug.
            StoreError::Corrupt { .. } => Status::data_loss(error.to_string()),
            StoreError::Locked { .. } | StoreError::Db(_) => Status::internal(error.to_string()),
        }
    }
}

impl From<StorageError> for Status {
    fn from(error: StorageError) -> Status {
        let message = error.to_string();
        match error {
            StorageError::NotFound { .. } => Status::not_found(message),
            StorageError::ObjectTooLarge { .. } | StorageError::OutOfSpace { .. } => {
                Status::resource_exhausted(message)
            }
            StorageError::SizeMismatch { .. }
            | StorageError::NameTooLong { .. }
            | StorageError::ChunkIndexOutOfRange { .. }
            | StorageError::ChunkLength { .. }
            | StorageError::ContentMismatch { .. }
            | StorageError::InvalidPageToken { .. } => Status::invalid_argument(message),
            // gRPC's code for reading past the end of a file.
            StorageError::RangeOutOfBounds { .. } => Status::out_of_range(message),
            StorageError::Corrupt { .. } => Status::data_loss(message),
            StorageError::IncompleteChunkSet { .. } | StorageError::EmptyObject { .. } => {
                Status::failed_precondition(message)
            }
            StorageError::Store(e) => Status::from(e),
        }
    }
}
