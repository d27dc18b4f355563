//! Domain-separated signing (decision 3): every record is signed as Ed25519 over
//! `Blake3(tag ‖ canonical bytes)` with one ASCII tag per record type.
//!
//! A signature made for one record type can therefore never be replayed as another, even when
//! two records happen to share their canonical bytes. No tag is a prefix of another (tested),
//! so `tag ‖ bytes` is unambiguous without a length prefix.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Length of an Ed25519 signature on the wire.
pub const SIGNATURE_LEN: usize = 64;

/// The record types this crate signs; each has its own tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordTag {
    /// A co-signed payment channel state (open, update).
    ChannelState,
    /// A cooperative settlement record, published to the ledger.
    Settlement,
    /// The filer's signature on a unilateral settlement.
    UnilateralSettlement,
    /// An epoch proposer's signature on an epoch summary.
    EpochSummary,
    /// A node's ACK of an epoch proposal.
    EpochAck,
}

impl RecordTag {
    /// Every tag, for exhaustive checks.
    pub const ALL: [RecordTag; 5] = [
        RecordTag::ChannelState,
        RecordTag::Settlement,
        RecordTag::UnilateralSettlement,
        RecordTag::EpochSummary,
        RecordTag::EpochAck,
    ];

    /// The ASCII tag hashed in front of the record's canonical bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            RecordTag::ChannelState => b"mehr/channel-state/v1",
            RecordTag::Settlement => b"mehr/settlement/v1",
            RecordTag::UnilateralSettlement => b"mehr/unilateral-settlement/v1",
            RecordTag::EpochSummary => b"mehr/epoch-summary/v1",
            RecordTag::EpochAck => b"mehr/epoch-ack/v1",
        }
    }
}

/// `Blake3(tag ‖ bytes)`: the 32-byte digest that is actually signed.
pub fn signing_digest(tag: RecordTag, bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag.as_bytes());
    hasher.update(bytes);
    *hasher.finalize().as_bytes()
}

/// Signs `bytes` as a record of type `tag`.
pub fn sign_record(key: &SigningKey, tag: RecordTag, bytes: &[u8]) -> Signature {
    key.sign(&signing_digest(tag, bytes))
}

/// Verifies a record signature. Uses strict verification (rejects small-order keys and
/// non-canonical `R`/`s`), so a valid signature cannot be mutated into another valid one.
pub fn verify_record(
    key: &VerifyingKey,
    tag: RecordTag,
    bytes: &[u8],
    signature: &Signature,
) -> bool {
    key.verify_strict(&signing_digest(tag, bytes), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn no_tag_is_a_prefix_of_another() {
        for a in RecordTag::ALL {
            for b in RecordTag::ALL {
                if a != b {
                    assert!(
                        !b.as_bytes().starts_with(a.as_bytes()),
                        "{a:?} prefixes {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn signature_verifies_only_under_its_own_tag_and_key() {
        let k = key(7);
        let sig = sign_record(&k, RecordTag::Settlement, b"record");
        assert!(verify_record(
            &k.verifying_key(),
            RecordTag::Settlement,
            b"record",
            &sig
        ));
        assert!(!verify_record(
            &k.verifying_key(),
            RecordTag::ChannelState,
            b"record",
            &sig
        ));
        assert!(!verify_record(
            &k.verifying_key(),
            RecordTag::Settlement,
            b"recorD",
            &sig
        ));
        assert!(!verify_record(
            &key(8).verifying_key(),
            RecordTag::Settlement,
            b"record",
            &sig
        ));
    }

    #[test]
    fn digest_is_blake3_of_tag_then_bytes() {
        let mut preimage = b"mehr/settlement/v1".to_vec();
        preimage.extend_from_slice(b"xyz");
        assert_eq!(
            signing_digest(RecordTag::Settlement, b"xyz"),
            *blake3::hash(&preimage).as_bytes()
        );
    }
}
