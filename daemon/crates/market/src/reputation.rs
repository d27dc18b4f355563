//! Local peer reputation (§3 "Reputation"): never gossiped, never on the wire; persisted by
//! the daemon (serde) and read by discovery ranking.
//!
//! Each peer has three scores in `0..=10000` (relay, storage, compute). A success moves a score
//! 1% of the way to 10000 (`s += (10000 − s)/100`), a failure takes 10% off (`s −= s/10`), so
//! trust is slow to earn and quick to lose. New peers start at 0. A referral from a directly
//! trusted peer seeds `min(5000, 30%·r)`, where `r` is the referrer's own score for the peer;
//! the seed then moves with the peer's outcomes like an own score, and gives way to the plain
//! own score after 500 rounds or 5 own interactions of that kind, whichever comes first.

use std::collections::BTreeMap;

use mehr_ledger::NodeId;
use serde::{Deserialize, Serialize};

use crate::capabilities::CapabilityKind;
use crate::params::{
    FAILURE_DIVISOR, MAX_SCORE, REFERRAL_CAP, REFERRAL_EXPIRY_ROUNDS, REFERRAL_REPLACED_AFTER,
    REFERRAL_SHARE_BPS, SUCCESS_DIVISOR,
};

/// Which of a peer's three scores an interaction or a capability concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// Relay, gateway and network services (pub/sub, DHT, naming).
    Relay,
    /// Storage.
    Storage,
    /// Compute: contracts, WASM, functions.
    Compute,
}

impl From<CapabilityKind> for ServiceKind {
    fn from(kind: CapabilityKind) -> Self {
        match kind {
            CapabilityKind::Relay
            | CapabilityKind::Gateway
            | CapabilityKind::PubSub
            | CapabilityKind::Dht
            | CapabilityKind::Naming => ServiceKind::Relay,
            CapabilityKind::Storage => ServiceKind::Storage,
            CapabilityKind::MhrByte | CapabilityKind::Wasm | CapabilityKind::Function => {
                ServiceKind::Compute
            }
        }
    }
}

impl ServiceKind {
    fn index(self) -> usize {
        match self {
            ServiceKind::Relay => 0,
            ServiceKind::Storage => 1,
            ServiceKind::Compute => 2,
        }
    }
}

/// The outcome of one interaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The service was delivered (receipt, proof or verified result).
    Success,
    /// It was not (missed heartbeat, failed challenge, divergent result).
    Failure,
}

fn apply(score: u16, outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Success => score + (MAX_SCORE - score.min(MAX_SCORE)) / SUCCESS_DIVISOR,
        Outcome::Failure => score - score / FAILURE_DIVISOR,
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Seed {
    value: u16,
    seeded_at_round: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Score {
    own: u16,
    interactions: u32,
    seed: Option<Seed>,
}

impl Score {
    fn seed_active(&self, round: u64) -> Option<Seed> {
        self.seed.filter(|s| {
            self.interactions < REFERRAL_REPLACED_AFTER
                && round < s.seeded_at_round.saturating_add(REFERRAL_EXPIRY_ROUNDS)
        })
    }
}

/// What this node knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReputation {
    node_id: NodeId,
    scores: [Score; 3],
    total: u32,
    failed: u32,
    first_seen_epoch: u64,
    last_updated_round: u64,
}

impl PeerReputation {
    /// A peer first seen in `epoch`: every score 0.
    pub fn new(node_id: NodeId, first_seen_epoch: u64) -> Self {
        Self {
            node_id,
            scores: [Score::default(); 3],
            total: 0,
            failed: 0,
            first_seen_epoch,
            last_updated_round: 0,
        }
    }

    /// The peer.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The effective score for `kind` at `round`: the referral-seeded score while the seed is
    /// active, the own score otherwise.
    pub fn score(&self, kind: ServiceKind, round: u64) -> u16 {
        let s = self.scores.get(kind.index()).copied().unwrap_or_default();
        s.seed_active(round).map_or(s.own, |seed| seed.value)
    }

    /// Interactions recorded, all kinds.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Failed interactions recorded, all kinds.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Epoch the peer was first seen in.
    pub fn first_seen_epoch(&self) -> u64 {
        self.first_seen_epoch
    }

    /// Round of the last update.
    pub fn last_updated_round(&self) -> u64 {
        self.last_updated_round
    }

    /// Records one interaction of `kind`.
    pub fn record(&mut self, kind: ServiceKind, outcome: Outcome, round: u64) {
        if let Some(s) = self.scores.get_mut(kind.index()) {
            s.own = apply(s.own, outcome);
            s.interactions = s.interactions.saturating_add(1);
            if let Some(seed) = &mut s.seed {
                seed.value = apply(seed.value, outcome);
            }
        }
        self.total = self.total.saturating_add(1);
        if outcome == Outcome::Failure {
            self.failed = self.failed.saturating_add(1);
        }
        self.last_updated_round = round;
    }

    /// Applies a referral from a directly trusted peer whose own score for this peer is
    /// `referrer_score`. The caller checks that the referrer is a 1-hop trusted peer. Does
    /// nothing once the peer has 5 own interactions of `kind`; keeps the higher of two seeds.
    pub fn seed_from_trusted_referral(
        &mut self,
        kind: ServiceKind,
        referrer_score: u16,
        round: u64,
    ) {
        let share = u32::from(referrer_score.min(MAX_SCORE)) * REFERRAL_SHARE_BPS / 10_000;
        let value = u16::try_from(share)
            .unwrap_or(REFERRAL_CAP)
            .min(REFERRAL_CAP);
        if let Some(s) = self.scores.get_mut(kind.index()) {
            if s.interactions >= REFERRAL_REPLACED_AFTER {
                return;
            }
            let keep_old = s.seed_active(round).is_some_and(|old| old.value >= value);
            if !keep_old {
                s.seed = Some(Seed {
                    value,
                    seeded_at_round: round,
                });
            }
        }
        self.last_updated_round = round;
    }
}

/// Every peer's reputation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationBook {
    peers: BTreeMap<NodeId, PeerReputation>,
}

impl ReputationBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer's record, if any.
    pub fn get(&self, node: &NodeId) -> Option<&PeerReputation> {
        self.peers.get(node)
    }

    /// The peer's record, created (scores 0) on first sight in `epoch`.
    pub fn peer_mut(&mut self, node: NodeId, epoch: u64) -> &mut PeerReputation {
        self.peers
            .entry(node)
            .or_insert_with(|| PeerReputation::new(node, epoch))
    }

    /// Records an interaction with `node`.
    pub fn record(
        &mut self,
        node: NodeId,
        kind: ServiceKind,
        outcome: Outcome,
        epoch: u64,
        round: u64,
    ) {
        self.peer_mut(node, epoch).record(kind, outcome, round);
    }

    /// The effective score, 0 for unknown peers.
    pub fn score(&self, node: &NodeId, kind: ServiceKind, round: u64) -> u16 {
        self.peers.get(node).map_or(0, |p| p.score(kind, round))
    }

    /// Number of peers known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N: NodeId = NodeId([1; 16]);

    #[test]
    fn spec_update_rules() {
        let mut p = PeerReputation::new(N, 3);
        assert_eq!(p.score(ServiceKind::Relay, 0), 0);
        p.record(ServiceKind::Relay, Outcome::Success, 1);
        assert_eq!(p.score(ServiceKind::Relay, 1), 100);
        p.record(ServiceKind::Relay, Outcome::Success, 2);
        assert_eq!(p.score(ServiceKind::Relay, 2), 199);
        p.record(ServiceKind::Relay, Outcome::Failure, 3);
        assert_eq!(p.score(ServiceKind::Relay, 3), 180);
        assert_eq!(p.score(ServiceKind::Storage, 3), 0);
        assert_eq!((p.total(), p.failed(), p.first_seen_epoch()), (3, 1, 3));
        assert_eq!(p.last_updated_round(), 3);
    }

    #[test]
    fn success_converges_below_max_and_failure_decays() {
        let mut s = 0u16;
        for _ in 0..2000 {
            s = apply(s, Outcome::Success);
        }
        // Integer division stops one step short: (10000 − 9901)/100 = 0.
        assert_eq!(s, 9901);
        assert_eq!(apply(10_000, Outcome::Failure), 9_000);
        assert_eq!(apply(9, Outcome::Failure), 9);
        assert_eq!(apply(10, Outcome::Failure), 9);
    }

    #[test]
    fn referral_seeds_expires_and_is_replaced() {
        let mut p = PeerReputation::new(N, 0);
        p.seed_from_trusted_referral(ServiceKind::Compute, 9_000, 10);
        assert_eq!(p.score(ServiceKind::Compute, 10), 2_700);
        // r ≤ 10000, so a seed is at most 3000: the 5000 cap of the spec never binds.
        let mut q = PeerReputation::new(N, 0);
        q.seed_from_trusted_referral(ServiceKind::Compute, 10_000, 0);
        assert_eq!(q.score(ServiceKind::Compute, 0), 3_000);
        // Expires after 500 rounds.
        assert_eq!(p.score(ServiceKind::Compute, 509), 2_700);
        assert_eq!(p.score(ServiceKind::Compute, 510), 0);
        // Moves with outcomes, and gives way after 5 own interactions.
        let mut r = PeerReputation::new(N, 0);
        r.seed_from_trusted_referral(ServiceKind::Storage, 10_000, 0);
        r.record(ServiceKind::Storage, Outcome::Failure, 1);
        assert_eq!(r.score(ServiceKind::Storage, 1), 2_700);
        for round in 2..6 {
            r.record(ServiceKind::Storage, Outcome::Success, round);
        }
        assert_eq!(r.score(ServiceKind::Storage, 6), 394);
        // Too late for a new referral.
        r.seed_from_trusted_referral(ServiceKind::Storage, 10_000, 7);
        assert_eq!(r.score(ServiceKind::Storage, 7), 394);
        // A lower referral does not replace a higher active one.
        let mut s = PeerReputation::new(N, 0);
        s.seed_from_trusted_referral(ServiceKind::Relay, 8_000, 0);
        s.seed_from_trusted_referral(ServiceKind::Relay, 1_000, 1);
        assert_eq!(s.score(ServiceKind::Relay, 1), 2_400);
    }

    #[test]
    fn book_defaults_to_zero_and_serializes() {
        let mut book = ReputationBook::new();
        assert_eq!(book.score(&N, ServiceKind::Relay, 0), 0);
        book.record(N, ServiceKind::Relay, Outcome::Success, 1, 1);
        assert_eq!(book.score(&N, ServiceKind::Relay, 1), 100);
        assert_eq!(book.len(), 1);
        let json = serde_json::to_string(&book).unwrap();
        assert_eq!(serde_json::from_str::<ReputationBook>(&json).unwrap(), book);
    }

    proptest! {
        #[test]
        fn scores_stay_in_range(ops in proptest::collection::vec(any::<bool>(), 0..500)) {
            let mut p = PeerReputation::new(N, 0);
            p.seed_from_trusted_referral(ServiceKind::Relay, u16::MAX, 0);
            for (i, ok) in ops.iter().enumerate() {
                let outcome = if *ok { Outcome::Success } else { Outcome::Failure };
                p.record(ServiceKind::Relay, outcome, i as u64);
                prop_assert!(p.score(ServiceKind::Relay, i as u64) <= MAX_SCORE);
            }
        }
    }
}
