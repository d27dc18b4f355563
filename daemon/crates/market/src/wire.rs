//! Bounds-checked little-endian reading and writing for the market's binary layouts
//! (PROTOCOL.md §1 conventions, §8 item 24).
//!
//! Rules shared by every encoding in this crate: integers are little-endian; strings are UTF-8
//! behind a u16 length; vectors are a u16 element count followed by the elements; enums are one
//! u8 code in declaration order; booleans are one byte, 0 or 1 (anything else is rejected so
//! that every value has exactly one encoding); an optional field is a presence byte (0 or 1)
//! followed by the value when present.

use ed25519_dalek::Signature;
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

/// Sequential writer; the layouts are built field by field.
#[derive(Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.bytes.push(u8::from(v));
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }

    /// A u16 element count. Callers validate counts against their limits (all far below
    /// u16::MAX) before encoding, so saturation never happens on valid values.
    pub(crate) fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }

    /// A UTF-8 string behind a u16 length.
    pub(crate) fn str16(&mut self, s: &str) {
        self.count(s.len());
        self.raw(s.as_bytes());
    }

    /// Raw bytes behind a u16 length.
    pub(crate) fn bytes16(&mut self, b: &[u8]) {
        self.count(b.len());
        self.raw(b);
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Sequential reader over a byte slice; every read is bounds-checked.
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

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.saturating_add(n);
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
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            code => Err(DecodeError::UnknownCode {
                what: self.what,
                field,
                code,
            }),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
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

    /// A u16 element count, checked against `limit`.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > limit {
            return Err(DecodeError::CountLimit {
                what: self.what,
                field,
                limit,
                actual: n,
            });
        }
        Ok(n)
    }

    /// A UTF-8 string behind a u16 length of at most `limit` bytes.
    pub(crate) fn str16(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<String, DecodeError> {
        let n = self.count(field, limit)?;
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid {
            what: self.what,
            field,
            reason: "not valid UTF-8",
        })?;
        Ok(s.to_owned())
    }

    /// Raw bytes behind a u16 length of at most `limit` bytes.
    pub(crate) fn bytes16(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let n = self.count(field, limit)?;
        Ok(self.take(n)?.to_vec())
    }

    /// A presence byte: `true` when the optional value follows.
    pub(crate) fn present(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        self.bool(field)
    }

    /// An unknown enum code error for `field`.
    pub(crate) fn unknown(&self, field: &'static str, code: u8) -> DecodeError {
        DecodeError::UnknownCode {
            what: self.what,
            field,
            code,
        }
    }

    /// An invalid-field error for `field`.
    pub(crate) fn invalid(&self, field: &'static str, reason: &'static str) -> DecodeError {
        DecodeError::Invalid {
            what: self.what,
            field,
            reason,
        }
    }

    /// Fails if input remains: layouts have no trailing bytes.
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

/// Rejects inputs over `limit` bytes before any parsing.
pub(crate) fn check_size(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        Err(DecodeError::TooLarge {
            what,
            limit,
            actual: bytes.len(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_short_input_and_trailing_bytes() {
        let mut r = Reader::new("t", &[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(matches!(
            r.u32(),
            Err(DecodeError::Length {
                expected: 6,
                actual: 3,
                ..
            })
        ));
        let mut r = Reader::new("t", &[1, 2]);
        r.u8().unwrap();
        assert!(r.finish().is_err());
    }

    #[test]
    fn strings_round_trip_and_are_limited_and_utf8_checked() {
        let mut w = Writer::new();
        w.str16("héllo");
        let bytes = w.into_bytes();
        assert_eq!(Reader::new("t", &bytes).str16("s", 16).unwrap(), "héllo");
        assert!(matches!(
            Reader::new("t", &bytes).str16("s", 3),
            Err(DecodeError::CountLimit {
                limit: 3,
                actual: 6,
                ..
            })
        ));
        assert!(
            Reader::new("t", &[2, 0, 0xff, 0xfe])
                .str16("s", 16)
                .is_err()
        );
    }

    #[test]
    fn booleans_accept_only_zero_and_one() {
        assert!(!Reader::new("t", &[0]).bool("b").unwrap());
        assert!(Reader::new("t", &[1]).bool("b").unwrap());
        assert!(Reader::new("t", &[2]).bool("b").is_err());
    }
}
