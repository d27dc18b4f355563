//! Content address of a deployed WASM module.

use std::fmt;
use std::str::FromStr;

/// Content address of a WASM module: the Blake3 hash of its exact binary bytes.
///
/// Two nodes holding the same bytes agree on the id without talking to each other, and an id can
/// never name two different programs, so a consumer who asks for a module by id knows what runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId([u8; ModuleId::LEN]);

impl ModuleId {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// Computes the id of a module from its binary bytes.
    pub fn of_wasm(wasm: &[u8]) -> Self {
        Self(*blake3::hash(wasm).as_bytes())
    }

    /// Wraps raw id bytes, for ids read back from storage or the wire.
    pub const fn from_bytes(bytes: [u8; ModuleId::LEN]) -> Self {
        Self(bytes)
    }

    /// Reads an id from a byte slice that must be exactly [`ModuleId::LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ModuleIdParseError> {
        let array: [u8; ModuleId::LEN] =
            bytes
                .try_into()
                .map_err(|_| ModuleIdParseError::WrongLength {
                    expected: ModuleId::LEN,
                    seen: bytes.len(),
                })?;
        Ok(Self(array))
    }

    /// The raw id bytes.
    pub const fn as_bytes(&self) -> &[u8; ModuleId::LEN] {
        &self.0
    }
}

/// Why a module id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleIdParseError {
    /// The id did not have the expected number of bytes.
    #[error("module id must be {expected} bytes, got {seen}")]
    WrongLength {
        /// Bytes an id has.
        expected: usize,
        /// Bytes that were given.
        seen: usize,
    },
    /// The text form was not lowercase or uppercase hexadecimal.
    #[error("module id is not valid hex: {reason}")]
    NotHex {
        /// What the hex decoder objected to.
        reason: String,
    },
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleId({self})")
    }
}

impl FromStr for ModuleId {
    type Err = ModuleIdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Check the length first so a long string yields a length error, not a hex error.
        if text.len() != ModuleId::LEN * 2 {
            return Err(ModuleIdParseError::WrongLength {
                expected: ModuleId::LEN,
                seen: text.len() / 2,
            });
        }
        let bytes = hex::decode(text).map_err(|err| ModuleIdParseError::NotHex {
            reason: err.to_string(),
        })?;
        Self::from_slice(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_is_blake3_of_the_bytes() {
        let wasm = b"\0asm\x01\0\0\0";
        let id = ModuleId::of_wasm(wasm);
        assert_eq!(id.as_bytes(), blake3::hash(wasm).as_bytes());
        assert_ne!(id, ModuleId::of_wasm(b"\0asm\x01\0\0\0\0"));
    }

    #[test]
    fn display_is_lowercase_hex() {
        let id = ModuleId::from_bytes([0xab; 32]);
        assert_eq!(id.to_string(), "ab".repeat(32));
        assert_eq!(format!("{id:?}"), format!("ModuleId({})", "ab".repeat(32)));
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert_eq!(
            "abcd".parse::<ModuleId>(),
            Err(ModuleIdParseError::WrongLength {
                expected: 32,
                seen: 2
            })
        );
        let not_hex = "zz".repeat(32);
        assert!(matches!(
            not_hex.parse::<ModuleId>(),
            Err(ModuleIdParseError::NotHex { .. })
        ));
        assert_eq!(
            ModuleId::from_slice(&[0; 31]),
            Err(ModuleIdParseError::WrongLength {
                expected: 32,
                seen: 31
            })
        );
        // A multi-byte character must not make the parser slice inside a character.
        let odd = format!("{}é", "a".repeat(62));
        assert!(odd.parse::<ModuleId>().is_err());
    }

    proptest! {
        #[test]
        fn text_round_trip(bytes in any::<[u8; 32]>()) {
            let id = ModuleId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<ModuleId>(), Ok(id));
            prop_assert_eq!(id.to_string().to_uppercase().parse::<ModuleId>(), Ok(id));
            prop_assert_eq!(ModuleId::from_slice(id.as_bytes()), Ok(id));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = text.parse::<ModuleId>();
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let parsed = ModuleId::from_slice(&bytes);
            prop_assert_eq!(parsed.is_ok(), bytes.len() == 32);
        }
    }
}
