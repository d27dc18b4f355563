//! Choosing one of several known paths to a destination by the sender's policy.
//!
//! PROTOCOL.md scores a path as `α·distance + β·cost + γ·latency`, each term normalised, and
//! gives the weights of Cheapest (.1, .8, .1) and Fastest (.1, .1, .8); it leaves Balanced
//! without a formula (§8 item 5). Here every term is divided by the largest value among the
//! candidates, so the weights compare like with like, and Balanced weighs the three equally.
//! Distance is the hop count (this router forwards by path table, not by ring distance).
//! Latency is the path's worst single hop, the only latency the 7-byte `CompactPathCost`
//! carries. The lowest score wins; a tie goes to the earlier candidate, so the path
//! Reticulum's own rules chose (listed first) wins whenever nothing beats it.

use crate::path_cost::CompactPathCost;

/// How a sender wants its path chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoutePolicy {
    /// The path Reticulum's rules keep: fewest hops, newest announce. Others' packets take
    /// it too.
    #[default]
    Shortest,
    /// The lowest relay fees.
    Cheapest,
    /// The lowest latency.
    Fastest,
    /// Hops, fees and latency weighed equally.
    Balanced,
}

/// The weights of one policy: (hops, cost, latency).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Weight of the hop count.
    pub hops: f64,
    /// Weight of the cumulative fee.
    pub cost: f64,
    /// Weight of the worst hop latency.
    pub latency: f64,
}

impl RoutePolicy {
    /// The policy's weights; `None` for [`RoutePolicy::Shortest`], which takes the
    /// router's own path without scoring.
    pub fn weights(self) -> Option<Weights> {
        let (hops, cost, latency) = match self {
            RoutePolicy::Shortest => return None,
            RoutePolicy::Cheapest => (0.1, 0.8, 0.1),
            RoutePolicy::Fastest => (0.1, 0.1, 0.8),
            RoutePolicy::Balanced => (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
        };
        Some(Weights {
            hops,
            cost,
            latency,
        })
    }
}

/// One way to the destination, as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteOption {
    /// Hops to the destination.
    pub hops: u8,
    /// What the path costs from here, when known (only Mehr nodes' paths carry a cost).
    pub cost: Option<CompactPathCost>,
}

/// The index of the option `policy` prefers, or `None` when there are none. Options
/// without a known cost count as costing as much as the dearest known one (and as slow as
/// the slowest), so an unpriced path never looks cheaper than a priced one.
pub fn choose(policy: RoutePolicy, options: &[RouteOption]) -> Option<usize> {
    if options.is_empty() {
        return None;
    }
    let Some(w) = policy.weights() else {
        return Some(0);
    };
    let max_of = |f: fn(&CompactPathCost) -> f64| {
        options
            .iter()
            .filter_map(|o| o.cost.as_ref().map(f))
            .fold(0.0_f64, f64::max)
    };
    let max_cost = max_of(CompactPathCost::cost_per_byte);
    let max_latency = max_of(|c| f64::from(c.worst_latency_ms));
    let max_hops = options.iter().map(|o| o.hops).max().unwrap_or(0);
    let share = |value: f64, max: f64| if max > 0.0 { value / max } else { 0.0 };
    let score = |o: &RouteOption| {
        let (cost, latency) = o.cost.map_or((max_cost, max_latency), |c| {
            (c.cost_per_byte(), f64::from(c.worst_latency_ms))
        });
        w.hops * share(f64::from(o.hops), f64::from(max_hops))
            + w.cost * share(cost, max_cost)
            + w.latency * share(latency, max_latency)
    };
    let mut best = (0, score(&options[0]));
    for (i, option) in options.iter().enumerate().skip(1) {
        let s = score(option);
        // Strictly better only, with a little slack for float noise: ties keep the earlier.
        if s < best.1 - 1e-12 {
            best = (i, s);
        }
    }
    Some(best.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path_cost::encode_cost;

    fn option(hops: u8, fee: f64, latency_ms: u16) -> RouteOption {
        RouteOption {
            hops,
            cost: Some(CompactPathCost {
                cost: encode_cost(fee),
                worst_latency_ms: latency_ms,
                bandwidth: 100,
                hops,
                mtu: 36,
            }),
        }
    }

    #[test]
    fn each_policy_picks_its_own_path() {
        // Reticulum's path (first): 2 hops, dear and fast. Then cheap and slow, then a
        // longer middle way.
        let options = [option(2, 40.0, 5), option(2, 2.0, 400), option(4, 10.0, 50)];
        assert_eq!(choose(RoutePolicy::Shortest, &options), Some(0));
        assert_eq!(choose(RoutePolicy::Cheapest, &options), Some(1));
        assert_eq!(choose(RoutePolicy::Fastest, &options), Some(0));
        assert_eq!(choose(RoutePolicy::Balanced, &options), Some(2));
    }

    #[test]
    fn ties_keep_the_routers_own_path() {
        let options = [option(2, 5.0, 10), option(2, 5.0, 10), option(2, 5.0, 10)];
        for policy in [
            RoutePolicy::Cheapest,
            RoutePolicy::Fastest,
            RoutePolicy::Balanced,
        ] {
            assert_eq!(choose(policy, &options), Some(0), "{policy:?}");
        }
    }

    #[test]
    fn an_unpriced_path_never_looks_cheaper_than_a_priced_one() {
        let unpriced = RouteOption {
            hops: 2,
            cost: None,
        };
        let options = [unpriced, option(2, 30.0, 20)];
        assert_eq!(choose(RoutePolicy::Cheapest, &options), Some(0), "a tie");
        let options = [unpriced, option(2, 3.0, 20), option(2, 30.0, 20)];
        assert_eq!(choose(RoutePolicy::Cheapest, &options), Some(1));
    }

    #[test]
    fn no_options_no_choice_and_free_paths_do_not_divide_by_zero() {
        assert_eq!(choose(RoutePolicy::Cheapest, &[]), None);
        let options = [option(1, 0.0, 0), option(1, 0.0, 0)];
        assert_eq!(choose(RoutePolicy::Balanced, &options), Some(0));
    }
}
