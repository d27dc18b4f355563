//! Messages between applications across the mesh: local app destinations and their
//! subscribers, and outbound messages on their way — waiting for a path, for a link, for a
//! proof, or travelling as segments over a link. Owned by the transport actor, which calls in
//! with the router and the time.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use mehr_transport::{
    destination::DestinationName,
    hashes::{DestinationHash, LinkId, PacketHash},
    packet::{Context, ENCRYPTED_MDU, LINK_MDU},
    router::Router,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    InboundMessage, ProvedDelivery, Route, RoutePolicy, SendMethod, SendReport, TransportError,
    reports::ReportSink,
    segments::{
        AbortReason, Incoming, Outgoing, SEGMENT_CONTEXT, SEGMENT_PAYLOAD, SegmentPacket, SendStep,
    },
};

/// How long a half-received message may sit idle before it is dropped.
const INCOMING_IDLE: Duration = Duration::from_secs(120);
/// Messages one inbound link may have in progress at once.
const MAX_INCOMING_PER_LINK: usize = 8;
/// Completed message ids remembered per inbound link.
const COMPLETED_REMEMBERED: usize = 64;
/// Bytes of half-received messages held across all links. Charged as segments arrive (a
/// segment count announces nothing we allocate); a segment that would pass it aborts its
/// message with `Busy`, so transfers already near completion keep going and new ones wait.
pub(super) const REASSEMBLY_BUDGET: usize = 64 * 1024 * 1024;

/// Segment traffic refused, by reason (reported with the router's drops in GetStats).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SegmentDrops {
    /// Messages refused because they announced more than the largest message.
    pub(super) too_large: u64,
    /// Messages refused because their link already had its messages in progress.
    pub(super) link_busy: u64,
    /// Messages aborted because the reassembly budget was spent.
    pub(super) budget: u64,
    /// Half-received messages dropped after sitting idle.
    pub(super) idle: u64,
}

/// A send on its way, and its caller waiting for the outcome (none for a posted message).
pub(super) struct PendingSend {
    pub(super) reply: Option<oneshot::Sender<Result<SendReport, TransportError>>>,
    /// When to give up: a path not found, a link transfer not finished, a posted packet's
    /// proof no longer awaited.
    pub(super) deadline: tokio::time::Instant,
    pub(super) started: Instant,
    /// How the sender wants its path chosen.
    pub(super) policy: RoutePolicy,
    /// The way the message left, once chosen (reported with the outcome).
    pub(super) route: Option<Route>,
    /// Payload bytes.
    pub(super) bytes: u64,
}

impl PendingSend {
    fn finish(self, result: Result<SendReport, TransportError>) {
        let route = self.route;
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result.map(|report| SendReport { route, ..report }));
            }
            None => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, bytes = self.bytes, "posted message not sent");
                }
            }
        }
    }

    /// Whether anyone still wants the outcome: a caller that has not given up, or, for a
    /// posted message, the deadline not yet passed.
    fn wanted(&self, clock: tokio::time::Instant) -> bool {
        match &self.reply {
            Some(reply) => !reply.is_closed(),
            None => self.deadline > clock,
        }
    }
}

/// Picks the way to a destination by a policy (the actor's [`MehrNode::choose_route`] over
/// its interfaces).
///
/// [`MehrNode::choose_route`]: super::mehr_node::MehrNode::choose_route
pub(super) type RouteChooser<'a> =
    &'a dyn Fn(&Router, &DestinationHash, RoutePolicy) -> Option<Route>;

struct App {
    announce: bool,
    subscribers: Vec<(u64, mpsc::Sender<InboundMessage>)>,
}

enum OutLink {
    /// Link request sent; these messages wait for it.
    Opening(Vec<(Vec<u8>, PendingSend)>),
    /// Established.
    Ready,
}

/// Messaging state.
pub(super) struct Messaging {
    apps: HashMap<DestinationHash, App>,
    next_subscriber: u64,
    awaiting_path: HashMap<DestinationHash, Vec<(Vec<u8>, PendingSend)>>,
    awaiting_proof: HashMap<PacketHash, PendingSend>,
    out_links: HashMap<DestinationHash, (LinkId, OutLink)>,
    out_link_destination: HashMap<LinkId, DestinationHash>,
    /// The way each outbound link's request left.
    link_routes: HashMap<LinkId, Route>,
    /// Where proved deliveries through relays are reported, if anywhere.
    deliveries: Option<ReportSink<ProvedDelivery>>,
    inbound_links: HashMap<LinkId, DestinationHash>,
    outgoing: HashMap<(LinkId, u32), (Outgoing, PendingSend)>,
    incoming: HashMap<(LinkId, u32), Incoming>,
    /// The latest messages completed per inbound link: a segment of one of them arriving late
    /// (resent before the final Ack reached the sender) is answered "complete" instead of
    /// starting a message that never completes and holds one of the link's slots.
    completed: HashMap<LinkId, VecDeque<u32>>,
    next_msg: u32,
    max_message: usize,
    origin: Instant,
    /// Messages dropped because a subscriber's queue was full.
    pub(super) subscriber_drops: u64,
    /// Bytes held by `incoming`, against [`REASSEMBLY_BUDGET`].
    reassembly_bytes: usize,
    /// Segment traffic refused, by reason.
    pub(super) segment_drops: SegmentDrops,
}

/// A message that completed on an inbound link, for the actor to hand on.
pub(super) struct Completed {
    pub(super) destination: DestinationHash,
    pub(super) payload: Vec<u8>,
    pub(super) link: LinkId,
}

impl Messaging {
    /// Empty state; messages over links are limited to `max_message` bytes.
    pub(super) fn new(max_message: usize) -> Self {
        Messaging {
            apps: HashMap::new(),
            next_subscriber: 1,
            awaiting_path: HashMap::new(),
            awaiting_proof: HashMap::new(),
            out_links: HashMap::new(),
            out_link_destination: HashMap::new(),
            link_routes: HashMap::new(),
            deliveries: None,
            inbound_links: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            completed: HashMap::new(),
            next_msg: 1,
            max_message,
            origin: Instant::now(),
            subscriber_drops: 0,
            reassembly_bytes: 0,
            segment_drops: SegmentDrops::default(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    // ----- app destinations ---------------------------------------------------------------

    /// Adds a subscriber to the app destination `name` (registering it with the router on
    /// first use). Returns the destination and the subscriber id.
    pub(super) fn listen(
        &mut self,
        router: &mut Router,
        identity: &mehr_transport::identity::PrivateIdentity,
        name: DestinationName,
        announce: bool,
        subscriber: mpsc::Sender<InboundMessage>,
    ) -> (DestinationHash, u64, bool) {
        let destination = name.single_hash(identity.public());
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let app = self.apps.entry(destination).or_insert_with(|| {
            let mut local = mehr_transport::router::LocalDestination::new(identity.clone(), name);
            local.proof_strategy = mehr_transport::router::ProofStrategy::All;
            router.register_destination(local);
            App {
                announce: false,
                subscribers: Vec::new(),
            }
        });
        app.announce |= announce;
        app.subscribers.push((id, subscriber));
        (destination, id, app.announce)
    }

    /// Removes a subscriber; the destination is deregistered with its last subscriber.
    pub(super) fn unlisten(
        &mut self,
        router: &mut Router,
        destination: DestinationHash,
        subscriber: u64,
    ) {
        if let Some(app) = self.apps.get_mut(&destination) {
            app.subscribers.retain(|(id, _)| *id != subscriber);
            if app.subscribers.is_empty() {
                self.apps.remove(&destination);
                router.deregister_destination(&destination);
            }
        }
    }

    /// App destinations to include in periodic announces.
    pub(super) fn announced_apps(&self) -> Vec<DestinationHash> {
        self.apps
            .iter()
            .filter(|(_, app)| app.announce)
            .map(|(dest, _)| *dest)
            .collect()
    }

    /// Hands a message to every subscriber of its destination. Returns false if the
    /// destination is not an app destination.
    pub(super) fn deliver(&mut self, message: InboundMessage) -> bool {
        let Some(app) = self.apps.get_mut(&message.destination) else {
            return false;
        };
        app.subscribers.retain(|(_, tx)| !tx.is_closed());
        for (_, tx) in &app.subscribers {
            if tx.try_send(message.clone()).is_err() {
                self.subscriber_drops += 1;
            }
        }
        true
    }

    // ----- sending ------------------------------------------------------------------------

    /// Starts sending `payload` to `destination`, by the way `routes` picks for the send's
    /// policy.
    pub(super) fn send(
        &mut self,
        router: &mut Router,
        routes: RouteChooser<'_>,
        destination: DestinationHash,
        payload: Vec<u8>,
        mut pending: PendingSend,
        now: mehr_transport::clock::Timestamp,
    ) {
        if payload.len() > self.max_message {
            return pending.finish(Err(TransportError::TooLarge {
                len: payload.len(),
                max: self.max_message,
            }));
        }
        // An unknown identity, or a known one without a path — the interface its path used
        // went away (a neighbour restarted), or the path expired — is asked for. Sending
        // without a path would broadcast to the neighbours, which drop what is not theirs.
        if router.known_destination(&destination).is_none() || router.path(&destination).is_none() {
            let waiting = self.awaiting_path.entry(destination).or_default();
            if waiting.is_empty() {
                let _ = router.request_path(&destination);
            }
            waiting.push((payload, pending));
            return;
        }
        if payload.len() <= ENCRYPTED_MDU {
            pending.route = routes(router, &destination, pending.policy);
            let via = pending.route.map(|r| r.next_hop);
            match router.send_via(&destination, &payload, via, now) {
                Ok(hash) => {
                    self.awaiting_proof.insert(hash, pending);
                }
                Err(e) => pending.finish(Err(e.into())),
            }
            return;
        }
        match self.out_links.get_mut(&destination) {
            Some((link, OutLink::Ready)) => {
                let link = *link;
                pending.route = self.link_routes.get(&link).copied();
                self.start_transfer(router, link, payload, pending, now);
            }
            Some((link, OutLink::Opening(waiting))) => {
                pending.route = self.link_routes.get(link).copied();
                waiting.push((payload, pending));
            }
            None => {
                let route = routes(router, &destination, pending.policy);
                match router.open_link_via(&destination, route.map(|r| r.next_hop), now) {
                    Ok(link) => {
                        // The link keeps the way its request took.
                        pending.route = route;
                        if let Some(route) = route {
                            self.link_routes.insert(link, route);
                        }
                        self.out_links.insert(
                            destination,
                            (link, OutLink::Opening(vec![(payload, pending)])),
                        );
                        self.out_link_destination.insert(link, destination);
                    }
                    Err(e) => pending.finish(Err(e.into())),
                }
            }
        }
    }

    /// Retries the sends that waited for a path to `destination`.
    pub(super) fn path_known(
        &mut self,
        router: &mut Router,
        routes: RouteChooser<'_>,
        destination: &DestinationHash,
        now: mehr_transport::clock::Timestamp,
    ) {
        if let Some(waiting) = self.awaiting_path.remove(destination) {
            for (payload, pending) in waiting {
                self.send(router, routes, *destination, payload, pending, now);
            }
        }
    }

    /// Reports every message sent through a relay and proved delivered to `sink` from now on.
    pub(super) fn report_deliveries(&mut self, sink: ReportSink<ProvedDelivery>) {
        self.deliveries = Some(sink);
    }

    fn delivered(&mut self, pending: &PendingSend) {
        let (Some(sink), Some(route)) = (&self.deliveries, pending.route) else {
            return;
        };
        if route.hops <= 1 {
            return; // straight to the destination: no relay to pay
        }
        let report = ProvedDelivery {
            next_hop: route.next_hop,
            hops: route.hops,
            bytes: pending.bytes,
        };
        if !sink.offer(report) {
            self.deliveries = None;
        }
    }

    /// A packet this node sent was proved.
    pub(super) fn proved(&mut self, packet_hash: &PacketHash) {
        if let Some(pending) = self.awaiting_proof.remove(packet_hash) {
            self.delivered(&pending);
            let rtt = pending.started.elapsed();
            pending.finish(Ok(SendReport {
                method: SendMethod::Packet,
                delivered: true,
                rtt: Some(rtt),
                packet_hash: Some(*packet_hash),
                route: None,
            }));
        }
    }

    /// No proof came for a packet this node sent.
    pub(super) fn proof_timed_out(&mut self, packet_hash: &PacketHash) {
        if let Some(pending) = self.awaiting_proof.remove(packet_hash) {
            pending.finish(Ok(SendReport {
                method: SendMethod::Packet,
                delivered: false,
                rtt: None,
                packet_hash: Some(*packet_hash),
                route: None,
            }));
        }
    }

    fn start_transfer(
        &mut self,
        router: &mut Router,
        link: LinkId,
        payload: Vec<u8>,
        pending: PendingSend,
        now: mehr_transport::clock::Timestamp,
    ) {
        let msg = self.next_msg;
        self.next_msg = self.next_msg.wrapping_add(1).max(1);
        let outgoing = Outgoing::new(msg, payload, self.now());
        self.outgoing.insert((link, msg), (outgoing, pending));
        self.pump(router, link, msg, now);
    }

    /// Sends whatever segments message `msg` on `link` may send now; finishes it when done.
    fn pump(
        &mut self,
        router: &mut Router,
        link: LinkId,
        msg: u32,
        now: mehr_transport::clock::Timestamp,
    ) {
        let elapsed = self.now();
        let Some((outgoing, _)) = self.outgoing.get_mut(&(link, msg)) else {
            return;
        };
        match outgoing.poll(elapsed) {
            SendStep::Delivered => {
                if let Some((_, pending)) = self.outgoing.remove(&(link, msg)) {
                    self.delivered(&pending);
                    let rtt = pending.started.elapsed();
                    pending.finish(Ok(SendReport {
                        method: SendMethod::Link,
                        delivered: true,
                        rtt: Some(rtt),
                        packet_hash: None,
                        route: None,
                    }));
                }
            }
            SendStep::Send(packets) => {
                for packet in packets {
                    if let Err(e) = router.link_send(&link, SEGMENT_CONTEXT, &packet.encode(), now)
                    {
                        if let Some((_, pending)) = self.outgoing.remove(&(link, msg)) {
                            pending.finish(Err(e.into()));
                        }
                        return;
                    }
                }
            }
        }
    }

    // ----- links --------------------------------------------------------------------------

    /// A link reached the active state.
    pub(super) fn link_established(
        &mut self,
        router: &mut Router,
        link: LinkId,
        destination: DestinationHash,
        initiator: bool,
        now: mehr_transport::clock::Timestamp,
    ) {
        if !initiator {
            self.inbound_links.insert(link, destination);
            return;
        }
        let Some((_, state)) = self.out_links.get_mut(&destination) else {
            return;
        };
        if let OutLink::Opening(waiting) = std::mem::replace(state, OutLink::Ready) {
            for (payload, pending) in waiting {
                self.start_transfer(router, link, payload, pending, now);
            }
        }
    }

    /// A link closed (or failed to open).
    pub(super) fn link_closed(&mut self, link: LinkId, reason: &str) {
        self.inbound_links.remove(&link);
        self.incoming.retain(|(l, _), _| *l != link);
        self.reassembly_bytes = self.incoming.values().map(Incoming::held_bytes).sum();
        self.completed.remove(&link);
        self.link_routes.remove(&link);
        if let Some(destination) = self.out_link_destination.remove(&link) {
            if let Some((_, OutLink::Opening(waiting))) = self.out_links.remove(&destination) {
                for (_, pending) in waiting {
                    pending.finish(Err(TransportError::LinkFailed {
                        destination,
                        reason: reason.to_string(),
                    }));
                }
            }
            let broken: Vec<_> = self
                .outgoing
                .keys()
                .filter(|(l, _)| *l == link)
                .copied()
                .collect();
            for key in broken {
                if let Some((_, pending)) = self.outgoing.remove(&key) {
                    pending.finish(Err(TransportError::LinkFailed {
                        destination,
                        reason: reason.to_string(),
                    }));
                }
            }
        }
    }

    /// The local destination an inbound link serves.
    pub(super) fn inbound_link_destination(&self, link: &LinkId) -> Option<DestinationHash> {
        self.inbound_links.get(link).copied()
    }

    /// Sends one packet back over an inbound link.
    pub(super) fn reply(
        &mut self,
        router: &mut Router,
        link: LinkId,
        payload: &[u8],
        now: mehr_transport::clock::Timestamp,
    ) -> Result<PacketHash, TransportError> {
        if !self.inbound_links.contains_key(&link) {
            return Err(TransportError::UnknownLink(link));
        }
        if payload.len() > LINK_MDU {
            return Err(TransportError::TooLarge {
                len: payload.len(),
                max: LINK_MDU,
            });
        }
        Ok(router.link_send(&link, Context::NONE, payload, now)?)
    }

    /// Segment-protocol traffic arrived on `link`. Returns a message that completed on an
    /// inbound link.
    pub(super) fn on_segment_packet(
        &mut self,
        router: &mut Router,
        link: LinkId,
        bytes: &[u8],
        now: mehr_transport::clock::Timestamp,
    ) -> Option<Completed> {
        let Ok(packet) = SegmentPacket::parse(bytes) else {
            return None;
        };
        let elapsed = self.now();
        match packet {
            SegmentPacket::Segment {
                msg,
                index,
                count,
                bytes,
            } => {
                let destination = self.inbound_link_destination(&link)?;
                if !self.incoming.contains_key(&(link, msg))
                    && self
                        .completed
                        .get(&link)
                        .is_some_and(|done| done.contains(&msg))
                {
                    let ack = SegmentPacket::Ack {
                        msg,
                        next: count,
                        missing: Vec::new(),
                    };
                    let _ = router.link_send(&link, SEGMENT_CONTEXT, &ack.encode(), now);
                    return None;
                }
                if !self.incoming.contains_key(&(link, msg)) {
                    let refuse =
                        if count as usize * SEGMENT_PAYLOAD > self.max_message + SEGMENT_PAYLOAD {
                            Some(AbortReason::TooLarge)
                        } else if self.incoming.keys().filter(|(l, _)| *l == link).count()
                            >= MAX_INCOMING_PER_LINK
                        {
                            Some(AbortReason::Busy)
                        } else {
                            None
                        };
                    match refuse {
                        Some(AbortReason::TooLarge) => self.segment_drops.too_large += 1,
                        Some(_) => self.segment_drops.link_busy += 1,
                        None => {}
                    }
                    if let Some(reason) = refuse {
                        let _ = router.link_send(
                            &link,
                            SEGMENT_CONTEXT,
                            &SegmentPacket::Abort { msg, reason }.encode(),
                            now,
                        );
                        return None;
                    }
                    self.incoming
                        .insert((link, msg), Incoming::new(msg, count, elapsed));
                }
                if self.reassembly_bytes + bytes.len() > REASSEMBLY_BUDGET {
                    self.segment_drops.budget += 1;
                    if let Some(dropped) = self.incoming.remove(&(link, msg)) {
                        self.reassembly_bytes -= dropped.held_bytes();
                    }
                    let abort = SegmentPacket::Abort {
                        msg,
                        reason: AbortReason::Busy,
                    };
                    let _ = router.link_send(&link, SEGMENT_CONTEXT, &abort.encode(), now);
                    return None;
                }
                let incoming = self.incoming.get_mut(&(link, msg))?;
                let before = incoming.held_bytes();
                let received = incoming.on_segment(index, count, bytes, elapsed);
                self.reassembly_bytes = self.reassembly_bytes - before + incoming.held_bytes();
                if let Some(ack) = received.ack {
                    let _ = router.link_send(&link, SEGMENT_CONTEXT, &ack.encode(), now);
                }
                let payload = received.message?;
                self.incoming.remove(&(link, msg));
                let done = self.completed.entry(link).or_default();
                if done.len() >= COMPLETED_REMEMBERED {
                    done.pop_front();
                }
                done.push_back(msg);
                Some(Completed {
                    destination,
                    payload,
                    link,
                })
            }
            SegmentPacket::Query { msg } => {
                match self.incoming.get_mut(&(link, msg)) {
                    Some(incoming) => {
                        let ack = incoming.ack();
                        let _ = router.link_send(&link, SEGMENT_CONTEXT, &ack.encode(), now);
                    }
                    // Already complete (the final Ack was lost): say so.
                    None => {
                        let ack = SegmentPacket::Ack {
                            msg,
                            next: u32::MAX,
                            missing: Vec::new(),
                        };
                        let _ = router.link_send(&link, SEGMENT_CONTEXT, &ack.encode(), now);
                    }
                }
                None
            }
            SegmentPacket::Ack { msg, next, missing } => {
                if let Some((outgoing, _)) = self.outgoing.get_mut(&(link, msg)) {
                    outgoing.on_ack(next, &missing, elapsed);
                    self.pump(router, link, msg, now);
                }
                None
            }
            SegmentPacket::Abort { msg, reason } => {
                if let Some((_, pending)) = self.outgoing.remove(&(link, msg)) {
                    pending.finish(Err(TransportError::Refused(reason.describe())));
                }
                if let Some(dropped) = self.incoming.remove(&(link, msg)) {
                    self.reassembly_bytes -= dropped.held_bytes();
                }
                None
            }
        }
    }

    /// Periodic work: retransmissions, queries, deadlines, idle transfers.
    pub(super) fn tick(&mut self, router: &mut Router, now: mehr_transport::clock::Timestamp) {
        let clock = tokio::time::Instant::now();
        let keys: Vec<_> = self.outgoing.keys().copied().collect();
        for (link, msg) in keys {
            let expired = self
                .outgoing
                .get(&(link, msg))
                .is_some_and(|(_, p)| p.deadline <= clock);
            if expired {
                if let Some((_, pending)) = self.outgoing.remove(&(link, msg)) {
                    let _ = router.link_send(
                        &link,
                        SEGMENT_CONTEXT,
                        &SegmentPacket::Abort {
                            msg,
                            reason: AbortReason::Cancelled,
                        }
                        .encode(),
                        now,
                    );
                    pending.finish(Err(TransportError::Timeout("the message transfer")));
                }
            } else {
                self.pump(router, link, msg, now);
            }
        }
        let elapsed = self.now();
        let before = self.incoming.len();
        self.incoming
            .retain(|_, incoming| elapsed.saturating_sub(incoming.last_activity) < INCOMING_IDLE);
        self.segment_drops.idle += (before - self.incoming.len()) as u64;
        self.reassembly_bytes = self.incoming.values().map(Incoming::held_bytes).sum();
        self.awaiting_proof.retain(|_, p| p.wanted(clock));
        for (destination, waiting) in self.awaiting_path.iter_mut() {
            let mut kept = Vec::new();
            for (payload, pending) in waiting.drain(..) {
                if pending.deadline <= clock {
                    pending.finish(Err(TransportError::NoPath(*destination)));
                } else {
                    kept.push((payload, pending));
                }
            }
            *waiting = kept;
        }
        self.awaiting_path.retain(|_, waiting| !waiting.is_empty());
    }
}
