//! Offer ranking: normalised weighted terms, integer arithmetic, deterministic ties.

use serde::{Deserialize, Serialize};

use super::RankedOffer;
use crate::params::MAX_SCORE;

const PPM: u64 = 1_000_000;
const BPS: u64 = 10_000;
/// Unknown load ranks as half load: a node that reports being idle beats one that says nothing.
const UNKNOWN_LOAD: u8 = 128;

/// Weights of the ranking terms, in basis points; they need not sum to 10000, but the
/// defaults do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankingWeights {
    /// Unit price over the highest in the candidate set.
    pub price: u16,
    /// Path cost over the highest in the set.
    pub path_cost: u16,
    /// Hops over the most in the set.
    pub hops: u16,
    /// Missing reputation, `1 − score/10000`.
    pub reputation: u16,
    /// Load, `load/255`.
    pub load: u16,
}

impl Default for RankingWeights {
    /// Price 40%, path cost 20%, hops 10%, reputation 20%, load 10%: price first, as the
    /// marketplace's point is the cheapest adequate provider, with distance and trust close
    /// behind.
    fn default() -> Self {
        Self {
            price: 4_000,
            path_cost: 2_000,
            hops: 1_000,
            reputation: 2_000,
            load: 1_000,
        }
    }
}

fn ratio_ppm(value: u64, max: u64) -> u64 {
    if max == 0 {
        0
    } else {
        u64::try_from(u128::from(value) * u128::from(PPM) / u128::from(max)).unwrap_or(PPM)
    }
}

impl RankingWeights {
    /// Scores every offer (in place) against the others and sorts best first.
    pub(crate) fn rank(&self, offers: &mut [RankedOffer]) {
        let max_price = offers
            .iter()
            .filter_map(|o| o.unit_price)
            .max()
            .unwrap_or(0);
        let max_path = offers.iter().map(|o| o.origin.path_cost).max().unwrap_or(0);
        let max_hops = offers
            .iter()
            .map(|o| u64::from(o.origin.hops))
            .max()
            .unwrap_or(0);
        for o in offers.iter_mut() {
            let terms = [
                (self.price, ratio_ppm(o.unit_price.unwrap_or(0), max_price)),
                (self.path_cost, ratio_ppm(o.origin.path_cost, max_path)),
                (self.hops, ratio_ppm(u64::from(o.origin.hops), max_hops)),
                (
                    self.reputation,
                    ratio_ppm(
                        u64::from(MAX_SCORE - o.reputation.min(MAX_SCORE)),
                        u64::from(MAX_SCORE),
                    ),
                ),
                (
                    self.load,
                    ratio_ppm(
                        u64::from(o.load.unwrap_or(UNKNOWN_LOAD)),
                        u64::from(u8::MAX),
                    ),
                ),
            ];
            let weighted: u64 = terms.iter().map(|(w, t)| u64::from(*w) * t).sum();
            o.score = u32::try_from(weighted / BPS).unwrap_or(u32::MAX);
        }
        offers.sort_by(|a, b| {
            (a.score, a.unit_price, a.origin.hops, a.node_id).cmp(&(
                b.score,
                b.unit_price,
                b.origin.hops,
                b.node_id,
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Origin;
    use mehr_ledger::NodeId;

    fn offer(
        id: u8,
        price: u64,
        hops: u8,
        path_cost: u64,
        rep: u16,
        load: Option<u8>,
    ) -> RankedOffer {
        RankedOffer {
            node_id: NodeId([id; 16]),
            unit_price: Some(price),
            cost: None,
            origin: Origin {
                ring: 0,
                hops,
                path_cost,
                via: NodeId([id; 16]),
            },
            reputation: rep,
            load,
            score: 0,
        }
    }

    #[test]
    fn scores_follow_the_documented_formula() {
        let mut offers = vec![
            offer(1, 100, 2, 10, 0, Some(255)),
            offer(2, 50, 1, 0, 10_000, Some(0)),
        ];
        RankingWeights::default().rank(&mut offers);
        // Node 2: price 0.5·0.4 = 0.2, path 0, hops 0.5·0.1 = 0.05, rep 0, load 0.
        assert_eq!(offers[0].node_id, NodeId([2; 16]));
        assert_eq!(offers[0].score, 250_000);
        // Node 1: 0.4 + 0.2 + 0.1 + 0.2 + 0.1 = 1.0.
        assert_eq!(offers[1].score, 1_000_000);
    }

    #[test]
    fn ties_are_broken_by_price_hops_then_node_id() {
        let mut offers = vec![offer(9, 10, 1, 0, 0, None), offer(3, 10, 1, 0, 0, None)];
        RankingWeights::default().rank(&mut offers);
        assert_eq!(offers[0].node_id, NodeId([3; 16]));
        assert_eq!(offers[0].score, offers[1].score);
    }

    #[test]
    fn reputation_can_outweigh_a_small_price_difference() {
        let mut offers = vec![
            offer(1, 90, 1, 0, 0, Some(0)),
            offer(2, 100, 1, 0, 9_000, Some(0)),
        ];
        RankingWeights::default().rank(&mut offers);
        assert_eq!(offers[0].node_id, NodeId([2; 16]));
    }
}
