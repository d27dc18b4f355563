//! The one map from failures to gRPC statuses. Every status the API returns is built here: its
//! code, and the `google.rpc` details a program acts on without parsing the message — an
//! `ErrorInfo` with a stable [`Reason`] and the domain [`DOMAIN`] on every error, `BadRequest`
//! naming the request field on INVALID_ARGUMENT, and `RetryInfo` where retrying helps.
//!
//! Services return their part's error type and let `?` convert it here, or build a status
//! through the typed helpers ([`invalid_field`], [`failure`], [`internal`], …); no handler
//! builds a `Status` by hand. Store failures (RocksDB's text) are logged and answered with a
//! generic INTERNAL, never passed on to callers. docs/API.md lists every reason.

use std::{collections::HashMap, fmt::Display, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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

/// The `ErrorInfo.domain` of every error the API returns.
pub const DOMAIN: &str = "mehr.v1";

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $text:literal, $code:ident, $retry_ms:expr;)*) => {
        /// Why a call failed, as a program reads it: the `ErrorInfo.reason` of the status.
        /// Each reason always comes with the same gRPC code; the names never change meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in the order docs/API.md lists them.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The UPPER_SNAKE name sent as `ErrorInfo.reason`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $text,)*
                }
            }

            /// The gRPC code a status with this reason has.
            pub const fn code(self) -> Code {
                match self {
                    $(Reason::$name => Code::$code,)*
                }
            }

            /// How long a caller should wait before retrying, for reasons where a retry
            /// may succeed (sent as `RetryInfo.retry_delay`).
            pub const fn retry_after(self) -> Option<Duration> {
                match self {
                    $(Reason::$name => {
                        let ms: u64 = $retry_ms;
                        if ms == 0 { None } else { Some(Duration::from_millis(ms)) }
                    })*
                }
            }
        }
    };
}

reasons! {
    // ---- any call ----------------------------------------------------------------------
    /// A request field is malformed or out of range; `BadRequest` names it.
    InvalidField = "INVALID_FIELD", InvalidArgument, 0;
    /// `page_token` was not issued by this list (garbled, truncated, or from another server).
    PageTokenInvalid = "PAGE_TOKEN_INVALID", InvalidArgument, 0;
    /// `page_token` was issued for another list or other filter fields.
    PageTokenMismatch = "PAGE_TOKEN_MISMATCH", InvalidArgument, 0;
    /// A TCP call without the `authorization: Bearer` header.
    TokenMissing = "TOKEN_MISSING", Unauthenticated, 0;
    /// A TCP call whose bearer token is neither the node's admin token nor a minted one.
    TokenInvalid = "TOKEN_INVALID", Unauthenticated, 0;
    /// A TCP call whose minted token is past its expiry.
    TokenExpired = "TOKEN_EXPIRED", Unauthenticated, 0;
    /// The call's token lacks the scope the method needs (`required_scope` in metadata), or
    /// the method is not in the scope table.
    ScopeDenied = "SCOPE_DENIED", PermissionDenied, 0;
    /// The node is drained: it takes no calls that start new work.
    Draining = "DRAINING", Unavailable, 5000;
    /// The node is at `api.max_concurrent_requests`.
    Overloaded = "OVERLOADED", ResourceExhausted, 1000;
    /// The node has `api.max_concurrent_streams` server-streaming calls open.
    StreamsExhausted = "STREAMS_EXHAUSTED", ResourceExhausted, 1000;
    /// The call ran past its deadline (`api.request_timeout_secs`, or the client's).
    CallDeadlineExceeded = "CALL_DEADLINE_EXCEEDED", DeadlineExceeded, 0;
    /// A fault inside the node; the daemon's log says what (the caller is not told).
    Internal = "INTERNAL", Internal, 0;
    /// The node (or the part the call needs) is shutting down.
    ShuttingDown = "SHUTTING_DOWN", Unavailable, 5000;
    /// Stored data failed its checks (damaged on disk, or sent damaged by a provider).
    DataCorrupt = "DATA_CORRUPT", DataLoss, 0;
    /// The call was cancelled before it completed.
    Cancelled = "CANCELLED", Cancelled, 0;
    /// Another node did not answer in time.
    PeerTimeout = "PEER_TIMEOUT", DeadlineExceeded, 0;
    /// The node is not known: no announce of it was heard, so its key is unknown.
    PeerUnknown = "PEER_UNKNOWN", NotFound, 0;

    // ---- storage -----------------------------------------------------------------------
    /// The object is neither stored here nor placed on providers.
    ObjectNotFound = "OBJECT_NOT_FOUND", NotFound, 0;
    /// The object is over `storage.max_object_size`.
    ObjectTooLarge = "OBJECT_TOO_LARGE", ResourceExhausted, 0;
    /// The object does not fit in `storage.available_bytes`.
    OutOfSpace = "OUT_OF_SPACE", ResourceExhausted, 0;
    /// The byte range is outside the object.
    RangeOutOfBounds = "RANGE_OUT_OF_BOUNDS", OutOfRange, 0;
    /// Chunks of the object are missing.
    ObjectIncomplete = "OBJECT_INCOMPLETE", FailedPrecondition, 0;
    /// The object is empty, so it has nothing to prove.
    ObjectEmpty = "OBJECT_EMPTY", FailedPrecondition, 0;
    /// A PutObject stream sent nothing for `api.request_timeout_secs`.
    UploadIdle = "UPLOAD_IDLE", DeadlineExceeded, 0;
    /// The object is not placed on providers.
    ObjectNotPlaced = "OBJECT_NOT_PLACED", NotFound, 0;
    /// The object is placed already.
    ObjectAlreadyPlaced = "OBJECT_ALREADY_PLACED", AlreadyExists, 0;
    /// A storage provider refused the shard (it is full or over its limits).
    ProviderRefused = "PROVIDER_REFUSED", ResourceExhausted, 0;
    /// A storage provider answered with an error.
    ProviderFailed = "PROVIDER_FAILED", FailedPrecondition, 0;
    /// A storage provider could not be reached or did not answer.
    ProviderUnreachable = "PROVIDER_UNREACHABLE", Unavailable, 5000;
    /// Fewer shards than the object needs could be read now.
    NotEnoughShards = "NOT_ENOUGH_SHARDS", Unavailable, 5000;
    /// A lost shard has no spare provider left to be repaired onto.
    NoSpareProvider = "NO_SPARE_PROVIDER", FailedPrecondition, 0;

    // ---- transport and messaging -------------------------------------------------------
    /// The interface could not be started (a port in use, a device missing).
    InterfaceFailed = "INTERFACE_FAILED", FailedPrecondition, 0;
    /// No interface with this id.
    InterfaceNotFound = "INTERFACE_NOT_FOUND", NotFound, 0;
    /// No open inbound link with this id.
    LinkNotFound = "LINK_NOT_FOUND", NotFound, 0;
    /// No path to the destination is known, and a path request found none.
    NoPath = "NO_PATH", NotFound, 0;
    /// The link to the destination failed.
    LinkFailed = "LINK_FAILED", Unavailable, 2000;
    /// The receiver refused the message.
    MessageRefused = "MESSAGE_REFUSED", Unavailable, 0;
    /// The node has no interface up to send on.
    NoInterfaces = "NO_INTERFACES", FailedPrecondition, 0;

    // ---- compute -----------------------------------------------------------------------
    /// No such function on this node (or no module of that name).
    FunctionNotFound = "FUNCTION_NOT_FOUND", NotFound, 0;
    /// The function is at its concurrency and queue limits.
    FunctionBusy = "FUNCTION_BUSY", ResourceExhausted, 1000;
    /// The function's output is over the limit.
    OutputTooLarge = "OUTPUT_TOO_LARGE", ResourceExhausted, 0;
    /// The caller read a streamed output too slowly.
    CallerTooSlow = "CALLER_TOO_SLOW", ResourceExhausted, 0;
    /// The function used up its fuel (`max_fuel`).
    OutOfFuel = "OUT_OF_FUEL", ResourceExhausted, 0;
    /// The function went over its memory limit.
    MemoryLimit = "MEMORY_LIMIT", ResourceExhausted, 0;
    /// The function did not finish within its deadline (`deadline_ms`).
    FunctionDeadlineExceeded = "FUNCTION_DEADLINE_EXCEEDED", DeadlineExceeded, 0;
    /// The program serving the function went away during the call.
    ProviderDisconnected = "PROVIDER_DISCONNECTED", Unavailable, 1000;
    /// The function stopped being served before the call ran.
    FunctionNotServed = "FUNCTION_NOT_SERVED", Unavailable, 1000;
    /// The function ran and failed (its handler's error, or a trap).
    FunctionFailed = "FUNCTION_FAILED", Aborted, 0;
    /// Output streamed from a provider is not the start of the output it signed.
    OutputMismatch = "OUTPUT_MISMATCH", DataLoss, 0;
    /// Another module has this name.
    ModuleNameTaken = "MODULE_NAME_TAKEN", AlreadyExists, 0;
    /// The module is deployed already, under another name or none.
    ModuleAlreadyDeployed = "MODULE_ALREADY_DEPLOYED", AlreadyExists, 0;
    /// No module with this name or id.
    ModuleNotFound = "MODULE_NOT_FOUND", NotFound, 0;
    /// The function id is served on this node already.
    FunctionAlreadyServed = "FUNCTION_ALREADY_SERVED", AlreadyExists, 0;
    /// A Serve stream registered twice.
    ServeSessionViolation = "SERVE_SESSION_VIOLATION", FailedPrecondition, 0;

    // ---- ledger ------------------------------------------------------------------------
    /// No (open) channel with this id or peer.
    ChannelNotFound = "CHANNEL_NOT_FOUND", NotFound, 0;
    /// A channel with the peer is open or being opened.
    ChannelExists = "CHANNEL_EXISTS", AlreadyExists, 0;
    /// The amount is above the free balance (or the channel balance).
    InsufficientFunds = "INSUFFICIENT_FUNDS", FailedPrecondition, 0;
    /// The peer refused to open the channel.
    PeerRefused = "PEER_REFUSED", FailedPrecondition, 0;
    /// The channel's state does not allow this now.
    ChannelState = "CHANNEL_STATE", FailedPrecondition, 0;

    // ---- market ------------------------------------------------------------------------
    /// The marketplace is disabled (`market.enabled = false`).
    MarketDisabled = "MARKET_DISABLED", FailedPrecondition, 0;
    /// No agreement with this id on this node.
    AgreementNotFound = "AGREEMENT_NOT_FOUND", NotFound, 0;
    /// The agreement's state (or this node's role in it) does not allow this.
    AgreementState = "AGREEMENT_STATE", FailedPrecondition, 0;
    /// No advert of the node offers the capability.
    NoAdvert = "NO_ADVERT", NotFound, 0;
    /// Too few providers of the function were found.
    NoProviders = "NO_PROVIDERS", NotFound, 0;
    /// A capability chain (resale) does not hold.
    CapabilityChain = "CAPABILITY_CHAIN", FailedPrecondition, 0;
    /// No provider's output could be accepted by the verification tier.
    ResultUnverified = "RESULT_UNVERIFIED", Aborted, 0;
    /// A provider failed the job.
    JobFailed = "JOB_FAILED", Unavailable, 5000;
    /// The provider refuses service: this node's unpaid dues to it exceed the credit it grants.
    PaymentOverdue = "PAYMENT_OVERDUE", FailedPrecondition, 0;
    /// A request_id was used before with other arguments.
    RequestIdReused = "REQUEST_ID_REUSED", InvalidArgument, 0;

    // ---- admin -------------------------------------------------------------------------
    /// No minted token with this id.
    TokenNotFound = "TOKEN_NOT_FOUND", NotFound, 0;
    /// 1000 tokens are minted already.
    TooManyTokens = "TOO_MANY_TOKENS", ResourceExhausted, 0;
}

impl From<super::tokens::TokenError> for Status {
    fn from(error: super::tokens::TokenError) -> Status {
        use super::tokens::TokenError;
        let message = error.to_string();
        match error {
            TokenError::NotFound(id) => failure_with(Reason::TokenNotFound, message, &[("id", id)]),
            TokenError::TooMany => failure(Reason::TooManyTokens, message),
            TokenError::Io { .. } | TokenError::Corrupt { .. } => {
                internal("the token file", message)
            }
        }
    }
}

/// A status with `reason` (and its code), `message` for people, and `metadata` for programs.
pub fn failure_with(
    reason: Reason,
    message: impl Into<String>,
    metadata: &[(&str, String)],
) -> Status {
    let mut details = ErrorDetails::new();
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    details.set_error_info(reason.as_str(), DOMAIN, metadata);
    if let Some(delay) = reason.retry_after() {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(reason.code(), message, details)
}

/// A status with `reason` (and its code) and `message`.
pub fn failure(reason: Reason, message: impl Into<String>) -> Status {
    failure_with(reason, message, &[])
}

/// INVALID_ARGUMENT with `reason`, naming the request `field` in a `BadRequest`.
pub fn bad_request(reason: Reason, field: &str, message: impl Into<String>) -> Status {
    debug_assert_eq!(reason.code(), Code::InvalidArgument);
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason.as_str(),
        DOMAIN,
        HashMap::from([("field".to_string(), field.to_string())]),
    );
    details.add_bad_request_violation(field, message.clone());
    Status::with_error_details(reason.code(), message, details)
}

/// INVALID_ARGUMENT: the request's `field` is wrong, as `message` says.
pub fn invalid_field(field: &str, message: impl Into<String>) -> Status {
    bad_request(Reason::InvalidField, field, message)
}

/// INTERNAL: logs `error` as a fault of `context` and tells the caller only that it happened,
/// so that store text (paths, RocksDB's messages) never reaches callers.
pub fn internal(context: &str, error: impl Display) -> Status {
    tracing::error!(error = %error, "{context} failed");
    failure(
        Reason::Internal,
        format!("internal error in {context}; the daemon's log has the details"),
    )
}

/// `Reason::Cancelled` with `message`.
pub fn cancelled(message: impl Into<String>) -> Status {
    failure(Reason::Cancelled, message)
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            // A record that does not decode is damaged data, not a server bug; the message is
            // the codec's, not RocksDB's.
            StoreError::Corrupt { .. } => failure(Reason::DataCorrupt, error.to_string()),
            StoreError::Locked { .. } | StoreError::Db(_) => internal("the store", error),
        }
    }
}

impl From<TransportError> for Status {
    fn from(error: TransportError) -> Status {
        use crate::transport::interfaces::InterfaceError;
        use mehr_transport::router::RouterError;
        let message = error.to_string();
        match error {
            TransportError::Interface(InterfaceError::Spec(_)) => invalid_field("spec", message),
            TransportError::InvalidName(_) => invalid_field("name", message),
            TransportError::Interface(_) => failure(Reason::InterfaceFailed, message),
            TransportError::UnknownInterface(id) => failure_with(
                Reason::InterfaceNotFound,
                message,
                &[("interface_id", id.to_string())],
            ),
            TransportError::UnknownLink(_) => failure(Reason::LinkNotFound, message),
            TransportError::NoPath(destination) => failure_with(
                Reason::NoPath,
                message,
                &[("destination", destination.to_hex())],
            ),
            TransportError::TooLarge { .. }
            | TransportError::Router(RouterError::PayloadTooLarge { .. }) => {
                invalid_field("payload", message)
            }
            TransportError::LinkFailed { .. } => failure(Reason::LinkFailed, message),
            TransportError::Refused(_) => failure(Reason::MessageRefused, message),
            TransportError::Timeout(_) => failure(Reason::PeerTimeout, message),
            TransportError::Router(RouterError::UnknownDestination(_)) => {
                failure(Reason::NoPath, message)
            }
            TransportError::Router(RouterError::NoInterfaces) => {
                failure(Reason::NoInterfaces, message)
            }
            TransportError::Router(e) => internal("the router", e),
            TransportError::Stopped => failure(Reason::ShuttingDown, message),
        }
    }
}

impl From<InvokeFailure> for Status {
    fn from(failure_: InvokeFailure) -> Status {
        use mehr_compute::InvokeError as Sandbox;
        let message = failure_.to_string();
        let function = |reason: Reason, function_id: &str| {
            failure_with(
                reason,
                message.clone(),
                &[("function_id", function_id.to_string())],
            )
        };
        match &failure_ {
            InvokeFailure::EmptyFunctionId => invalid_field("function_id", message),
            InvokeFailure::InputTooLarge { .. } => invalid_field("input", message),
            InvokeFailure::UnknownFunction { function_id } => {
                function(Reason::FunctionNotFound, function_id)
            }
            InvokeFailure::Busy { function_id, .. } => function(Reason::FunctionBusy, function_id),
            InvokeFailure::OutputTooLarge { function_id, .. } => {
                function(Reason::OutputTooLarge, function_id)
            }
            InvokeFailure::CallerTooSlow { function_id } => {
                function(Reason::CallerTooSlow, function_id)
            }
            InvokeFailure::DeadlineExceeded { function_id, .. } => {
                function(Reason::FunctionDeadlineExceeded, function_id)
            }
            InvokeFailure::ProviderDisconnected { function_id } => {
                function(Reason::ProviderDisconnected, function_id)
            }
            InvokeFailure::NoLongerServed { function_id } => {
                function(Reason::FunctionNotServed, function_id)
            }
            // The function ran and failed: the same reason for a handler's error and a trap.
            InvokeFailure::HandlerFailed { function_id, .. } => {
                function(Reason::FunctionFailed, function_id)
            }
            InvokeFailure::Internal { .. } => internal("the compute sandbox", &failure_),
            InvokeFailure::Wasm {
                source,
                function_id,
            } => match source {
                // The module was removed between resolution and the call.
                Sandbox::UnknownModule { .. } | Sandbox::UnknownFunction { .. } => {
                    function(Reason::FunctionNotFound, function_id)
                }
                Sandbox::LimitAboveCeiling { .. } => invalid_field("max_fuel", message),
                Sandbox::InputTooLarge { .. } => invalid_field("input", message),
                Sandbox::Busy { .. } => function(Reason::FunctionBusy, function_id),
                Sandbox::OutOfFuel { .. } => function(Reason::OutOfFuel, function_id),
                Sandbox::MemoryLimit { .. } => function(Reason::MemoryLimit, function_id),
                Sandbox::OutputTooLarge { .. } => function(Reason::OutputTooLarge, function_id),
                Sandbox::Deadline { .. } => function(Reason::FunctionDeadlineExceeded, function_id),
                Sandbox::Trap { .. }
                | Sandbox::BadInputPointer { .. }
                | Sandbox::BadOutputPointer { .. } => function(Reason::FunctionFailed, function_id),
                Sandbox::Instantiate { .. } => internal("the compute sandbox", &failure_),
            },
        }
    }
}

impl From<DeployError> for Status {
    fn from(error: DeployError) -> Status {
        let message = error.to_string();
        match error {
            DeployError::InvalidName { .. } => invalid_field("name", message),
            DeployError::Module(_) => invalid_field("wasm", message),
            DeployError::NameTaken { .. } => failure(Reason::ModuleNameTaken, message),
            DeployError::AlreadyDeployedAs { .. } => {
                failure(Reason::ModuleAlreadyDeployed, message)
            }
            DeployError::Store(e) => e.into(),
            DeployError::Task(_) => internal("module deployment", message),
        }
    }
}

impl From<RemoveError> for Status {
    fn from(error: RemoveError) -> Status {
        let message = error.to_string();
        match error {
            RemoveError::NotFound { .. } => failure(Reason::ModuleNotFound, message),
            RemoveError::Store(e) => e.into(),
            RemoveError::Task(_) => internal("module removal", message),
        }
    }
}

impl From<ListError> for Status {
    fn from(error: ListError) -> Status {
        match error {
            ListError::BadPageToken => {
                bad_request(Reason::PageTokenInvalid, "page_token", error.to_string())
            }
        }
    }
}

impl From<RegistrationError> for Status {
    fn from(error: RegistrationError) -> Status {
        let message = error.to_string();
        match error {
            RegistrationError::NotRegisterFirst => invalid_field("register", message),
            RegistrationError::NoFunctions | RegistrationError::TooManyFunctions { .. } => {
                invalid_field("register.functions", message)
            }
            RegistrationError::InvalidField { index, field, .. } => {
                invalid_field(&format!("register.functions[{index}].{field}"), message)
            }
            RegistrationError::AlreadyServed { function_id } => failure_with(
                Reason::FunctionAlreadyServed,
                message,
                &[("function_id", function_id)],
            ),
            RegistrationError::ShuttingDown => failure(Reason::ShuttingDown, message),
        }
    }
}

impl From<SessionViolation> for Status {
    fn from(violation: SessionViolation) -> Status {
        let message = violation.to_string();
        match violation {
            SessionViolation::RegisteredTwice => failure(Reason::ServeSessionViolation, message),
            SessionViolation::Malformed(_) => invalid_field("kind", message),
        }
    }
}

impl From<RemoteError> for Status {
    fn from(error: RemoteError) -> Status {
        use crate::storage::remote::wire::ErrorCode;
        let message = error.to_string();
        match error {
            RemoteError::NoProviders { .. }
            | RemoteError::TooFewProviders { .. }
            | RemoteError::SelfProvider(_)
            | RemoteError::BadProviderId(_) => invalid_field("providers", message),
            // The erasure code's parameters are the request's shard counts.
            RemoteError::Code(_) => invalid_field("data_shards", message),
            RemoteError::NotPlaced(id) => {
                failure_with(Reason::ObjectNotPlaced, message, &[("id", id.to_string())])
            }
            RemoteError::AlreadyPlaced(id) => failure_with(
                Reason::ObjectAlreadyPlaced,
                message,
                &[("id", id.to_string())],
            ),
            RemoteError::Provider { code, provider, .. } => {
                let reason = match code {
                    ErrorCode::Refused => Reason::ProviderRefused,
                    _ => Reason::ProviderFailed,
                };
                failure_with(reason, message, &[("provider", provider.to_string())])
            }
            RemoteError::Unreachable { provider, .. } | RemoteError::NoAnswer { provider, .. } => {
                failure_with(
                    Reason::ProviderUnreachable,
                    message,
                    &[("provider", provider.to_string())],
                )
            }
            RemoteError::NotEnoughShards { .. } => failure(Reason::NotEnoughShards, message),
            RemoteError::BadData { .. } | RemoteError::Corrupt { .. } => {
                failure(Reason::DataCorrupt, message)
            }
            RemoteError::NoSpare { .. } => failure(Reason::NoSpareProvider, message),
            RemoteError::Storage(e) => Status::from(e),
            RemoteError::Store(e) => Status::from(e),
            RemoteError::Transport(e) => Status::from(e),
            RemoteError::Cancelled => cancelled(message),
        }
    }
}

impl From<StorageError> for Status {
    fn from(error: StorageError) -> Status {
        let message = error.to_string();
        match error {
            StorageError::NotFound { id } => {
                failure_with(Reason::ObjectNotFound, message, &[("id", id.to_string())])
            }
            StorageError::ObjectTooLarge { .. } => failure(Reason::ObjectTooLarge, message),
            StorageError::OutOfSpace { .. } => failure(Reason::OutOfSpace, message),
            StorageError::SizeMismatch { .. } => invalid_field("metadata.expected_size", message),
            StorageError::NameTooLong { .. } => invalid_field("metadata.name", message),
            StorageError::ChunkIndexOutOfRange { .. }
            | StorageError::ChunkLength { .. }
            | StorageError::ContentMismatch { .. } => invalid_field("data", message),
            StorageError::InvalidPageToken { .. } => {
                bad_request(Reason::PageTokenInvalid, "page_token", message)
            }
            // gRPC's code for reading past the end of a file.
            StorageError::RangeOutOfBounds { .. } => failure(Reason::RangeOutOfBounds, message),
            StorageError::Corrupt { id, .. } => {
                failure_with(Reason::DataCorrupt, message, &[("id", id.to_string())])
            }
            StorageError::IncompleteChunkSet { .. } => failure(Reason::ObjectIncomplete, message),
            StorageError::EmptyObject { .. } => failure(Reason::ObjectEmpty, message),
            StorageError::Store(e) => Status::from(e),
        }
    }
}

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Status {
        let message = error.to_string();
        match error {
            LedgerError::UnknownPeer(_) => failure(Reason::PeerUnknown, message),
            LedgerError::NoChannel(_) | LedgerError::UnknownChannel(_) => {
                failure(Reason::ChannelNotFound, message)
            }
            LedgerError::SelfChannel => invalid_field("peer", message),
            LedgerError::ZeroAmount(field) => invalid_field(field, message),
            LedgerError::Ticket(_) => invalid_field("ticket", message),
            LedgerError::ChannelExists { .. } => failure(Reason::ChannelExists, message),
            LedgerError::InsufficientFunds { .. } | LedgerError::Overdraft { .. } => {
                failure(Reason::InsufficientFunds, message)
            }
            LedgerError::OpenRefused { .. } => failure(Reason::PeerRefused, message),
            LedgerError::Channel { .. } => failure(Reason::ChannelState, message),
            LedgerError::Timeout(_) => failure(Reason::PeerTimeout, message),
            LedgerError::Store(e) => e.into(),
            LedgerError::Restore { .. } | LedgerError::RestoreEpoch(_) => {
                failure(Reason::DataCorrupt, message)
            }
            LedgerError::Stopped => failure(Reason::ShuttingDown, message),
            LedgerError::RequestReused { .. } => failure(Reason::RequestIdReused, message),
        }
    }
}

impl From<MarketError> for Status {
    fn from(error: MarketError) -> Status {
        use mehr_market::agreement::AgreementError;
        let message = error.to_string();
        match error {
            MarketError::Disabled => failure(Reason::MarketDisabled, message),
            MarketError::NotActive { .. } => failure(Reason::AgreementState, message),
            MarketError::Chain(_) => failure(Reason::CapabilityChain, message),
            MarketError::InvalidArgument { field, .. } => invalid_field(field, message),
            MarketError::Tier(_) => invalid_field("tier", message),
            MarketError::UnknownAgreement => failure(Reason::AgreementNotFound, message),
            MarketError::UnknownPeer { .. } => failure(Reason::PeerUnknown, message),
            MarketError::NoAdvert { .. } => failure(Reason::NoAdvert, message),
            MarketError::NoProviders { function, .. } => {
                failure_with(Reason::NoProviders, message, &[("function_id", function)])
            }
            MarketError::Agreement(e) => match e {
                AgreementError::Cost(_) | AgreementError::InvalidTerms(_) => {
                    invalid_field("cost_cap", message)
                }
                AgreementError::Timeout { .. } => failure(Reason::PeerTimeout, message),
                AgreementError::Decode(_) | AgreementError::Record(_) => {
                    invalid_field("id", message)
                }
                AgreementError::Persisted(_) => failure(Reason::DataCorrupt, message),
                AgreementError::WrongState { .. }
                | AgreementError::WrongRole { .. }
                | AgreementError::WrongNode { .. }
                | AgreementError::Mismatch { .. } => failure(Reason::AgreementState, message),
            },
            MarketError::Advert(e) => internal("signing the advert", e),
            MarketError::Store(e) => e.into(),
            MarketError::Transport(e) => e.into(),
            MarketError::Timeout(_) => failure(Reason::PeerTimeout, message),
            MarketError::Unverified(_) => failure(Reason::ResultUnverified, message),
            MarketError::JobFailed { .. } => failure(Reason::JobFailed, message),
            MarketError::PaymentOverdue { .. } => failure(Reason::PaymentOverdue, message),
            MarketError::Stopped => failure(Reason::ShuttingDown, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_snake_unique_and_documented() {
        let docs = include_str!("../../../docs/API.md");
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(name), "{name} twice");
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/API.md does not list {name}"
            );
        }
    }

    #[test]
    fn every_status_carries_its_reason_and_domain() {
        let status = failure(Reason::FunctionBusy, "busy");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "FUNCTION_BUSY");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(
            details.retry_info().and_then(|r| r.retry_delay),
            Some(Duration::from_secs(1))
        );

        let status = invalid_field("id", "id: an object id has 32 bytes, got 3");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "id: an object id has 32 bytes, got 3");
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "id");
        assert!(details.retry_info().is_none());
    }

    #[test]
    fn store_text_never_reaches_the_caller() {
        let error = StoreError::Locked {
            path: "/secret/path/store".into(),
            message: "IO error: lock /secret/path/store/LOCK: Resource temporarily unavailable"
                .into(),
        };
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INTERNAL");
    }
}
