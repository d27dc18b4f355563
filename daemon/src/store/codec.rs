//! How typed keys and values become bytes. Keys encode so that byte order is the natural
//! order (big-endian integers), because RocksDB iterates in byte order.

/// A stored record did not decode.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct CodecError {
    /// The type being decoded.
    pub what: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl CodecError {
    /// A decoding error for type `what`.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        CodecError {
            what,
            reason: reason.into(),
        }
    }
}

impl From<mehr_wire::WireError> for CodecError {
    fn from(e: mehr_wire::WireError) -> Self {
        CodecError::new(e.what, e.kind.to_string())
    }
}

/// A type usable as a table key.
pub trait Key: Sized {
    /// The key's bytes; their order is the iteration order.
    fn encode_key(&self) -> Vec<u8>;
    /// Parses a key read from the store.
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// A type usable as a table value.
pub trait Value: Sized {
    /// The value's bytes.
    fn encode_value(&self) -> Vec<u8>;
    /// Parses a value read from the store.
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError>;
}

impl Key for String {
    fn encode_key(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::new("string key", e.to_string()))
    }
}

impl Value for String {
    fn encode_value(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| CodecError::new("string value", e.to_string()))
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(bytes.to_vec())
    }
}

impl Value for Vec<u8> {
    fn encode_value(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(bytes.to_vec())
    }
}

impl<const N: usize> Key for [u8; N] {
    fn encode_key(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        bytes.try_into().map_err(|_| {
            CodecError::new(
                "fixed key",
                format!("expected {N} bytes, found {}", bytes.len()),
            )
        })
    }
}

impl<const N: usize> Value for [u8; N] {
    fn encode_value(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        bytes.try_into().map_err(|_| {
            CodecError::new(
                "fixed value",
                format!("expected {N} bytes, found {}", bytes.len()),
            )
        })
    }
}

impl Key for u64 {
    fn encode_key(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        let array: [u8; 8] = bytes.try_into().map_err(|_| {
            CodecError::new(
                "u64 key",
                format!("expected 8 bytes, found {}", bytes.len()),
            )
        })?;
        Ok(u64::from_be_bytes(array))
    }
}

impl Value for u64 {
    fn encode_value(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        let array: [u8; 8] = bytes.try_into().map_err(|_| {
            CodecError::new(
                "u64 value",
                format!("expected 8 bytes, found {}", bytes.len()),
            )
        })?;
        Ok(u64::from_le_bytes(array))
    }
}

/// A key made of a fixed-size prefix and a second part, e.g. (object id, chunk index): all keys
/// with one prefix sort together, so a prefix scan lists them.
impl<const N: usize, B: Key> Key for ([u8; N], B) {
    fn encode_key(&self) -> Vec<u8> {
        let mut out = self.0.to_vec();
        out.extend_from_slice(&self.1.encode_key());
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() < N {
            return Err(CodecError::new(
                "pair key",
                format!("shorter than its {N}-byte prefix"),
            ));
        }
        let (head, tail) = bytes.split_at(N);
        Ok((head.try_into().expect("split at N"), B::decode_key(tail)?))
    }
}
