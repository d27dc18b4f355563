//! The market's decoding errors, and the glue to `mehr-wire`'s reader and writer for its
//! binary layouts (PROTOCOL.md §1 conventions, §8 item 24).
//!
//! Rules shared by every encoding in this crate (`mehr-wire`'s): integers are little-endian; strings are UTF-8
//! behind a u16 length; vectors are a u16 element count followed by the elements; enums are one
//! u8 code in declaration order; booleans are one byte, 0 or 1 (anything else is rejected so
//! that every value has exactly one encoding); an optional field is a presence byte (0 or 1)
//! followed by the value when present.

use ed25519_dalek::Signature;
use mehr_wire::{ErrorKind, WireError};
pub(crate) use mehr_wire::{Reader, Writer, check_size};
use thiserror::Error;

/// Why a byte string could not be decoded into a record or message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the layout did, or has bytes left over after it.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    Length {
        /// The record or message being decoded.
        what: &'static str,
        /// The length the layout needed at the point of failure.
        expected: usize,
        /// The input's length.
        actual: usize,
    },
    /// The input is larger than the record's size limit.
    #[error("{what}: {actual} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The record or message being decoded.
        what: &'static str,
        /// The largest accepted size.
        limit: usize,
        /// The input's size.
        actual: usize,
    },
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
    /// A vector or string is longer than its limit.
    #[error("{what}: {field} has {actual} elements, at most {limit} allowed")]
    CountLimit {
        /// The record or message being decoded.
        what: &'static str,
        /// The field holding the vector or string.
        field: &'static str,
        /// The largest accepted count.
        limit: usize,
        /// The count seen.
        actual: usize,
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
    /// Reader errors in this crate's terms: input that ends early or late is a length error,
    /// a length or count over its limit a count error, a flag that is not 0 or 1 an unknown
    /// code.
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
            ErrorKind::TooLarge { limit, actual } => DecodeError::TooLarge {
                what,
                limit,
                actual,
            },
            ErrorKind::OverLimit {
                field,
                limit,
                actual,
            } => DecodeError::CountLimit {
                what,
                field,
                limit,
                actual,
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

/// What the market's decoders ask of a reader beyond `mehr-wire`'s fields.
pub(crate) trait ReaderExt {
    /// The next 64 bytes as an Ed25519 signature (verified later).
    fn signature(&mut self) -> Result<Signature, WireError>;
    /// An unknown enum code error for `field`.
    fn unknown(&self, field: &'static str, code: u8) -> DecodeError;
    /// An invalid-field error for `field`.
    fn invalid(&self, field: &'static str, reason: &'static str) -> DecodeError;
}

impl ReaderExt for Reader<'_> {
    fn signature(&mut self) -> Result<Signature, WireError> {
        Ok(Signature::from_bytes(&self.array()?))
    }

    fn unknown(&self, field: &'static str, code: u8) -> DecodeError {
        DecodeError::UnknownCode {
            what: self.what(),
            field,
            code,
        }
    }

    fn invalid(&self, field: &'static str, reason: &'static str) -> DecodeError {
        DecodeError::Invalid {
            what: self.what(),
            field,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_errors_keep_their_meaning_in_decode_errors() {
        let mut r = Reader::new("t", &[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert_eq!(
            DecodeError::from(r.u32().unwrap_err()),
            DecodeError::Length {
                what: "t",
                expected: 6,
                actual: 3
            }
        );
        let mut r = Reader::new("t", &[1, 2]);
        r.u8().unwrap();
        assert_eq!(
            DecodeError::from(r.finish().unwrap_err()),
            DecodeError::Length {
                what: "t",
                expected: 1,
                actual: 2
            }
        );
        let mut w = Writer::new();
        w.str16("héllo");
        let bytes = w.into_bytes();
        assert!(matches!(
            Reader::new("t", &bytes)
                .str16("s", 3)
                .map_err(DecodeError::from),
            Err(DecodeError::CountLimit {
                limit: 3,
                actual: 6,
                ..
            })
        ));
        assert!(matches!(
            Reader::new("t", &[2]).bool("b").map_err(DecodeError::from),
            Err(DecodeError::UnknownCode { code: 2, .. })
        ));
        assert!(matches!(
            check_size("t", &[0; 5], 4).map_err(DecodeError::from),
            Err(DecodeError::TooLarge {
                limit: 4,
                actual: 5,
                ..
            })
        ));
    }
}
