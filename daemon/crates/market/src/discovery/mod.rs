//! Discovery in concentric rings (§5 discovery rings).
//!
//! | ring | scope | how it is learned |
//! |---|---|---|
//! | 0 | neighbours (1 hop) | their full adverts, pushed by gossip |
//! | 1 | 2–3 hops | neighbours' [`CapabilitySummary`]s; full adverts by pull |
//! | 2 | trust graph | pulls to trusted peers (routed), optional ring-2 summaries |
//! | 3 | beyond | a hop-limited pull flood, on query only |
//!
//! [`DiscoveryTable`] is pure: the daemon feeds it adverts, summaries and pull answers tagged
//! with the [`Origin`] they came from (ring, hop distance, path cost, neighbour), and asks it
//! [`Query`]s. A query resolves locally, nearest ring first: it returns the ranked offers of the
//! smallest ring that satisfies it, or, when the rings searched so far hold too few, a
//! [`NextStep::Widen`] that the daemon turns into [`PullRequest`]s to neighbours (and, for
//! ring 2, to trusted peers), whose [`PullAnswer`]s go back into the table; then it queries
//! again with `searched_ring` raised.
//!
//! Ranking (lower score is better), each term normalised to 0..1 over the candidate set as in
//! §2 route scoring, weights in basis points ([`RankingWeights::default`]):
//! `0.40·price/max_price + 0.20·path_cost/max_path_cost + 0.10·hops/max_hops +
//! 0.20·(1 − reputation/10000) + 0.10·load/255`. Unknown load counts as half load; unpriced
//! capabilities score 0 on price. Ties go to the lower price, then fewer hops, then the lower
//! node id, so the result is deterministic.

mod pull;
mod ranking;
mod table;

pub use pull::{MAX_PULL_ANSWER_LEN, PullAnswer, PullDedup, PullEntry, PullRequest};
pub use ranking::RankingWeights;
pub use table::{DiscoveryError, DiscoveryTable, InsertOutcome};

use mehr_ledger::NodeId;
use serde::{Deserialize, Serialize};

use crate::capabilities::{CapabilityKind, FunctionId, NodeCapabilities};
use crate::cost::CostStructure;
use crate::reputation::{ReputationBook, ServiceKind};

#[cfg(doc)]
use crate::summary::CapabilitySummary;

/// Where a piece of discovery information came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// Discovery ring, 0–3.
    pub ring: u8,
    /// Hops from this node to the provider (1 for a neighbour).
    pub hops: u8,
    /// Cost of the path to the provider, μ per byte (decoded CompactPathCost).
    pub path_cost: u64,
    /// The neighbour it arrived through.
    pub via: NodeId,
}

impl Origin {
    /// A neighbour's own advert, received over the link to it.
    pub fn neighbour(node: NodeId, link_cost: u64) -> Self {
        Self {
            ring: 0,
            hops: 1,
            path_cost: link_cost,
            via: node,
        }
    }

    fn closeness(&self) -> (u8, u8, u64) {
        (self.ring, self.hops, self.path_cost)
    }
}

/// What a query or pull asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filter {
    /// The capability kind.
    pub kind: CapabilityKind,
    /// For [`CapabilityKind::Function`]: the function wanted (`None` = any function).
    pub function: Option<FunctionId>,
    /// For storage: free space needed, bytes.
    pub min_storage_bytes: u64,
    /// For relay and gateway: interface bandwidth needed, bit/s.
    pub min_bandwidth_bps: u64,
    /// Highest acceptable unit price, μ (`None` = any). Unpriced kinds always pass.
    pub max_price: Option<u64>,
}

/// How an advert satisfies a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) unit_price: Option<u64>,
    pub(crate) cost: Option<CostStructure>,
}

impl Filter {
    /// A filter for `kind` with no other constraint.
    pub fn kind(kind: CapabilityKind) -> Self {
        Self {
            kind,
            function: None,
            min_storage_bytes: 0,
            min_bandwidth_bps: 0,
            max_price: None,
        }
    }

    /// A filter for the function called `name`, at most `max_price` μ per call.
    pub fn function(name: &str, max_price: Option<u64>) -> Self {
        Self {
            function: Some(FunctionId::of(name)),
            max_price,
            ..Self::kind(CapabilityKind::Function)
        }
    }

    pub(crate) fn matches(&self, caps: &NodeCapabilities) -> Option<Match> {
        if !caps.offers(self.kind) {
            return None;
        }
        let found = match self.kind {
            CapabilityKind::Relay | CapabilityKind::Gateway => {
                let gateway_only = self.kind == CapabilityKind::Gateway;
                let price = caps
                    .interfaces
                    .iter()
                    .filter(|i| !gateway_only || i.internet_gateway)
                    .filter(|i| i.bandwidth_bps >= self.min_bandwidth_bps)
                    .map(|i| i.cost_per_byte)
                    .min()?;
                Match {
                    unit_price: Some(price),
                    cost: Some(CostStructure::PerByte { per_byte: price }),
                }
            }
            CapabilityKind::Storage => {
                let storage = caps.storage?;
                if storage.available_bytes < self.min_storage_bytes {
                    return None;
                }
                Match {
                    unit_price: Some(storage.cost_per_byte_day),
                    cost: None,
                }
            }
            CapabilityKind::Function => match self.function {
                Some(id) => {
                    let f = caps.function(&id)?;
                    Match {
                        unit_price: Some(f.cost.unit_price()),
                        cost: Some(f.cost),
                    }
                }
                None => Match {
                    unit_price: caps.unit_price(CapabilityKind::Function),
                    cost: None,
                },
            },
            kind => Match {
                unit_price: caps.unit_price(kind),
                cost: None,
            },
        };
        match (self.max_price, found.unit_price) {
            (Some(max), Some(price)) if price > max => None,
            _ => Some(found),
        }
    }
}

/// A discovery query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// What is wanted.
    pub filter: Filter,
    /// Offers wanted; the query widens until this many are known (at least 1).
    pub want: usize,
    /// The highest ring already pulled for this query (0: only what gossip brought).
    pub searched_ring: u8,
    /// The highest ring the query may widen to (at most 3).
    pub max_ring: u8,
}

impl Query {
    /// A query for one offer, starting from local knowledge, allowed to widen to ring 3.
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            want: 1,
            searched_ring: 0,
            max_ring: crate::params::MAX_RING,
        }
    }
}

/// One provider found, with what ranked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankedOffer {
    /// The provider.
    pub node_id: NodeId,
    /// Its unit price for the query (μ), if the capability is priced.
    pub unit_price: Option<u64>,
    /// Its cost structure, where the advert states one (relay, gateway, functions).
    pub cost: Option<CostStructure>,
    /// Where the advert came from.
    pub origin: Origin,
    /// Reputation used for ranking (0–10000).
    pub reputation: u16,
    /// Load used for ranking, if known.
    pub load: Option<u8>,
    /// Score in parts per million; lower is better.
    pub score: u32,
}

/// What the daemon should do after a query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NextStep {
    /// Enough offers were found within the rings searched.
    Satisfied,
    /// Too few offers: pull from ring `ring`.
    Widen(Widen),
    /// Too few offers and no ring left to search.
    Exhausted,
}

/// A decision to widen the search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Widen {
    /// The ring to search next.
    pub ring: u8,
    /// Neighbours whose summaries show matching providers in that ring; empty means no hint,
    /// so pull from every neighbour (ring 1, 3) or every trusted peer (ring 2).
    pub via: Vec<NodeId>,
}

impl Widen {
    /// The pull request for this widening: ring 1 asks neighbours for what they know within
    /// 3 hops of us; ring 2 asks trusted peers for what they know; ring 3 floods up to
    /// [`crate::params::RING3_PULL_HOPS`] hops.
    pub fn pull(&self, filter: Filter, limit: u8, nonce: u64) -> PullRequest {
        let (max_hops, forward) = match self.ring {
            0 | 1 => (crate::params::RING1_MAX_HOPS, false),
            2 => (u8::MAX, false),
            _ => (crate::params::RING3_PULL_HOPS, true),
        };
        PullRequest {
            nonce,
            filter,
            max_hops,
            forward,
            limit,
        }
    }
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Offers, best first.
    pub offers: Vec<RankedOffer>,
    /// What to do next.
    pub next: NextStep,
}

/// A source of reputation scores for ranking.
pub trait ReputationSource {
    /// The score (0–10000) of `node` for `kind`.
    fn score(&self, node: &NodeId, kind: ServiceKind) -> u16;
}

/// No reputation known: every peer scores 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReputation;

impl ReputationSource for NoReputation {
    fn score(&self, _node: &NodeId, _kind: ServiceKind) -> u16 {
        0
    }
}

/// A [`ReputationBook`] read at a given gossip round (referral seeds expire by round).
#[derive(Clone, Copy, Debug)]
pub struct ReputationAt<'a> {
    /// The book.
    pub book: &'a ReputationBook,
    /// The current round.
    pub round: u64,
}

impl ReputationSource for ReputationAt<'_> {
    fn score(&self, node: &NodeId, kind: ServiceKind) -> u16 {
        self.book.score(node, kind, self.round)
    }
}
