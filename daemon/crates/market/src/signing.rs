//! Domain-separated signing of market records (decision 3).
//!
//! Same scheme as `mehr_ledger::signing`: Ed25519 over `Blake3(tag ‖ canonical bytes)`, one
//! ASCII tag per record type, verified strictly. The ledger's tag enum is closed, so the
//! market's tags live here; no tag of either crate is a prefix of another (tested), so
//! `tag ‖ bytes` stays unambiguous across both.

use ed25519_dalek::{Signature, Signer};

use crate::identity::{NodeKey, PeerKey};

/// Length of an Ed25519 signature on the wire.
pub const SIGNATURE_LEN: usize = 64;

/// The market record types; each has its own signing tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarketTag {
    /// A node's signed capability advertisement.
    Capabilities,
    /// A consumer's agreement request.
    Request,
    /// A provider's offer answering a request.
    Offer,
    /// A provider's rejection of a request.
    Rejection,
    /// The consumer's countersignature that binds an agreement.
    Acceptance,
    /// Either side's cancellation of an agreement.
    Cancel,
    /// A destination's receipt for a delivered packet.
    DeliveryReceipt,
    /// A consumer's heartbeat ping.
    Ping,
    /// A provider's heartbeat pong.
    Pong,
    /// A provider's signed compute result.
    ComputeResult,
}

impl MarketTag {
    /// Every tag, for exhaustive checks.
    pub const ALL: [MarketTag; 10] = [
        MarketTag::Capabilities,
        MarketTag::Request,
        MarketTag::Offer,
        MarketTag::Rejection,
        MarketTag::Acceptance,
        MarketTag::Cancel,
        MarketTag::DeliveryReceipt,
        MarketTag::Ping,
        MarketTag::Pong,
        MarketTag::ComputeResult,
    ];

    /// The ASCII tag hashed in front of the record's canonical bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            MarketTag::Capabilities => b"mehr/market/capabilities/v1",
            MarketTag::Request => b"mehr/market/request/v1",
            MarketTag::Offer => b"mehr/market/offer/v1",
            MarketTag::Rejection => b"mehr/market/rejection/v1",
            MarketTag::Acceptance => b"mehr/market/acceptance/v1",
            MarketTag::Cancel => b"mehr/market/cancel/v1",
            MarketTag::DeliveryReceipt => b"mehr/market/delivery-receipt/v1",
            MarketTag::Ping => b"mehr/market/ping/v1",
            MarketTag::Pong => b"mehr/market/pong/v1",
            MarketTag::ComputeResult => b"mehr/market/compute-result/v1",
        }
    }
}

/// `Blake3(tag ‖ bytes)`: the 32-byte digest that is actually signed.
pub fn signing_digest(tag: MarketTag, bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tag.as_bytes());
    hasher.update(bytes);
    *hasher.finalize().as_bytes()
}

/// Signs `bytes` as a record of type `tag`.
pub(crate) fn sign(key: &NodeKey, tag: MarketTag, bytes: &[u8]) -> Signature {
    key.signing_key().sign(&signing_digest(tag, bytes))
}

/// Verifies a record signature strictly (no small-order keys, canonical `R` and `s`).
pub(crate) fn verify(key: &PeerKey, tag: MarketTag, bytes: &[u8], signature: &Signature) -> bool {
    key.verifying_key()
        .verify_strict(&signing_digest(tag, bytes), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use mehr_ledger::signing::RecordTag;

    #[test]
    fn no_tag_prefixes_another_across_market_and_ledger() {
        let mut tags: Vec<&[u8]> = MarketTag::ALL.iter().map(|t| t.as_bytes()).collect();
        tags.extend(RecordTag::ALL.iter().map(|t| t.as_bytes()));
        for (i, a) in tags.iter().enumerate() {
            for (j, b) in tags.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{:?} prefixes {:?}", a, b);
                }
            }
        }
    }

    #[test]
    fn signature_binds_tag_bytes_and_key() {
        let k = node_key(1);
        let sig = sign(&k, MarketTag::Offer, b"x");
        assert!(verify(&k.peer_key(), MarketTag::Offer, b"x", &sig));
        assert!(!verify(&k.peer_key(), MarketTag::Request, b"x", &sig));
        assert!(!verify(&k.peer_key(), MarketTag::Offer, b"y", &sig));
        assert!(!verify(
            &node_key(2).peer_key(),
            MarketTag::Offer,
            b"x",
            &sig
        ));
    }

    #[test]
    fn digest_is_blake3_of_tag_then_bytes() {
        let mut pre = b"mehr/market/ping/v1".to_vec();
        pre.extend_from_slice(b"abc");
        assert_eq!(
            signing_digest(MarketTag::Ping, b"abc"),
            *blake3::hash(&pre).as_bytes()
        );
    }
}
