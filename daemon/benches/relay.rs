//! Relay throughput: a traffic generator → relay → sink chain on loopback TCP, with mehrd as
//! the relay and then Python rnsd as the relay, the same traffic in one run.
//!
//! The generator and the sink speak Reticulum's wire format directly (HDLC over TCP), so the
//! relay is the only thing measured. The sink announces a destination; the generator learns
//! the relay's transport id from the rebroadcast announce, then sends unique DATA packets in
//! transport (HEADER_2) towards the sink. Throughput is what the sink receives per second.
//!
//! Offered load matters: rnsd's TCP interface slows down sharply when its input backs up, so
//! each relay is measured at paced rates doubling from 1000 packets/s until it no longer keeps
//! up (its best sustained rate), and then under an unpaced flood.
//!
//! Run: `cargo bench -p mehrd --bench relay` (needs `MEHR_RNS_PYTHON` or the venv that
//! `tests/run.sh` makes in ~/.cache/mehr/venv).

#[path = "support/relay_traffic.rs"]
mod relay_traffic;

use std::process::{Child, Command, Stdio};

use relay_traffic::{free_port, measure, python, start_relay, wait_listening};

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

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let dir = tempfile::tempdir().unwrap();

    let port = free_port();
    let mut mehrd = start_relay(port, dir.path(), "");
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

    for (name, measured) in [("mehrd", &ours), ("rnsd", &theirs)] {
        let steps: Vec<String> = measured
            .steps
            .iter()
            .map(|s| match s.offered {
                Some(offered) => format!("{offered:.0}→{:.0}", s.delivered),
                None => format!("flood→{:.0}", s.delivered),
            })
            .collect();
        println!("{name}: offered→delivered packets/s: {}", steps.join(", "));
    }
    let mb = |pps: f64| pps * 500.0 / 1e6;
    println!();
    println!("relay throughput, generator → relay → sink on loopback TCP, 500-byte packets");
    println!("| relay | best sustained packets/s | MB/s | under a flood, packets/s | MB/s |");
    println!("|---|---:|---:|---:|---:|");
    for (name, m) in [("mehrd", &ours), ("rnsd (rns 1.5.7, Python)", &theirs)] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} | {:.1} |",
            m.best,
            mb(m.best),
            m.flood,
            mb(m.flood)
        );
    }
    println!(
        "ratio mehrd / rnsd: {:.1}× at the best sustained rate, {:.1}× under a flood",
        ours.best / theirs.best.max(1e-9),
        ours.flood / theirs.flood.max(1e-9)
    );
}
