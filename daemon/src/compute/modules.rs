//! Deployed WASM modules as stored in RocksDB: the exact bytes (so the module id stays
//! checkable) with the name and the deployment time. Modules are compiled again from these
//! records at start-up.

use crate::store::{CodecError, Table, Value};

/// Deployed modules, keyed by module id (Blake3 of the bytes).
pub const MODULES: Table<[u8; 32], ModuleRecord> = Table::new(crate::store::CF_COMPUTE_MODULES);

/// Layout version of [`ModuleRecord`].
const RECORD_VERSION: u8 = 1;
/// Bytes before the name: version, deployment time, name length.
const HEADER_LEN: usize = 1 + 8 + 2;

/// One deployed module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRecord {
    /// The name given at deployment, if any.
    pub name: Option<String>,
    /// When it was first deployed, milliseconds since the Unix epoch.
    pub deployed_at_unix_ms: u64,
    /// The module binary.
    pub wasm: Vec<u8>,
}

impl Value for ModuleRecord {
    /// `version u8 = 1 ‖ deployed_at_unix_ms u64 LE ‖ name_len u16 LE ‖ name (UTF-8) ‖ wasm`;
    /// an empty name means none.
    fn encode_value(&self) -> Vec<u8> {
        let name = self.name.as_deref().unwrap_or("");
        // Module names are at most 64 bytes, far below u16::MAX.
        let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + name.len() + self.wasm.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.deployed_at_unix_ms.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&name.as_bytes()[..usize::from(name_len)]);
        out.extend_from_slice(&self.wasm);
        out
    }

    fn decode_value(bytes: &[u8]) -> Result<Self, CodecError> {
        const WHAT: &str = "module record";
        let (header, rest) = bytes.split_at_checked(HEADER_LEN).ok_or_else(|| {
            CodecError::new(
                WHAT,
                format!(
                    "{} bytes, shorter than the {HEADER_LEN}-byte header",
                    bytes.len()
                ),
            )
        })?;
        let (version, header) = header
            .split_first()
            .ok_or_else(|| CodecError::new(WHAT, "empty"))?;
        if *version != RECORD_VERSION {
            return Err(CodecError::new(
                WHAT,
                format!("layout version {version}, expected {RECORD_VERSION}"),
            ));
        }
        let (time, len) = header.split_at(8);
        let deployed_at_unix_ms = u64::from_le_bytes(
            time.try_into()
                .map_err(|_| CodecError::new(WHAT, "truncated time"))?,
        );
        let name_len = usize::from(u16::from_le_bytes(
            len.try_into()
                .map_err(|_| CodecError::new(WHAT, "truncated name length"))?,
        ));
        let (name, wasm) = rest.split_at_checked(name_len).ok_or_else(|| {
            CodecError::new(
                WHAT,
                format!("name of {name_len} bytes, only {} bytes follow", rest.len()),
            )
        })?;
        let name = std::str::from_utf8(name)
            .map_err(|e| CodecError::new(WHAT, format!("name is not UTF-8: {e}")))?;
        Ok(ModuleRecord {
            name: (!name.is_empty()).then(|| name.to_string()),
            deployed_at_unix_ms,
            wasm: wasm.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_fixed() {
        let record = ModuleRecord {
            name: Some("ab".into()),
            deployed_at_unix_ms: 0x0102,
            wasm: vec![0, 0x61, 0x73, 0x6d],
        };
        assert_eq!(
            record.encode_value(),
            vec![
                1, 2, 1, 0, 0, 0, 0, 0, 0, 2, 0, b'a', b'b', 0, 0x61, 0x73, 0x6d
            ]
        );
    }

    #[test]
    fn damaged_records_are_errors() {
        assert!(ModuleRecord::decode_value(&[]).is_err());
        assert!(
            ModuleRecord::decode_value(&[2; 11]).is_err(),
            "wrong version"
        );
        let mut long_name = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0];
        long_name.extend_from_slice(b"abc");
        let err = ModuleRecord::decode_value(&long_name).unwrap_err();
        assert!(err.reason.contains("name of 9 bytes"), "{err}");
        let bad_utf8 = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff];
        assert!(ModuleRecord::decode_value(&bad_utf8).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(
            name in proptest::option::of("[a-z][a-z0-9._-]{0,63}"),
            at in any::<u64>(),
            wasm in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let record = ModuleRecord { name, deployed_at_unix_ms: at, wasm };
            prop_assert_eq!(ModuleRecord::decode_value(&record.encode_value()).unwrap(), record);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ModuleRecord::decode_value(&bytes);
        }
    }
}
