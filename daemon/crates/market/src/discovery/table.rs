//! The discovery table: verified adverts and neighbours' summaries, with their origins.

use std::collections::{BTreeMap, VecDeque};

use mehr_ledger::NodeId;
use thiserror::Error;

use super::{
    Filter, NextStep, Origin, PullAnswer, PullEntry, PullRequest, Query, RankedOffer,
    RankingWeights, ReputationSource, Resolution, Widen,
};
use crate::capabilities::{CapabilityAdvert, CapabilityError, CapabilityKind};
use crate::cost::{COST_CODE_UNKNOWN, encode_cost_code};
use crate::identity::{IdentityError, PeerKey};
use crate::params::{DEFAULT_TABLE_CAPACITY, MAX_RING, MAX_SUMMARIES_PER_BATCH, SUMMARY_TTL_MS};
use crate::summary::CapabilitySummary;

/// Why the table refused an advert or summaries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiscoveryError {
    /// The advert is forged, stale, expired or malformed.
    #[error(transparent)]
    Advert(#[from] CapabilityError),
    /// A pull answer carried an unusable identity key.
    #[error("pull answer entry: {0}")]
    Key(#[from] IdentityError),
    /// The table is full of entries at least as close as this one.
    #[error("discovery table full ({capacity} adverts), none farther than ring {ring} hop {hops}")]
    Full {
        /// Capacity.
        capacity: usize,
        /// The refused advert's ring.
        ring: u8,
        /// The refused advert's hops.
        hops: u8,
    },
    /// Information tagged with a ring above 3.
    #[error("ring {ring} does not exist (rings are 0 to 3)")]
    BadRing {
        /// The ring given.
        ring: u8,
    },
    /// The table's own advert was offered as a peer's.
    #[error("advert of this node itself")]
    OwnAdvert,
}

/// What inserting an advert changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A provider not known before.
    New,
    /// A newer advert replaced the one held.
    Updated {
        /// The replaced seq.
        previous_seq: u64,
    },
    /// The same advert arrived over a shorter or cheaper path; only its origin changed.
    BetterPath,
}

#[derive(Clone, Debug)]
struct AdvertEntry {
    advert: CapabilityAdvert,
    key: PeerKey,
    origin: Origin,
    expires_at_ms: u64,
}

#[derive(Clone, Debug)]
struct SummarySet {
    ring: u8,
    summaries: Vec<CapabilitySummary>,
    expires_at_ms: u64,
}

/// What this node knows about providers, for discovery.
#[derive(Clone, Debug)]
pub struct DiscoveryTable {
    me: NodeId,
    own: Option<(CapabilityAdvert, PeerKey)>,
    adverts: BTreeMap<NodeId, AdvertEntry>,
    summaries: BTreeMap<NodeId, SummarySet>,
    loads: BTreeMap<NodeId, u8>,
    tombstones: BTreeMap<NodeId, u64>,
    tomb_order: VecDeque<(NodeId, u64)>,
    weights: RankingWeights,
    capacity: usize,
}

impl DiscoveryTable {
    /// An empty table for node `me`, with default weights and capacity.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            own: None,
            adverts: BTreeMap::new(),
            summaries: BTreeMap::new(),
            loads: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            tomb_order: VecDeque::new(),
            weights: RankingWeights::default(),
            capacity: DEFAULT_TABLE_CAPACITY,
        }
    }

    /// Replaces the ranking weights.
    pub fn with_weights(mut self, weights: RankingWeights) -> Self {
        self.weights = weights;
        self
    }

    /// Replaces the advert capacity (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets this node's own advert (answered to pulls at hop 0, never returned by queries).
    pub fn set_own_advert(&mut self, advert: CapabilityAdvert, key: PeerKey) {
        self.own = Some((advert, key));
    }

    /// Verifies and stores a peer's advert that arrived from `origin`, `age_seconds` after the
    /// origin sent it (0 when received from the advertising node itself). Rejects a forged
    /// advert, one whose key is not `key`, one whose seq is not above the held one (unless it
    /// is the same advert over a better path), and one already expired.
    pub fn insert_advert(
        &mut self,
        advert: CapabilityAdvert,
        key: &PeerKey,
        origin: Origin,
        age_seconds: u32,
        now_ms: u64,
    ) -> Result<InsertOutcome, DiscoveryError> {
        if origin.ring > MAX_RING {
            return Err(DiscoveryError::BadRing { ring: origin.ring });
        }
        let node = advert.node_id();
        if node == self.me {
            return Err(DiscoveryError::OwnAdvert);
        }
        let live = self.adverts.get(&node).filter(|e| e.expires_at_ms > now_ms);
        if let Some(held) = live
            && held.advert.as_bytes() == advert.as_bytes()
        {
            // A copy of an advert already verified: only its path can be news.
            if key.node_id() != node {
                return Err(CapabilityError::WrongNode {
                    expected: key.node_id(),
                    advertised: node,
                }
                .into());
            }
            if origin.closeness() < held.origin.closeness() {
                if let Some(e) = self.adverts.get_mut(&node) {
                    e.origin = origin;
                }
                return Ok(InsertOutcome::BetterPath);
            }
            return Err(stale(node, held.advert.seq(), advert.seq()));
        }
        advert.verify(key)?;
        if age_seconds >= advert.ttl_seconds() {
            return Err(CapabilityError::Expired {
                node,
                ttl_seconds: advert.ttl_seconds(),
                age_seconds,
            }
            .into());
        }
        // Adverts carry no absolute time (decision 8), so only the highest seq seen, kept
        // after expiry as a tombstone, stops an old advert from being replayed back to life.
        let highest_seen = live
            .map(|e| e.advert.seq())
            .or_else(|| self.adverts.get(&node).map(|e| e.advert.seq()))
            .or_else(|| self.tombstones.get(&node).copied());
        if let Some(stored) = highest_seen
            && advert.seq() <= stored
        {
            return Err(stale(node, stored, advert.seq()));
        }
        let outcome = match live {
            Some(held) => InsertOutcome::Updated {
                previous_seq: held.advert.seq(),
            },
            None => InsertOutcome::New,
        };
        // A newer advert keeps the better of the two paths: the provider did not move.
        let origin = match live {
            Some(held) if held.origin.closeness() < origin.closeness() => held.origin,
            _ => origin,
        };
        if !self.adverts.contains_key(&node) && self.adverts.len() >= self.capacity {
            self.make_room(origin, now_ms)?;
        }
        let remaining_ms = u64::from(advert.ttl_seconds() - age_seconds) * 1_000;
        self.tombstones.remove(&node);
        self.adverts.insert(
            node,
            AdvertEntry {
                advert,
                key: key.clone(),
                origin,
                expires_at_ms: now_ms.saturating_add(remaining_ms),
            },
        );
        Ok(outcome)
    }

    fn make_room(&mut self, incoming: Origin, now_ms: u64) -> Result<(), DiscoveryError> {
        let victim = self
            .adverts
            .iter()
            .max_by_key(|(id, e)| {
                (
                    e.expires_at_ms > now_ms,
                    e.origin.closeness(),
                    std::cmp::Reverse(e.expires_at_ms),
                    **id,
                )
            })
            .map(|(id, e)| (*id, e.expires_at_ms > now_ms, e.origin));
        match victim {
            Some((id, live, origin)) if !live || origin.closeness() > incoming.closeness() => {
                self.bury(id);
                Ok(())
            }
            _ => Err(DiscoveryError::Full {
                capacity: self.capacity,
                ring: incoming.ring,
                hops: incoming.hops,
            }),
        }
    }

    /// Removes an advert, remembering its seq so that a replay of it stays refused. Tombstones
    /// are bounded at four times the capacity; the oldest go first.
    fn bury(&mut self, id: NodeId) {
        let Some(e) = self.adverts.remove(&id) else {
            return;
        };
        let seq = e.advert.seq();
        self.tombstones.insert(id, seq);
        self.tomb_order.push_back((id, seq));
        let limit = self.capacity.saturating_mul(4);
        while self.tombstones.len() > limit {
            let Some((old, old_seq)) = self.tomb_order.pop_front() else {
                break;
            };
            if self.tombstones.get(&old) == Some(&old_seq) {
                self.tombstones.remove(&old);
            }
        }
        if self.tomb_order.len() > limit.saturating_mul(2) {
            let tombstones = &self.tombstones;
            self.tomb_order
                .retain(|(id, seq)| tombstones.get(id) == Some(seq));
        }
    }

    /// Stores the summaries a neighbour sent (replacing its previous ones). They describe
    /// providers at the neighbour's hop counts; this table adds the hop to the neighbour.
    /// `ring` is 1 for gossiped summaries, 2 for trust-graph aggregates.
    pub fn insert_summaries(
        &mut self,
        via: NodeId,
        ring: u8,
        summaries: Vec<CapabilitySummary>,
        now_ms: u64,
    ) -> Result<(), DiscoveryError> {
        if ring > MAX_RING {
            return Err(DiscoveryError::BadRing { ring });
        }
        let mut summaries = summaries;
        summaries.truncate(MAX_SUMMARIES_PER_BATCH);
        self.summaries.insert(
            via,
            SummarySet {
                ring,
                summaries,
                expires_at_ms: now_ms.saturating_add(SUMMARY_TTL_MS),
            },
        );
        Ok(())
    }

    /// Records a provider's load (0 idle … 255 saturated), e.g. from a beacon the daemon
    /// matched to a linked neighbour.
    pub fn set_load(&mut self, node: NodeId, load: u8) {
        self.loads.insert(node, load);
    }

    /// Verifies and stores every entry of a pull answer received from neighbour `from` over a
    /// link costing `link_cost` μ/byte, for a search of ring `ring`. Returns one result per
    /// entry.
    pub fn ingest_pull_answer(
        &mut self,
        answer: &PullAnswer,
        from: NodeId,
        link_cost: u64,
        ring: u8,
        now_ms: u64,
    ) -> Vec<Result<InsertOutcome, DiscoveryError>> {
        answer
            .entries
            .iter()
            .map(|e| {
                let key = PeerKey::from_public_key(&e.public_key)?;
                let origin = Origin {
                    ring,
                    hops: e.hops.saturating_add(1),
                    path_cost: e.path_cost.saturating_add(link_cost),
                    via: from,
                };
                self.insert_advert(e.advert.clone(), &key, origin, e.age_seconds, now_ms)
            })
            .collect()
    }

    /// Drops what was learned through neighbour `via` (its link went down): its summaries and
    /// every advert whose best path ran through it.
    pub fn forget_via(&mut self, via: &NodeId) {
        self.summaries.remove(via);
        let gone: Vec<NodeId> = self
            .adverts
            .iter()
            .filter(|(_, e)| e.origin.via == *via)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.bury(id);
        }
        self.loads.remove(via);
    }

    /// Removes expired adverts and summaries; returns how many adverts went. Expired entries
    /// are also ignored by every read, so calling this is only about memory.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let expired: Vec<NodeId> = self
            .adverts
            .iter()
            .filter(|(_, e)| e.expires_at_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.bury(*id);
        }
        self.summaries.retain(|_, s| s.expires_at_ms > now_ms);
        expired.len()
    }

    /// The live advert held for `node`.
    pub fn advert(&self, node: &NodeId, now_ms: u64) -> Option<&CapabilityAdvert> {
        self.adverts
            .get(node)
            .filter(|e| e.expires_at_ms > now_ms)
            .map(|e| &e.advert)
    }

    /// The origin of the live advert held for `node`.
    pub fn origin(&self, node: &NodeId, now_ms: u64) -> Option<Origin> {
        self.adverts
            .get(node)
            .filter(|e| e.expires_at_ms > now_ms)
            .map(|e| e.origin)
    }

    /// Live adverts held.
    pub fn len(&self, now_ms: u64) -> usize {
        self.adverts
            .values()
            .filter(|e| e.expires_at_ms > now_ms)
            .count()
    }

    /// Whether no live advert is held.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }

    /// Resolves a query: the ranked offers of the nearest ring that holds `want` matches, or
    /// every match found so far plus the next step (widen to the next ring, or exhausted).
    pub fn query(&self, q: &Query, reputation: &impl ReputationSource, now_ms: u64) -> Resolution {
        let max_ring = q.max_ring.min(MAX_RING);
        let want = q.want.max(1);
        let service = q.filter.kind.into();
        let mut matches: Vec<RankedOffer> = self
            .adverts
            .iter()
            .filter(|(_, e)| e.expires_at_ms > now_ms && e.origin.ring <= max_ring)
            .filter_map(|(id, e)| {
                let m = q.filter.matches(e.advert.capabilities())?;
                Some(RankedOffer {
                    node_id: *id,
                    unit_price: m.unit_price,
                    cost: m.cost,
                    origin: e.origin,
                    reputation: reputation.score(id, service),
                    load: self.loads.get(id).copied(),
                    score: 0,
                })
            })
            .collect();
        let satisfied =
            (0..=max_ring).find(|r| matches.iter().filter(|m| m.origin.ring <= *r).count() >= want);
        if let Some(ring) = satisfied {
            matches.retain(|m| m.origin.ring <= ring);
        }
        self.weights.rank(&mut matches);
        let next = match satisfied {
            Some(_) => NextStep::Satisfied,
            None if q.searched_ring < max_ring => {
                let ring = q.searched_ring + 1;
                NextStep::Widen(Widen {
                    ring,
                    via: self.hints(&q.filter, ring, now_ms),
                })
            }
            None => NextStep::Exhausted,
        };
        Resolution {
            offers: matches,
            next,
        }
    }

    /// Neighbours whose summaries for `ring` show a provider of the kind that may be within
    /// the price cap (summary costs are rounded up, so comparing codes never misses one).
    fn hints(&self, filter: &Filter, ring: u8, now_ms: u64) -> Vec<NodeId> {
        let cap_code = filter.max_price.map(encode_cost_code);
        self.summaries
            .iter()
            .filter(|(_, s)| s.ring == ring && s.expires_at_ms > now_ms)
            .filter(|(_, s)| {
                s.summaries.iter().any(|sum| {
                    sum.kind == filter.kind
                        && match cap_code {
                            None => true,
                            Some(cap) => sum.min_cost == COST_CODE_UNKNOWN || sum.min_cost <= cap,
                        }
                })
            })
            .map(|(via, _)| *via)
            .collect()
    }

    /// The summaries this node sends for `ring`, one per capability kind it knows providers
    /// of: for ring 1 (gossiped to neighbours) the providers within 2 hops of this node, so
    /// they lie within 3 hops of the receiver; for ring 2 (sent to trusted peers) every live
    /// provider it knows. Other rings have no summaries.
    pub fn summaries(&self, ring: u8, now_ms: u64) -> Vec<CapabilitySummary> {
        let max_hops = match ring {
            1 => 2,
            2 => u8::MAX,
            _ => return Vec::new(),
        };
        CapabilityKind::ALL
            .iter()
            .filter_map(|kind| {
                let providers = self
                    .adverts
                    .values()
                    .filter(|e| e.expires_at_ms > now_ms && e.origin.hops <= max_hops)
                    .filter(|e| e.advert.capabilities().offers(*kind))
                    .map(|e| (e.advert.capabilities().unit_price(*kind), e.origin.hops));
                CapabilitySummary::aggregate(*kind, providers)
            })
            .collect()
    }

    /// Answers a pull: this node's own advert and the live adverts it holds that match, within
    /// `max_hops − 1` of itself, cheapest then nearest first, at most `limit`.
    pub fn answer_pull(&self, pull: &PullRequest, now_ms: u64) -> PullAnswer {
        let reach = pull.max_hops.saturating_sub(1);
        let mut found: Vec<(Option<u64>, u8, NodeId, PullEntry)> = Vec::new();
        if let Some((advert, key)) = &self.own
            && let Some(m) = pull.filter.matches(advert.capabilities())
        {
            found.push((
                m.unit_price,
                0,
                advert.node_id(),
                PullEntry {
                    public_key: *key.public_key(),
                    hops: 0,
                    path_cost: 0,
                    age_seconds: 0,
                    advert: advert.clone(),
                },
            ));
        }
        for (id, e) in &self.adverts {
            if e.expires_at_ms <= now_ms || e.origin.hops > reach {
                continue;
            }
            let Some(m) = pull.filter.matches(e.advert.capabilities()) else {
                continue;
            };
            // Age as the requester must see it: the advert's ttl minus what is left of it here.
            let remaining_s = e.expires_at_ms.saturating_sub(now_ms) / 1_000;
            let age = u64::from(e.advert.ttl_seconds()).saturating_sub(remaining_s);
            found.push((
                m.unit_price,
                e.origin.hops,
                *id,
                PullEntry {
                    public_key: *e.key.public_key(),
                    hops: e.origin.hops,
                    path_cost: e.origin.path_cost,
                    age_seconds: u32::try_from(age).unwrap_or(u32::MAX),
                    advert: e.advert.clone(),
                },
            ));
        }
        found.sort_by_key(|f| (f.0, f.1, f.2));
        PullAnswer {
            nonce: pull.nonce,
            entries: found
                .into_iter()
                .take(usize::from(pull.limit))
                .map(|(_, _, _, e)| e)
                .collect(),
        }
    }
}

fn stale(node: NodeId, stored: u64, received: u64) -> DiscoveryError {
    CapabilityError::Stale {
        node,
        stored,
        received,
    }
    .into()
}

#[cfg(test)]
mod tests;
