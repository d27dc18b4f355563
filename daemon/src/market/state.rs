//! The market's state and every rule that changes it, behind one lock that is never held
//! across an await.
//!
//! Methods take the time (`now`, milliseconds since the Unix epoch: agreements are persisted
//! and must keep their deadlines across restarts) and return the control messages to send;
//! the caller sends them after releasing the lock. An agreement is written to the store
//! before the record a step produced is returned, so a peer is never told about a state this
//! node could forget.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use mehr_market::{
    CapabilityKind, CostStructure, DiscoveryTable, FunctionId, NodeCapabilities, NodeId, NodeKey,
    PeerKey, Query,
    agreement::{
        Agreement, AgreementError, AgreementId, AgreementState, CancelReason, Capability,
        ComputeTarget, OfferTerms, Privacy, ProofMethod, RejectReason, Request, Role,
        SignedRequest, break_even_markup, resale_terms, validate_chain_link,
    },
    beacon::{BeaconRotation, PresenceBeacon},
    capabilities::{CapabilityError, OfferedFunction},
    discovery::{
        DiscoveryError, Filter, InsertOutcome, Origin, PullAnswer, PullDedup, ReputationAt,
        Resolution, Widen,
    },
    gossip::{GossipStats, LinkGossip, OwnAdvert},
    message::MarketMessage,
    params::PULL_DEDUP_MS,
    record::RecordError,
    reputation::{Outcome, ReputationBook, ServiceKind},
    verification::{
        ComputeResult, HeartbeatConfig, HeartbeatError, HeartbeatMonitor, ProofSystem,
        SignedComputeResult, answer_ping, output_hash,
    },
};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{
    AgreementEvent, MarketError, PartialSink,
    offer::OfferSettings,
    payments::{Charge, Payments},
    records::{
        AGREEMENTS, AgreementRecord, Charges, EXCLUDED_KEY, OWN_SEQ_KEY, REPUTATION_KEY, STATE,
    },
    relay_meter::RelayMeter,
    wire::{GossipFrame, Job, JobPartial, JobResult, MAX_PAYLOAD_LEN, SignedJob, kinds},
};
use crate::{
    config::MarketConfig,
    events::{EventBus, EventKind},
    store::{Store, StoreError},
};

/// Provider jobs remembered for answering a retransmission, milliseconds.
const SERVED_JOB_MEMORY_MS: u64 = 120_000;

/// A control message to send once the lock is released.
#[derive(Debug, Clone)]
pub(super) struct Outbound {
    /// The node.
    pub(super) to: NodeId,
    /// The control kind.
    pub(super) kind: u8,
    /// The body.
    pub(super) body: Vec<u8>,
    /// Retry until delivered (agreement records): a lost request or acceptance would leave the
    /// two sides disagreeing until a timeout.
    pub(super) reliable: bool,
}

impl Outbound {
    fn record(to: NodeId, message: MarketMessage) -> Self {
        Outbound {
            to,
            kind: kinds::RECORD,
            body: message.encode(),
            reliable: true,
        }
    }
}

/// What the state needs from the rest of the node.
pub(super) struct Deps {
    pub(super) store: Store,
    pub(super) events: Arc<EventBus>,
    pub(super) payments: Arc<dyn Payments>,
    pub(super) config: MarketConfig,
    /// The relays this node pays under a relay agreement (see [`super::RelayCover`]).
    pub(super) relay_cover: tokio::sync::watch::Sender<BTreeSet<NodeId>>,
}

/// Counters of what arrived and what was refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts stored (new, newer, or a better path).
    pub adverts_accepted: u64,
    /// Adverts whose signature or key did not match the node they name.
    pub adverts_forged: u64,
    /// Adverts not newer than the one held (replays, echoes).
    pub adverts_stale: u64,
    /// Adverts whose lifetime had run out.
    pub adverts_expired: u64,
    /// Adverts refused otherwise (malformed, not from the node itself, table full).
    pub adverts_refused: u64,
    /// Gossip that did not parse or came from a node that is not a neighbour.
    pub gossip_refused: u64,
    /// Pull requests answered.
    pub pulls_answered: u64,
    /// Pull requests seen before (flood echoes).
    pub pulls_duplicate: u64,
    /// Pull answers passed back towards a flood's origin.
    pub pull_answers_relayed: u64,
    /// Agreement and heartbeat records taken.
    pub records_accepted: u64,
    /// Records whose signature or signer was wrong.
    pub records_forged: u64,
    /// Records refused otherwise (unknown agreement, wrong state, late, malformed).
    pub records_refused: u64,
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Beacons matched to a neighbour.
    pub beacons_received: u64,
    /// Jobs run for consumers.
    pub jobs_served: u64,
    /// Jobs refused (unknown agreement, bad signature, wrong function, input too large).
    pub jobs_refused: u64,
    /// Heartbeat pings answered.
    pub pings_answered: u64,
    /// Heartbeat pongs taken.
    pub pongs_received: u64,
}

/// Gossip on one neighbour link.
pub(super) struct Link {
    gossip: LinkGossip,
    pub(super) bitrate: u64,
    pub(super) cost: u64,
    pub(super) interface: u32,
}

/// A neighbour, as the transport reports it.
#[derive(Debug, Clone)]
pub(super) struct NeighbourFact {
    pub(super) node_id: NodeId,
    pub(super) key: PeerKey,
    pub(super) interface: u32,
    pub(super) bitrate: u64,
    pub(super) cost: u64,
}

/// One agreement and what the daemon keeps beside it.
pub(super) struct Entry {
    pub(super) agreement: Agreement,
    pub(super) peer: PeerKey,
    pub(super) charges: Charges,
    pub(super) updated_at: u64,
    pub(super) linked: Option<[u8; 32]>,
    pub(super) note: String,
    /// Countersign as soon as the offer arrives (not persisted: a restart leaves an offered
    /// agreement for the operator to accept).
    auto_accept: bool,
}

impl Entry {
    fn record(&self) -> AgreementRecord {
        AgreementRecord {
            peer_key: *self.peer.public_key(),
            charges: self.charges,
            updated_at_unix_ms: self.updated_at,
            linked: self.linked,
            note: self.note.clone(),
            agreement: self.agreement.to_bytes(),
        }
    }
}

/// A provider excluded from compute for a wrong result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    /// Until when, milliseconds since the Unix epoch.
    pub until_unix_ms: u64,
    /// Why.
    pub reason: String,
}

/// Answers to a pull this node sent, for the discovery waiting on them.
struct PullWaiter {
    ring: u8,
    answers: mpsc::UnboundedSender<NodeId>,
}

/// What to do with a request once it is taken.
pub(super) enum RequestOutcome {
    /// Answered (or nothing to send).
    Answered(Vec<Outbound>),
    /// This node lacks the function but resells: find it upstream, then offer.
    Resell {
        /// The downstream agreement.
        request_hash: [u8; 32],
        /// The function.
        function: FunctionId,
        /// The consumer's cap.
        cap: CostStructure,
        /// The downstream duration.
        duration_seconds: u32,
    },
}

/// A job accepted for running, and how to run it.
pub(super) struct JobPlan {
    pub(super) request_hash: [u8; 32],
    pub(super) job_hash: [u8; 32],
    pub(super) consumer: NodeId,
    pub(super) function: String,
    pub(super) input: Vec<u8>,
    pub(super) deadline_ms: u32,
    /// A resold agreement: run the job on this upstream agreement instead.
    pub(super) upstream: Option<[u8; 32]>,
}

/// Why a job is not run.
pub(super) enum JobRefusal {
    /// Already answered: send the answer again.
    Repeat(Outbound),
    /// Already running: its answer will go out when it ends.
    Running,
    /// Refused, with the answer to send (if the consumer can be told).
    Refused(Option<Outbound>),
}

/// A job this node sent as a consumer.
pub(super) struct PendingJob {
    pub(super) outbound: Outbound,
    pub(super) job_hash: [u8; 32],
    pub(super) agreement_id: AgreementId,
    pub(super) provider: PeerKey,
    pub(super) result: oneshot::Receiver<JobResult>,
}

/// Everything the market knows and decides.
pub(super) struct State {
    pub(super) me: NodeId,
    key: NodeKey,
    signing: SigningKey,
    pub(super) deps: Deps,
    pub(super) settings: OfferSettings,
    pub(super) table: DiscoveryTable,
    own: OwnAdvert,
    pub(super) links: BTreeMap<NodeId, Link>,
    keys: HashMap<NodeId, PeerKey>,
    dedup: PullDedup,
    floods: HashMap<u64, (NodeId, u64)>,
    pulls: HashMap<u64, PullWaiter>,
    pub(super) agreements: BTreeMap<[u8; 32], Entry>,
    by_id: HashMap<AgreementId, [u8; 32]>,
    monitors: HashMap<[u8; 32], HeartbeatMonitor>,
    pub(super) reputation: ReputationBook,
    pub(super) excluded: BTreeMap<NodeId, Exclusion>,
    jobs: HashMap<[u8; 32], oneshot::Sender<JobResult>>,
    /// Streamed jobs this node waits for: where their parts go, and how many bytes came.
    partials: HashMap<[u8; 32], (PartialSink, usize)>,
    served_jobs: HashMap<[u8; 32], (u64, Option<Outbound>)>,
    watchers: HashMap<[u8; 32], Vec<oneshot::Sender<()>>>,
    /// WASM modules deployed here (what a `Compute(Wasm)` request may name).
    pub(super) modules: BTreeSet<[u8; 32]>,
    /// Names of the functions this node advertises but resells.
    pub(super) resold: BTreeSet<String>,
    beacons: BeaconRotation,
    pub(super) counters: Counters,
    rng: StdRng,
    /// Bytes delivered through relays under relay agreements, not billed yet.
    pub(super) relay_meter: RelayMeter,
}

/// Gossip rounds since the Unix epoch: the reputation book's clock.
fn round(now: u64) -> u64 {
    now / mehr_market::params::GOSSIP_ROUND_MS
}

/// Days since the Unix epoch: the "epoch" a peer was first seen in.
fn day(now: u64) -> u64 {
    now / 86_400_000
}

/// The service kind a capability's outcomes count towards.
pub(super) fn service_kind(capability: &Capability) -> ServiceKind {
    match capability {
        Capability::Compute(_) => ServiceKind::Compute,
        Capability::Storage { .. } => ServiceKind::Storage,
        Capability::Relay | Capability::Proxy => ServiceKind::Relay,
    }
}

/// What one job costs under `cost`, having burnt `fuel`.
pub(super) fn job_price(cost: &CostStructure, fuel: u64) -> u64 {
    match *cost {
        CostStructure::PerInvocation { per_call, .. } => per_call,
        CostStructure::PerCycle { per_million, .. } => {
            per_million.saturating_mul(fuel.div_ceil(1_000_000).max(1))
        }
        CostStructure::PerByte { .. } | CostStructure::PerDuration { .. } => 0,
    }
}

/// The markup a reseller adds to `price`: the configured percentage, at least the 2 % burn's
/// break-even.
pub(super) fn resale_markup(price: u64, percent: u32) -> u64 {
    let share = u64::try_from(u128::from(price) * u128::from(percent) / 100).unwrap_or(u64::MAX);
    share.max(break_even_markup(price))
}

fn classify_advert_error(counters: &mut Counters, error: &DiscoveryError) {
    match error {
        DiscoveryError::Advert(CapabilityError::BadSignature { .. })
        | DiscoveryError::Advert(CapabilityError::WrongNode { .. })
        | DiscoveryError::Key(_) => counters.adverts_forged += 1,
        DiscoveryError::Advert(CapabilityError::Stale { .. }) => counters.adverts_stale += 1,
        DiscoveryError::Advert(CapabilityError::Expired { .. }) => counters.adverts_expired += 1,
        DiscoveryError::OwnAdvert => {}
        _ => counters.adverts_refused += 1,
    }
}

fn is_forgery(error: &AgreementError) -> bool {
    matches!(
        error,
        AgreementError::Record(RecordError::BadSignature { .. } | RecordError::WrongSigner { .. })
            | AgreementError::WrongNode { .. }
    )
}

impl State {
    /// Loads the persisted state and signs the first advert with a sequence number above the
    /// last one ever signed.
    pub(super) fn load(
        key: NodeKey,
        signing: SigningKey,
        deps: Deps,
        settings: OfferSettings,
        capabilities: NodeCapabilities,
        now: u64,
    ) -> Result<State, MarketError> {
        let store = &deps.store;
        let last_seq = match store.get(STATE, &OWN_SEQ_KEY.to_string())? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt {
                    table: STATE.name(),
                    source: crate::store::CodecError::new("own_seq", "expected 8 bytes"),
                }
            })?),
            None => 0,
        };
        let reputation: ReputationBook = load_postcard(store, REPUTATION_KEY)?.unwrap_or_default();
        let excluded: BTreeMap<NodeId, Exclusion> =
            load_postcard(store, EXCLUDED_KEY)?.unwrap_or_default();
        let own = OwnAdvert::with_ttl(
            &key,
            capabilities,
            last_seq.saturating_add(1),
            deps.config.advert_ttl_secs,
            now,
        )?;
        store.put(
            STATE,
            &OWN_SEQ_KEY.to_string(),
            &own.seq().to_le_bytes().to_vec(),
        )?;
        let me = key.node_id();
        let mut table = DiscoveryTable::new(me);
        table.set_own_advert(own.advert().clone(), key.peer_key());
        let beacon_key = blake3::derive_key("mehr beacon key v1", signing.as_bytes());
        let mut state = State {
            me,
            key,
            signing,
            settings,
            table,
            own,
            links: BTreeMap::new(),
            keys: HashMap::new(),
            dedup: PullDedup::new(),
            floods: HashMap::new(),
            pulls: HashMap::new(),
            agreements: BTreeMap::new(),
            by_id: HashMap::new(),
            monitors: HashMap::new(),
            reputation,
            excluded,
            jobs: HashMap::new(),
            partials: HashMap::new(),
            served_jobs: HashMap::new(),
            watchers: HashMap::new(),
            modules: BTreeSet::new(),
            resold: BTreeSet::new(),
            beacons: BeaconRotation::new(beacon_key, now),
            counters: Counters::default(),
            rng: StdRng::from_entropy(),
            relay_meter: RelayMeter::new(deps.config.relay_charge_bytes),
            deps,
        };
        let heartbeats = state.heartbeats();
        let loaded: Vec<([u8; 32], AgreementRecord)> = state
            .deps
            .store
            .scan_from(AGREEMENTS, &[])
            .collect::<Result<_, _>>()?;
        for (hash, record) in loaded {
            let (agreement, peer) = match record.load() {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!(request = %hex::encode(hash), error = %e, "skipping an unreadable agreement");
                    continue;
                }
            };
            if let Some(id) = agreement.id() {
                state.by_id.insert(id, hash);
            }
            if agreement.state() == AgreementState::Active
                && agreement.role() == Role::Consumer
                && let Some(id) = agreement.id()
            {
                state.monitors.insert(
                    hash,
                    HeartbeatMonitor::new(id, agreement.counterparty(), heartbeats, now),
                );
            }
            state.keys.insert(peer.node_id(), peer.clone());
            state.agreements.insert(
                hash,
                Entry {
                    agreement,
                    peer,
                    charges: record.charges,
                    updated_at: record.updated_at_unix_ms,
                    linked: record.linked,
                    note: record.note,
                    auto_accept: false,
                },
            );
        }
        state.publish_relay_cover();
        Ok(state)
    }

    fn heartbeats(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            interval_ms: self.deps.config.heartbeat_interval_ms,
            max_misses: self.deps.config.heartbeat_max_misses,
        }
    }

    /// The signed advert this node gossips.
    pub(super) fn own_advert(&self) -> &mehr_market::CapabilityAdvert {
        self.own.advert()
    }

    // ---- advert and gossip ------------------------------------------------------------

    /// Re-signs the advert if the capabilities changed or its refresh is due; persists the
    /// new sequence number before anyone can see it. Returns whether it re-signed.
    pub(super) fn refresh_advert(
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
    pub(super) fn resale_functions(
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
    pub(super) fn sync_links(&mut self, neighbours: &[NeighbourFact], now: u64) {
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
    pub(super) fn gossip_poll(&mut self, now: u64) -> Vec<Outbound> {
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
    pub(super) fn link_stats(&self) -> Vec<(NodeId, u64, u64, GossipStats)> {
        self.links
            .iter()
            .map(|(id, l)| {
                let budget = mehr_market::gossip::TokenBucket::t3(l.bitrate, 0).bytes_per_hour();
                (*id, l.bitrate, budget, l.gossip.stats())
            })
            .collect()
    }

    /// Takes a gossip message from a neighbour.
    pub(super) fn on_gossip(&mut self, frame: GossipFrame, now: u64) -> Vec<Outbound> {
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
    pub(super) fn beacons(&mut self, now: u64, load: u8) -> Vec<Outbound> {
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
    pub(super) fn on_beacon(&mut self, beacon: PresenceBeacon, interface: Option<u32>) {
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
    pub(super) fn query(&self, query: &Query, now: u64) -> Resolution {
        let reputation = ReputationAt {
            book: &self.reputation,
            round: round(now),
        };
        self.table.query(query, &reputation, now)
    }

    /// Sends the pull of `widen` to its neighbours (all of them without a hint). Returns the
    /// neighbours asked; answers are reported on `answers` as they are stored.
    pub(super) fn start_pull(
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
    pub(super) fn end_pull(&mut self, nonce: u64) {
        self.pulls.remove(&nonce);
    }

    /// The key of `node`, if known from a neighbour, a pull answer or an agreement.
    pub(super) fn known_key(&self, node: &NodeId) -> Option<PeerKey> {
        self.keys.get(node).cloned()
    }

    /// Remembers a key learned elsewhere (an announce).
    pub(super) fn remember_key(&mut self, key: PeerKey) {
        self.keys.insert(key.node_id(), key);
    }

    // ---- agreements -----------------------------------------------------------------

    /// The request hash of the agreement `id` names: a request hash or an agreement id.
    pub(super) fn resolve(&self, id: &[u8; 32]) -> Option<[u8; 32]> {
        if self.agreements.contains_key(id) {
            return Some(*id);
        }
        self.by_id.get(&AgreementId(*id)).copied()
    }

    /// Waits for the next change of agreement `hash`.
    pub(super) fn watch(&mut self, hash: [u8; 32]) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.watchers.entry(hash).or_default().push(tx);
        rx
    }

    fn commit(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        match self.agreements.get(hash) {
            Some(entry) => self.deps.store.put(AGREEMENTS, hash, &entry.record()),
            None => Ok(()),
        }
    }

    fn publish(&mut self, hash: [u8; 32]) {
        if let Some(entry) = self.agreements.get(&hash) {
            let a = &entry.agreement;
            self.deps
                .events
                .publish(EventKind::AgreementChanged(AgreementEvent {
                    request_id: hash,
                    agreement_id: a.id(),
                    counterparty: a.counterparty(),
                    role: a.role(),
                    state: a.state(),
                    note: entry.note.clone(),
                }));
        }
        if let Some(watchers) = self.watchers.remove(&hash) {
            for w in watchers {
                let _ = w.send(());
            }
        }
    }

    /// Persists agreement `hash` after a step and applies what its new state implies:
    /// payment opened or closed, heartbeats started or stopped, the other end of a chain
    /// cancelled, an event.
    fn settle(
        &mut self,
        hash: [u8; 32],
        before: Option<AgreementState>,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> Result<(), StoreError> {
        let heartbeats = self.heartbeats();
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Ok(());
        };
        entry.updated_at = now;
        let after = entry.agreement.state();
        let role = entry.agreement.role();
        let id = entry.agreement.id();
        let counterparty = entry.agreement.counterparty();
        let channel = entry.agreement.request().body().channel;
        let linked = entry.linked;
        if after == AgreementState::Terminated && entry.note.is_empty() {
            entry.note = "verification failed".into();
        }
        if let Some(id) = id {
            self.by_id.insert(id, hash);
        }
        // The ledger follows the agreement as it stands in memory, written or not.
        self.publish_relay_cover();
        self.commit(&hash)?;
        if before == Some(after) {
            self.publish(hash);
            return Ok(());
        }
        if let Some(id) = id {
            if after == AgreementState::Active {
                self.deps.payments.opened(id, role, counterparty, channel);
                if role == Role::Consumer {
                    self.monitors.insert(
                        hash,
                        HeartbeatMonitor::new(id, counterparty, heartbeats, now),
                    );
                }
            }
            if after.is_final() && before == Some(AgreementState::Active) {
                if let Err(e) = self.bill_relay_rest(hash, after, now) {
                    // The agreement has ended all the same; what it owed stays unbilled.
                    tracing::error!(error = %e, "cannot persist the last relay charge");
                }
                self.deps.payments.closed(id, role, after);
            }
        }
        if after.is_final() {
            self.monitors.remove(&hash);
            if let Some(other) = linked {
                let reason = if after == AgreementState::Terminated {
                    CancelReason::VerificationFailed
                } else {
                    CancelReason::Requested
                };
                let live = self.agreements.get(&other).is_some_and(|e| {
                    matches!(
                        e.agreement.state(),
                        AgreementState::Offered | AgreementState::Active
                    )
                });
                if live {
                    if let Some(e) = self.agreements.get_mut(&other) {
                        e.note = "the other end of its capability chain ended".into();
                    }
                    if let Ok(cancel) = self.cancel_step(other, reason, now) {
                        out.extend(cancel);
                    }
                } else if let Some(e) = self.agreements.get(&other)
                    && e.agreement.state() == AgreementState::Proposed
                    && e.agreement.role() == Role::Provider
                {
                    out.extend(self.reject_pending(other, RejectReason::Other, now));
                }
            }
        }
        self.publish(hash);
        Ok(())
    }

    /// Proposes an agreement to `provider`; returns the request hash and the request to send.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn propose(
        &mut self,
        provider: PeerKey,
        capability: Capability,
        cost_cap: CostStructure,
        duration_seconds: u32,
        proof: ProofMethod,
        auto_accept: bool,
        linked: Option<[u8; 32]>,
        now: u64,
    ) -> Result<([u8; 32], Outbound), MarketError> {
        if provider.node_id() == self.me {
            return Err(MarketError::InvalidArgument {
                field: "provider",
                reason: "is this node itself".into(),
            });
        }
        let request = Request {
            consumer: self.me,
            provider: provider.node_id(),
            capability,
            cost_cap,
            duration_seconds,
            channel: self.deps.payments.channel_for(self.me, provider.node_id()),
            proof,
            privacy: Privacy::None,
            nonce: self.rng.next_u64(),
        };
        let (agreement, signed) = Agreement::propose(&self.key, request, now)?;
        let hash = signed.hash();
        self.keys.insert(provider.node_id(), provider.clone());
        self.agreements.insert(
            hash,
            Entry {
                agreement,
                peer: provider.clone(),
                charges: Charges::default(),
                updated_at: now,
                linked,
                note: String::new(),
                auto_accept,
            },
        );
        if let Some(other) = linked
            && let Some(e) = self.agreements.get_mut(&other)
        {
            e.linked = Some(hash);
            self.commit(&other)?;
        }
        let mut out = Vec::new();
        self.settle(hash, None, now, &mut out)?;
        Ok((
            hash,
            Outbound::record(provider.node_id(), MarketMessage::Request(signed)),
        ))
    }

    /// Countersigns an offered agreement.
    pub(super) fn accept(
        &mut self,
        hash: [u8; 32],
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let entry = self
            .agreements
            .get_mut(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let before = entry.agreement.state();
        let result = entry.agreement.accept(&self.key, now);
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match result {
            Ok(acceptance) => {
                self.settle(hash, Some(before), now, &mut out)?;
                out.push(Outbound::record(to, MarketMessage::Acceptance(acceptance)));
                Ok(out)
            }
            Err(e) => {
                self.settle(hash, Some(before), now, &mut out)?;
                Err(e.into())
            }
        }
    }

    fn cancel_step(
        &mut self,
        hash: [u8; 32],
        reason: CancelReason,
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let entry = self
            .agreements
            .get_mut(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let before = entry.agreement.state();
        let cancel = entry.agreement.cancel(&self.key, reason)?;
        if entry.note.is_empty() {
            entry.note = "cancelled by this node".into();
        }
        let to = entry.agreement.counterparty();
        let mut out = vec![Outbound::record(to, MarketMessage::Cancel(cancel))];
        self.settle(hash, Some(before), now, &mut out)?;
        Ok(out)
    }

    /// Cancels an offered or active agreement.
    pub(super) fn cancel(
        &mut self,
        hash: [u8; 32],
        reason: CancelReason,
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        self.cancel_step(hash, reason, now)
    }

    /// Rejects a request still being decided (a resale that found nothing upstream).
    pub(super) fn reject_pending(
        &mut self,
        hash: [u8; 32],
        reason: RejectReason,
        now: u64,
    ) -> Vec<Outbound> {
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Vec::new();
        };
        let before = entry.agreement.state();
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match entry.agreement.reject(&self.key, reason) {
            Ok(rejection) => out.push(Outbound::record(to, MarketMessage::Rejection(rejection))),
            Err(e) => tracing::debug!(error = %e, "cannot reject"),
        }
        if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
            tracing::error!(error = %e, "cannot persist an agreement");
            return Vec::new();
        }
        out
    }

    /// Records a charge on agreement `hash` and tells the payments seam.
    pub(super) fn charge(
        &mut self,
        hash: [u8; 32],
        units: u64,
        amount_umhr: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let active = self
            .agreements
            .get(&hash)
            .is_some_and(|e| e.agreement.state() == AgreementState::Active);
        if !active {
            return Ok(());
        }
        self.apply_charge(hash, units, amount_umhr, now)
    }

    /// Records a charge on agreement `hash`, whatever its state (the last bill of an
    /// agreement that just ended), and tells the payments seam.
    pub(super) fn apply_charge(
        &mut self,
        hash: [u8; 32],
        units: u64,
        amount_umhr: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Ok(());
        };
        let Some(agreement_id) = entry.agreement.id() else {
            return Ok(());
        };
        entry.charges.units = entry.charges.units.saturating_add(units);
        entry.charges.amount_umhr = entry.charges.amount_umhr.saturating_add(amount_umhr);
        entry.updated_at = now;
        let charge = Charge {
            agreement_id,
            role: entry.agreement.role(),
            counterparty: entry.agreement.counterparty(),
            channel: entry.agreement.request().body().channel,
            units,
            amount_umhr,
        };
        self.commit(&hash)?;
        self.deps.payments.charge(&charge);
        Ok(())
    }

    /// What this node charges for `capability` under `cap`, or why it declines.
    fn decide(&self, request: &Request) -> Result<CostStructure, RejectReason> {
        let active = self
            .agreements
            .values()
            .filter(|e| {
                e.agreement.role() == Role::Provider
                    && e.agreement.state() == AgreementState::Active
            })
            .count();
        if active >= self.deps.config.max_active_agreements as usize {
            return Err(RejectReason::Busy);
        }
        let caps = self.own.advert().capabilities();
        let fits = |cost: CostStructure| {
            cost.within(&request.cost_cap)
                .map(|_| cost)
                .map_err(|_| RejectReason::PriceTooLow)
        };
        match request.capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                let f = caps.function(&id).ok_or(RejectReason::Unsupported)?;
                fits(f.cost)
            }
            Capability::Compute(ComputeTarget::Wasm(module)) => {
                if !self.settings.offer_compute || !self.modules.contains(&module) {
                    return Err(RejectReason::Unsupported);
                }
                match request.cost_cap {
                    CostStructure::PerCycle { max_cycles, .. } => fits(CostStructure::PerCycle {
                        per_million: self.settings.wasm_price_per_million_cycles_umhr,
                        max_cycles,
                    }),
                    _ => Err(RejectReason::PriceTooLow),
                }
            }
            Capability::Storage { bytes } => {
                let storage = caps.storage.ok_or(RejectReason::Unsupported)?;
                if storage.available_bytes < bytes {
                    return Err(RejectReason::InsufficientCapacity);
                }
                fits(CostStructure::PerDuration {
                    per_epoch: storage.cost_per_byte_day.saturating_mul(bytes),
                })
            }
            Capability::Relay if !caps.interfaces.is_empty() => fits(CostStructure::PerByte {
                per_byte: self.settings.relay_price_per_byte_umhr,
            }),
            Capability::Proxy if caps.interfaces.iter().any(|i| i.internet_gateway) => {
                fits(CostStructure::PerByte {
                    per_byte: self.settings.relay_price_per_byte_umhr,
                })
            }
            Capability::Relay | Capability::Proxy => Err(RejectReason::Unsupported),
        }
    }

    /// Takes a consumer's request (its key already looked up): offers, rejects, or asks for
    /// a resale. A repeated request gets the answer already given.
    pub(super) fn on_request(
        &mut self,
        request: SignedRequest,
        consumer: &PeerKey,
        now: u64,
    ) -> RequestOutcome {
        let hash = request.hash();
        if let Some(entry) = self.agreements.get(&hash) {
            let to = entry.agreement.counterparty();
            let answer = match (entry.agreement.offer(), entry.agreement.rejection()) {
                (Some(offer), _) => vec![Outbound::record(to, MarketMessage::Offer(offer.clone()))],
                (None, Some(r)) => vec![Outbound::record(to, MarketMessage::Rejection(r.clone()))],
                (None, None) => Vec::new(),
            };
            return RequestOutcome::Answered(answer);
        }
        let agreement = match Agreement::receive_request(request, consumer, self.me, now) {
            Ok(agreement) => agreement,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                if is_forgery(&e) {
                    self.counters.records_forged += 1;
                } else {
                    self.counters.records_refused += 1;
                }
                return RequestOutcome::Answered(Vec::new());
            }
        };
        self.counters.records_accepted += 1;
        self.keys.insert(consumer.node_id(), consumer.clone());
        let body = *agreement.request().body();
        self.agreements.insert(
            hash,
            Entry {
                agreement,
                peer: consumer.clone(),
                charges: Charges::default(),
                updated_at: now,
                linked: None,
                note: String::new(),
                auto_accept: false,
            },
        );
        let mut out = Vec::new();
        if let Err(e) = self.settle(hash, None, now, &mut out) {
            tracing::error!(error = %e, "cannot persist a request");
            return RequestOutcome::Answered(Vec::new());
        }
        if let Capability::Compute(ComputeTarget::Function(id)) = body.capability {
            let resold = self
                .own
                .advert()
                .capabilities()
                .function(&id)
                .is_some_and(|f| self.resold.contains(&f.name));
            if resold {
                return RequestOutcome::Resell {
                    request_hash: hash,
                    function: id,
                    cap: body.cost_cap,
                    duration_seconds: body.duration_seconds,
                };
            }
        }
        let decision = self.decide(&body);
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return RequestOutcome::Answered(out);
        };
        match decision {
            Ok(cost) => {
                let terms = OfferTerms {
                    cost,
                    valid_for_seconds: self.deps.config.offer_validity_secs,
                    proof: body.proof,
                    upstream: None,
                };
                let before = entry.agreement.state();
                match entry.agreement.make_offer(&self.key, terms, now) {
                    Ok(offer) => {
                        out.push(Outbound::record(body.consumer, MarketMessage::Offer(offer)))
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot offer"),
                }
                if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                    tracing::error!(error = %e, "cannot persist an offer");
                    return RequestOutcome::Answered(Vec::new());
                }
                RequestOutcome::Answered(out)
            }
            Err(reason) => {
                if let Some(e) = self.agreements.get_mut(&hash) {
                    e.note = format!("rejected: {reason:?}");
                }
                out.extend(self.reject_pending(hash, reason, now));
                RequestOutcome::Answered(out)
            }
        }
    }

    /// Offers a resold agreement once its upstream agreement is active.
    pub(super) fn offer_resale(
        &mut self,
        downstream: [u8; 32],
        upstream: [u8; 32],
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let up = self
            .agreements
            .get(&upstream)
            .ok_or(MarketError::UnknownAgreement)?
            .agreement
            .clone();
        let price = up.cost().map_or(0, |c| c.unit_price());
        let markup = resale_markup(price, self.deps.config.resale_markup_percent);
        let entry = self
            .agreements
            .get_mut(&downstream)
            .ok_or(MarketError::UnknownAgreement)?;
        let proof = entry.agreement.request().body().proof;
        let terms = resale_terms(&up, markup, self.deps.config.offer_validity_secs, proof)
            .map_err(|e| MarketError::Chain(e.to_string()))?;
        let before = entry.agreement.state();
        let offer = entry.agreement.make_offer(&self.key, terms, now);
        entry.linked = Some(upstream);
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match offer {
            Ok(offer) => {
                if let Err(e) = validate_chain_link(&entry.agreement, &up) {
                    tracing::warn!(error = %e, "resale does not chain");
                }
                out.push(Outbound::record(to, MarketMessage::Offer(offer)));
                if let Some(u) = self.agreements.get_mut(&upstream) {
                    u.linked = Some(downstream);
                }
                self.commit(&upstream)?;
                self.settle(downstream, Some(before), now, &mut out)?;
                Ok(out)
            }
            Err(e) => {
                self.settle(downstream, Some(before), now, &mut out)?;
                Err(e.into())
            }
        }
    }

    /// Takes an agreement or heartbeat record (not a request: see [`Self::on_request`]).
    pub(super) fn on_record(&mut self, message: MarketMessage, now: u64) -> Vec<Outbound> {
        let mut out = Vec::new();
        let outcome = self.take_record(message, now, &mut out);
        match outcome {
            Ok(true) => self.counters.records_accepted += 1,
            Ok(false) => {}
            Err(Refusal::Forged(why)) => {
                tracing::debug!(why, "forged market record refused");
                self.counters.records_forged += 1;
            }
            Err(Refusal::Refused(why)) => {
                tracing::debug!(%why, "market record refused");
                self.counters.records_refused += 1;
            }
        }
        out
    }

    /// `Ok(false)`: a harmless repeat, dropped silently.
    fn take_record(
        &mut self,
        message: MarketMessage,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> Result<bool, Refusal> {
        let unknown = || Refusal::Refused("no such agreement".into());
        match message {
            MarketMessage::Offer(offer) => {
                let hash = offer.body().request_hash;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.offer().map(|o| o.as_bytes()) == Some(offer.as_bytes()) {
                    return Ok(false);
                }
                if entry.agreement.role() != Role::Consumer
                    || offer.body().provider != entry.agreement.counterparty()
                    || offer.verify(&entry.peer).is_err()
                {
                    return Err(Refusal::Forged("offer"));
                }
                let before = entry.agreement.state();
                let result = entry.agreement.receive_offer(offer, &entry.peer, now);
                let auto = entry.auto_accept;
                if result.is_ok() && auto {
                    let to = entry.agreement.counterparty();
                    if let Ok(acceptance) = entry.agreement.accept(&self.key, now) {
                        out.push(Outbound::record(to, MarketMessage::Acceptance(acceptance)));
                    }
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Rejection(rejection) => {
                let hash = rejection.body().request_hash;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.rejection().map(|r| r.as_bytes()) == Some(rejection.as_bytes()) {
                    return Ok(false);
                }
                if rejection.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("rejection"));
                }
                let before = entry.agreement.state();
                let reason = rejection.body().reason;
                let result = entry.agreement.receive_rejection(rejection, &entry.peer);
                if result.is_ok() {
                    entry.note = format!("rejected by the provider: {reason:?}");
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Acceptance(acceptance) => {
                let hash = *self
                    .by_id
                    .get(&acceptance.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.acceptance().map(|a| a.as_bytes()) == Some(acceptance.as_bytes())
                {
                    return Ok(false);
                }
                if acceptance.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("acceptance"));
                }
                let before = entry.agreement.state();
                let result = entry
                    .agreement
                    .receive_acceptance(acceptance, &entry.peer, now);
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Cancel(cancel) => {
                let hash = *self
                    .by_id
                    .get(&cancel.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.cancellation().map(|c| c.as_bytes()) == Some(cancel.as_bytes()) {
                    return Ok(false);
                }
                if cancel.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("cancel"));
                }
                let before = entry.agreement.state();
                let reason = cancel.body().reason;
                let result = entry.agreement.receive_cancel(cancel, &entry.peer);
                if result.is_ok() {
                    entry.note = format!("cancelled by the other side: {reason:?}");
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Ping(ping) => {
                let hash = *self
                    .by_id
                    .get(&ping.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get(&hash).ok_or_else(unknown)?;
                if entry.agreement.role() != Role::Provider
                    || entry.agreement.state() != AgreementState::Active
                {
                    return Err(Refusal::Refused(
                        "ping for an agreement not provided".into(),
                    ));
                }
                let id = ping.body().agreement_id;
                let pong = answer_ping(&ping, &entry.peer, id, &self.key).map_err(|e| match e {
                    HeartbeatError::Record(_) => Refusal::Forged("ping"),
                    other => Refusal::Refused(other.to_string()),
                })?;
                out.push(Outbound {
                    reliable: false,
                    ..Outbound::record(entry.agreement.counterparty(), MarketMessage::Pong(pong))
                });
                self.counters.pings_answered += 1;
                Ok(true)
            }
            MarketMessage::Pong(pong) => {
                let hash = *self
                    .by_id
                    .get(&pong.body().agreement_id)
                    .ok_or_else(unknown)?;
                let peer = self.agreements.get(&hash).ok_or_else(unknown)?.peer.clone();
                let monitor = self.monitors.get_mut(&hash).ok_or_else(|| {
                    Refusal::Refused("pong for an agreement not monitored".into())
                })?;
                monitor.on_pong(&pong, &peer).map_err(|e| match e {
                    HeartbeatError::Record(_) => Refusal::Forged("pong"),
                    other => Refusal::Refused(other.to_string()),
                })?;
                self.counters.pongs_received += 1;
                Ok(true)
            }
            other => Err(Refusal::Refused(format!(
                "a {} is not expected here",
                super::wire::message_name(&other)
            ))),
        }
    }

    /// Applies deadlines (expiry, completion) and heartbeats; returns the pings and
    /// cancellations to send.
    pub(super) fn tick(&mut self, now: u64) -> Vec<Outbound> {
        let mut out = Vec::new();
        self.bill_relays_due(now);
        let due: Vec<([u8; 32], AgreementState)> = self
            .agreements
            .iter()
            .filter(|(_, e)| e.agreement.next_deadline_ms().is_some_and(|d| now >= d))
            .map(|(h, e)| (*h, e.agreement.state()))
            .collect();
        for (hash, before) in due {
            if let Some(entry) = self.agreements.get_mut(&hash)
                && let Some(state) = entry.agreement.tick(now)
            {
                entry.note = match state {
                    AgreementState::Expired => "timed out in negotiation".into(),
                    AgreementState::Completed => "ran its full duration".into(),
                    _ => String::new(),
                };
                if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                    tracing::error!(error = %e, "cannot persist an agreement");
                }
            }
        }
        let monitored: Vec<[u8; 32]> = self.monitors.keys().copied().collect();
        for hash in monitored {
            let Some(monitor) = self.monitors.get_mut(&hash) else {
                continue;
            };
            match monitor.poll(now, &mut self.rng) {
                mehr_market::verification::HeartbeatAction::Wait { .. } => {}
                mehr_market::verification::HeartbeatAction::SendPing { nonce } => {
                    let (Ok(ping), Some(entry)) =
                        (monitor.ping(&self.key, nonce), self.agreements.get(&hash))
                    else {
                        continue;
                    };
                    out.push(Outbound {
                        reliable: false,
                        ..Outbound::record(
                            entry.agreement.counterparty(),
                            MarketMessage::Ping(ping),
                        )
                    });
                }
                mehr_market::verification::HeartbeatAction::Terminate { misses } => {
                    let Some(entry) = self.agreements.get_mut(&hash) else {
                        continue;
                    };
                    let before = entry.agreement.state();
                    if entry.agreement.terminate().is_err() {
                        self.monitors.remove(&hash);
                        continue;
                    }
                    entry.note = format!("{misses} heartbeats missed in a row");
                    let provider = entry.agreement.counterparty();
                    let kind = service_kind(&entry.agreement.request().body().capability);
                    tracing::info!(agreement = %hex::encode(hash), %provider, misses, "provider stopped answering heartbeats; agreement terminated");
                    self.record_outcome(provider, kind, Outcome::Failure, now);
                    if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                        tracing::error!(error = %e, "cannot persist an agreement");
                    }
                }
            }
        }
        out
    }

    /// Heartbeat misses counted on a consumer agreement.
    pub(super) fn misses(&self, hash: &[u8; 32]) -> u32 {
        self.monitors.get(hash).map_or(0, HeartbeatMonitor::misses)
    }

    // ---- jobs ------------------------------------------------------------------------

    /// Signs a job for the active agreement `hash` (this node the consumer).
    pub(super) fn start_job(
        &mut self,
        hash: [u8; 32],
        function: &str,
        input: Vec<u8>,
        deadline_ms: u32,
        partials: Option<PartialSink>,
    ) -> Result<PendingJob, MarketError> {
        let entry = self
            .agreements
            .get(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let agreement = &entry.agreement;
        if agreement.role() != Role::Consumer || agreement.state() != AgreementState::Active {
            return Err(MarketError::NotActive {
                state: agreement.state(),
            });
        }
        let Some(agreement_id) = agreement.id() else {
            return Err(MarketError::UnknownAgreement);
        };
        let expected = Capability::Compute(ComputeTarget::Function(FunctionId::of(function)));
        if agreement.request().body().capability != expected {
            return Err(MarketError::InvalidArgument {
                field: "function",
                reason: format!("`{function}` is not the function this agreement is for"),
            });
        }
        let job = SignedJob::sign(
            Job {
                agreement_id,
                consumer: self.me,
                nonce: self.rng.next_u64(),
                deadline_ms,
                function: function.to_string(),
                input,
            },
            &self.signing,
        );
        let job_hash = job.hash();
        let (tx, rx) = oneshot::channel();
        self.jobs.insert(job_hash, tx);
        let kind = match partials {
            Some(sink) => {
                self.partials.insert(job_hash, (sink, 0));
                kinds::JOB_STREAMED
            }
            None => kinds::JOB,
        };
        Ok(PendingJob {
            outbound: Outbound {
                to: agreement.counterparty(),
                kind,
                body: job.as_bytes().to_vec(),
                reliable: false,
            },
            job_hash,
            agreement_id,
            provider: entry.peer.clone(),
            result: rx,
        })
    }

    /// Stops waiting for a job's result.
    pub(super) fn forget_job(&mut self, job_hash: &[u8; 32]) {
        self.jobs.remove(job_hash);
        self.partials.remove(job_hash);
    }

    /// Passes part of a streamed job's output to the consumer waiting for it. Parts beyond
    /// the largest output a job may have are dropped (the result still carries it all).
    pub(super) fn on_job_partial(&mut self, partial: JobPartial) {
        let Some((sink, received)) = self.partials.get_mut(&partial.job_hash) else {
            return; // late, or for a job this node did not stream
        };
        *received = received.saturating_add(partial.bytes.len());
        if *received > MAX_PAYLOAD_LEN || sink.send((partial.seq, partial.bytes)).is_err() {
            self.partials.remove(&partial.job_hash);
        }
    }

    /// Hands a job result to the consumer waiting for it.
    pub(super) fn on_job_result(&mut self, result: JobResult) {
        self.partials.remove(&result.job_hash());
        match self.jobs.remove(&result.job_hash()) {
            Some(waiter) => {
                let _ = waiter.send(result);
            }
            None => self.counters.records_refused += 1,
        }
    }

    /// Checks a job against its agreement (this node the provider).
    /// The provider-side agreement `job` names when it is still only offered here: the
    /// consumer sends a job right after its countersignature, and the mesh may deliver the
    /// job first.
    pub(super) fn offered_for(&self, job: &SignedJob) -> Option<[u8; 32]> {
        let hash = *self.by_id.get(&job.job().agreement_id)?;
        let agreement = &self.agreements.get(&hash)?.agreement;
        (agreement.role() == Role::Provider && agreement.state() == AgreementState::Offered)
            .then_some(hash)
    }

    pub(super) fn accept_job(&mut self, job: &SignedJob, now: u64) -> Result<JobPlan, JobRefusal> {
        let job_hash = job.hash();
        if let Some((_, answer)) = self.served_jobs.get(&job_hash) {
            return Err(match answer {
                Some(out) => JobRefusal::Repeat(out.clone()),
                None => JobRefusal::Running,
            });
        }
        let body = job.job();
        let failed = |reason: String| Outbound {
            to: body.consumer,
            kind: kinds::JOB_RESULT,
            body: JobResult::Failed { job_hash, reason }.encode(),
            reliable: false,
        };
        let Some(hash) = self.by_id.get(&body.agreement_id).copied() else {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(None));
        };
        let Some(entry) = self.agreements.get(&hash) else {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(None));
        };
        if entry.agreement.counterparty() != body.consumer || job.verify(&entry.peer).is_err() {
            self.counters.jobs_refused += 1;
            self.counters.records_forged += 1;
            return Err(JobRefusal::Refused(None));
        }
        let agreement = &entry.agreement;
        let refusal =
            if agreement.role() != Role::Provider || agreement.state() != AgreementState::Active {
                Some(format!("agreement is {:?}, not active", agreement.state()))
            } else if agreement.request().body().capability
                != Capability::Compute(ComputeTarget::Function(FunctionId::of(&body.function)))
            {
                Some(format!(
                    "the agreement is not for function `{}`",
                    body.function
                ))
            } else {
                match agreement.cost() {
                    Some(CostStructure::PerInvocation { max_input, .. })
                        if body.input.len() as u64 > u64::from(max_input) =>
                    {
                        Some(format!(
                            "input is {} bytes, the agreement allows {max_input}",
                            body.input.len()
                        ))
                    }
                    _ => None,
                }
            };
        if let Some(reason) = refusal {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(Some(failed(reason))));
        }
        self.served_jobs.insert(job_hash, (now, None));
        Ok(JobPlan {
            request_hash: hash,
            job_hash,
            consumer: body.consumer,
            function: body.function.clone(),
            input: body.input.clone(),
            deadline_ms: body.deadline_ms,
            upstream: entry.linked,
        })
    }

    /// Answers a job that ran (or failed), charging the agreement for a result.
    pub(super) fn finish_job(
        &mut self,
        plan: &JobPlan,
        outcome: Result<(Vec<u8>, u64), String>,
        now: u64,
    ) -> Outbound {
        let job_hash = plan.job_hash;
        let agreement = self
            .agreements
            .get(&plan.request_hash)
            .map(|e| (e.agreement.id(), e.agreement.cost()));
        let result = match (outcome, agreement) {
            (Ok((output, fuel)), Some((Some(agreement_id), cost))) => {
                let signed = SignedComputeResult::sign(
                    ComputeResult {
                        agreement_id,
                        job_hash,
                        output_hash: output_hash(&output),
                        proof_system: ProofSystem::None,
                        proof: Vec::new(),
                        signer: self.me,
                    },
                    &self.key,
                );
                match signed {
                    Ok(result) => {
                        let price = cost.map_or(0, |c| job_price(&c, fuel));
                        if let Err(e) = self.charge(plan.request_hash, 1, price, now) {
                            tracing::error!(error = %e, "cannot record a charge");
                        }
                        self.counters.jobs_served += 1;
                        JobResult::Done {
                            job_hash,
                            result,
                            output,
                        }
                    }
                    Err(e) => JobResult::Failed {
                        job_hash,
                        reason: format!("cannot sign the result: {e}"),
                    },
                }
            }
            (Ok(_), _) => JobResult::Failed {
                job_hash,
                reason: "the agreement is gone".into(),
            },
            (Err(reason), _) => JobResult::Failed { job_hash, reason },
        };
        let out = Outbound {
            to: plan.consumer,
            kind: kinds::JOB_RESULT,
            body: result.encode(),
            reliable: false,
        };
        self.served_jobs.insert(job_hash, (now, Some(out.clone())));
        out
    }

    // ---- reputation --------------------------------------------------------------------

    /// Records an interaction's outcome and persists the book.
    pub(super) fn record_outcome(
        &mut self,
        node: NodeId,
        kind: ServiceKind,
        outcome: Outcome,
        now: u64,
    ) {
        self.reputation
            .record(node, kind, outcome, day(now), round(now));
        if let Err(e) = store_postcard(&self.deps.store, REPUTATION_KEY, &self.reputation) {
            tracing::error!(error = %e, "cannot persist reputation");
        }
    }

    /// The effective score of `node` for `kind`.
    pub(super) fn score(&self, node: &NodeId, kind: ServiceKind, now: u64) -> u16 {
        self.reputation.score(node, kind, round(now))
    }

    /// Stops choosing `node` for compute for the configured time.
    pub(super) fn exclude(&mut self, node: NodeId, reason: String, now: u64) {
        let until = now.saturating_add(self.deps.config.exclusion_secs.saturating_mul(1_000));
        self.excluded.insert(
            node,
            Exclusion {
                until_unix_ms: until,
                reason: reason.clone(),
            },
        );
        if let Err(e) = store_postcard(&self.deps.store, EXCLUDED_KEY, &self.excluded) {
            tracing::error!(error = %e, "cannot persist exclusions");
        }
        tracing::warn!(%node, reason, "provider excluded from compute");
        self.deps.events.publish(EventKind::PeerExcluded {
            node_id: node.0,
            reason,
            until_unix_ms: until,
        });
    }

    /// Whether `node` is excluded now.
    pub(super) fn is_excluded(&self, node: &NodeId, now: u64) -> bool {
        self.excluded
            .get(node)
            .is_some_and(|e| e.until_unix_ms > now)
    }

    /// The providers of the active consumer agreements for `capability` with at least
    /// `margin_ms` left, with their agreed costs: a verified call that finds enough of them
    /// needs no discovery.
    pub(super) fn agreed_providers(
        &self,
        capability: &Capability,
        now: u64,
        margin_ms: u64,
    ) -> Vec<(NodeId, CostStructure)> {
        let mut providers: Vec<(NodeId, CostStructure)> = Vec::new();
        for entry in self.agreements.values() {
            let a = &entry.agreement;
            let usable = a.role() == Role::Consumer
                && a.state() == AgreementState::Active
                && a.request().body().capability == *capability
                && a.ends_at_ms()
                    .is_some_and(|end| end > now.saturating_add(margin_ms))
                && !self.is_excluded(&a.counterparty(), now);
            if let (true, Some(cost)) = (usable, a.cost())
                && !providers.iter().any(|(node, _)| *node == a.counterparty())
            {
                providers.push((a.counterparty(), cost));
            }
        }
        providers
    }

    /// Active consumer agreements with `provider` for `capability` with at least `margin_ms`
    /// left.
    pub(super) fn reusable_agreement(
        &self,
        provider: &NodeId,
        capability: &Capability,
        now: u64,
        margin_ms: u64,
    ) -> Option<[u8; 32]> {
        self.agreements.iter().find_map(|(hash, e)| {
            let a = &e.agreement;
            (a.role() == Role::Consumer
                && a.state() == AgreementState::Active
                && a.counterparty() == *provider
                && a.request().body().capability == *capability
                && a.ends_at_ms()
                    .is_some_and(|end| end > now.saturating_add(margin_ms)))
            .then_some(*hash)
        })
    }
}

/// Why a record was refused.
enum Refusal {
    /// Bad signature or signer.
    Forged(&'static str),
    /// Anything else.
    Refused(String),
}

fn load_postcard<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(STATE, &key.to_string())? {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                table: STATE.name(),
                source: crate::store::CodecError::new("market state", format!("{key}: {e}")),
            }),
        None => Ok(None),
    }
}

pub(super) fn store_postcard<T: Serialize>(
    store: &Store,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
        table: STATE.name(),
        source: crate::store::CodecError::new("market state", format!("{key}: {e}")),
    })?;
    store.put(STATE, &key.to_string(), &bytes)
}

/// A filter for the function `id` (by hash) at most `max_price`.
pub(super) fn function_filter(id: FunctionId, max_price: Option<u64>) -> Filter {
    Filter {
        function: Some(id),
        max_price,
        ..Filter::kind(CapabilityKind::Function)
    }
}
