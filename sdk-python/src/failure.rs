//! Why a call failed, and the Python exception it becomes.
//!
//! Failures are built without the interpreter (on the runtime's threads) and turned into
//! Python exceptions once attached: `mehr.errors.error_for(code, message, …)` picks the class
//! for the gRPC code, so every language sees the codes the daemon sent, and the exception
//! carries the daemon's error details (reason, domain, metadata, retry delay).

use std::{collections::HashMap, path::PathBuf};

use pyo3::{
    exceptions::{PyStopAsyncIteration, PyStopIteration},
    prelude::*,
    sync::PyOnceLock,
};
use tonic::Code;

use crate::runtime::{Forked, RuntimeError};

/// A failure of an SDK call, ready to become a Python exception.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The Rust SDK's error (a status from the daemon, or a connection problem).
    #[error(transparent)]
    Sdk(#[from] mehr_sdk::Error),
    /// A local file could not be opened, read or written: becomes the matching `OSError`.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A status decided on this side (for example an invalid argument).
    #[error("{message}")]
    Status {
        /// The gRPC code.
        code: Code,
        /// What was wrong.
        message: String,
    },
    /// An object was used in a forked child of the process that created it.
    #[error(transparent)]
    Forked(#[from] Forked),
    /// The runtime could not be had.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A stream has no more items: ends a `for`/`async for` loop, not an error.
    #[error("end of stream")]
    EndOfStream {
        /// True for `__anext__` (StopAsyncIteration), false for `__next__` (StopIteration).
        asynchronous: bool,
    },
}

impl Failure {
    /// A failure with `code` decided on this side.
    pub(crate) fn status(code: Code, message: impl Into<String>) -> Self {
        Failure::Status {
            code,
            message: message.into(),
        }
    }

    /// The gRPC code and message this failure is reported with.
    pub(crate) fn code_and_message(&self) -> (Code, String) {
        use mehr_sdk::Error as Sdk;
        match self {
            Failure::Sdk(Sdk::Status(status)) => (status.code(), status.message().to_string()),
            // What gRPC libraries report for these local failures.
            Failure::Sdk(error @ Sdk::Connect { .. }) => (Code::Unavailable, error.to_string()),
            Failure::Sdk(error @ Sdk::InvalidEndpoint { .. }) => {
                (Code::InvalidArgument, error.to_string())
            }
            Failure::Sdk(error @ Sdk::Credentials { .. }) => {
                (Code::Unauthenticated, error.to_string())
            }
            Failure::Sdk(error @ Sdk::InvalidResponse(_)) => (Code::Internal, error.to_string()),
            Failure::Sdk(error) => (Code::Unknown, error.to_string()),
            Failure::File { .. } => (Code::Unknown, self.to_string()),
            Failure::Status { code, message } => (*code, message.clone()),
            Failure::Forked(forked) => (Code::FailedPrecondition, forked.to_string()),
            Failure::Runtime(error) => (Code::Internal, error.to_string()),
            Failure::EndOfStream { .. } => (Code::Ok, self.to_string()),
        }
    }

    /// The Python exception for this failure.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::File { path, source } => {
                let error = PyErr::from(source);
                // `OSError(errno, strerror, filename)` shape: keep the path in the message.
                let _ = error
                    .value(py)
                    .setattr("filename", path.display().to_string());
                error
            }
            Failure::EndOfStream { asynchronous: true } => PyStopAsyncIteration::new_err(()),
            Failure::EndOfStream {
                asynchronous: false,
            } => PyStopIteration::new_err(()),
            Failure::Sdk(mehr_sdk::Error::Status(status)) => {
                let details = Details {
                    reason: status.reason().map(str::to_string),
                    domain: status.domain().map(str::to_string),
                    metadata: status.metadata().cloned().unwrap_or_default(),
                    retry_delay: status.retry_delay().map(|d| d.as_secs_f64()),
                };
                status_error_with(py, status.code(), status.message().to_string(), details)
            }
            other => {
                let (code, message) = other.code_and_message();
                status_error(py, code, message)
            }
        }
    }
}

impl From<Forked> for PyErr {
    fn from(forked: Forked) -> Self {
        Python::attach(|py| Failure::Forked(forked).into_pyerr(py))
    }
}

/// The daemon's error details of a status, as the exception carries them.
#[derive(Debug, Default)]
pub(crate) struct Details {
    reason: Option<String>,
    domain: Option<String>,
    metadata: HashMap<String, String>,
    retry_delay: Option<f64>,
}

/// The `mehr` exception for a gRPC `code` and `message` (`mehr.NotFound`, …).
pub(crate) fn status_error(py: Python<'_>, code: Code, message: String) -> PyErr {
    status_error_with(py, code, message, Details::default())
}

/// The `mehr` exception for a gRPC `code` and `message`, carrying `details`.
fn status_error_with(py: Python<'_>, code: Code, message: String, details: Details) -> PyErr {
    static ERROR_FOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let built = ERROR_FOR
        .import(py, "mehr.errors", "error_for")
        .and_then(|error_for| {
            error_for.call1((
                code as i32,
                message,
                details.reason,
                details.domain,
                details.metadata,
                details.retry_delay,
            ))
        });
    match built {
        Ok(exception) => PyErr::from_value(exception),
        // Only when the package is broken: the import error says why.
        Err(error) => error,
    }
}

/// Shorthand for an INVALID_ARGUMENT raised on this side.
pub(crate) fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    status_error(py, Code::InvalidArgument, message.into())
}
