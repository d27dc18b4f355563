//! Router tests on a simulated network: routers joined by lossless wires, frames delivered
//! in order, time advanced in steps.

use super::*;
use crate::packet::TransportType;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const STEP: Duration = Duration::from_millis(50);

struct Net {
    nodes: Vec<Router>,
    next_iface: Vec<u32>,
    wires: Vec<(usize, InterfaceId, usize, InterfaceId)>,
    events: Vec<Vec<RouterEvent>>,
    delivered: Vec<Vec<(DestinationHash, Vec<u8>)>>,
    frames: Vec<Vec<(InterfaceId, Vec<u8>)>>,
    now: Timestamp,
}

fn identity(seed: u8) -> PrivateIdentity {
    PrivateIdentity::from_private_key(&[seed; 64])
}

fn router(seed: u8, transport: bool) -> Router {
    let config = RouterConfig {
        transport_enabled: transport,
        ..RouterConfig::default()
    };
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 1_700_000_000,
    };
    Router::new(
        identity(seed),
        config,
        clock,
        Box::new(StdRng::seed_from_u64(u64::from(seed))),
    )
}

impl Net {
    /// Nodes 0..n; `transport[i]` enables transport on node i.
    fn new(transport: &[bool]) -> Self {
        let n = transport.len();
        Self {
            nodes: transport
                .iter()
                .enumerate()
                .map(|(i, t)| router(100 + i as u8, *t))
                .collect(),
            next_iface: vec![0; n],
            wires: Vec::new(),
            events: vec![Vec::new(); n],
            delivered: vec![Vec::new(); n],
            frames: vec![Vec::new(); n],
            now: Timestamp::from_secs(1),
        }
    }

    fn wire_with(
        &mut self,
        a: usize,
        b: usize,
        config: InterfaceConfig,
    ) -> (InterfaceId, InterfaceId) {
        let ia = InterfaceId(self.next_iface[a]);
        let ib = InterfaceId(self.next_iface[b]);
        self.next_iface[a] += 1;
        self.next_iface[b] += 1;
        self.nodes[a].add_interface(ia, config.clone());
        self.nodes[b].add_interface(ib, config);
        self.wires.push((a, ia, b, ib));
        (ia, ib)
    }

    fn wire(&mut self, a: usize, b: usize) -> (InterfaceId, InterfaceId) {
        self.wire_with(a, b, InterfaceConfig::new(10_000_000))
    }

    fn peer(&self, node: usize, iface: InterfaceId) -> Option<(usize, InterfaceId)> {
        self.wires.iter().find_map(|&(a, ia, b, ib)| {
            if a == node && ia == iface {
                Some((b, ib))
            } else if b == node && ib == iface {
                Some((a, ia))
            } else {
                None
            }
        })
    }

    /// Delivers every pending action until the network is quiet.
    fn flush(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let actions: Vec<Action> = self.nodes[i].drain_actions().collect();
                for action in actions {
                    moved = true;
                    match action {
                        Action::Transmit {
                            interface, frame, ..
                        } => {
                            self.frames[i].push((interface, frame.clone()));
                            if let Some((j, jf)) = self.peer(i, interface) {
                                let now = self.now;
                                self.nodes[j].handle_inbound(jf, &frame, now);
                            }
                        }
                        Action::Deliver {
                            destination,
                            plaintext,
                            ..
                        } => self.delivered[i].push((destination, plaintext)),
                        Action::Event(e) => self.events[i].push(e),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now.saturating_add(duration);
        while self.now < end {
            self.now = self.now.saturating_add(STEP);
            for node in &mut self.nodes {
                node.tick(self.now);
            }
            self.flush();
        }
    }

    fn serve(&mut self, node: usize, seed: u8, prove: bool) -> DestinationHash {
        let mut local = LocalDestination::new(identity(seed), DestinationName::mehr_node());
        local.app_data = b"app".to_vec();
        if prove {
            local.proof_strategy = ProofStrategy::All;
        }
        self.nodes[node].register_destination(local)
    }
}

/// Takes the next frame a router wants to transmit, bypassing the wires.
fn next_frame(router: &mut Router) -> Vec<u8> {
    loop {
        match router.poll_action() {
            Some(Action::Transmit { frame, .. }) => return frame,
            Some(_) => continue,
            None => panic!("nothing to transmit"),
        }
    }
}

#[test]
fn announces_propagate_through_a_transport_node() {
    let mut net = Net::new(&[false, true, false]);
    let (_, b_to_a) = net.wire(0, 1);
    let (b_to_c, _) = net.wire(1, 2);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.flush();
    net.run(Duration::from_secs(1));

    let b = net.nodes[1].path(&dest).expect("B learned the path");
    assert_eq!((b.hops, b.interface), (1, b_to_a));
    let c = net.nodes[2].path(&dest).expect("C learned the path");
    assert_eq!(c.hops, 2);
    assert_eq!(c.next_hop, net.nodes[1].transport_id());
    assert!(net.events[2].iter().any(|e| matches!(e,
        RouterEvent::AnnounceReceived { announce, hops: 2, path_response: false, .. } if announce.app_data == b"app")));

    // What B put on C's wire: HEADER_2 with B's transport id, data untouched.
    let (_, frame) = net.frames[1]
        .iter()
        .find(|(i, _)| *i == b_to_c)
        .expect("B rebroadcast to C");
    let packet = Packet::parse(frame).unwrap();
    assert_eq!(packet.transport_id, Some(net.nodes[1].transport_id()));
    assert_eq!(packet.transport_type, TransportType::Transport);
    assert_eq!(packet.hops, 1);
    Announce::from_packet(&packet).expect("still a valid announce");

    // No neighbour repeats it, so B retries once and then stops.
    net.run(Duration::from_secs(20));
    assert_eq!(net.nodes[1].counters().announces_rebroadcast, 2);
    assert_eq!(net.nodes[1].table_sizes().pending_announces, 0);
}

/// Two announces in one second: the second is dated a second later, so the neighbour takes
/// it as news (its new app data) instead of dropping it as no newer than the first.
#[test]
fn a_second_announce_within_a_second_is_still_news() {
    let mut net = Net::new(&[false, false]);
    net.wire(0, 1);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.flush();
    net.nodes[0]
        .set_app_data(&dest, b"changed".to_vec())
        .unwrap();
    net.nodes[0].announce(&dest, now).unwrap();
    net.flush();
    let heard: Vec<_> = net.events[1]
        .iter()
        .filter_map(|e| match e {
            RouterEvent::AnnounceReceived { announce, .. } => Some(announce.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(heard.len(), 2, "both announces delivered");
    assert_eq!(heard[1].app_data, b"changed");
    assert!(heard[1].emitted_at() > heard[0].emitted_at());
}

#[test]
fn endpoints_do_not_rebroadcast() {
    let mut net = Net::new(&[false, false, false]);
    net.wire(0, 1);
    net.wire(1, 2);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(10));
    assert!(net.nodes[1].path(&dest).is_some());
    assert!(net.nodes[2].path(&dest).is_none());
    assert_eq!(net.nodes[1].counters().announces_rebroadcast, 0);
}

fn chain_with_announced_destination(prove: bool) -> (Net, DestinationHash) {
    let mut net = Net::new(&[false, true, false]);
    net.wire(0, 1);
    net.wire(1, 2);
    let dest = net.serve(0, 1, prove);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(1));
    (net, dest)
}

#[test]
fn forwarding_reports_name_the_same_hash_at_sender_and_relay_and_are_off_by_default() {
    let (mut net, dest) = chain_with_announced_destination(true);
    let now = net.now;
    net.nodes[2].send(&dest, b"unreported", now).unwrap();
    net.flush();
    assert!(
        !net.events[1]
            .iter()
            .chain(&net.events[2])
            .any(|e| matches!(e, RouterEvent::Forwarded { .. })),
        "reports are opt-in"
    );

    net.nodes[1].set_forwarding_reports(true);
    net.nodes[2].set_forwarding_reports(true);
    net.nodes[2].send(&dest, b"reported", now).unwrap();
    net.flush();
    let reports =
        |events: &[RouterEvent]| -> Vec<([u8; 32], Option<InterfaceId>, InterfaceId, u32)> {
            events
                .iter()
                .filter_map(|e| match e {
                    RouterEvent::Forwarded {
                        relay_hash,
                        from,
                        to,
                        bytes,
                    } => Some((*relay_hash, *from, *to, *bytes)),
                    _ => None,
                })
                .collect()
        };
    let sent = reports(&net.events[2]);
    let relayed = reports(&net.events[1]);
    assert_eq!(
        sent.len(),
        1,
        "the sender reports its own data packet once: {sent:?}"
    );
    assert_eq!(sent[0].1, None, "originated here");
    assert_eq!(
        relayed.len(),
        1,
        "the proof going back is not reported: {relayed:?}"
    );
    assert_eq!(
        relayed[0].0, sent[0].0,
        "one hash for the packet at every hop"
    );
    assert_eq!(relayed[0].1, Some(InterfaceId(1)), "arrived from C's side");
    assert_eq!(relayed[0].2, InterfaceId(0), "left towards A");
    assert!(
        relayed[0].3 < sent[0].3,
        "the relay sends the last hop without the transport id header"
    );
}

#[test]
fn data_is_forwarded_and_proofs_return_through_the_reverse_table() {
    let (mut net, dest) = chain_with_announced_destination(true);
    let now = net.now;
    let hash = net.nodes[2].send(&dest, b"hello A", now).unwrap();
    let frame = next_frame(&mut net.nodes[2]);
    let sent = Packet::parse(&frame).unwrap();
    assert_eq!(
        sent.transport_id,
        Some(net.nodes[1].transport_id()),
        "C addresses B in transport"
    );
    net.nodes[1].handle_inbound(InterfaceId(1), &frame, now);
    net.flush();

    let (_, last_to_a) = net.frames[1]
        .iter()
        .rev()
        .find(|(i, _)| *i == InterfaceId(0))
        .cloned()
        .unwrap();
    assert!(
        Packet::parse(&last_to_a).unwrap().transport_id.is_none(),
        "B sends the last hop as HEADER_1"
    );
    assert_eq!(net.delivered[0], vec![(dest, b"hello A".to_vec())]);
    assert!(net.events[2].contains(&RouterEvent::DeliveryProved { packet_hash: hash }));
    assert_eq!(net.nodes[1].counters().forwarded, 2);
    assert_eq!(
        net.nodes[1].table_sizes().reverse_entries,
        0,
        "the proof consumed the reverse entry"
    );
}

#[test]
fn a_relay_that_lost_its_paths_asks_for_them_when_traffic_needs_one() {
    let (mut net, dest) = chain_with_announced_destination(true);
    // B restarts: the same identity with an empty path table, while C still routes through
    // it (the next announce of A's destination may be hours away).
    net.nodes[1] = router(101, true);
    for id in [InterfaceId(0), InterfaceId(1)] {
        net.nodes[1].add_interface(id, InterfaceConfig::new(10_000_000));
    }
    let now = net.now;
    net.nodes[2].send(&dest, b"lost", now).unwrap();
    net.flush();
    assert!(net.delivered[0].is_empty());
    assert_eq!(net.nodes[1].counters().dropped(DropReason::NoPath), 1);
    assert_eq!(net.nodes[1].counters().lost_path_requests, 1);
    // A answers the path request; the next packet goes through.
    net.run(Duration::from_secs(1));
    assert!(net.nodes[1].path(&dest).is_some());
    let now = net.now;
    net.nodes[2].send(&dest, b"found", now).unwrap();
    net.flush();
    assert_eq!(net.delivered[0], vec![(dest, b"found".to_vec())]);

    // Traffic to destinations nobody knows costs at most the bucket's burst in requests.
    let mut relay = router(101, true);
    relay.add_interface(InterfaceId(0), InterfaceConfig::new(10_000_000));
    for i in 0..200u32 {
        let mut unknown = [0u8; 16];
        unknown[..4].copy_from_slice(&i.to_le_bytes());
        relay.rediscover(DestinationHash(unknown), now);
    }
    assert_eq!(relay.counters().lost_path_requests, 32);
}

#[test]
fn announces_are_not_echoed_back_onto_the_point_to_point_interface_they_came_from() {
    let p2p = InterfaceConfig {
        point_to_point: true,
        ..InterfaceConfig::new(10_000_000)
    };
    // A — B — C, all transport nodes, C a leaf.
    let mut net = Net::new(&[true, true, true]);
    net.wire_with(0, 1, p2p.clone());
    net.wire_with(1, 2, p2p);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(15));
    assert!(net.nodes[2].path(&dest).is_some());
    let echoed = |frames: &[(InterfaceId, Vec<u8>)]| {
        frames.iter().any(|(_, frame)| {
            Packet::parse(frame)
                .is_ok_and(|p| p.packet_type == PacketType::Announce && p.destination == dest)
        })
    };
    assert!(
        !echoed(&net.frames[2]),
        "C never sends A's announce back to B"
    );

    // On a shared medium the same leaf rebroadcasts (Reticulum's behaviour).
    let (mut shared, dest) = chain_with_announced_destination(false);
    shared.nodes[2] = router(102, true);
    shared.nodes[2].add_interface(InterfaceId(0), InterfaceConfig::new(10_000_000));
    let now = shared.now;
    shared.nodes[0].announce(&dest, now).unwrap();
    shared.run(Duration::from_secs(15));
    assert!(echoed(&shared.frames[2]));
}

#[test]
fn unproved_packets_time_out() {
    let (mut net, dest) = chain_with_announced_destination(false);
    let now = net.now;
    let hash = net.nodes[2].send(&dest, b"no proof", now).unwrap();
    net.run(Duration::from_secs(20));
    assert_eq!(net.delivered[0].len(), 1);
    assert!(net.events[2].contains(&RouterEvent::DeliveryTimedOut { packet_hash: hash }));
}

#[test]
fn links_work_across_a_transport_node() {
    let (mut net, dest) = chain_with_announced_destination(false);
    let now = net.now;
    let link_id = net.nodes[2].open_link(&dest, now).unwrap();
    net.run(Duration::from_millis(200));
    assert!(net.events[2].iter().any(|e| matches!(e,
        RouterEvent::LinkEstablished { link_id: l, role: Role::Initiator, .. } if *l == link_id)));
    assert!(net.events[0].iter().any(|e| matches!(e,
        RouterEvent::LinkEstablished { link_id: l, role: Role::Responder, destination, .. } if *l == link_id && *destination == dest)));
    assert_eq!(net.nodes[1].table_sizes().link_entries, 1);

    let now = net.now;
    net.nodes[2]
        .link_send(&link_id, Context::NONE, b"over the link", now)
        .unwrap();
    net.flush();
    assert!(net.events[0].iter().any(|e| matches!(e,
        RouterEvent::LinkData { plaintext, .. } if plaintext == b"over the link")));
    net.nodes[0]
        .link_send(&link_id, Context::REQUEST, b"and back", now)
        .unwrap();
    net.flush();
    assert!(net.events[2].iter().any(|e| matches!(e,
        RouterEvent::LinkData { plaintext, context: Context::REQUEST, .. } if plaintext == b"and back")));

    // Keepalives keep it up for a long quiet spell.
    net.run(Duration::from_secs(600));
    assert_eq!(net.nodes[0].link_state(&link_id), Some(LinkState::Active));
    assert_eq!(net.nodes[2].link_state(&link_id), Some(LinkState::Active));

    net.nodes[2].close_link(&link_id, net.now).unwrap();
    net.flush();
    assert!(net.events[0].contains(&RouterEvent::LinkClosed {
        link_id,
        reason: CloseReason::InitiatorClosed
    }));
    assert_eq!(net.nodes[0].link_state(&link_id), None);
}

#[test]
fn path_requests_are_answered_from_the_path_table_and_by_the_destination() {
    let mut net = Net::new(&[false, true, false]);
    net.wire(0, 1);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(20));
    // D joins late and asks.
    net.wire(1, 2);
    net.nodes[2].request_path(&dest).unwrap();
    net.run(Duration::from_secs(1));
    let path = net.nodes[2].path(&dest).expect("path response from B");
    assert_eq!(path.hops, 2);
    assert!(net.events[2].iter().any(|e| matches!(
        e,
        RouterEvent::AnnounceReceived {
            path_response: true,
            ..
        }
    )));

    // A neighbour of the destination asks it directly.
    let mut net = Net::new(&[false, false]);
    net.wire(0, 1);
    let dest = net.serve(0, 1, false);
    net.nodes[1].request_path(&dest).unwrap();
    net.flush();
    assert_eq!(net.nodes[1].path(&dest).map(|p| p.hops), Some(1));
}

#[test]
fn unknown_paths_are_searched_for_from_gateway_interfaces() {
    let mut net = Net::new(&[false, true, false]);
    net.wire(0, 1);
    let mut gateway = InterfaceConfig::new(10_000_000);
    gateway.mode = InterfaceMode::Gateway;
    net.wire_with(1, 2, gateway);
    let dest = net.serve(0, 1, false);
    // B has never heard of dest; C asks through B's gateway interface, B asks A's side,
    // A answers, B passes the answer to C.
    net.nodes[2].request_path(&dest).unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.nodes[2].path(&dest).map(|p| p.hops), Some(2));

    // Through a full-mode interface too, within the relay's lost-path bucket.
    let mut net = Net::new(&[false, true, false]);
    net.wire(0, 1);
    net.wire(1, 2);
    let dest = net.serve(0, 1, false);
    net.nodes[2].request_path(&dest).unwrap();
    net.run(Duration::from_secs(2));
    assert_eq!(net.nodes[2].path(&dest).map(|p| p.hops), Some(2));
}

#[test]
fn announce_cap_queues_rebroadcasts_on_slow_interfaces() {
    let mut net = Net::new(&[false, true, false]);
    net.wire(0, 1);
    let (slow, _) = net.wire_with(1, 2, InterfaceConfig::new(1200));
    let d1 = net.serve(0, 1, false);
    let d2 = net.serve(0, 2, false);
    let now = net.now;
    net.nodes[0].announce(&d1, now).unwrap();
    net.nodes[0].announce(&d2, now).unwrap();
    net.run(Duration::from_secs(2));
    let sent_slow = |net: &Net| net.frames[1].iter().filter(|(i, _)| *i == slow).count();
    assert_eq!(
        sent_slow(&net),
        1,
        "the second rebroadcast waits for budget"
    );
    assert!(net.nodes[1].table_sizes().queued_announces >= 1);
    // ~300 bytes at 1200 bps and 2% take 100 s of budget each.
    net.run(Duration::from_secs(120));
    assert!(sent_slow(&net) >= 2);
    assert!(net.nodes[2].path(&d1).is_some() && net.nodes[2].path(&d2).is_some());
}

#[test]
fn drops_are_counted_by_reason() {
    let mut r = router(1, true);
    let iface = InterfaceId(0);
    r.add_interface(iface, InterfaceConfig::new(1_000_000));
    let local = LocalDestination::new(identity(9), DestinationName::mehr_node());
    let dest = r.register_destination(local);
    let now = Timestamp::from_secs(1);

    r.handle_inbound(InterfaceId(7), &[0; 30], now);
    r.handle_inbound(iface, &[0; 5], now);
    r.handle_inbound(iface, &vec![0; 600], now);

    // Unencrypted data to a SINGLE destination.
    let plain = Packet::new(
        PacketType::Data,
        DestinationType::Single,
        dest,
        Context::NONE,
        b"not encrypted".to_vec(),
    );
    r.handle_inbound(iface, &plain.encode(), now);
    r.handle_inbound(iface, &plain.encode(), now);

    // A tampered announce.
    let other = identity(10);
    let mut bad = Announce::create(&other, &DestinationName::mehr_node(), b"x", None, [0; 5], 1)
        .to_packet(false);
    bad.data[100] ^= 1;
    r.handle_inbound(iface, &bad.encode(), now);

    // In transport via someone else.
    let mut foreign = plain.clone();
    foreign.transport_id = Some(IdentityHash([0xEE; 16]));
    r.handle_inbound(iface, &foreign.encode(), now);

    // At the hop limit.
    let mut far = plain.clone();
    far.hops = 128;
    r.handle_inbound(iface, &far.encode(), now);

    // A PLAIN packet that crossed two hops.
    let mut plain_far = Packet::new(
        PacketType::Data,
        DestinationType::Plain,
        DestinationHash([3; 16]),
        Context::NONE,
        vec![1],
    );
    plain_far.hops = 2;
    r.handle_inbound(iface, &plain_far.encode(), now);

    let c = r.counters();
    assert_eq!(c.dropped(DropReason::UnknownInterface), 1);
    assert_eq!(c.dropped(DropReason::Malformed), 1);
    assert_eq!(c.dropped(DropReason::FrameTooLarge), 1);
    assert_eq!(c.dropped(DropReason::Undecryptable), 1);
    assert_eq!(c.dropped(DropReason::Duplicate), 1);
    assert_eq!(c.dropped(DropReason::InvalidAnnounce), 1);
    assert_eq!(c.dropped(DropReason::OtherTransportId), 1);
    assert_eq!(c.dropped(DropReason::HopLimit), 1);
    assert_eq!(c.dropped(DropReason::TransportedPlainOrGroup), 1);
    assert_eq!(c.received, 9);
    let events: Vec<RouterEvent> = r
        .drain_actions()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    // Routine drops (duplicate, foreign transport id) are counted, not reported.
    assert_eq!(events.len(), 7);
    assert!(events.contains(&RouterEvent::PacketDropped {
        reason: DropReason::Undecryptable,
        interface: Some(iface)
    }));
}

#[test]
fn a_changed_key_for_a_known_destination_is_rejected() {
    let mut r = router(1, true);
    r.add_interface(InterfaceId(0), InterfaceConfig::new(1_000_000));
    let name = DestinationName::mehr_node();
    let genuine = Announce::create(&identity(20), &name, b"", None, [1; 5], 100);
    r.handle_inbound(
        InterfaceId(0),
        &genuine.to_packet(false).encode(),
        Timestamp::from_secs(1),
    );
    assert!(r.path(&genuine.destination).is_some());
    // An announce for the same destination hash with another key cannot be valid, since the
    // hash binds the key; check the guard directly by forging the known entry's key.
    let mut forged = genuine.clone();
    forged.identity = identity(21).public().clone();
    if let Some(known) = r.known.get_mut(&genuine.destination) {
        known.identity = forged.identity.clone();
    }
    let newer = Announce::create(&identity(20), &name, b"", None, [2; 5], 200);
    r.handle_inbound(
        InterfaceId(0),
        &newer.to_packet(false).encode(),
        Timestamp::from_secs(2),
    );
    assert_eq!(r.counters().dropped(DropReason::AnnounceKeyMismatch), 1);
}

#[test]
fn newer_announces_replace_paths_and_replays_do_not() {
    let mut r = router(1, true);
    r.add_interface(InterfaceId(0), InterfaceConfig::new(1_000_000));
    r.add_interface(InterfaceId(1), InterfaceConfig::new(1_000_000));
    let id = identity(30);
    let name = DestinationName::mehr_node();
    let first = Announce::create(&id, &name, b"", None, [1; 5], 1000).to_packet(false);
    r.handle_inbound(InterfaceId(0), &first.encode(), Timestamp::from_secs(1));
    let dest = first.destination;
    assert_eq!(r.path(&dest).unwrap().interface, InterfaceId(0));

    // The same announce via a longer route: ignored.
    let mut longer = first.clone();
    longer.hops = 3;
    longer.transport_id = Some(IdentityHash([4; 16]));
    longer.transport_type = TransportType::Transport;
    r.handle_inbound(InterfaceId(1), &longer.encode(), Timestamp::from_secs(2));
    assert_eq!(r.path(&dest).unwrap().interface, InterfaceId(0));

    // A newer emission over the longer route while the old path is fresh: accepted, since it
    // is newer than anything the path has seen.
    let newer = Announce::create(&id, &name, b"", None, [2; 5], 2000).to_packet(false);
    let mut newer_longer = newer.clone();
    newer_longer.hops = 3;
    newer_longer.transport_id = Some(IdentityHash([4; 16]));
    newer_longer.transport_type = TransportType::Transport;
    r.handle_inbound(
        InterfaceId(1),
        &newer_longer.encode(),
        Timestamp::from_secs(3),
    );
    let path = r.path(&dest).unwrap();
    assert_eq!(
        (path.interface, path.hops, path.next_hop),
        (InterfaceId(1), 4, IdentityHash([4; 16]))
    );

    // An older emission is never accepted.
    let older = Announce::create(&id, &name, b"", None, [3; 5], 500).to_packet(false);
    r.handle_inbound(InterfaceId(0), &older.encode(), Timestamp::from_secs(4));
    assert_eq!(r.path(&dest).unwrap().interface, InterfaceId(1));
}

#[test]
fn tables_stay_within_their_caps() {
    let config = RouterConfig {
        max_paths: 8,
        max_known_destinations: 8,
        max_pending_announces: 4,
        ..RouterConfig::default()
    };
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 0,
    };
    let mut r = Router::new(
        identity(1),
        config,
        clock,
        Box::new(StdRng::seed_from_u64(1)),
    );
    r.add_interface(InterfaceId(0), InterfaceConfig::new(0));
    for i in 0..40u8 {
        let a = Announce::create(
            &identity(i.wrapping_add(50)),
            &DestinationName::mehr_node(),
            b"",
            None,
            [i; 5],
            10,
        );
        r.handle_inbound(
            InterfaceId(0),
            &a.to_packet(false).encode(),
            Timestamp::from_secs(1),
        );
    }
    let sizes = r.table_sizes();
    assert_eq!(sizes.paths, 8);
    assert_eq!(sizes.known_destinations, 8);
    assert_eq!(sizes.pending_announces, 4);
}

/// A diamond: sender 0 reaches destination 3 through relay 1 or relay 2.
fn diamond() -> (Net, DestinationHash) {
    let mut net = Net::new(&[false, true, true, false]);
    net.wire(0, 1);
    net.wire(0, 2);
    net.wire(1, 3);
    net.wire(2, 3);
    let dest = net.serve(3, 9, true);
    let now = net.now;
    net.nodes[3].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(2));
    (net, dest)
}

#[test]
fn the_same_announce_through_another_relay_is_kept_as_an_alternate_and_can_be_sent_through() {
    let (mut net, dest) = diamond();
    let candidates = net.nodes[0].path_candidates(&dest);
    let relays = [net.nodes[1].transport_id(), net.nodes[2].transport_id()];
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    assert!(candidates[0].primary && !candidates[1].primary);
    assert!(candidates.iter().all(|c| c.hops == 2));
    assert_ne!(candidates[0].next_hop, candidates[1].next_hop);
    assert!(candidates.iter().all(|c| relays.contains(&c.next_hop)));
    assert_eq!(
        candidates[0].random_hash, candidates[1].random_hash,
        "one announce, heard twice"
    );
    assert_eq!(
        net.nodes[0].path(&dest).unwrap().next_hop,
        candidates[0].next_hop,
        "the path itself is unchanged"
    );

    // Through the alternate: only that relay forwards it, and the proof comes back.
    let alternate = candidates[1].next_hop;
    let (alt, other) = if alternate == relays[0] {
        (1, 2)
    } else {
        (2, 1)
    };
    let before = (
        net.nodes[alt].counters().forwarded,
        net.nodes[other].counters().forwarded,
    );
    let now = net.now;
    let hash = net.nodes[0]
        .send_via(&dest, b"the long way", Some(alternate), now)
        .unwrap();
    net.flush();
    assert_eq!(net.delivered[3], vec![(dest, b"the long way".to_vec())]);
    assert!(net.events[0].contains(&RouterEvent::DeliveryProved { packet_hash: hash }));
    assert_eq!(
        net.nodes[alt].counters().forwarded,
        before.0 + 2,
        "packet and proof"
    );
    assert_eq!(net.nodes[other].counters().forwarded, before.1);

    // A next hop that is not a candidate falls back to the path.
    let now = net.now;
    net.nodes[0]
        .send_via(&dest, b"nowhere", Some(IdentityHash([7; 16])), now)
        .unwrap();
    net.flush();
    assert_eq!(net.nodes[other].counters().forwarded, before.1 + 2);
}

#[test]
fn a_relay_does_not_take_its_own_announce_echoed_back_as_an_alternate() {
    // 3 (destination) — 1 — 0 (a relay itself) — 2, whose only path runs back through 0.
    let mut net = Net::new(&[true, true, true, false]);
    net.wire(0, 1);
    net.wire(1, 3);
    net.wire(0, 2);
    let dest = net.serve(3, 9, true);
    let now = net.now;
    net.nodes[3].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(8));
    assert_eq!(
        net.nodes[2].path(&dest).unwrap().hops,
        3,
        "2 heard it through 0"
    );
    assert!(
        net.nodes[2].counters().announces_rebroadcast > 0,
        "and repeated it back to 0"
    );
    let candidates = net.nodes[0].path_candidates(&dest);
    assert_eq!(candidates.len(), 1, "{candidates:?}");
}

#[test]
fn alternates_survive_a_newer_announce_and_go_with_their_interface() {
    let (mut net, dest) = diamond();
    net.run(Duration::from_secs(1));
    let now = net.now;
    net.nodes[3].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(2));
    let candidates = net.nodes[0].path_candidates(&dest);
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    assert_eq!(
        candidates[0].random_hash, candidates[1].random_hash,
        "both describe the newest announce"
    );
    let alternate_interface = candidates[1].interface;
    net.nodes[0].remove_interface(alternate_interface);
    assert_eq!(net.nodes[0].path_candidates(&dest).len(), 1);
}

#[test]
fn removing_an_interface_forgets_its_paths() {
    let (mut net, dest) = chain_with_announced_destination(false);
    assert!(net.nodes[1].path(&dest).is_some());
    net.nodes[1].remove_interface(InterfaceId(0));
    assert!(net.nodes[1].path(&dest).is_none());
}

#[test]
fn paths_expire() {
    let (mut net, dest) = chain_with_announced_destination(false);
    let later = net
        .now
        .saturating_add(Duration::from_secs(7 * 24 * 3600 + 10));
    net.nodes[2].tick(later);
    assert!(net.nodes[2].path(&dest).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
        let (mut net, _) = chain_with_announced_destination(true);
        for frame in frames {
            let now = net.now;
            net.nodes[1].handle_inbound(InterfaceId(0), &frame, now);
            net.nodes[1].handle_inbound(InterfaceId(1), &frame, now);
            net.nodes[0].handle_inbound(InterfaceId(0), &frame, now);
        }
        net.run(Duration::from_secs(1));
    }

    #[test]
    fn mutated_valid_frames_never_panic(flip in 0usize..300, bit in 0u8..8) {
        let (mut net, dest) = chain_with_announced_destination(true);
        let now = net.now;
        net.nodes[2].send(&dest, b"payload", now).unwrap();
        let mut frame = next_frame(&mut net.nodes[2]);
        let at = flip % frame.len();
        frame[at] ^= 1 << bit;
        net.nodes[1].handle_inbound(InterfaceId(1), &frame, now);
        net.flush();
    }
}

fn limited_router(config: RouterConfig, seed: u8) -> Router {
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 1_700_000_000,
    };
    Router::new(
        identity(seed),
        config,
        clock,
        Box::new(StdRng::seed_from_u64(u64::from(seed))),
    )
}

/// A valid announce of a fresh key pair (what a Sybil flood is made of).
fn sybil_announce(i: u32, emitted: u64) -> Vec<u8> {
    let mut key = [0u8; 64];
    key[..4].copy_from_slice(&i.to_le_bytes());
    key[32..36].copy_from_slice(&i.to_le_bytes());
    key[4] = 0xA5;
    let id = PrivateIdentity::from_private_key(&key);
    let random = [(i % 251) as u8; 5];
    Announce::create(
        &id,
        &DestinationName::mehr_node(),
        b"",
        None,
        random,
        emitted,
    )
    .to_packet(false)
    .encode()
}

#[test]
fn inbound_announces_are_rate_limited_per_interface_before_verification() {
    let config = RouterConfig {
        inbound_announces_per_second: 10.0,
        inbound_announce_burst: 20,
        ..RouterConfig::default()
    };
    let mut r = limited_router(config, 1);
    r.add_interface(InterfaceId(0), InterfaceConfig::new(0));
    r.add_interface(InterfaceId(1), InterfaceConfig::new(0));
    let t1 = Timestamp::from_secs(1);
    for i in 0..100 {
        r.handle_inbound(InterfaceId(0), &sybil_announce(i, 10), t1);
    }
    assert_eq!(r.table_sizes().paths, 20);
    assert_eq!(r.counters().dropped(DropReason::AnnounceRateLimited), 80);
    // The flood on interface 0 costs interface 1 nothing.
    r.handle_inbound(InterfaceId(1), &sybil_announce(1000, 10), t1);
    assert_eq!(r.table_sizes().paths, 21);
    // A refresh of a path interface 0 carries has its own bucket, still full.
    r.handle_inbound(InterfaceId(0), &sybil_announce(0, 20), t1);
    assert_eq!(r.counters().dropped(DropReason::AnnounceRateLimited), 80);
    // Two seconds refill twenty.
    let t3 = Timestamp::from_secs(3);
    for i in 200..300 {
        r.handle_inbound(InterfaceId(0), &sybil_announce(i, 10), t3);
    }
    assert_eq!(r.table_sizes().paths, 41);
}

#[test]
fn a_sybil_flood_does_not_push_out_a_proved_path() {
    let mut net = Net::new(&[false, true, false]);
    net.nodes[1] = limited_router(
        RouterConfig {
            max_paths: 8,
            max_known_destinations: 8,
            ..RouterConfig::default()
        },
        101,
    );
    net.wire(0, 1);
    net.wire(1, 2);
    let attacker = InterfaceId(99);
    net.nodes[1].add_interface(attacker, InterfaceConfig::new(0));
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(1));
    let link = net.nodes[2].open_link(&dest, net.now).unwrap();
    net.run(Duration::from_millis(300));
    assert_eq!(net.nodes[2].link_state(&link), Some(LinkState::Active));

    for i in 0..100 {
        let now = net.now;
        net.nodes[1].handle_inbound(attacker, &sybil_announce(i, 10), now);
        net.flush();
    }
    let relay = &net.nodes[1];
    assert_eq!(relay.table_sizes().paths, 8);
    assert_eq!(relay.table_sizes().known_destinations, 8);
    assert!(relay.path(&dest).is_some(), "the proved path was evicted");
    assert!(relay.known_destination(&dest).is_some());
    // Node 2 still reaches the destination through the relay.
    net.nodes[2]
        .link_send(&link, Context::NONE, b"still here", net.now)
        .unwrap();
    net.flush();
    assert!(net.events[0].iter().any(|e| matches!(e,
        RouterEvent::LinkData { plaintext, .. } if plaintext == b"still here")));
}

#[test]
fn anonymous_link_requests_never_take_an_established_links_slot() {
    let mut net = Net::new(&[false, true, false]);
    net.nodes[0] = limited_router(
        RouterConfig {
            transport_enabled: false,
            max_local_links: 3,
            max_handshaking_links: 2,
            ..RouterConfig::default()
        },
        100,
    );
    net.wire(0, 1);
    net.wire(1, 2);
    let attacker = InterfaceId(99);
    net.nodes[0].add_interface(attacker, InterfaceConfig::new(0));
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(1));
    let link = net.nodes[2].open_link(&dest, net.now).unwrap();
    net.run(Duration::from_millis(300));
    assert_eq!(net.nodes[0].link_state(&link), Some(LinkState::Active));

    let target = identity(1).public().clone();
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..50 {
        let now = net.now;
        let (_, request) = crate::link::Link::initiate(&target, dest, None, 1, now, &mut rng);
        net.nodes[0].handle_inbound(attacker, &request.encode(), now);
    }
    let served = &net.nodes[0];
    assert!(served.table_sizes().local_links <= 3);
    assert_eq!(served.link_state(&link), Some(LinkState::Active));
    assert_eq!(
        served.counters().dropped(DropReason::LinkHandshakeEvicted),
        48
    );
    assert_eq!(served.counters().dropped(DropReason::LinkSlotsFull), 0);
}

#[test]
fn a_removed_interface_is_never_transmitted_on_by_a_link_that_used_it() {
    // Found by the router fuzz target: a link accepted on an interface kept sending its
    // keepalives there after the interface was removed.
    let mut net = Net::new(&[false, false]);
    let (served_on, _) = net.wire(0, 1);
    let dest = net.serve(0, 1, false);
    let now = net.now;
    net.nodes[0].announce(&dest, now).unwrap();
    net.run(Duration::from_secs(1));
    let link = net.nodes[1].open_link(&dest, net.now).unwrap();
    net.run(Duration::from_millis(300));
    assert_eq!(net.nodes[0].link_state(&link), Some(LinkState::Active));
    net.nodes[0].remove_interface(served_on);
    net.frames[0].clear();
    // Long enough for keepalives, staleness and the close.
    for _ in 0..40 {
        net.run(Duration::from_secs(60));
    }
    assert!(
        net.frames[0]
            .iter()
            .all(|(interface, _)| *interface != served_on),
        "transmitted on a removed interface"
    );
    assert_ne!(net.nodes[0].link_state(&link), Some(LinkState::Active));
}
