//! The SDK's one error type.

use std::path::PathBuf;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint string could not be understood.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token or certificate file could not be read.
    #[error("cannot read {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The daemon could not be reached.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect {
        /// Where we tried.
        endpoint: String,
        /// The root cause, and a hint.
        reason: String,
    },
    /// Reading the data to send, or writing the data received, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The daemon's answer does not fit the API (a daemon of another version, or a bug).
    #[error("unexpected answer from the daemon: {0}")]
    InvalidResponse(String),
    /// The daemon answered with an error status.
    // Not `#[from]`: that would also make the status the error's `source`, and error chains
    // (`anyhow`'s `{:#}`) would print the message twice.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(status)
    }
}

impl Error {
    /// The gRPC status code, when the daemon answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// The canonical upper-case name of a gRPC code (`NOT_FOUND`), as grpcurl and other tools
/// print it.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_prints_once_in_an_error_chain() {
        let error = Error::from(tonic::Status::not_found("no function `f`"));
        assert_eq!(error.to_string(), "NOT_FOUND: no function `f`");
        assert!(std::error::Error::source(&error).is_none());
    }
}
