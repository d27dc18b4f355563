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

use std::collections::HashMap;

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
