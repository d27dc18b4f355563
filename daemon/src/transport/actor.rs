//! The transport actor: one task that owns the router and turns its actions into effects.
//!
//! Its loop takes, in order of precedence: shutdown, commands from handles, frames from
//! interfaces (in batches, so a busy link cannot starve commands), control messages posted
//! without waiting (in batches too), and two timers — the router tick and the periodic
//! announce. After every step it drains the router's actions: frames go
//! to interface queues, deliveries to app subscribers or control handlers, events to the
//! messaging state and the node's event bus.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mehr_transport::{
    clock::Timestamp,
    destination::DestinationName,
    hashes::{DestinationHash, IdentityHash, LinkId, PacketHash},
    identity::PrivateIdentity,
    link::Role,
    packet::Context,
    router::{Action, InterfaceConfig, InterfaceId, Router, RouterConfig, RouterEvent, WallClock},
};
use rand::{SeedableRng, rngs::StdRng};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    ControlMessage, ForwardedPacket, InboundMessage, InterfaceInfo, InterfaceSpec, InterfaceType,
    MessageVia, Neighbour, PathView, ProvedDelivery, Route, RoutePolicy, SendReport,
    TransportConfig, TransportError, TransportHandle, TransportStats,
    interfaces::{
        self, InterfaceMessage, InterfaceStats, OutboundQueue, Port, queue::DEFAULT_QUEUE_BYTES,
    },
    mehr_node::{CONTROL_PATH_COST, HeardAnnounce, LinkFigures, MehrNode},
    messaging::{Messaging, PendingSend},
    reports::ReportSink,
    segments::SEGMENT_CONTEXT,
};
use crate::events::{EventBus, EventKind};

/// Router tick period (the router asks for 100–250 ms).
const TICK: Duration = Duration::from_millis(100);
/// Frames handled per wake-up before commands get another look.
const FRAME_BATCH: usize = 256;
/// Least time between two announces made to greet newly heard neighbours.
const GREETING_GAP: Duration = Duration::from_secs(2);
/// Slowest link on which a new neighbour is greeted: below it (LoRa, packet radio) airtime
/// is too dear, and the periodic announce does the job.
const GREETING_MIN_BITRATE: u64 = 10_000;

/// What handles ask of the actor.
pub(super) enum Command {
    Interfaces(oneshot::Sender<Vec<InterfaceInfo>>),
    AddInterface {
        spec: InterfaceSpec,
        reply: oneshot::Sender<Result<u32, TransportError>>,
    },
    RemoveInterface {
        id: InterfaceId,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Paths(oneshot::Sender<Vec<PathView>>),
    Neighbours(oneshot::Sender<Vec<Neighbour>>),
    Stats(oneshot::Sender<TransportStats>),
    Identity {
        node_id: IdentityHash,
        reply: oneshot::Sender<Option<[u8; 64]>>,
    },
    RequestPath {
        destination: DestinationHash,
        reply: oneshot::Sender<Result<oneshot::Receiver<PathView>, TransportError>>,
    },
    AnnounceNow(oneshot::Sender<Result<usize, TransportError>>),
    /// Sets the relay price; answers whether the change was announced at once.
    SetRelayPrice {
        cost_per_byte: f64,
        reply: oneshot::Sender<Result<bool, TransportError>>,
    },
    Listen {
        name: DestinationName,
        announce: bool,
        subscriber: mpsc::Sender<InboundMessage>,
        reply: oneshot::Sender<Result<(DestinationHash, u64), TransportError>>,
    },
    Unlisten {
        destination: DestinationHash,
        subscriber: u64,
    },
    Send {
        destination: DestinationHash,
        payload: Vec<u8>,
        policy: RoutePolicy,
        deadline: tokio::time::Instant,
        reply: oneshot::Sender<Result<SendReport, TransportError>>,
    },
    Reply {
        link: LinkId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<PacketHash, TransportError>>,
    },
    RegisterControl {
        kind: u8,
        sender: mpsc::Sender<ControlMessage>,
        acknowledge: bool,
        reply: oneshot::Sender<()>,
    },
    ForwardReports {
        sink: ReportSink<ForwardedPacket>,
        reply: oneshot::Sender<()>,
    },
    DeliveryReports {
        sink: ReportSink<ProvedDelivery>,
        reply: oneshot::Sender<()>,
    },
}

/// A message posted with [`TransportHandle::post_control`]: sent like a command's `Send`,
/// with nobody to tell the outcome.
pub(super) struct Post {
    pub(super) destination: DestinationHash,
    pub(super) payload: Vec<u8>,
    pub(super) deadline: tokio::time::Instant,
}

/// Picks the way to a destination for a send's policy, from the mehr.node's path costs and
/// this node's interfaces.
fn route_chooser<'a>(
    mehr: &'a MehrNode,
    interfaces: &'a BTreeMap<InterfaceId, InterfaceEntry>,
) -> impl Fn(&Router, &DestinationHash, RoutePolicy) -> Option<Route> + 'a {
    move |router, destination, policy| {
        mehr.choose_route(router, destination, policy, |i| link_figures(interfaces, i))
    }
}

/// What crossing interface `id` adds to a path (nothing known for a vanished interface).
fn link_figures(
    interfaces: &BTreeMap<InterfaceId, InterfaceEntry>,
    id: InterfaceId,
) -> LinkFigures {
    interfaces.get(&id).map_or(
        LinkFigures {
            bitrate: 0,
            latency_ms: 0,
        },
        |e| LinkFigures {
            bitrate: e.spec.effective_bitrate(),
            latency_ms: e.spec.one_way_latency_ms(),
        },
    )
}

/// One interface as the actor keeps it.
struct InterfaceEntry {
    spec: InterfaceSpec,
    parent: Option<InterfaceId>,
    peer: Option<String>,
    stats: Arc<InterfaceStats>,
    outbound: Arc<OutboundQueue>,
    stop: CancellationToken,
}

struct Actor {
    router: Router,
    identity: PrivateIdentity,
    origin: Instant,
    interfaces: BTreeMap<InterfaceId, InterfaceEntry>,
    next_interface: u32,
    frames_tx: mpsc::Sender<InterfaceMessage>,
    mehr: MehrNode,
    messaging: Messaging,
    /// Subscribers to control message kinds, and whether each kind's packets are proved to
    /// their senders (see [`TransportHandle::acknowledged_control_messages`]).
    control: HashMap<u8, (mpsc::Sender<ControlMessage>, bool)>,
    path_waiters: HashMap<DestinationHash, Vec<oneshot::Sender<PathView>>>,
    events: Arc<EventBus>,
    stop: CancellationToken,
    unsolicited_link_data: u64,
    forward_reports: Option<ReportSink<ForwardedPacket>>,
    /// When to announce to greet a Mehr neighbour heard for the first time (see
    /// [`Actor::greet_neighbour`]).
    greeting_due: Option<Timestamp>,
    /// When the last greeting announce went out.
    last_greeting: Option<Timestamp>,
    /// Posts the handles dropped because their queue was full (counted by the handles).
    posts_dropped: Arc<AtomicU64>,
    /// Caps on what peers can open.
    limits: super::TransportLimits,
    /// Inbound TCP connections closed at once because the server had its maximum.
    tcp_refused_total: u64,
    /// Inbound TCP connections closed at once because their address had its maximum.
    tcp_refused_per_ip: u64,
}

/// Starts the transport: binds every enabled interface of `interfaces` (a bind failure is an
/// error naming the interface), registers `mehr.node`, announces it, and runs the actor until
/// `stop` is cancelled.
pub async fn start(
    identity: PrivateIdentity,
    config: TransportConfig,
    interfaces: Vec<InterfaceSpec>,
    events: Arc<EventBus>,
    stop: CancellationToken,
) -> Result<(TransportHandle, JoinHandle<()>), TransportError> {
    let origin = Instant::now();
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let router_config = RouterConfig {
        transport_enabled: config.enabled,
        inbound_announces_per_second: config.limits.announces_per_second,
        inbound_announce_burst: config.limits.announce_burst,
        ..RouterConfig::default()
    };
    let mut router = Router::new(
        identity.clone(),
        router_config,
        WallClock {
            at: Timestamp::ZERO,
            unix_secs,
        },
        Box::new(StdRng::from_entropy()),
    );
    let mehr = MehrNode::new(identity.clone(), config.cost_per_byte, config.enabled);
    let mut local = mehr_transport::router::LocalDestination::new(
        identity.clone(),
        DestinationName::mehr_node(),
    );
    local.app_data = mehr.app_data(crate::config::interfaces::DEFAULT_IP_BITRATE);
    // Control messages that travel whole in a packet are proved per kind (see
    // `on_control`); those large enough to need a link are proved like any link traffic.
    local.proof_strategy = mehr_transport::router::ProofStrategy::Links;
    router.register_destination(local);

    let (frames_tx, frames_rx) = mpsc::channel(4096);
    let (commands_tx, commands_rx) = mpsc::channel(1024);
    let (posts_tx, posts_rx) = mpsc::channel(super::POST_QUEUE);
    let posts_dropped = Arc::new(AtomicU64::new(0));
    let handle = TransportHandle {
        commands: commands_tx,
        posts: posts_tx,
        posts_dropped: posts_dropped.clone(),
        transport_id: router.transport_id(),
        mehr_destination: mehr.destination(),
    };
    let mut actor = Actor {
        router,
        identity,
        origin,
        interfaces: BTreeMap::new(),
        next_interface: 1,
        frames_tx,
        mehr,
        messaging: Messaging::new(config.max_message_bytes),
        control: HashMap::new(),
        path_waiters: HashMap::new(),
        events,
        stop,
        unsolicited_link_data: 0,
        forward_reports: None,
        greeting_due: None,
        last_greeting: None,
        posts_dropped,
        limits: config.limits,
        tcp_refused_total: 0,
        tcp_refused_per_ip: 0,
    };
    for spec in interfaces.into_iter().filter(|s| s.enabled) {
        if let Err(e) = actor.add_interface(spec).await {
            actor.stop_all();
            return Err(e);
        }
    }
    let _ = actor.announce_all();
    actor.drain_actions();
    let announce_every = Duration::from_secs(config.announce_interval_secs.max(1));
    let task = tokio::spawn(actor.run(commands_rx, posts_rx, frames_rx, announce_every));
    Ok((handle, task))
}

impl Actor {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut posts: mpsc::Receiver<Post>,
        mut frames: mpsc::Receiver<InterfaceMessage>,
        announce_every: Duration,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut announce =
            tokio::time::interval_at(tokio::time::Instant::now() + announce_every, announce_every);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut clock_refresh = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                Some(command) = commands.recv() => self.on_command(command).await,
                Some(message) = frames.recv() => {
                    self.on_interface_message(message);
                    for _ in 0..FRAME_BATCH {
                        match frames.try_recv() {
                            Ok(message) => self.on_interface_message(message),
                            Err(_) => break,
                        }
                    }
                }
                Some(post) = posts.recv() => {
                    self.on_post(post);
                    for _ in 0..FRAME_BATCH {
                        match posts.try_recv() {
                            Ok(post) => self.on_post(post),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = self.now();
                    self.router.tick(now);
                    self.messaging.tick(&mut self.router, now);
                    self.path_waiters.retain(|_, waiters| { waiters.retain(|w| !w.is_closed()); !waiters.is_empty() });
                    if self.greeting_due.is_some_and(|due| due <= now) {
                        self.greeting_due = None;
                        self.last_greeting = Some(now);
                        let _ = self.announce_all();
                    }
                }
                _ = announce.tick() => { let _ = self.announce_all(); }
                _ = clock_refresh.tick() => {
                    let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    self.router.set_wall_clock(WallClock { at: self.now(), unix_secs });
                }
            }
            self.drain_actions();
        }
        self.stop_all();
    }

    /// The drops counted by the daemon's limits, by reason.
    fn limit_drops(&self) -> Vec<(&'static str, u64)> {
        let segments = self.messaging.segment_drops;
        vec![
            ("segment_too_large", segments.too_large),
            ("segment_link_busy", segments.link_busy),
            ("segment_reassembly_budget", segments.budget),
            ("segment_idle", segments.idle),
            ("tcp_connections_full", self.tcp_refused_total),
            ("tcp_connections_per_ip", self.tcp_refused_per_ip),
            ("mehr_path_table_full", self.mehr.paths_refused),
            ("mehr_neighbours_full", self.mehr.neighbours_refused),
        ]
    }

    fn stop_all(&mut self) {
        for entry in self.interfaces.values() {
            entry.stop.cancel();
            entry.outbound.close();
        }
    }

    // ----- interfaces ---------------------------------------------------------------------

    fn port(&mut self, parent: Option<&CancellationToken>) -> (InterfaceId, Port) {
        let id = InterfaceId(self.next_interface);
        self.next_interface += 1;
        let stop = match parent {
            Some(parent) => parent.child_token(),
            None => self.stop.child_token(),
        };
        let port = Port {
            id,
            to_router: self.frames_tx.clone(),
            outbound: Arc::new(OutboundQueue::new(DEFAULT_QUEUE_BYTES)),
            stats: Arc::new(InterfaceStats::default()),
            stop,
        };
        (id, port)
    }

    fn router_config(spec: &InterfaceSpec) -> InterfaceConfig {
        let mut config = InterfaceConfig::new(spec.effective_bitrate());
        config.mode = spec.mode.into();
        // A TCP connection (each accepted one is an interface of its own) and a simulated
        // wire have one peer; UDP and serial may be shared media.
        config.point_to_point = matches!(
            spec.kind,
            InterfaceType::TcpServer | InterfaceType::TcpClient | InterfaceType::Sim
        );
        if let Some(cap) = spec.announce_cap {
            config.announce_cap = cap / 100.0;
        }
        config
    }

    async fn add_interface(&mut self, spec: InterfaceSpec) -> Result<u32, TransportError> {
        let kind = spec.kind().map_err(interfaces::InterfaceError::from)?;
        let (id, port) = self.port(None);
        interfaces::start(&spec, kind, port.clone()).await?;
        // A server carries no traffic itself; each connection it accepts is an interface.
        if spec.kind != InterfaceType::TcpServer {
            self.router.add_interface(id, Self::router_config(&spec));
        }
        let name = spec.display_name();
        tracing::info!(interface = id.0, %name, "interface started");
        self.events
            .publish(EventKind::InterfaceUp { id: id.0, name });
        self.interfaces.insert(
            id,
            InterfaceEntry {
                spec,
                parent: None,
                peer: None,
                stats: port.stats,
                outbound: port.outbound,
                stop: port.stop,
            },
        );
        let _ = self.announce_all();
        Ok(id.0)
    }

    fn remove_interface(&mut self, id: InterfaceId, reason: &str) -> Result<(), TransportError> {
        let entry = self
            .interfaces
            .remove(&id)
            .ok_or(TransportError::UnknownInterface(id.0))?;
        entry.stop.cancel();
        entry.outbound.close();
        self.router.remove_interface(id);
        self.mehr.interface_removed(id);
        let name = match &entry.peer {
            Some(peer) => format!("{} {peer}", entry.spec.display_name()),
            None => entry.spec.display_name(),
        };
        self.events.publish(EventKind::InterfaceDown {
            id: id.0,
            name,
            reason: reason.to_string(),
        });
        let children: Vec<_> = self
            .interfaces
            .iter()
            .filter(|(_, e)| e.parent == Some(id))
            .map(|(id, _)| *id)
            .collect();
        for child in children {
            let _ = self.remove_interface(child, reason);
        }
        Ok(())
    }

    fn on_interface_message(&mut self, message: InterfaceMessage) {
        match message {
            InterfaceMessage::Frame { interface, frame } => {
                let now = self.now();
                self.router.handle_inbound(interface, &frame, now);
            }
            InterfaceMessage::Accepted {
                parent,
                peer,
                stream,
            } => {
                let Some(server) = self.interfaces.get(&parent) else {
                    return;
                };
                // Each connection is an interface, a task, a socket and a copy of every
                // announce: capped in all and per remote address. Dropping the stream
                // closes it.
                let accepted: Vec<&InterfaceEntry> = self
                    .interfaces
                    .values()
                    .filter(|e| e.parent.is_some())
                    .collect();
                if accepted.len() >= self.limits.max_inbound_tcp {
                    self.tcp_refused_total += 1;
                    return;
                }
                let ip = peer.ip().to_string();
                let from_ip = accepted
                    .iter()
                    .filter(|e| {
                        e.peer
                            .as_deref()
                            .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
                            .is_some_and(|p| p.ip().to_string() == ip)
                    })
                    .count();
                if from_ip >= self.limits.max_inbound_tcp_per_ip {
                    self.tcp_refused_per_ip += 1;
                    return;
                }
                let spec = server.spec.clone();
                let server_stop = server.stop.clone();
                let (id, port) = self.port(Some(&server_stop));
                self.router.add_interface(id, Self::router_config(&spec));
                let name = format!("{} {peer}", spec.display_name());
                tracing::info!(interface = id.0, %name, "TCP connection accepted");
                self.events
                    .publish(EventKind::InterfaceUp { id: id.0, name });
                self.interfaces.insert(
                    id,
                    InterfaceEntry {
                        spec,
                        parent: Some(parent),
                        peer: Some(peer.to_string()),
                        stats: port.stats.clone(),
                        outbound: port.outbound.clone(),
                        stop: port.stop.clone(),
                    },
                );
                interfaces::start_accepted(stream, port);
                // Tell the newcomer who we are right away rather than at the next period.
                let _ = self.announce_all();
            }
            InterfaceMessage::Connected { interface } => {
                tracing::debug!(interface = interface.0, "announcing on a new connection");
                // The server's side may have restarted and forgotten this node: announce now
                // rather than at the next period (frames queued before the connection were
                // dropped with the old one).
                let _ = self.announce_all();
            }
            InterfaceMessage::Closed { interface } => {
                let _ = self.remove_interface(interface, "connection closed");
            }
        }
    }

    // ----- actions and events -------------------------------------------------------------

    fn drain_actions(&mut self) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Transmit {
                    interface,
                    frame,
                    priority,
                } => {
                    if let Some(entry) = self.interfaces.get(&interface) {
                        let outcome = entry.outbound.push(frame, priority);
                        entry.stats.dropped(outcome.dropped);
                    }
                }
                Action::Deliver {
                    destination,
                    plaintext,
                    interface,
                    packet,
                } => {
                    if destination == self.mehr.destination() {
                        self.on_control(plaintext, Some((interface, packet.hash())));
                    } else {
                        self.deliver(
                            destination,
                            plaintext,
                            MessageVia::Packet,
                            Some(interface.0),
                        );
                    }
                }
                Action::Event(event) => self.on_router_event(event),
            }
        }
    }

    fn deliver(
        &mut self,
        destination: DestinationHash,
        payload: Vec<u8>,
        via: MessageVia,
        interface: Option<u32>,
    ) {
        if destination == self.mehr.destination() {
            return self.on_control(payload, None);
        }
        let bytes = payload.len() as u64;
        if self.messaging.deliver(InboundMessage {
            destination,
            payload,
            via,
            interface,
        }) {
            self.events.publish(EventKind::MessageReceived {
                destination: destination.0,
                bytes,
            });
        }
    }

    /// Hands a message to `mehr.node` to the part subscribed to its kind. `arrival` is the
    /// packet it came in (none over a link): for an acknowledged kind, the packet is proved
    /// to its sender once the message is taken.
    fn on_control(&mut self, payload: Vec<u8>, arrival: Option<(InterfaceId, PacketHash)>) {
        let Some((&kind, body)) = payload.split_first() else {
            self.mehr.rejected += 1;
            return;
        };
        if kind == CONTROL_PATH_COST {
            return self.mehr.on_path_cost(body);
        }
        let message = ControlMessage {
            kind,
            body: body.to_vec(),
            interface: arrival.map(|(interface, _)| interface.0),
        };
        match self.control.get(&kind) {
            Some((handler, acknowledge)) if handler.try_send(message).is_ok() => {
                if *acknowledge && let Some((interface, hash)) = arrival {
                    let _ = self
                        .router
                        .prove_delivery(&self.mehr.destination(), &hash, interface);
                }
            }
            _ => self.mehr.rejected += 1,
        }
    }

    fn on_router_event(&mut self, event: RouterEvent) {
        let now = self.now();
        match event {
            RouterEvent::PathLearned {
                destination,
                hops,
                interface,
            } => {
                self.messaging.path_known(
                    &mut self.router,
                    &route_chooser(&self.mehr, &self.interfaces),
                    &destination,
                    now,
                );
                self.resolve_path_waiters(&destination);
                self.events.publish(EventKind::PathLearned {
                    destination: destination.0,
                    hops,
                    interface: interface.0,
                });
            }
            RouterEvent::AnnounceReceived {
                announce,
                hops,
                interface,
                ..
            } => {
                if MehrNode::is_mehr_announce(&announce)
                    && let Some(path) = self.router.path(&announce.destination)
                {
                    let link = link_figures(&self.interfaces, interface);
                    if hops == 1
                        && link.bitrate >= GREETING_MIN_BITRATE
                        && !self.mehr.is_neighbour(&announce.destination)
                    {
                        self.greet_neighbour(now);
                    }
                    for packet in self.mehr.on_announce(
                        &self.router,
                        &HeardAnnounce {
                            announce: &announce,
                            hops,
                            interface,
                            next_hop: path.next_hop,
                            link,
                        },
                        now,
                    ) {
                        let _ = self.router.send_packet(packet, now);
                    }
                }
                self.messaging.path_known(
                    &mut self.router,
                    &route_chooser(&self.mehr, &self.interfaces),
                    &announce.destination,
                    now,
                );
                self.resolve_path_waiters(&announce.destination);
            }
            RouterEvent::DeliveryProved { packet_hash } => self.messaging.proved(&packet_hash),
            RouterEvent::DeliveryTimedOut { packet_hash } => {
                self.messaging.proof_timed_out(&packet_hash)
            }
            RouterEvent::LinkEstablished {
                link_id,
                destination,
                role,
                ..
            } => {
                self.messaging.link_established(
                    &mut self.router,
                    link_id,
                    destination,
                    role == Role::Initiator,
                    now,
                );
            }
            RouterEvent::LinkData {
                link_id,
                context,
                plaintext,
                ..
            } => {
                if context == SEGMENT_CONTEXT {
                    if let Some(done) =
                        self.messaging
                            .on_segment_packet(&mut self.router, link_id, &plaintext, now)
                    {
                        self.deliver(
                            done.destination,
                            done.payload,
                            MessageVia::Link(done.link),
                            None,
                        );
                    }
                } else if context == Context::NONE {
                    match self.messaging.inbound_link_destination(&link_id) {
                        Some(destination) => {
                            self.deliver(destination, plaintext, MessageVia::Link(link_id), None)
                        }
                        None => self.unsolicited_link_data += 1,
                    }
                }
            }
            RouterEvent::LinkClosed { link_id, reason } => {
                self.messaging.link_closed(link_id, &format!("{reason:?}"))
            }
            RouterEvent::PacketDropped { reason, interface } => {
                tracing::debug!(
                    ?reason,
                    interface = interface.map(|i| i.0),
                    "packet dropped"
                );
            }
            RouterEvent::LinkIdentified { .. } => {}
            RouterEvent::Forwarded {
                relay_hash,
                from,
                to,
                bytes,
            } => self.report_forwarded(relay_hash, from, to, bytes),
        }
    }

    /// Passes a forwarding report on without ever waiting: a full queue drops it.
    fn report_forwarded(
        &mut self,
        relay_hash: [u8; 32],
        from: Option<InterfaceId>,
        to: InterfaceId,
        bytes: u32,
    ) {
        let Some(sink) = &self.forward_reports else {
            return;
        };
        let report = ForwardedPacket {
            relay_hash,
            bytes,
            originated: from.is_none(),
            upstream: from.and_then(|i| self.sole_neighbour(i)),
            downstream: self.sole_neighbour(to),
        };
        if !sink.offer(report) {
            self.forward_reports = None;
            self.router.set_forwarding_reports(false);
        }
    }

    /// The one Mehr neighbour on a point-to-point interface; `None` on shared media (UDP),
    /// where who handed a packet over cannot be known, or when the neighbour is not known.
    fn sole_neighbour(&self, interface: InterfaceId) -> Option<IdentityHash> {
        let entry = self.interfaces.get(&interface)?;
        let point_to_point = match entry.spec.kind {
            InterfaceType::TcpClient | InterfaceType::Serial | InterfaceType::Sim => true,
            // A server's accepted connections are interfaces of their own.
            InterfaceType::TcpServer => entry.parent.is_some(),
            InterfaceType::Udp => false,
        };
        if !point_to_point {
            return None;
        }
        let mut on_interface = self
            .mehr
            .neighbours()
            .filter(|(_, n)| n.interface == interface);
        let first = on_interface.next()?;
        on_interface
            .next()
            .is_none()
            .then(|| first.1.identity.hash())
    }

    fn resolve_path_waiters(&mut self, destination: &DestinationHash) {
        if !self.path_waiters.contains_key(destination) {
            return;
        }
        if let Some(view) = self.path_view(destination)
            && let Some(waiters) = self.path_waiters.remove(destination)
        {
            for waiter in waiters {
                let _ = waiter.send(view.clone());
            }
        }
    }

    fn path_view(&self, destination: &DestinationHash) -> Option<PathView> {
        let path = self.router.path(destination)?;
        let now = self.now();
        Some(PathView {
            destination: path.destination,
            next_hop: path.next_hop,
            hops: path.hops,
            interface: path.interface.0,
            age_secs: now.since(path.learned_at).as_secs(),
            cost: self.mehr.path_cost(&path.destination),
            mehr_node: self.mehr.path_cost(&path.destination).is_some(),
            routes: self
                .mehr
                .route_options(&self.router, destination, |i| {
                    link_figures(&self.interfaces, i)
                })
                .into_iter()
                .map(|(candidate, option)| Route {
                    next_hop: candidate.next_hop,
                    hops: candidate.hops,
                    cost: option.cost,
                })
                .collect(),
        })
    }

    /// The fastest interface's bitrate: the bandwidth this node offers as a hop.
    fn best_bitrate(&self) -> u64 {
        self.interfaces
            .values()
            .map(|e| e.spec.effective_bitrate())
            .max()
            .unwrap_or(crate::config::interfaces::DEFAULT_IP_BITRATE)
    }

    /// Announces `mehr.node` and every app destination that asked for it.
    /// Schedules an announce for a Mehr neighbour heard for the first time. Its own
    /// announce may have been the only one: when two nodes bring up a link at slightly
    /// different moments, the first announce finds the other end not listening yet, and
    /// without a reply that side would not know its neighbour until the next periodic
    /// announce. At most one greeting per [`GREETING_GAP`], so a crowd of new neighbours
    /// costs one announce, and a neighbour already known triggers none (no ping-pong); links
    /// slower than [`GREETING_MIN_BITRATE`] wait for the periodic announce.
    fn greet_neighbour(&mut self, now: Timestamp) {
        if self.greeting_due.is_none() {
            let earliest = self
                .last_greeting
                .map_or(now, |last| last.saturating_add(GREETING_GAP));
            self.greeting_due = Some(earliest.max(now));
        }
    }

    fn announce_all(&mut self) -> Result<usize, TransportError> {
        let now = self.now();
        let mehr = self.mehr.destination();
        self.router
            .set_app_data(&mehr, self.mehr.app_data(self.best_bitrate()))?;
        self.router.announce(&mehr, now)?;
        let mut count = 1;
        for app in self.messaging.announced_apps() {
            self.router.announce(&app, now)?;
            count += 1;
        }
        Ok(count)
    }

    // ----- commands -----------------------------------------------------------------------

    async fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Interfaces(reply) => {
                let _ = reply.send(self.interface_infos());
            }
            Command::AddInterface { spec, reply } => {
                let _ = reply.send(self.add_interface(spec).await);
            }
            Command::RemoveInterface { id, reply } => {
                let _ = reply.send(self.remove_interface(id, "removed by the operator"));
            }
            Command::Paths(reply) => {
                let mut paths: Vec<_> = self
                    .router
                    .paths()
                    .iter()
                    .filter_map(|p| self.path_view(&p.destination))
                    .collect();
                paths.sort_by_key(|p| (p.hops, p.destination.0));
                let _ = reply.send(paths);
            }
            Command::Neighbours(reply) => {
                let neighbours = self
                    .mehr
                    .neighbours()
                    .map(|(destination, n)| Neighbour {
                        destination: *destination,
                        node_id: n.identity.hash(),
                        interface: n.interface.0,
                        last_heard_secs: now.since(n.heard).as_secs(),
                        cost: n.cost,
                        identity: n.identity.clone(),
                    })
                    .collect();
                let _ = reply.send(neighbours);
            }
            Command::Stats(reply) => {
                let sizes = self.router.table_sizes();
                let _ = reply.send(TransportStats {
                    transport_id: self.router.transport_id(),
                    mehr_destination: self.mehr.destination(),
                    announce_app_data: self.mehr.app_data(self.best_bitrate()),
                    counters: self.router.counters().clone(),
                    paths: sizes.paths,
                    links: sizes.local_links,
                    subscriber_drops: self.messaging.subscriber_drops,
                    control_rejected: self.mehr.rejected + self.unsolicited_link_data,
                    control_posts_dropped: self.posts_dropped.load(Ordering::Relaxed),
                    limit_drops: self.limit_drops(),
                });
            }
            Command::Identity { node_id, reply } => {
                let identity = self
                    .router
                    .known_destination(&super::mehr_node_destination(&node_id))
                    .map(|known| known.identity.public_key());
                let _ = reply.send(identity);
            }
            Command::RequestPath { destination, reply } => {
                let (tx, rx) = oneshot::channel();
                match self.path_view(&destination) {
                    Some(view) => {
                        let _ = tx.send(view);
                    }
                    None => {
                        if let Err(e) = self.router.request_path(&destination) {
                            let _ = reply.send(Err(e.into()));
                            return;
                        }
                        self.path_waiters.entry(destination).or_default().push(tx);
                    }
                }
                let _ = reply.send(Ok(rx));
            }
            Command::AnnounceNow(reply) => {
                let _ = reply.send(self.announce_all());
            }
            Command::SetRelayPrice {
                cost_per_byte,
                reply,
            } => {
                let before = self.mehr.set_cost_per_byte(cost_per_byte);
                let announced =
                    if super::mehr_node::price_change_needs_announce(before, cost_per_byte) {
                        self.announce_all().map(|_| true)
                    } else {
                        Ok(false)
                    };
                let _ = reply.send(announced);
            }
            Command::Listen {
                name,
                announce,
                subscriber,
                reply,
            } => {
                let (destination, id, announced) = self.messaging.listen(
                    &mut self.router,
                    &self.identity,
                    name,
                    announce,
                    subscriber,
                );
                if announced {
                    let _ = self.router.announce(&destination, now);
                }
                let _ = reply.send(Ok((destination, id)));
            }
            Command::Unlisten {
                destination,
                subscriber,
            } => {
                self.messaging
                    .unlisten(&mut self.router, destination, subscriber);
            }
            Command::Send {
                destination,
                payload,
                policy,
                deadline,
                reply,
            } => {
                let pending = PendingSend {
                    reply: Some(reply),
                    deadline,
                    started: Instant::now(),
                    policy,
                    route: None,
                    bytes: payload.len() as u64,
                };
                let routes = route_chooser(&self.mehr, &self.interfaces);
                self.messaging.send(
                    &mut self.router,
                    &routes,
                    destination,
                    payload,
                    pending,
                    now,
                );
            }
            Command::Reply {
                link,
                payload,
                reply,
            } => {
                let _ = reply.send(self.messaging.reply(&mut self.router, link, &payload, now));
            }
            Command::RegisterControl {
                kind,
                sender,
                acknowledge,
                reply,
            } => {
                self.control.insert(kind, (sender, acknowledge));
                let _ = reply.send(());
            }
            Command::DeliveryReports { sink, reply } => {
                self.messaging.report_deliveries(sink);
                let _ = reply.send(());
            }
            Command::ForwardReports { sink, reply } => {
                self.forward_reports = Some(sink);
                self.router.set_forwarding_reports(true);
                let _ = reply.send(());
            }
        }
    }

    /// Sends a posted message as a `Send` command with the shortest-path policy would be
    /// sent, with no one waiting for the outcome.
    fn on_post(&mut self, post: Post) {
        let now = self.now();
        let pending = PendingSend {
            reply: None,
            deadline: post.deadline,
            started: Instant::now(),
            policy: RoutePolicy::Shortest,
            route: None,
            bytes: post.payload.len() as u64,
        };
        let routes = route_chooser(&self.mehr, &self.interfaces);
        self.messaging.send(
            &mut self.router,
            &routes,
            post.destination,
            post.payload,
            pending,
            now,
        );
    }

    fn interface_infos(&self) -> Vec<InterfaceInfo> {
        self.interfaces
            .iter()
            .map(|(id, e)| {
                let get = InterfaceStats::get;
                InterfaceInfo {
                    id: id.0,
                    name: match &e.peer {
                        Some(peer) => format!("{} {peer}", e.spec.display_name()),
                        None => e.spec.display_name(),
                    },
                    kind: e.spec.kind,
                    parent: e.parent.map(|p| p.0),
                    peer: e.peer.clone(),
                    state: e.stats.state(),
                    bitrate: e.spec.effective_bitrate(),
                    rx_frames: get(&e.stats.rx_frames),
                    rx_bytes: get(&e.stats.rx_bytes),
                    tx_frames: get(&e.stats.tx_frames),
                    tx_bytes: get(&e.stats.tx_bytes),
                    tx_announce_bytes: get(&e.stats.tx_announce_bytes),
                    tx_dropped: get(&e.stats.tx_dropped),
                    rx_malformed: get(&e.stats.rx_malformed),
                    queued_bytes: e.outbound.queued_bytes() as u64,
                    spec: e.spec.clone(),
                }
            })
            .collect()
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        // Interfaces end with the actor, whatever the reason it ended.
        self.stop_all();
    }
}
