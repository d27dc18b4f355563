//! The cost of telemetry: the same work on a node with metrics and tracing off and on a node
//! with both on (`[metrics] listen` scraped every second as Prometheus would, `[telemetry]
//! otlp_endpoint` exporting API calls' spans to a real OTLP receiver), in one run. Traces are
//! measured twice: every call sampled (`sample_ratio = 1.0`) and at the default sampling
//! (`sample_ratio = 0.1`: one call in ten without a caller's `traceparent` is recorded); the
//! relay runs with every span sampled.
//!
//! - `GetInfo` calls/s through the Unix socket, one caller, the nodes taking turns in rounds, each
//!   round starting with the next node, so that load from elsewhere on the machine falls on both alike;
//! - relay packets/s: the relay benchmark's generator → relay → sink chain
//!   (`support/relay_traffic.rs`), best sustained rate and an unpaced flood, a fresh relay
//!   each time, off, on, off, on; the best of each side.
//!
//! The receiver is `tests/python/otlp_receiver.py` (grpcio and `opentelemetry-proto`), run with
//! `MEHR_RNS_PYTHON` or the venv that `tests/run.sh` makes in ~/.cache/mehr/venv.
//!
//! Run: `cargo bench -p mehrd --bench telemetry` (`MEHR_BENCH_CALLS` sets the GetInfo calls per
//! round; `MEHR_BENCH_SKIP_RELAY=1` measures GetInfo only).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/relay_traffic.rs"]
mod relay_traffic;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::TestDaemon;
use relay_traffic::{Measured, free_port, measure, python, start_relay};

/// GetInfo rounds per node.
const ROUNDS: usize = 6;

/// The OTLP receiver, until dropped.
struct Receiver {
    child: Child,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/otlp_receiver.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver (set MEHR_RNS_PYTHON to a python with grpcio and opentelemetry-proto)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the OTLP receiver did not start");
        Receiver {
            child,
            stdout,
            port,
        }
    }

    /// Stops the receiver; returns what it said it received.
    fn stop(mut self) -> String {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let _ = self.child.wait();
        rest.trim().to_string()
    }
}

/// How a traced node samples the traces it starts.
#[derive(Clone, Copy)]
enum Sampling {
    /// `telemetry.sample_ratio = 1.0`: every call's span is exported.
    Every,
    /// The default `telemetry.sample_ratio` (0.1).
    Default,
}

/// The config of a node with telemetry on: a metrics port and the receiver's endpoint.
fn telemetry_config(metrics_port: u16, receiver: &Receiver, sampling: Sampling) -> String {
    let ratio = match sampling {
        Sampling::Every => "sample_ratio = 1.0\n",
        Sampling::Default => "",
    };
    format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\n{ratio}",
        receiver.port
    )
}

/// Scrapes `/metrics` on `port` every second, as Prometheus would, until stopped; counts
/// scrapes.
fn scraper(port: u16) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let (stopping, counting) = (stop.clone(), scrapes.clone());
    std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.write_all(
                    b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                );
                let mut body = Vec::new();
                if stream.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                    counting.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    (stop, scrapes)
}

/// CPU time (user and system, all threads) that process `pid` has used so far, in clock ticks
/// (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 14th and 15th of the line, the 12th and 13th after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// `calls` sequential GetInfo calls; returns the time they took.
async fn get_info_round(client: &mehr_sdk::Client, calls: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..calls {
        client.info().await.unwrap();
    }
    started.elapsed()
}

/// GetInfo calls/s of four nodes taking turns: telemetry off, metrics only (scraped), metrics
/// and traces with every call sampled, and metrics and traces at the default sampling; and the
/// scrapes made.
fn get_info(temp: &Path, receiver: &Receiver, calls: usize) -> ([f64; 4], [f64; 4], u64) {
    let plain = TestDaemon::start_in(&temp.join("plain"), &[]);
    let metrics_port = free_port();
    let config = temp.join("metrics.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    )
    .unwrap();
    let metered = TestDaemon::start_in(
        &temp.join("metered"),
        &["--config", config.to_str().unwrap()],
    );
    let traced_port = free_port();
    let config = temp.join("traced.toml");
    std::fs::write(
        &config,
        telemetry_config(traced_port, receiver, Sampling::Every),
    )
    .unwrap();
    let traced = TestDaemon::start_in(
        &temp.join("traced"),
        &["--config", config.to_str().unwrap()],
    );
    let sampled_port = free_port();
    let config = temp.join("sampled.toml");
    std::fs::write(
        &config,
        telemetry_config(sampled_port, receiver, Sampling::Default),
    )
    .unwrap();
    let sampled = TestDaemon::start_in(
        &temp.join("sampled"),
        &["--config", config.to_str().unwrap()],
    );
    let scrapers = [
        scraper(metrics_port),
        scraper(traced_port),
        scraper(sampled_port),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pids = [&plain, &metered, &traced, &sampled]
        .map(|daemon| daemon.child.as_ref().expect("running").id());
    let (took, cpu_ticks_used) = runtime.block_on(async {
        let clients = [
            plain.client().await.unwrap(),
            metered.client().await.unwrap(),
            traced.client().await.unwrap(),
            sampled.client().await.unwrap(),
        ];
        // Warm them up.
        for client in &clients {
            get_info_round(client, calls / 5).await;
        }
        let mut took = [Duration::ZERO; 4];
        let cpu_before = pids.map(cpu_ticks);
        // Each round starts with another node, so that no node always runs just after the
        // same other one.
        for round in 0..ROUNDS {
            for turn in 0..clients.len() {
                let node = (round + turn) % clients.len();
                took[node] += get_info_round(&clients[node], calls).await;
            }
        }
        // Let the last batch of spans go out, so that its export is counted too.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let cpu_after = pids.map(cpu_ticks);
        let used: [u64; 4] = std::array::from_fn(|i| cpu_after[i] - cpu_before[i]);
        (took, used)
    });
    let mut scrapes = 0;
    for (stop, scraped) in scrapers {
        stop.store(true, Ordering::Relaxed);
        scrapes += scraped.load(Ordering::Relaxed);
    }
    let total = (calls * ROUNDS) as f64;
    // Dropping the daemons stops them (SIGTERM): the traced one flushes its last spans.
    drop((plain, metered, traced, sampled));
    // CPU ticks are 10 ms: µs per call.
    let cpu_per_call = cpu_ticks_used.map(|ticks| ticks as f64 * 10_000.0 / total);
    (
        took.map(|took| total / took.as_secs_f64()),
        cpu_per_call,
        scrapes,
    )
}

/// One relay measurement of a fresh mehrd, with `extra` config (and a scraper on
/// `metrics_port` when given); returns the figures and the scrapes made.
fn relay_once(dir: &Path, extra: &str, metrics_port: Option<u16>) -> (Measured, u64) {
    let port = free_port();
    let mut relay = start_relay(port, dir, extra);
    let scraping = metrics_port.map(scraper);
    let measured = measure(port);
    let scrapes = scraping.map_or(0, |(stop, scrapes)| {
        stop.store(true, Ordering::Relaxed);
        scrapes.load(Ordering::Relaxed)
    });
    let _ = relay.kill();
    let _ = relay.wait();
    (measured, scrapes)
}

/// The relay off, on, off, on (so that a change in the machine's load falls on both); each
/// side's best figures.
fn relay(temp: &Path, receiver: &Receiver) -> (Measured, Measured, u64) {
    let mut off: Option<Measured> = None;
    let mut on: Option<Measured> = None;
    let mut scrapes = 0;
    let better = |kept: Option<Measured>, new: Measured| match kept {
        Some(kept) => Measured {
            best: kept.best.max(new.best),
            flood: kept.flood.max(new.flood),
            steps: new.steps,
        },
        None => new,
    };
    for round in 0..2 {
        let (measured, _) = relay_once(&temp.join(format!("relay-plain-{round}")), "", None);
        off = Some(better(off, measured));
        let metrics_port = free_port();
        let (measured, scraped) = relay_once(
            &temp.join(format!("relay-traced-{round}")),
            &telemetry_config(metrics_port, receiver, Sampling::Every),
            Some(metrics_port),
        );
        on = Some(better(on, measured));
        scrapes += scraped;
    }
    (off.unwrap(), on.unwrap(), scrapes)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let calls: usize = std::env::var("MEHR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let temp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();

    let ([info_off, info_metrics, info_on, info_sampled], cpu, info_scrapes) =
        get_info(temp.path(), &receiver, calls);
    let relayed = (std::env::var("MEHR_BENCH_SKIP_RELAY").as_deref() != Ok("1"))
        .then(|| relay(temp.path(), &receiver));
    let received = receiver.stop();

    let overhead = |off: f64, on: f64| (1.0 - on / off) * 100.0;
    println!();
    println!(
        "telemetry overhead (metrics scraped every second, spans exported to an OTLP receiver)"
    );
    println!("| work | off | on | on / off | overhead |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| GetInfo calls/s, 1 caller, {ROUNDS} alternating rounds of {calls}: metrics only | {info_off:.0} | {info_metrics:.0} | {:.3} | {:.1} % |",
        info_metrics / info_off,
        overhead(info_off, info_metrics)
    );
    println!(
        "| GetInfo calls/s, same rounds: metrics and traces, every call sampled (sample_ratio = 1.0) | {info_off:.0} | {info_on:.0} | {:.3} | {:.1} % |",
        info_on / info_off,
        overhead(info_off, info_on)
    );
    println!(
        "| GetInfo calls/s, same rounds: metrics and traces, default sampling (sample_ratio = 0.1) | {info_off:.0} | {info_sampled:.0} | {:.3} | {:.1} % |",
        info_sampled / info_off,
        overhead(info_off, info_sampled)
    );
    println!(
        "| daemon CPU µs per GetInfo call (user + system, all threads, exports included): off / metrics / every call sampled / default sampling | {:.1} | {:.1} / {:.1} / {:.1} | {:.3} / {:.3} / {:.3} | |",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[3],
        cpu[1] / cpu[0],
        cpu[2] / cpu[0],
        cpu[3] / cpu[0],
    );
    if let Some((off, on, _)) = &relayed {
        println!(
            "| relay packets/s, best sustained | {:.0} | {:.0} | {:.3} | {:.1} % |",
            off.best,
            on.best,
            on.best / off.best,
            overhead(off.best, on.best)
        );
        println!(
            "| relay packets/s, unpaced flood | {:.0} | {:.0} | {:.3} | {:.1} % |",
            off.flood,
            on.flood,
            on.flood / off.flood,
            overhead(off.flood, on.flood)
        );
    }
    println!(
        "scrapes of /metrics: {info_scrapes} during GetInfo, {} during the relay run; receiver: {received}",
        relayed.as_ref().map_or(0, |r| r.2)
    );
}
