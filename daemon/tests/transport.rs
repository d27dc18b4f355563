//! The mesh transport with real daemons: TCP, UDP, serial (KISS over a pty pair) and a
//! simulated slow half-duplex link; relaying and path costs; messages in packets and over
//! links with proofs; interfaces added and removed at run time; malformed traffic.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::fd::OwnedFd,
    time::Duration,
};

use common::{TestDaemon, eventually, free_port, free_udp_port, tcp_client, tcp_server};
use futures::StreamExt;
use mehr_sdk::{Client, proto as pb};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until `client` has a path to `destination`.
async fn path_to(client: &Client, destination: &[u8]) -> pb::Path {
    eventually("a path", Duration::from_secs(20), || async {
        client
            .paths(false)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.destination == destination)
    })
    .await
}

async fn node_destination(client: &Client) -> Vec<u8> {
    client
        .transport_stats()
        .await
        .unwrap()
        .mehr_destination
        .to_vec()
}

#[test]
fn two_nodes_over_tcp_exchange_messages_both_ways_with_proofs() {
    let port = free_port();
    let a = TestDaemon::start_with_config(&tcp_server(port));
    let b = TestDaemon::start_with_config(&tcp_client(port));
    runtime().block_on(async {
        let (a, b) = (a.client().await.unwrap(), b.client().await.unwrap());
        let a_node = node_destination(&a).await;
        let neighbour = eventually("A as B's neighbour", Duration::from_secs(20), || async {
            b.neighbours()
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.destination == a_node)
        })
        .await;
        assert_eq!(neighbour.node_id, a.info().await.unwrap().identity_hash);

        let mut inbox_a = a.listen("test.inbox", true).await.unwrap();
        let mut inbox_b = b.listen("test.inbox", true).await.unwrap();
        path_to(&b, &inbox_a.destination).await;
        path_to(&a, &inbox_b.destination).await;

        // One packet each way.
        let report = b
            .send(
                &inbox_a.destination,
                b"hello A".to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(report.delivered, "{report:?}");
        assert_eq!(report.method(), pb::SendMethod::Packet);
        assert_eq!(
            inbox_a
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"hello A"
        );
        let report = a
            .send(
                &inbox_b.destination,
                b"hello B".to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
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
            b"hello B"
        );

        // A message larger than a packet goes over a link, in segments.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let report = b
            .send(&inbox_a.destination, big.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(report.method(), pb::SendMethod::Link);
        assert!(report.delivered);
        let message = inbox_a.messages.next().await.unwrap().unwrap();
        assert_eq!(message.payload.as_ref(), big.as_slice());
        assert!(message.link_id.is_some());
    });
}

#[test]
fn cli_lists_interfaces_paths_and_sends_with_json() {
    let port = free_port();
    let a = TestDaemon::start_with_config(&tcp_server(port));
    let b = TestDaemon::start_with_config(&tcp_client(port));
    let rt = runtime();
    let (a_client, b_client) =
        rt.block_on(async { (a.client().await.unwrap(), b.client().await.unwrap()) });
    let listening = rt.block_on(a_client.listen("cli.inbox", true)).unwrap();
    rt.block_on(path_to(&b_client, &listening.destination));

    let output = a.cli(&["--json", "interfaces"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let interfaces: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let list = interfaces.as_array().unwrap();
    assert!(
        list.iter()
            .any(|i| i["type"] == "tcp_server" && i["parent_id"].is_null()),
        "{interfaces}"
    );
    assert!(
        list.iter()
            .any(|i| !i["parent_id"].is_null() && i["state"] == "up"),
        "an accepted connection: {interfaces}"
    );

    let output = b.cli(&["--json", "paths", "--mehr"]);
    let paths: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        paths
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["mehr_node"] == true && p["cost"].is_object()),
        "{paths}"
    );

    let destination = hex::encode(&listening.destination);
    let output = b.cli(&["--json", "send", &destination, "from the CLI"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(sent["delivered"], true);
    assert_eq!(sent["method"], "packet");

    let output = b.cli(&["send", "00112233", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be 16 bytes"));
}

#[test]
fn a_relay_forwards_and_path_costs_accumulate_across_it() {
    // A — B — C, B in the middle charging 4 μMHR per byte.
    let port = free_port();
    let b = TestDaemon::start_with_config(&format!(
        "{}[transport]\ncost_per_byte = 4.0\n",
        tcp_server(port)
    ));
    let a = TestDaemon::start_with_config(&tcp_client(port));
    let c = TestDaemon::start_with_config(&tcp_client(port));
    runtime().block_on(async {
        let (a, b, c) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        let c_node = node_destination(&c).await;
        let path = eventually(
            "A's path to C with B's fee",
            Duration::from_secs(30),
            || async {
                let path = a
                    .paths(true)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.destination == c_node)?;
                path.cost
                    .as_ref()
                    .is_some_and(|cost| cost.cost_per_byte >= 4.0)
                    .then_some(path)
            },
        )
        .await;
        assert_eq!(path.hops, 2);
        let cost = path.cost.unwrap();
        assert!(
            cost.cost_per_byte < 4.3,
            "the fee is B's alone (log-scale rounding up): {cost:?}"
        );
        assert_eq!(cost.hops, 1, "one Mehr relay counted");

        let mut inbox = c.listen("relay.inbox", true).await.unwrap();
        path_to(&a, &inbox.destination).await;
        let report = a
            .send(
                &inbox.destination,
                b"through B".to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(report.delivered);
        assert_eq!(
            inbox
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"through B"
        );
        assert!(b.transport_stats().await.unwrap().packets_forwarded > 0);
    });
}

/// The relay price set in the offer at run time reaches the neighbours at once when it rises
/// or falls by more than 25 %: a re-announce, long before the periodic one (30 min).
#[test]
fn a_relay_price_change_is_announced_to_the_neighbours() {
    let port = free_port();
    let a = TestDaemon::start_with_config(&format!(
        "{}[transport]\ncost_per_byte = 2.0\n",
        tcp_server(port)
    ));
    let b = TestDaemon::start_with_config(&tcp_client(port));
    runtime().block_on(async {
        let (a, b) = (a.client().await.unwrap(), b.client().await.unwrap());
        let a_node = node_destination(&a).await;
        let heard_fee = |low: f64, high: f64| {
            let (b, a_node) = (&b, &a_node);
            async move {
                let neighbours = b.neighbours().await.unwrap();
                let fee = neighbours
                    .iter()
                    .find(|n| n.destination == *a_node)?
                    .cost
                    .as_ref()?
                    .cost_per_byte;
                (low..high).contains(&fee).then_some(fee)
            }
        };
        let wait = Duration::from_secs(20);
        eventually("A's configured fee at B", wait, || heard_fee(1.9, 2.2)).await;

        for (price, low, high) in [(8u64, 7.6, 8.5), (2, 1.9, 2.2)] {
            a.set_offer(pb::UpdateOfferRequest {
                relay_price_per_byte_umhr: Some(price),
                ..Default::default()
            })
            .await
            .unwrap();
            eventually(&format!("A's fee of {price} at B"), wait, || {
                heard_fee(low, high)
            })
            .await;
        }
    });
}

/// A diamond, A to D through relay B (fee 1, slow link to D) or relay C (fee 20, fast
/// links). A send that names a policy leaves by the path it prefers: the cheapest through
/// B, the fastest through C, whichever of the two Reticulum's rules keep as the path; the
/// response names the next hop and the path's cost, and the message arrives either way.
#[test]
fn a_send_leaves_by_the_path_its_policy_prefers() {
    let (pb_port, pc_port) = (free_port(), free_port());
    let (pb_slow, pc_fast) = (free_port(), free_port());
    let relay = |fee: u32, to_a: u16, to_d: u16, to_d_bitrate: u64| {
        format!(
            "{}{}bitrate = {to_d_bitrate}\n[transport]\ncost_per_byte = {fee}.0\n",
            tcp_server(to_a),
            tcp_server(to_d)
        )
    };
    let b = TestDaemon::start_with_config(&relay(1, pb_port, pb_slow, 9_600));
    let c = TestDaemon::start_with_config(&relay(20, pc_port, pc_fast, 10_000_000));
    let a =
        TestDaemon::start_with_config(&format!("{}{}", tcp_client(pb_port), tcp_client(pc_port)));
    let rt = runtime();
    let (a, b_id, c_id) = rt.block_on(async {
        let (a, b, c) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        // The relays annotate D's announce for the Mehr neighbours they know when it comes,
        // and A takes annotations only from neighbours it knows: both ways first.
        for (x, y) in [(&a, &b), (&b, &a), (&a, &c), (&c, &a)] {
            let y_node = node_destination(y).await;
            eventually("neighbours both ways", Duration::from_secs(20), || async {
                x.neighbours()
                    .await
                    .unwrap()
                    .iter()
                    .any(|n| n.destination == y_node)
                    .then_some(())
            })
            .await;
        }
        let b_id = b.info().await.unwrap().identity_hash.to_vec();
        let c_id = c.info().await.unwrap().identity_hash.to_vec();
        (a, b_id, c_id)
    });
    let d =
        TestDaemon::start_with_config(&format!("{}{}", tcp_client(pb_slow), tcp_client(pc_fast)));
    rt.block_on(async {
        let d = d.client().await.unwrap();
        let mut inbox = d.listen("route.inbox", true).await.unwrap();
        path_to(&a, &inbox.destination).await;

        let send = |policy: pb::RoutePolicy, payload: Vec<u8>| {
            let (a, destination) = (&a, inbox.destination.clone());
            async move {
                a.send_with(&destination, payload, policy, Duration::from_secs(10))
                    .await
                    .unwrap()
            }
        };
        let route_via = |policy: pb::RoutePolicy, relay: Vec<u8>| {
            let send = &send;
            async move {
                let report = send(policy, format!("{policy:?}").into_bytes()).await;
                let route = report.route.clone()?;
                // Priced by the relay's annotation: its hop counted (until it comes, a path
                // through a relay looks like one through a plain Reticulum node, free).
                let annotated = route.cost.as_ref().is_some_and(|c| c.hops == 2);
                (report.delivered && route.next_hop == relay && annotated).then_some(route)
            }
        };
        // Eventually: until the second copy of D's announce and both annotations are in.
        let wait = Duration::from_secs(30);
        let cheapest = eventually("the cheapest send through B", wait, || {
            route_via(pb::RoutePolicy::Cheapest, b_id.clone())
        })
        .await;
        let fastest = eventually("the fastest send through C", wait, || {
            route_via(pb::RoutePolicy::Fastest, c_id.clone())
        })
        .await;
        assert_eq!((cheapest.hops, fastest.hops), (2, 2));
        let (cheap_cost, fast_cost) = (cheapest.cost.unwrap(), fastest.cost.unwrap());
        assert!(
            cheap_cost.cost_per_byte < 2.0 && fast_cost.cost_per_byte > 19.0,
            "{cheap_cost:?} {fast_cost:?}"
        );
        assert!(
            fast_cost.worst_latency_ms < 10 && cheap_cost.worst_latency_ms > 400,
            "9600 bit/s carry one 500-byte packet in 417 ms: {cheap_cost:?} {fast_cost:?}"
        );
        let default = send(pb::RoutePolicy::Unspecified, b"default".to_vec()).await;
        let path = path_to(&a, &inbox.destination).await;
        assert_eq!(default.route.unwrap().next_hop, path.next_hop);
        // ListPaths shows both ways, the path first, priced as the policies saw them.
        assert_eq!(path.routes.len(), 2, "{:?}", path.routes);
        assert_eq!(path.routes[0].next_hop, path.next_hop);
        let mut through: Vec<Vec<u8>> = path.routes.iter().map(|r| r.next_hop.to_vec()).collect();
        through.sort();
        let mut relays = vec![b_id.clone(), c_id.clone()];
        relays.sort();
        assert_eq!(through, relays);

        // A message too large for a packet opens a link along the chosen way.
        let large = vec![7u8; 2_000];
        let report = send(pb::RoutePolicy::Fastest, large.clone()).await;
        assert_eq!(report.method, pb::SendMethod::Link as i32);
        assert!(report.delivered, "{report:?}");
        assert_eq!(report.route.unwrap().next_hop, c_id);
        // Earlier small sends may still be queued before it.
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), inbox.messages.next())
                .await
                .expect("the link message")
                .unwrap()
                .unwrap();
            if message.payload.as_ref() == large.as_slice() {
                break;
            }
        }
    });
}

#[test]
fn udp_interfaces_carry_messages() {
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let udp = |listen: u16, forward: u16| {
        format!(
            "[[interfaces]]\ntype = \"udp\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {listen}\nforward_ip = \"127.0.0.1\"\nforward_port = {forward}\n"
        )
    };
    let a = TestDaemon::start_with_config(&udp(pa, pb));
    let b = TestDaemon::start_with_config(&udp(pb, pa));
    runtime().block_on(async {
        let (a, b) = (a.client().await.unwrap(), b.client().await.unwrap());
        let mut inbox = a.listen("udp.inbox", true).await.unwrap();
        path_to(&b, &inbox.destination).await;
        let report = b
            .send(
                &inbox.destination,
                b"datagram".to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(report.delivered);
        assert_eq!(
            inbox
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"datagram"
        );
    });
}

/// A pty pair per node, the masters joined by two copy threads: a null-modem cable.
fn null_modem() -> (String, String, Vec<OwnedFd>) {
    let first = nix::pty::openpty(None, None).unwrap();
    let second = nix::pty::openpty(None, None).unwrap();
    let name = |fd: &OwnedFd| nix::unistd::ttyname(fd).unwrap().display().to_string();
    let (path_a, path_b) = (name(&first.slave), name(&second.slave));
    let bridge = |from: &OwnedFd, to: &OwnedFd| {
        let mut from = std::fs::File::from(from.try_clone().unwrap());
        let mut to = std::fs::File::from(to.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    };
    bridge(&first.master, &second.master);
    bridge(&second.master, &first.master);
    (
        path_a,
        path_b,
        vec![first.master, first.slave, second.master, second.slave],
    )
}

#[test]
fn serial_kiss_interfaces_over_a_pty_null_modem() {
    let (tty_a, tty_b, _keep_open) = null_modem();
    let serial = |port: &str| {
        format!("[[interfaces]]\ntype = \"serial\"\nport = \"{port}\"\nspeed = 115200\n")
    };
    let a = TestDaemon::start_with_config(&serial(&tty_a));
    let b = TestDaemon::start_with_config(&serial(&tty_b));
    runtime().block_on(async {
        let (a, b) = (a.client().await.unwrap(), b.client().await.unwrap());
        let mut inbox = a.listen("serial.inbox", true).await.unwrap();
        path_to(&b, &inbox.destination).await;
        let report = b
            .send(
                &inbox.destination,
                b"over KISS".to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert!(report.delivered);
        assert_eq!(
            inbox
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"over KISS"
        );
    });
}

#[test]
fn slow_half_duplex_link_carries_a_message_and_caps_rebroadcast_announces() {
    // A ~~ 1200 bit/s half-duplex simulated link ~~ B — TCP — C. C announces many
    // destinations; B may rebroadcast them onto the slow link at 2% of its bitrate only.
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let sim = |listen: u16, peer: u16| {
        format!(
            "[[interfaces]]\ntype = \"sim\"\nlisten_port = {listen}\npeer_port = {peer}\nbitrate = 1200\nlatency_ms = 50\nhalf_duplex = true\n"
        )
    };
    let tcp = free_port();
    let a = TestDaemon::start_with_config(&sim(pa, pb));
    let b = TestDaemon::start_with_config(&format!("{}{}", sim(pb, pa), tcp_server(tcp)));
    let c = TestDaemon::start_with_config(&tcp_client(tcp));
    runtime().block_on(async {
        let (a, b, c) = (
            a.client().await.unwrap(),
            b.client().await.unwrap(),
            c.client().await.unwrap(),
        );
        let mut inbox = a.listen("lora.inbox", true).await.unwrap();
        // The announce may be lost to a collision on the half-duplex link; a path request
        // asks again.
        b.request_path(&inbox.destination, Duration::from_secs(60))
            .await
            .unwrap();
        // A packet, or its proof, may also collide: like a user on such a link, try again.
        let send = || {
            b.send(
                &inbox.destination,
                b"slowly".to_vec(),
                Duration::from_secs(60),
            )
        };
        let mut report = send().await.unwrap();
        for _ in 0..2 {
            if report.delivered {
                break;
            }
            report = send().await.unwrap();
        }
        assert!(report.delivered, "{report:?}");
        assert_eq!(
            inbox
                .messages
                .next()
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            b"slowly"
        );

        let sim_interface = |list: Vec<pb::Interface>| {
            list.into_iter()
                .find(|i| i.spec.as_ref().unwrap().r#type == "sim")
                .unwrap()
        };
        let mut listeners = Vec::new();
        for n in 0..10 {
            listeners.push(c.listen(&format!("flood.dest{n}"), true).await.unwrap());
        }
        // Wait until B knows all of them, then watch its slow link for 20 s.
        for listener in &listeners {
            path_to(&b, &listener.destination).await;
        }
        let before = sim_interface(b.interfaces().await.unwrap()).tx_announce_bytes;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let sent = sim_interface(b.interfaces().await.unwrap()).tx_announce_bytes - before;
        // 2% of 1200 bit/s for 20 s is 60 bytes: at most one rebroadcast (≤ 500 bytes) fits,
        // plus the one the budget allowed at the start of the window.
        assert!(
            sent <= 1000,
            "B sent {sent} announce bytes in 20 s on a 1200 bit/s link"
        );
        let known_on_a = a.paths(false).await.unwrap().len();
        assert!(
            known_on_a < 12,
            "A heard only a few of C's 10 destinations ({known_on_a} paths)"
        );
    });
}

#[test]
fn interfaces_are_added_and_removed_at_run_time() {
    let a = TestDaemon::start();
    let b = TestDaemon::start();
    let port = free_port();
    runtime().block_on(async {
        let (ac, bc) = (a.client().await.unwrap(), b.client().await.unwrap());
        assert!(ac.interfaces().await.unwrap().is_empty());
        let spec = pb::InterfaceSpec {
            r#type: "tcp_server".into(),
            listen_ip: Some("127.0.0.1".into()),
            listen_port: Some(u32::from(port)),
            ..Default::default()
        };
        let server = ac.add_interface(spec.clone()).await.unwrap();

        let output = b.cli(&[
            "interfaces",
            "add",
            "tcp_client",
            "target_host=127.0.0.1",
            &format!("target_port={port}"),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let a_node = node_destination(&ac).await;
        eventually("B hears A", Duration::from_secs(20), || async {
            bc.neighbours()
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.destination == a_node)
        })
        .await;

        // The same port again is a clear error, as is a bad spec.
        let err = ac.add_interface(spec).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
        assert!(err.to_string().contains("Address already in use"), "{err}");
        let bad = pb::InterfaceSpec {
            r#type: "udp".into(),
            listen_port: Some(1),
            ..Default::default()
        };
        let err = ac.add_interface(bad).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
        assert!(err.to_string().contains("forward_ip"), "{err}");

        ac.remove_interface(server).await.unwrap();
        assert!(
            ac.interfaces().await.unwrap().is_empty(),
            "the server and its accepted connection are gone"
        );
        let err = ac.remove_interface(server).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound));
        let detail = eventually(
            "B's client reconnecting",
            Duration::from_secs(10),
            || async {
                let list = bc.interfaces().await.unwrap();
                let client = list.into_iter().next()?;
                (client.state == pb::InterfaceState::Connecting as i32)
                    .then_some(client.state_detail)
            },
        )
        .await;
        assert!(detail.contains(&port.to_string()), "{detail}");
    });
}

#[test]
fn malformed_and_forged_frames_are_dropped_and_counted() {
    let port = free_port();
    let a = TestDaemon::start_with_config(&tcp_server(port));
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut frames = Vec::new();
    // A runt, random junk, a bad escape, and an announce whose signature is broken.
    frames.extend(mehr_transport::framing::hdlc::encode(&[0x00]));
    frames.extend(mehr_transport::framing::hdlc::encode(&[0xAB; 60]));
    frames.extend([0x7E, 0x01, 0x7D, 0x00, 0x7E]);
    let identity = mehr_transport::PrivateIdentity::generate(&mut rand::rngs::OsRng);
    let name = mehr_transport::DestinationName::parse("forged.announce").unwrap();
    let announce = mehr_transport::Announce::create_random(
        &identity,
        &name,
        b"x",
        None,
        1_700_000_000,
        &mut rand::rngs::OsRng,
    );
    let mut packet = announce.to_packet(false).encode();
    let last = packet.len() - 2;
    packet[last] ^= 0xFF;
    frames.extend(mehr_transport::framing::hdlc::encode(&packet));
    raw.write_all(&frames).unwrap();
    raw.flush().unwrap();

    runtime().block_on(async {
        let client = a.client().await.unwrap();
        let drops = eventually(
            "the drops to be counted",
            Duration::from_secs(10),
            || async {
                let stats = client.transport_stats().await.unwrap();
                let count = |reason: &str| {
                    stats
                        .drops
                        .iter()
                        .find(|d| d.reason == reason)
                        .map_or(0, |d| d.count)
                };
                (count("malformed") >= 2 && count("invalid_announce") >= 1).then_some(stats.drops)
            },
        )
        .await;
        assert!(!drops.is_empty());
        let interfaces = client.interfaces().await.unwrap();
        assert!(
            interfaces.iter().any(|i| i.rx_malformed >= 1),
            "the bad escape is counted at the framing level"
        );
        // Still healthy.
        client.info().await.unwrap();
    });
}

#[test]
fn messaging_errors_are_clear() {
    let a = TestDaemon::start();
    runtime().block_on(async {
        let client = a.client().await.unwrap();
        let err = client
            .send(&[7u8; 16], b"x".to_vec(), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
        assert!(err.to_string().contains("no path"), "{err}");
        // The default 30 s wait ends before a shorter call deadline: an answer, not CANCELLED.
        let mut request = tonic::Request::new(pb::SendRequest {
            destination: vec![7u8; 16].into(),
            payload: b"x".to_vec().into(),
            timeout_ms: 0,
            policy: 0,
        });
        request.set_timeout(Duration::from_secs(1));
        let status = client.messaging().send(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        let status = client
            .messaging()
            .send(pb::SendRequest {
                destination: vec![7u8; 16].into(),
                payload: b"x".to_vec().into(),
                timeout_ms: 1000,
                policy: 9,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("policy 9"), "{status:?}");
        let err = client
            .send(&[7u8; 5], b"x".to_vec(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
        let err = client
            .send(&[7u8; 16], vec![0; (16 << 20) + 1], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
        assert!(
            err.to_string()
                .contains("larger than the 16777216 bytes allowed"),
            "{err}"
        );
        let err = client.reply(&[1u8; 16], b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound));
        let err = client.listen("", false).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    });
}

/// A relay killed with `kill -9` and restarted: its neighbours forgot every path through it
/// with the connection, and the far destination does not announce again (its own link never
/// dropped; announces here are minutes apart). A sender that still knows the destination's
/// identity asks for a path again instead of broadcasting to neighbours that drop what is not
/// theirs, the restarted relay asks for the paths its forwarding needs, and the message goes
/// through within seconds. A — B — C — D, B restarted, D listening.
#[test]
fn traffic_crosses_a_relay_restarted_after_kill_9_without_new_announces() {
    let (b_port, c_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let b_config = dir.path().join("b.toml");
    std::fs::write(
        &b_config,
        format!(
            "[transport]\nannounce_interval_secs = 3600\n{}",
            tcp_server(b_port)
        ),
    )
    .unwrap();
    let b_dir = dir.path().join("b");
    let mut b = TestDaemon::start_in(&b_dir, &["--config", b_config.to_str().unwrap()]);
    let slow = "[transport]\nannounce_interval_secs = 3600\n";
    let a = TestDaemon::start_with_config(&format!("{slow}{}", tcp_client(b_port)));
    let _c = TestDaemon::start_with_config(&format!(
        "{slow}{}{}",
        tcp_client(b_port),
        tcp_server(c_port)
    ));
    let d = TestDaemon::start_with_config(&format!("{slow}{}", tcp_client(c_port)));
    let rt = runtime();
    let (a_client, d_client) =
        rt.block_on(async { (a.client().await.unwrap(), d.client().await.unwrap()) });
    let mut inbox = rt.block_on(d_client.listen("far.inbox", true)).unwrap();
    let send = |text: &'static [u8]| {
        let a = a_client.clone();
        let to = inbox.destination.clone();
        async move {
            a.send(&to, text.to_vec(), Duration::from_secs(5))
                .await
                .ok()
                .filter(|r| r.delivered)
        }
    };
    rt.block_on(async {
        path_to(&a_client, &inbox.destination).await;
        eventually("a message across B and C", Duration::from_secs(30), || {
            send(b"before")
        })
        .await;
    });

    b.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    b = TestDaemon::start_in(&b_dir, &["--config", b_config.to_str().unwrap()]);
    rt.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while send(b"after").await.is_none() {
            if std::time::Instant::now() > deadline {
                let mut report = String::new();
                for (name, daemon) in [("A", &a), ("B", &b), ("C", &_c), ("D", &d)] {
                    let client = daemon.client().await.unwrap();
                    let stats = client.transport_stats().await.unwrap();
                    let paths = client.paths(false).await.unwrap();
                    report.push_str(&format!(
                        "{name}: paths {} to_inbox {:?} lost {} drops {:?}\n",
                        paths.len(),
                        paths
                            .iter()
                            .find(|p| p.destination == inbox.destination)
                            .map(|p| p.hops),
                        stats.lost_path_requests,
                        stats
                            .drops
                            .iter()
                            .map(|d| (d.reason.clone(), d.count))
                            .collect::<Vec<_>>()
                    ));
                    let log = daemon.stderr();
                    for line in log.lines().rev().take(8) {
                        report.push_str(&format!("   {line}\n"));
                    }
                }
                panic!("no message across the restarted relay\n{report}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = inbox.messages.next().await {
                if message.unwrap().payload.as_ref() == b"after" {
                    return;
                }
            }
            panic!("the inbox closed");
        })
        .await
        .expect("D received the message sent after the restart");
    });
    drop(b);
}
