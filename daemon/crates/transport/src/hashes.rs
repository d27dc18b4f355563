//! SHA-256 digests and the fixed-size hash types Reticulum puts on the wire.
//!
//! Every address on the wire is a SHA-256 digest truncated to 16 bytes; name hashes are
//! truncated to 10. Distinct newtypes keep a destination hash from being passed where an
//! identity hash or link id is expected.

use sha2::{Digest, Sha256};

/// Length of a full SHA-256 digest.
pub const FULL_HASH_LEN: usize = 32;
/// Length of a truncated hash (addresses, identity hashes, link ids).
pub const TRUNCATED_HASH_LEN: usize = 16;
/// Length of a destination name hash.
pub const NAME_HASH_LEN: usize = 10;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; FULL_HASH_LEN] {
    Sha256::digest(data).into()
}

/// SHA-256 of `data`, first 16 bytes.
pub fn truncated_hash(data: &[u8]) -> [u8; TRUNCATED_HASH_LEN] {
    truncate(&sha256(data))
}

/// First 16 bytes of a full digest.
pub(crate) fn truncate(full: &[u8; FULL_HASH_LEN]) -> [u8; TRUNCATED_HASH_LEN] {
    let mut out = [0u8; TRUNCATED_HASH_LEN];
    out.copy_from_slice(&full[..TRUNCATED_HASH_LEN]);
    out
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn new(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Reads the value from a slice of exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// Lower-case hex form.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
    };
}

hash_newtype!(
    /// A 16-byte address in the packet header: a destination hash, a link id or (for proofs)
    /// the truncated hash of the proved packet.
    DestinationHash,
    TRUNCATED_HASH_LEN
);
hash_newtype!(
    /// SHA-256 of an identity's 64-byte public key, first 16 bytes. A transport node's
    /// identity hash is its transport id in HEADER_2 packets.
    IdentityHash,
    TRUNCATED_HASH_LEN
);
hash_newtype!(
    /// Identifier of a link: truncated hash of the link request's hashable part.
    LinkId,
    TRUNCATED_HASH_LEN
);
hash_newtype!(
    /// SHA-256 of a destination's dotted name, first 10 bytes.
    NameHash,
    NAME_HASH_LEN
);
hash_newtype!(
    /// Full SHA-256 of a packet's hashable part; stable across hops.
    PacketHash,
    FULL_HASH_LEN
);

impl PacketHash {
    /// The first 16 bytes: the address a proof for this packet is sent to, and the key of
    /// the reverse table.
    pub fn truncated(&self) -> DestinationHash {
        DestinationHash(truncate(&self.0))
    }
}

impl From<LinkId> for DestinationHash {
    fn from(id: LinkId) -> Self {
        DestinationHash(id.0)
    }
}

impl From<DestinationHash> for LinkId {
    fn from(hash: DestinationHash) -> Self {
        LinkId(hash.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_fips_180_2_vector() {
        // FIPS 180-2 appendix B.1 ("abc").
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(truncated_hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223"
        );
    }

    #[test]
    fn packet_hash_truncates_to_first_sixteen_bytes() {
        let full = PacketHash(sha256(b"abc"));
        assert_eq!(full.truncated().0, truncated_hash(b"abc"));
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(DestinationHash::from_slice(&[0u8; 15]).is_none());
        assert!(DestinationHash::from_slice(&[0u8; 17]).is_none());
        assert_eq!(
            DestinationHash::from_slice(&[7u8; 16]),
            Some(DestinationHash([7; 16]))
        );
    }
}
