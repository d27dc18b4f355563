//! The one map from domain errors to gRPC status codes. Every service returns its domain's
//! error type and lets `?` convert it here, so codes stay consistent across services and a
//! client can act on the code without parsing messages.

use tonic::Status;

use crate::store::StoreError;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            // A record that does not decode is damaged data, not a server bug.
            StoreError::Corrupt { .. } => Status::data_loss(error.to_string()),
            StoreError::Locked { .. } | StoreError::Db(_) => Status::internal(error.to_string()),
        }
    }
}
