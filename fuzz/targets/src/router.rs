//! The router target: one transport node on three interfaces, driven by a sequence of
//! operations the input chooses. Raw frames test the parsers; signed announces, path
//! requests, link requests from a real initiator and data encrypted to the node's destination
//! get past the signature and decryption checks, so the tables and the forwarding logic
//! behind them are reached too. Transmitted frames are fed back on other interfaces
//! (loops), time runs (timers, expiry, queues), interfaces come and go.
//!
//! Invariants checked after every operation: every frame the router transmits parses as a
//! packet, fits the interface it leaves on and names an interface that exists; every table
//! stays within its configured cap; a packet encrypted to the local destination is delivered
//! as the plaintext that was encrypted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Unstructured;
use mehr_transport::link::{Link, LinkState};
use mehr_transport::packet::MTU;
use mehr_transport::path_request::PathRequest;
use mehr_transport::router::{InterfaceMode, ProofStrategy};
use mehr_transport::{
    Action, Announce, Context, DestinationHash, DestinationName, DestinationType, IdentityHash,
    InterfaceConfig, InterfaceId, LinkId, LocalDestination, Packet, PacketType, PrivateIdentity,
    Router, RouterConfig, Timestamp, WallClock,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::transport::MAX_OPS;

/// Small caps, so that eviction is reached within one input.
fn config(transport_enabled: bool) -> RouterConfig {
    RouterConfig {
        transport_enabled,
        max_paths: 8,
        max_known_destinations: 8,
        max_reverse_entries: 8,
        max_link_entries: 4,
        max_local_links: 4,
        max_pending_announces: 8,
        max_queued_announces: 4,
        packet_hash_capacity: 64,
        path_request_tag_capacity: 16,
        max_receipts: 8,
        max_path_discoveries: 4,
        max_random_blobs: 4,
        ..RouterConfig::default()
    }
}

const INTERFACES: u32 = 3;
const MODES: [InterfaceMode; 6] = [
    InterfaceMode::Full,
    InterfaceMode::PointToPoint,
    InterfaceMode::AccessPoint,
    InterfaceMode::Roaming,
    InterfaceMode::Boundary,
    InterfaceMode::Gateway,
];
/// Frames remembered for echoing back.
const ECHO_MEMORY: usize = 16;
/// Initiators of links to the router's destination held at once.
const MAX_INITIATORS: usize = 4;

struct Keys {
    router: PrivateIdentity,
    local: PrivateIdentity,
    remotes: [PrivateIdentity; 3],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        router: PrivateIdentity::from_private_key(&[0x61; 64]),
        local: PrivateIdentity::from_private_key(&[0x62; 64]),
        remotes: [
            PrivateIdentity::from_private_key(&[0x63; 64]),
            PrivateIdentity::from_private_key(&[0x64; 64]),
            PrivateIdentity::from_private_key(&[0x65; 64]),
        ],
    })
}

/// What a harness announce is made of: which remote identity signs, for which name, what it
/// carries.
#[derive(Clone, PartialEq, Eq, Hash)]
struct AnnounceFields {
    signer: usize,
    mehr_node: bool,
    app_data: Vec<u8>,
    ratchet: Option<[u8; 32]>,
    random: [u8; 5],
    emitted: u64,
}

/// The announce `fields` describe, signed once and remembered: Ed25519 signing is
/// deterministic, so a remembered announce is the one signing again would give, and the
/// inputs that share announces (the fuzzer mutates around its corpus) pay only for the
/// router's checking of them. At most [`ANNOUNCES_REMEMBERED`] are kept.
fn signed(fields: AnnounceFields) -> Announce {
    thread_local! {
        static SIGNED: RefCell<HashMap<AnnounceFields, Announce>> = RefCell::new(HashMap::new());
    }
    SIGNED.with(|signed| {
        let mut signed = signed.borrow_mut();
        if signed.len() >= ANNOUNCES_REMEMBERED {
            signed.clear();
        }
        signed
            .entry(fields)
            .or_insert_with_key(|fields| {
                let name = if fields.mehr_node {
                    DestinationName::mehr_node()
                } else {
                    DestinationName::new("fuzz", &["app"]).expect("a valid name")
                };
                Announce::create(
                    &keys().remotes[fields.signer],
                    &name,
                    &fields.app_data,
                    fields.ratchet,
                    fields.random,
                    fields.emitted,
                )
            })
            .clone()
    })
}

/// Announces [`signed`] keeps.
const ANNOUNCES_REMEMBERED: usize = 1_024;

struct Harness {
    router: Router,
    config: RouterConfig,
    interfaces: HashMap<InterfaceId, InterfaceConfig>,
    local: DestinationHash,
    now: Timestamp,
    rng: StdRng,
    echo: Vec<(InterfaceId, Vec<u8>)>,
    initiators: Vec<Link>,
    /// Handshake and traffic packets our initiators want to send to the router.
    outbox: Vec<Packet>,
    /// The plaintext of data packets encrypted to the local destination, by packet hash.
    sent_plaintexts: HashMap<[u8; 32], Vec<u8>>,
}

pub(crate) fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(flags) = u.arbitrary::<u8>() else {
        return;
    };
    let keys = keys();
    let config = config(flags & 1 == 1);
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 1_750_000_000,
    };
    let mut router = Router::new(
        keys.router.clone(),
        config.clone(),
        clock,
        Box::new(StdRng::seed_from_u64(1)),
    );
    let mut interfaces = HashMap::new();
    for i in 0..INTERFACES {
        let mut interface = InterfaceConfig::new(if i == 2 { 1_200 } else { 10_000_000 });
        interface.mode = MODES[usize::from(flags >> 1) % MODES.len()];
        if i == 1 {
            interface.mode = InterfaceMode::Full;
            interface.hw_mtu = Some(1_064);
        }
        router.add_interface(InterfaceId(i), interface.clone());
        interfaces.insert(InterfaceId(i), interface);
    }
    let mut destination = LocalDestination::new(keys.local.clone(), DestinationName::mehr_node());
    destination.proof_strategy = match flags >> 4 & 3 {
        0 => ProofStrategy::None,
        1 => ProofStrategy::All,
        _ => ProofStrategy::Links,
    };
    destination.accepts_links = flags & 0x40 == 0;
    let local = router.register_destination(destination);
    let mut h = Harness {
        router,
        config,
        interfaces,
        local,
        now: Timestamp::from_secs(1),
        rng: StdRng::seed_from_u64(2),
        echo: Vec::new(),
        initiators: Vec::new(),
        outbox: Vec::new(),
        sent_plaintexts: HashMap::new(),
    };
    for _ in 0..MAX_OPS {
        if h.step(&mut u).is_err() {
            break;
        }
        h.drain();
        h.check_tables();
    }
}

impl Harness {
    fn step(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        let op = u.arbitrary::<u8>()?;
        let interface = InterfaceId(u.int_in_range(0..=INTERFACES - 1)?);
        match op % 11 {
            0 => {
                let len = u.int_in_range(0..=1_100usize)?;
                let frame = u.bytes(len.min(u.len()))?;
                self.router.handle_inbound(interface, frame, self.now);
            }
            1 => {
                let packet = self.signed_announce(u)?;
                self.inbound(interface, &packet);
            }
            2 => {
                let destination = self.pick_destination(u)?;
                let requesting_transport = if u.arbitrary()? {
                    Some(IdentityHash(u.arbitrary()?))
                } else {
                    None
                };
                let tag_len = u.int_in_range(0..=20usize)?;
                let request = PathRequest {
                    destination,
                    requesting_transport,
                    tag: u.bytes(tag_len.min(u.len()))?.to_vec(),
                };
                let mut packet = request.to_packet();
                packet.hops = u.int_in_range(0..=3)?;
                self.inbound(interface, &packet);
            }
            3 => {
                if self.initiators.len() < MAX_INITIATORS {
                    let mtu = u.int_in_range(0..=2_000u32)?;
                    let (link, request) = Link::initiate(
                        keys().local.public(),
                        self.local,
                        (mtu >= 200).then_some(mtu),
                        1,
                        self.now,
                        &mut self.rng,
                    );
                    self.initiators.push(link);
                    self.inbound(interface, &request);
                }
            }
            4 => {
                let len = u.int_in_range(0..=400usize)?;
                let plaintext = u.bytes(len.min(u.len()))?;
                let ephemeral: [u8; 32] = u.arbitrary()?;
                let iv: [u8; 16] = u.arbitrary()?;
                if let Ok(ciphertext) = keys()
                    .local
                    .public()
                    .encrypt_deterministic(plaintext, None, &ephemeral, iv)
                {
                    let packet = Packet::new(
                        PacketType::Data,
                        DestinationType::Single,
                        self.local,
                        Context::NONE,
                        ciphertext,
                    );
                    if packet.check_mtu(MTU).is_ok() {
                        self.sent_plaintexts
                            .insert(packet.hash().0, plaintext.to_vec());
                        self.inbound(interface, &packet);
                    }
                }
            }
            5 => {
                let step = u.arbitrary::<u16>()?;
                // Steps up to about 18 hours (units of a second), or short ones in ms.
                let by = if u.arbitrary()? {
                    Duration::from_secs(u64::from(step))
                } else {
                    Duration::from_millis(u64::from(step))
                };
                self.now = self.now.saturating_add(by);
                self.router.tick(self.now);
                for link in &mut self.initiators {
                    let poll = link.poll(self.now, &mut self.rng);
                    self.outbox.extend(poll.send);
                }
            }
            6 => {
                let destination = self.pick_destination(u)?;
                let _ = match u.int_in_range(0..=3u8)? {
                    0 => self.router.announce(&self.local, self.now).map(|_| ()),
                    1 => self.router.request_path(&destination),
                    2 => {
                        let len = u.int_in_range(0..=400usize)?;
                        let plaintext = u.bytes(len.min(u.len()))?;
                        self.router
                            .send(&destination, plaintext, self.now)
                            .map(|_| ())
                    }
                    _ => self.router.open_link(&destination, self.now).map(|_| ()),
                };
            }
            7 => {
                if !self.echo.is_empty() {
                    let (_, frame) = self.echo[u.choose_index(self.echo.len())?].clone();
                    self.router.handle_inbound(interface, &frame, self.now);
                }
            }
            8 => {
                if !self.outbox.is_empty() {
                    let packet = self.outbox.remove(u.choose_index(self.outbox.len())?);
                    self.inbound(interface, &packet);
                }
            }
            9 => {
                if !self.initiators.is_empty() {
                    let index = u.choose_index(self.initiators.len())?;
                    let context = Context(u.arbitrary()?);
                    let len = u.int_in_range(0..=450usize)?;
                    let payload = u.bytes(len.min(u.len()))?;
                    let link = &mut self.initiators[index];
                    let packet = match u.int_in_range(0..=2u8)? {
                        0 => link.encrypt(context, payload, self.now, &mut self.rng).ok(),
                        1 => link
                            .identify(&keys().remotes[0], self.now, &mut self.rng)
                            .ok(),
                        _ => link.close(self.now, &mut self.rng),
                    };
                    self.outbox.extend(packet);
                }
            }
            _ => {
                if self.interfaces.remove(&interface).is_some() {
                    self.router.remove_interface(interface);
                } else {
                    let mut config = InterfaceConfig::new(u.arbitrary()?);
                    config.mode = *u.choose(&MODES)?;
                    if u.arbitrary()? {
                        config.hw_mtu = Some(u.int_in_range(0..=9_000)?);
                    }
                    self.router.add_interface(interface, config.clone());
                    self.interfaces.insert(interface, config);
                }
            }
        }
        Ok(())
    }

    /// A packet as a neighbour would send it.
    fn inbound(&mut self, interface: InterfaceId, packet: &Packet) {
        self.router
            .handle_inbound(interface, &packet.encode(), self.now);
    }

    /// The local destination, a remote one, the path request destination or any hash.
    fn pick_destination(&self, u: &mut Unstructured<'_>) -> arbitrary::Result<DestinationHash> {
        Ok(match u.int_in_range(0..=3u8)? {
            0 => self.local,
            1 => DestinationName::mehr_node().single_hash(u.choose(&keys().remotes)?.public()),
            2 => DestinationName::path_request().plain_hash(),
            _ => DestinationHash(u.arbitrary()?),
        })
    }

    /// A correctly signed announce by one of the remote identities, with the header fields
    /// (hops, transport id, context) a relay may set.
    fn signed_announce(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<Packet> {
        let signer = u.choose_index(keys().remotes.len())?;
        let mehr_node = u.arbitrary::<bool>()?;
        let app_len = u.int_in_range(0..=120usize)?;
        let app_data = u.bytes(app_len.min(u.len()))?;
        let ratchet: Option<[u8; 32]> = u.arbitrary()?;
        let random: [u8; 5] = u.arbitrary()?;
        // Emission times around the router's clock, so "newer" and "older" both occur.
        let emitted = 1_750_000_000u64 - 600 + u64::from(u.int_in_range(0..=1_200u16)?);
        let announce = signed(AnnounceFields {
            signer,
            mehr_node,
            app_data: app_data.to_vec(),
            ratchet,
            random,
            emitted,
        });
        let mut packet = announce.to_packet(u.arbitrary()?);
        packet.hops = u.int_in_range(0..=130u8)?;
        if u.arbitrary()? {
            packet.transport_id = Some(if u.arbitrary()? {
                keys().router.hash()
            } else {
                u.choose(&keys().remotes)?.hash()
            });
            packet.transport_type = mehr_transport::TransportType::Transport;
        }
        Ok(packet)
    }

    fn drain(&mut self) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Transmit {
                    interface, frame, ..
                } => self.transmitted(interface, frame),
                Action::Deliver {
                    destination,
                    packet,
                    plaintext,
                    ..
                } => {
                    assert_eq!(
                        destination, self.local,
                        "delivered only to local destinations"
                    );
                    if let Some(sent) = self.sent_plaintexts.get(&packet.hash().0) {
                        assert_eq!(&plaintext, sent, "delivered what was encrypted");
                    }
                }
                Action::Event(_) => {}
            }
        }
        self.sent_plaintexts.retain(|_, _| false);
    }

    fn transmitted(&mut self, interface: InterfaceId, frame: Vec<u8>) {
        let config = self
            .interfaces
            .get(&interface)
            .unwrap_or_else(|| panic!("transmit on {interface:?}, which does not exist"));
        let max_frame = config.hw_mtu.map_or(MTU, |m| m as usize).max(MTU);
        assert!(
            frame.len() <= max_frame,
            "a {}-byte frame leaves on an interface that takes {max_frame}",
            frame.len()
        );
        let packet = match Packet::parse(&frame) {
            Ok(p) => p,
            Err(e) => panic!("the router transmitted a frame that does not parse: {e}"),
        };
        // Link request proofs and link traffic for our initiators.
        if packet.destination_type == DestinationType::Link {
            let link_id = LinkId::from(packet.destination);
            if let Some(link) = self.initiators.iter_mut().find(|l| l.id() == link_id) {
                if packet.packet_type == PacketType::Proof && packet.context == Context::LRPROOF {
                    if link.state() == LinkState::Pending
                        && let Ok(rtt) = link.handle_proof(&packet, self.now, &mut self.rng)
                    {
                        self.outbox.push(rtt);
                    }
                } else if let Ok(outcome) = link.receive(&packet, self.now) {
                    self.outbox.extend(outcome.reply);
                }
            }
        }
        if self.echo.len() >= ECHO_MEMORY {
            self.echo.remove(0);
        }
        self.echo.push((interface, frame));
        self.initiators
            .retain(|l| !matches!(l.state(), LinkState::Closed(_)));
        self.outbox.truncate(2 * ECHO_MEMORY);
    }

    fn check_tables(&self) {
        let sizes = self.router.table_sizes();
        let c = &self.config;
        assert!(sizes.paths <= c.max_paths, "{sizes:?}");
        assert!(
            sizes.known_destinations <= c.max_known_destinations,
            "{sizes:?}"
        );
        assert!(sizes.reverse_entries <= c.max_reverse_entries, "{sizes:?}");
        assert!(sizes.link_entries <= c.max_link_entries, "{sizes:?}");
        assert!(sizes.local_links <= c.max_local_links, "{sizes:?}");
        assert!(
            sizes.pending_announces <= c.max_pending_announces,
            "{sizes:?}"
        );
        assert!(
            sizes.queued_announces <= c.max_queued_announces * self.interfaces.len(),
            "{sizes:?}"
        );
        assert!(sizes.packet_hashes <= c.packet_hash_capacity, "{sizes:?}");
    }
}
