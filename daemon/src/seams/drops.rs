//! Drops by the node's parts, by reason: what a peer tried to make the ledger, the market or
//! storage spend and was refused by a bound or an admission rule (docs/PROTOCOL.md, "Limits",
//! "Parts"). Each part counts into the one registry the assembly hands it; the API reads it
//! for GetStats.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// A shared registry of drop counters keyed by `part.reason` (e.g. `ledger.unfunded`).
#[derive(Clone, Debug, Default)]
pub struct PartDrops {
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl PartDrops {
    /// Counts one drop for `reason`, a stable `part.reason` name.
    pub fn count(&self, reason: &'static str) {
        self.add(reason, 1);
    }

    /// Counts `n` drops for `reason`.
    pub fn add(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(reason).or_default() += n;
    }

    /// The drops counted for `reason` so far.
    pub fn get(&self, reason: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(reason).copied().unwrap_or(0)
    }

    /// Every reason with at least one drop, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_reason_across_clones() {
        let drops = PartDrops::default();
        let other = drops.clone();
        drops.count("ledger.unfunded");
        other.add("ledger.unfunded", 2);
        other.add("storage.quota", 0);
        assert_eq!(drops.get("ledger.unfunded"), 3);
        assert_eq!(drops.snapshot(), vec![("ledger.unfunded", 3)]);
    }
}
