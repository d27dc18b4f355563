//! The market's state and every rule that changes it, behind one lock that is never held
//! across an await.
//!
//! Methods take the time (`now`, milliseconds since the Unix epoch: agreements are persisted
//! and must keep their deadlines across restarts) and return the control messages to send;
//! the caller sends them after releasing the lock. An agreement is written to the store
//! before the record a step produced is returned, so a peer is never told about a state this
//! node could forget.
//!
//! This file holds the state itself and its loading; the rules are split by job:
//! `discovery.rs` (adverts, gossip, beacons, pulls), `agreements.rs` (every step of an
//! agreement, charges, the tick), `jobs.rs` (remote jobs), `reputation.rs` (scores,
//! exclusions, the choice of providers).

mod admission;
mod agreements;
mod discovery;
mod jobs;
mod reputation;

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
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{
    AgreementEvent, MarketError, PartialSink,
    offer::OfferSettings,
    records::{
        AGREEMENTS, AgreementRecord, Charges, EXCLUDED_KEY, OWN_SEQ_KEY, REPUTATION_KEY, STATE,
    },
    relay_meter::RelayMeter,
    wire::{
        GossipFrame, Job, JobPartial, JobResult, MAX_PAYLOAD_LEN, PAYMENT_OVERDUE, SignedJob, kinds,
    },
};
use crate::{
    config::MarketConfig,
    events::{EventBus, EventKind},
    seams::payments::{Charge, Payments},
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
    /// The relays this node pays under a relay agreement (see [`crate::seams::payments::RelayCover`]).
    pub(super) relay_cover: tokio::sync::watch::Sender<BTreeSet<NodeId>>,
    /// The node's drain switch: no new agreements or jobs while it is on.
    pub(super) drain: crate::seams::drain::Drain,
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
    /// Jobs refused (unknown agreement, bad signature, wrong function, input too large,
    /// unpaid dues over the credit, drained).
    pub jobs_refused: u64,
    /// Of those, jobs refused because the consumer's unpaid dues exceeded its credit.
    pub jobs_refused_unpaid: u64,
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
    /// What each consumer of this node had paid it through its channels when last asked
    /// (at its last job, or when the agreements were listed), μMHR. Only consumers with an
    /// agreement here are entered.
    pub(super) received: HashMap<NodeId, u64>,
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
    /// Per-key admission of agreement requests.
    request_admission: admission::RequestAdmission,
    /// Drops by reason, shared with the node's other parts (GetStats).
    pub(super) drops: crate::seams::drops::PartDrops,
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
            received: HashMap::new(),
            watchers: HashMap::new(),
            modules: BTreeSet::new(),
            resold: BTreeSet::new(),
            beacons: BeaconRotation::new(beacon_key, now),
            counters: Counters::default(),
            rng: StdRng::from_entropy(),
            relay_meter: RelayMeter::new(deps.config.relay_charge_bytes),
            request_admission: Default::default(),
            drops: Default::default(),
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
                if record.charges.amount_umhr > 0 {
                    // A charge written here just before a crash is owed all the same.
                    state
                        .deps
                        .payments
                        .reconcile(id, agreement.role(), record.charges.amount_umhr);
                }
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
