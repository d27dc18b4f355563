//! The one map from `mehr_sdk::Error` to the error JavaScript sees.
//!
//! napi-rs cannot give an async rejection a custom `code`, so the error's message carries a
//! marked JSON record (`MEHR_ERROR:{...}`): the gRPC code, its name, the ErrorInfo reason,
//! domain and metadata and the message. `lib/errors.js` parses it and throws the matching
//! `MehrError` subclass; nothing else ever sees the marker.

use std::collections::HashMap;

use tonic::Code;

/// The prefix `lib/errors.js` recognises.
const MARKER: &str = "MEHR_ERROR:";

/// A failure ready to cross into JavaScript.
pub(crate) struct Failure {
    code: Code,
    message: String,
    reason: Option<String>,
    domain: Option<String>,
    metadata: HashMap<String, String>,
}

impl Failure {
    /// A failure decided on this side (a bad argument, a closed object).
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            reason: None,
            domain: None,
            metadata: HashMap::new(),
        }
    }

    /// The call was cancelled by an `AbortSignal`.
    pub(crate) fn aborted() -> Self {
        Failure::new(Code::Cancelled, "the operation was aborted")
    }
}

impl From<mehr_sdk::Error> for Failure {
    fn from(error: mehr_sdk::Error) -> Self {
        use mehr_sdk::Error as Sdk;
        let (code, message) = match &error {
            Sdk::Status(status) => (status.code(), status.message().to_string()),
            // What gRPC libraries report for these local failures.
            Sdk::Connect { .. } => (Code::Unavailable, error.to_string()),
            Sdk::InvalidEndpoint { .. } => (Code::InvalidArgument, error.to_string()),
            Sdk::Credentials { .. } => (Code::Unauthenticated, error.to_string()),
            Sdk::InvalidResponse(_) => (Code::Internal, error.to_string()),
            _ => (Code::Unknown, error.to_string()),
        };
        Failure {
            code,
            message,
            reason: error.reason().map(str::to_string),
            domain: error.domain().map(str::to_string),
            metadata: error.metadata().cloned().unwrap_or_default(),
        }
    }
}

impl From<Failure> for napi::Error {
    fn from(failure: Failure) -> Self {
        let record = serde_json::json!({
            "code": failure.code as i32,
            "message": failure.message,
            "reason": failure.reason,
            "domain": failure.domain,
            "metadata": failure.metadata,
        });
        napi::Error::new(napi::Status::GenericFailure, format!("{MARKER}{record}"))
    }
}

/// The result type of every export.
pub(crate) type Result<T> = std::result::Result<T, napi::Error>;

/// Maps an SDK result into an export's result.
pub(crate) fn sdk<T>(result: std::result::Result<T, mehr_sdk::Error>) -> Result<T> {
    result.map_err(|e| Failure::from(e).into())
}

/// An INVALID_ARGUMENT failure for a bad value given by JavaScript.
pub(crate) fn invalid(message: impl Into<String>) -> napi::Error {
    Failure::new(Code::InvalidArgument, message).into()
}
