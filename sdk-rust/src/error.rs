//! The SDK's one error type.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use tonic_types::{ErrorDetails, ErrorInfo, FieldViolation, StatusExt};

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
    /// The daemon answered with an error status (its details decoded: see [`ApiStatus`]).
    // Not `#[from]`: that would also make the status the error's `source`, and error chains
    // (`anyhow`'s `{:#}`) would print the message twice.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(ApiStatus),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(ApiStatus::from(status))
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

    /// The daemon's stable reason for the failure (`ErrorInfo.reason`, e.g.
    /// `OBJECT_NOT_FOUND`), which programs act on; docs/API.md lists them.
    pub fn reason(&self) -> Option<&str> {
        self.status().and_then(ApiStatus::reason)
    }

    /// The domain of [`Error::reason`] (`mehr.v1` for the daemon's reasons).
    pub fn domain(&self) -> Option<&str> {
        self.status().and_then(ApiStatus::domain)
    }

    /// Facts about the failure for programs (`ErrorInfo.metadata`: a `function_id`, an `id`,
    /// the `field` of a bad request, …).
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.status().and_then(ApiStatus::metadata)
    }

    /// How long to wait before retrying, where the daemon says a retry may succeed.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.status().and_then(ApiStatus::retry_delay)
    }

    /// The daemon's answer, when it answered with an error status.
    pub fn status(&self) -> Option<&ApiStatus> {
        match self {
            Error::Status(status) => Some(status),
            _ => None,
        }
    }
}

/// An error status from the daemon, with its `google.rpc` details decoded once: the
/// `ErrorInfo` (reason, domain, metadata), the `BadRequest` field violations and the
/// `RetryInfo`. Derefs to the [`tonic::Status`] for the code and message.
#[derive(Debug)]
pub struct ApiStatus {
    status: tonic::Status,
    // Boxed: errors travel in every `Result` of the SDK, so they stay as small as the status.
    details: Box<Decoded>,
}

/// The details of an [`ApiStatus`], decoded.
#[derive(Debug)]
struct Decoded {
    info: Option<ErrorInfo>,
    violations: Vec<FieldViolation>,
    retry_delay: Option<Duration>,
}

impl From<tonic::Status> for ApiStatus {
    fn from(status: tonic::Status) -> Self {
        // Details that do not decode are left out; the code and message remain.
        let details = status
            .check_error_details()
            .unwrap_or_else(|_| ErrorDetails::new());
        ApiStatus {
            details: Box::new(Decoded {
                info: details.error_info().cloned(),
                violations: details
                    .bad_request()
                    .map(|bad| bad.field_violations.clone())
                    .unwrap_or_default(),
                retry_delay: details.retry_info().and_then(|retry| retry.retry_delay),
            }),
            status,
        }
    }
}

impl std::ops::Deref for ApiStatus {
    type Target = tonic::Status;

    fn deref(&self) -> &tonic::Status {
        &self.status
    }
}

impl ApiStatus {
    /// `ErrorInfo.reason`: why the call failed, as a stable UPPER_SNAKE name.
    pub fn reason(&self) -> Option<&str> {
        self.details.info.as_ref().map(|info| info.reason.as_str())
    }

    /// `ErrorInfo.domain`: who defines the reason (`mehr.v1`).
    pub fn domain(&self) -> Option<&str> {
        self.details.info.as_ref().map(|info| info.domain.as_str())
    }

    /// `ErrorInfo.metadata`.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.details.info.as_ref().map(|info| &info.metadata)
    }

    /// The request fields an INVALID_ARGUMENT names, with what is wrong with each.
    pub fn field_violations(&self) -> Vec<(&str, &str)> {
        self.details
            .violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect()
    }

    /// `RetryInfo.retry_delay`: the daemon's advice on when to retry.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details.retry_delay
    }

    /// The status as received.
    pub fn into_inner(self) -> tonic::Status {
        self.status
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
    fn the_reason_and_details_are_read_from_the_status() {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            "OBJECT_NOT_FOUND",
            "mehr.v1",
            HashMap::from([("id".to_string(), "ab".to_string())]),
        );
        details.add_bad_request_violation("id", "too short");
        details.set_retry_info(Some(Duration::from_secs(2)));
        let error = Error::from(tonic::Status::with_error_details(
            tonic::Code::NotFound,
            "no object",
            details,
        ));
        assert_eq!(error.reason(), Some("OBJECT_NOT_FOUND"));
        assert_eq!(error.domain(), Some("mehr.v1"));
        assert_eq!(error.metadata().unwrap()["id"], "ab");
        assert_eq!(error.retry_delay(), Some(Duration::from_secs(2)));
        assert_eq!(
            error.status().unwrap().field_violations(),
            vec![("id", "too short")]
        );
        assert_eq!(error.to_string(), "NOT_FOUND: no object");

        let plain = Error::from(tonic::Status::internal("x"));
        assert_eq!(plain.reason(), None);
        assert_eq!(plain.retry_delay(), None);
    }

    #[test]
    fn a_status_prints_once_in_an_error_chain() {
        let error = Error::from(tonic::Status::not_found("no function `f`"));
        assert_eq!(error.to_string(), "NOT_FOUND: no function `f`");
        assert!(std::error::Error::source(&error).is_none());
    }
}
