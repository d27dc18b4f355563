//! 32-byte identifiers: object ids, chunk hashes and erasure-manifest ids.

use std::fmt;
use std::str::FromStr;

/// Why a hex string is not a valid 32-byte id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseIdError {
    /// The string does not have the 64 hex characters of a 32-byte id.
    #[error("an id is 64 hex characters, got {got}")]
    WrongLength {
        /// Number of characters seen.
        got: usize,
    },
    /// The string has a character outside `0-9a-fA-F`.
    #[error("an id must be hexadecimal: {0}")]
    NotHex(#[from] hex::FromHexError),
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The 32 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The 32 raw bytes, by value.
            pub const fn to_bytes(self) -> [u8; 32] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 64 {
                    return Err(ParseIdError::WrongLength { got: s.len() });
                }
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes)?;
                Ok(Self(bytes))
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

hash_newtype!(
    /// Identifier of a stored object: the root of its Merkle commitment, which also binds the
    /// object's byte length (see the crate documentation for the exact construction).
    ObjectId
);

hash_newtype!(
    /// Merkle root of one chunk's 64-byte segments; the leaves of an object's chunk tree.
    ChunkHash
);

hash_newtype!(
    /// Identifier of an [`ErasureManifest`](crate::ErasureManifest): a domain-separated hash of
    /// its canonical encoding.
    ManifestId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_is_lowercase_hex_and_parses_back() {
        let id = ObjectId::from_bytes([0xAB; 32]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<ObjectId>(), Ok(id));
        assert_eq!("AB".repeat(32).parse::<ObjectId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("ObjectId({text})"));
    }

    #[test]
    fn parse_rejects_bad_lengths_and_characters() {
        assert_eq!(
            "ab".parse::<ObjectId>(),
            Err(ParseIdError::WrongLength { got: 2 })
        );
        assert_eq!(
            "ab".repeat(33).parse::<ChunkHash>(),
            Err(ParseIdError::WrongLength { got: 66 })
        );
        assert!(matches!(
            "zz".repeat(32).parse::<ManifestId>(),
            Err(ParseIdError::NotHex(_))
        ));
        // 64 bytes but not 64 characters: must not panic on a char boundary.
        let multibyte = "é".repeat(32);
        assert_eq!(multibyte.len(), 64);
        assert!(multibyte.parse::<ObjectId>().is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<ObjectId>();
        }

        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let id = ChunkHash::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<ChunkHash>(), Ok(id));
        }
    }
}
