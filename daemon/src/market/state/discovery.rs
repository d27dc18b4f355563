//! Adverts and discovery: this node's own advert, gossip with each neighbour link, presence
//! beacons, queries of the discovery table and pulls from neighbours, and the keys of the
//! peers heard of.

use rand::RngCore;

use super::{
    BTreeMap, BTreeSet, EventKind, Filter, GossipFrame, GossipStats, InsertOutcome, Link,
    LinkGossip, MarketError, MarketMessage, NeighbourFact, NodeCapabilities, NodeId, OWN_SEQ_KEY,
    OfferedFunction, Origin, Outbound, PULL_DEDUP_MS, PeerKey, PresenceBeacon, PullAnswer,
    PullWaiter, Query, ReputationAt, Resolution, SERVED_JOB_MEMORY_MS, STATE, State, Widen,
    classify_advert_error, kinds, mpsc, resale_markup, round,
};

impl State {
    /// The signed advert this node gossips.
    pub(in crate::market) fn own_advert(&self) -> &mehr_market::CapabilityAdvert {
        self.own.advert()
    }

    // ---- advert and gossip ------------------------------------------------------------

    /// Re-signs the advert if the capabilities changed or its refresh is due; persists the
    /// new sequence number before anyone can see it. Returns whether it re-signed.
    pub(in crate::market) fn refresh_advert(
        &mut self,
        capabilities: NodeCapabilities,
        now: u64,
    ) -> Result<bool, MarketError> {
        let changed = self.own.update(&self.key, capabilities, now)?
            || self.own.refresh_if_due(&self.key, now)?;
        if changed {
            self.deps.store.put(
                STATE,
                &OWN_SEQ_KEY.to_string(),
                &self.own.seq().to_le_bytes().to_vec(),
            )?;
            self.table
                .set_own_advert(self.own.advert().clone(), self.key.peer_key());
            if self.own.content_changed() {
                self.deps.events.publish(EventKind::OfferChanged {
                    seq: self.own.seq(),
                });
            }
        }
        Ok(changed)
    }

    /// Functions of neighbours that this node lacks, marked up for resale.
    pub(in crate::market) fn resale_functions(
        &self,
        own: &BTreeSet<String>,
        now: u64,
    ) -> Vec<OfferedFunction> {
        let percent = self.deps.config.resale_markup_percent;
        let mut found: BTreeMap<String, OfferedFunction> = BTreeMap::new();
        for node in self.links.keys() {
            let Some(advert) = self.table.advert(node, now) else {
                continue;
            };
            let Some(compute) = &advert.capabilities().compute else {
                continue;
            };
            for f in &compute.functions {
                if own.contains(&f.name) || found.contains_key(&f.name) {
                    continue;
                }
                let markup = resale_markup(f.cost.unit_price(), percent);
                if let Ok(cost) = f.cost.with_markup(markup) {
                    found.insert(f.name.clone(), OfferedFunction { cost, ..f.clone() });
                }
            }
        }
        found.into_values().collect()
    }

    /// Brings the gossip links in line with the transport's neighbours; what came through a
    /// neighbour that is gone is forgotten.
    pub(in crate::market) fn sync_links(&mut self, neighbours: &[NeighbourFact], now: u64) {
        let present: BTreeSet<NodeId> = neighbours.iter().map(|n| n.node_id).collect();
        let gone: Vec<NodeId> = self
            .links
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.links.remove(&id);
            self.table.forget_via(&id);
        }
        for n in neighbours {
            self.keys.insert(n.node_id, n.key.clone());
            match self.links.get_mut(&n.node_id) {
                Some(link) => {
                    link.cost = n.cost;
                    link.interface = n.interface;
                }
                None => {
                    self.links.insert(
                        n.node_id,
                        Link {
                            gossip: LinkGossip::new(n.bitrate, now),
                            bitrate: n.bitrate,
                            cost: n.cost,
                            interface: n.interface,
                        },
                    );
                }
            }
        }
    }

    /// One gossip round (or a flush after queueing pulls): what each link may send now.
    pub(in crate::market) fn gossip_poll(&mut self, now: u64) -> Vec<Outbound> {
        let summaries = self.table.summaries(1, now);
        let mut out = Vec::new();
        for (node, link) in &mut self.links {
            for message in link.gossip.poll(now, &self.own, &summaries) {
                out.push(Outbound {
                    to: *node,
                    kind: kinds::GOSSIP,
                    body: GossipFrame::encode(self.me, &message.bytes),
                    reliable: false,
                });
            }
        }
        self.table.expire(now);
        self.floods
            .retain(|_, (_, at)| now.saturating_sub(*at) < PULL_DEDUP_MS);
        self.served_jobs
            .retain(|_, (at, _)| now.saturating_sub(*at) < SERVED_JOB_MEMORY_MS);
        out
    }

    /// Gossip stats per link.
    pub(in crate::market) fn link_stats(&self) -> Vec<(NodeId, u64, u64, GossipStats)> {
        self.links
            .iter()
            .map(|(id, l)| {
                let budget = mehr_market::gossip::TokenBucket::t3(l.bitrate, 0).bytes_per_hour();
                (*id, l.bitrate, budget, l.gossip.stats())
            })
            .collect()
    }

    /// Takes a gossip message from a neighbour.
    pub(in crate::market) fn on_gossip(&mut self, frame: GossipFrame, now: u64) -> Vec<Outbound> {
        let from = frame.from;
        let Some(link_cost) = self.links.get(&from).map(|l| l.cost) else {
            self.counters.gossip_refused += 1;
            return Vec::new();
        };
        match frame.message {
            MarketMessage::Advert(advert) => {
                let Some(key) = self.keys.get(&from).cloned() else {
                    self.counters.adverts_refused += 1;
                    return Vec::new();
                };
                if advert.node_id() != from {
                    // Only the node itself pushes its advert; relayed adverts come in pulls.
                    self.counters.adverts_refused += 1;
                    return Vec::new();
                }
                let origin = Origin::neighbour(from, link_cost);
                match self.table.insert_advert(advert, &key, origin, 0, now) {
                    Ok(_) => self.counters.adverts_accepted += 1,
                    Err(e) => {
                        tracing::debug!(from = %from, error = %e, "advert refused");
                        classify_advert_error(&mut self.counters, &e);
                    }
                }
                Vec::new()
            }
            MarketMessage::Summaries(summaries) => {
                if let Err(e) = self.table.insert_summaries(from, 1, summaries, now) {
                    tracing::debug!(from = %from, error = %e, "summaries refused");
                    self.counters.gossip_refused += 1;
                }
                Vec::new()
            }
            MarketMessage::Pull(pull) => {
                if !self.dedup.first_sight(pull.nonce, now) {
                    self.counters.pulls_duplicate += 1;
                    return Vec::new();
                }
                self.counters.pulls_answered += 1;
                let answer = self.table.answer_pull(&pull, now);
                let forwarded = pull.forwarded();
                // A flood is answered only with something to say; a ring-1 pull always, so
                // the asker knows this neighbour is done.
                if (forwarded.is_none() || !answer.entries.is_empty())
                    && let Some(link) = self.links.get_mut(&from)
                {
                    link.gossip.queue_answer(&answer);
                }
                if let Some(next) = forwarded {
                    self.floods.insert(pull.nonce, (from, now));
                    for (node, link) in &mut self.links {
                        if *node != from {
                            link.gossip.queue_pull(&next);
                        }
                    }
                }
                self.gossip_poll(now)
            }
            MarketMessage::PullAnswer(answer) => {
                let answer = PullAnswer {
                    nonce: answer.nonce,
                    entries: answer
                        .entries
                        .into_iter()
                        .filter(|e| e.advert.node_id() != self.me)
                        .collect(),
                };
                for entry in &answer.entries {
                    if let Ok(key) = PeerKey::from_public_key(&entry.public_key)
                        && key.node_id() == entry.advert.node_id()
                    {
                        self.keys.entry(key.node_id()).or_insert(key);
                    }
                }
                if let Some(waiter) = self.pulls.get(&answer.nonce) {
                    let ring = waiter.ring;
                    for result in self
                        .table
                        .ingest_pull_answer(&answer, from, link_cost, ring, now)
                    {
                        match result {
                            Ok(InsertOutcome::New | InsertOutcome::Updated { .. }) => {
                                self.counters.adverts_accepted += 1
                            }
                            Ok(InsertOutcome::BetterPath) => {}
                            Err(e) => classify_advert_error(&mut self.counters, &e),
                        }
                    }
                    // Tell the waiter after the table holds the answer.
                    let _ = self.pulls.get(&answer.nonce).map(|w| w.answers.send(from));
                    return Vec::new();
                }
                if let Some((back, _)) = self.floods.get(&answer.nonce).copied()
                    && let Some(link) = self.links.get_mut(&back)
                {
                    link.gossip.queue_answer(&answer.via_hop(link_cost));
                    self.counters.pull_answers_relayed += 1;
                    return self.gossip_poll(now);
                }
                self.counters.gossip_refused += 1;
                Vec::new()
            }
            _ => {
                self.counters.gossip_refused += 1;
                Vec::new()
            }
        }
    }

    /// The beacon for every link of 10 kbit/s or more.
    pub(in crate::market) fn beacons(&mut self, now: u64, load: u8) -> Vec<Outbound> {
        let caps = self.own.advert().capabilities().beacon_caps();
        let tier = match self.settings.relay_price_per_byte_umhr {
            0 => 0,
            1..=10 => 1,
            11..=100 => 2,
            _ => 3,
        };
        let beacon: PresenceBeacon = self.beacons.beacon(now, caps, tier, load);
        let bytes = beacon.to_bytes().to_vec();
        let out: Vec<Outbound> = self
            .links
            .iter()
            .filter(|(_, l)| l.bitrate >= mehr_market::params::SLOW_LINK_BPS)
            .map(|(node, _)| Outbound {
                to: *node,
                kind: kinds::BEACON,
                body: bytes.clone(),
                reliable: false,
            })
            .collect();
        self.counters.beacons_sent += out.len() as u64;
        out
    }

    /// Takes a beacon that arrived on `interface`: its load goes to the one neighbour there.
    pub(in crate::market) fn on_beacon(&mut self, beacon: PresenceBeacon, interface: Option<u32>) {
        let Some(interface) = interface else {
            return;
        };
        let mut on_it = self.links.iter().filter(|(_, l)| l.interface == interface);
        if let (Some((node, _)), None) = (on_it.next(), on_it.next()) {
            let node = *node;
            self.table.set_load(node, beacon.load);
            self.counters.beacons_received += 1;
        }
    }

    // ---- discovery ------------------------------------------------------------------

    /// Resolves a query from what the table holds.
    pub(in crate::market) fn query(&self, query: &Query, now: u64) -> Resolution {
        let reputation = ReputationAt {
            book: &self.reputation,
            round: round(now),
        };
        self.table.query(query, &reputation, now)
    }

    /// Sends the pull of `widen` to its neighbours (all of them without a hint). Returns the
    /// neighbours asked; answers are reported on `answers` as they are stored.
    pub(in crate::market) fn start_pull(
        &mut self,
        widen: &Widen,
        filter: Filter,
        limit: u8,
        answers: mpsc::UnboundedSender<NodeId>,
        now: u64,
    ) -> (u64, Vec<NodeId>, Vec<Outbound>) {
        let nonce = self.rng.next_u64();
        let pull = widen.pull(filter, limit, nonce);
        let targets: Vec<NodeId> = if widen.via.is_empty() {
            self.links.keys().copied().collect()
        } else {
            widen
                .via
                .iter()
                .filter(|v| self.links.contains_key(v))
                .copied()
                .collect()
        };
        if targets.is_empty() {
            return (nonce, targets, Vec::new());
        }
        self.dedup.first_sight(nonce, now);
        self.pulls.insert(
            nonce,
            PullWaiter {
                ring: widen.ring,
                answers,
            },
        );
        for target in &targets {
            if let Some(link) = self.links.get_mut(target) {
                link.gossip.queue_pull(&pull);
            }
        }
        let out = self.gossip_poll(now);
        (nonce, targets, out)
    }

    /// Stops collecting answers to a pull.
    pub(in crate::market) fn end_pull(&mut self, nonce: u64) {
        self.pulls.remove(&nonce);
    }

    /// The key of `node`, if known from a neighbour, a pull answer or an agreement.
    pub(in crate::market) fn known_key(&self, node: &NodeId) -> Option<PeerKey> {
        self.keys.get(node).cloned()
    }

    /// Remembers a key learned elsewhere (an announce).
    pub(in crate::market) fn remember_key(&mut self, key: PeerKey) {
        self.keys.insert(key.node_id(), key);
    }

    // ---- agreements -----------------------------------------------------------------
}
