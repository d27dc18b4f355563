//! The ledger part: economics in the daemon — the trust graph, payment channels (with Mehr
//! neighbours for the relay lottery, and with any Mehr node whose announce was heard for
//! agreements), the relay lottery, and the CRDT settlement ledger.
//!
//! The rules are the `mehr-ledger` crate's; this part persists, transports and exposes them.
//! One actor, on a thread of its own (its VRF proofs and synced writes block), owns a
//! [`core::LedgerCore`]: it feeds it control messages (types
//! 0x10–0x1F), reports of forwarded packets from the transport, operator requests and timer
//! ticks, in batches; after each batch the core commits every change in one synced RocksDB
//! write, and only then are the resulting messages sent. So the latest co-signed state is
//! always durable before this node acknowledges it, and many updates share one disk sync.

mod admission;
mod core;
mod epochs;
mod gossip;
mod inbound;
mod payments;
pub mod records;
mod relay;
pub mod requests;
#[cfg(test)]
mod tests;
mod timers;
mod wire;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mehr_ledger::{
    ChannelId, NodeId,
    ledger::{SettlementKind, SettlementRecord},
    lottery::{RelayTicket, VrfKeyCertificate},
};
use mehr_transport::{
    identity::{Identity, PrivateIdentity},
    path_cost::decode_cost,
};
use rand::{SeedableRng, rngs::StdRng};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

pub(crate) use self::core::{
    BalanceView, ChannelView, CoreConfig, LedgerCore, LedgerSummary, NeighbourInfo, Notice, Now,
    TicketVerdict,
};
use self::requests::{RequestKey, RequestKind};
pub use self::{
    core::LedgerError,
    payments::{ChannelPayer, ChannelPayments},
};
use crate::{
    config::LedgerConfig,
    events::{EventBus, EventKind},
    store::Store,
    transport::{ControlMessage, TransportHandle},
};

/// Inputs handled per batch before the batch is committed.
const BATCH: usize = 512;
/// Timer resolution.
const TICK: Duration = Duration::from_millis(200);
/// How often the neighbour list is refreshed from the transport.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);
/// Soonest refresh when the core missed a neighbour.
const STALE_NEIGHBOURS_REFRESH: Duration = Duration::from_millis(100);
/// How long the transport keeps trying to send a ledger message (finding a path, carrying
/// it over a link) before it gives up.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// How a channel should be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleMode {
    /// Record the latest state in the ledger; the channel stays open.
    Checkpoint,
    /// Record the latest state and close the channel (the peer co-signs).
    Close,
    /// Close without the peer: file the latest co-signed state and open a dispute window in
    /// which a newer state wins (allowed after 3 failed cooperative settlements or 4 idle
    /// epochs).
    Unilateral,
}

/// What a settlement produced.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per settlement; a box buys nothing"
)]
pub enum SettleOutcome {
    /// The co-signed record, now in the ledger.
    Recorded(SettlementRecord),
    /// A dispute window runs until this round.
    Disputing {
        /// The first round at which the dispute resolves.
        closes_at_round: u64,
    },
}

/// Everything the ledger part needs to start.
pub struct LedgerStart {
    /// The node's store.
    pub store: Store,
    /// The node's identity.
    pub identity: PrivateIdentity,
    /// `[ledger]`.
    pub config: LedgerConfig,
    /// The relay price advertised by the transport, μ per byte.
    pub price_per_byte: f64,
    /// Whether this node charges for relaying (participation L1 and up).
    pub charge_relays: bool,
    /// The transport.
    pub transport: TransportHandle,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// The relays the market pays under agreements (see [`crate::seams::payments::RelayCover`]).
    pub relay_cover: crate::seams::payments::RelayCover,
    /// Drops by reason, shared with the node's other parts (GetStats).
    pub drops: crate::seams::drops::PartDrops,
    /// Cancelled at shutdown.
    pub stop: CancellationToken,
}

#[allow(
    clippy::large_enum_variant,
    reason = "moved once through the command channel; boxing would add an allocation per call"
)]
enum Command {
    Balance(oneshot::Sender<BalanceView>),
    /// The relay fee this node charges, μ per byte.
    SetRelayPrice(f64, oneshot::Sender<()>),
    Channels(oneshot::Sender<Vec<ChannelView>>),
    Open {
        peer: NodeId,
        /// The peer's key from its announce, filled in by the actor when the peer is not a
        /// neighbour.
        announced: Option<Identity>,
        deposit: u64,
        peer_deposit: u64,
        request: Option<RequestKey>,
        reply: oneshot::Sender<Result<ChannelView, LedgerError>>,
    },
    Pay {
        peer: NodeId,
        amount: u64,
        request: Option<RequestKey>,
        reply: oneshot::Sender<Result<ChannelView, LedgerError>>,
    },
    /// What a peer has paid this node over its channels.
    ReceivedFrom(NodeId, oneshot::Sender<u64>),
    Settle {
        channel: ChannelId,
        mode: SettleMode,
        reply: oneshot::Sender<Result<SettleOutcome, LedgerError>>,
    },
    SetTrust {
        peer: NodeId,
        trusted: bool,
        credit_limit: u64,
        reply: oneshot::Sender<Result<bool, LedgerError>>,
    },
    Trusted(oneshot::Sender<Vec<(NodeId, u64)>>),
    Summary(oneshot::Sender<LedgerSummary>),
    VerifyTicket {
        ticket: RelayTicket,
        certificate: VrfKeyCertificate,
        relay_key: ed25519_dalek::VerifyingKey,
        reply: oneshot::Sender<TicketVerdict>,
    },
}

/// Talks to the ledger part. Cheap to clone.
#[derive(Clone)]
pub struct LedgerHandle {
    commands: mpsc::Sender<Command>,
    node: NodeId,
    relay_reports_dropped: Arc<AtomicU64>,
}

/// The relay key a ticket is checked against.
#[derive(Debug, Clone)]
pub enum RelayKey {
    /// The relay's 64-byte public identity (X25519 ‖ Ed25519).
    Identity(Box<Identity>),
    /// The relay's 32-byte Ed25519 key.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl LedgerHandle {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Forwarded-packet reports the transport dropped because the ledger was behind.
    pub fn relay_reports_dropped(&self) -> u64 {
        self.relay_reports_dropped.load(Ordering::Relaxed)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        rx.await.map_err(|_| LedgerError::Stopped)
    }

    async fn ask_within<T>(
        &self,
        what: &'static str,
        timeout: Duration,
        command: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Command,
    ) -> Result<T, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LedgerError::Stopped),
            Err(_) => Err(LedgerError::Timeout(what)),
        }
    }

    /// Sets the relay fee this node charges, μ per byte (the fee its announces carry: see
    /// `TransportHandle::set_relay_price`).
    pub(crate) async fn set_relay_price(&self, price_per_byte: f64) -> Result<(), LedgerError> {
        self.ask(|reply| Command::SetRelayPrice(price_per_byte, reply))
            .await
    }

    /// This node's balance.
    pub(crate) async fn balance(&self) -> Result<BalanceView, LedgerError> {
        self.ask(Command::Balance).await
    }

    /// Every channel this node is a party of.
    pub(crate) async fn channels(&self) -> Result<Vec<ChannelView>, LedgerError> {
        self.ask(Command::Channels).await
    }

    /// Opens a channel with `peer` and waits (at most `timeout`) until both signed it. The
    /// peer may be any Mehr node whose announce was heard, however many hops away; an
    /// unknown one is [`LedgerError::UnknownPeer`]. With a `request_id` (see
    /// [`requests`]) a retry converges on the channel the first call proposed.
    pub(crate) async fn open_channel(
        &self,
        peer: NodeId,
        deposit: u64,
        peer_deposit: u64,
        request_id: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ChannelView, LedgerError> {
        let request = request_id.map(|id| RequestKey::new(RequestKind::Open, id));
        self.ask_within("the channel open", timeout, |reply| Command::Open {
            peer,
            announced: None,
            deposit,
            peer_deposit,
            request,
            reply,
        })
        .await
    }

    /// Pays `amount` μ to `peer` over the open channel and waits (at most `timeout`) until
    /// the payment is co-signed. With a `request_id` (see [`requests`]) a repeated id moves
    /// nothing and waits for the first payment instead.
    pub(crate) async fn pay(
        &self,
        peer: NodeId,
        amount: u64,
        request_id: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ChannelView, LedgerError> {
        let request = request_id.map(|id| RequestKey::new(RequestKind::Pay, id));
        self.ask_within("the payment", timeout, |reply| Command::Pay {
            peer,
            amount,
            request,
            reply,
        })
        .await
    }

    /// What `peer` has paid this node over the channels with it that this node holds, μ
    /// (co-signed cumulative totals).
    pub(crate) async fn received_from(&self, peer: NodeId) -> Result<u64, LedgerError> {
        self.ask(|reply| Command::ReceivedFrom(peer, reply)).await
    }

    /// Settles a channel and waits (at most `timeout`) for the record.
    pub(crate) async fn settle(
        &self,
        channel: ChannelId,
        mode: SettleMode,
        timeout: Duration,
    ) -> Result<SettleOutcome, LedgerError> {
        self.ask_within("the settlement", timeout, |reply| Command::Settle {
            channel,
            mode,
            reply,
        })
        .await
    }

    /// Trusts or stops trusting `peer`; returns whether anything changed.
    pub(crate) async fn set_trust(
        &self,
        peer: NodeId,
        trusted: bool,
        credit_limit: u64,
    ) -> Result<bool, LedgerError> {
        self.ask(|reply| Command::SetTrust {
            peer,
            trusted,
            credit_limit,
            reply,
        })
        .await?
    }

    /// The trusted peers with their credit limits.
    pub(crate) async fn trusted(&self) -> Result<Vec<(NodeId, u64)>, LedgerError> {
        self.ask(Command::Trusted).await
    }

    /// The CRDT ledger's summary.
    pub(crate) async fn summary(&self) -> Result<LedgerSummary, LedgerError> {
        self.ask(Command::Summary).await
    }

    /// Checks a relay ticket under the relay's VRF key certificate.
    pub(crate) async fn verify_ticket(
        &self,
        ticket: RelayTicket,
        certificate: VrfKeyCertificate,
        relay: RelayKey,
    ) -> Result<TicketVerdict, LedgerError> {
        let relay_key = match relay {
            RelayKey::Identity(identity) => *identity.signing_key(),
            RelayKey::Ed25519(key) => key,
        };
        self.ask(|reply| Command::VerifyTicket {
            ticket,
            certificate,
            relay_key,
            reply,
        })
        .await
    }
}

type PaymentWaiter = (
    ChannelId,
    u64,
    oneshot::Sender<Result<ChannelView, LedgerError>>,
);

/// Requests waiting for something to happen.
#[derive(Default)]
struct Waiters {
    opens: HashMap<ChannelId, Vec<oneshot::Sender<Result<ChannelView, LedgerError>>>>,
    /// Payments waiting for their acknowledgement: the channel, the paid total that
    /// settles them, and the caller.
    payments: Vec<PaymentWaiter>,
    settlements: HashMap<ChannelId, Vec<oneshot::Sender<Result<SettleOutcome, LedgerError>>>>,
}

struct Actor {
    core: LedgerCore,
    transport: TransportHandle,
    events: Arc<EventBus>,
    waiters: Waiters,
}

/// Loads the ledger state and starts the ledger part.
pub async fn start(start: LedgerStart) -> Result<(LedgerHandle, JoinHandle<()>), LedgerError> {
    let LedgerStart {
        store,
        identity,
        config,
        price_per_byte,
        charge_relays,
        transport,
        events,
        relay_cover,
        drops,
        stop,
    } = start;
    let core_config = CoreConfig {
        genesis: config
            .genesis
            .iter()
            .map(|a| (a.node, a.amount_umhr))
            .collect::<BTreeMap<_, _>>(),
        price_per_byte,
        charge_relays,
        channel_deposit: config.channel_deposit_umhr,
        max_requested_deposit: config.max_requested_deposit_umhr,
        round_ms: config.round_millis,
        retry_ms: config.retry_millis,
        open_timeout_ms: config.open_timeout_millis,
        lottery_period_ms: config.lottery_period_secs.saturating_mul(1000),
        gossip_interval_ms: config.gossip_interval_secs.saturating_mul(1000),
        checkpoint_interval_ms: config.checkpoint_interval_secs.saturating_mul(1000),
        epoch_ms: config.epoch_secs.saturating_mul(1000),
    };
    let mut core = tokio::task::block_in_place(|| {
        LedgerCore::load(store, &identity, core_config, StdRng::from_entropy())
    })?;
    core.drops = drops;
    let node = core.node_id();

    let (merged_tx, merged_rx) = mpsc::channel::<ControlMessage>(4096);
    for kind in wire::kinds::ALL {
        let mut rx = transport
            .control_messages(kind)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        let tx = merged_tx.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(merged_tx);
    let (reports, relay_reports_dropped) = if charge_relays {
        let reports = transport
            .forward_reports(config.relay_report_queue)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        (Some(reports.receiver), reports.dropped)
    } else {
        (None, Arc::new(AtomicU64::new(0)))
    };
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let actor = Actor {
        core,
        transport,
        events,
        waiters: Waiters::default(),
    };
    // The actor draws one VRF proof per relayed packet and ends each batch with a synced
    // RocksDB write: both block for a while, so it runs on a thread of its own (with a
    // single-threaded runtime for its timers and channels) instead of a worker of the node's
    // runtime, where it would stall the transport and API tasks sharing that worker. The
    // batch-then-commit order is unchanged: messages still leave only after the sync.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot build the ledger's runtime");
            LedgerError::Stopped
        })?;
    let (finished_tx, finished_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("mehr-ledger".into())
        .spawn(move || {
            runtime.block_on(actor.run(commands_rx, merged_rx, reports, relay_cover, stop));
            // Dropped without a send on a panic: the waiting task finishes either way.
            let _ = finished_tx.send(());
        })
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the ledger's thread");
            LedgerError::Stopped
        })?;
    // A handle on the node's runtime that finishes when the thread does, for health checks
    // and the shutdown's wait.
    let task = tokio::spawn(async move {
        let _ = finished_rx.await;
    });
    Ok((
        LedgerHandle {
            commands: commands_tx,
            node,
            relay_reports_dropped,
        },
        task,
    ))
}

/// Wall-clock now.
fn now() -> Now {
    Now {
        unix_ms: crate::events::unix_ms_now(),
    }
}

/// One input to the core.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived, moved once from the select loop into the core"
)]
enum Input {
    Command(Command),
    Control(ControlMessage),
    Forwarded(crate::transport::ForwardedPacket),
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut control: mpsc::Receiver<ControlMessage>,
        mut reports: Option<mpsc::Receiver<crate::transport::ForwardedPacket>>,
        mut relay_cover: crate::seams::payments::RelayCover,
        stop: CancellationToken,
    ) {
        // Without a market the sender is gone at once: stop watching rather than spin.
        let mut cover_open = true;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_refresh = tokio::time::Instant::now();
        let mut neighbours = tokio::time::interval(NEIGHBOUR_REFRESH);
        neighbours.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let mut first = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(command) = commands.recv() => Input::Command(command),
                Some(message) = control.recv() => Input::Control(message),
                Some(packet) = recv_report(&mut reports) => Input::Forwarded(packet),
                _ = tick.tick() => {
                    self.core.tick(now());
                    self.flush();
                    continue;
                }
                _ = neighbours.tick() => {
                    self.refresh_neighbours().await;
                    self.flush();
                    continue;
                }
                changed = relay_cover.changed(), if cover_open => {
                    match changed {
                        Ok(()) => {
                            let cover = relay_cover.borrow_and_update().clone();
                            self.core.set_relay_cover(cover);
                        }
                        Err(_) => cover_open = false,
                    }
                    continue;
                }
            };
            self.resolve_peer(&mut first).await;
            self.handle(first);
            // Take what else is ready, then commit once for all of it.
            for _ in 1..BATCH {
                let mut next = if let Ok(c) = commands.try_recv() {
                    Input::Command(c)
                } else if let Ok(m) = control.try_recv() {
                    Input::Control(m)
                } else if let Some(Ok(p)) = reports.as_mut().map(|r| r.try_recv()) {
                    Input::Forwarded(p)
                } else {
                    break;
                };
                self.resolve_peer(&mut next).await;
                self.handle(next);
            }
            self.flush();
            if self.core.take_neighbours_stale()
                && last_refresh.elapsed() >= STALE_NEIGHBOURS_REFRESH
            {
                last_refresh = tokio::time::Instant::now();
                self.refresh_neighbours().await;
                self.flush();
            }
        }
        self.fail_waiters();
    }

    async fn refresh_neighbours(&mut self) {
        let Ok(list) = self.transport.neighbours().await else {
            return;
        };
        let neighbours = list
            .into_iter()
            .map(|n| {
                (
                    NodeId(n.node_id.0),
                    NeighbourInfo {
                        identity: n.identity,
                        // One cost code up: the announce rounds the price to the nearest code.
                        max_price_per_byte: decode_cost(n.cost.cost.saturating_add(1)),
                    },
                )
            })
            .collect();
        self.core.set_neighbours(neighbours, now());
    }

    /// Fills in the key of a channel open's peer that is not a neighbour from its announce,
    /// so that a channel can be opened with any Mehr node the transport heard of (an
    /// agreement's provider several hops away). A neighbour's key is the core's already; an
    /// unknown node stays without one and the core refuses it.
    async fn resolve_peer(&self, input: &mut Input) {
        let Input::Command(Command::Open {
            peer, announced, ..
        }) = input
        else {
            return;
        };
        if announced.is_some() || self.core.is_neighbour(peer) {
            return;
        }
        // The transport fails only once it has stopped (at shutdown), and the keys it holds
        // came from validated announces: either way the peer's key is not to be had.
        let public = self
            .transport
            .identity_of(mehr_transport::hashes::IdentityHash(peer.0))
            .await;
        *announced = public
            .ok()
            .flatten()
            .and_then(|key| Identity::from_public_key(&key).ok());
    }

    fn handle(&mut self, input: Input) {
        let now = now();
        match input {
            Input::Control(message) => self.core.handle_control(message.kind, &message.body, now),
            Input::Forwarded(packet) => self.core.handle_forwarded(packet, now),
            Input::Command(command) => self.command(command, now),
        }
    }

    fn command(&mut self, command: Command, now: Now) {
        let core = &mut self.core;
        match command {
            Command::Balance(reply) => {
                let _ = reply.send(core.balance());
            }
            Command::SetRelayPrice(price, reply) => {
                core.set_relay_price(price);
                let _ = reply.send(());
            }
            Command::Channels(reply) => {
                let _ = reply.send(core.channel_views());
            }
            Command::Open {
                peer,
                announced,
                deposit,
                peer_deposit,
                request,
                reply,
            } => match core.open_channel(peer, announced, deposit, peer_deposit, request, now) {
                // A repeated request whose channel is open already: its view is the answer.
                Ok(id) if core.channel_view(&id).is_some() => {
                    let _ = reply.send(
                        core.channel_view(&id)
                            .ok_or(LedgerError::UnknownChannel(id)),
                    );
                }
                Ok(id) => self.waiters.opens.entry(id).or_default().push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Pay {
                peer,
                amount,
                request,
                reply,
            } => match core.pay(peer, amount, request, now) {
                // A repeated request already co-signed (and so already durable).
                Ok((id, target))
                    if core
                        .channel_view(&id)
                        .is_some_and(|view| view.paid >= target) =>
                {
                    let _ = reply.send(
                        core.channel_view(&id)
                            .ok_or(LedgerError::UnknownChannel(id)),
                    );
                }
                Ok((id, target)) => self.waiters.payments.push((id, target, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ReceivedFrom(peer, reply) => {
                let _ = reply.send(core.received_from(peer));
            }
            Command::Settle {
                channel,
                mode,
                reply,
            } => {
                let kind = match mode {
                    SettleMode::Checkpoint => SettlementKind::Checkpoint,
                    SettleMode::Close => SettlementKind::CooperativeClose,
                    SettleMode::Unilateral => SettlementKind::UnilateralClose,
                };
                match core.settle(channel, kind, now) {
                    Ok(Some(closes_at_round)) => {
                        let _ = reply.send(Ok(SettleOutcome::Disputing { closes_at_round }));
                    }
                    Ok(None) => self
                        .waiters
                        .settlements
                        .entry(channel)
                        .or_default()
                        .push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::SetTrust {
                peer,
                trusted,
                credit_limit,
                reply,
            } => {
                let changed = core.set_trust(peer, trusted, credit_limit);
                // Answered after the flush: the change is durable once the reply is seen.
                let result = match core.flush() {
                    Ok(flushed) => {
                        self.dispatch(flushed);
                        Ok(changed)
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Trusted(reply) => {
                let _ = reply.send(core.trusted());
            }
            Command::Summary(reply) => {
                let _ = reply.send(core.summary());
            }
            Command::VerifyTicket {
                ticket,
                certificate,
                relay_key,
                reply,
            } => {
                let _ = reply.send(core.verify_ticket(&ticket, &certificate, &relay_key));
            }
        }
    }

    fn flush(&mut self) {
        match self.core.flush() {
            Ok(flushed) => self.dispatch(flushed),
            Err(e) => {
                tracing::error!(error = %e, "the ledger cannot write its state; it stops here");
                self.fail_waiters();
            }
        }
    }

    /// Sends the messages of a committed batch and acts on its notices.
    fn dispatch(&mut self, flushed: core::Flushed) {
        // Ledger kinds are registered unproved, so a send could only wait out its timeout;
        // nothing reads the outcome.
        for outgoing in flushed.outgoing {
            let (kind, body) = outgoing.message.encode();
            let to = mehr_transport::hashes::IdentityHash(outgoing.to.0);
            if !self.transport.post_control(to, kind, &body, SEND_TIMEOUT) {
                tracing::debug!(to = %hex::encode(to.0), kind, "ledger message dropped: the transport queue is full");
            }
        }
        for notice in flushed.notices {
            self.on_notice(notice);
        }
        // Requests whose callers gave up (timed out).
        self.waiters.payments.retain(|(_, _, w)| !w.is_closed());
        self.waiters.opens.retain(|_, list| {
            list.retain(|w| !w.is_closed());
            !list.is_empty()
        });
        self.waiters.settlements.retain(|_, list| {
            list.retain(|w| !w.is_closed());
            !list.is_empty()
        });
    }

    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Opened { channel, peer } => {
                self.events.publish(EventKind::ChannelOpened {
                    channel: channel.0,
                    peer: peer.0,
                });
                if let Some(waiters) = self.waiters.opens.remove(&channel) {
                    let view = self.core.channel_view(&channel);
                    for waiter in waiters {
                        let _ =
                            waiter.send(view.clone().ok_or(LedgerError::UnknownChannel(channel)));
                    }
                }
            }
            Notice::OpenFailed {
                channel,
                peer,
                reason,
                instead,
            } => {
                if let Some(waiters) = self.waiters.opens.remove(&channel) {
                    for waiter in waiters {
                        match instead {
                            // The peer's concurrent proposal won: answer with that channel
                            // once it is open (it is being accepted in this same batch).
                            Some(other) => {
                                self.waiters.opens.entry(other).or_default().push(waiter)
                            }
                            None => {
                                let _ = waiter.send(Err(LedgerError::OpenRefused {
                                    peer,
                                    channel,
                                    reason,
                                }));
                            }
                        }
                    }
                }
            }
            Notice::CoSigned { channel, seq } => {
                self.events.publish(EventKind::ChannelUpdated {
                    channel: channel.0,
                    seq,
                });
                let Some(view) = self.core.channel_view(&channel) else {
                    return;
                };
                let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters.payments)
                    .into_iter()
                    .partition(|(id, target, _)| *id == channel && view.paid >= *target);
                self.waiters.payments = waiting;
                for (_, _, waiter) in done {
                    let _ = waiter.send(Ok(view.clone()));
                }
            }
            Notice::Settled { channel, record } => {
                self.events.publish(EventKind::SettlementRecorded {
                    channel: channel.0,
                    seq: record.body.seq,
                    kind: record.kind,
                });
                if let Some(waiters) = self.waiters.settlements.remove(&channel) {
                    for waiter in waiters {
                        let _ = waiter.send(Ok(SettleOutcome::Recorded(record)));
                    }
                }
                if record.kind.closes() {
                    // Payments that can no longer complete.
                    let (gone, waiting): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut self.waiters.payments)
                            .into_iter()
                            .partition(|(id, _, _)| *id == channel);
                    self.waiters.payments = waiting;
                    for (_, _, waiter) in gone {
                        let _ = waiter.send(Err(LedgerError::UnknownChannel(channel)));
                    }
                }
            }
            Notice::DisputeStarted {
                channel,
                closes_at_round,
            } => {
                self.events.publish(EventKind::ChannelDisputed {
                    channel: channel.0,
                    closes_at_round,
                });
            }
            Notice::TicketRedeemed {
                channel,
                relay,
                ticket,
                certificate,
                payout,
            } => {
                // The certified form, so anyone can check it with the relay's identity.
                let mut bytes = ticket.encode().to_vec();
                bytes.extend_from_slice(&certificate.encode());
                self.events.publish(EventKind::TicketRedeemed {
                    channel: channel.0,
                    relay: relay.0,
                    ticket: bytes,
                    payout,
                });
            }
            Notice::TicketWon {
                channel,
                payer,
                payout,
            } => {
                self.events.publish(EventKind::TicketWon {
                    channel: channel.0,
                    payer: payer.0,
                    payout,
                });
            }
        }
    }

    fn fail_waiters(&mut self) {
        let waiters = std::mem::take(&mut self.waiters);
        for (_, list) in waiters.opens {
            for w in list {
                let _ = w.send(Err(LedgerError::Stopped));
            }
        }
        for (_, _, w) in waiters.payments {
            let _ = w.send(Err(LedgerError::Stopped));
        }
        for (_, list) in waiters.settlements {
            for w in list {
                let _ = w.send(Err(LedgerError::Stopped));
            }
        }
    }
}

async fn recv_report(
    reports: &mut Option<mpsc::Receiver<crate::transport::ForwardedPacket>>,
) -> Option<crate::transport::ForwardedPacket> {
    match reports {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
