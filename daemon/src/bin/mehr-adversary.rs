//! A hostile mesh peer for the adversary test (daemon/tests/adversary.rs): a real second
//! process that speaks the wire — HDLC-framed Reticulum packets over TCP, built from the pure
//! `mehr-transport` crate — and floods a node with what an open mesh lets anyone send.
//!
//! ```text
//! mehr-adversary sybil-announces --target 127.0.0.1:4242 --count 100000
//! mehr-adversary link-requests   --target 127.0.0.1:4242 --count 1000
//! mehr-adversary tcp-connections --target 127.0.0.1:4242 --count 2000 --hold-secs 10
//! mehr-adversary settlement-records --target 127.0.0.1:4242 --count 100000
//! mehr-adversary segment-bombs --target 127.0.0.1:4242 --count 1000
//! ```
//! Each prints one line `sent=N` (or `connected=N refused=M`) when done.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use mehr_ledger::{
    ChannelId, NodeId,
    channel::{ChannelBody, Deposits, LotteryTerms},
    ledger::{SettlementKind, SettlementRecord, sign_settlement},
};
use mehr_transport::{
    Announce, DestinationName, Link, Packet, PacketType, PrivateIdentity, Timestamp, framing::hdlc,
};
use mehr_transport::{Context, DestinationType, Identity};
use rand::{RngCore, rngs::OsRng};

/// The ledger's settlements control message type (`daemon/src/ledger/wire.rs`).
const SETTLEMENTS_KIND: u8 = 0x12;
/// The link packet context of Mehr segments (`daemon/src/transport/segments.rs`).
const SEGMENT_CONTEXT: Context = Context(0x4D);
/// A segment announcing a message of this many segments fits `transport.max_message_bytes`
/// (16 MiB) at ~420 bytes a segment: the node must hold it, within its budgets.
const LARGE_SEGMENT_COUNT: u32 = 30_000;

#[derive(Parser)]
#[command(about = "Floods a Mehr node with well-formed hostile traffic (for tests)")]
struct Args {
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand)]
enum Attack {
    /// Valid announces, each of a fresh key pair, on one connection.
    SybilAnnounces {
        /// The node's TCP server interface.
        #[arg(long)]
        target: String,
        /// How many announces.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
    },
    /// Anonymous link requests to the node's `mehr.node` destination (learned from the
    /// announce it sends on a new connection), never completed.
    LinkRequests {
        /// The node's TCP server interface.
        #[arg(long)]
        target: String,
        /// How many requests.
        #[arg(long, default_value_t = 1_000)]
        count: u64,
    },
    /// Opens connections and holds them.
    TcpConnections {
        /// The node's TCP server interface.
        #[arg(long)]
        target: String,
        /// How many connections.
        #[arg(long, default_value_t = 2_000)]
        count: u64,
        /// How long to hold them.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Settlement records of channels between fresh key pairs, each signed by both (so
    /// valid), gossiped to the node's `mehr.node` destination as the ledger wire does: one
    /// encrypted settlements message per packet. No party is funded.
    SettlementRecords {
        /// The node's TCP server interface.
        #[arg(long)]
        target: String,
        /// How many records.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
    },
    /// Opens a link to the node's `mehr.node` destination, completes the handshake, then
    /// sends first segments of messages announcing large segment counts (every other one
    /// past `transport.max_message_bytes`), none of them ever completed.
    SegmentBombs {
        /// The node's TCP server interface.
        #[arg(long)]
        target: String,
        /// How many messages started.
        #[arg(long, default_value_t = 1_000)]
        count: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().attack {
        Attack::SybilAnnounces { target, count } => sybil_announces(&target, count),
        Attack::LinkRequests { target, count } => link_requests(&target, count),
        Attack::TcpConnections {
            target,
            count,
            hold_secs,
        } => tcp_connections(&target, count, Duration::from_secs(hold_secs)),
        Attack::SettlementRecords { target, count } => settlement_records(&target, count),
        Attack::SegmentBombs { target, count } => segment_bombs(&target, count),
    }
}

fn sybil_announces(target: &str, count: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(target)?;
    let name = DestinationName::mehr_node();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut batch = Vec::new();
    let mut sent = 0u64;
    for _ in 0..count {
        let identity = PrivateIdentity::generate(&mut OsRng);
        let announce = Announce::create_random(&identity, &name, b"", None, now, &mut OsRng);
        batch.extend(hdlc::encode(&announce.to_packet(false).encode()));
        sent += 1;
        if batch.len() > 64 * 1024 {
            stream.write_all(&batch)?;
            batch.clear();
        }
    }
    stream.write_all(&batch)?;
    stream.flush()?;
    // Leave the node time to read everything before the connection closes.
    std::thread::sleep(Duration::from_secs(1));
    println!("sent={sent}");
    Ok(())
}

/// Reads frames until an announce of a `mehr.node` destination arrives.
fn node_announce(stream: &mut TcpStream) -> anyhow::Result<Announce> {
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    first_packet(stream, "no mehr.node announce heard", |packet| {
        if packet.packet_type != PacketType::Announce {
            return None;
        }
        Announce::from_packet(packet)
            .ok()
            .filter(|announce| announce.name_hash == DestinationName::mehr_node().name_hash())
    })
}

/// Reads frames from `stream` for up to 20 s and returns what `pick` makes of the first
/// packet it accepts.
fn first_packet<T>(
    stream: &mut TcpStream,
    missing: &str,
    mut pick: impl FnMut(&Packet) -> Option<T>,
) -> anyhow::Result<T> {
    let mut decoder = hdlc::Decoder::new(1 << 16);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = match stream.read(&mut buf) {
            Ok(0) => anyhow::bail!("the node closed the connection"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e.into()),
        };
        for frame in decoder.decode(&buf[..n]) {
            let Ok(packet) = Packet::parse(&frame) else {
                continue;
            };
            if let Some(found) = pick(&packet) {
                return Ok(found);
            }
        }
    }
    anyhow::bail!("{missing} within 20 s")
}

fn link_requests(target: &str, count: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(target)?;
    let announce = node_announce(&mut stream)?;
    let mut batch = Vec::new();
    for _ in 0..count {
        let (_, request) = Link::initiate(
            &announce.identity,
            announce.destination,
            None,
            1,
            Timestamp::ZERO,
            &mut OsRng,
        );
        batch.extend(hdlc::encode(&request.encode()));
    }
    stream.write_all(&batch)?;
    stream.flush()?;
    std::thread::sleep(Duration::from_secs(1));
    println!("sent={count}");
    Ok(())
}

fn tcp_connections(target: &str, count: u64, hold: Duration) -> anyhow::Result<()> {
    let mut held = Vec::new();
    let mut refused = 0u64;
    for _ in 0..count {
        match TcpStream::connect(target) {
            Ok(stream) => held.push(stream),
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(hold);
    println!("connected={} refused={refused}", held.len());
    Ok(())
}

/// The ledger's node id of an identity: its identity hash.
fn node_id(identity: &Identity) -> NodeId {
    NodeId(identity.hash().0)
}

/// The Ed25519 signing key of an identity (the second half of its private key).
fn signing_key(identity: &PrivateIdentity) -> ed25519_dalek::SigningKey {
    let private = identity.to_private_key();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&private[32..]);
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

fn settlement_records(target: &str, count: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(target)?;
    let announce = node_announce(&mut stream)?;
    let mut batch = Vec::new();
    for _ in 0..count {
        let (a, b) = (
            PrivateIdentity::generate(&mut OsRng),
            PrivateIdentity::generate(&mut OsRng),
        );
        let mut channel = [0u8; 16];
        OsRng.fill_bytes(&mut channel);
        let body = ChannelBody::opening(
            ChannelId(channel),
            node_id(a.public()),
            node_id(b.public()),
            Deposits {
                a: 1_000_000,
                b: 1_000_000,
            },
            LotteryTerms::initial(),
        );
        let kind = SettlementKind::Checkpoint;
        let record = SettlementRecord {
            body,
            kind,
            sig_a: sign_settlement(&body, kind, &signing_key(&a)),
            sig_b: sign_settlement(&body, kind, &signing_key(&b)),
        };
        // kind ‖ count u16 ‖ record ‖ identity A ‖ identity B
        let mut message = vec![SETTLEMENTS_KIND];
        message.extend_from_slice(&1u16.to_le_bytes());
        message.extend_from_slice(&record.encode());
        message.extend_from_slice(&a.public().public_key());
        message.extend_from_slice(&b.public().public_key());
        let ciphertext =
            announce
                .identity
                .encrypt(&message, announce.ratchet.as_ref(), &mut OsRng)?;
        let packet = Packet::new(
            PacketType::Data,
            DestinationType::Single,
            announce.destination,
            Context::NONE,
            ciphertext,
        );
        batch.extend(hdlc::encode(&packet.encode()));
        if batch.len() > 64 * 1024 {
            stream.write_all(&batch)?;
            batch.clear();
        }
    }
    stream.write_all(&batch)?;
    stream.flush()?;
    std::thread::sleep(Duration::from_secs(1));
    println!("sent={count}");
    Ok(())
}

fn now_ts(start: Instant) -> Timestamp {
    Timestamp::from_millis(start.elapsed().as_millis() as u64)
}

/// Opens a link to the node's `mehr.node` destination and completes its handshake.
fn establish_link(stream: &mut TcpStream, start: Instant) -> anyhow::Result<Link> {
    let announce = node_announce(stream)?;
    let (mut link, request) = Link::initiate(
        &announce.identity,
        announce.destination,
        None,
        1,
        now_ts(start),
        &mut OsRng,
    );
    stream.write_all(&hdlc::encode(&request.encode()))?;
    let rtt = first_packet(stream, "the node did not prove the link", |packet| {
        if packet.packet_type != PacketType::Proof {
            return None;
        }
        link.handle_proof(packet, now_ts(start), &mut OsRng).ok()
    })?;
    stream.write_all(&hdlc::encode(&rtt.encode()))?;
    Ok(link)
}

fn segment_bombs(target: &str, count: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(target)?;
    let mut link = establish_link(&mut stream, start)?;
    let filler = vec![0x5a; 256];
    let mut batch = Vec::new();
    for msg in 0..count {
        let announced = if msg % 2 == 0 {
            LARGE_SEGMENT_COUNT
        } else {
            u32::MAX
        };
        // Segment 0x01 ‖ msg u32 ‖ index u32 ‖ count u32 ‖ bytes
        let mut segment = vec![0x01];
        segment.extend_from_slice(&(msg as u32).to_le_bytes());
        segment.extend_from_slice(&0u32.to_le_bytes());
        segment.extend_from_slice(&announced.to_le_bytes());
        segment.extend_from_slice(&filler);
        let packet = link.encrypt(SEGMENT_CONTEXT, &segment, now_ts(start), &mut OsRng)?;
        batch.extend(hdlc::encode(&packet.encode()));
        if batch.len() > 64 * 1024 {
            stream.write_all(&batch)?;
            batch.clear();
        }
    }
    stream.write_all(&batch)?;
    stream.flush()?;
    std::thread::sleep(Duration::from_secs(1));
    println!("sent={count}");
    Ok(())
}
