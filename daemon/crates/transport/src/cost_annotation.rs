//! The signed, link-local path-cost annotation (PROTOCOL.md decision 2).
//!
//! Announces are signed by their origin, so no relay may add its fee to them. Instead a Mehr
//! relay that forwards an announce tells its Mehr neighbours, over the link between them, what
//! the path to that destination costs **through it**: its own accumulated
//! [`CompactPathCost`], keyed by the announce it refers to (destination hash and the
//! announce's random hash, so a stale annotation cannot be attached to a newer announce).
//! Plain Reticulum hops add nothing; a neighbour adds its own hop with
//! [`CompactPathCost::add_hop`] before passing the figure on.
//!
//! ```text
//! version(1) = 0x01 ‖ destination(16) ‖ announce random_hash(10) ‖ CompactPathCost(7)
//!   ‖ relay identity hash(16) ‖ signature(64)          = 114 bytes
//! signature = Ed25519(relay, Blake3("mehr/path-cost" ‖ all fields before the signature))
//! ```
//!
//! The relay's identity hash is inside the signed bytes, so an annotation cannot be replayed
//! as if another relay had made it.

use crate::announce::RANDOM_HASH_LEN;
use crate::hashes::{DestinationHash, IdentityHash};
use crate::identity::{Identity, PrivateIdentity, SIGNATURE_LEN};
use crate::path_cost::{COMPACT_PATH_COST_LEN, CompactPathCost};

/// Domain tag hashed in front of the signed fields.
pub const ANNOTATION_DOMAIN_TAG: &[u8] = b"mehr/path-cost";
/// Format version this crate writes and reads.
pub const ANNOTATION_VERSION: u8 = 0x01;
/// Length of the signed fields.
const SIGNED_LEN: usize =
    1 + DestinationHash::LEN + RANDOM_HASH_LEN + COMPACT_PATH_COST_LEN + IdentityHash::LEN;
/// Encoded length.
pub const ANNOTATION_LEN: usize = SIGNED_LEN + SIGNATURE_LEN;

/// Why an annotation is malformed or not authentic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    /// Wrong length.
    #[error("path-cost annotation must be {ANNOTATION_LEN} bytes, got {found}")]
    Length {
        /// Length supplied.
        found: usize,
    },
    /// Unknown format version.
    #[error(
        "path-cost annotation version {found} is not supported (expected {ANNOTATION_VERSION})"
    )]
    Version {
        /// Version byte found.
        found: u8,
    },
    /// Signed by someone other than the relay it names.
    #[error("path-cost annotation names relay {named} but is checked against {given}")]
    WrongRelay {
        /// Relay named in the annotation.
        named: IdentityHash,
        /// Identity it was checked against.
        given: IdentityHash,
    },
    /// The signature does not verify.
    #[error("path-cost annotation signature does not verify")]
    BadSignature,
}

/// A relay's signed statement of its cost to a destination, for one announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathCostAnnotation {
    /// The destination the cost is for.
    pub destination: DestinationHash,
    /// Random hash of the announce the cost refers to.
    pub announce_random_hash: [u8; RANDOM_HASH_LEN],
    /// Cost of the path from the relay to the destination, the relay's own hop included.
    pub cost: CompactPathCost,
    /// Identity hash of the relay that signed it.
    pub relay: IdentityHash,
    /// Ed25519 signature over the domain-tagged Blake3 hash of the fields above.
    pub signature: [u8; SIGNATURE_LEN],
}

impl PathCostAnnotation {
    /// Builds and signs an annotation.
    pub fn sign(
        relay: &PrivateIdentity,
        destination: DestinationHash,
        announce_random_hash: [u8; RANDOM_HASH_LEN],
        cost: CompactPathCost,
    ) -> Self {
        let mut annotation = Self {
            destination,
            announce_random_hash,
            cost,
            relay: relay.hash(),
            signature: [0; SIGNATURE_LEN],
        };
        annotation.signature = relay.sign(&annotation.digest());
        annotation
    }

    /// Reads the 114-byte encoding (the signature is not checked here).
    pub fn parse(bytes: &[u8]) -> Result<Self, AnnotationError> {
        let b: &[u8; ANNOTATION_LEN] = bytes
            .try_into()
            .map_err(|_| AnnotationError::Length { found: bytes.len() })?;
        if b[0] != ANNOTATION_VERSION {
            return Err(AnnotationError::Version { found: b[0] });
        }
        let mut at = 1;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let destination = DestinationHash::from_slice(take(DestinationHash::LEN))
            .ok_or(AnnotationError::Length { found: bytes.len() })?;
        let mut announce_random_hash = [0u8; RANDOM_HASH_LEN];
        announce_random_hash.copy_from_slice(take(RANDOM_HASH_LEN));
        let cost = CompactPathCost::parse(take(COMPACT_PATH_COST_LEN))
            .map_err(|_| AnnotationError::Length { found: bytes.len() })?;
        let relay = IdentityHash::from_slice(take(IdentityHash::LEN))
            .ok_or(AnnotationError::Length { found: bytes.len() })?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(take(SIGNATURE_LEN));
        Ok(Self {
            destination,
            announce_random_hash,
            cost,
            relay,
            signature,
        })
    }

    /// The 114-byte encoding.
    pub fn encode(&self) -> [u8; ANNOTATION_LEN] {
        let mut out = [0u8; ANNOTATION_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.signed_fields());
        out[SIGNED_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// Checks that `relay` is the relay named and that it signed the annotation.
    pub fn verify(&self, relay: &Identity) -> Result<(), AnnotationError> {
        if relay.hash() != self.relay {
            return Err(AnnotationError::WrongRelay {
                named: self.relay,
                given: relay.hash(),
            });
        }
        relay
            .verify(&self.digest(), &self.signature)
            .map_err(|_| AnnotationError::BadSignature)
    }

    /// The key a receiver files the annotation under.
    pub fn key(&self) -> (DestinationHash, [u8; RANDOM_HASH_LEN]) {
        (self.destination, self.announce_random_hash)
    }

    fn signed_fields(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[0] = ANNOTATION_VERSION;
        let mut at = 1;
        for part in [
            &self.destination.as_bytes()[..],
            &self.announce_random_hash[..],
            &self.cost.to_bytes()[..],
            &self.relay.as_bytes()[..],
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(ANNOTATION_DOMAIN_TAG);
        hasher.update(&self.signed_fields());
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn relay() -> PrivateIdentity {
        PrivateIdentity::from_private_key(&[0x33; 64])
    }

    fn sample() -> PathCostAnnotation {
        let cost = CompactPathCost {
            cost: 120,
            worst_latency_ms: 50,
            bandwidth: 60,
            hops: 2,
            mtu: 36,
        };
        PathCostAnnotation::sign(&relay(), DestinationHash([7; 16]), [1; 10], cost)
    }

    #[test]
    fn round_trip_and_verify() {
        let a = sample();
        let bytes = a.encode();
        assert_eq!(bytes.len(), 114);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..17], &[7; 16]);
        let parsed = PathCostAnnotation::parse(&bytes).unwrap();
        assert_eq!(parsed, a);
        parsed.verify(relay().public()).unwrap();
        assert_eq!(parsed.key(), (DestinationHash([7; 16]), [1; 10]));
    }

    #[test]
    fn signature_is_domain_separated_blake3() {
        let a = sample();
        let mut h = blake3::Hasher::new();
        h.update(b"mehr/path-cost");
        h.update(&a.encode()[..50]);
        relay()
            .public()
            .verify(h.finalize().as_bytes(), &a.signature)
            .unwrap();
    }

    #[test]
    fn tampering_and_wrong_relay_are_detected() {
        let a = sample();
        let mut bytes = a.encode();
        bytes[30] ^= 1; // cost field
        assert_eq!(
            PathCostAnnotation::parse(&bytes)
                .unwrap()
                .verify(relay().public()),
            Err(AnnotationError::BadSignature)
        );
        let other = PrivateIdentity::from_private_key(&[0x44; 64]);
        assert_eq!(
            a.verify(other.public()),
            Err(AnnotationError::WrongRelay {
                named: relay().hash(),
                given: other.hash()
            })
        );
        let mut v2 = a.encode();
        v2[0] = 2;
        assert_eq!(
            PathCostAnnotation::parse(&v2),
            Err(AnnotationError::Version { found: 2 })
        );
        assert_eq!(
            PathCostAnnotation::parse(&[1; 10]),
            Err(AnnotationError::Length { found: 10 })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 100..130)) {
            if let Ok(a) = PathCostAnnotation::parse(&bytes) {
                prop_assert!(a.verify(relay().public()).is_err());
            }
        }
    }
}
