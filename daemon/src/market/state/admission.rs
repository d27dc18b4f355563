//! Which agreement requests the provider side takes in, and how long finished agreements
//! are kept (docs/PROTOCOL.md, "Limits", "Parts").
//!
//! Every request accepted is an agreement held in memory and a synced RocksDB write, and any
//! announced key may send one, so:
//!
//! - each requesting key has a token bucket: [`NEWCOMER_BURST`] requests at once, one more
//!   every [`REFILL_MS`]; a key with a history here (a reputation with more successes than
//!   failures) gets [`PROVEN_BURST`];
//! - the node holds at most [`MAX_AGREEMENTS`] agreements; past it new requests are refused;
//! - a final agreement (rejected, cancelled, expired, terminated, completed) is dropped from
//!   memory and RocksDB [`FINAL_RETENTION_MS`] after its last change, so the set (and the scan
//!   at start) stays bounded by the live ones and one retention's worth of finished ones.

use std::collections::HashMap;

use mehr_market::NodeId;

/// The most agreements held, all roles and states together.
pub(crate) const MAX_AGREEMENTS: usize = 20_000;
/// How long a final agreement stays listed after its last change (7 days).
pub(crate) const FINAL_RETENTION_MS: u64 = 7 * 86_400_000;
/// Requests a key new to this node may send at once.
const NEWCOMER_BURST: f64 = 8.0;
/// Requests a key with a history here may send at once.
const PROVEN_BURST: f64 = 64.0;
/// One more request is earned every this many milliseconds.
const REFILL_MS: f64 = 10_000.0;
/// Keys whose buckets are tracked; full (idle) buckets are forgotten first when more come.
const MAX_TRACKED_KEYS: usize = 8_192;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Per-key admission of agreement requests.
#[derive(Debug, Default)]
pub(crate) struct RequestAdmission {
    by_key: HashMap<NodeId, Bucket>,
}

impl RequestAdmission {
    /// Admits one request of `consumer` (charging its bucket) or says why not, as the
    /// `market.*` drop reason.
    pub(crate) fn admit(
        &mut self,
        consumer: NodeId,
        held: usize,
        proven: bool,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        if held >= MAX_AGREEMENTS {
            return Err("market.agreements_full");
        }
        let burst = if proven { PROVEN_BURST } else { NEWCOMER_BURST };
        if !self.by_key.contains_key(&consumer) && self.by_key.len() >= MAX_TRACKED_KEYS {
            self.by_key.retain(|_, b| {
                b.tokens + now_ms.saturating_sub(b.at_ms) as f64 / REFILL_MS < NEWCOMER_BURST
            });
            if self.by_key.len() >= MAX_TRACKED_KEYS {
                return Err("market.request_rate_limited");
            }
        }
        let bucket = self.by_key.entry(consumer).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed / REFILL_MS).min(burst);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens < 1.0 {
            return Err("market.request_rate_limited");
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcomers_get_a_small_burst_proven_keys_a_larger_one_and_both_refill() {
        let mut admission = RequestAdmission::default();
        let (new, proven) = (NodeId([1; 16]), NodeId([2; 16]));
        let admitted = |a: &mut RequestAdmission, key, proven, now| {
            (0..100)
                .filter(|_| a.admit(key, 0, proven, now).is_ok())
                .count()
        };
        assert_eq!(admitted(&mut admission, new, false, 0), 8);
        assert_eq!(admitted(&mut admission, proven, true, 0), 64);
        assert_eq!(admitted(&mut admission, new, false, 30_000), 3);
        assert_eq!(
            admission.admit(NodeId([3; 16]), MAX_AGREEMENTS, true, 0),
            Err("market.agreements_full")
        );
    }
}
