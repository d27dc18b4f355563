//! A small deterministic mesh simulator driving the pure market logic.
//!
//! N nodes on a random geometric graph (each linked to its 3 nearest, then components
//! joined), all links of one profile (bit rate, per-hop latency). Every node runs the real
//! `OwnAdvert`, `LinkGossip` and `DiscoveryTable`; messages are the real encodings, delivered
//! within the gossip round. Some nodes serve the function `embed` at random prices that
//! drift over time. Discovery then runs as the daemon would: query, widen, pull, ingest,
//! query again, with message times = latency + airtime of the Reticulum link frames, pulls
//! and answers charged to each link's T3 token bucket (waiting for it when empty).

// Shared by the mesh test and the benchmark; each uses a part of it.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use ed25519_dalek::SigningKey;
use mehr_market::capabilities::{
    Availability, Compute, CpuClass, Interface, Medium, OfferedFunction, Services,
};
use mehr_market::discovery::{
    Filter, NextStep, NoReputation, Origin, PullAnswer, PullDedup, PullRequest, Query,
};
use mehr_market::gossip::{LinkGossip, OwnAdvert, TokenBucket, link_frame_bytes};
use mehr_market::message::MarketMessage;
use mehr_market::params::GOSSIP_ROUND_MS;
use mehr_market::{CostStructure, DiscoveryTable, NodeCapabilities, NodeId, NodeKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Link characteristics shared by every link of a mesh.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub(crate) name: &'static str,
    pub(crate) link_bps: u64,
    pub(crate) latency_ms: u64,
    /// Adverts per pull answer (small on slow links: each costs airtime).
    pub(crate) pull_limit: u8,
}

pub(crate) const LORA: Profile = Profile {
    name: "LoRa 1200 bit/s",
    link_bps: 1_200,
    latency_ms: 100,
    pull_limit: 2,
};

pub(crate) const WIFI: Profile = Profile {
    name: "WiFi 10 Mbit/s",
    link_bps: 10_000_000,
    latency_ms: 5,
    pull_limit: 8,
};

pub(crate) const FUNCTION: &str = "embed";

#[derive(Clone)]
struct SimNode {
    key: NodeKey,
    table: DiscoveryTable,
    own: OwnAdvert,
    links: BTreeMap<usize, LinkGossip>,
    relay_cost: u64,
    price: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct Mesh {
    profile: Profile,
    nodes: Vec<SimNode>,
    adj: Vec<Vec<usize>>,
    index: BTreeMap<NodeId, usize>,
    rng: StdRng,
    now_ms: u64,
}

fn capabilities(profile: &Profile, relay_cost: u64, price: Option<u64>) -> NodeCapabilities {
    let medium = if profile.link_bps < 10_000 {
        Medium::LoRa
    } else {
        Medium::WiFi
    };
    NodeCapabilities {
        interfaces: vec![Interface {
            medium,
            bandwidth_bps: profile.link_bps,
            latency_ms: profile.latency_ms as u32,
            reliability: 200,
            cost_per_byte: relay_cost,
            internet_gateway: false,
        }],
        compute: price.map(|per_call| Compute {
            cpu_class: CpuClass::Medium,
            memory_mb: 2_048,
            mhr_byte: false,
            wasm: true,
            cost_per_million_cycles: 20,
            functions: vec![OfferedFunction {
                name: FUNCTION.into(),
                description: "sentence embeddings".into(),
                cost: CostStructure::PerInvocation {
                    per_call,
                    max_input: 65_536,
                },
                max_concurrent: 2,
            }],
        }),
        storage: None,
        services: Services::default(),
        availability: Availability::AlwaysOn,
    }
}

/// Bytes per hour of gossip on one directed link, measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct GossipReport {
    /// Per directed link, link bytes per hour over the measured window.
    pub(crate) per_link_per_hour: Vec<f64>,
    /// Per node, link bytes per hour summed over its links.
    pub(crate) per_node_per_hour: Vec<f64>,
    /// The T3 budget of one link, bytes per hour.
    pub(crate) budget_per_link_per_hour: u64,
    /// Re-signed adverts per node per hour (changes and refreshes).
    pub(crate) adverts_per_node_per_hour: f64,
}

/// One discovery run.
#[derive(Clone, Debug)]
pub(crate) struct QueryReport {
    /// Hops to the provider ranked first when the query was first satisfied.
    pub(crate) first_hops: Option<u32>,
    /// Its unit price.
    pub(crate) first_price: Option<u64>,
    /// Hops to the nearest provider among the offers once every answer was in.
    pub(crate) nearest_hops: Option<u32>,
    /// Simulated time until every answer of the last ring was in.
    pub(crate) settled_ms: u64,
    /// Simulated time until an offer from a provider at the optimal distance was known.
    pub(crate) nearest_ms: Option<u64>,
    /// Hops to the nearest provider within the price cap (ground truth, BFS).
    pub(crate) optimal_hops: Option<u32>,
    /// Simulated time until the query was first satisfied (0 if never).
    pub(crate) ms: u64,
    /// The highest ring pulled.
    pub(crate) rings: u8,
    /// Link bytes of pull requests and answers.
    pub(crate) pull_bytes: u64,
}

enum Event {
    PullArrive {
        at: usize,
        from: usize,
        pull: PullRequest,
        path: Vec<usize>,
    },
    AnswerArrive {
        at: usize,
        from: usize,
        answer: PullAnswer,
        path: Vec<usize>,
    },
}

impl Mesh {
    /// Builds an `n`-node mesh; `providers` nodes (never node 0..3) serve `embed`.
    pub(crate) fn build(n: usize, providers: usize, profile: Profile, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let pos: Vec<(f64, f64)> = (0..n).map(|_| (rng.r#gen(), rng.r#gen())).collect();
        let dist = |a: usize, b: usize| {
            let (dx, dy) = (pos[a].0 - pos[b].0, pos[a].1 - pos[b].1);
            dx * dx + dy * dy
        };
        let mut adj = vec![Vec::<usize>::new(); n];
        let link = |adj: &mut Vec<Vec<usize>>, a: usize, b: usize| {
            if a != b && !adj[a].contains(&b) {
                adj[a].push(b);
                adj[b].push(a);
            }
        };
        for a in 0..n {
            let mut others: Vec<usize> = (0..n).filter(|b| *b != a).collect();
            others.sort_by(|x, y| dist(a, *x).total_cmp(&dist(a, *y)));
            for b in others.into_iter().take(3) {
                link(&mut adj, a, b);
            }
        }
        // Join components by their closest pair until the mesh is connected.
        loop {
            let comp = components(&adj);
            if comp.iter().all(|c| *c == 0) {
                break;
            }
            let (mut best, mut pair) = (f64::MAX, (0, 0));
            for a in 0..n {
                for b in 0..n {
                    if comp[a] == 0 && comp[b] != 0 && dist(a, b) < best {
                        best = dist(a, b);
                        pair = (a, b);
                    }
                }
            }
            link(&mut adj, pair.0, pair.1);
        }
        let mut provider_ids: Vec<usize> = (4..n).collect();
        for i in (1..provider_ids.len()).rev() {
            let j = rng.gen_range(0..=i);
            provider_ids.swap(i, j);
        }
        provider_ids.truncate(providers);
        let nodes = (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                let key = NodeKey::new(SigningKey::from_bytes(&seed), [i as u8; 32]);
                let relay_cost = rng.gen_range(1..=5);
                let price = provider_ids.contains(&i).then(|| rng.gen_range(10..=200));
                let own = OwnAdvert::new(&key, capabilities(&profile, relay_cost, price), 1, 0)
                    .expect("simulated capabilities are valid");
                let mut table = DiscoveryTable::new(key.node_id());
                table.set_own_advert(own.advert().clone(), key.peer_key());
                let links = adj[i]
                    .iter()
                    .map(|j| (*j, LinkGossip::new(profile.link_bps, 0)))
                    .collect();
                SimNode {
                    key,
                    table,
                    own,
                    links,
                    relay_cost,
                    price,
                }
            })
            .collect::<Vec<_>>();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.node_id(), i))
            .collect();
        Self {
            profile,
            nodes,
            adj,
            index,
            rng,
            now_ms: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn links(&self) -> usize {
        self.adj.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Runs `hours` of gossip rounds; measures the rounds after the first `warmup_hours`.
    /// Each provider changes its price with probability 1/30 per round (about twice an hour).
    pub(crate) fn run_gossip(&mut self, warmup_hours: u64, hours: u64) -> GossipReport {
        let rounds_per_hour = 3_600_000 / GOSSIP_ROUND_MS;
        let mut start_bytes: Vec<BTreeMap<usize, u64>> = Vec::new();
        let mut resigns = 0u64;
        for round in 0..(warmup_hours + hours) * rounds_per_hour {
            if round == warmup_hours * rounds_per_hour {
                start_bytes = self
                    .nodes
                    .iter()
                    .map(|s| {
                        s.links
                            .iter()
                            .map(|(j, l)| (*j, l.stats().total_bytes()))
                            .collect()
                    })
                    .collect();
                resigns = 0;
            }
            self.now_ms = round * GOSSIP_ROUND_MS;
            resigns += self.gossip_round();
        }
        let mut report = GossipReport {
            budget_per_link_per_hour: TokenBucket::t3(self.profile.link_bps, 0).bytes_per_hour(),
            adverts_per_node_per_hour: resigns as f64 / (self.len() as f64 * hours as f64),
            ..GossipReport::default()
        };
        for (i, s) in self.nodes.iter().enumerate() {
            let mut node_total = 0.0;
            for (j, l) in &s.links {
                let before = start_bytes
                    .get(i)
                    .and_then(|m| m.get(j))
                    .copied()
                    .unwrap_or(0);
                let per_hour = (l.stats().total_bytes() - before) as f64 / hours as f64;
                report.per_link_per_hour.push(per_hour);
                node_total += per_hour;
            }
            report.per_node_per_hour.push(node_total);
        }
        report
    }

    /// One round: price drift, refreshes, then every link's gossip, delivered at once.
    fn gossip_round(&mut self) -> u64 {
        let now = self.now_ms;
        let mut resigned = 0;
        for i in 0..self.nodes.len() {
            let drift = self.nodes[i].price.is_some() && self.rng.gen_ratio(1, 30);
            let s = &mut self.nodes[i];
            if drift {
                let price = self.rng.gen_range(10..=200);
                s.price = Some(price);
                let caps = capabilities(&self.profile, s.relay_cost, Some(price));
                if s.own.update(&s.key, caps, now).expect("valid capabilities") {
                    resigned += 1;
                }
            }
            if s.own
                .refresh_if_due(&s.key, now)
                .expect("valid capabilities")
            {
                resigned += 1;
            }
            s.table
                .set_own_advert(s.own.advert().clone(), s.key.peer_key());
            s.table.expire(now);
        }
        let mut deliveries = Vec::new();
        for i in 0..self.nodes.len() {
            let s = &mut self.nodes[i];
            let summaries = s.table.summaries(1, now);
            for (j, link) in s.links.iter_mut() {
                for out in link.poll(now, &s.own, &summaries) {
                    deliveries.push((*j, i, out.bytes));
                }
            }
        }
        for (to, from, bytes) in deliveries {
            let from_key = self.nodes[from].key.peer_key();
            let link_cost = self.nodes[from].relay_cost;
            let table = &mut self.nodes[to].table;
            match MarketMessage::decode(&bytes).expect("well-formed gossip") {
                MarketMessage::Advert(advert) => {
                    let origin = Origin::neighbour(from_key.node_id(), link_cost);
                    table
                        .insert_advert(advert, &from_key, origin, 0, now)
                        .expect("fresh neighbour advert");
                }
                MarketMessage::Summaries(summaries) => {
                    table
                        .insert_summaries(from_key.node_id(), 1, summaries, now)
                        .expect("ring 1");
                }
                other => panic!("unexpected gossip {}", other.type_code()),
            }
        }
        resigned
    }

    fn hop_distances(&self, from: usize) -> Vec<Option<u32>> {
        let mut dist = vec![None; self.len()];
        dist[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(u) = queue.pop_front() {
            for &v in &self.adj[u] {
                if dist[v].is_none() {
                    dist[v] = dist[u].map(|d| d + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    fn transfer_ms(&self, bucket: &mut TokenBucket, bytes: usize, at_ms: u64) -> (u64, u64) {
        let link_bytes = link_frame_bytes(bytes);
        let wait = bucket.ms_until(link_bytes, at_ms).unwrap_or(0);
        let sent_at = at_ms + wait;
        bucket.try_take(link_bytes, sent_at);
        let airtime = link_bytes * 8 * 1_000 / self.profile.link_bps.max(1);
        (
            sent_at + airtime + self.profile.latency_ms - at_ms,
            link_bytes,
        )
    }

    /// Discovers a provider of `embed` at most `max_price` for `consumer`, widening ring by
    /// ring as the table says. Ring 2 (trusted peers) is empty in this mesh.
    pub(crate) fn discover(&mut self, consumer: usize, max_price: u64) -> QueryReport {
        let start = self.now_ms;
        let dist = self.hop_distances(consumer);
        let optimal_hops = (0..self.len())
            .filter(|i| *i != consumer && self.nodes[*i].price.is_some_and(|p| p <= max_price))
            .filter_map(|i| dist[i])
            .min();
        let filter = Filter::function(FUNCTION, Some(max_price));
        let mut query = Query::new(filter);
        let mut buckets: BTreeMap<(usize, usize), TokenBucket> = BTreeMap::new();
        let mut dedup: Vec<PullDedup> = (0..self.len()).map(|_| PullDedup::new()).collect();
        let mut now = start;
        let mut pull_bytes = 0u64;
        let mut nonce = 0u64;
        let profile = self.profile;
        // (time, hops, price) of the top offer when the query was first satisfied.
        let mut first: Option<(u64, u32, Option<u64>)> = None;
        let mut nearest_at: Option<u64> = None;
        loop {
            let res = self.nodes[consumer].table.query(&query, &NoReputation, now);
            if res.next == NextStep::Satisfied && first.is_none() {
                first = res
                    .offers
                    .first()
                    .map(|o| (now, u32::from(o.origin.hops), o.unit_price));
            }
            if nearest_at.is_none() && reaches(&res.offers, optimal_hops) {
                nearest_at = Some(now);
            }
            let widen = match res.next {
                NextStep::Satisfied | NextStep::Exhausted => {
                    return QueryReport {
                        first_hops: first.map(|f| f.1),
                        first_price: first.and_then(|f| f.2),
                        nearest_hops: res.offers.iter().map(|o| u32::from(o.origin.hops)).min(),
                        settled_ms: now - start,
                        nearest_ms: nearest_at.map(|t| t - start),
                        optimal_hops,
                        ms: first.map_or(0, |f| f.0 - start),
                        rings: query.searched_ring,
                        pull_bytes,
                    };
                }
                NextStep::Widen(w) => w,
            };
            query.searched_ring = widen.ring;
            if widen.ring == 2 {
                continue;
            }
            nonce += 1;
            let pull = widen.pull(filter, profile.pull_limit, nonce);
            let targets = if widen.via.is_empty() {
                self.adj[consumer].clone()
            } else {
                widen.via.iter().map(|id| self.index[id]).collect()
            };
            dedup[consumer].first_sight(pull.nonce, now);
            let mut events: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
            let mut store: Vec<Option<Event>> = Vec::new();
            let push = |events: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                        store: &mut Vec<Option<Event>>,
                        at: u64,
                        e: Event| {
                store.push(Some(e));
                events.push(Reverse((at, store.len() as u64, store.len() - 1)));
            };
            let size = MarketMessage::Pull(pull).encode().len();
            for t in targets {
                let bucket = buckets
                    .entry((consumer, t))
                    .or_insert_with(|| TokenBucket::t3(profile.link_bps, now));
                let (ms, bytes) = self.transfer_ms(bucket, size, now);
                pull_bytes += bytes;
                let e = Event::PullArrive {
                    at: t,
                    from: consumer,
                    pull,
                    path: vec![consumer],
                };
                push(&mut events, &mut store, now + ms, e);
            }
            // Every answer of the ring is taken in; the first satisfying moment is noted.
            let mut last = now;
            while let Some(Reverse((t, _, slot))) = events.pop() {
                last = last.max(t);
                let Some(event) = store[slot].take() else {
                    continue;
                };
                match event {
                    Event::PullArrive {
                        at,
                        from,
                        pull,
                        path,
                    } => {
                        if !dedup[at].first_sight(pull.nonce, t) {
                            continue;
                        }
                        let answer = self.nodes[at].table.answer_pull(&pull, t);
                        if !answer.entries.is_empty() {
                            let size = MarketMessage::PullAnswer(answer.clone()).encode().len();
                            let bucket = buckets
                                .entry((at, from))
                                .or_insert_with(|| TokenBucket::t3(profile.link_bps, t));
                            let (ms, bytes) = self.transfer_ms(bucket, size, t);
                            pull_bytes += bytes;
                            let mut back = path.clone();
                            back.pop();
                            push(
                                &mut events,
                                &mut store,
                                t + ms,
                                Event::AnswerArrive {
                                    at: from,
                                    from: at,
                                    answer,
                                    path: back,
                                },
                            );
                        }
                        if let Some(next) = pull.forwarded() {
                            let size = MarketMessage::Pull(next).encode().len();
                            for &v in &self.adj[at] {
                                if v == from {
                                    continue;
                                }
                                let bucket = buckets
                                    .entry((at, v))
                                    .or_insert_with(|| TokenBucket::t3(profile.link_bps, t));
                                let (ms, bytes) = self.transfer_ms(bucket, size, t);
                                pull_bytes += bytes;
                                let mut p = path.clone();
                                p.push(at);
                                push(
                                    &mut events,
                                    &mut store,
                                    t + ms,
                                    Event::PullArrive {
                                        at: v,
                                        from: at,
                                        pull: next,
                                        path: p,
                                    },
                                );
                            }
                        }
                    }
                    Event::AnswerArrive {
                        at,
                        from,
                        answer,
                        mut path,
                    } => {
                        let link_cost = self.nodes[from].relay_cost;
                        if at == consumer {
                            let from_id = self.nodes[from].key.node_id();
                            self.nodes[consumer]
                                .table
                                .ingest_pull_answer(&answer, from_id, link_cost, widen.ring, t);
                            let res = self.nodes[consumer].table.query(&query, &NoReputation, t);
                            if nearest_at.is_none() && reaches(&res.offers, optimal_hops) {
                                nearest_at = Some(t);
                            }
                            if first.is_none() && res.next == NextStep::Satisfied {
                                first = res
                                    .offers
                                    .first()
                                    .map(|o| (t, u32::from(o.origin.hops), o.unit_price));
                            }
                            continue;
                        }
                        let relayed = answer.via_hop(link_cost);
                        let Some(next) = path.pop() else {
                            continue;
                        };
                        let size = MarketMessage::PullAnswer(relayed.clone()).encode().len();
                        let bucket = buckets
                            .entry((at, next))
                            .or_insert_with(|| TokenBucket::t3(profile.link_bps, t));
                        let (ms, bytes) = self.transfer_ms(bucket, size, t);
                        pull_bytes += bytes;
                        push(
                            &mut events,
                            &mut store,
                            t + ms,
                            Event::AnswerArrive {
                                at: next,
                                from: at,
                                answer: relayed,
                                path,
                            },
                        );
                    }
                }
            }
            now = last;
        }
    }
}

fn reaches(offers: &[mehr_market::RankedOffer], optimal: Option<u32>) -> bool {
    optimal.is_some_and(|h| offers.iter().any(|o| u32::from(o.origin.hops) == h))
}

fn components(adj: &[Vec<usize>]) -> Vec<usize> {
    let mut comp = vec![usize::MAX; adj.len()];
    let mut next = 0;
    for s in 0..adj.len() {
        if comp[s] != usize::MAX {
            continue;
        }
        comp[s] = next;
        let mut stack = vec![s];
        while let Some(u) = stack.pop() {
            for &v in &adj[u] {
                if comp[v] == usize::MAX {
                    comp[v] = next;
                    stack.push(v);
                }
            }
        }
        next += 1;
    }
    comp
}

/// Summary statistics of a sample.
pub(crate) fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let median = v.get(v.len() / 2).copied().unwrap_or(0.0);
    let max = v.last().copied().unwrap_or(0.0);
    (mean, median, max)
}
