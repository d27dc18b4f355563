//! A hostile mesh peer for the adversary test (daemon/tests/adversary.rs): a real second
//! process that speaks the wire — HDLC-framed Reticulum packets over TCP, built from the pure
//! `mehr-transport` crate — and floods a node with what an open mesh lets anyone send.
//!
//! ```text
//! mehr-adversary sybil-announces --target 127.0.0.1:4242 --count 100000
//! mehr-adversary link-requests   --target 127.0.0.1:4242 --count 1000
//! mehr-adversary tcp-connections --target 127.0.0.1:4242 --count 2000 --hold-secs 10
//! ```
//! Each prints one line `sent=N` (or `connected=N refused=M`) when done.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use mehr_transport::{
    Announce, DestinationName, Link, Packet, PacketType, PrivateIdentity, Timestamp, framing::hdlc,
};
use rand::rngs::OsRng;

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
            if packet.packet_type != PacketType::Announce {
                continue;
            }
            if let Ok(announce) = Announce::from_packet(&packet)
                && announce.name_hash == DestinationName::mehr_node().name_hash()
            {
                return Ok(announce);
            }
        }
    }
    anyhow::bail!("no mehr.node announce heard within 20 s")
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
