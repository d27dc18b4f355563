//! Cross-checks against the real Python Reticulum stack (PyPI `rns`).
//!
//! Each test runs one script from `tests/rns/` with the Python named by `MEHR_RNS_PYTHON`
//! and exchanges hex lines with it. Run with
//! `MEHR_RNS_PYTHON=~/.cache/mehr/venv-dev/bin/python cargo test --release -p mehr-transport -- --include-ignored`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use mehr_transport::announce::Announce;
use mehr_transport::destination::DestinationName;
use mehr_transport::identity::{PrivateIdentity, ratchet_public_key};
use mehr_transport::link::Role;
use mehr_transport::link::{CloseReason, Link, LinkEvent, LinkState};
use mehr_transport::packet::{Context, DestinationType, Packet, PacketType};
use mehr_transport::path_request::{PathRequest, path_request_destination};
use mehr_transport::proof::ProofData;
use mehr_transport::router::{
    Action, InterfaceConfig, InterfaceId, LocalDestination, Router, RouterConfig, RouterEvent,
    WallClock,
};
use mehr_transport::{DestinationHash, Identity, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;

const LINE_TIMEOUT: Duration = Duration::from_secs(60);

struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    script: String,
}

impl PyPeer {
    fn spawn(script: &str, args: &[String]) -> Self {
        let python = std::env::var("MEHR_RNS_PYTHON").unwrap_or_else(|_| {
            panic!(
                "MEHR_RNS_PYTHON is not set: point it at a python with `rns` installed, e.g. \
                 MEHR_RNS_PYTHON=~/.cache/mehr/venv-dev/bin/python (create it with \
                 `python3 -m venv ~/.cache/mehr/venv-dev && ~/.cache/mehr/venv-dev/bin/pip install rns`)"
            )
        });
        // Read at run time: a test binary in a shared target dir may have been compiled in
        // another checkout of the same sources, whose path `env!` would have baked in.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let path = manifest_dir.join("tests/rns").join(script);
        let mut child = Command::new(&python)
            .arg("-u")
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} {}: {e}", path.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            script: script.to_owned(),
        }
    }

    fn expect_str(&mut self, key: &str) -> String {
        let line = self
            .lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("{}: no `{key}=` line (script ended or hung)", self.script));
        let (k, v) = line.split_once('=').unwrap_or((line.as_str(), ""));
        assert_ne!(k, "error", "{}: python reported: {v}", self.script);
        assert_eq!(k, key, "{}: expected `{key}=`, got {line:?}", self.script);
        v.to_owned()
    }

    fn expect(&mut self, key: &str) -> Vec<u8> {
        let v = self.expect_str(key);
        hex::decode(&v).unwrap_or_else(|e| panic!("{}: `{key}` is not hex ({e}): {v}", self.script))
    }

    fn expect_packet(&mut self, key: &str) -> Packet {
        Packet::parse(&self.expect(key))
            .unwrap_or_else(|e| panic!("{}: `{key}` is no packet: {e}", self.script))
    }

    fn send(&mut self, key: &str, bytes: &[u8]) {
        writeln!(self.stdin, "{key}={}", hex::encode(bytes)).expect("write to python");
        self.stdin.flush().expect("flush to python");
    }

    fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to python");
        self.stdin.flush().expect("flush to python");
    }

    fn finish(mut self) {
        drop(self.stdin);
        let status = self.child.wait().expect("wait for python");
        assert!(status.success(), "{} exited with {status}", self.script);
    }
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn hex_key(id: &PrivateIdentity) -> String {
    hex::encode(id.to_private_key().as_ref())
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn identity_destination_and_announces_agree_with_rns() {
    let mut rng = rng(1);
    let python_id = PrivateIdentity::generate(&mut rng);
    let mut py = PyPeer::spawn("identity_and_announce.py", &[hex_key(&python_id)]);

    // Hashes of the same key.
    assert_eq!(py.expect("identity_hash"), python_id.hash().as_bytes());
    assert_eq!(py.expect("public_key"), python_id.public().public_key());
    let mehr_node = DestinationName::mehr_node().single_hash(python_id.public());
    assert_eq!(py.expect("mehr_node_hash"), mehr_node.as_bytes());
    assert_eq!(
        py.expect("path_request_hash"),
        path_request_destination().as_bytes()
    );

    // A Python announce validates here, app_data intact.
    let packet = py.expect_packet("announce");
    let announce = Announce::from_packet(&packet).expect("python announce validates");
    assert_eq!(announce.destination, mehr_node);
    assert_eq!(announce.identity, *python_id.public());
    assert_eq!(announce.app_data, b"\x4e\x10python-app-data");
    assert!(announce.ratchet.is_none());

    // A Python announce with a ratchet validates, and the ratchet is its latest key.
    let packet = py.expect_packet("ratchet_announce");
    assert!(packet.context_flag);
    let announce = Announce::from_packet(&packet).expect("python ratchet announce validates");
    let ratchet_private: [u8; 32] = py
        .expect("ratchet_private")
        .try_into()
        .expect("32-byte ratchet");
    assert_eq!(announce.ratchet, Some(ratchet_public_key(&ratchet_private)));

    // Rust announces validate in Python; tampered ones do not.
    let ours = PrivateIdentity::generate(&mut rng);
    for (ratchet, app_data) in [(None, &b"rust app data"[..]), (Some([7u8; 32]), &b""[..])] {
        let a = Announce::create_random(
            &ours,
            &DestinationName::mehr_node(),
            app_data,
            ratchet,
            1_750_000_000,
            &mut rng,
        );
        py.send("announce", &a.to_packet(false).encode());
        assert_eq!(py.expect_str("valid"), "yes");
        assert_eq!(py.expect("app_data"), app_data);
    }
    let a = Announce::create_random(
        &ours,
        &DestinationName::mehr_node(),
        b"x",
        None,
        1_750_000_000,
        &mut rng,
    );
    // As a transport node rebroadcasts it: HEADER_2 with its transport id, one hop.
    let mut rebroadcast = a.to_packet(false);
    rebroadcast.transport_id = Some(mehr_transport::IdentityHash([0x77; 16]));
    rebroadcast.transport_type = mehr_transport::TransportType::Transport;
    rebroadcast.hops = 1;
    py.send("announce", &rebroadcast.encode());
    assert_eq!(py.expect_str("valid"), "yes");
    assert_eq!(py.expect("app_data"), b"x");
    let mut tampered = a.to_packet(false);
    let last = tampered.data.len() - 1;
    tampered.data[last] ^= 0x01;
    py.send("announce", &tampered.encode());
    assert_eq!(py.expect_str("valid"), "no");
    py.send_line("done");
    py.finish();
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn single_destination_encryption_interoperates() {
    let mut rng = rng(2);
    let python_id = PrivateIdentity::generate(&mut rng);
    let rust_id = PrivateIdentity::generate(&mut rng);
    let rust_ratchet = [0x5Au8; 32];
    let python_ratchet = [0xA5u8; 32];
    let mut py = PyPeer::spawn(
        "encryption.py",
        &[
            hex_key(&python_id),
            hex::encode(rust_id.public().public_key()),
            hex::encode(ratchet_public_key(&rust_ratchet)),
            hex::encode(python_ratchet),
        ],
    );

    assert_eq!(
        rust_id.decrypt(&py.expect("to_identity")).unwrap(),
        b"python to rust"
    );
    let opened = rust_id
        .decrypt_with_ratchets(&py.expect("to_ratchet"), &[rust_ratchet], true)
        .unwrap();
    assert_eq!(
        (opened.plaintext.as_slice(), opened.ratchet_index),
        (&b"python to rust ratchet"[..], Some(0))
    );
    let packet = py.expect_packet("packet");
    assert_eq!(
        packet.destination,
        DestinationName::mehr_node().single_hash(rust_id.public())
    );
    assert_eq!(
        (packet.packet_type, packet.destination_type),
        (PacketType::Data, DestinationType::Single)
    );
    assert_eq!(rust_id.decrypt(&packet.data).unwrap(), b"a whole packet");

    let ct = python_id
        .public()
        .encrypt(b"rust to python", None, &mut rng)
        .unwrap();
    py.send("ciphertext", &ct);
    assert_eq!(py.expect("plaintext"), b"rust to python");
    let ratchet_pub = ratchet_public_key(&python_ratchet);
    let ct = python_id
        .public()
        .encrypt(b"rust to python ratchet", Some(&ratchet_pub), &mut rng)
        .unwrap();
    py.send("ratchet_ciphertext", &ct);
    assert_eq!(py.expect("plaintext"), b"rust to python ratchet");
    py.send_line("done");
    py.finish();
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn proofs_and_path_requests_interoperate() {
    let mut rng = rng(3);
    let python_id = PrivateIdentity::generate(&mut rng);
    let wanted = DestinationHash([0x42; 16]);
    let mut py = PyPeer::spawn(
        "proof_and_path_request.py",
        &[hex_key(&python_id), hex::encode(wanted.as_bytes())],
    );

    let dest = DestinationName::mehr_node().single_hash(python_id.public());
    let ct = python_id
        .public()
        .encrypt(b"prove this", None, &mut rng)
        .unwrap();
    let packet = Packet::new(
        PacketType::Data,
        DestinationType::Single,
        dest,
        Context::NONE,
        ct,
    );
    py.send("packet", &packet.encode());
    assert_eq!(py.expect("plaintext"), b"prove this");
    let proof = py.expect_packet("proof");
    assert_eq!(
        (proof.packet_type, proof.destination_type),
        (PacketType::Proof, DestinationType::Single)
    );
    assert_eq!(proof.destination, packet.hash().truncated());
    let data = ProofData::parse(&proof.data).unwrap();
    assert!(matches!(data, ProofData::Implicit { .. }));
    data.verify(&packet.hash(), python_id.public().signing_key())
        .expect("python proof verifies");

    let request = py.expect_packet("path_request");
    assert_eq!(request.destination, path_request_destination());
    assert_eq!(request.destination_type, DestinationType::Plain);
    let parsed = PathRequest::parse(&request.data).unwrap();
    assert_eq!(parsed.destination, wanted);
    assert_eq!(parsed.tag.len(), 16);
    py.finish();
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn python_initiator_links_to_rust_responder() {
    let mut rng = rng(4);
    let owner = PrivateIdentity::generate(&mut rng);
    let python_identity = PrivateIdentity::generate(&mut rng);
    let mut py = PyPeer::spawn(
        "link.py",
        &[
            "initiator".into(),
            hex_key(&owner),
            hex_key(&python_identity),
        ],
    );
    let t = Timestamp::from_secs(10);

    let request = py.expect_packet("request");
    assert_eq!(request.packet_type, PacketType::LinkRequest);
    assert_eq!(
        request.destination,
        DestinationName::mehr_node().single_hash(owner.public())
    );
    assert_eq!(request.data.len(), 67, "RNS signals MTU and mode");
    let (mut link, proof) =
        Link::accept(&owner, &request, t, &mut rng).expect("accept python request");
    py.send("proof", &proof.encode());
    assert_eq!(py.expect_str("status"), "active");

    let rtt = py.expect_packet("rtt");
    assert!(matches!(
        link.receive(&rtt, t).unwrap().event,
        LinkEvent::Established { .. }
    ));
    assert_eq!(link.state(), LinkState::Active);

    let data = py.expect_packet("data");
    assert_eq!(
        link.receive(&data, t).unwrap().event,
        LinkEvent::Data {
            context: Context::NONE,
            plaintext: b"hello from python".to_vec()
        }
    );

    let ours = link
        .encrypt(Context::NONE, b"hello from rust", t, &mut rng)
        .unwrap();
    py.send("data", &ours.encode());
    let proof = py.expect_packet("proof");
    assert_eq!(
        link.receive(&proof, t).unwrap().event,
        LinkEvent::Proof {
            packet_hash: ours.hash()
        }
    );
    assert_eq!(py.expect("received"), b"hello from rust");

    let identify = py.expect_packet("identify");
    assert_eq!(
        link.receive(&identify, t).unwrap().event,
        LinkEvent::Identified(Box::new(python_identity.public().clone()))
    );

    let close = py.expect_packet("close");
    assert_eq!(
        link.receive(&close, t).unwrap().event,
        LinkEvent::Closed(CloseReason::InitiatorClosed)
    );
    py.finish();
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn rust_initiator_links_to_python_responder() {
    let mut rng = rng(5);
    let owner = PrivateIdentity::generate(&mut rng);
    let mut py = PyPeer::spawn("link.py", &["responder".into(), hex_key(&owner)]);
    let public: Identity = owner.public().clone();
    let dest = DestinationName::mehr_node().single_hash(&public);
    let t = Timestamp::from_secs(10);

    let (mut link, request) = Link::initiate(&public, dest, Some(500), 1, t, &mut rng);
    py.send("request", &request.encode());
    let proof = py.expect_packet("proof");
    assert_eq!(proof.context, Context::LRPROOF);
    let rtt = link
        .handle_proof(
            &proof,
            t.saturating_add(Duration::from_millis(30)),
            &mut rng,
        )
        .expect("python proof verifies");
    assert_eq!(link.state(), LinkState::Active);
    py.send("rtt", &rtt.encode());
    assert_eq!(py.expect_str("status"), "active");

    let ours = link
        .encrypt(Context::NONE, b"hello from rust", t, &mut rng)
        .unwrap();
    py.send("data", &ours.encode());
    let proof = py.expect_packet("proof");
    assert_eq!(
        link.receive(&proof, t).unwrap().event,
        LinkEvent::Proof {
            packet_hash: ours.hash()
        }
    );
    assert_eq!(py.expect("received"), b"hello from rust");
    let data = py.expect_packet("data");
    assert_eq!(
        link.receive(&data, t).unwrap().event,
        LinkEvent::Data {
            context: Context::NONE,
            plaintext: b"hello from python".to_vec()
        }
    );

    let me = PrivateIdentity::generate(&mut rng);
    py.send(
        "identify",
        &link.identify(&me, t, &mut rng).unwrap().encode(),
    );
    assert_eq!(py.expect("remote_identity"), me.hash().as_bytes());

    let close = link.close(t, &mut rng).expect("close packet");
    py.send("close", &close.encode());
    assert_eq!(py.expect_str("status"), "closed");
    py.finish();
}

/// Frames the router wants sent, and its events, since the last call.
fn drain(router: &mut Router) -> (Vec<Vec<u8>>, Vec<RouterEvent>) {
    let mut frames = Vec::new();
    let mut events = Vec::new();
    for action in router.drain_actions() {
        match action {
            Action::Transmit { frame, .. } => frames.push(frame),
            Action::Event(e) => events.push(e),
            Action::Deliver { .. } => {}
        }
    }
    (frames, events)
}

#[test]
#[ignore = "needs Python rns: run by tests/run.sh"]
fn python_initiator_links_to_a_destination_served_by_the_router() {
    let mut seed = rng(6);
    let owner = PrivateIdentity::generate(&mut seed);
    let python_identity = PrivateIdentity::generate(&mut seed);
    let mut py = PyPeer::spawn(
        "link.py",
        &[
            "initiator".into(),
            hex_key(&owner),
            hex_key(&python_identity),
        ],
    );
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 1_750_000_000,
    };
    let mut router = Router::new(
        PrivateIdentity::generate(&mut seed),
        RouterConfig::default(),
        clock,
        Box::new(rng(7)),
    );
    let iface = InterfaceId(0);
    router.add_interface(iface, InterfaceConfig::new(10_000_000));
    let dest =
        router.register_destination(LocalDestination::new(owner, DestinationName::mehr_node()));
    let t = Timestamp::from_secs(5);

    router.handle_inbound(iface, &py.expect("request"), t);
    let (frames, _) = drain(&mut router);
    assert_eq!(frames.len(), 1, "the router answers with a link proof");
    py.send("proof", &frames[0]);
    assert_eq!(py.expect_str("status"), "active");
    router.handle_inbound(iface, &py.expect("rtt"), t);
    let (_, events) = drain(&mut router);
    let link_id = match events.as_slice() {
        [
            RouterEvent::LinkEstablished {
                link_id,
                destination,
                role: Role::Responder,
                ..
            },
        ] if *destination == dest => *link_id,
        other => panic!("expected LinkEstablished, got {other:?}"),
    };

    router.handle_inbound(iface, &py.expect("data"), t);
    let (_, events) = drain(&mut router);
    assert!(matches!(events.as_slice(),
        [RouterEvent::LinkData { plaintext, .. }] if plaintext == b"hello from python"));

    let sent = router
        .link_send(&link_id, Context::NONE, b"hello from rust", t)
        .unwrap();
    let (frames, _) = drain(&mut router);
    py.send("data", &frames[0]);
    router.handle_inbound(iface, &py.expect("proof"), t);
    assert_eq!(py.expect("received"), b"hello from rust");
    router.handle_inbound(iface, &py.expect("identify"), t);
    router.handle_inbound(iface, &py.expect("close"), t);
    let (_, events) = drain(&mut router);
    assert_eq!(
        events,
        vec![
            RouterEvent::DeliveryProved { packet_hash: sent },
            RouterEvent::LinkIdentified {
                link_id,
                identity: Box::new(python_identity.public().clone())
            },
            RouterEvent::LinkClosed {
                link_id,
                reason: CloseReason::InitiatorClosed
            },
        ]
    );
    py.finish();
}
