//! Interoperability with the real Python Reticulum stack (PyPI `rns`): its `rnsd` as a
//! transport node between our daemons, and RNS programs (tests/interop/rns_peer.py) as peers.
//!
//! These tests need a Python with `rns` installed, named by `MEHR_RNS_PYTHON`; they are
//! ignored by a plain `cargo test` and run by `tests/run.sh` (which sets it up).

mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{TestDaemon, eventually, free_port, tcp_client, tcp_server};
use futures::StreamExt;
use mehr_sdk::{Client, proto as pb};

fn python() -> PathBuf {
    PathBuf::from(
        std::env::var("MEHR_RNS_PYTHON")
            .expect("set MEHR_RNS_PYTHON to a python with `rns` installed (tests/run.sh does)"),
    )
}

fn peer_script() -> PathBuf {
    // Read at run time: a test binary in a shared target dir may have been compiled in another
    // checkout of the same sources, whose path `env!` would have baked in.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.join("../tests/interop/rns_peer.py")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A real rnsd with transport enabled and a TCP server interface on a free port.
struct Rnsd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Rnsd {
    fn start() -> Rnsd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "[reticulum]\n  enable_transport = Yes\n  share_instance = No\n  panic_on_interface_error = Yes\n\n\
             [logging]\n  loglevel = 3\n\n[interfaces]\n  [[TCP Server]]\n    type = TCPServerInterface\n    \
             enabled = yes\n    listen_ip = 127.0.0.1\n    listen_port = {port}\n"
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        let child = Command::new(python())
            .args(["-m", "RNS.Utilities.rnsd", "--config"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rnsd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rnsd did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Rnsd {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Rnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rns_peer.py` with `args`.
fn spawn_peer(args: &[&str]) -> Child {
    Command::new(python())
        .arg(peer_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The first JSON line a peer prints; panics on its error line.
fn first_line(child: &mut Child) -> serde_json::Value {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer printed {line:?}: {e}"));
    assert!(value.get("error").is_none(), "the RNS peer failed: {value}");
    value
}

/// Runs a peer to completion and returns its JSON line.
fn run_peer(args: &[&str]) -> serde_json::Value {
    let mut child = spawn_peer(args);
    let value = first_line(&mut child);
    assert!(child.wait().unwrap().success(), "peer failed: {value}");
    value
}

#[test]
#[ignore = "needs Python rns (MEHR_RNS_PYTHON): run by tests/run.sh"]
fn python_rns_sees_our_mehr_node_announce_with_valid_signature_and_app_data() {
    let port = free_port();
    let node = TestDaemon::start_with_config(&tcp_server(port));
    let stats = runtime().block_on(async {
        node.client()
            .await
            .unwrap()
            .transport_stats()
            .await
            .unwrap()
    });
    let info = runtime().block_on(async { node.client().await.unwrap().info().await.unwrap() });
    // RNS only calls the handler for announces whose signature and hashes it validated.
    let seen = run_peer(&[
        "watch",
        "--connect",
        &format!("127.0.0.1:{port}"),
        "--aspect",
        "mehr.node",
    ]);
    assert_eq!(seen["destination"], hex::encode(&stats.mehr_destination));
    assert_eq!(seen["identity_hash"], hex::encode(&info.identity_hash));
    assert_eq!(
        seen["app_data"],
        hex::encode(&stats.announce_app_data),
        "app_data arrives intact"
    );
    assert_eq!(
        &stats.announce_app_data[..2],
        &[0x4E, 0x10],
        "it carries the Mehr extension"
    );
}

#[test]
#[ignore = "needs Python rns (MEHR_RNS_PYTHON): run by tests/run.sh"]
fn python_rns_opens_a_link_to_us_and_data_flows_both_ways() {
    let port = free_port();
    let node = TestDaemon::start_with_config(&tcp_server(port));
    runtime().block_on(async {
        let client = node.client().await.unwrap();
        let mut listening = client.listen("interop.echo", true).await.unwrap();
        let destination = hex::encode(&listening.destination);
        let connect = format!("127.0.0.1:{port}");
        let mut peer = spawn_peer(&[
            "echo-link",
            "--connect",
            &connect,
            "--destination",
            &destination,
            "--name",
            "interop.echo",
            "--message",
            "ping from python",
        ]);
        let message = tokio::time::timeout(Duration::from_secs(60), listening.messages.next())
            .await
            .expect("the link message from Python")
            .unwrap()
            .unwrap();
        assert_eq!(message.payload.as_ref(), b"ping from python");
        let link = message.link_id.expect("it came over a link");
        client
            .reply(&link, b"pong from mehr".to_vec())
            .await
            .unwrap();
        let seen = tokio::task::spawn_blocking(move || {
            let value = first_line(&mut peer);
            assert!(peer.wait().unwrap().success());
            value
        })
        .await
        .unwrap();
        assert_eq!(seen["reply"], "pong from mehr");
        assert_eq!(seen["link_id"], hex::encode(&link));
    });
}

#[test]
#[ignore = "needs Python rns (MEHR_RNS_PYTHON): run by tests/run.sh"]
fn we_validate_announces_that_came_through_rnsd() {
    let rnsd = Rnsd::start();
    let node = TestDaemon::start_with_config(&tcp_client(rnsd.port));
    let connect = format!("127.0.0.1:{}", rnsd.port);
    let mut announcer = spawn_peer(&[
        "announce",
        "--connect",
        &connect,
        "--name",
        "interop.announcer",
        "--app-data",
        "hello",
        "--seconds",
        "60",
    ]);
    let announced = first_line(&mut announcer);
    let destination = hex::decode(announced["destination"].as_str().unwrap()).unwrap();
    runtime().block_on(async {
        let client = node.client().await.unwrap();
        let path = eventually(
            "a path to the Python destination via rnsd",
            Duration::from_secs(40),
            || async {
                client
                    .paths(false)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.destination == destination)
            },
        )
        .await;
        assert_eq!(path.hops, 2, "Python → rnsd → us");
        assert!(!path.mehr_node);
        let stats = client.transport_stats().await.unwrap();
        assert!(
            stats.drops.iter().all(|d| d.reason != "invalid_announce"),
            "{:?}",
            stats.drops
        );
    });
    let _ = announcer.kill();
    let _ = announcer.wait();
}

#[test]
#[ignore = "needs Python rns (MEHR_RNS_PYTHON): run by tests/run.sh"]
fn two_mehr_nodes_find_each_other_and_talk_through_rnsd() {
    let rnsd = Rnsd::start();
    let a = TestDaemon::start_with_config(&tcp_client(rnsd.port));
    let b = TestDaemon::start_with_config(&tcp_client(rnsd.port));
    runtime().block_on(async {
        let (a, b): (Client, Client) = (a.client().await.unwrap(), b.client().await.unwrap());
        let b_node = b.transport_stats().await.unwrap().mehr_destination.to_vec();
        let path = eventually(
            "A's path to B through rnsd",
            Duration::from_secs(40),
            || async {
                a.paths(true)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.destination == b_node)
            },
        )
        .await;
        assert_eq!(path.hops, 2, "A → rnsd → B");
        let cost = path.cost.expect("B is a Mehr node");
        assert_eq!(
            cost.hops, 0,
            "rnsd is an L0 hop and adds nothing to the path cost"
        );

        let mut inbox_b = b.listen("interop.inbox", true).await.unwrap();
        let mut inbox_a = a.listen("interop.inbox", true).await.unwrap();
        for (client, inbox) in [(&a, &inbox_b.destination), (&b, &inbox_a.destination)] {
            eventually("a path to the inbox", Duration::from_secs(40), || async {
                client
                    .paths(false)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.destination == *inbox)
            })
            .await;
        }
        let report = a
            .send(
                &inbox_b.destination,
                b"A to B via rnsd".to_vec(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(report.delivered, "{report:?}");
        assert_eq!(
            inbox_b
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"A to B via rnsd"
        );

        let report = b
            .send(
                &inbox_a.destination,
                b"B to A via rnsd".to_vec(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(report.delivered);
        assert_eq!(
            inbox_a
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"B to A via rnsd"
        );

        // Larger than a packet: a link through rnsd.
        let big: Vec<u8> = (0..20_000u32).map(|i| (i % 199) as u8).collect();
        let report = a
            .send(&inbox_b.destination, big.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(report.method(), pb::SendMethod::Link);
        assert!(report.delivered);
        assert_eq!(
            inbox_b
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            big.as_slice()
        );
    });
}
