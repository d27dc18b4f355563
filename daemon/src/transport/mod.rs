//! The transport part: the Reticulum-compatible mesh node inside `mehrd`.
//!
//! One task (the actor, `actor.rs`) owns the sans-IO [`mehr_transport::router::Router`] and
//! everything that must change with it: interfaces, local destinations, links, messages in
//! flight. The rest of the daemon talks to it through the cheap, cloneable
//! [`TransportHandle`]; interface tasks talk to it through a channel of frames. Nothing else
//! touches the router, so it needs no lock.

mod actor;
pub mod interfaces;
mod mehr_node;
mod messaging;
pub mod reports;
pub mod segments;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use crate::config::{TransportConfig, TransportLimits};
pub use interfaces::{InterfaceSpec, InterfaceType, LinkState};
pub use mehr_transport::route_policy::RoutePolicy;
use mehr_transport::{
    destination::{DestinationError, DestinationName},
    hashes::{DestinationHash, IdentityHash, LinkId, PacketHash},
    path_cost::CompactPathCost,
    router::{Counters, InterfaceId, RouterError},
};
use tokio::sync::{mpsc, oneshot};

pub use self::actor::start;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An interface could not be started.
    #[error(transparent)]
    Interface(#[from] interfaces::InterfaceError),
    /// No interface has this id.
    #[error("no interface with id {0}")]
    UnknownInterface(u32),
    /// A destination name is invalid.
    #[error("invalid destination name: {0}")]
    InvalidName(#[from] DestinationError),
    /// No path to the destination was found in time.
    #[error("no path to {0} was found (no announce heard, and no answer to a path request)")]
    NoPath(DestinationHash),
    /// The message does not fit.
    #[error("message of {len} bytes is larger than the {max} bytes allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A link could not be established or broke.
    #[error("link to {destination} failed: {reason}")]
    LinkFailed {
        /// The destination.
        destination: DestinationHash,
        /// Why.
        reason: String,
    },
    /// The operation did not finish in time.
    #[error("{0} did not finish in time")]
    Timeout(&'static str),
    /// The link is not one this node can reply on.
    #[error("link {0} is not an open inbound link")]
    UnknownLink(LinkId),
    /// The receiver gave up the message.
    #[error("the receiver refused the message: {0}")]
    Refused(&'static str),
    /// The router refused.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The transport part has stopped.
    #[error("the transport is shutting down")]
    Stopped,
}

/// An interface as `mehr interfaces` shows it.
#[derive(Debug, Clone)]
pub struct InterfaceInfo {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: InterfaceType,
    /// The server that spawned it, for accepted TCP connections.
    pub parent: Option<u32>,
    /// The remote address of an accepted connection.
    pub peer: Option<String>,
    /// Whether it carries traffic.
    pub state: LinkState,
    /// Bits per second assumed.
    pub bitrate: u64,
    /// Counters.
    pub rx_frames: u64,
    /// Counters.
    pub rx_bytes: u64,
    /// Counters.
    pub tx_frames: u64,
    /// Counters.
    pub tx_bytes: u64,
    /// Announce bytes sent.
    pub tx_announce_bytes: u64,
    /// Frames dropped on the way out.
    pub tx_dropped: u64,
    /// Frames received malformed at the framing level.
    pub rx_malformed: u64,
    /// Bytes waiting in its outbound queue.
    pub queued_bytes: u64,
    /// The spec it was started from.
    pub spec: InterfaceSpec,
}

/// A path in the table.
#[derive(Debug, Clone)]
pub struct PathView {
    /// The destination.
    pub destination: DestinationHash,
    /// Transport id of the next hop.
    pub next_hop: IdentityHash,
    /// Hops to the destination.
    pub hops: u8,
    /// Interface it leads out of.
    pub interface: u32,
    /// Seconds since it was learned.
    pub age_secs: u64,
    /// Path cost, for Mehr nodes (their `mehr.node` destinations).
    pub cost: Option<CompactPathCost>,
    /// Whether the destination is a Mehr node.
    pub mehr_node: bool,
    /// Every known way there, priced as a send's policy sees them (this path first).
    pub routes: Vec<Route>,
}

/// A Mehr node one hop away.
#[derive(Debug, Clone)]
pub struct Neighbour {
    /// Its `mehr.node` destination.
    pub destination: DestinationHash,
    /// Its identity hash (node id).
    pub node_id: IdentityHash,
    /// Interface it is reached on.
    pub interface: u32,
    /// Seconds since its last announce.
    pub last_heard_secs: u64,
    /// Its own path cost (origin cost from its announce).
    pub cost: CompactPathCost,
    /// Its public identity (from its announce).
    pub identity: mehr_transport::identity::Identity,
}

/// Router counters and table sizes.
#[derive(Debug, Clone)]
pub struct TransportStats {
    /// This node's transport id.
    pub transport_id: IdentityHash,
    /// This node's `mehr.node` destination.
    pub mehr_destination: DestinationHash,
    /// The app data of this node's announce.
    pub announce_app_data: Vec<u8>,
    /// Router counters (received, sent, dropped per reason).
    pub counters: Counters,
    /// Paths known.
    pub paths: usize,
    /// Links this node is an end of.
    pub links: usize,
    /// Messages dropped because a subscriber read too slowly.
    pub subscriber_drops: u64,
    /// Control messages dropped as malformed or unauthenticated.
    pub control_rejected: u64,
    /// Control messages posted with [`TransportHandle::post_control`] and dropped because
    /// the queue to the transport was full.
    pub control_posts_dropped: u64,
    /// Drops the daemon's own limits made, beyond the router's reasons: `(reason, count)`
    /// (segment reassembly, inbound TCP connections, Mehr path and neighbour tables).
    pub limit_drops: Vec<(&'static str, u64)>,
}

/// How an inbound message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageVia {
    /// In a single packet.
    Packet,
    /// Over an inbound link (reply with [`TransportHandle::reply`]).
    Link(LinkId),
}

/// A message for a local app destination.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The local destination it was sent to.
    pub destination: DestinationHash,
    /// The bytes.
    pub payload: Vec<u8>,
    /// How it came.
    pub via: MessageVia,
    /// Interface it arrived on (packets only).
    pub interface: Option<u32>,
}

/// How a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMethod {
    /// One encrypted packet.
    Packet,
    /// Segments over a link.
    Link,
}

/// The outcome of a send.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// How it went.
    pub method: SendMethod,
    /// Whether the receiver proved delivery (packet proof, or acknowledgement of every segment).
    pub delivered: bool,
    /// Time from sending to the proof.
    pub rtt: Option<Duration>,
    /// Hash of the packet (packet sends).
    pub packet_hash: Option<PacketHash>,
    /// The way it left this node, when a path was known.
    pub route: Option<Route>,
}

/// The way a message left this node: the next hop the sender's [`RoutePolicy`] chose among
/// the known paths (relays after it forward along their own paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Transport id of the next hop (the destination's own hash when it is a neighbour).
    pub next_hop: IdentityHash,
    /// Hops to the destination.
    pub hops: u8,
    /// The path's cost from here, first link included, when the destination is a Mehr
    /// node's (only their paths carry costs).
    pub cost: Option<CompactPathCost>,
}

/// The control message types: the first byte of every message to a `mehr.node` destination.
/// Each part above the transport owns a range and registers its types with
/// [`TransportHandle::control_messages`].
pub mod control_kinds {
    /// Path-cost annotation (the transport itself).
    pub const PATH_COST: u8 = 0x01;
    /// First type owned by the ledger (payment channels, tickets, settlements): 0x10–0x1F.
    pub const LEDGER_FIRST: u8 = 0x10;
    /// First type owned by the marketplace (adverts, queries, agreements): 0x20–0x2F.
    pub const MARKET_FIRST: u8 = 0x20;
    /// First type owned by remote compute: 0x30–0x3F.
    pub const COMPUTE_FIRST: u8 = 0x30;
    /// First type owned by remote storage: 0x40–0x4F.
    pub const STORAGE_FIRST: u8 = 0x40;
}

/// The `mehr.node` destination of the node whose identity hash (node id) is `node_id`:
/// computable from the id alone, so a node can be addressed before its announce is heard
/// (sending then asks the network for the path).
pub fn mehr_node_destination(node_id: &IdentityHash) -> DestinationHash {
    mehr_transport::destination::destination_hash(
        &DestinationName::mehr_node().name_hash(),
        Some(node_id),
    )
}

/// A data packet that left this node on a path, as the economics layer sees it: forwarded
/// for another node (`upstream` handed it over) or originated here (`upstream` is `None` and
/// `originated` is true).
///
/// A neighbour is named only where it is known for sure who handed a packet over or who
/// received it: on point-to-point interfaces (TCP connections, serial, simulated links) with
/// exactly one Mehr neighbour. On shared media (UDP) both are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedPacket {
    /// `Blake3(destination ‖ context ‖ data)`: the same at every hop (decision 4).
    pub relay_hash: [u8; 32],
    /// Encoded size in bytes.
    pub bytes: u32,
    /// True when this node sent it, false when it relayed it.
    pub originated: bool,
    /// The Mehr neighbour that handed it over (relayed packets only).
    pub upstream: Option<IdentityHash>,
    /// The Mehr neighbour it was handed to.
    pub downstream: Option<IdentityHash>,
}

/// A message this node sent through a relay that its destination proved it received: a
/// packet proof signed with the destination's key, or every segment of a link message
/// acknowledged over the link the destination authenticated. These are the delivery
/// receipts relay agreements are charged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvedDelivery {
    /// The relay it left through (the first hop).
    pub next_hop: IdentityHash,
    /// Hops to the destination.
    pub hops: u8,
    /// Payload bytes delivered.
    pub bytes: u64,
}

/// The stream of [`ProvedDelivery`] reports.
pub type DeliveryReports = reports::Reports<ProvedDelivery>;

/// The stream of [`ForwardedPacket`] reports.
pub type ForwardReports = reports::Reports<ForwardedPacket>;

/// A Mehr control message addressed to this node's `mehr.node` destination.
#[derive(Debug, Clone)]
pub struct ControlMessage {
    /// The message-type byte.
    pub kind: u8,
    /// The bytes after it.
    pub body: Vec<u8>,
    /// The interface a single-packet message arrived on (`None` over a link): link-local
    /// messages such as beacons tell their neighbour by it.
    pub interface: Option<u32>,
}

/// Inbound messages for one app destination, until dropped.
pub struct Listener {
    /// The destination listened on.
    pub destination: DestinationHash,
    /// The messages.
    pub messages: mpsc::Receiver<InboundMessage>,
    subscriber: u64,
    commands: mpsc::Sender<actor::Command>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.commands.try_send(actor::Command::Unlisten {
            destination: self.destination,
            subscriber: self.subscriber,
        });
    }
}

/// Control messages posted with [`TransportHandle::post_control`] that may wait for the
/// actor at once; more are dropped and counted. Posts have their own queue so that a burst
/// of gossip never fills the one that commands (and the API calls behind them) wait in.
const POST_QUEUE: usize = 1024;

/// Talks to the transport actor. Cheap to clone.
#[derive(Clone)]
pub struct TransportHandle {
    commands: mpsc::Sender<actor::Command>,
    posts: mpsc::Sender<actor::Post>,
    posts_dropped: Arc<AtomicU64>,
    transport_id: IdentityHash,
    mehr_destination: DestinationHash,
}

impl TransportHandle {
    /// This node's transport id (its identity hash).
    pub fn transport_id(&self) -> IdentityHash {
        self.transport_id
    }

    /// This node's `mehr.node` destination.
    pub fn mehr_destination(&self) -> DestinationHash {
        self.mehr_destination
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> actor::Command,
    ) -> Result<T, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| TransportError::Stopped)?;
        rx.await.map_err(|_| TransportError::Stopped)
    }

    /// Every interface with its counters.
    pub async fn interfaces(&self) -> Result<Vec<InterfaceInfo>, TransportError> {
        self.ask(actor::Command::Interfaces).await
    }

    /// Starts an interface at run time.
    pub async fn add_interface(&self, spec: InterfaceSpec) -> Result<u32, TransportError> {
        self.ask(|reply| actor::Command::AddInterface { spec, reply })
            .await?
    }

    /// Stops and removes an interface.
    pub async fn remove_interface(&self, id: u32) -> Result<(), TransportError> {
        self.ask(|reply| actor::Command::RemoveInterface {
            id: InterfaceId(id),
            reply,
        })
        .await?
    }

    /// The path table.
    pub async fn paths(&self) -> Result<Vec<PathView>, TransportError> {
        self.ask(actor::Command::Paths).await
    }

    /// Mehr nodes one hop away.
    pub async fn neighbours(&self) -> Result<Vec<Neighbour>, TransportError> {
        self.ask(actor::Command::Neighbours).await
    }

    /// The 64-byte public key (X25519 ‖ Ed25519) of the node `node_id`, if its `mehr.node`
    /// announce was heard.
    pub async fn identity_of(
        &self,
        node_id: IdentityHash,
    ) -> Result<Option<[u8; 64]>, TransportError> {
        self.ask(|reply| actor::Command::Identity { node_id, reply })
            .await
    }

    /// Counters and table sizes.
    pub async fn stats(&self) -> Result<TransportStats, TransportError> {
        self.ask(actor::Command::Stats).await
    }

    /// The path to `destination`, asking the network for it if unknown, waiting at most
    /// `timeout`.
    pub async fn request_path(
        &self,
        destination: DestinationHash,
        timeout: Duration,
    ) -> Result<PathView, TransportError> {
        let waiter = self
            .ask(|reply| actor::Command::RequestPath { destination, reply })
            .await??;
        match tokio::time::timeout(timeout, waiter).await {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(_)) => Err(TransportError::Stopped),
            Err(_) => Err(TransportError::NoPath(destination)),
        }
    }

    /// Sets the relay fee this node announces, μMHR per byte. A rise is announced at once
    /// (neighbours refuse to pay more than the announced fee); a fall only when it exceeds
    /// 25 %, otherwise with the next periodic announce. Returns whether it announced.
    pub async fn set_relay_price(&self, cost_per_byte: f64) -> Result<bool, TransportError> {
        self.ask(|reply| actor::Command::SetRelayPrice {
            cost_per_byte,
            reply,
        })
        .await?
    }

    /// Announces this node (and every app destination that asked to be announced) now.
    /// Returns how many destinations were announced.
    pub async fn announce_now(&self) -> Result<usize, TransportError> {
        self.ask(actor::Command::AnnounceNow).await?
    }

    /// Registers the app destination `name` (with this node's identity) and returns its
    /// inbound messages. The destination stays registered while a listener is alive.
    pub async fn listen(&self, name: &str, announce: bool) -> Result<Listener, TransportError> {
        let name = DestinationName::parse(name)?;
        let (tx, rx) = mpsc::channel(256);
        let (destination, subscriber) = self
            .ask(|reply| actor::Command::Listen {
                name,
                announce,
                subscriber: tx,
                reply,
            })
            .await??;
        Ok(Listener {
            destination,
            messages: rx,
            subscriber,
            commands: self.commands.clone(),
        })
    }

    /// Sends `payload` to `destination`, encrypted to it: as one packet when it fits, over a
    /// link otherwise. Waits for the proof of delivery at most `timeout`.
    pub async fn send(
        &self,
        destination: DestinationHash,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<SendReport, TransportError> {
        self.send_with(destination, payload, RoutePolicy::Shortest, timeout)
            .await
    }

    /// Like [`TransportHandle::send`], leaving by the known path `policy` prefers. A message
    /// sent over a link takes the link's route: the policy picks it when the link opens.
    pub async fn send_with(
        &self,
        destination: DestinationHash,
        payload: Vec<u8>,
        policy: RoutePolicy,
        timeout: Duration,
    ) -> Result<SendReport, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, outcome) = oneshot::channel();
        let command = actor::Command::Send {
            destination,
            payload,
            policy,
            deadline,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| TransportError::Stopped)?;
        // The actor answers by the deadline; the margin covers a busy actor.
        match tokio::time::timeout_at(deadline + Duration::from_millis(250), outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Stopped),
            Err(_) => Err(TransportError::Timeout("the send")),
        }
    }

    /// Sends one packet's worth of `payload` back over an inbound link.
    pub async fn reply(
        &self,
        link: LinkId,
        payload: Vec<u8>,
    ) -> Result<PacketHash, TransportError> {
        self.ask(|reply| actor::Command::Reply {
            link,
            payload,
            reply,
        })
        .await?
    }

    /// Sends the control message `kind ‖ body` to the node `node_id` (its `mehr.node`
    /// destination), as [`TransportHandle::send`] does. Packets carry no sender, so a body that
    /// needs one names it in a signed record.
    pub async fn send_control(
        &self,
        node_id: IdentityHash,
        kind: u8,
        body: &[u8],
        timeout: Duration,
    ) -> Result<SendReport, TransportError> {
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(kind);
        payload.extend_from_slice(body);
        self.send(mehr_node_destination(&node_id), payload, timeout)
            .await
    }

    /// Queues the control message `kind ‖ body` for the node `node_id` and returns at once,
    /// for messages whose sender waits for neither a proof nor the outcome (gossip, beacons,
    /// ledger messages, replies): no task per message, and no wait for a proof that kinds
    /// registered with [`TransportHandle::control_messages`] never send. The transport sends
    /// it as [`TransportHandle::send_control`] would, trying for a path or a link for at most
    /// `give_up_after`, and logs a failure at debug level.
    ///
    /// Returns false when the message was not queued: the queue was full (the message is
    /// dropped and counted in [`TransportStats::control_posts_dropped`]) or the transport
    /// has stopped.
    pub fn post_control(
        &self,
        node_id: IdentityHash,
        kind: u8,
        body: &[u8],
        give_up_after: Duration,
    ) -> bool {
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(kind);
        payload.extend_from_slice(body);
        let post = actor::Post {
            destination: mehr_node_destination(&node_id),
            payload,
            deadline: tokio::time::Instant::now() + give_up_after,
        };
        match self.posts.try_send(post) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.posts_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Turns on reports of every data packet that leaves on a path (see [`ForwardedPacket`]);
    /// at most `capacity` wait in the queue, more are dropped and counted. One receiver at a
    /// time: a second call replaces the first.
    pub async fn forward_reports(&self, capacity: usize) -> Result<ForwardReports, TransportError> {
        let (sink, reports) = reports::channel(capacity);
        self.ask(|reply| actor::Command::ForwardReports { sink, reply })
            .await?;
        Ok(reports)
    }

    /// Turns on reports of messages this node sent through a relay and saw proved (see
    /// [`ProvedDelivery`]); at most `capacity` wait in the queue, more are dropped and
    /// counted. One receiver at a time: a second call replaces the first.
    pub async fn delivery_reports(
        &self,
        capacity: usize,
    ) -> Result<DeliveryReports, TransportError> {
        let (sink, reports) = reports::channel(capacity);
        self.ask(|reply| actor::Command::DeliveryReports { sink, reply })
            .await?;
        Ok(reports)
    }

    /// Receives every control message of type `kind` sent to this node's `mehr.node`
    /// destination. Used by the parts above the transport (market, ledger, …). Their packets
    /// are not proved: for periodic traffic (gossip, beacons, digests) a proof would double
    /// the packets on slow links, and the next round repeats what was lost.
    pub async fn control_messages(
        &self,
        kind: u8,
    ) -> Result<mpsc::Receiver<ControlMessage>, TransportError> {
        self.register_control(kind, false).await
    }

    /// Like [`TransportHandle::control_messages`], but every packet of this kind is proved
    /// to its sender once taken, so a sender waiting on [`TransportHandle::send_control`]
    /// learns it was delivered (for messages it retries until they are).
    pub async fn acknowledged_control_messages(
        &self,
        kind: u8,
    ) -> Result<mpsc::Receiver<ControlMessage>, TransportError> {
        self.register_control(kind, true).await
    }

    async fn register_control(
        &self,
        kind: u8,
        acknowledge: bool,
    ) -> Result<mpsc::Receiver<ControlMessage>, TransportError> {
        let (tx, rx) = mpsc::channel(1024);
        self.ask(|reply| actor::Command::RegisterControl {
            kind,
            sender: tx,
            acknowledge,
            reply,
        })
        .await?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use mehr_transport::identity::PrivateIdentity;
    use rand::rngs::OsRng;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::events::EventBus;

    /// A control kind no part of the daemon owns.
    const TEST_KIND: u8 = 0x3f;

    async fn transport(
        interfaces: Vec<InterfaceSpec>,
        stop: &CancellationToken,
    ) -> TransportHandle {
        let (handle, _task) = start(
            PrivateIdentity::generate(&mut OsRng),
            TransportConfig::default(),
            interfaces,
            Arc::new(EventBus::default()),
            stop.clone(),
        )
        .await
        .unwrap();
        handle
    }

    #[tokio::test]
    async fn a_posted_control_message_arrives() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = InterfaceSpec::new(InterfaceType::TcpServer);
        server.listen_ip = Some([127, 0, 0, 1].into());
        server.listen_port = Some(port);
        let mut client = InterfaceSpec::new(InterfaceType::TcpClient);
        client.target_host = Some("127.0.0.1".into());
        client.target_port = Some(port);
        let stop = CancellationToken::new();
        let sender = transport(vec![server], &stop).await;
        let receiver = transport(vec![client], &stop).await;
        let mut inbox = receiver.control_messages(TEST_KIND).await.unwrap();

        let destination = mehr_node_destination(&receiver.transport_id());
        let mut path_known = false;
        for _ in 0..50 {
            let _ = receiver.announce_now().await;
            if sender
                .request_path(destination, Duration::from_millis(200))
                .await
                .is_ok()
            {
                path_known = true;
                break;
            }
        }
        assert!(path_known, "the sender never learned the receiver's path");

        assert!(sender.post_control(
            receiver.transport_id(),
            TEST_KIND,
            b"hello",
            Duration::from_secs(5)
        ));
        let message = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .expect("the posted message arrives")
            .expect("the inbox is open");
        assert_eq!(message.kind, TEST_KIND);
        assert_eq!(message.body, b"hello");
        assert_eq!(sender.stats().await.unwrap().control_posts_dropped, 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn posts_beyond_the_queue_are_dropped_and_counted_in_stats() {
        let stop = CancellationToken::new();
        let handle = transport(Vec::new(), &stop).await;
        let nowhere = PrivateIdentity::generate(&mut OsRng).hash();
        // The test's runtime has one thread: the actor cannot take a post until this loop,
        // which never yields, is done, so exactly the queue's capacity is taken.
        let queued = (0..POST_QUEUE + 10)
            .filter(|_| handle.post_control(nowhere, TEST_KIND, b"x", Duration::from_millis(200)))
            .count();
        assert_eq!(queued, POST_QUEUE);
        assert_eq!(handle.stats().await.unwrap().control_posts_dropped, 10);
        // Once the actor has drained the queue, posts are taken again; a post waiting for a
        // path that never comes is given up at its deadline without anyone noticing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(handle.post_control(nowhere, TEST_KIND, b"x", Duration::from_millis(50)));
        assert_eq!(handle.stats().await.unwrap().control_posts_dropped, 10);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_post_to_a_stopped_transport_is_refused_not_counted() {
        let (commands, _) = mpsc::channel(1);
        let (posts, receiver) = mpsc::channel(1);
        drop(receiver);
        let handle = TransportHandle {
            commands,
            posts,
            posts_dropped: Arc::default(),
            transport_id: IdentityHash([1; 16]),
            mehr_destination: DestinationHash([2; 16]),
        };
        assert!(!handle.post_control(IdentityHash([3; 16]), TEST_KIND, b"x", Duration::ZERO));
        assert_eq!(handle.posts_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn node_destination_follows_from_the_node_id_alone() {
        let identity = PrivateIdentity::generate(&mut rand::rngs::OsRng);
        assert_eq!(
            mehr_node_destination(&identity.hash()),
            DestinationName::mehr_node().single_hash(identity.public())
        );
    }
}
