//! The market part: the capability marketplace of `mehr-market` run over the mesh.
//!
//! [`Market`] owns the node's signed advert (built from what the node really has: interfaces
//! from the transport, functions and free space through the contracts of `crate::seams`,
//! memory and disk from the OS, prices from `[market]` and `UpdateOffer`), the discovery table
//! fed by neighbour gossip, every agreement this node is a side of (persisted in RocksDB),
//! heartbeats, reputation, and remote jobs.
//!
//! Its rules live in `state/` behind one lock that is never held across an await. Around
//! them, by job: `tasks.rs` (gossip rounds, the tick, beacons, one receiver per control
//! message kind), `discovery.rs` (the offer and Discover), `agreements.rs` (requests,
//! proposals, accept, cancel), `jobs.rs` (remote jobs, run here or resold), `tiers.rs` (the
//! verified-call mechanism: "run this function on providers per tier and give me the
//! verdict"), `relay_meter.rs` (relay agreements billed by proved bytes). This file holds the
//! part's types, its start and the way out (`send`).

mod agreements;
mod discovery;
mod jobs;
mod offer;
mod records;
mod relay_meter;
mod state;
mod tasks;
mod tiers;
mod wire;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use mehr_market::{
    CapabilityKind, ChannelId, CostStructure, FunctionId, NodeCapabilities, NodeId, NodeKey,
    PeerKey, Query, RankedOffer,
    agreement::{
        AgreementError, AgreementId, AgreementState, CancelReason, Capability, ComputeTarget,
        Privacy, ProofMethod, RejectReason, Role,
    },
    beacon::PresenceBeacon,
    capabilities::{Availability, CapabilityError},
    discovery::{Filter, NextStep},
    gossip::GossipStats,
    message::MarketMessage,
    verification::TierError,
};
use mehr_transport::hashes::IdentityHash;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use self::{
    offer::OfferSettings,
    records::{AGREEMENTS, AgreementRecord, Charges, STATE},
    state::{Counters, Exclusion},
    tiers::{ProviderOutcome, ProviderResult, VerifiedCall, VerifiedOutcome},
    wire::{GossipFrame, Job, JobPartial, JobResult, SignedJob, WireError, kinds},
};
use self::{
    offer::{FunctionFact, InterfaceFact, LocalFacts, build_capabilities},
    records::SETTINGS_KEY,
    state::{Deps, NeighbourFact, Outbound, RequestOutcome, State, function_filter},
};
use crate::{
    config::Config,
    events::{EventBus, EventKind, unix_ms_now},
    identity::NodeIdentity,
    seams::{
        functions::{FunctionCall, LocalFunctions, run_to_end, run_with_parts},
        storage::{StorageRoom, StorageTerms},
    },
    store::{Store, StoreError},
    transport::{
        ControlMessage, ProvedDelivery, TransportError, TransportHandle, mehr_node_destination,
    },
};
pub use crate::{
    events::AgreementEvent,
    seams::payments::{Charge, Payments, RecordOnly},
};

/// How long one control message may wait for its delivery proof (a posted one: for a path
/// or a link, before the transport gives up).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Delivery reports waiting for the market; more are dropped (and counted by the transport).
const DELIVERY_QUEUE: usize = 4096;
/// Attempts at delivering an agreement record.
const RELIABLE_ATTEMPTS: u32 = 5;
/// Deadlines and heartbeats are checked this often.
const TICK: Duration = Duration::from_millis(250);
/// Two gossip rounds triggered by events are at least this far apart.
const MIN_ROUND_GAP: Duration = Duration::from_millis(250);
/// How long a provider's key may take to find (a path request) before a request is dropped.
const KEY_LOOKUP: Duration = Duration::from_secs(5);
/// Adverts asked for in one pull.
const PULL_LIMIT: u8 = 8;

/// Why a market operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// `market.enabled` is false.
    #[error("the marketplace is disabled on this node (market.enabled = false)")]
    Disabled,
    /// A request field is unusable.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No agreement has this id.
    #[error("no agreement with this id on this node (give an agreement id or a request id)")]
    UnknownAgreement,
    /// The node's identity key is unknown.
    #[error(
        "node {node} is unknown: no announce or advert of it was heard, and a path request found none"
    )]
    UnknownPeer {
        /// The node.
        node: NodeId,
    },
    /// No advert says what the provider charges.
    #[error(
        "no advert of node {node} offers this capability; give a price cap (max_price_umhr) to propose anyway"
    )]
    NoAdvert {
        /// The provider.
        node: NodeId,
    },
    /// The agreement is not active.
    #[error("the agreement is {state:?}, not active")]
    NotActive {
        /// Its state.
        state: AgreementState,
    },
    /// The agreement state machine refused the step.
    #[error(transparent)]
    Agreement(#[from] AgreementError),
    /// The advert could not be signed.
    #[error("cannot sign the advert: {0}")]
    Advert(#[from] CapabilityError),
    /// A resale could not be chained.
    #[error("capability chain: {0}")]
    Chain(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Something did not happen in time.
    #[error("{0} did not finish in time")]
    Timeout(&'static str),
    /// Too few providers for the tier.
    #[error(
        "function `{function}`: {found} usable provider(s) found under the price cap, the tier needs {needed}"
    )]
    NoProviders {
        /// The function.
        function: String,
        /// Providers found.
        found: usize,
        /// Providers needed.
        needed: usize,
    },
    /// The tier's providers did not agree.
    #[error("no result was accepted: {0}")]
    Unverified(String),
    /// A remote job failed.
    #[error("provider {provider}: {reason}")]
    JobFailed {
        /// The provider.
        provider: NodeId,
        /// Why.
        reason: String,
    },
    /// The provider refused the job: this node's unpaid dues to it exceed its credit.
    #[error("provider {provider} refuses service: {reason}")]
    PaymentOverdue {
        /// The provider.
        provider: NodeId,
        /// The provider's words (what is owed, the credit).
        reason: String,
    },
    /// The tier is malformed.
    #[error(transparent)]
    Tier(#[from] TierError),
    /// The market is shutting down.
    #[error("the marketplace is shutting down")]
    Stopped,
}

/// The node's own offer, as `GetOffer` shows it.
#[derive(Debug, Clone)]
pub struct OfferView {
    /// This node.
    pub node_id: NodeId,
    /// The advert's sequence number.
    pub seq: u64,
    /// Its lifetime at receivers.
    pub ttl_seconds: u32,
    /// What it advertises.
    pub capabilities: NodeCapabilities,
    /// The signed advert as gossiped.
    pub advert: Vec<u8>,
    /// The settings it was built from.
    pub settings: OfferSettings,
    /// Functions advertised for resale (neighbours', marked up).
    pub resold: Vec<String>,
}

/// A change to the offer settings; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct OfferUpdate {
    /// Go back to the `[market]` configuration first.
    pub reset: bool,
    /// Advertise relay.
    pub offer_relay: Option<bool>,
    /// Advertise storage.
    pub offer_storage: Option<bool>,
    /// Advertise compute.
    pub offer_compute: Option<bool>,
    /// μMHR per relayed byte.
    pub relay_price_per_byte_umhr: Option<u64>,
    /// μMHR per byte-day.
    pub storage_price_per_byte_day_umhr: Option<u64>,
    /// μMHR per million WASM cycles.
    pub wasm_price_per_million_cycles_umhr: Option<u64>,
    /// Per-call price overrides to set.
    pub function_prices: BTreeMap<String, u64>,
    /// Overrides to remove.
    pub remove_function_prices: Vec<String>,
    /// Availability.
    pub availability: Option<Availability>,
}

/// A discovery request.
#[derive(Debug, Clone, Copy)]
pub struct DiscoverRequest {
    /// What is wanted.
    pub filter: Filter,
    /// Offers wanted (at least 1).
    pub want: usize,
    /// Outermost ring to search (0–3).
    pub max_ring: u8,
    /// How long the whole search may take.
    pub timeout: Duration,
}

/// How a discovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryOutcome {
    /// `want` offers found.
    Satisfied,
    /// Every ring searched, fewer found.
    Exhausted,
    /// The time ran out first.
    TimedOut,
}

/// A provider found, with its advert.
#[derive(Debug, Clone)]
pub struct FoundOffer {
    /// How it ranked.
    pub offer: RankedOffer,
    /// Its advertised capabilities.
    pub capabilities: Option<NodeCapabilities>,
}

/// The result of a discovery.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Offers, best first.
    pub offers: Vec<FoundOffer>,
    /// How it ended.
    pub outcome: DiscoveryOutcome,
    /// The highest ring searched.
    pub rings_searched: u8,
    /// Pull requests sent.
    pub pulls_sent: u32,
    /// Pull answers received.
    pub answers: u32,
    /// Time taken.
    pub elapsed: Duration,
}

/// An agreement to propose.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The provider.
    pub provider: NodeId,
    /// What is bought.
    pub capability: Capability,
    /// The most to pay; `None` takes the provider's advertised price.
    pub cost_cap: Option<CostStructure>,
    /// How long it runs once active.
    pub duration_seconds: u32,
    /// The proof wanted.
    pub proof: ProofMethod,
    /// Countersign the offer as soon as it arrives.
    pub accept: bool,
    /// How long to wait for the answer (zero: return at once).
    pub wait: Duration,
}

/// An agreement, as the API shows it.
#[derive(Debug, Clone)]
pub struct AgreementView {
    /// Blake3 of the signed request.
    pub request_id: [u8; 32],
    /// The agreement id, once offered.
    pub agreement_id: Option<AgreementId>,
    /// This node's side.
    pub role: Role,
    /// Where it stands.
    pub state: AgreementState,
    /// The other side.
    pub counterparty: NodeId,
    /// What it is about.
    pub capability: Capability,
    /// The function's name, where an advert tells it.
    pub function_name: Option<String>,
    /// The consumer's cap.
    pub cost_cap: CostStructure,
    /// The agreed cost.
    pub cost: Option<CostStructure>,
    /// Duration once active.
    pub duration_seconds: u32,
    /// The payment channel named.
    pub channel: ChannelId,
    /// The proof method (the offer's once offered).
    pub proof: ProofMethod,
    /// Privacy.
    pub privacy: Privacy,
    /// Times, ms since the Unix epoch.
    pub proposed_at_unix_ms: u64,
    /// When offered.
    pub offered_at_unix_ms: Option<u64>,
    /// When activated.
    pub activated_at_unix_ms: Option<u64>,
    /// When it runs out.
    pub ends_at_unix_ms: Option<u64>,
    /// Last change.
    pub updated_at_unix_ms: u64,
    /// Payments accrued.
    pub charges: Charges,
    /// Of the charges: paid through the channel (co-signed), and still owed. A consumer
    /// knows this per agreement from its payment queue; a provider spreads what the consumer
    /// has paid it in all over the consumer's agreements, oldest first (as of the consumer's
    /// last job or the last listing).
    pub payment: crate::seams::payments::PaymentProgress,
    /// The agreement it resells (from the offer).
    pub upstream: Option<AgreementId>,
    /// The request id of the other agreement in this node's chain link.
    pub linked: Option<[u8; 32]>,
    /// Why it ended.
    pub note: String,
    /// Consecutive heartbeats missed (consumer side).
    pub heartbeat_misses: u32,
}

/// Which agreements to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgreementFilter {
    /// Only this side.
    pub role: Option<Role>,
    /// Only proposed, offered or active ones.
    pub live_only: bool,
}

/// A peer's reputation.
#[derive(Debug, Clone)]
pub struct ReputationView {
    /// The peer.
    pub node_id: NodeId,
    /// Relay score, 0–10000.
    pub relay: u16,
    /// Storage score.
    pub storage: u16,
    /// Compute score.
    pub compute: u16,
    /// Interactions recorded.
    pub interactions: u32,
    /// Failed ones.
    pub failures: u32,
    /// An exclusion from compute in force, if any.
    pub excluded: Option<Exclusion>,
}

/// Gossip on one link.
#[derive(Debug, Clone)]
pub struct LinkView {
    /// The neighbour.
    pub node_id: NodeId,
    /// Link bit rate.
    pub bitrate: u64,
    /// Its T3 budget, bytes per hour.
    pub budget_bytes_per_hour: u64,
    /// What was sent.
    pub stats: GossipStats,
}

/// The market's counters and sizes.
#[derive(Debug, Clone)]
pub struct MarketStats {
    /// Arrivals and refusals.
    pub counters: Counters,
    /// Live adverts held.
    pub adverts_held: usize,
    /// Gossip per neighbour link.
    pub links: Vec<LinkView>,
    /// The own advert's sequence number.
    pub own_seq: u64,
    /// Agreements by state name.
    pub agreements: BTreeMap<String, u64>,
    /// Control messages that could not be sent, and records never proved delivered.
    pub sends_failed: u64,
    /// Proved deliveries through relays dropped before the market metered them.
    pub deliveries_dropped: u64,
    /// Since when the counters run, ms since the Unix epoch.
    pub since_unix_ms: u64,
}

/// What the market is built from.
pub struct MarketParts<'a> {
    /// The node's identity.
    pub identity: &'a NodeIdentity,
    /// The whole configuration.
    pub config: &'a Config,
    /// The transport.
    pub transport: TransportHandle,
    /// The node's functions (the compute part), run for consumers' jobs.
    pub functions: Arc<dyn LocalFunctions>,
    /// The object store.
    pub storage_room: Arc<dyn StorageRoom>,
    /// The database.
    pub store: Store,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// Where agreements meet payments.
    pub payments: Arc<dyn Payments>,
    /// Where the market publishes the relays it pays under agreements (see [`crate::seams::payments::RelayCover`]).
    pub relay_cover: tokio::sync::watch::Sender<std::collections::BTreeSet<NodeId>>,
    /// Where the market publishes the terms this node stores shards on (remote storage
    /// refuses offers below them).
    pub storage_terms: tokio::sync::watch::Sender<StorageTerms>,
    /// Ends the tasks.
    pub shutdown: CancellationToken,
    /// Drops by reason, shared with the node's other parts (GetStats).
    pub drops: crate::seams::drops::PartDrops,
    /// On while the node is drained: agreement requests are declined as busy and jobs are
    /// refused, as the API refuses new calls.
    pub drain: crate::seams::drain::Drain,
}

/// The market part. Cheap to clone.
#[derive(Clone)]
pub struct Market {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("node", &self.shared.me)
            .finish_non_exhaustive()
    }
}

struct Shared {
    me: NodeId,
    /// Where agreements meet payments (what consumers paid, for the credit check).
    payments: Arc<dyn Payments>,
    state: Mutex<State>,
    transport: TransportHandle,
    functions: Arc<dyn LocalFunctions>,
    storage_room: Arc<dyn StorageRoom>,
    store: Store,
    config: Config,
    round_now: Notify,
    sends_failed: std::sync::atomic::AtomicU64,
    /// Delivery reports the transport dropped because the market was behind.
    deliveries_dropped: Arc<std::sync::atomic::AtomicU64>,
    started_unix_ms: u64,
    shutdown: CancellationToken,
    /// The relay price of the offer, μMHR per byte, for the transport and the ledger.
    relay_price: tokio::sync::watch::Sender<u64>,
    /// The storage terms of the offer, for remote storage.
    storage_terms: tokio::sync::watch::Sender<StorageTerms>,
    /// Requests (agreement proposals) handled at once; more are dropped and counted.
    request_handlers: Arc<tokio::sync::Semaphore>,
    /// Jobs handled at once; more are dropped and counted.
    job_handlers: Arc<tokio::sync::Semaphore>,
    /// Drops by reason (GetStats).
    drops: crate::seams::drops::PartDrops,
}

/// Agreement requests handled at once (each a signature check, a look-up and a write).
const MAX_CONCURRENT_REQUESTS: usize = 64;
/// Jobs handled at once (each may run a function).
const MAX_CONCURRENT_JOBS: usize = 32;

/// Where the parts of a streamed job's output go, as `(seq, bytes)` in arrival order (not
/// necessarily `seq` order). See [`wire::JobPartial`].
pub type PartialSink = tokio::sync::mpsc::UnboundedSender<(u32, Vec<u8>)>;

/// Forgets a job this node waits for when dropped (its result, if it still comes, is then
/// counted as unsolicited).
struct ForgetJob<'a> {
    market: &'a Market,
    job_hash: [u8; 32],
}

impl Drop for ForgetJob<'_> {
    fn drop(&mut self) {
        self.market.state().forget_job(&self.job_hash);
    }
}

/// Milliseconds since the Unix epoch: the market's clock (agreements persist across restarts).
fn now_ms() -> u64 {
    unix_ms_now()
}

impl Market {
    /// Builds the advert, loads persisted agreements, registers the market's control message
    /// kinds and starts its tasks.
    pub async fn start(parts: MarketParts<'_>) -> Result<Market, MarketError> {
        let private = parts.identity.to_private_bytes();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&private[32..64]);
        let signing = SigningKey::from_bytes(&seed);
        let key = NodeKey::new(signing.clone(), parts.identity.x25519_public());
        let me = key.node_id();
        let config = parts.config.clone();
        let settings = match parts
            .store
            .get(STATE, &SETTINGS_KEY.to_string())?
            .map(|bytes| postcard::from_bytes::<OfferSettings>(&bytes))
        {
            Some(Ok(settings)) => settings,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "stored offer settings unreadable; using the configuration");
                OfferSettings::from_config(&config)
            }
            None => OfferSettings::from_config(&config),
        };
        let facts = collect_facts(
            &parts.transport,
            parts.functions.as_ref(),
            parts.storage_room.as_ref(),
            &config,
        )
        .await;
        let capabilities = build_capabilities(&facts.0, &settings, &config.market);
        let relay_price = settings.relay_price_per_byte_umhr;
        parts.storage_terms.send_replace(settings.storage_terms());
        let deps = Deps {
            store: parts.store.clone(),
            events: parts.events.clone(),
            payments: parts.payments.clone(),
            config: config.market.clone(),
            relay_cover: parts.relay_cover,
            drain: parts.drain,
        };
        let mut state = State::load(key, signing, deps, settings, capabilities, now_ms())?;
        let deliveries = parts.transport.delivery_reports(DELIVERY_QUEUE).await?;
        state.modules = facts.1;
        state.drops = parts.drops.clone();
        let market = Market {
            shared: Arc::new(Shared {
                me,
                payments: parts.payments,
                state: Mutex::new(state),
                transport: parts.transport.clone(),
                functions: parts.functions,
                storage_room: parts.storage_room,
                store: parts.store,
                config,
                round_now: Notify::new(),
                sends_failed: std::sync::atomic::AtomicU64::new(0),
                deliveries_dropped: deliveries.dropped.clone(),
                started_unix_ms: now_ms(),
                shutdown: parts.shutdown,
                relay_price: tokio::sync::watch::Sender::new(relay_price),
                storage_terms: parts.storage_terms,
                request_handlers: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS)),
                job_handlers: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_JOBS)),
                drops: parts.drops,
            }),
        };
        for kind in kinds::ALL {
            // Records are sent until proved delivered; the rest is periodic or answered.
            let receiver = if kind == kinds::RECORD {
                parts.transport.acknowledged_control_messages(kind).await?
            } else {
                parts.transport.control_messages(kind).await?
            };
            tokio::spawn(market.clone().receive(receiver));
        }
        tokio::spawn(market.clone().delivery_loop(deliveries.receiver));
        tokio::spawn(market.clone().gossip_loop());
        tokio::spawn(market.clone().tick_loop());
        tokio::spawn(market.clone().beacon_loop());
        tokio::spawn(market.clone().event_loop(parts.events.subscribe()));
        tracing::info!(node = %me, "market started");
        Ok(market)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.me
    }

    /// Duration of the agreements this node proposes when none is given, seconds.
    pub fn default_agreement_secs(&self) -> u32 {
        self.shared.config.market.agreement_duration_secs
    }

    // ---- sending ---------------------------------------------------------------------

    fn send_all(&self, outbound: Vec<Outbound>) {
        for message in outbound {
            self.send(message);
        }
    }

    fn send(&self, message: Outbound) {
        if !message.reliable {
            // Nobody waits for these (gossip, beacons, pongs, job parts and results): queued
            // with the transport, no task and no wait for a proof; only a message the
            // transport could not take counts as failed here.
            let posted = self.shared.transport.post_control(
                IdentityHash(message.to.0),
                message.kind,
                &message.body,
                SEND_TIMEOUT,
            );
            if !posted {
                self.shared
                    .sends_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        }
        let market = self.clone();
        tokio::spawn(async move {
            let attempts = RELIABLE_ATTEMPTS;
            for attempt in 0..attempts {
                if market.shared.shutdown.is_cancelled() {
                    return;
                }
                let sent = market
                    .shared
                    .transport
                    .send_control(
                        IdentityHash(message.to.0),
                        message.kind,
                        &message.body,
                        SEND_TIMEOUT,
                    )
                    .await;
                match sent {
                    // Records are proved (see `Market::start`).
                    Ok(report) if report.delivered => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(to = %message.to, kind = message.kind, attempt, error = %e, "market message not delivered")
                    }
                }
                if attempt + 1 < attempts {
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
            market
                .shared
                .sends_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }

    // ---- tasks -----------------------------------------------------------------------

    /// Reputation of every peer this node dealt with (or of `node` only).
    pub fn reputation(&self, node: Option<NodeId>) -> Vec<ReputationView> {
        let state = self.state();
        let now = now_ms();
        let mut nodes: BTreeSet<NodeId> = state
            .agreements
            .values()
            .map(|e| e.agreement.counterparty())
            .collect();
        nodes.extend(state.excluded.keys().copied());
        if let Some(node) = node {
            nodes = BTreeSet::from([node]);
        }
        nodes
            .into_iter()
            .map(|id| {
                use mehr_market::reputation::ServiceKind;
                let peer = state.reputation.get(&id);
                ReputationView {
                    node_id: id,
                    relay: state.score(&id, ServiceKind::Relay, now),
                    storage: state.score(&id, ServiceKind::Storage, now),
                    compute: state.score(&id, ServiceKind::Compute, now),
                    interactions: peer.map_or(0, |p| p.total()),
                    failures: peer.map_or(0, |p| p.failed()),
                    excluded: state
                        .excluded
                        .get(&id)
                        .filter(|e| e.until_unix_ms > now)
                        .cloned(),
                }
            })
            .collect()
    }

    /// Counters, sizes and per-link gossip.
    pub fn stats(&self) -> MarketStats {
        let state = self.state();
        let now = now_ms();
        let mut agreements: BTreeMap<String, u64> = BTreeMap::new();
        for e in state.agreements.values() {
            *agreements
                .entry(state_name(e.agreement.state()).to_string())
                .or_default() += 1;
        }
        MarketStats {
            counters: state.counters,
            adverts_held: state.table.len(now),
            links: state
                .link_stats()
                .into_iter()
                .map(|(node_id, bitrate, budget, stats)| LinkView {
                    node_id,
                    bitrate,
                    budget_bytes_per_hour: budget,
                    stats,
                })
                .collect(),
            own_seq: state.own_advert().seq(),
            agreements,
            sends_failed: self
                .shared
                .sends_failed
                .load(std::sync::atomic::Ordering::Relaxed),
            deliveries_dropped: self
                .shared
                .deliveries_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            since_unix_ms: self.shared.started_unix_ms,
        }
    }
}

/// A state's name in lists and counters.
pub fn state_name(state: AgreementState) -> &'static str {
    match state {
        AgreementState::Proposed => "proposed",
        AgreementState::Offered => "offered",
        AgreementState::Active => "active",
        AgreementState::Rejected(_) => "rejected",
        AgreementState::Cancelled { .. } => "cancelled",
        AgreementState::Expired => "expired",
        AgreementState::Terminated => "terminated",
        AgreementState::Completed => "completed",
    }
}

/// Reads what goes into the advert from the other parts and the OS. Also returns the ids of
/// deployed WASM modules.
async fn collect_facts(
    transport: &TransportHandle,
    functions: &dyn LocalFunctions,
    storage_room: &dyn StorageRoom,
    config: &Config,
) -> (LocalFacts, BTreeSet<[u8; 32]>) {
    let interfaces = transport
        .interfaces()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.parent.is_none())
        .map(|i| InterfaceFact {
            kind: i.kind,
            bitrate: i.bitrate,
            latency_ms: i.spec.latency_ms.unwrap_or(0),
        })
        .collect();
    let offered = functions.offered();
    let modules = offered.iter().filter_map(|f| f.module_id).collect();
    let functions = offered
        .into_iter()
        .map(|f| FunctionFact {
            function_id: f.function_id,
            kind: f.kind,
            description: f.description,
            price: f.price,
            max_concurrency: f.max_concurrency,
            max_input_bytes: f.max_input_bytes,
        })
        .collect();
    let quota_left = storage_room.quota_left_bytes();
    let disk = offer::disk_free_bytes(&config.data_dir).unwrap_or(u64::MAX);
    let facts = LocalFacts {
        interfaces,
        functions,
        wasm_max_fuel: config.compute.wasm_fuel,
        memory_mb: offer::memory_mb(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        storage_free_bytes: quota_left.min(disk),
        max_object_size: storage_room.max_object_size(),
        resold: Vec::new(),
    };
    (facts, modules)
}

/// A capability kind's name in the API and CLI.
pub fn kind_name(kind: CapabilityKind) -> &'static str {
    match kind {
        CapabilityKind::Relay => "relay",
        CapabilityKind::Gateway => "gateway",
        CapabilityKind::Storage => "storage",
        CapabilityKind::MhrByte => "mhr-byte",
        CapabilityKind::Wasm => "wasm",
        CapabilityKind::PubSub => "pubsub",
        CapabilityKind::Dht => "dht",
        CapabilityKind::Naming => "naming",
        CapabilityKind::Function => "function",
    }
}
