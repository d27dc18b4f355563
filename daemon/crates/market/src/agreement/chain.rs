//! Capability chains (seed 000): a node resells a capability it buys. Each link is its own
//! bilateral agreement with its own channel; the downstream offer names the upstream
//! agreement, and its price is the upstream price plus the reseller's markup.

use mehr_ledger::NodeId;
use mehr_ledger::burn::net_of;
use thiserror::Error;

use super::messages::{AgreementId, Capability};
use super::state::{Agreement, AgreementState, OfferTerms};
use crate::agreement::messages::ProofMethod;
use crate::cost::{CostError, CostStructure};

/// A validated link between a resold agreement and the one it resells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainLink {
    /// The agreement bought by the reseller.
    pub upstream: AgreementId,
    /// The agreement the reseller sold.
    pub downstream: AgreementId,
    /// The reseller: consumer upstream, provider downstream.
    pub reseller: NodeId,
    /// Downstream unit price minus upstream unit price, μ.
    pub markup: u64,
    /// What the reseller keeps per unit once the 2% burn is taken from what it is paid:
    /// `net_of(downstream) − upstream`, μ; negative when the markup does not cover the burn.
    pub net_margin: i128,
}

/// The smallest markup on `upstream_unit_price` that covers the 2% burn on the resale
/// (`net_of(upstream + markup) ≥ upstream`, the ledger's burn rule). Computed per unit; the
/// ledger burns on cumulative totals, which can only burn less.
pub fn break_even_markup(upstream_unit_price: u64) -> u64 {
    let mut price = upstream_unit_price;
    // net_of(x) ≥ 0.98·x − 1, so the answer is within a few μ of upstream / 0.98.
    price = price.saturating_add(price / 49);
    while price > upstream_unit_price && net_of(price - 1) >= upstream_unit_price {
        price -= 1;
    }
    while net_of(price) < upstream_unit_price && price < u64::MAX {
        price += 1;
    }
    price - upstream_unit_price
}

/// Why two agreements do not form a chain link.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainError {
    /// One of the two has no offer yet, so no id and no price.
    #[error("the {which} agreement has no offer yet")]
    NotOffered {
        /// "upstream" or "downstream".
        which: &'static str,
    },
    /// The downstream offer does not name this upstream agreement.
    #[error("downstream offer resells {named:?}, not {upstream}")]
    NotNamed {
        /// What the downstream offer names.
        named: Option<AgreementId>,
        /// The upstream agreement's id.
        upstream: AgreementId,
    },
    /// The downstream provider is not the upstream consumer.
    #[error(
        "downstream provider {downstream_provider} is not the upstream consumer {upstream_consumer}"
    )]
    NotReseller {
        /// Provider of the downstream agreement.
        downstream_provider: NodeId,
        /// Consumer of the upstream agreement.
        upstream_consumer: NodeId,
    },
    /// The upstream agreement is not active.
    #[error("upstream agreement is {0:?}, not active")]
    UpstreamNotActive(AgreementState),
    /// The downstream sells something the upstream does not supply.
    #[error("downstream capability {downstream:?} is not covered by upstream {upstream:?}")]
    CapabilityMismatch {
        /// Downstream capability.
        downstream: Capability,
        /// Upstream capability.
        upstream: Capability,
    },
    /// The downstream runs longer than the upstream.
    #[error("downstream runs {downstream} s, longer than the upstream's {upstream} s")]
    DurationExceeds {
        /// Downstream duration.
        downstream: u32,
        /// Upstream duration.
        upstream: u32,
    },
    /// The prices do not chain (different structures, a price below cost, looser limits).
    #[error(transparent)]
    Cost(#[from] CostError),
}

fn covers(upstream: &Capability, downstream: &Capability) -> bool {
    match (upstream, downstream) {
        (Capability::Storage { bytes: up }, Capability::Storage { bytes: down }) => down <= up,
        (up, down) => up == down,
    }
}

/// Checks that `downstream` resells `upstream`: the downstream offer names it, the reseller
/// is the upstream consumer and the downstream provider, the upstream is active, it covers
/// the capability and duration sold, and the resale price is the upstream cost plus a markup
/// (same structure, unit price not below, input and cycle limits not looser).
pub fn validate_chain_link(
    downstream: &Agreement,
    upstream: &Agreement,
) -> Result<ChainLink, ChainError> {
    let up_id = upstream
        .id()
        .ok_or(ChainError::NotOffered { which: "upstream" })?;
    let down_id = downstream.id().ok_or(ChainError::NotOffered {
        which: "downstream",
    })?;
    let down_offer = downstream
        .offer()
        .ok_or(ChainError::NotOffered {
            which: "downstream",
        })?
        .body();
    if down_offer.upstream != Some(up_id) {
        return Err(ChainError::NotNamed {
            named: down_offer.upstream,
            upstream: up_id,
        });
    }
    let up_req = upstream.request().body();
    let down_req = downstream.request().body();
    if down_req.provider != up_req.consumer {
        return Err(ChainError::NotReseller {
            downstream_provider: down_req.provider,
            upstream_consumer: up_req.consumer,
        });
    }
    if upstream.state() != AgreementState::Active {
        return Err(ChainError::UpstreamNotActive(upstream.state()));
    }
    if !covers(&up_req.capability, &down_req.capability) {
        return Err(ChainError::CapabilityMismatch {
            downstream: down_req.capability,
            upstream: up_req.capability,
        });
    }
    if down_req.duration_seconds > up_req.duration_seconds {
        return Err(ChainError::DurationExceeds {
            downstream: down_req.duration_seconds,
            upstream: up_req.duration_seconds,
        });
    }
    let up_cost = upstream
        .cost()
        .ok_or(ChainError::NotOffered { which: "upstream" })?;
    let markup = resale_markup(&up_cost, &down_offer.cost)?;
    let net_margin =
        i128::from(net_of(down_offer.cost.unit_price())) - i128::from(up_cost.unit_price());
    Ok(ChainLink {
        upstream: up_id,
        downstream: down_id,
        reseller: down_req.provider,
        markup,
        net_margin,
    })
}

/// The markup of a resale priced `downstream` over an upstream cost `upstream`.
fn resale_markup(upstream: &CostStructure, downstream: &CostStructure) -> Result<u64, CostError> {
    if upstream.kind() != downstream.kind() {
        return Err(CostError::KindMismatch {
            offered: downstream.kind(),
            cap: upstream.kind(),
        });
    }
    let (up, down) = (upstream.unit_price(), downstream.unit_price());
    if down < up {
        return Err(CostError::BelowUpstream {
            downstream: down,
            upstream: up,
        });
    }
    match (*upstream, *downstream) {
        (
            CostStructure::PerInvocation {
                max_input: up_in, ..
            },
            CostStructure::PerInvocation {
                max_input: down_in, ..
            },
        ) if down_in > up_in => Err(CostError::InputTooSmall {
            offered: up_in,
            needed: down_in,
        }),
        (
            CostStructure::PerCycle {
                max_cycles: up_c, ..
            },
            CostStructure::PerCycle {
                max_cycles: down_c, ..
            },
        ) if down_c > up_c => Err(CostError::CyclesAboveBudget {
            offered: down_c,
            budget: up_c,
        }),
        _ => Ok(down - up),
    }
}

/// Terms for reselling the active `upstream` agreement at its cost plus `markup`.
pub fn resale_terms(
    upstream: &Agreement,
    markup: u64,
    valid_for_seconds: u32,
    proof: ProofMethod,
) -> Result<OfferTerms, ChainError> {
    if upstream.state() != AgreementState::Active {
        return Err(ChainError::UpstreamNotActive(upstream.state()));
    }
    let id = upstream
        .id()
        .ok_or(ChainError::NotOffered { which: "upstream" })?;
    let cost = upstream
        .cost()
        .ok_or(ChainError::NotOffered { which: "upstream" })?
        .with_markup(markup)?;
    Ok(OfferTerms {
        cost,
        valid_for_seconds,
        proof,
        upstream: Some(id),
    })
}
