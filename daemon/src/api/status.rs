//! The one map from domain errors to gRPC status codes. Every service returns its domain's
//! error type and lets `?` convert it here, so codes stay consistent across services and a
//! client can act on the code without parsing messages.

use tonic::Status;

use crate::{
    compute::{
        DeployError, InvokeFailure, ListError, RegistrationError, RemoveError, SessionViolation,
    },
    ledger::LedgerError,
    market::MarketError,
    storage::{StorageError, remote::RemoteError},
    store::StoreError,
    transport::TransportError,
};

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

impl From<InvokeFailure> for Status {
    fn from(failure: InvokeFailure) -> Status {
        use mehr_compute::InvokeError as Sandbox;
        let message = failure.to_string();
        match &failure {
            InvokeFailure::EmptyFunctionId | InvokeFailure::InputTooLarge { .. } => {
                Status::invalid_argument(message)
            }
            InvokeFailure::UnknownFunction { .. } => Status::not_found(message),
            InvokeFailure::Busy { .. }
            | InvokeFailure::OutputTooLarge { .. }
            | InvokeFailure::CallerTooSlow { .. } => Status::resource_exhausted(message),
            InvokeFailure::DeadlineExceeded { .. } => Status::deadline_exceeded(message),
            InvokeFailure::ProviderDisconnected { .. } | InvokeFailure::NoLongerServed { .. } => {
                Status::unavailable(message)
            }
            // The function ran and failed: the same code for a handler's error and a trap.
            InvokeFailure::HandlerFailed { .. } => Status::aborted(message),
            InvokeFailure::Internal { .. } => Status::internal(message),
            InvokeFailure::Wasm { source, .. } => match source {
                // The module was removed between resolution and the call.
                Sandbox::UnknownModule { .. } | Sandbox::UnknownFunction { .. } => {
                    Status::not_found(message)
                }
                Sandbox::LimitAboveCeiling { .. } | Sandbox::InputTooLarge { .. } => {
                    Status::invalid_argument(message)
                }
                Sandbox::Busy { .. }
                | Sandbox::OutOfFuel { .. }
                | Sandbox::MemoryLimit { .. }
                | Sandbox::OutputTooLarge { .. } => Status::resource_exhausted(message),
                Sandbox::Deadline { .. } => Status::deadline_exceeded(message),
                Sandbox::Trap { .. }
                | Sandbox::BadInputPointer { .. }
                | Sandbox::BadOutputPointer { .. } => Status::aborted(message),
                Sandbox::Instantiate { .. } => Status::internal(message),
            },
        }
    }
}

impl From<DeployError> for Status {
    fn from(error: DeployError) -> Status {
        match error {
            DeployError::InvalidName { .. } | DeployError::Module(_) => {
                Status::invalid_argument(error.to_string())
            }
            DeployError::NameTaken { .. } | DeployError::AlreadyDeployedAs { .. } => {
                Status::already_exists(error.to_string())
            }
            DeployError::Store(e) => e.into(),
            DeployError::Task(_) => Status::internal(error.to_string()),
        }
    }
}

impl From<RemoveError> for Status {
    fn from(error: RemoveError) -> Status {
        match error {
            RemoveError::NotFound { .. } => Status::not_found(error.to_string()),
            RemoveError::Store(e) => e.into(),
            RemoveError::Task(_) => Status::internal(error.to_string()),
        }
    }
}

impl From<ListError> for Status {
    fn from(error: ListError) -> Status {
        match error {
            ListError::BadPageToken => Status::invalid_argument(error.to_string()),
        }
    }
}

impl From<RegistrationError> for Status {
    fn from(error: RegistrationError) -> Status {
        match error {
            RegistrationError::NotRegisterFirst
            | RegistrationError::NoFunctions
            | RegistrationError::TooManyFunctions { .. }
            | RegistrationError::InvalidField { .. } => Status::invalid_argument(error.to_string()),
            RegistrationError::AlreadyServed { .. } => Status::already_exists(error.to_string()),
            RegistrationError::ShuttingDown => Status::unavailable(error.to_string()),
        }
    }
}

impl From<SessionViolation> for Status {
    fn from(violation: SessionViolation) -> Status {
        match violation {
            SessionViolation::RegisteredTwice => Status::failed_precondition(violation.to_string()),
            SessionViolation::Malformed(_) => Status::invalid_argument(violation.to_string()),
        }
    }
}

impl From<RemoteError> for Status {
    fn from(error: RemoteError) -> Status {
        let message = error.to_string();
        match error {
            RemoteError::NoProviders { .. }
            | RemoteError::TooFewProviders { .. }
            | RemoteError::SelfProvider(_)
            | RemoteError::BadProviderId(_)
            | RemoteError::Code(_) => Status::invalid_argument(message),
            RemoteError::NotPlaced(_) => Status::not_found(message),
            RemoteError::AlreadyPlaced(_) => Status::already_exists(message),
            RemoteError::Provider { code, .. } => match code {
                crate::storage::remote::wire::ErrorCode::Refused => {
                    Status::resource_exhausted(message)
                }
                _ => Status::failed_precondition(message),
            },
            RemoteError::Unreachable { .. }
            | RemoteError::NoAnswer { .. }
            | RemoteError::NotEnoughShards { .. } => Status::unavailable(message),
            RemoteError::BadData { .. } | RemoteError::Corrupt { .. } => Status::data_loss(message),
            RemoteError::NoSpare { .. } => Status::failed_precondition(message),
            RemoteError::Storage(e) => Status::from(e),
            RemoteError::Store(e) => Status::from(e),
            RemoteError::Transport(e) => Status::from(e),
            RemoteError::Cancelled => Status::cancelled(message),
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

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Status {
        let message = error.to_string();
        match error {
            LedgerError::UnknownPeer(_)
            | LedgerError::NoChannel(_)
            | LedgerError::UnknownChannel(_) => Status::not_found(message),
            LedgerError::SelfChannel | LedgerError::ZeroAmount(_) | LedgerError::Ticket(_) => {
                Status::invalid_argument(message)
            }
            LedgerError::ChannelExists { .. } => Status::already_exists(message),
            LedgerError::InsufficientFunds { .. }
            | LedgerError::Overdraft { .. }
            | LedgerError::OpenRefused { .. }
            | LedgerError::Channel { .. } => Status::failed_precondition(message),
            LedgerError::Timeout(_) => Status::deadline_exceeded(message),
            LedgerError::Store(e) => e.into(),
            LedgerError::Restore { .. } => Status::data_loss(message),
            LedgerError::Stopped => Status::unavailable(message),
        }
    }
}

impl From<MarketError> for Status {
    fn from(error: MarketError) -> Status {
        use mehr_market::agreement::AgreementError;
        let message = error.to_string();
        match error {
            MarketError::Disabled | MarketError::NotActive { .. } | MarketError::Chain(_) => {
                Status::failed_precondition(message)
            }
            MarketError::InvalidArgument { .. } | MarketError::Tier(_) => {
                Status::invalid_argument(message)
            }
            MarketError::UnknownAgreement
            | MarketError::UnknownPeer { .. }
            | MarketError::NoAdvert { .. }
            | MarketError::NoProviders { .. } => Status::not_found(message),
            MarketError::Agreement(e) => match e {
                AgreementError::Cost(_) | AgreementError::InvalidTerms(_) => {
                    Status::invalid_argument(message)
                }
                AgreementError::Timeout { .. } => Status::deadline_exceeded(message),
                AgreementError::Decode(_) | AgreementError::Record(_) => {
                    Status::invalid_argument(message)
                }
                AgreementError::Persisted(_) => Status::data_loss(message),
                AgreementError::WrongState { .. }
                | AgreementError::WrongRole { .. }
                | AgreementError::WrongNode { .. }
                | AgreementError::Mismatch { .. } => Status::failed_precondition(message),
            },
            MarketError::Advert(_) => Status::internal(message),
            MarketError::Store(e) => e.into(),
            MarketError::Transport(e) => e.into(),
            MarketError::Timeout(_) => Status::deadline_exceeded(message),
            MarketError::Unverified(_) => Status::aborted(message),
            MarketError::JobFailed { .. } | MarketError::Stopped => Status::unavailable(message),
        }
    }
}
