//! The relay benchmarks' traffic: a generator and a sink speaking Reticulum's wire format
//! (HDLC over TCP) to a relay, which is the only thing measured (used by the `relay` and
//! `telemetry` benches).

#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
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
pub const PAYLOAD: usize = 465;
/// Packets per write.
pub const BATCH: usize = 32;
/// Each offered rate runs this long before measuring…
pub const SETTLE: Duration = Duration::from_millis(700);
/// …and is measured this long.
pub const STEP: Duration = Duration::from_secs(3);
/// Pause between rates so the relay's backlog drains.
pub const DRAIN: Duration = Duration::from_secs(2);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "relay did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Packets per second delivered at one offered rate (`None`: unpaced flood).
pub struct Step {
    pub offered: Option<f64>,
    pub delivered: f64,
}

/// One relay's figures: its best sustained rate and its rate under a flood.
pub struct Measured {
    pub best: f64,
    pub flood: f64,
    pub steps: Vec<Step>,
}

/// Connects a generator and a sink to the relay on `port` and measures it.
pub fn measure(port: u16) -> Measured {
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

    // The writer sends unique packets (the relay drops duplicates) at the rate in `rate`
    // (packets per second; 0 = as fast as the relay takes them).
    let rate = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (writer_rate, writer_stop, mut writer) = (rate.clone(), stop.clone(), generator);
    let writer_thread = std::thread::spawn(move || {
        let mut payload = vec![0u8; PAYLOAD];
        OsRng.fill_bytes(&mut payload);
        let mut batch = Vec::with_capacity(BATCH * 520);
        let mut sequence = 0u64;
        let mut paced_from = (Instant::now(), 0u64, 0u64);
        while !writer_stop.load(Ordering::Relaxed) {
            let rate = writer_rate.load(Ordering::Relaxed);
            if rate == u64::MAX {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if rate != 0 {
                // Pace: batch n of this rate is due at start + n·BATCH/rate.
                if paced_from.2 != rate {
                    paced_from = (Instant::now(), 0, rate);
                }
                let due = paced_from.0
                    + Duration::from_secs_f64(paced_from.1 as f64 * BATCH as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                paced_from.1 += 1;
            }
            batch.clear();
            for _ in 0..BATCH {
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
                hdlc::encode_into(&packet.encode(), &mut batch);
            }
            if writer.write_all(&batch).is_err() {
                return;
            }
        }
    });

    let run_step = |offered: Option<f64>| -> Step {
        rate.store(offered.map_or(0, |r| r as u64), Ordering::Relaxed);
        std::thread::sleep(SETTLE);
        let (count, start) = (received.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(STEP);
        let delivered =
            (received.load(Ordering::Relaxed) - count) as f64 / start.elapsed().as_secs_f64();
        // Pause and let the relay drain before the next step.
        rate.store(u64::MAX, Ordering::Relaxed);
        std::thread::sleep(DRAIN);
        Step { offered, delivered }
    };
    let mut steps = Vec::new();
    let mut offered = 1000.0;
    loop {
        let step = run_step(Some(offered));
        let kept_up = step.delivered >= 0.9 * offered;
        steps.push(step);
        if !kept_up || offered >= 4_096_000.0 {
            break;
        }
        offered *= 2.0;
    }
    let flood = run_step(None);
    let best = steps.iter().map(|s| s.delivered).fold(0.0, f64::max);
    let flood_rate = flood.delivered;
    steps.push(flood);
    stop.store(true, Ordering::Relaxed);
    drop(sink);
    let _ = writer_thread.join();
    Measured {
        best,
        flood: flood_rate,
        steps,
    }
}

/// A relay mehrd with a TCP server on `port`, and `extra` config.
pub fn start_relay(port: u16, dir: &Path, extra: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("mehrd.toml");
    std::fs::write(
        &config,
        format!(
            "{extra}\n[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"
        ),
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

/// The Python that runs rnsd and the OTLP receiver: `MEHR_RNS_PYTHON`, else the venv
/// `tests/run.sh` makes.
pub fn python() -> PathBuf {
    std::env::var("MEHR_RNS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/mehr/venv/bin/python")
        })
}
