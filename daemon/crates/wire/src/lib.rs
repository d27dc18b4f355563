//! The one bounds-checked reader and writer of Mehr's little-endian binary layouts.
//!
//! Every layout (the ledger's and market's records, the daemon's control messages and stored
//! values) is defined next to its type; this crate only reads and writes the fields. The rules
//! all layouts share:
//!
//! - integers are little-endian (a caller that needs a big-endian sort key reads an array);
//! - a boolean or a presence byte is one byte, 0 or 1: anything else is refused, so that
//!   every value has exactly one encoding;
//! - an optional field is a presence byte followed by the value when present;
//! - variable fields carry a u16 or u32 length and have a per-field maximum; strings are UTF-8;
//! - vectors carry a u8 or u16 element count with a per-field maximum.
//!
//! Reads never panic: each returns a [`WireError`] naming the layout and what went wrong.
//! Nothing read from the input sizes an allocation before the input is known to hold it: a
//! length is checked against the bytes left before they are copied, and an element count
//! against what the rest of the input can hold ([`Reader::count16`]).
//!
//! ```
//! use mehr_wire::{Reader, Writer};
//!
//! let mut w = Writer::new();
//! w.u32(7);
//! w.str16("embed");
//! w.option(Some(9u64), Writer::u64);
//! let bytes = w.into_bytes();
//!
//! let mut r = Reader::new("example", &bytes);
//! assert_eq!(r.u32().unwrap(), 7);
//! assert_eq!(r.str16("name", 64).unwrap(), "embed");
//! assert_eq!(r.option("price", Reader::u64).unwrap(), Some(9));
//! r.finish().unwrap();
//! ```

use thiserror::Error;

/// Why bytes could not be read as a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{what}: {kind}")]
pub struct WireError {
    /// The layout being read (a record, message or stored value).
    pub what: &'static str,
    /// What was wrong.
    pub kind: ErrorKind,
}

/// What was wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// The input ends inside a field.
    #[error("truncated at byte {offset}: {needed} bytes needed, {left} left")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left at `offset`.
        left: usize,
    },
    /// Bytes follow the last field.
    #[error("{extra} bytes after the last field, which ends at byte {offset}")]
    Trailing {
        /// Where the layout ended.
        offset: usize,
        /// How many bytes follow.
        extra: usize,
    },
    /// The input is not the exact length of a fixed layout.
    #[error("expected {expected} bytes, got {actual}")]
    Length {
        /// The layout's length.
        expected: usize,
        /// The input's length.
        actual: usize,
    },
    /// The input is larger than the layout's size limit.
    #[error("{actual} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The largest accepted size.
        limit: usize,
        /// The input's size.
        actual: usize,
    },
    /// A length or element count is over its field's maximum.
    #[error("{field} has {actual} bytes or elements, at most {limit} allowed")]
    OverLimit {
        /// The field.
        field: &'static str,
        /// The field's maximum.
        limit: usize,
        /// The length or count read.
        actual: usize,
    },
    /// A boolean or presence byte is neither 0 nor 1.
    #[error("{field} is {value}, expected 0 or 1")]
    NotBool {
        /// The field.
        field: &'static str,
        /// The byte read.
        value: u8,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
}

impl WireError {
    /// An error of `kind` in the layout `what`.
    pub fn new(what: &'static str, kind: ErrorKind) -> Self {
        WireError { what, kind }
    }
}

/// Checks that `bytes` is exactly `expected` long (fixed layouts check before reading).
pub fn expect_len(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), WireError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(WireError::new(
            what,
            ErrorKind::Length {
                expected,
                actual: bytes.len(),
            },
        ))
    }
}

/// Refuses input over `limit` bytes before any parsing.
pub fn check_size(what: &'static str, bytes: &[u8], limit: usize) -> Result<(), WireError> {
    if bytes.len() > limit {
        Err(WireError::new(
            what,
            ErrorKind::TooLarge {
                limit,
                actual: bytes.len(),
            },
        ))
    } else {
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max_len` bytes that ends on a character boundary:
/// how a text is shortened to fit a field without producing invalid UTF-8.
pub fn utf8_prefix(s: &str, max_len: usize) -> &str {
    let mut end = s.len().min(max_len);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` is a boundary (0 always is), so the slice is in bounds and valid.
    s.get(..end).unwrap_or_default()
}

/// Sequential reader over a byte slice; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of the layout `what` (named in every error) over `bytes`.
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader {
            what,
            bytes,
            pos: 0,
        }
    }

    /// The layout being read.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// An error of `kind` in this layout.
    pub fn error(&self, kind: ErrorKind) -> WireError {
        WireError::new(self.what, kind)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        match start
            .checked_add(n)
            .and_then(|end| self.bytes.get(start..end))
        {
            Some(field) => {
                self.pos = start + n;
                Ok(field)
            }
            None => Err(self.error(ErrorKind::Truncated {
                offset: start,
                needed: n,
                left: self.remaining(),
            })),
        }
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A boolean byte: 0 or 1, anything else refused.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.error(ErrorKind::NotBool { field, value })),
        }
    }

    /// A presence byte: `true` when the optional `field` follows.
    pub fn present(&mut self, field: &'static str) -> Result<bool, WireError> {
        self.bool(field)
    }

    /// An optional field: a presence byte, then the value read by `read` when present.
    pub fn option<T, E: From<WireError>>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        if self.present(field)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks a length or count read from the input against the field's maximum.
    fn within(&self, field: &'static str, actual: usize, limit: usize) -> Result<(), WireError> {
        if actual > limit {
            return Err(self.error(ErrorKind::OverLimit {
                field,
                limit,
                actual,
            }));
        }
        Ok(())
    }

    /// Bytes behind a u16 length of at most `max`.
    pub fn bytes16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16()?);
        self.within(field, len, max)?;
        self.take(len)
    }

    /// Bytes behind a u32 length of at most `max`.
    pub fn bytes32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.u32()?;
        // A length that does not fit this platform's usize is over any maximum.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.within(field, len, max)?;
        self.take(len)
    }

    /// A UTF-8 string behind a u16 length of at most `max` bytes.
    pub fn str16(&mut self, field: &'static str, max: usize) -> Result<&'a str, WireError> {
        let bytes = self.bytes16(field, max)?;
        std::str::from_utf8(bytes).map_err(|_| self.error(ErrorKind::NotUtf8 { field }))
    }

    /// An element count in `width` bytes, at most `max`, of elements at least `min_item_len`
    /// bytes long each: a count the rest of the input cannot hold is refused here, before
    /// the caller reserves room for it.
    fn count(
        &mut self,
        field: &'static str,
        n: usize,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, WireError> {
        self.within(field, n, max)?;
        let needed = n.saturating_mul(min_item_len.max(1));
        let left = self.remaining();
        if needed > left {
            return Err(self.error(ErrorKind::Truncated {
                offset: self.pos,
                needed,
                left,
            }));
        }
        Ok(n)
    }

    /// A u8 element count of at most `max` elements, each at least `min_item_len` bytes
    /// (taken as 1 when 0), checked against the input left.
    pub fn count8(
        &mut self,
        field: &'static str,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, WireError> {
        let n = usize::from(self.u8()?);
        self.count(field, n, max, min_item_len)
    }

    /// A u16 element count of at most `max` elements, each at least `min_item_len` bytes
    /// (taken as 1 when 0), checked against the input left.
    pub fn count16(
        &mut self,
        field: &'static str,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, WireError> {
        let n = usize::from(self.u16()?);
        self.count(field, n, max, min_item_len)
    }

    /// Everything not read yet (for layouts that end in an embedded encoding).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        rest
    }

    /// Ends the layout: fails if bytes are left.
    pub fn finish(self) -> Result<(), WireError> {
        let extra = self.remaining();
        if extra == 0 {
            Ok(())
        } else {
            Err(self.error(ErrorKind::Trailing {
                offset: self.pos,
                extra,
            }))
        }
    }
}

/// Sequential writer: a layout is built field by field.
///
/// Writing cannot fail. Callers check values against their fields' maximums (all far below
/// what a length prefix holds) before encoding; should one not, a length prefix is capped at
/// its largest value and only that many bytes follow it, so the encoding stays readable
/// (and the reader's maximum refuses it) instead of shifting every later field.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    /// A boolean byte, 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.bytes.push(u8::from(v));
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Bytes as they are (fixed-size fields, embedded encodings).
    pub fn raw(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }

    /// An optional field: a presence byte, then the value written by `write` when present.
    pub fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
            None => self.u8(0),
        }
    }

    /// A u8 element count (capped at 255).
    pub fn count8(&mut self, n: usize) {
        self.u8(u8::try_from(n).unwrap_or(u8::MAX));
    }

    /// A u16 element count (capped at 65 535).
    pub fn count16(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }

    /// Bytes behind a u16 length.
    pub fn bytes16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&v[..usize::from(len)]);
    }

    /// Bytes behind a u32 length.
    pub fn bytes32(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        // u32 fits usize on every platform Mehr builds for (64- and 32-bit).
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(v.len());
        self.raw(&v[..len]);
    }

    /// A UTF-8 string behind a u16 length (cut on a character boundary if over 65 535 bytes).
    pub fn str16(&mut self, v: &str) {
        self.bytes16(utf8_prefix(v, usize::from(u16::MAX)).as_bytes());
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoding.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
