//! Metering relay agreements by delivery receipts.
//!
//! Seed 003 verifies relaying by delivery receipts signed by the destination. Every packet
//! this node sends is proved by its destination with a signature over the packet's hash (a
//! link message by acknowledgements over the link the destination authenticated), so the
//! consumer of a relay agreement holds a receipt for each message the relay carried, and pays
//! for those bytes and no others. Charging each packet would write the agreement and update
//! the channel hundreds of times a second; PROTOCOL.md pays relaying "per 1 MB chunk against
//! a DeliveryReceipt", so delivered bytes are added up here and billed a chunk at a time,
//! or after a quiet spell so that a trickle is billed too.

use std::collections::{BTreeSet, HashMap};

use mehr_market::{
    CostStructure, NodeId,
    agreement::{Agreement, AgreementState, Capability, Role},
};

use super::state::State;
use crate::store::StoreError;

/// How long delivered bytes may wait for their chunk to fill before they are billed anyway.
pub(super) const BILL_AFTER_MS: u64 = 10_000;

/// Bytes delivered under one agreement and not billed yet.
#[derive(Debug, Clone, Copy)]
struct Unbilled {
    bytes: u64,
    since_ms: u64,
}

/// Delivered bytes per relay agreement (by agreement hash), waiting to be billed.
#[derive(Debug)]
pub(super) struct RelayMeter {
    chunk_bytes: u64,
    unbilled: HashMap<[u8; 32], Unbilled>,
}

impl RelayMeter {
    /// A meter that bills every `chunk_bytes` (at least one byte).
    pub(super) fn new(chunk_bytes: u64) -> Self {
        RelayMeter {
            chunk_bytes: chunk_bytes.max(1),
            unbilled: HashMap::new(),
        }
    }

    /// Adds `bytes` proved delivered under agreement `hash` at `now_ms`. Returns the bytes to
    /// bill now, once a chunk has filled.
    pub(super) fn add(&mut self, hash: [u8; 32], bytes: u64, now_ms: u64) -> Option<u64> {
        let entry = self.unbilled.entry(hash).or_insert(Unbilled {
            bytes: 0,
            since_ms: now_ms,
        });
        entry.bytes = entry.bytes.saturating_add(bytes);
        (entry.bytes >= self.chunk_bytes).then(|| self.take(&hash))
    }

    /// The agreements whose bytes have waited [`BILL_AFTER_MS`] or more, with those bytes
    /// (taken off the meter).
    pub(super) fn due(&mut self, now_ms: u64) -> Vec<([u8; 32], u64)> {
        let due: Vec<[u8; 32]> = self
            .unbilled
            .iter()
            .filter(|(_, u)| now_ms.saturating_sub(u.since_ms) >= BILL_AFTER_MS)
            .map(|(hash, _)| *hash)
            .collect();
        due.into_iter()
            .map(|hash| (hash, self.take(&hash)))
            .filter(|(_, bytes)| *bytes > 0)
            .collect()
    }

    /// Takes what agreement `hash` has not been billed for (0 if nothing).
    pub(super) fn take(&mut self, hash: &[u8; 32]) -> u64 {
        self.unbilled.remove(hash).map_or(0, |u| u.bytes)
    }
}

impl State {
    /// The active relay agreement under which this node buys relaying from `relay`.
    fn relay_agreement_with(&self, relay: NodeId) -> Option<[u8; 32]> {
        self.agreements
            .iter()
            .find(|(_, e)| metered_relay(&e.agreement) == Some(relay))
            .map(|(hash, _)| *hash)
    }

    /// `bytes` this node sent through `relay` were proved delivered by their destination.
    /// Under an active relay agreement with `relay` they are charged, a chunk at a time.
    pub(super) fn relay_delivered(&mut self, relay: NodeId, bytes: u64, now: u64) {
        // Called for every proved message: the published cover answers most calls without a
        // scan of the agreements.
        if !self.deps.relay_cover.borrow().contains(&relay) {
            return;
        }
        let Some(hash) = self.relay_agreement_with(relay) else {
            return;
        };
        if let Some(bill) = self.relay_meter.add(hash, bytes, now) {
            self.bill_relay(hash, bill, now);
        }
    }

    pub(super) fn bill_relays_due(&mut self, now: u64) {
        for (hash, bytes) in self.relay_meter.due(now) {
            self.bill_relay(hash, bytes, now);
        }
    }

    fn bill_relay(&mut self, hash: [u8; 32], bytes: u64, now: u64) {
        let Some(per_byte) = self
            .agreements
            .get(&hash)
            .and_then(|e| match e.agreement.cost() {
                Some(CostStructure::PerByte { per_byte }) => Some(per_byte),
                _ => None,
            })
        else {
            return;
        };
        if let Err(e) = self.charge(hash, bytes, bytes.saturating_mul(per_byte), now) {
            tracing::error!(error = %e, "cannot persist a relay charge");
        }
    }

    /// The last bill of a relay agreement that ended: what was delivered is owed unless the
    /// agreement was terminated for failing verification, which stops payment.
    pub(super) fn bill_relay_rest(
        &mut self,
        hash: [u8; 32],
        after: AgreementState,
        now: u64,
    ) -> Result<(), StoreError> {
        let bytes = self.relay_meter.take(&hash);
        if bytes == 0 || after == AgreementState::Terminated {
            return Ok(());
        }
        let per_byte = match self.agreements.get(&hash).and_then(|e| e.agreement.cost()) {
            Some(CostStructure::PerByte { per_byte }) => per_byte,
            _ => return Ok(()),
        };
        self.apply_charge(hash, bytes, bytes.saturating_mul(per_byte), now)
    }

    /// Tells the ledger which relays this node pays under an agreement, so that it declines
    /// their lottery tickets for the packets the agreement pays (this node's own).
    pub(super) fn publish_relay_cover(&self) {
        let cover: BTreeSet<NodeId> = self
            .agreements
            .values()
            .filter_map(|e| metered_relay(&e.agreement))
            .collect();
        self.deps.relay_cover.send_if_modified(|current| {
            let changed = *current != cover;
            if changed {
                *current = cover;
            }
            changed
        });
    }
}

/// The relay whose carrying of this node's messages `agreement` pays per proved byte: an
/// active relay agreement this node consumes, priced per byte. Proxy agreements are priced
/// per byte too, but what a gateway carries beyond the mesh has no receipt.
fn metered_relay(agreement: &Agreement) -> Option<NodeId> {
    let metered = agreement.role() == Role::Consumer
        && agreement.state() == AgreementState::Active
        && agreement.request().body().capability == Capability::Relay
        && matches!(agreement.cost(), Some(CostStructure::PerByte { .. }));
    metered.then(|| agreement.counterparty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_chunk_is_billed_at_once_and_a_trickle_after_a_quiet_spell() {
        let mut meter = RelayMeter::new(1_000);
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(meter.add(a, 600, 0), None);
        assert_eq!(meter.add(a, 500, 5), Some(1_100), "the chunk filled");
        assert_eq!(meter.add(a, 10, 6), None);
        assert_eq!(meter.add(b, 20, 1_000), None);
        assert!(meter.due(6 + BILL_AFTER_MS - 1).is_empty());
        assert_eq!(meter.due(6 + BILL_AFTER_MS), vec![(a, 10)]);
        assert_eq!(meter.due(1_000 + BILL_AFTER_MS), vec![(b, 20)]);
        assert!(meter.due(u64::MAX).is_empty(), "nothing billed twice");
    }

    #[test]
    fn an_ending_agreement_takes_what_it_has_not_been_billed_for() {
        let mut meter = RelayMeter::new(1_000);
        meter.add([1; 32], 300, 0);
        assert_eq!(meter.take(&[1; 32]), 300);
        assert_eq!(meter.take(&[1; 32]), 0);
        assert_eq!(meter.add([3; 32], 5, 0), None);
        assert_eq!(
            RelayMeter::new(0).add([4; 32], 1, 0),
            Some(1),
            "a chunk is at least a byte"
        );
    }
}
