//! Delivery receipts (seed 003 relay verification, decision 4).
//!
//! ```text
//! Receipt: packet_hash [32], signer [16] (the destination's node id), sig [64]   (112 B)
//! ```
//!
//! `packet_hash = Blake3(destination ‖ context ‖ data)` is stable across hops (decision 4), so
//! every relay on the path holds the same hash. The seeds' receipt also carries a timestamp;
//! decision 8 keeps local clocks off the wire, and a receipt is about one packet, which its
//! hash already names, so there is none. Whoever pays against receipts de-duplicates them by
//! packet hash. Per §8 item 18, receipts back reservation chunks, not lottery wins.

use mehr_ledger::NodeId;
use serde::{Deserialize, Serialize};

use crate::record::signed_record;
use crate::signing::MarketTag;
use crate::wire::{DecodeError, Reader, Writer};

/// Encoded length of a delivery receipt.
pub const RECEIPT_LEN: usize = 112;

/// `Blake3(destination ‖ context ‖ data)`: the hop-invariant packet hash (decision 4).
pub fn packet_hash(destination: &[u8; 16], context: u8, data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(destination);
    h.update(&[context]);
    h.update(data);
    *h.finalize().as_bytes()
}

/// What the destination signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The delivered packet.
    pub packet_hash: [u8; 32],
    /// The destination's node id (signer).
    pub signer: NodeId,
}

impl Receipt {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.signer
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.packet_hash);
        w.raw(&self.signer.0);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            packet_hash: r.array()?,
            signer: NodeId(r.array()?),
        })
    }
}

signed_record!(
    /// A signed [`Receipt`].
    DeliveryReceipt,
    Receipt,
    MarketTag::DeliveryReceipt,
    "delivery receipt",
    RECEIPT_LEN
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use crate::record::RecordError;
    use proptest::prelude::*;

    #[test]
    fn receipt_round_trips_and_rejects_forgeries() {
        let dest = node_key(4);
        let hash = packet_hash(&[1; 16], 0, b"payload");
        let receipt = DeliveryReceipt::sign(
            Receipt {
                packet_hash: hash,
                signer: dest.node_id(),
            },
            &dest,
        )
        .unwrap();
        assert_eq!(receipt.as_bytes().len(), RECEIPT_LEN);
        let decoded = DeliveryReceipt::decode(receipt.as_bytes()).unwrap();
        decoded.verify(&dest.peer_key()).unwrap();
        assert_eq!(decoded.body().packet_hash, hash);
        // A relay cannot sign for the destination.
        let relay = node_key(5);
        assert!(matches!(
            DeliveryReceipt::sign(
                Receipt {
                    packet_hash: hash,
                    signer: dest.node_id()
                },
                &relay
            ),
            Err(RecordError::WrongSigner { .. })
        ));
        // Nor move a receipt to another packet.
        let mut bytes = receipt.as_bytes().to_vec();
        bytes[0] ^= 1;
        let moved = DeliveryReceipt::decode(&bytes).unwrap();
        assert!(matches!(
            moved.verify(&dest.peer_key()),
            Err(RecordError::BadSignature { .. })
        ));
        assert!(DeliveryReceipt::decode(&bytes[..111]).is_err());
    }

    #[test]
    fn packet_hash_binds_destination_context_and_data() {
        let h = packet_hash(&[1; 16], 7, b"x");
        let mut pre = vec![1u8; 16];
        pre.push(7);
        pre.push(b'x');
        assert_eq!(h, *blake3::hash(&pre).as_bytes());
        assert_ne!(h, packet_hash(&[1; 16], 8, b"x"));
        assert_ne!(h, packet_hash(&[2; 16], 7, b"x"));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(r) = DeliveryReceipt::decode(&bytes) {
                let _ = r.verify(&node_key(1).peer_key());
            }
        }
    }
}
