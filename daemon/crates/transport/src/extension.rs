//! The MehrExtension: Mehr's data in a `mehr.node` announce's app_data.
//!
//! ```text
//! [0x4E magic][version: major<<4 | minor][CompactPathCost of the origin, 7][TLV…]
//! TLV = type u8, len u8, value[len]
//! ```
//!
//! The origin signs it as part of the announce; relays never edit it (PROTOCOL.md decision 2).
//! Unknown TLV types are kept and skipped, so newer minors stay readable. Version major 15
//! means the real version is in TLV 0x01 (`u16 major, u16 minor`, little-endian).

use crate::path_cost::{COMPACT_PATH_COST_LEN, CompactPathCost};

/// First byte of app_data that carries a MehrExtension.
pub const MEHR_EXTENSION_MAGIC: u8 = 0x4E;
/// Version this crate writes: 1.0.
pub const MEHR_EXTENSION_VERSION: u8 = 0x10;
/// The only major version this crate understands.
pub const SUPPORTED_MAJOR: u16 = 1;
/// Shortest extension: magic, version, CompactPathCost.
pub const MIN_EXTENSION_LEN: usize = 2 + COMPACT_PATH_COST_LEN;
/// Version major that defers to TLV 0x01.
const ESCAPE_MAJOR: u8 = 15;

/// Known TLV types.
pub mod tlv_type {
    /// Extended version: `u16 major, u16 minor` little-endian; used when the version byte's
    /// major is 15.
    pub const EXTENDED_VERSION: u8 = 0x01;
    /// Capability summary (format defined by the marketplace layer).
    pub const CAPABILITIES: u8 = 0x02;
    /// Node tier (format defined by the marketplace layer).
    pub const TIER: u8 = 0x03;
    /// Load indication (format defined by the marketplace layer).
    pub const LOAD: u8 = 0x04;
}

/// Why app_data is not a valid MehrExtension.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtensionError {
    /// Shorter than magic, version and CompactPathCost.
    #[error("MehrExtension of {len} bytes is too short: at least {MIN_EXTENSION_LEN} bytes needed")]
    TooShort {
        /// Length available.
        len: usize,
    },
    /// The first byte is not the magic byte.
    #[error("MehrExtension must start with 0x4E, found {found:#04x}")]
    BadMagic {
        /// The first byte.
        found: u8,
    },
    /// A TLV claims more bytes than remain.
    #[error("MehrExtension TLV {kind:#04x} declares {declared} bytes but only {available} remain")]
    TruncatedTlv {
        /// TLV type.
        kind: u8,
        /// Declared length.
        declared: usize,
        /// Bytes left after its header.
        available: usize,
    },
    /// A TLV type byte without its length byte.
    #[error("MehrExtension ends inside a TLV header")]
    TruncatedTlvHeader,
    /// A TLV value longer than 255 bytes cannot be encoded.
    #[error("MehrExtension TLV {kind:#04x} value of {len} bytes exceeds 255")]
    TlvTooLong {
        /// TLV type.
        kind: u8,
        /// Value length.
        len: usize,
    },
    /// Major 15 without a well-formed TLV 0x01.
    #[error("MehrExtension version major 15 needs a 4-byte TLV 0x01")]
    MissingExtendedVersion,
    /// A major version this crate does not understand.
    #[error("MehrExtension major version {major} is not supported (expected {SUPPORTED_MAJOR})")]
    UnsupportedMajor {
        /// The major version found.
        major: u16,
    },
}

/// One type-length-value entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlv {
    /// Type.
    pub kind: u8,
    /// Value (at most 255 bytes).
    pub value: Vec<u8>,
}

/// A parsed MehrExtension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MehrExtension {
    /// Version byte: `major << 4 | minor`.
    pub version: u8,
    /// The origin's own cost summary.
    pub origin_cost: CompactPathCost,
    /// TLVs in wire order, unknown types included.
    pub tlvs: Vec<Tlv>,
}

impl MehrExtension {
    /// A version 1.0 extension without TLVs.
    pub fn new(origin_cost: CompactPathCost) -> Self {
        Self {
            version: MEHR_EXTENSION_VERSION,
            origin_cost,
            tlvs: Vec::new(),
        }
    }

    /// Parses app_data if it starts with the magic byte; `Ok(None)` if it does not.
    pub fn from_app_data(app_data: &[u8]) -> Result<Option<Self>, ExtensionError> {
        match app_data.first() {
            Some(&MEHR_EXTENSION_MAGIC) => Self::parse(app_data).map(Some),
            _ => Ok(None),
        }
    }

    /// Parses an extension, checking the magic byte, TLV bounds and the major version.
    pub fn parse(bytes: &[u8]) -> Result<Self, ExtensionError> {
        if bytes.len() < MIN_EXTENSION_LEN {
            return Err(ExtensionError::TooShort { len: bytes.len() });
        }
        if bytes[0] != MEHR_EXTENSION_MAGIC {
            return Err(ExtensionError::BadMagic { found: bytes[0] });
        }
        let version = bytes[1];
        let origin_cost = CompactPathCost::parse(&bytes[2..MIN_EXTENSION_LEN])
            .map_err(|_| ExtensionError::TooShort { len: bytes.len() })?;
        let mut tlvs = Vec::new();
        let mut rest = &bytes[MIN_EXTENSION_LEN..];
        while let Some((&kind, after_kind)) = rest.split_first() {
            let (&len, after_len) = after_kind
                .split_first()
                .ok_or(ExtensionError::TruncatedTlvHeader)?;
            let len = usize::from(len);
            if after_len.len() < len {
                return Err(ExtensionError::TruncatedTlv {
                    kind,
                    declared: len,
                    available: after_len.len(),
                });
            }
            let (value, next) = after_len.split_at(len);
            tlvs.push(Tlv {
                kind,
                value: value.to_vec(),
            });
            rest = next;
        }
        let ext = Self {
            version,
            origin_cost,
            tlvs,
        };
        let (major, _) = ext.version_numbers()?;
        if major != SUPPORTED_MAJOR {
            return Err(ExtensionError::UnsupportedMajor { major });
        }
        Ok(ext)
    }

    /// Serializes the extension.
    pub fn encode(&self) -> Result<Vec<u8>, ExtensionError> {
        let mut out = Vec::with_capacity(
            MIN_EXTENSION_LEN + self.tlvs.iter().map(|t| 2 + t.value.len()).sum::<usize>(),
        );
        out.push(MEHR_EXTENSION_MAGIC);
        out.push(self.version);
        out.extend_from_slice(&self.origin_cost.to_bytes());
        for tlv in &self.tlvs {
            let len = u8::try_from(tlv.value.len()).map_err(|_| ExtensionError::TlvTooLong {
                kind: tlv.kind,
                len: tlv.value.len(),
            })?;
            out.push(tlv.kind);
            out.push(len);
            out.extend_from_slice(&tlv.value);
        }
        Ok(out)
    }

    /// Appends a TLV.
    pub fn push_tlv(&mut self, kind: u8, value: Vec<u8>) -> Result<(), ExtensionError> {
        if value.len() > usize::from(u8::MAX) {
            return Err(ExtensionError::TlvTooLong {
                kind,
                len: value.len(),
            });
        }
        self.tlvs.push(Tlv { kind, value });
        Ok(())
    }

    /// The value of the first TLV of type `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// `(major, minor)`, resolving major 15 through TLV 0x01.
    pub fn version_numbers(&self) -> Result<(u16, u16), ExtensionError> {
        let major = self.version >> 4;
        if major != ESCAPE_MAJOR {
            return Ok((u16::from(major), u16::from(self.version & 0x0F)));
        }
        match self.tlv(tlv_type::EXTENDED_VERSION) {
            Some(&[a, b, c, d]) => Ok((u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]))),
            _ => Err(ExtensionError::MissingExtendedVersion),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cost() -> CompactPathCost {
        CompactPathCost {
            cost: 100,
            worst_latency_ms: 20,
            bandwidth: 80,
            hops: 0,
            mtu: 36,
        }
    }

    #[test]
    fn layout() {
        let mut ext = MehrExtension::new(cost());
        ext.push_tlv(tlv_type::TIER, vec![2]).unwrap();
        let bytes = ext.encode().unwrap();
        assert_eq!(bytes[0], 0x4E);
        assert_eq!(bytes[1], 0x10);
        assert_eq!(&bytes[2..9], &cost().to_bytes());
        assert_eq!(&bytes[9..], &[0x03, 1, 2]);
        assert_eq!(MehrExtension::parse(&bytes).unwrap(), ext);
        assert_eq!(ext.version_numbers().unwrap(), (1, 0));
    }

    #[test]
    fn unknown_tlvs_are_skipped_and_kept() {
        let mut bytes = MehrExtension::new(cost()).encode().unwrap();
        bytes.extend_from_slice(&[0xEE, 3, 1, 2, 3, 0x04, 0]);
        let ext = MehrExtension::parse(&bytes).unwrap();
        assert_eq!(ext.tlv(0xEE), Some(&[1u8, 2, 3][..]));
        assert_eq!(ext.tlv(tlv_type::LOAD), Some(&[][..]));
        assert_eq!(ext.encode().unwrap(), bytes);
    }

    #[test]
    fn newer_minor_is_accepted_other_majors_are_not() {
        let mut ext = MehrExtension::new(cost());
        ext.version = 0x17;
        assert!(MehrExtension::parse(&ext.encode().unwrap()).is_ok());
        ext.version = 0x20;
        assert_eq!(
            MehrExtension::parse(&ext.encode().unwrap()),
            Err(ExtensionError::UnsupportedMajor { major: 2 })
        );
        ext.version = 0xF0;
        assert_eq!(
            MehrExtension::parse(&ext.encode().unwrap()),
            Err(ExtensionError::MissingExtendedVersion)
        );
        ext.push_tlv(tlv_type::EXTENDED_VERSION, vec![1, 0, 9, 0])
            .unwrap();
        let parsed = MehrExtension::parse(&ext.encode().unwrap()).unwrap();
        assert_eq!(parsed.version_numbers().unwrap(), (1, 9));
    }

    #[test]
    fn malformed_input() {
        assert_eq!(MehrExtension::from_app_data(b"hello"), Ok(None));
        assert_eq!(MehrExtension::from_app_data(&[]), Ok(None));
        assert_eq!(
            MehrExtension::parse(&[0x4E, 0x10, 0]),
            Err(ExtensionError::TooShort { len: 3 })
        );
        let mut bytes = MehrExtension::new(cost()).encode().unwrap();
        bytes[0] = 0x4F;
        assert_eq!(
            MehrExtension::parse(&bytes),
            Err(ExtensionError::BadMagic { found: 0x4F })
        );
        bytes[0] = 0x4E;
        bytes.push(0x02);
        assert_eq!(
            MehrExtension::parse(&bytes),
            Err(ExtensionError::TruncatedTlvHeader)
        );
        bytes.extend_from_slice(&[5, 1]);
        assert_eq!(
            MehrExtension::parse(&bytes),
            Err(ExtensionError::TruncatedTlv {
                kind: 2,
                declared: 5,
                available: 1
            })
        );
        let mut ext = MehrExtension::new(cost());
        assert_eq!(
            ext.push_tlv(9, vec![0; 256]),
            Err(ExtensionError::TlvTooLong { kind: 9, len: 256 })
        );
        ext.tlvs.push(Tlv {
            kind: 9,
            value: vec![0; 300],
        });
        assert_eq!(
            ext.encode(),
            Err(ExtensionError::TlvTooLong { kind: 9, len: 300 })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some(ext)) = MehrExtension::from_app_data(&bytes) {
                prop_assert_eq!(ext.encode().unwrap(), bytes);
            }
        }
    }
}
