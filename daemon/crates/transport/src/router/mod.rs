//! A sans-IO Reticulum transport node.
//!
//! The router takes frames, time and commands in and puts [`Action`]s out; the I/O layer
//! drains them ([`Router::poll_action`]) and does what they say. It owns:
//!
//! - duplicate suppression (a bounded two-generation set of packet hashes);
//! - the path table (destination → next hop, interface, hops, expiry, recent announce random
//!   hashes, the announce itself for answering path requests) and the known identities;
//! - announce validation and rebroadcast: HEADER_2 with this node's transport id, a random
//!   delay of up to 0.5 s, at most two rebroadcasts (fewer when neighbours are heard
//!   rebroadcasting it), the per-interface announce cap (queued, not dropped);
//! - path requests: answered for local destinations and, in transport mode, from the path
//!   table; searched for on other interfaces when they come from access-point, gateway,
//!   roaming or boundary interfaces;
//! - forwarding in transport: HEADER_2 → HEADER_2 with the next hop's transport id, or
//!   HEADER_1 on the last hop; the link table (link requests and their proofs, then link
//!   traffic both ways) and the reverse table (proofs back to the sender);
//! - local SINGLE destinations: decryption, delivery, optional automatic proofs, path
//!   responses, and links in both roles (a Python RNS program can open a link to us);
//! - counters of every drop reason.
//!
//! Every table has a cap. The path and known-identity tables evict the oldest entry without
//! a history (a proved path) and refuse newcomers when none is left; the short-lived tables
//! evict the oldest entry. Inbound announces are rate-limited per interface before their
//! signature is checked, and link handshakes are bounded (the oldest unestablished one makes
//! room). Call [`Router::tick`] every 100–250 ms.

mod announces;
mod bounded;
mod counters;
mod forwarding;
mod interface;
mod local;
mod rate;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use rand::{CryptoRng, RngCore};

use crate::announce::{Announce, RANDOM_HASH_LEN, emitted_at};
use crate::clock::Timestamp;
use crate::destination::DestinationName;
use crate::hashes::{DestinationHash, IdentityHash, LinkId, PacketHash};
use crate::identity::{Identity, IdentityError, PrivateIdentity, X25519_KEY_LEN};
use crate::link::{CloseReason, Link, LinkError, LinkState, Role};
use crate::packet::{
    Context, DestinationType, ENCRYPTED_MDU, MAX_HOPS, MTU, Packet, PacketError, PacketType,
};
use crate::path_request::{PathRequest, path_request_destination};
use crate::proof::prove_packet;

use bounded::{BoundedMap, RecentSet};
pub use counters::{Counters, DropReason};
use interface::{AnnounceAdmission, InboundAnnounceLimit, InterfaceState};
pub use interface::{InterfaceConfig, InterfaceId, InterfaceMode};

/// Random window for announce rebroadcast.
const REBROADCAST_WINDOW_MS: u32 = 500;
/// Wait before retrying a rebroadcast that no neighbour repeated.
const REBROADCAST_RETRY: Duration = Duration::from_millis(5_500);
/// An announce is rebroadcast at most this often (counting path responses' single send).
const MAX_REBROADCASTS: u8 = 2;
/// Hearing this many neighbours repeat our rebroadcast ends our retries.
const LOCAL_REBROADCASTS_MAX: u8 = 2;
/// Delay before answering a path request from the path table, so that a node directly
/// connected to the destination can answer first.
const PATH_REQUEST_GRACE: Duration = Duration::from_millis(400);
/// Extra delay on roaming interfaces.
const PATH_REQUEST_ROAMING_GRACE: Duration = Duration::from_millis(1_500);
/// How long a path request searched for on other interfaces is remembered.
const PATH_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Path requests a relay sends of its own for traffic it had to drop for want of a path
/// (see `Router::rediscover`), per second and in a burst: enough for a restarted relay to
/// find the paths of its busy flows within seconds, too few for traffic to unknown
/// destinations to turn the relay into a path-request amplifier.
const LOST_PATH_REQUESTS_PER_SECOND: f64 = 4.0;
const LOST_PATH_REQUEST_BURST: u32 = 32;
/// Per-hop allowance for proofs (link request proofs and delivery proofs).
const PER_HOP_TIMEOUT: Duration = Duration::from_secs(6);
/// Interval between table culls.
const CULL_INTERVAL: Duration = Duration::from_secs(5);
/// Other paths kept per destination besides Reticulum's own (one per next hop).
const MAX_ALTERNATES: usize = 4;

/// A random source the router owns.
pub trait RouterRng: RngCore + CryptoRng + Send {}
impl<T: RngCore + CryptoRng + Send> RouterRng for T {}

/// Limits and timeouts. Defaults follow Reticulum where it has a value and keep memory
/// bounded (a few tens of MB at most) where it has none.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    /// Forward packets and rebroadcast announces for others (Reticulum's `enable_transport`).
    pub transport_enabled: bool,
    /// Lifetime of a path not used or refreshed (Reticulum: one week).
    pub path_expiry: Duration,
    /// Lifetime of paths learned on access-point interfaces (one day).
    pub access_point_path_expiry: Duration,
    /// Lifetime of paths learned on roaming interfaces (six hours).
    pub roaming_path_expiry: Duration,
    /// Lifetime of reverse-table entries (eight minutes).
    pub reverse_entry_timeout: Duration,
    /// Lifetime of an idle, validated link-table entry (fifteen minutes).
    pub link_entry_timeout: Duration,
    /// How long a queued announce may wait for announce budget (three hours).
    pub queued_announce_lifetime: Duration,
    /// Path table size.
    pub max_paths: usize,
    /// Known destination identities.
    pub max_known_destinations: usize,
    /// Reverse table size.
    pub max_reverse_entries: usize,
    /// Link table size (links this node transports).
    pub max_link_entries: usize,
    /// Links this node is an end of.
    pub max_local_links: usize,
    /// Announces waiting for rebroadcast.
    pub max_pending_announces: usize,
    /// Queued announces per interface.
    pub max_queued_announces: usize,
    /// Packet hashes remembered for duplicate suppression.
    pub packet_hash_capacity: usize,
    /// Path request tags remembered.
    pub path_request_tag_capacity: usize,
    /// Delivery receipts awaiting proofs.
    pub max_receipts: usize,
    /// Path requests being searched for.
    pub max_path_discoveries: usize,
    /// Announce random hashes kept per path.
    pub max_random_blobs: usize,
    /// Inbound announces one interface may have verified per second, per class (refreshes
    /// of paths it carries; everything else); 0 disables the limit. Checked before the
    /// signature, which is the expensive part.
    pub inbound_announces_per_second: f64,
    /// Announces an interface may send in a burst, per class, before the rate applies.
    pub inbound_announce_burst: u32,
    /// Links this node answers that are still in their handshake (proof sent, no RTT packet
    /// yet). Beyond it, the oldest unestablished one is dropped for the newcomer, so link
    /// requests alone never take the slots of established links.
    pub max_handshaking_links: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            transport_enabled: true,
            path_expiry: Duration::from_secs(7 * 24 * 3600),
            access_point_path_expiry: Duration::from_secs(24 * 3600),
            roaming_path_expiry: Duration::from_secs(6 * 3600),
            reverse_entry_timeout: Duration::from_secs(8 * 60),
            link_entry_timeout: Duration::from_secs(900),
            queued_announce_lifetime: Duration::from_secs(3 * 3600),
            max_paths: 16_384,
            max_known_destinations: 16_384,
            max_reverse_entries: 16_384,
            max_link_entries: 8_192,
            max_local_links: 1_024,
            max_pending_announces: 4_096,
            max_queued_announces: 1_024,
            packet_hash_capacity: 200_000,
            path_request_tag_capacity: 16_000,
            max_receipts: 1_024,
            max_path_discoveries: 256,
            max_random_blobs: 16,
            inbound_announces_per_second: 20.0,
            inbound_announce_burst: 200,
            max_handshaking_links: 128,
        }
    }
}

/// The mapping from the caller's monotonic clock to wall-clock time, used only for the
/// emission time written into announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// A monotonic timestamp.
    pub at: Timestamp,
    /// Unix seconds at that timestamp.
    pub unix_secs: u64,
}

/// Whether received packets are proved automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProofStrategy {
    /// Never; the application may call [`Router::prove_delivery`].
    #[default]
    None,
    /// Every packet that decrypts.
    All,
    /// Packets on links to this destination (a sender that segments a message over a link
    /// waits for their proofs); single packets only through [`Router::prove_delivery`]. For
    /// a destination whose small packets are mostly periodic traffic nobody waits on.
    Links,
}

/// A SINGLE destination served by this node.
#[derive(Clone, Debug)]
pub struct LocalDestination {
    /// The destination's identity (private).
    pub identity: PrivateIdentity,
    /// Its name.
    pub name: DestinationName,
    /// App data put in its announces.
    pub app_data: Vec<u8>,
    /// Whether link requests are accepted.
    pub accepts_links: bool,
    /// Whether received packets are proved automatically.
    pub proof_strategy: ProofStrategy,
}

impl LocalDestination {
    /// A destination that accepts links, has no app data and proves nothing automatically.
    pub fn new(identity: PrivateIdentity, name: DestinationName) -> Self {
        Self {
            identity,
            name,
            app_data: Vec::new(),
            accepts_links: true,
            proof_strategy: ProofStrategy::None,
        }
    }

    /// The destination hash.
    pub fn hash(&self) -> DestinationHash {
        self.name.single_hash(self.identity.public())
    }
}

/// A destination heard in a valid announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownDestination {
    /// Its identity.
    pub identity: Identity,
    /// App data of the latest announce.
    pub app_data: Vec<u8>,
    /// Ratchet key of the latest announce; packets to the destination are encrypted to it.
    pub ratchet: Option<[u8; X25519_KEY_LEN]>,
    /// Random hash of the latest announce.
    pub random_hash: [u8; RANDOM_HASH_LEN],
    /// When it was last heard.
    pub heard_at: Timestamp,
}

/// A path as the router sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// Destination.
    pub destination: DestinationHash,
    /// Transport id of the next hop (the destination hash itself when it is a neighbour).
    pub next_hop: IdentityHash,
    /// Hops to the destination.
    pub hops: u8,
    /// Interface the path leads out of.
    pub interface: InterfaceId,
    /// When the announce that set it was received.
    pub learned_at: Timestamp,
}

/// Sizes of the router's tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Paths.
    pub paths: usize,
    /// Known destination identities.
    pub known_destinations: usize,
    /// Reverse-table entries.
    pub reverse_entries: usize,
    /// Link-table entries (links transported).
    pub link_entries: usize,
    /// Links this node is an end of.
    pub local_links: usize,
    /// Announces waiting for rebroadcast.
    pub pending_announces: usize,
    /// Announces queued behind interface caps, all interfaces.
    pub queued_announces: usize,
    /// Remembered packet hashes.
    pub packet_hashes: usize,
}

/// Transmission priority of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Proofs, link handshakes, keepalives, path requests.
    Control,
    /// Payload.
    Data,
    /// Announces and path responses.
    Announce,
}

/// Something the router reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterEvent {
    /// A path was learned or replaced.
    PathLearned {
        /// Destination.
        destination: DestinationHash,
        /// Hops to it.
        hops: u8,
        /// Interface it leads out of.
        interface: InterfaceId,
    },
    /// A valid announce that changed the path table.
    AnnounceReceived {
        /// The announce (app_data, identity, ratchet…).
        announce: Box<Announce>,
        /// Hops it travelled.
        hops: u8,
        /// Interface it arrived on.
        interface: InterfaceId,
        /// Whether it answered a path request.
        path_response: bool,
    },
    /// A packet was dropped (routine reasons are only counted).
    PacketDropped {
        /// Why.
        reason: DropReason,
        /// Where it came from, if from an interface.
        interface: Option<InterfaceId>,
    },
    /// A packet this node sent was proved delivered.
    DeliveryProved {
        /// Hash of the sent packet.
        packet_hash: PacketHash,
    },
    /// No proof arrived in time for a packet sent with [`Router::send`].
    DeliveryTimedOut {
        /// Hash of the sent packet.
        packet_hash: PacketHash,
    },
    /// A link reached the active state.
    LinkEstablished {
        /// Link id.
        link_id: LinkId,
        /// Destination it leads to or serves.
        destination: DestinationHash,
        /// This node's role.
        role: Role,
        /// Round-trip time.
        rtt: Duration,
    },
    /// Data arrived on a link.
    LinkData {
        /// Link id.
        link_id: LinkId,
        /// Context byte.
        context: Context,
        /// Payload.
        plaintext: Vec<u8>,
        /// Hash of the carrying packet (for [`Router::prove_link_packet`]).
        packet_hash: PacketHash,
    },
    /// The initiator of a link revealed its identity.
    LinkIdentified {
        /// Link id.
        link_id: LinkId,
        /// The identity.
        identity: Box<Identity>,
    },
    /// A link closed.
    LinkClosed {
        /// Link id.
        link_id: LinkId,
        /// Why.
        reason: CloseReason,
    },
    /// A data or link-request packet left on a path: forwarded for another node, or sent by
    /// this node. Only reported after [`Router::set_forwarding_reports`] turned it on (the
    /// economics layer uses it to charge the upstream neighbour and to check the tickets of
    /// the downstream one).
    Forwarded {
        /// [`Packet::relay_hash`]: the same at every hop.
        relay_hash: [u8; 32],
        /// Interface it arrived on; `None` when this node originated it.
        from: Option<InterfaceId>,
        /// Interface it left on.
        to: InterfaceId,
        /// Its encoded size.
        bytes: u32,
    },
}

/// What the I/O layer must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `frame` (a packet, unframed) on `interface`.
    Transmit {
        /// Interface.
        interface: InterfaceId,
        /// The packet bytes; the interface adds its framing.
        frame: Vec<u8>,
        /// Priority.
        priority: Priority,
    },
    /// A packet for a local destination, decrypted.
    Deliver {
        /// The local destination.
        destination: DestinationHash,
        /// The packet as received (data still encrypted).
        packet: Packet,
        /// The decrypted data.
        plaintext: Vec<u8>,
        /// Interface it arrived on (for [`Router::prove_delivery`]).
        interface: InterfaceId,
    },
    /// Something to report.
    Event(RouterEvent),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouterError {
    /// No announce has been heard for the destination, so its key is unknown.
    #[error("destination {0} is unknown: no announce heard for it")]
    UnknownDestination(DestinationHash),
    /// The destination is not registered here.
    #[error("destination {0} is not a local destination")]
    NotLocal(DestinationHash),
    /// No such link.
    #[error("link {0} does not exist")]
    UnknownLink(LinkId),
    /// The link's interface is not known yet (handshake incomplete).
    #[error("link {0} is not established")]
    LinkNotReady(LinkId),
    /// The local link table is full.
    #[error("too many links: the limit is {0}")]
    TooManyLinks(usize),
    /// No interface is registered.
    #[error("no interfaces to send on")]
    NoInterfaces,
    /// The payload does not fit.
    #[error("payload of {len} bytes exceeds the {max} bytes one packet carries")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A packet problem.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A link problem.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// An encryption problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

#[derive(Debug)]
struct PathEntry {
    learned_at: Timestamp,
    last_used: Timestamp,
    next_hop: IdentityHash,
    hops: u8,
    expires: Timestamp,
    random_blobs: VecDeque<[u8; RANDOM_HASH_LEN]>,
    interface: InterfaceId,
    announce: Packet,
    /// The destination answered through this node: a link proof it signed was verified
    /// here. Such paths are never evicted to make room for unproved ones.
    proved: bool,
    /// Other ways to the destination, through other next hops (see [`AlternatePath`]).
    alternates: Vec<AlternatePath>,
}

impl PathEntry {
    fn timebase(&self) -> u64 {
        self.random_blobs.iter().map(emitted_at).max().unwrap_or(0)
    }

    /// The alternates to keep when an announce through `new_next_hop`, emitted at
    /// `emitted`, replaces this path: the unexpired ones through other next hops that heard
    /// an announce at least as new (this path among them). Older ones may describe a path
    /// since broken; the new announce heard through other neighbours adds them back.
    fn alternates_after_replacement(
        &self,
        new_next_hop: IdentityHash,
        emitted: u64,
        now: Timestamp,
    ) -> Vec<AlternatePath> {
        let this = AlternatePath {
            next_hop: self.next_hop,
            interface: self.interface,
            hops: self.hops,
            expires: self.expires,
            random_blob: self.random_blobs.back().copied().unwrap_or_default(),
        };
        let mut kept: Vec<AlternatePath> = self
            .alternates
            .iter()
            .copied()
            .chain(std::iter::once(this))
            .filter(|a| {
                a.next_hop != new_next_hop
                    && now < a.expires
                    && emitted_at(&a.random_blob) >= emitted
            })
            .collect();
        kept.sort_by_key(|a| a.hops);
        kept.truncate(MAX_ALTERNATES);
        kept
    }

    fn candidate(&self) -> PathCandidate {
        PathCandidate {
            next_hop: self.next_hop,
            interface: self.interface,
            hops: self.hops,
            random_hash: self.random_blobs.back().copied().unwrap_or_default(),
            primary: true,
        }
    }
}

/// A path to a destination other than the one Reticulum's rules picked: heard through
/// another neighbour, or with more hops. Never used to forward others' packets, only when
/// this node's own sender asks for it ([`Router::send_via`]).
#[derive(Debug, Clone, Copy)]
struct AlternatePath {
    next_hop: IdentityHash,
    interface: InterfaceId,
    hops: u8,
    expires: Timestamp,
    random_blob: [u8; RANDOM_HASH_LEN],
}

impl AlternatePath {
    fn candidate(&self) -> PathCandidate {
        PathCandidate {
            next_hop: self.next_hop,
            interface: self.interface,
            hops: self.hops,
            random_hash: self.random_blob,
            primary: false,
        }
    }
}

/// One way to reach a destination, as [`Router::path_candidates`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathCandidate {
    /// Transport id of the next hop (the destination hash itself when it is a neighbour).
    pub next_hop: IdentityHash,
    /// Interface it leads out of.
    pub interface: InterfaceId,
    /// Hops to the destination.
    pub hops: u8,
    /// Random hash of the announce heard this way (keys the path-cost annotations).
    pub random_hash: [u8; RANDOM_HASH_LEN],
    /// Whether this is the path Reticulum's rules chose (the one others' packets take).
    pub primary: bool,
}

#[derive(Debug, Clone)]
struct PendingAnnounce {
    retransmit_at: Timestamp,
    retries: u8,
    hops: u8,
    packet: Packet,
    local_rebroadcasts: u8,
    path_response: bool,
    attached: Option<InterfaceId>,
}

#[derive(Debug)]
struct ReverseEntry {
    received_on: InterfaceId,
    sent_on: InterfaceId,
    at: Timestamp,
}

#[derive(Debug)]
struct LinkEntry {
    at: Timestamp,
    next_hop_interface: InterfaceId,
    remaining_hops: u8,
    received_on: InterfaceId,
    taken_hops: u8,
    destination: DestinationHash,
    validated: bool,
    proof_deadline: Timestamp,
}

#[derive(Debug)]
struct Discovery {
    requesting: Vec<InterfaceId>,
    deadline: Timestamp,
}

#[derive(Debug)]
struct Receipt {
    packet_hash: PacketHash,
    signer: VerifyingKey,
    deadline: Timestamp,
}

#[derive(Debug)]
struct LocalLink {
    link: Link,
    /// When this node accepted (or sent) the link request.
    opened_at: Timestamp,
    interface: Option<InterfaceId>,
    prove_all: bool,
}

/// The transport node.
pub struct Router {
    config: RouterConfig,
    identity: PrivateIdentity,
    transport_id: IdentityHash,
    path_request_hash: DestinationHash,
    rng: Box<dyn RouterRng>,
    clock: WallClock,
    interfaces: BTreeMap<InterfaceId, InterfaceState>,
    destinations: HashMap<DestinationHash, LocalDestination, bounded::FastHash>,
    /// The emission time (Unix seconds) of each local destination's last announce.
    last_emitted: HashMap<DestinationHash, u64, bounded::FastHash>,
    known: BoundedMap<DestinationHash, KnownDestination>,
    paths: BoundedMap<DestinationHash, PathEntry>,
    pending_announces: BoundedMap<DestinationHash, PendingAnnounce>,
    held_announces: BoundedMap<DestinationHash, PendingAnnounce>,
    reverse: BoundedMap<DestinationHash, ReverseEntry>,
    link_table: BoundedMap<LinkId, LinkEntry>,
    links: HashMap<LinkId, LocalLink, bounded::FastHash>,
    packet_hashes: RecentSet<PacketHash>,
    path_request_tags: RecentSet<Vec<u8>>,
    discoveries: BoundedMap<DestinationHash, Discovery>,
    /// Admits `Router::rediscover`'s own path requests.
    lost_path_requests: rate::TokenBucket,
    receipts: BoundedMap<DestinationHash, Receipt>,
    actions: VecDeque<Action>,
    counters: Counters,
    next_cull: Timestamp,
    report_forwarding: bool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("transport_id", &self.transport_id)
            .field("interfaces", &self.interfaces.len())
            .field("paths", &self.paths.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router whose transport id is `identity`'s hash. `clock` maps `now` to unix time for
    /// announce emission times.
    pub fn new(
        identity: PrivateIdentity,
        config: RouterConfig,
        clock: WallClock,
        rng: Box<dyn RouterRng>,
    ) -> Self {
        Self {
            transport_id: identity.hash(),
            path_request_hash: path_request_destination(),
            identity,
            rng,
            clock,
            interfaces: BTreeMap::new(),
            destinations: HashMap::default(),
            last_emitted: HashMap::default(),
            known: BoundedMap::new(config.max_known_destinations),
            paths: BoundedMap::new(config.max_paths),
            pending_announces: BoundedMap::new(config.max_pending_announces),
            held_announces: BoundedMap::new(config.max_pending_announces),
            reverse: BoundedMap::new(config.max_reverse_entries),
            link_table: BoundedMap::new(config.max_link_entries),
            links: HashMap::default(),
            packet_hashes: RecentSet::new(config.packet_hash_capacity),
            path_request_tags: RecentSet::new(config.path_request_tag_capacity),
            discoveries: BoundedMap::new(config.max_path_discoveries),
            lost_path_requests: rate::TokenBucket::new(
                LOST_PATH_REQUESTS_PER_SECOND,
                LOST_PATH_REQUEST_BURST,
            ),
            receipts: BoundedMap::new(config.max_receipts),
            actions: VecDeque::new(),
            counters: Counters::default(),
            next_cull: Timestamp::ZERO,
            report_forwarding: false,
            config,
        }
    }

    // ----- inspection -----------------------------------------------------------------

    /// This node's transport id (its transport identity's hash).
    pub fn transport_id(&self) -> IdentityHash {
        self.transport_id
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The path to `destination`, if known.
    pub fn path(&self, destination: &DestinationHash) -> Option<PathInfo> {
        self.paths
            .get(destination)
            .map(|p| path_info(destination, p))
    }

    /// Every known way to `destination`: the path first, then the alternates, fewest hops
    /// first. Empty when no path is known.
    pub fn path_candidates(&self, destination: &DestinationHash) -> Vec<PathCandidate> {
        let Some(path) = self.paths.get(destination) else {
            return Vec::new();
        };
        std::iter::once(path.candidate())
            .chain(path.alternates.iter().map(AlternatePath::candidate))
            .collect()
    }

    /// All known paths.
    pub fn paths(&self) -> Vec<PathInfo> {
        self.paths.iter().map(|(d, p)| path_info(d, p)).collect()
    }

    /// What the latest announce of `destination` said.
    pub fn known_destination(&self, destination: &DestinationHash) -> Option<&KnownDestination> {
        self.known.get(destination)
    }

    /// State of a local link.
    pub fn link_state(&self, link_id: &LinkId) -> Option<LinkState> {
        self.links.get(link_id).map(|l| l.link.state())
    }

    /// The identity whose hash is the transport id.
    pub fn identity(&self) -> &PrivateIdentity {
        &self.identity
    }

    /// Current size of every table, for telemetry and to check the caps hold.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            paths: self.paths.len(),
            known_destinations: self.known.len(),
            reverse_entries: self.reverse.len(),
            link_entries: self.link_table.len(),
            local_links: self.links.len(),
            pending_announces: self.pending_announces.len(),
            queued_announces: self.interfaces.values().map(|i| i.queued_announces()).sum(),
            packet_hashes: self.packet_hashes.len(),
        }
    }

    /// The next action for the I/O layer.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// All pending actions.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    // ----- configuration --------------------------------------------------------------

    /// Turns [`RouterEvent::Forwarded`] reports on or off (off by default: they cost a hash
    /// per packet).
    pub fn set_forwarding_reports(&mut self, on: bool) {
        self.report_forwarding = on;
    }

    /// Re-anchors wall-clock time (call when the system clock is adjusted).
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// Adds or reconfigures an interface.
    pub fn add_interface(&mut self, id: InterfaceId, config: InterfaceConfig) {
        let cap = self.config.max_queued_announces;
        let inbound = InboundAnnounceLimit {
            per_second: self.config.inbound_announces_per_second,
            burst: self.config.inbound_announce_burst,
        };
        self.interfaces
            .insert(id, InterfaceState::new(config, cap, inbound));
    }

    /// Removes an interface and every path and table entry through it.
    pub fn remove_interface(&mut self, id: InterfaceId) {
        self.interfaces.remove(&id);
        self.paths.retain(|_, p| {
            p.alternates.retain(|a| a.interface != id);
            p.interface != id
        });
        self.reverse
            .retain(|_, r| r.received_on != id && r.sent_on != id);
        self.link_table
            .retain(|_, l| l.received_on != id && l.next_hop_interface != id);
        self.pending_announces.retain(|_, a| a.attached != Some(id));
        // A link that came in on the interface can no longer be reached through it: it sends
        // nothing more (a keepalive or close on a gone interface is a transmit nobody can do)
        // and times out, as a link whose interface went quiet would.
        for local in self.links.values_mut() {
            if local.interface == Some(id) {
                local.interface = None;
            }
        }
        for d in self.discoveries.keys() {
            if let Some(entry) = self.discoveries.get_mut(&d) {
                entry.requesting.retain(|i| *i != id);
            }
        }
    }

    /// Serves a SINGLE destination here. Returns its hash.
    pub fn register_destination(&mut self, destination: LocalDestination) -> DestinationHash {
        let hash = destination.hash();
        self.destinations.insert(hash, destination);
        hash
    }

    /// Stops serving a destination.
    pub fn deregister_destination(
        &mut self,
        destination: &DestinationHash,
    ) -> Option<LocalDestination> {
        self.last_emitted.remove(destination);
        self.destinations.remove(destination)
    }

    /// Replaces the app data of a local destination's announces.
    pub fn set_app_data(
        &mut self,
        destination: &DestinationHash,
        app_data: Vec<u8>,
    ) -> Result<(), RouterError> {
        let local = self
            .destinations
            .get_mut(destination)
            .ok_or(RouterError::NotLocal(*destination))?;
        local.app_data = app_data;
        Ok(())
    }

    // ----- commands -------------------------------------------------------------------

    /// Announces a local destination on every interface.
    pub fn announce(
        &mut self,
        destination: &DestinationHash,
        now: Timestamp,
    ) -> Result<(), RouterError> {
        let packet = self.local_announce(destination, false, now)?;
        packet.check_mtu(MTU)?;
        self.packet_hashes.insert(packet.hash());
        self.broadcast_announce(&packet, None, true, now);
        Ok(())
    }

    /// Encrypts `plaintext` to a destination known from its announce and sends it along the
    /// path (or on every interface if no path is known). A [`RouterEvent::DeliveryProved`]
    /// follows if the destination proves it.
    pub fn send(
        &mut self,
        destination: &DestinationHash,
        plaintext: &[u8],
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        self.send_via(destination, plaintext, None, now)
    }

    /// Like [`Router::send`], but through the next hop `via` when it is one of the
    /// destination's [`Router::path_candidates`] (else along the path). Only the first hop
    /// is chosen: each relay forwards along its own path.
    pub fn send_via(
        &mut self,
        destination: &DestinationHash,
        plaintext: &[u8],
        via: Option<IdentityHash>,
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        if plaintext.len() > ENCRYPTED_MDU {
            return Err(RouterError::PayloadTooLarge {
                len: plaintext.len(),
                max: ENCRYPTED_MDU,
            });
        }
        let known = self
            .known
            .get(destination)
            .ok_or(RouterError::UnknownDestination(*destination))?;
        let signer = *known.identity.signing_key();
        let ciphertext =
            known
                .identity
                .encrypt(plaintext, known.ratchet.as_ref(), &mut *self.rng)?;
        let packet = Packet::new(
            PacketType::Data,
            DestinationType::Single,
            *destination,
            Context::NONE,
            ciphertext,
        );
        let hops = self.outbound_route(destination, via).map_or(1, |r| r.hops);
        let hash = self.route_outbound_via(packet, Priority::Data, via, now)?;
        let deadline = now.saturating_add(PER_HOP_TIMEOUT * u32::from(hops.max(1)));
        self.receipts.insert(
            hash.truncated(),
            Receipt {
                packet_hash: hash,
                signer,
                deadline,
            },
        );
        Ok(hash)
    }

    /// Sends a packet built by the caller, routed like [`Router::send`] (no receipt).
    pub fn send_packet(
        &mut self,
        packet: Packet,
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        self.route_outbound(packet, Priority::Data, now)
    }

    /// Asks the network for a path to `destination` on every interface.
    pub fn request_path(&mut self, destination: &DestinationHash) -> Result<(), RouterError> {
        if self.interfaces.is_empty() {
            return Err(RouterError::NoInterfaces);
        }
        let transport = self.config.transport_enabled.then_some(self.transport_id);
        let request = PathRequest::new(*destination, transport, &mut *self.rng);
        self.path_request_tags.insert(request.unique_key());
        let frame = request.to_packet().encode();
        for id in self.interface_ids() {
            self.transmit(id, frame.clone(), Priority::Control);
        }
        Ok(())
    }

    /// Opens a link to a destination known from its announce. Completion is reported as
    /// [`RouterEvent::LinkEstablished`].
    pub fn open_link(
        &mut self,
        destination: &DestinationHash,
        now: Timestamp,
    ) -> Result<LinkId, RouterError> {
        self.open_link_via(destination, None, now)
    }

    /// Like [`Router::open_link`], with the link request sent through the next hop `via`
    /// when it is one of the destination's [`Router::path_candidates`]. The link keeps the
    /// route its request took.
    pub fn open_link_via(
        &mut self,
        destination: &DestinationHash,
        via: Option<IdentityHash>,
        now: Timestamp,
    ) -> Result<LinkId, RouterError> {
        if self.links.len() >= self.config.max_local_links && !self.evict_oldest_handshake() {
            return Err(RouterError::TooManyLinks(self.config.max_local_links));
        }
        let identity = self
            .known
            .get(destination)
            .ok_or(RouterError::UnknownDestination(*destination))?
            .identity
            .clone();
        let (hops, mtu) = match self.outbound_route(destination, via) {
            Some(route) => (
                route.hops,
                self.interfaces
                    .get(&route.interface)
                    .and_then(|i| i.config.hw_mtu)
                    .unwrap_or(MTU as u32),
            ),
            None => (MAX_HOPS, MTU as u32),
        };
        let (link, request) = Link::initiate(
            &identity,
            *destination,
            Some(mtu),
            hops,
            now,
            &mut *self.rng,
        );
        let id = link.id();
        self.links.insert(
            id,
            LocalLink {
                link,
                opened_at: now,
                interface: None,
                prove_all: false,
            },
        );
        self.route_outbound_via(request, Priority::Control, via, now)?;
        Ok(id)
    }

    /// Sends `data` over an established link.
    pub fn link_send(
        &mut self,
        link_id: &LinkId,
        context: Context,
        data: &[u8],
        now: Timestamp,
    ) -> Result<PacketHash, RouterError> {
        let local = self
            .links
            .get_mut(link_id)
            .ok_or(RouterError::UnknownLink(*link_id))?;
        let interface = local.interface.ok_or(RouterError::LinkNotReady(*link_id))?;
        let packet = local.link.encrypt(context, data, now, &mut *self.rng)?;
        let hash = packet.hash();
        self.packet_hashes.insert(hash);
        self.report_forwarded(&packet, None, interface);
        self.transmit(interface, packet.encode(), Priority::Data);
        Ok(hash)
    }

    /// Reveals `identity` to the far end of a link this node initiated.
    pub fn link_identify(
        &mut self,
        link_id: &LinkId,
        identity: &PrivateIdentity,
        now: Timestamp,
    ) -> Result<(), RouterError> {
        let local = self
            .links
            .get_mut(link_id)
            .ok_or(RouterError::UnknownLink(*link_id))?;
        let interface = local.interface.ok_or(RouterError::LinkNotReady(*link_id))?;
        let packet = local.link.identify(identity, now, &mut *self.rng)?;
        self.transmit(interface, packet.encode(), Priority::Control);
        Ok(())
    }

    /// Proves a packet received on a link (see [`RouterEvent::LinkData`]).
    pub fn prove_link_packet(
        &mut self,
        link_id: &LinkId,
        packet_hash: &PacketHash,
    ) -> Result<(), RouterError> {
        let local = self
            .links
            .get(link_id)
            .ok_or(RouterError::UnknownLink(*link_id))?;
        let interface = local.interface.ok_or(RouterError::LinkNotReady(*link_id))?;
        let proof = local.link.prove_hash(packet_hash);
        self.transmit(interface, proof.encode(), Priority::Control);
        Ok(())
    }

    /// Proves a packet delivered to a local destination (see [`Action::Deliver`]).
    pub fn prove_delivery(
        &mut self,
        destination: &DestinationHash,
        packet_hash: &PacketHash,
        interface: InterfaceId,
    ) -> Result<(), RouterError> {
        let local = self
            .destinations
            .get(destination)
            .ok_or(RouterError::NotLocal(*destination))?;
        let proof = prove_packet(packet_hash, &local.identity, false);
        self.transmit(interface, proof.encode(), Priority::Control);
        Ok(())
    }

    /// Closes a local link.
    pub fn close_link(&mut self, link_id: &LinkId, now: Timestamp) -> Result<(), RouterError> {
        let mut local = self
            .links
            .remove(link_id)
            .ok_or(RouterError::UnknownLink(*link_id))?;
        let reason = match local.link.role() {
            Role::Initiator => CloseReason::InitiatorClosed,
            Role::Responder => CloseReason::DestinationClosed,
        };
        if let (Some(packet), Some(interface)) =
            (local.link.close(now, &mut *self.rng), local.interface)
        {
            self.transmit(interface, packet.encode(), Priority::Control);
        }
        self.emit(RouterEvent::LinkClosed {
            link_id: *link_id,
            reason,
        });
        Ok(())
    }

    // ----- inbound --------------------------------------------------------------------

    /// Processes one frame (an unframed packet) received on `interface`.
    pub fn handle_inbound(&mut self, interface: InterfaceId, frame: &[u8], now: Timestamp) {
        self.counters.received += 1;
        let Some(state) = self.interfaces.get(&interface) else {
            return self.drop_packet(DropReason::UnknownInterface, Some(interface));
        };
        if frame.len() > state.config.max_frame() {
            return self.drop_packet(DropReason::FrameTooLarge, Some(interface));
        }
        let mut packet = match Packet::parse(frame) {
            Ok(p) => p,
            Err(PacketError::HopLimit { .. }) => {
                return self.drop_packet(DropReason::HopLimit, Some(interface));
            }
            Err(_) => return self.drop_packet(DropReason::Malformed, Some(interface)),
        };
        let hash = packet.hash();
        if let Some(reason) = self.filter(&packet, &hash) {
            return self.drop_packet(reason, Some(interface));
        }
        packet.hops += 1;

        let announce = if packet.packet_type == PacketType::Announce {
            // Rate-limit before the signature check: verifying is what a flood costs us.
            let refresh = self
                .paths
                .get(&packet.destination)
                .is_some_and(|p| p.interface == interface);
            let admitted = self
                .interfaces
                .get_mut(&interface)
                .is_some_and(|i| i.admit_inbound_announce(refresh, now));
            if !admitted {
                return self.drop_packet(DropReason::AnnounceRateLimited, Some(interface));
            }
            match Announce::from_packet(&packet) {
                Ok(a) => Some(a),
                Err(_) => return self.drop_packet(DropReason::InvalidAnnounce, Some(interface)),
            }
        } else {
            None
        };
        if packet.packet_type == PacketType::Data && packet.destination == self.path_request_hash {
            return self.handle_path_request(interface, &packet, now);
        }

        let link_key = LinkId::from(packet.destination);
        let in_link_table = self.link_table.contains_key(&link_key);
        let is_link_proof =
            packet.packet_type == PacketType::Proof && packet.context == Context::LRPROOF;
        if !in_link_table && !is_link_proof {
            self.packet_hashes.insert(hash);
        }

        if self.config.transport_enabled {
            if packet.transport_id == Some(self.transport_id)
                && packet.packet_type != PacketType::Announce
                && self.forward_in_transport(interface, &packet, &hash, now)
            {
                return;
            }
            if in_link_table
                && !matches!(
                    packet.packet_type,
                    PacketType::Announce | PacketType::LinkRequest
                )
                && !is_link_proof
            {
                return self.forward_on_link(interface, &packet, &hash, now);
            }
        }

        match (packet.packet_type, announce) {
            (PacketType::Announce, Some(announce)) => {
                self.process_announce(interface, packet, announce, now)
            }
            (PacketType::LinkRequest, _) => self.accept_link(interface, &packet, now),
            (PacketType::Data, _) => self.deliver_data(interface, &packet, &hash, now),
            (PacketType::Proof, _) => self.process_proof(interface, &packet, now),
            (PacketType::Announce, None) => {
                self.drop_packet(DropReason::InvalidAnnounce, Some(interface))
            }
        }
    }

    /// Reticulum's packet filter: foreign transport ids, transported PLAIN/GROUP packets,
    /// duplicates.
    fn filter(&self, packet: &Packet, hash: &PacketHash) -> Option<DropReason> {
        if packet.packet_type != PacketType::Announce
            && packet.transport_id.is_some_and(|t| t != self.transport_id)
        {
            return Some(DropReason::OtherTransportId);
        }
        // Keepalives and resource/channel traffic legitimately repeat identical bytes.
        if matches!(
            packet.context,
            Context::KEEPALIVE
                | Context::RESOURCE_REQ
                | Context::RESOURCE_PRF
                | Context::RESOURCE
                | Context::CACHE_REQUEST
                | Context::CHANNEL
        ) {
            return None;
        }
        if matches!(
            packet.destination_type,
            DestinationType::Plain | DestinationType::Group
        ) {
            if packet.packet_type == PacketType::Announce {
                return Some(DropReason::InvalidAnnounce);
            }
            return (packet.hops > 1).then_some(DropReason::TransportedPlainOrGroup);
        }
        if !self.packet_hashes.contains(hash) {
            return None;
        }
        // Announces are deduplicated by their random hash instead.
        if packet.packet_type == PacketType::Announce
            && packet.destination_type == DestinationType::Single
        {
            return None;
        }
        Some(DropReason::Duplicate)
    }

    // ----- timers ---------------------------------------------------------------------

    /// Runs timers: announce rebroadcasts and queues, link keepalives and timeouts, table
    /// expiry.
    pub fn tick(&mut self, now: Timestamp) {
        self.run_pending_announces(now);
        self.release_queued_announces(now);
        self.poll_links(now);
        if now >= self.next_cull {
            self.cull(now);
            self.next_cull = now.saturating_add(CULL_INTERVAL);
        }
    }

    fn cull(&mut self, now: Timestamp) {
        let interfaces = &self.interfaces;
        let config = &self.config;
        self.reverse.retain(|_, r| {
            now < r.at.saturating_add(config.reverse_entry_timeout)
                && interfaces.contains_key(&r.received_on)
                && interfaces.contains_key(&r.sent_on)
        });
        self.link_table.retain(|_, l| {
            let alive = if l.validated {
                now < l.at.saturating_add(config.link_entry_timeout)
            } else {
                now < l.proof_deadline
            };
            alive
                && interfaces.contains_key(&l.received_on)
                && interfaces.contains_key(&l.next_hop_interface)
        });
        self.paths.retain(|_, p| {
            let expiry = match interfaces.get(&p.interface).map(|i| i.config.mode) {
                None => return false,
                Some(InterfaceMode::AccessPoint) => config.access_point_path_expiry,
                Some(InterfaceMode::Roaming) => config.roaming_path_expiry,
                Some(_) => config.path_expiry,
            };
            p.alternates
                .retain(|a| now < a.expires && interfaces.contains_key(&a.interface));
            now < p.last_used.max(p.learned_at).saturating_add(expiry)
        });
        self.discoveries.retain(|_, d| now < d.deadline);
        let mut timed_out = Vec::new();
        self.receipts.retain(|_, r| {
            let keep = now < r.deadline;
            if !keep {
                timed_out.push(r.packet_hash);
            }
            keep
        });
        for packet_hash in timed_out {
            self.emit(RouterEvent::DeliveryTimedOut { packet_hash });
        }
    }

    // ----- helpers --------------------------------------------------------------------

    fn interface_ids(&self) -> Vec<InterfaceId> {
        self.interfaces.keys().copied().collect()
    }

    fn transmit(&mut self, interface: InterfaceId, frame: Vec<u8>, priority: Priority) {
        self.counters.transmitted += 1;
        self.actions.push_back(Action::Transmit {
            interface,
            frame,
            priority,
        });
    }

    /// Reports a data or link-request packet leaving on `to`, when reports are on.
    fn report_forwarded(&mut self, packet: &Packet, from: Option<InterfaceId>, to: InterfaceId) {
        if !self.report_forwarding
            || !matches!(
                packet.packet_type,
                PacketType::Data | PacketType::LinkRequest
            )
        {
            return;
        }
        self.emit(RouterEvent::Forwarded {
            relay_hash: packet.relay_hash(),
            from,
            to,
            bytes: u32::try_from(packet.encoded_len()).unwrap_or(u32::MAX),
        });
    }

    fn emit(&mut self, event: RouterEvent) {
        self.actions.push_back(Action::Event(event));
    }

    /// Marks the path to `destination` as proved (see [`PathEntry::proved`]).
    fn mark_path_proved(&mut self, destination: &DestinationHash) {
        if let Some(path) = self.paths.get_mut(destination) {
            path.proved = true;
        }
    }

    fn drop_packet(&mut self, reason: DropReason, interface: Option<InterfaceId>) {
        self.counters.count_drop(reason);
        if !reason.is_routine() {
            self.emit(RouterEvent::PacketDropped { reason, interface });
        }
    }
}

fn path_info(destination: &DestinationHash, p: &PathEntry) -> PathInfo {
    PathInfo {
        destination: *destination,
        next_hop: p.next_hop,
        hops: p.hops,
        interface: p.interface,
        learned_at: p.learned_at,
    }
}

#[cfg(test)]
mod tests;
