//! The one map from domain errors to gRPC status codes. Every service returns its domain's
//! error type and lets `?` convert it here, so codes stay consistent across services and a
//! client can act on the code without parsing messages.

use tonic::Status;

use crate::{store::StoreError, transport::TransportError};

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            // A record that does not decode is damaged data, not a server bug.
            StoreError::Corrupt { .. } => Status::data_loss(error.to_string()),
            StoreError::Locked { .. } | StoreError::Db(_) => Status::internal(error.to_string()),
        }
    }
}

impl From<TransportError> for Status {
    fn from(error: TransportError) -> Status {
        let message = error.to_string();
        match error {
            TransportError::Interface(crate::transport::interfaces::InterfaceError::Spec(_))
            | TransportError::InvalidName(_) => Status::invalid_argument(message),
            TransportError::Interface(_) => Status::failed_precondition(message),
            TransportError::UnknownInterface(_) | TransportError::UnknownLink(_) => {
                Status::not_found(message)
            }
            TransportError::NoPath(_) => Status::not_found(message),
            TransportError::TooLarge { .. } => Status::invalid_argument(message),
            TransportError::LinkFailed { .. } | TransportError::Refused(_) => {
                Status::unavailable(message)
            }
            TransportError::Timeout(_) => Status::deadline_exceeded(message),
            TransportError::Router(mehr_transport::router::RouterError::UnknownDestination(_)) => {
                Status::not_found(message)
            }
            TransportError::Router(mehr_transport::router::RouterError::PayloadTooLarge {
                ..
            }) => Status::invalid_argument(message),
            TransportError::Router(mehr_transport::router::RouterError::NoInterfaces) => {
                Status::failed_precondition(message)
            }
            TransportError::Router(_) => Status::internal(message),
            TransportError::Stopped => Status::unavailable(message),
        }
    }
}
