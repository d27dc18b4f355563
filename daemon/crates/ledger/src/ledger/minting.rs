//! Emission schedule and minting from net service income (§4 token supply, §8 items 21–22).

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::params::{
    BASE_EMISSION_PER_EPOCH, BASIS_POINTS, FULL_EMISSION_ACTIVE_NODES, HALVING_INTERVAL_EPOCHS,
    MAX_HALVINGS, MINT_CAP_OF_NET_INCOME_BPS, TAIL_EMISSION_DENOMINATOR,
};

/// Emission of `epoch`: `max(10^12 >> min(epoch/100000, 63), supply · 0.001 / epochs_per_year)`.
///
/// Totals are u128 (§8 item 22): the 0.1% tail compounds and would overflow a u64 supply.
/// `epochs_per_year` is the trailing 1000-epoch average measured by the caller; 0 disables
/// the tail.
pub fn epoch_emission(epoch: u64, supply: u128, epochs_per_year: u64) -> u128 {
    let halvings = (epoch / HALVING_INTERVAL_EPOCHS).min(MAX_HALVINGS);
    let base = BASE_EMISSION_PER_EPOCH >> halvings;
    let tail = match epochs_per_year {
        0 => 0,
        n => supply / (TAIL_EMISSION_DENOMINATOR * u128::from(n)),
    };
    base.max(tail)
}

/// `E_s = E · min(N, 100) / 100`, N = active nodes with mutual trust.
pub fn scaled_emission(emission: u128, active_trusted_nodes: u64) -> u128 {
    let n = active_trusted_nodes.min(FULL_EMISSION_ACTIVE_NODES);
    emission * u128::from(n) / u128::from(FULL_EMISSION_ACTIVE_NODES)
}

/// One node's service flows over the minting window, μ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFlows {
    /// Received after burn through funded channels (payer not overdrafted).
    pub income: u128,
    /// Paid, gross.
    pub spending: u128,
}

impl NodeFlows {
    /// `income − spending`, signed.
    pub fn net(&self) -> i128 {
        i128::try_from(self.income).unwrap_or(i128::MAX)
            - i128::try_from(self.spending).unwrap_or(i128::MAX)
    }
}

/// The result of minting for one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MintOutcome {
    /// Newly minted μ per node.
    pub per_node: BTreeMap<NodeId, u128>,
    /// Sum of `per_node`.
    pub total: u128,
    /// `0.5 · Σ max(0, cluster net)`: the income-side cap.
    pub income_cap: u128,
}

/// Mints `min(emission, 50% · Σ max(0, net income))`, where net income is summed per
/// cluster (§8 item 21: a spender and a provider run by one owner net out when the caller
/// puts them in one cluster, e.g. a trust cluster). Nodes missing from `clusters` are their
/// own cluster. Each cluster's share is proportional to its positive net; inside a cluster it
/// goes to members with positive net in proportion to it. Shares round down; the remainder is
/// not minted. Cycling value between two nodes gives both a non-positive net (the burn), so it
/// mints nothing.
pub fn mint(
    flows: &BTreeMap<NodeId, NodeFlows>,
    clusters: &BTreeMap<NodeId, u64>,
    emission: u128,
) -> MintOutcome {
    // Cluster key: an explicit cluster id, or the node itself.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Cluster {
        Named(u64),
        Single(NodeId),
    }
    let mut members: BTreeMap<Cluster, Vec<(NodeId, i128)>> = BTreeMap::new();
    for (node, f) in flows {
        let c = clusters
            .get(node)
            .map_or(Cluster::Single(*node), |c| Cluster::Named(*c));
        members.entry(c).or_default().push((*node, f.net()));
    }
    let cluster_net: BTreeMap<Cluster, u128> = members
        .iter()
        .map(|(c, ms)| {
            let net: i128 = ms.iter().map(|(_, n)| *n).fold(0i128, i128::saturating_add);
            (*c, u128::try_from(net.max(0)).unwrap_or(0))
        })
        .collect();
    let eligible: u128 = cluster_net
        .values()
        .fold(0u128, |a, b| a.saturating_add(*b));
    let income_cap = mul_div(
        eligible,
        u128::from(MINT_CAP_OF_NET_INCOME_BPS),
        u128::from(BASIS_POINTS),
    );
    let total_mint = emission.min(income_cap);
    let mut outcome = MintOutcome {
        income_cap,
        ..MintOutcome::default()
    };
    if total_mint == 0 || eligible == 0 {
        return outcome;
    }
    for (c, ms) in &members {
        let net = cluster_net.get(c).copied().unwrap_or(0);
        if net == 0 {
            continue;
        }
        let cluster_share = mul_div(total_mint, net, eligible);
        let positive: u128 = ms
            .iter()
            .map(|(_, n)| u128::try_from((*n).max(0)).unwrap_or(0))
            .fold(0u128, u128::saturating_add);
        if positive == 0 {
            continue;
        }
        for (node, n) in ms {
            let own = u128::try_from((*n).max(0)).unwrap_or(0);
            let share = mul_div(cluster_share, own, positive);
            if share > 0 {
                outcome.per_node.insert(*node, share);
                outcome.total = outcome.total.saturating_add(share);
            }
        }
    }
    outcome
}

/// `a · b / c` without overflow for `b ≤ c` (the share fractions used here).
fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    if c == 0 {
        return 0;
    }
    // a·b/c = (a/c)·b + (a%c)·b/c; (a%c)·b < c·b ≤ c², which fits while c < 2^64 and is
    // otherwise computed through a further split on b.
    let q = a / c;
    let r = a % c;
    let whole = q.saturating_mul(b);
    let frac = match r.checked_mul(b) {
        Some(p) => p / c,
        None => {
            let (bq, br) = (b / 2, b - b / 2);
            r.saturating_mul(bq) / c + r.saturating_mul(br) / c
        }
    };
    whole.saturating_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 16])
    }

    #[test]
    fn emission_halves_and_has_a_tail() {
        assert_eq!(epoch_emission(0, 0, 52_600), 1_000_000_000_000);
        assert_eq!(epoch_emission(99_999, 0, 52_600), 1_000_000_000_000);
        assert_eq!(epoch_emission(100_000, 0, 52_600), 500_000_000_000);
        assert_eq!(epoch_emission(u64::MAX, 0, 52_600), 0);
        // Tail: supply 10^20 μ at 52 600 epochs/year → 10^20 / (1000·52600).
        assert_eq!(
            epoch_emission(u64::MAX, 100_000_000_000_000_000_000, 52_600),
            1_901_140_684_410
        );
        assert_eq!(scaled_emission(1_000, 3), 30);
        assert_eq!(scaled_emission(1_000, 500), 1_000);
    }

    #[test]
    fn cycling_between_two_nodes_mints_nothing() {
        let flows = BTreeMap::from([
            (
                id(1),
                NodeFlows {
                    income: 98,
                    spending: 100,
                },
            ),
            (
                id(2),
                NodeFlows {
                    income: 98,
                    spending: 100,
                },
            ),
        ]);
        let out = mint(&flows, &BTreeMap::new(), u128::MAX);
        assert_eq!(out.total, 0);
    }

    #[test]
    fn mint_is_capped_at_half_of_net_income_and_by_emission() {
        let flows = BTreeMap::from([
            (
                id(1),
                NodeFlows {
                    income: 1_000,
                    spending: 0,
                },
            ),
            (
                id(2),
                NodeFlows {
                    income: 0,
                    spending: 1_020,
                },
            ),
            (
                id(3),
                NodeFlows {
                    income: 3_000,
                    spending: 1_000,
                },
            ),
        ]);
        let out = mint(&flows, &BTreeMap::new(), u128::MAX);
        assert_eq!(out.income_cap, 1_500);
        assert_eq!(out.per_node, BTreeMap::from([(id(1), 500), (id(3), 1_000)]));
        let out = mint(&flows, &BTreeMap::new(), 300);
        assert_eq!(out.per_node, BTreeMap::from([(id(1), 100), (id(3), 200)]));
    }

    #[test]
    fn split_identities_in_one_cluster_net_out() {
        // Spender 2 pays provider 1: alone, 1 would mint; as one cluster, the pair nets negative.
        let flows = BTreeMap::from([
            (
                id(1),
                NodeFlows {
                    income: 980,
                    spending: 0,
                },
            ),
            (
                id(2),
                NodeFlows {
                    income: 0,
                    spending: 1_000,
                },
            ),
        ]);
        assert_eq!(mint(&flows, &BTreeMap::new(), u128::MAX).total, 490);
        let clusters = BTreeMap::from([(id(1), 7), (id(2), 7)]);
        assert_eq!(mint(&flows, &clusters, u128::MAX).total, 0);
    }

    proptest! {
        #[test]
        fn minted_never_exceeds_either_cap(
            entries in proptest::collection::btree_map(any::<u8>(), (0u64..1_000_000, 0u64..1_000_000), 0..20),
            emission in 0u128..10_000_000,
        ) {
            let flows: BTreeMap<NodeId, NodeFlows> = entries.iter()
                .map(|(k, (i, s))| (id(*k), NodeFlows { income: u128::from(*i), spending: u128::from(*s) }))
                .collect();
            let out = mint(&flows, &BTreeMap::new(), emission);
            prop_assert!(out.total <= emission);
            prop_assert!(out.total <= out.income_cap);
            let sum: u128 = out.per_node.values().sum();
            prop_assert_eq!(sum, out.total);
            for (node, amount) in &out.per_node {
                let f = flows[node];
                prop_assert!(f.net() > 0);
                prop_assert!(*amount as i128 <= f.net() / 2 + 1);
            }
        }
    }
}
