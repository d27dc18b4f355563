//! Delivery proofs.
//!
//! The receiver of a packet proves delivery by signing the packet's full hash. The proof is a
//! PROOF packet addressed to the proved packet's truncated hash (destination type SINGLE for
//! packets to destinations, LINK and the link id for link packets), travelling back along the
//! reverse table. Its data is the signature alone (implicit, Reticulum's default for
//! destinations) or `packet_hash ‖ signature` (explicit, always used on links). Proofs are
//! not encrypted.

use ed25519_dalek::VerifyingKey;

use crate::hashes::{FULL_HASH_LEN, PacketHash};
use crate::identity::{PrivateIdentity, SIGNATURE_LEN, verify_with};
use crate::packet::{Context, DestinationType, Packet, PacketType};

/// Why proof data is malformed or does not prove the packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// Neither 64 (implicit) nor 96 (explicit) bytes.
    #[error("proof data of {found} bytes is neither an implicit (64) nor an explicit (96) proof")]
    Length {
        /// Length found.
        found: usize,
    },
    /// An explicit proof for a different packet.
    #[error("proof is for packet {found}, not {expected}")]
    WrongPacket {
        /// Packet hash awaited.
        expected: PacketHash,
        /// Packet hash in the proof.
        found: PacketHash,
    },
    /// The signature does not verify.
    #[error("proof signature does not verify")]
    BadSignature,
}

/// The data field of a proof packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofData {
    /// The signature alone.
    Implicit {
        /// Signature over the packet hash.
        signature: [u8; SIGNATURE_LEN],
    },
    /// The packet hash followed by the signature.
    Explicit {
        /// Hash of the proved packet.
        packet_hash: PacketHash,
        /// Signature over the packet hash.
        signature: [u8; SIGNATURE_LEN],
    },
}

impl ProofData {
    /// Signs `packet_hash`.
    pub fn sign_with(
        signer: &ed25519_dalek::SigningKey,
        packet_hash: &PacketHash,
        explicit: bool,
    ) -> Self {
        use ed25519_dalek::Signer as _;
        let signature = signer.sign(packet_hash.as_bytes()).to_bytes();
        if explicit {
            Self::Explicit {
                packet_hash: *packet_hash,
                signature,
            }
        } else {
            Self::Implicit { signature }
        }
    }

    /// Reads proof data by its length.
    pub fn parse(data: &[u8]) -> Result<Self, ProofError> {
        match data.len() {
            SIGNATURE_LEN => {
                let mut signature = [0u8; SIGNATURE_LEN];
                signature.copy_from_slice(data);
                Ok(Self::Implicit { signature })
            }
            n if n == FULL_HASH_LEN + SIGNATURE_LEN => {
                let (hash, sig) = data.split_at(FULL_HASH_LEN);
                let mut packet_hash = [0u8; FULL_HASH_LEN];
                packet_hash.copy_from_slice(hash);
                let mut signature = [0u8; SIGNATURE_LEN];
                signature.copy_from_slice(sig);
                Ok(Self::Explicit {
                    packet_hash: PacketHash(packet_hash),
                    signature,
                })
            }
            found => Err(ProofError::Length { found }),
        }
    }

    /// The data field.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Implicit { signature } => signature.to_vec(),
            Self::Explicit {
                packet_hash,
                signature,
            } => {
                let mut out = packet_hash.as_bytes().to_vec();
                out.extend_from_slice(signature);
                out
            }
        }
    }

    /// Checks that this proves `expected` under `key`.
    pub fn verify(&self, expected: &PacketHash, key: &VerifyingKey) -> Result<(), ProofError> {
        let signature = match self {
            Self::Implicit { signature } => signature,
            Self::Explicit {
                packet_hash,
                signature,
            } => {
                if packet_hash != expected {
                    return Err(ProofError::WrongPacket {
                        expected: *expected,
                        found: *packet_hash,
                    });
                }
                signature
            }
        };
        verify_with(key, expected.as_bytes(), signature).map_err(|_| ProofError::BadSignature)
    }
}

/// The proof packet a destination's identity sends for a received packet (implicit unless
/// `explicit`).
pub fn prove_packet(proved: &PacketHash, signer: &PrivateIdentity, explicit: bool) -> Packet {
    let data = ProofData::sign_with(signer.signing_key(), proved, explicit);
    Packet::new(
        PacketType::Proof,
        DestinationType::Single,
        proved.truncated(),
        Context::NONE,
        data.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn implicit_and_explicit_proofs() {
        let signer = PrivateIdentity::from_private_key(&[5; 64]);
        let hash = PacketHash([9; 32]);
        let implicit = prove_packet(&hash, &signer, false);
        assert_eq!(implicit.destination, hash.truncated());
        assert_eq!(implicit.packet_type, PacketType::Proof);
        assert_eq!(implicit.data.len(), 64);
        ProofData::parse(&implicit.data)
            .unwrap()
            .verify(&hash, signer.public().signing_key())
            .unwrap();

        let explicit = prove_packet(&hash, &signer, true);
        assert_eq!(&explicit.data[..32], &[9; 32]);
        let parsed = ProofData::parse(&explicit.data).unwrap();
        parsed.verify(&hash, signer.public().signing_key()).unwrap();
        assert_eq!(
            parsed.verify(&PacketHash([8; 32]), signer.public().signing_key()),
            Err(ProofError::WrongPacket {
                expected: PacketHash([8; 32]),
                found: hash
            })
        );
        let other = PrivateIdentity::from_private_key(&[6; 64]);
        assert_eq!(
            parsed.verify(&hash, other.public().signing_key()),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            ProofData::parse(&[0; 65]),
            Err(ProofError::Length { found: 65 })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let key = PrivateIdentity::from_private_key(&[5; 64]);
            if let Ok(p) = ProofData::parse(&bytes) {
                prop_assert_eq!(p.encode(), bytes.clone());
                prop_assert!(p.verify(&PacketHash([0; 32]), key.public().signing_key()).is_err());
            }
        }
    }
}
