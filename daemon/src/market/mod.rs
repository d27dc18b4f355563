//! The market part: the capability marketplace of `mehr-market` run over the mesh.
//!
//! [`Market`] owns the node's signed advert (built from what the node really has: interfaces
//! from the transport, functions from the compute part, free space from the object store,
//! memory and disk from the OS, prices from `[market]` and `SetOffer`), the discovery table
//! fed by neighbour gossip, every agreement this node is a side of (persisted in RocksDB),
//! heartbeats, reputation, and remote jobs. Its rules live in `state.rs` behind one lock;
//! this module runs the tasks around it (gossip rounds, a tick for deadlines and heartbeats,
//! beacons, one receiver per control message kind) and the operations the API and other
//! parts call. `tiers.rs` is the verification mechanism the compute part calls: "run this
//! function on providers per tier and give me the verdict".

mod offer;
mod payments;
mod records;
mod relay_meter;
mod state;
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

pub(crate) use self::payments::pay_peer;
pub use self::{
    offer::OfferSettings,
    payments::{ChannelPayments, Charge, Payments, RecordOnly},
    records::{AGREEMENTS, AgreementRecord, CF_AGREEMENTS, CF_STATE, Charges, STATE},
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
    compute::{Chunk, Compute, InvokeRequest},
    config::Config,
    events::{EventBus, EventKind, unix_ms_now},
    identity::NodeIdentity,
    storage::ObjectStore,
    store::{Store, StoreError},
    transport::{
        ControlMessage, ProvedDelivery, TransportError, TransportHandle, mehr_node_destination,
    },
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

/// A change of an agreement, as the event bus carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementEvent {
    /// Blake3 of the signed request: the agreement's handle from its first step.
    pub request_id: [u8; 32],
    /// The agreement id, once offered.
    pub agreement_id: Option<AgreementId>,
    /// The other side.
    pub counterparty: NodeId,
    /// This node's side.
    pub role: Role,
    /// The new state.
    pub state: AgreementState,
    /// Why it ended, in words.
    pub note: String,
}

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
    /// The compute part.
    pub compute: Compute,
    /// The object store.
    pub objects: ObjectStore,
    /// The database.
    pub store: Store,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// Where agreements meet payments.
    pub payments: Arc<dyn Payments>,
    /// Where the market publishes the relays it pays under agreements (see [`RelayCover`]).
    pub relay_cover: tokio::sync::watch::Sender<std::collections::BTreeSet<NodeId>>,
    /// Ends the tasks.
    pub shutdown: CancellationToken,
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
    state: Mutex<State>,
    transport: TransportHandle,
    compute: Compute,
    objects: ObjectStore,
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
}

/// Where the parts of a streamed job's output go, as `(seq, bytes)` in arrival order (not
/// necessarily `seq` order). See [`wire::JobPartial`].
pub type PartialSink = tokio::sync::mpsc::UnboundedSender<(u32, Vec<u8>)>;

/// The relays this node buys relaying from under an active relay agreement. Such an
/// agreement pays per byte the destination proved delivered, so the ledger declines those
/// relays' lottery tickets for this node's own packets: they would be paid twice. Packets
/// this node relays for others through them stay on the lottery.
pub type RelayCover = tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>;

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
        let facts = collect_facts(&parts.transport, &parts.compute, &parts.objects, &config).await;
        let capabilities = build_capabilities(&facts.0, &settings, &config.market);
        let relay_price = settings.relay_price_per_byte_umhr;
        let deps = Deps {
            store: parts.store.clone(),
            events: parts.events.clone(),
            payments: parts.payments,
            config: config.market.clone(),
            relay_cover: parts.relay_cover,
        };
        let mut state = State::load(key, signing, deps, settings, capabilities, now_ms())?;
        let deliveries = parts.transport.delivery_reports(DELIVERY_QUEUE).await?;
        state.modules = facts.1;
        let market = Market {
            shared: Arc::new(Shared {
                me,
                state: Mutex::new(state),
                transport: parts.transport.clone(),
                compute: parts.compute,
                objects: parts.objects,
                store: parts.store,
                config,
                round_now: Notify::new(),
                sends_failed: std::sync::atomic::AtomicU64::new(0),
                deliveries_dropped: deliveries.dropped.clone(),
                started_unix_ms: now_ms(),
                shutdown: parts.shutdown,
                relay_price: tokio::sync::watch::Sender::new(relay_price),
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

    async fn receive(self, mut messages: mpsc::Receiver<ControlMessage>) {
        loop {
            let message = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            self.on_control(message).await;
        }
    }

    async fn on_control(&self, message: ControlMessage) {
        let now = now_ms();
        match message.kind {
            kinds::RECORD => match wire::decode_record(&message.body) {
                Ok(MarketMessage::Request(request)) => {
                    tokio::spawn(self.clone().on_request(request));
                }
                Ok(record) => {
                    let out = self.state().on_record(record, now);
                    self.send_all(out);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed market record");
                    self.state().counters.records_refused += 1;
                }
            },
            kinds::GOSSIP => match GossipFrame::decode(&message.body) {
                Ok(frame) => {
                    if !self.state().links.contains_key(&frame.from) {
                        // A neighbour that appeared since the last round.
                        let neighbours = self.neighbour_facts().await;
                        self.state().sync_links(&neighbours, now);
                    }
                    let out = self.state().on_gossip(frame, now);
                    self.send_all(out);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed gossip");
                    let mut state = self.state();
                    if matches!(e, WireError::Record { .. }) && message.body.get(16) == Some(&0x20)
                    {
                        state.counters.adverts_refused += 1;
                    } else {
                        state.counters.gossip_refused += 1;
                    }
                }
            },
            kinds::BEACON => match PresenceBeacon::decode(&message.body) {
                Ok(beacon) => self.state().on_beacon(beacon, message.interface),
                Err(_) => self.state().counters.gossip_refused += 1,
            },
            kinds::JOB | kinds::JOB_STREAMED => match SignedJob::decode(&message.body) {
                Ok(job) => {
                    let streamed = message.kind == kinds::JOB_STREAMED;
                    tokio::spawn(self.clone().on_job(job, streamed));
                }
                Err(_) => self.state().counters.jobs_refused += 1,
            },
            kinds::JOB_PARTIAL => match JobPartial::decode(&message.body) {
                Ok(partial) => self.state().on_job_partial(partial),
                Err(_) => self.state().counters.records_refused += 1,
            },
            kinds::JOB_RESULT => match JobResult::decode(&message.body) {
                Ok(result) => self.state().on_job_result(result),
                Err(_) => self.state().counters.records_refused += 1,
            },
            _ => {}
        }
    }

    async fn on_request(self, request: mehr_market::agreement::SignedRequest) {
        let consumer = request.body().consumer;
        let Some(key) = self.peer_key(consumer).await else {
            tracing::debug!(%consumer, "request from a node whose key is unknown");
            self.state().counters.records_refused += 1;
            return;
        };
        let outcome = self.state().on_request(request, &key, now_ms());
        match outcome {
            RequestOutcome::Answered(out) => self.send_all(out),
            RequestOutcome::Resell {
                request_hash,
                function,
                cap,
                duration_seconds,
            } => {
                self.resell(request_hash, function, cap, duration_seconds)
                    .await
            }
        }
    }

    async fn on_job(self, job: SignedJob, streamed: bool) {
        let offered = self.state().offered_for(&job);
        if let Some(hash) = offered {
            // The countersignature is on its way; give it the time a reliable send takes.
            self.wait_for(hash, SEND_TIMEOUT, |s| s != AgreementState::Offered)
                .await;
        }
        let plan = match self.state().accept_job(&job, now_ms()) {
            Ok(plan) => plan,
            Err(state::JobRefusal::Repeat(out)) => return self.send(out),
            Err(state::JobRefusal::Running) => return,
            Err(state::JobRefusal::Refused(out)) => {
                if let Some(out) = out {
                    self.send(out);
                }
                return;
            }
        };
        let deadline = Duration::from_millis(u64::from(plan.deadline_ms.max(1)));
        let outcome = match plan.upstream {
            Some(upstream) => {
                let done = self
                    .run_job(upstream, &plan.function, plan.input.clone(), deadline, None)
                    .await
                    .map_err(|e| format!("upstream: {e}"));
                if done.is_ok() {
                    // This node owes its upstream provider for the result it resells.
                    let mut state = self.state();
                    let price = state
                        .agreements
                        .get(&upstream)
                        .and_then(|e| e.agreement.cost())
                        .map_or(0, |cost| state::job_price(&cost, 0));
                    if let Err(e) = state.charge(upstream, 1, price, now_ms()) {
                        tracing::error!(error = %e, "cannot record a charge");
                    }
                }
                done.map(|done| (done.output, 0))
            }
            None => {
                let request = InvokeRequest {
                    deadline: Some(deadline),
                    ..InvokeRequest::new(plan.function.clone(), plan.input.clone())
                };
                if streamed {
                    self.run_streamed(&plan, request).await
                } else {
                    self.shared
                        .compute
                        .invoke(request)
                        .await
                        .map(|done| (done.output.to_vec(), done.metering.fuel_used))
                        .map_err(|e| e.to_string())
                }
            }
        };
        let out = self.state().finish_job(&plan, outcome, now_ms());
        self.send(out);
    }

    /// Runs a streamed job here, sending each part of the output to the consumer as it is
    /// produced; returns the whole output (for the signed result) and the fuel used.
    async fn run_streamed(
        &self,
        plan: &state::JobPlan,
        request: InvokeRequest,
    ) -> Result<(Vec<u8>, u64), String> {
        let mut invocation = self
            .shared
            .compute
            .start_invocation(request)
            .map_err(|e| e.to_string())?;
        let mut output = Vec::new();
        let mut seq = 0u32;
        while let Some(chunk) = invocation.next().await {
            match chunk.map_err(|e| e.to_string())? {
                Chunk::Partial(bytes) => {
                    output.extend_from_slice(&bytes);
                    let part = JobPartial {
                        job_hash: plan.job_hash,
                        seq,
                        bytes: bytes.to_vec(),
                    };
                    seq = seq.wrapping_add(1);
                    self.send(Outbound {
                        to: plan.consumer,
                        kind: kinds::JOB_PARTIAL,
                        body: part.encode(),
                        reliable: false,
                    });
                }
                Chunk::Final {
                    output: last,
                    metering,
                } => {
                    output.extend_from_slice(&last);
                    return Ok((output, metering.fuel_used));
                }
            }
        }
        Err("the function ended without a result".into())
    }

    async fn gossip_loop(self) {
        let round = Duration::from_millis(self.shared.config.market.gossip_round_ms);
        let mut interval = tokio::time::interval(round);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
                _ = self.shared.round_now.notified() => {}
            }
            self.gossip_round().await;
            tokio::time::sleep(MIN_ROUND_GAP).await;
        }
    }

    /// One gossip round: re-read the node's facts, re-sign the advert if it changed, sync
    /// the neighbour links, and send what each link's budget allows.
    async fn gossip_round(&self) {
        let neighbours = self.neighbour_facts().await;
        let (mut facts, modules) = collect_facts(
            &self.shared.transport,
            &self.shared.compute,
            &self.shared.objects,
            &self.shared.config,
        )
        .await;
        let now = now_ms();
        let out = {
            let mut state = self.state();
            state.sync_links(&neighbours, now);
            state.modules = modules;
            if self.shared.config.market.resell {
                let local: BTreeSet<String> = facts
                    .functions
                    .iter()
                    .map(|f| f.function_id.clone())
                    .collect();
                facts.resold = state.resale_functions(&local, now);
            }
            state.resold = facts.resold.iter().map(|f| f.name.clone()).collect();
            let capabilities =
                build_capabilities(&facts, &state.settings, &self.shared.config.market);
            if let Err(e) = state.refresh_advert(capabilities, now) {
                tracing::error!(error = %e, "cannot re-sign the advert");
            }
            state.gossip_poll(now)
        };
        self.send_all(out);
    }

    /// Meters relay agreements by the deliveries their relays carried (see `relay_meter`).
    async fn delivery_loop(self, mut deliveries: mpsc::Receiver<ProvedDelivery>) {
        loop {
            let delivery = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let relay = NodeId(delivery.next_hop.0);
            self.state()
                .relay_delivered(relay, delivery.bytes, now_ms());
        }
    }

    async fn tick_loop(self) {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let out = self.state().tick(now_ms());
            self.send_all(out);
        }
    }

    async fn beacon_loop(self) {
        let every = Duration::from_millis(self.shared.config.market.beacon_interval_ms);
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let load = self.load().await;
            let out = self.state().beacons(now_ms(), load);
            self.send_all(out);
        }
    }

    async fn event_loop(self, mut events: tokio::sync::broadcast::Receiver<crate::events::Event>) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let relevant = match event {
                Ok(event) => matches!(
                    event.kind,
                    EventKind::FunctionRegistered { .. }
                        | EventKind::FunctionUnregistered { .. }
                        | EventKind::ObjectStored { .. }
                        | EventKind::ObjectDeleted { .. }
                        | EventKind::InterfaceUp { .. }
                        | EventKind::InterfaceDown { .. }
                        | EventKind::PathLearned { hops: 1, .. }
                ),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            if relevant {
                self.shared.round_now.notify_one();
            }
        }
    }

    /// Load 0 (idle) … 255 (saturated) of the functions this node serves.
    async fn load(&self) -> u8 {
        let Ok(page) = self
            .shared
            .compute
            .list_functions("", crate::compute::MAX_PAGE_SIZE)
        else {
            return 0;
        };
        let (busy, capacity) = page.functions.iter().fold((0u64, 0u64), |(b, c), f| {
            (
                b + u64::from(f.in_flight) + u64::from(f.queued),
                c + u64::from(f.max_concurrency),
            )
        });
        (busy * 255)
            .checked_div(capacity)
            .map_or(0, |load| u8::try_from(load.min(255)).unwrap_or(u8::MAX))
    }

    /// Mehr neighbours with their keys, link bit rates and relay fees.
    async fn neighbour_facts(&self) -> Vec<NeighbourFact> {
        let transport = &self.shared.transport;
        let (Ok(neighbours), Ok(interfaces)) =
            (transport.neighbours().await, transport.interfaces().await)
        else {
            return Vec::new();
        };
        let mut facts = Vec::new();
        for n in neighbours {
            let node_id = NodeId(n.node_id.0);
            let Ok(Some(public)) = transport.identity_of(n.node_id).await else {
                continue;
            };
            let Ok(key) = PeerKey::from_public_key(&public) else {
                continue;
            };
            let bitrate = interfaces.iter().find(|i| i.id == n.interface).map_or(
                crate::transport::interfaces::spec::DEFAULT_IP_BITRATE,
                |i| i.bitrate,
            );
            facts.push(NeighbourFact {
                node_id,
                key,
                interface: n.interface,
                bitrate,
                cost: n.cost.cost_per_byte().max(0.0).ceil() as u64,
            });
        }
        facts
    }

    /// The key of `node`: known already, from its announce, or after asking for its path.
    async fn peer_key(&self, node: NodeId) -> Option<PeerKey> {
        if let Some(key) = self.state().known_key(&node) {
            return Some(key);
        }
        let transport = &self.shared.transport;
        let id = IdentityHash(node.0);
        let mut public = transport.identity_of(id).await.ok().flatten();
        if public.is_none() {
            let _ = transport
                .request_path(mehr_node_destination(&id), KEY_LOOKUP)
                .await;
            public = transport.identity_of(id).await.ok().flatten();
        }
        let key = PeerKey::from_public_key(&public?).ok()?;
        (key.node_id() == node).then(|| {
            self.state().remember_key(key.clone());
            key
        })
    }

    // ---- offer -----------------------------------------------------------------------

    /// The node's own offer.
    pub fn offer(&self) -> OfferView {
        let state = self.state();
        let advert = state.own_advert();
        OfferView {
            node_id: self.shared.me,
            seq: advert.seq(),
            ttl_seconds: advert.ttl_seconds(),
            capabilities: advert.capabilities().clone(),
            advert: advert.as_bytes().to_vec(),
            settings: state.settings.clone(),
            resold: state.resold.iter().cloned().collect(),
        }
    }

    /// Changes the offer settings (kept in the store across restarts) and re-signs the
    /// advert at once.
    pub async fn set_offer(&self, update: OfferUpdate) -> Result<OfferView, MarketError> {
        for name in update.function_prices.keys() {
            if name.is_empty() || name.len() > mehr_market::params::MAX_FUNCTION_NAME_LEN {
                return Err(MarketError::InvalidArgument {
                    field: "function_prices",
                    reason: format!("function id `{name}` must be 1 to 64 bytes"),
                });
            }
        }
        {
            let mut state = self.state();
            let mut settings = if update.reset {
                OfferSettings::from_config(&self.shared.config)
            } else {
                state.settings.clone()
            };
            let set = |slot: &mut bool, value: Option<bool>| {
                if let Some(v) = value {
                    *slot = v;
                }
            };
            set(&mut settings.offer_relay, update.offer_relay);
            set(&mut settings.offer_storage, update.offer_storage);
            set(&mut settings.offer_compute, update.offer_compute);
            if let Some(v) = update.relay_price_per_byte_umhr {
                settings.relay_price_per_byte_umhr = v;
            }
            if let Some(v) = update.storage_price_per_byte_day_umhr {
                settings.storage_price_per_byte_day_umhr = v;
            }
            if let Some(v) = update.wasm_price_per_million_cycles_umhr {
                settings.wasm_price_per_million_cycles_umhr = v;
            }
            for name in &update.remove_function_prices {
                settings.function_prices.remove(name);
            }
            settings.function_prices.extend(update.function_prices);
            if let Some(a) = update.availability {
                settings.availability = a;
            }
            if update.reset {
                let mut batch = self.shared.store.batch();
                batch.delete(STATE, &SETTINGS_KEY.to_string());
                self.shared.store.commit(batch)?;
            }
            if !update.reset || settings != OfferSettings::from_config(&self.shared.config) {
                state::store_postcard(&self.shared.store, SETTINGS_KEY, &settings)?;
            }
            self.shared.relay_price.send_if_modified(|price| {
                std::mem::replace(price, settings.relay_price_per_byte_umhr)
                    != settings.relay_price_per_byte_umhr
            });
            state.settings = settings;
        }
        self.gossip_round().await;
        Ok(self.offer())
    }

    /// The relay price of the offer (μMHR per byte) as it changes: what the node's announces
    /// carry and its ledger charges (see `crate::relay_price`).
    pub fn relay_price(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.relay_price.subscribe()
    }

    // ---- discovery -------------------------------------------------------------------

    /// Finds providers: what the table holds first, then pulls ring by ring (ring 2, the
    /// trust graph, has no peers here yet and is skipped) until `want` are found, the rings
    /// are exhausted, or the time is up.
    pub async fn discover(&self, request: DiscoverRequest) -> Result<Discovery, MarketError> {
        if request.max_ring > mehr_market::params::MAX_RING {
            return Err(MarketError::InvalidArgument {
                field: "max_ring",
                reason: format!("is {}, rings are 0 to 3", request.max_ring),
            });
        }
        let started = Instant::now();
        let deadline = started + request.timeout;
        let pull_timeout = Duration::from_millis(self.shared.config.market.pull_timeout_ms);
        let mut query = Query {
            filter: request.filter,
            want: request.want.max(1),
            searched_ring: 0,
            max_ring: request.max_ring,
        };
        let (mut pulls_sent, mut answers) = (0u32, 0u32);
        loop {
            let resolution = self.state().query(&query, now_ms());
            let outcome = match &resolution.next {
                NextStep::Satisfied => Some(DiscoveryOutcome::Satisfied),
                NextStep::Exhausted => Some(DiscoveryOutcome::Exhausted),
                NextStep::Widen(_) if Instant::now() >= deadline => {
                    Some(DiscoveryOutcome::TimedOut)
                }
                NextStep::Widen(_) => None,
            };
            if let Some(outcome) = outcome {
                let state = self.state();
                let now = now_ms();
                return Ok(Discovery {
                    offers: resolution
                        .offers
                        .into_iter()
                        .map(|offer| FoundOffer {
                            capabilities: state
                                .table
                                .advert(&offer.node_id, now)
                                .map(|a| a.capabilities().clone()),
                            offer,
                        })
                        .collect(),
                    outcome,
                    rings_searched: query.searched_ring,
                    pulls_sent,
                    answers,
                    elapsed: started.elapsed(),
                });
            }
            let NextStep::Widen(widen) = resolution.next else {
                continue;
            };
            if widen.ring == 2 {
                query.searched_ring = 2;
                continue;
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (nonce, asked, out) =
                self.state()
                    .start_pull(&widen, request.filter, PULL_LIMIT, tx, now_ms());
            pulls_sent += asked.len() as u32;
            self.send_all(out);
            let mut waiting: BTreeSet<NodeId> = asked.into_iter().collect();
            let flood = widen.ring >= mehr_market::params::MAX_RING;
            let ring_deadline = deadline.min(Instant::now() + pull_timeout);
            let probe = Query {
                searched_ring: widen.ring,
                ..query
            };
            while !waiting.is_empty() {
                let from = tokio::select! {
                    from = rx.recv() => from,
                    _ = tokio::time::sleep_until(ring_deadline.into()) => None,
                };
                let Some(from) = from else {
                    break;
                };
                answers += 1;
                if !flood {
                    waiting.remove(&from);
                }
                if self.state().query(&probe, now_ms()).next == NextStep::Satisfied {
                    break;
                }
            }
            self.state().end_pull(nonce);
            query.searched_ring = widen.ring;
        }
    }

    // ---- agreements ------------------------------------------------------------------

    fn view(&self, state: &State, hash: &[u8; 32]) -> Option<AgreementView> {
        let entry = state.agreements.get(hash)?;
        let a = &entry.agreement;
        let request = a.request().body();
        let function_name = match request.capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                let now = now_ms();
                let own = state.own_advert().capabilities().function(&id).cloned();
                own.or_else(|| {
                    state
                        .table
                        .advert(&a.counterparty(), now)
                        .and_then(|ad| ad.capabilities().function(&id).cloned())
                })
                .map(|f| f.name)
            }
            _ => None,
        };
        Some(AgreementView {
            request_id: *hash,
            agreement_id: a.id(),
            role: a.role(),
            state: a.state(),
            counterparty: a.counterparty(),
            capability: request.capability,
            function_name,
            cost_cap: request.cost_cap,
            cost: a.cost(),
            duration_seconds: request.duration_seconds,
            channel: request.channel,
            proof: a.offer().map_or(request.proof, |o| o.body().proof),
            privacy: request.privacy,
            proposed_at_unix_ms: a.proposed_at_ms(),
            offered_at_unix_ms: a.offered_at_ms(),
            activated_at_unix_ms: a.activated_at_ms(),
            ends_at_unix_ms: a.ends_at_ms(),
            updated_at_unix_ms: entry.updated_at,
            charges: entry.charges,
            upstream: a.offer().and_then(|o| o.body().upstream),
            linked: entry.linked,
            note: entry.note.clone(),
            heartbeat_misses: state.misses(hash),
        })
    }

    /// Every agreement matching `filter`, ordered by request id.
    pub fn agreements(&self, filter: AgreementFilter) -> Vec<AgreementView> {
        let state = self.state();
        state
            .agreements
            .iter()
            .filter(|(_, e)| filter.role.is_none_or(|r| e.agreement.role() == r))
            .filter(|(_, e)| !filter.live_only || !e.agreement.state().is_final())
            .filter_map(|(hash, _)| self.view(&state, hash))
            .collect()
    }

    /// One agreement, by agreement id or request id.
    pub fn agreement(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let state = self.state();
        let hash = state.resolve(id).ok_or(MarketError::UnknownAgreement)?;
        self.view(&state, &hash)
            .ok_or(MarketError::UnknownAgreement)
    }

    /// The price `provider` advertises for `capability`.
    fn advertised_cost(
        &self,
        provider: &NodeId,
        capability: &Capability,
    ) -> Result<CostStructure, MarketError> {
        let state = self.state();
        let no_advert = || MarketError::NoAdvert { node: *provider };
        let advert = state
            .table
            .advert(provider, now_ms())
            .ok_or_else(no_advert)?;
        let caps = advert.capabilities();
        match capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                caps.function(id).map(|f| f.cost).ok_or_else(no_advert)
            }
            Capability::Compute(ComputeTarget::Wasm(_)) => Err(no_advert()),
            Capability::Storage { bytes } => caps
                .storage
                .map(|s| CostStructure::PerDuration {
                    per_epoch: s.cost_per_byte_day.saturating_mul(*bytes),
                })
                .ok_or_else(no_advert),
            Capability::Relay | Capability::Proxy => {
                let gateway = *capability == Capability::Proxy;
                caps.interfaces
                    .iter()
                    .filter(|i| !gateway || i.internet_gateway)
                    .map(|i| i.cost_per_byte)
                    .min()
                    .map(|per_byte| CostStructure::PerByte { per_byte })
                    .ok_or_else(no_advert)
            }
        }
    }

    /// Proposes an agreement; with `wait`, returns once the provider answered (and, with
    /// `accept`, once this node countersigned) or the time is up.
    pub async fn propose(&self, proposal: Proposal) -> Result<AgreementView, MarketError> {
        if proposal.duration_seconds == 0 {
            return Err(MarketError::InvalidArgument {
                field: "duration_seconds",
                reason: "must be above zero".into(),
            });
        }
        let provider = self
            .peer_key(proposal.provider)
            .await
            .ok_or(MarketError::UnknownPeer {
                node: proposal.provider,
            })?;
        let cost_cap = match proposal.cost_cap {
            Some(cap) => cap,
            None => self.advertised_cost(&proposal.provider, &proposal.capability)?,
        };
        let hash = self.propose_to(
            provider,
            proposal.capability,
            cost_cap,
            proposal.duration_seconds,
            proposal.proof,
            proposal.accept,
        )?;
        if !proposal.wait.is_zero() {
            let settled = |s: AgreementState| match s {
                AgreementState::Proposed => false,
                AgreementState::Offered => !proposal.accept,
                _ => true,
            };
            self.wait_for(hash, proposal.wait, settled).await;
        }
        self.agreement(&hash)
    }

    fn propose_to(
        &self,
        provider: PeerKey,
        capability: Capability,
        cost_cap: CostStructure,
        duration_seconds: u32,
        proof: ProofMethod,
        accept: bool,
    ) -> Result<[u8; 32], MarketError> {
        let (hash, out) = self.state().propose(
            provider,
            capability,
            cost_cap,
            duration_seconds,
            proof,
            accept,
            None,
            now_ms(),
        )?;
        self.send(out);
        Ok(hash)
    }

    /// Waits until agreement `hash` reaches a state `done` accepts, at most `timeout`.
    async fn wait_for(
        &self,
        hash: [u8; 32],
        timeout: Duration,
        done: impl Fn(AgreementState) -> bool,
    ) -> AgreementState {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (state, changed) = {
                let mut st = self.state();
                let state = st
                    .agreements
                    .get(&hash)
                    .map_or(AgreementState::Expired, |e| e.agreement.state());
                (state, st.watch(hash))
            };
            if done(state) {
                return state;
            }
            // The tick expires a silent negotiation, so this never waits past its deadline
            // by more than `timeout`.
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return state;
            }
        }
    }

    /// Countersigns an offered agreement this node proposed.
    pub fn accept(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let hash = self
            .state()
            .resolve(id)
            .ok_or(MarketError::UnknownAgreement)?;
        let out = self.state().accept(hash, now_ms())?;
        self.send_all(out);
        self.agreement(&hash)
    }

    /// Cancels an offered or active agreement (either side).
    pub fn cancel(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let hash = self
            .state()
            .resolve(id)
            .ok_or(MarketError::UnknownAgreement)?;
        let out = self
            .state()
            .cancel(hash, CancelReason::Requested, now_ms())?;
        self.send_all(out);
        self.agreement(&hash)
    }

    /// Runs one job under the active consumer agreement `hash` and checks the provider's
    /// signed result against the output. With `partials`, the provider is asked to stream
    /// and the parts of the output go there as they come, ahead of the result.
    pub(crate) async fn run_job(
        &self,
        hash: [u8; 32],
        function: &str,
        input: Vec<u8>,
        deadline: Duration,
        partials: Option<PartialSink>,
    ) -> Result<tiers::JobOutput, MarketError> {
        let deadline_ms = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
        let pending = self
            .state()
            .start_job(hash, function, input, deadline_ms, partials)?;
        let provider = pending.provider.node_id();
        let job_hash = pending.job_hash;
        // However this ends (a timeout, or the caller dropping the call), stop waiting.
        let _forget = ForgetJob {
            market: self,
            job_hash,
        };
        self.send(pending.outbound);
        // The answer travels back over the mesh: allow for it beside the run itself.
        let wait = deadline + SEND_TIMEOUT;
        let answer = match tokio::time::timeout(wait, pending.result).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(MarketError::Stopped),
            Err(_) => {
                return Err(MarketError::JobFailed {
                    provider,
                    reason: format!("no result within {wait:?}"),
                });
            }
        };
        match answer {
            JobResult::Failed { reason, .. } => Err(MarketError::JobFailed { provider, reason }),
            JobResult::Done { result, output, .. } => {
                let body = result.body();
                let valid = result.verify(&pending.provider).is_ok()
                    && body.agreement_id == pending.agreement_id
                    && body.job_hash == job_hash
                    && body.output_hash == mehr_market::verification::output_hash(&output);
                if !valid {
                    self.state().counters.records_forged += 1;
                    return Err(MarketError::JobFailed {
                        provider,
                        reason: "its signed result does not match its output".into(),
                    });
                }
                Ok(tiers::JobOutput {
                    output_hash: body.output_hash,
                    output,
                    result,
                })
            }
        }
    }

    /// Buys the function `function` upstream and offers it to the consumer of `downstream` at
    /// the upstream price plus the markup (a capability chain); rejects if nothing is found.
    async fn resell(
        &self,
        downstream: [u8; 32],
        function: FunctionId,
        cap: CostStructure,
        duration_seconds: u32,
    ) {
        let percent = self.shared.config.market.resale_markup_percent;
        let request = DiscoverRequest {
            filter: function_filter(function, Some(cap.unit_price())),
            want: 4,
            max_ring: mehr_market::params::MAX_RING,
            timeout: Duration::from_secs(8),
        };
        let candidates: Vec<(NodeId, CostStructure)> = match self.discover(request).await {
            Ok(found) => {
                let state = self.state();
                let now = now_ms();
                found
                    .offers
                    .iter()
                    .filter(|f| {
                        f.offer.node_id != self.shared.me
                            && !state.is_excluded(&f.offer.node_id, now)
                    })
                    .filter_map(|f| {
                        let cost = f.offer.cost?;
                        let resale = cost
                            .with_markup(state::resale_markup(cost.unit_price(), percent))
                            .ok()?;
                        resale.within(&cap).ok().map(|_| (f.offer.node_id, cost))
                    })
                    .collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, "resale discovery failed");
                Vec::new()
            }
        };
        for (provider, cost) in candidates {
            let Some(key) = self.peer_key(provider).await else {
                continue;
            };
            let capability = Capability::Compute(ComputeTarget::Function(function));
            let Ok(upstream) = self.propose_to(
                key,
                capability,
                cost,
                duration_seconds,
                ProofMethod::ResultHash,
                true,
            ) else {
                continue;
            };
            let reached = self
                .wait_for(upstream, Duration::from_secs(15), |s| {
                    s != AgreementState::Proposed && s != AgreementState::Offered
                })
                .await;
            if reached != AgreementState::Active {
                continue;
            }
            let offered = self.state().offer_resale(downstream, upstream, now_ms());
            match offered {
                Ok(out) => {
                    tracing::info!(downstream = %hex::encode(downstream), upstream = %hex::encode(upstream), %provider, "reselling an upstream agreement");
                    self.send_all(out);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot offer the resale");
                    if let Ok(out) =
                        self.state()
                            .cancel(upstream, CancelReason::Requested, now_ms())
                    {
                        self.send_all(out);
                    }
                }
            }
        }
        let out = self
            .state()
            .reject_pending(downstream, RejectReason::Unsupported, now_ms());
        self.send_all(out);
    }

    // ---- reputation and stats ----------------------------------------------------------

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
    compute: &Compute,
    objects: &ObjectStore,
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
    let mut functions = Vec::new();
    let mut modules = BTreeSet::new();
    let mut token = String::new();
    while let Ok(page) = compute.list_functions(&token, crate::compute::MAX_PAGE_SIZE) {
        for f in page.functions {
            if let Some(module) = f.module_id {
                modules.insert(*module.as_bytes());
            }
            functions.push(FunctionFact {
                function_id: f.function_id,
                kind: f.kind,
                description: f.description,
                price: f.price,
                max_concurrency: f.max_concurrency,
                max_input_bytes: f.max_input_bytes,
            });
        }
        match page.next_page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    let usage = objects.usage();
    let quota_left = usage
        .available_bytes
        .saturating_sub(usage.used_bytes)
        .saturating_sub(usage.reserved_bytes);
    let disk = offer::disk_free_bytes(&config.data_dir).unwrap_or(u64::MAX);
    let facts = LocalFacts {
        interfaces,
        functions,
        wasm_max_fuel: config.compute.wasm_fuel,
        memory_mb: offer::memory_mb(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        storage_free_bytes: quota_left.min(disk),
        max_object_size: objects.limits().max_object_size,
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
