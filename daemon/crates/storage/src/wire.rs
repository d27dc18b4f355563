//! Bounds-checked reading of the crate's binary encodings (all integers little-endian).

/// Why bytes are not a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated {field}: needs {needed} bytes, {remaining} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Bytes follow the end of the encoding.
    #[error("{extra} unexpected bytes after the end of the {what}")]
    TrailingBytes {
        /// The encoding that was complete.
        what: &'static str,
        /// Number of extra bytes.
        extra: usize,
    },
    /// A field holds a value outside its allowed range.
    #[error("{field} is {value}, allowed {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value seen.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A field contradicts another field or a value derived from them.
    #[error("{field} is {got}, expected {expected}")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// The value the other fields imply.
        expected: u64,
        /// The value seen.
        got: u64,
    },
}

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `u8` that must lie in `min..=max`.
    pub(crate) fn u8_in(
        &mut self,
        field: &'static str,
        min: u8,
        max: u8,
    ) -> Result<u8, DecodeError> {
        let value = self.u8(field)?;
        if value < min || value > max {
            return Err(DecodeError::OutOfRange {
                field,
                value: value.into(),
                min: min.into(),
                max: max.into(),
            });
        }
        Ok(value)
    }

    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                extra: self.rest.len(),
            })
        }
    }
}
