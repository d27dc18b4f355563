//! The local trust graph (§4 trust, §8 items 12–13).
//!
//! Trust is one-way, revocable, and local: these types are the node's own configuration and
//! are deliberately not wire records. Whatever the daemon gossips about trust (the signed
//! `TrustEdge` GSet of §8 item 12) carries no prices or limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::NodeId;
use crate::params::{BASIS_POINTS, DEFAULT_TRANSITIVE_CREDIT_BPS, MAX_TRANSITIVE_CREDIT_BPS};

/// Errors from changing the trust configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    /// A credit ratio above the protocol maximum (50%).
    #[error("transitive credit ratio {got_bps} bp is above the maximum of {max_bps} bp")]
    RatioTooHigh {
        /// The ratio asked for, in basis points.
        got_bps: u16,
        /// The protocol maximum, in basis points.
        max_bps: u16,
    },
    /// A per-peer setting for a peer that is not trusted.
    #[error("peer {0} is not trusted")]
    NotTrusted(NodeId),
}

/// Share of a voucher's credit limit extended to the voucher's own trusted peers, in basis
/// points (default 10%, at most 50%). Integer basis points instead of the spec's `f32` keep
/// credit arithmetic exact and identical on every platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct CreditRatio(u16);

impl CreditRatio {
    /// The default ratio, 10%.
    pub const DEFAULT: CreditRatio = CreditRatio(DEFAULT_TRANSITIVE_CREDIT_BPS);

    /// A ratio in basis points; fails above 5000 (50%).
    pub fn from_basis_points(bps: u16) -> Result<Self, TrustError> {
        if bps > MAX_TRANSITIVE_CREDIT_BPS {
            Err(TrustError::RatioTooHigh {
                got_bps: bps,
                max_bps: MAX_TRANSITIVE_CREDIT_BPS,
            })
        } else {
            Ok(Self(bps))
        }
    }

    /// The ratio in basis points.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// `limit · ratio`, rounded down.
    pub fn apply(self, limit: u64) -> u64 {
        let scaled = u128::from(limit) * u128::from(self.0) / u128::from(BASIS_POINTS);
        // ratio ≤ 50%, so the result is below `limit`.
        u64::try_from(scaled).unwrap_or(limit)
    }
}

impl Default for CreditRatio {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u16> for CreditRatio {
    type Error = TrustError;
    fn try_from(bps: u16) -> Result<Self, TrustError> {
        Self::from_basis_points(bps)
    }
}

impl From<CreditRatio> for u16 {
    fn from(ratio: CreditRatio) -> u16 {
        ratio.0
    }
}

/// What this node grants one peer it trusts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// Credit this node extends to the peer directly, in μ.
    pub credit_limit: u64,
    /// Share of `credit_limit` extended to the peer's own trusted peers; `None` uses the
    /// node-wide default.
    pub transitive_ratio: Option<CreditRatio>,
}

/// Credit this node would extend to a grantee, and who vouches for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditLine {
    /// The limit, in μ.
    pub limit: u64,
    /// `None` for a directly trusted grantee; otherwise the trusted peer whose trust the
    /// credit rests on and who absorbs the grantee's defaults.
    pub voucher: Option<NodeId>,
}

/// The node's trust configuration: whom it relays for free, what it charges everyone else,
/// and how much credit it extends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    trusted_peers: BTreeMap<NodeId, TrustedPeer>,
    default_cost_per_byte: u64,
    cost_overrides: BTreeMap<NodeId, u64>,
    transitive_credit_ratio: CreditRatio,
}

impl TrustConfig {
    /// An empty trust graph charging `default_cost_per_byte` μ/B to every untrusted peer.
    pub fn new(default_cost_per_byte: u64) -> Self {
        Self {
            trusted_peers: BTreeMap::new(),
            default_cost_per_byte,
            cost_overrides: BTreeMap::new(),
            transitive_credit_ratio: CreditRatio::DEFAULT,
        }
    }

    /// Trusts `peer` with a direct credit limit, or updates the limit of a trusted peer
    /// (keeping its ratio override). Returns `true` if the peer was not trusted before.
    pub fn trust(&mut self, peer: NodeId, credit_limit: u64) -> bool {
        match self.trusted_peers.get_mut(&peer) {
            Some(entry) => {
                entry.credit_limit = credit_limit;
                false
            }
            None => {
                self.trusted_peers.insert(
                    peer,
                    TrustedPeer {
                        credit_limit,
                        transitive_ratio: None,
                    },
                );
                true
            }
        }
    }

    /// Revokes trust in `peer`. Returns `true` if it was trusted.
    pub fn revoke(&mut self, peer: &NodeId) -> bool {
        self.trusted_peers.remove(peer).is_some()
    }

    /// Sets (or clears, with `None`) the transitive ratio used for `peer`'s friends.
    pub fn set_peer_ratio(
        &mut self,
        peer: &NodeId,
        ratio: Option<CreditRatio>,
    ) -> Result<(), TrustError> {
        let entry = self
            .trusted_peers
            .get_mut(peer)
            .ok_or(TrustError::NotTrusted(*peer))?;
        entry.transitive_ratio = ratio;
        Ok(())
    }

    /// Sets the node-wide transitive credit ratio.
    pub fn set_transitive_ratio(&mut self, ratio: CreditRatio) {
        self.transitive_credit_ratio = ratio;
    }

    /// The node-wide transitive credit ratio.
    pub fn transitive_ratio(&self) -> CreditRatio {
        self.transitive_credit_ratio
    }

    /// Sets the default outbound price, μ per byte.
    pub fn set_default_cost_per_byte(&mut self, cost: u64) {
        self.default_cost_per_byte = cost;
    }

    /// Sets (or clears, with `None`) the outbound price charged to one peer.
    pub fn set_cost_override(&mut self, peer: NodeId, cost: Option<u64>) {
        match cost {
            Some(cost) => {
                self.cost_overrides.insert(peer, cost);
            }
            None => {
                self.cost_overrides.remove(&peer);
            }
        }
    }

    /// Whether `peer` is trusted.
    pub fn is_trusted(&self, peer: &NodeId) -> bool {
        self.trusted_peers.contains_key(peer)
    }

    /// Whether a packet handed over by `upstream_neighbour` is relayed for free.
    ///
    /// Packets carry no source address, so the decision keys on the link-authenticated
    /// neighbour that handed the packet over, never on a claimed sender (§8 item 13).
    pub fn is_free(&self, upstream_neighbour: &NodeId) -> bool {
        self.is_trusted(upstream_neighbour)
    }

    /// The price this node charges `peer` per byte relayed: 0 for trusted peers, else the
    /// peer's override, else the default.
    pub fn cost_per_byte(&self, peer: &NodeId) -> u64 {
        if self.is_free(peer) {
            0
        } else {
            self.cost_overrides
                .get(peer)
                .copied()
                .unwrap_or(self.default_cost_per_byte)
        }
    }

    /// The trusted peers and what each is granted, in id order.
    pub fn trusted_peers(&self) -> impl Iterator<Item = (&NodeId, &TrustedPeer)> {
        self.trusted_peers.iter()
    }

    /// Credit this node extends to `grantee`.
    ///
    /// A directly trusted grantee gets its own limit. Otherwise `vouchers` lists peers known
    /// (from the trust-edge gossip) to trust the grantee; each one that this node trusts
    /// directly offers `ratio · its limit`, and the largest offer wins. Anyone else — three
    /// or more hops away — gets `None`.
    pub fn credit_line(
        &self,
        grantee: &NodeId,
        vouchers: impl IntoIterator<Item = NodeId>,
    ) -> Option<CreditLine> {
        if let Some(peer) = self.trusted_peers.get(grantee) {
            return Some(CreditLine {
                limit: peer.credit_limit,
                voucher: None,
            });
        }
        vouchers
            .into_iter()
            .filter(|v| v != grantee)
            .filter_map(|v| {
                let peer = self.trusted_peers.get(&v)?;
                let ratio = peer
                    .transitive_ratio
                    .unwrap_or(self.transitive_credit_ratio);
                Some(CreditLine {
                    limit: ratio.apply(peer.credit_limit),
                    voucher: Some(v),
                })
            })
            // Largest limit; ties go to the lowest voucher id so the choice is deterministic.
            .max_by(|x, y| {
                x.limit
                    .cmp(&y.limit)
                    .then_with(|| y.voucher.cmp(&x.voucher))
            })
    }
}

/// Errors from drawing on or repaying a credit line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CreditError {
    /// The draw would take the outstanding amount over the limit.
    #[error(
        "credit limit {limit} μ exceeded: {outstanding} μ outstanding, {requested} μ requested"
    )]
    LimitExceeded {
        /// The grantee's limit.
        limit: u64,
        /// Already outstanding.
        outstanding: u64,
        /// The draw asked for.
        requested: u64,
    },
    /// A repayment larger than what is outstanding.
    #[error("repayment of {repaid} μ exceeds the {outstanding} μ outstanding")]
    OverRepaid {
        /// Outstanding before the repayment.
        outstanding: u64,
        /// The repayment.
        repaid: u64,
    },
}

/// Credit extended to one grantee (§4 `CreditState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditState {
    /// Who holds the credit.
    pub grantee: NodeId,
    /// The current limit, μ.
    pub credit_limit: u64,
    /// Drawn and not repaid, μ.
    pub outstanding: u64,
    /// Drawn during `last_grant_epoch`, μ.
    pub granted_this_epoch: u64,
    /// The epoch of the last draw.
    pub last_grant_epoch: u64,
}

impl CreditState {
    /// A fresh credit line with nothing drawn.
    pub fn new(grantee: NodeId, credit_limit: u64) -> Self {
        Self {
            grantee,
            credit_limit,
            outstanding: 0,
            granted_this_epoch: 0,
            last_grant_epoch: 0,
        }
    }

    /// Draws `amount` during `epoch`; the per-epoch counter restarts in a new epoch.
    pub fn draw(&mut self, amount: u64, epoch: u64) -> Result<(), CreditError> {
        let exceeded = CreditError::LimitExceeded {
            limit: self.credit_limit,
            outstanding: self.outstanding,
            requested: amount,
        };
        let new_outstanding = self
            .outstanding
            .checked_add(amount)
            .ok_or(exceeded.clone())?;
        if new_outstanding > self.credit_limit {
            return Err(exceeded);
        }
        if epoch != self.last_grant_epoch {
            self.granted_this_epoch = 0;
            self.last_grant_epoch = epoch;
        }
        self.outstanding = new_outstanding;
        self.granted_this_epoch = self.granted_this_epoch.saturating_add(amount);
        Ok(())
    }

    /// Repays `amount` of the outstanding credit.
    pub fn repay(&mut self, amount: u64) -> Result<(), CreditError> {
        self.outstanding = self
            .outstanding
            .checked_sub(amount)
            .ok_or(CreditError::OverRepaid {
                outstanding: self.outstanding,
                repaid: amount,
            })?;
        Ok(())
    }

    /// Credit still available.
    pub fn available(&self) -> u64 {
        self.credit_limit.saturating_sub(self.outstanding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 16])
    }

    #[test]
    fn trusted_upstream_relays_free_others_pay_their_price() {
        let mut t = TrustConfig::new(5);
        t.trust(id(1), 1_000);
        t.set_cost_override(id(2), Some(9));
        t.set_cost_override(id(1), Some(9));
        assert!(t.is_free(&id(1)));
        assert!(!t.is_free(&id(2)));
        assert_eq!(t.cost_per_byte(&id(1)), 0);
        assert_eq!(t.cost_per_byte(&id(2)), 9);
        assert_eq!(t.cost_per_byte(&id(3)), 5);
        assert!(t.revoke(&id(1)));
        assert!(!t.is_free(&id(1)));
        assert_eq!(t.cost_per_byte(&id(1)), 9);
    }

    #[test]
    fn credit_is_direct_then_transitive_then_none() {
        let mut t = TrustConfig::new(1);
        t.trust(id(1), 10_000);
        t.trust(id(2), 50_000);
        t.set_peer_ratio(&id(2), Some(CreditRatio::from_basis_points(5_000).unwrap()))
            .unwrap();
        assert_eq!(
            t.credit_line(&id(1), []),
            Some(CreditLine {
                limit: 10_000,
                voucher: None
            })
        );
        // Friend of friend through id(1): default 10% of 10_000.
        assert_eq!(
            t.credit_line(&id(9), [id(1)]),
            Some(CreditLine {
                limit: 1_000,
                voucher: Some(id(1))
            })
        );
        // Through id(2) at 50% of 50_000, which beats id(1).
        assert_eq!(
            t.credit_line(&id(9), [id(1), id(2)]),
            Some(CreditLine {
                limit: 25_000,
                voucher: Some(id(2))
            })
        );
        // A voucher we do not trust gives nothing: three hops or more.
        assert_eq!(t.credit_line(&id(9), [id(7)]), None);
    }

    #[test]
    fn ratio_is_capped_at_fifty_percent() {
        assert!(CreditRatio::from_basis_points(5_000).is_ok());
        assert_eq!(
            CreditRatio::from_basis_points(5_001),
            Err(TrustError::RatioTooHigh {
                got_bps: 5_001,
                max_bps: 5_000
            })
        );
        assert_eq!(CreditRatio::default().basis_points(), 1_000);
        let mut t = TrustConfig::new(1);
        assert_eq!(
            t.set_peer_ratio(&id(3), None),
            Err(TrustError::NotTrusted(id(3)))
        );
    }

    #[test]
    fn config_round_trips_through_json_and_rejects_bad_ratio() {
        let mut t = TrustConfig::new(3);
        t.trust(id(1), 77);
        t.set_cost_override(id(4), Some(8));
        t.set_transitive_ratio(CreditRatio::from_basis_points(2_500).unwrap());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TrustConfig>(&json).unwrap(), t);
        let bad = json.replace("2500", "6000");
        assert!(serde_json::from_str::<TrustConfig>(&bad).is_err());
    }

    #[test]
    fn credit_state_enforces_limit_and_resets_epoch_counter() {
        let mut c = CreditState::new(id(1), 100);
        c.draw(60, 1).unwrap();
        assert_eq!(
            c.draw(41, 1),
            Err(CreditError::LimitExceeded {
                limit: 100,
                outstanding: 60,
                requested: 41
            })
        );
        c.draw(40, 1).unwrap();
        assert_eq!(c.granted_this_epoch, 100);
        c.repay(50).unwrap();
        c.draw(10, 2).unwrap();
        assert_eq!(
            (c.granted_this_epoch, c.last_grant_epoch, c.available()),
            (10, 2, 40)
        );
        assert_eq!(
            c.repay(61),
            Err(CreditError::OverRepaid {
                outstanding: 60,
                repaid: 61
            })
        );
        assert!(c.draw(u64::MAX, 3).is_err());
    }
}
