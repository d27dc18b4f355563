//! Relay throughput: a traffic generator → relay → sink chain on loopback TCP, with mehrd as
//! the relay and then Python rnsd as the relay, the same traffic in one run.
//!
//! The generator and the sink speak Reticulum's wire format directly (HDLC over TCP), so the
//! relay is the only thing measured. The sink announces a destination; the generator learns
//! the relay's transport id from the rebroadcast announce, then sends unique DATA packets in
//! transport (HEADER_2) towards the sink for a fixed time. Throughput is what the sink
//! receives per second.
//!
//! Run: `cargo bench -p mehrd --bench relay` (needs `MEHR_RNS_PYTHON` or the venv that
//! `tests/run.sh` makes in ~/.cache/mehr/venv).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mehr_transport::{
    Announce, DestinationName, Packet, PacketType, PrivateIdentity,
    framing::hdlc,
    hashes::{DestinationHash, IdentityHash},
    packet::{Context, DestinationType, TransportType},
};
use rand::{RngCore, rngs::OsRng};

/// Payload bytes per packet: a full packet (HEADER_2 is 35 bytes; 500 in all).
const PAYLOAD: usize = 465;
/// How long traffic flows per relay.
const MEASURE: Duration = Duration::from_secs(8);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "relay did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_mehrd(port: u16, dir: &std::path::Path) -> Child {
    let config = dir.join("mehrd.toml");
    std::fs::write(
        &config,
        format!("[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mehrd"))
        .arg("--data-dir")
        .arg(dir.join("node"))
        .arg("--config")
        .arg(&config)
        .args([
            "--api-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mehrd");
    wait_listening(port);
    child
}

fn python() -> PathBuf {
    std::env::var("MEHR_RNS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/mehr/venv/bin/python")
        })
}

fn start_rnsd(port: u16, dir: &std::path::Path) -> Child {
    std::fs::write(
        dir.join("config"),
        format!(
            "[reticulum]\n  enable_transport = Yes\n  share_instance = No\n\n[logging]\n  loglevel = 2\n\n\
             [interfaces]\n  [[TCP Server]]\n    type = TCPServerInterface\n    enabled = yes\n    \
             listen_ip = 127.0.0.1\n    listen_port = {port}\n"
        ),
    )
    .unwrap();
    let child = Command::new(python())
        .args(["-m", "RNS.Utilities.rnsd", "--config"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rnsd (set MEHR_RNS_PYTHON to a python with rns)");
    wait_listening(port);
    child
}

/// Reads HDLC frames from `stream`, calling `on_frame` for each, until it fails.
fn read_frames(mut stream: TcpStream, mut on_frame: impl FnMut(&[u8]) -> bool) {
    let mut decoder = hdlc::Decoder::new(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut keep_going = true;
        decoder.push(&buf[..n], |frame| keep_going &= on_frame(frame));
        if !keep_going {
            return;
        }
    }
}

struct Result_ {
    packets: u64,
    seconds: f64,
}

impl Result_ {
    fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.seconds
    }
    fn mb_per_sec(&self) -> f64 {
        self.packets_per_sec() * 500.0 / 1e6
    }
}

/// Measures the relay listening on `port`.
fn measure(port: u16) -> Result_ {
    let generator = TcpStream::connect(("127.0.0.1", port)).unwrap();
    generator.set_nodelay(true).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The sink announces a destination and counts the packets that reach it.
    let sink_identity = PrivateIdentity::generate(&mut OsRng);
    let name = DestinationName::parse("bench.sink").unwrap();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let announce = Announce::create_random(&sink_identity, &name, b"", None, unix, &mut OsRng);
    let sink_destination: DestinationHash = announce.destination;
    let mut sink = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sink.write_all(&hdlc::encode(&announce.to_packet(false).encode()))
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let sink_reader = sink.try_clone().unwrap();
    let counter = received.clone();
    std::thread::spawn(move || {
        read_frames(sink_reader, |frame| {
            if let Ok(packet) = Packet::parse(frame)
                && packet.packet_type == PacketType::Data
                && packet.destination == sink_destination
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            true
        })
    });

    // The generator learns the relay's transport id from the rebroadcast announce.
    let (tx, rx) = std::sync::mpsc::channel::<IdentityHash>();
    let generator_reader = generator.try_clone().unwrap();
    std::thread::spawn(move || {
        read_frames(generator_reader, |frame| {
            if let Ok(packet) = Packet::parse(frame)
                && packet.packet_type == PacketType::Announce
                && packet.destination == sink_destination
                && let Some(relay) = packet.transport_id
            {
                let _ = tx.send(relay);
            }
            true
        })
    });
    let relay = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the relay rebroadcast the sink's announce");

    // Unique packets (the relay drops duplicates), written as fast as the relay takes them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer_stop = stop.clone();
    let mut writer = generator;
    let writer_thread = std::thread::spawn(move || {
        let mut payload = vec![0u8; PAYLOAD];
        OsRng.fill_bytes(&mut payload);
        let mut batch = Vec::with_capacity(64 * 520);
        let mut sequence = 0u64;
        while !writer_stop.load(Ordering::Relaxed) {
            batch.clear();
            for _ in 0..64 {
                // A counter makes every packet (and its hash) unique.
                sequence += 1;
                payload[..8].copy_from_slice(&sequence.to_le_bytes());
                let mut packet = Packet::new(
                    PacketType::Data,
                    DestinationType::Single,
                    sink_destination,
                    Context::NONE,
                    payload.clone(),
                );
                packet.transport_type = TransportType::Transport;
                packet.transport_id = Some(relay);
                batch.extend(hdlc::encode(&packet.encode()));
            }
            if writer.write_all(&batch).is_err() {
                return;
            }
        }
    });

    std::thread::sleep(Duration::from_secs(1)); // warm-up
    let start_count = received.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(MEASURE);
    let packets = received.load(Ordering::Relaxed) - start_count;
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(sink);
    let _ = writer_thread.join();
    Result_ { packets, seconds }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let dir = tempfile::tempdir().unwrap();

    let port = free_port();
    let mut mehrd = start_mehrd(port, dir.path());
    let ours = measure(port);
    let _ = mehrd.kill();
    let _ = mehrd.wait();

    let port = free_port();
    let rnsd_dir = dir.path().join("rnsd");
    std::fs::create_dir_all(&rnsd_dir).unwrap();
    let mut rnsd = start_rnsd(port, &rnsd_dir);
    let theirs = measure(port);
    let _ = rnsd.kill();
    let _ = rnsd.wait();

    println!(
        "relay throughput, generator → relay → sink on loopback TCP, {PAYLOAD}-byte payloads, {}s each",
        MEASURE.as_secs()
    );
    println!("| relay | packets/s | MB/s |");
    println!("|---|---:|---:|");
    println!(
        "| mehrd | {:.0} | {:.2} |",
        ours.packets_per_sec(),
        ours.mb_per_sec()
    );
    println!(
        "| rnsd (rns, Python) | {:.0} | {:.2} |",
        theirs.packets_per_sec(),
        theirs.mb_per_sec()
    );
    println!(
        "ratio mehrd / rnsd: {:.1}×",
        ours.packets_per_sec() / theirs.packets_per_sec().max(1e-9)
    );
}
