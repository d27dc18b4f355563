//! The crate's decoding errors, and the glue to `mehr-wire`'s reader for the fixed binary
//! layouts.
//!
//! Every decoder first checks the exact length, then reads fields through [`Reader`], which
//! returns an error instead of panicking if a layout and its length constant ever disagree.

use ed25519_dalek::Signature;
use mehr_wire::{ErrorKind, WireError};
pub(crate) use mehr_wire::{Reader, expect_len};
use thiserror::Error;

/// Why a byte string could not be decoded into a record or message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input has the wrong length for this fixed layout.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// The record or message being decoded.
        what: &'static str,
        /// The layout's exact length.
        expected: usize,
        /// The input's length.
        actual: usize,
    },
    /// The input is empty where a message type byte was expected.
    #[error("channel message: empty input, expected a type byte")]
    Empty,
    /// An enumerated field holds a code this version does not define.
    #[error("{what}: unknown {field} code {code:#04x}")]
    UnknownCode {
        /// The record or message being decoded.
        what: &'static str,
        /// The field holding the code.
        field: &'static str,
        /// The code seen.
        code: u8,
    },
    /// A field is well-formed but violates the layout's rules.
    #[error("{what}: field {field} is invalid: {reason}")]
    Invalid {
        /// The record or message being decoded.
        what: &'static str,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<WireError> for DecodeError {
    /// Reader errors in this crate's terms: a fixed layout that ends early or late is a
    /// length error, as [`expect_len`] reports it.
    fn from(e: WireError) -> Self {
        let what = e.what;
        match e.kind {
            ErrorKind::Truncated {
                offset,
                needed,
                left,
            } => DecodeError::Length {
                what,
                expected: offset.saturating_add(needed),
                actual: offset + left,
            },
            ErrorKind::Trailing { offset, extra } => DecodeError::Length {
                what,
                expected: offset,
                actual: offset + extra,
            },
            ErrorKind::Length { expected, actual } => DecodeError::Length {
                what,
                expected,
                actual,
            },
            ErrorKind::TooLarge { .. } => DecodeError::Invalid {
                what,
                field: "length",
                reason: "over the size limit",
            },
            ErrorKind::OverLimit { field, .. } => DecodeError::Invalid {
                what,
                field,
                reason: "over its limit",
            },
            ErrorKind::NotBool { field, value } => DecodeError::UnknownCode {
                what,
                field,
                code: value,
            },
            ErrorKind::NotUtf8 { field } => DecodeError::Invalid {
                what,
                field,
                reason: "not valid UTF-8",
            },
        }
    }
}

/// Reads an Ed25519 signature (64 bytes; whether it verifies is checked later).
pub(crate) trait ReadSignature {
    /// The next 64 bytes as a signature.
    fn signature(&mut self) -> Result<Signature, WireError>;
}

impl ReadSignature for Reader<'_> {
    fn signature(&mut self) -> Result<Signature, WireError> {
        Ok(Signature::from_bytes(&self.array()?))
    }
}
