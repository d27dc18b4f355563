//! Bounds-checked little-endian reading and writing for the fixed binary layouts.
//!
//! Every decoder first checks the exact length, then reads fields through [`Reader`], which
//! returns an error instead of panicking if a layout and its length constant ever disagree.

use ed25519_dalek::Signature;
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

/// Checks that `bytes` is exactly `expected` long.
pub(crate) fn expect_len(
    what: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), DecodeError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(DecodeError::Length {
            what,
            expected,
            actual: bytes.len(),
        })
    }
}

/// Sequential reader over a byte slice.
pub(crate) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            what,
            bytes,
            pos: 0,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Length {
                what: self.what,
                expected: self.pos.saturating_add(n),
                actual: self.bytes.len(),
            })?;
        let out = self.bytes.get(self.pos..end).ok_or(DecodeError::Length {
            what: self.what,
            expected: end,
            actual: self.bytes.len(),
        })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn signature(&mut self) -> Result<Signature, DecodeError> {
        Ok(Signature::from_bytes(&self.array()?))
    }

    /// Fails if input remains: fixed layouts have no trailing bytes.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Length {
                what: self.what,
                expected: self.pos,
                actual: self.bytes.len(),
            })
        }
    }
}
