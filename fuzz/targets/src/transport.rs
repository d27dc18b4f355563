//! Targets for `mehr-transport`: the Reticulum packet and everything carried in it, the
//! link handshake and link traffic, the segment protocol over links, tokens, stream framing,
//! and the router that receives every frame from the mesh.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Unstructured;
use mehr_transport::announce::{Announce, emitted_at};
use mehr_transport::cost_annotation::{ANNOTATION_LEN, PathCostAnnotation};
use mehr_transport::extension::MehrExtension;
use mehr_transport::framing::{DecoderStats, hdlc, kiss};
use mehr_transport::hashes::sha256;
use mehr_transport::link::{
    Link, LinkEvent, LinkProof, LinkRequest, LinkState, MAX_SIGNALLED_MTU, Role, SIGNALLING_LEN,
    Signalling, link_id,
};
use mehr_transport::packet::{MAX_HOPS, MTU};
use mehr_transport::path_cost::{
    COMPACT_PATH_COST_LEN, CompactPathCost, HopCost, decode_cost, encode_cost, encode_cost_ceil,
};
use mehr_transport::path_request::{MAX_TAG_LEN, PathRequest};
use mehr_transport::proof::ProofData;
use mehr_transport::segments::{self, Incoming, Outgoing, SegmentPacket, SendStep};
use mehr_transport::token::Token;
use mehr_transport::{
    Context, DestinationHash, DestinationName, DestinationType, IdentityHash, Packet, PacketType,
    PrivateIdentity, Timestamp,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `Packet::parse`: a parsed packet re-encodes to exactly the input, and its hash ignores
/// what changes hop by hop.
pub fn packet(data: &[u8]) {
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    assert_eq!(
        packet.encode(),
        data,
        "a parsed packet re-encodes to its input"
    );
    assert_eq!(packet.encoded_len(), data.len());
    assert!(packet.hops < MAX_HOPS);
    assert!(!packet.data.is_empty(), "an empty data field is malformed");
    assert_eq!(packet.hash().0, sha256(&packet.hashable_part()));
    let mut moved = packet.clone();
    moved.hops = (moved.hops + 1) % MAX_HOPS;
    moved.transport_id = match moved.transport_id {
        Some(_) => None,
        None => Some(IdentityHash([0xA5; 16])),
    };
    moved.context_flag = !moved.context_flag;
    assert_eq!(
        moved.hash(),
        packet.hash(),
        "the packet hash is the same on every hop"
    );
    assert_eq!(moved.relay_hash(), packet.relay_hash());
    assert_eq!(packet.check_mtu(data.len()), Ok(()));
    assert!(packet.check_mtu(data.len() - 1).is_err());
}

/// Announce data: split into fields, checked (signature, destination hash), and the
/// MehrExtension in a `mehr.node` announce's app_data. Input: one byte (bit 0: the context
/// flag that says a ratchet is present), the 16-byte destination hash, then the data field.
pub fn announce(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((destination, announce_data)) = rest.split_at_checked(DestinationHash::LEN) else {
        return;
    };
    let destination = DestinationHash::from_slice(destination).expect("16 bytes");
    let has_ratchet = flags & 1 == 1;
    let mut packet = Packet::new(
        PacketType::Announce,
        DestinationType::Single,
        destination,
        Context(flags >> 1),
        announce_data.to_vec(),
    );
    packet.context_flag = has_ratchet;
    let verified = Announce::from_packet(&packet);
    let Ok(parsed) = Announce::parse_unverified(destination, has_ratchet, announce_data) else {
        assert!(
            verified.is_err(),
            "an announce that does not parse is not valid"
        );
        return;
    };
    assert_eq!(
        parsed.data(),
        announce_data,
        "announce fields re-encode to the input"
    );
    assert_eq!(parsed.ratchet.is_some(), has_ratchet);
    assert!(parsed.emitted_at() < 1 << 40);
    assert_eq!(parsed.emitted_at(), emitted_at(&parsed.random_hash));
    let round = parsed.to_packet(false);
    assert_eq!(round.context_flag, has_ratchet);
    assert_eq!(
        Announce::parse_unverified(round.destination, round.context_flag, &round.data).as_ref(),
        Ok(&parsed)
    );
    match verified {
        Ok(valid) => {
            assert_eq!(valid, parsed);
            assert_eq!(parsed.verify(), Ok(()));
            assert_eq!(
                mehr_transport::destination::destination_hash(
                    &valid.name_hash,
                    Some(&valid.identity.hash())
                ),
                valid.destination,
                "a valid announce's destination follows from its name and identity"
            );
            if let Some(Ok(extension)) = valid.mehr_extension() {
                assert_eq!(extension.encode().as_deref(), Ok(&valid.app_data[..]));
            }
        }
        Err(_) => assert!(parsed.verify().is_err()),
    }
}

/// The MehrExtension in announce app_data: magic, version, the origin's CompactPathCost and
/// TLVs. A parsed extension re-encodes to exactly the input (unknown TLVs are kept).
pub fn mehr_extension(data: &[u8]) {
    let parsed = MehrExtension::from_app_data(data);
    let Ok(Some(extension)) = parsed else {
        if data.first() != Some(&mehr_transport::extension::MEHR_EXTENSION_MAGIC) {
            assert_eq!(parsed, Ok(None), "other apps' app_data is never parsed");
        }
        return;
    };
    assert_eq!(extension.encode().as_deref(), Ok(data));
    let (major, _) = extension
        .version_numbers()
        .expect("a parsed extension has a version");
    assert_eq!(major, mehr_transport::extension::SUPPORTED_MAJOR);
    for tlv in &extension.tlvs {
        assert!(tlv.value.len() <= usize::from(u8::MAX));
        assert!(
            extension.tlv(tlv.kind).is_some(),
            "every parsed TLV can be looked up"
        );
    }
    let mut rebuilt = MehrExtension::new(extension.origin_cost);
    rebuilt.version = extension.version;
    for tlv in &extension.tlvs {
        rebuilt
            .push_tlv(tlv.kind, tlv.value.clone())
            .expect("a parsed TLV fits");
    }
    assert_eq!(rebuilt, extension);
}

/// `CompactPathCost` (7 bytes) and the signed path-cost annotation (114 bytes): exact
/// round trips, and the per-hop update never understates a fee. Input: a 7-byte cost, a
/// hop's cost (f64 bits, latency, bandwidth, MTU), then anything, which is also tried as an
/// annotation.
pub fn path_cost(data: &[u8]) {
    if let Some(bytes) = data.get(..COMPACT_PATH_COST_LEN) {
        let cost = CompactPathCost::parse(bytes).expect("7 bytes");
        assert_eq!(cost.to_bytes(), bytes);
        let code_value = decode_cost(cost.cost);
        if code_value.is_finite() {
            assert_eq!(encode_cost(code_value), cost.cost, "codes round-trip");
            assert_eq!(
                encode_cost_ceil(code_value),
                cost.cost,
                "codes round-trip up"
            );
        }
        let mut u = Unstructured::new(&data[COMPACT_PATH_COST_LEN..]);
        if let (Ok(fee_bits), Ok(latency_ms), Ok(bandwidth_bps), Ok(mtu)) = (
            u.arbitrary::<u64>(),
            u.arbitrary::<u32>(),
            u.arbitrary::<u64>(),
            u.arbitrary::<u32>(),
        ) {
            let hop = HopCost {
                cost_per_byte: f64::from_bits(fee_bits),
                latency_ms,
                bandwidth_bps,
                mtu,
            };
            let next = cost.add_hop(&hop);
            assert_eq!(next.hops, cost.hops.saturating_add(1));
            assert!(next.worst_latency_ms >= cost.worst_latency_ms);
            assert!(next.bandwidth <= cost.bandwidth && next.mtu <= cost.mtu);
            assert!(next.cost >= cost.cost, "adding a hop never lowers the cost");
            let fee = hop.cost_per_byte.max(0.0);
            let owed = code_value + fee;
            if next.cost < u16::MAX && owed.is_finite() {
                // Rounding up may undershoot by the encoder's float slack, far below a code
                // step (×1.044).
                assert!(
                    decode_cost(next.cost) * (1.0 + 1e-6) >= owed,
                    "a re-encoded path cost never understates the fee: {cost:?} + {fee} -> {next:?}"
                );
            }
            let origin = CompactPathCost::origin(&hop);
            assert_eq!(origin.hops, 0);
        }
    }
    let annotation_bytes = data
        .get(data.len().saturating_sub(ANNOTATION_LEN)..)
        .unwrap_or(data);
    if let Ok(annotation) = PathCostAnnotation::parse(annotation_bytes) {
        assert_eq!(annotation.encode(), annotation_bytes);
        let relay = relay_identity();
        let verdict = annotation.verify(relay.public());
        if annotation.relay != relay.hash() {
            assert!(verdict.is_err());
        }
    }
}

/// Path requests: at most 16 tag bytes are kept, and a parsed request re-encodes to the
/// input up to that cut.
pub fn path_request(data: &[u8]) {
    let Ok(request) = PathRequest::parse(data) else {
        return;
    };
    assert!(!request.tag.is_empty() && request.tag.len() <= MAX_TAG_LEN);
    let kept = data.len().min(2 * DestinationHash::LEN + MAX_TAG_LEN);
    assert_eq!(request.encode(), &data[..kept]);
    assert_eq!(PathRequest::parse(&request.encode()).as_ref(), Ok(&request));
    let packet = request.to_packet();
    assert_eq!(
        Packet::parse(&packet.encode()).as_ref(),
        Ok(&packet),
        "a path request fits one packet"
    );
    assert_eq!(
        request.unique_key(),
        [&request.destination.as_bytes()[..], &request.tag].concat()
    );
}

/// Delivery proofs (implicit: the signature; explicit: packet hash and signature).
pub fn proof(data: &[u8]) {
    let Ok(proof) = ProofData::parse(data) else {
        return;
    };
    assert_eq!(proof.encode(), data);
    let signer = relay_identity();
    let hash = mehr_transport::PacketHash(sha256(data));
    assert!(
        proof.verify(&hash, signer.public().signing_key()).is_err(),
        "a proof for a packet that was never signed does not verify"
    );
}

/// The link handshake, both ways. Input: one byte (bit 0 chooses the side), then the data of
/// a LINKREQUEST the responder answers, or of an LRPROOF the initiator checks. The initiator
/// is the deterministic one of [`LinkPair`], so a real proof in the corpus passes.
pub fn link_handshake(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if let Some(bytes) = body.first_chunk::<SIGNALLING_LEN>() {
        let signalling = Signalling::decode(bytes);
        assert!(signalling.mtu <= MAX_SIGNALLED_MTU && signalling.mode < 8);
        assert_eq!(
            &signalling.encode(),
            bytes,
            "signalling bytes are a bijection"
        );
    }
    if let Ok(request) = LinkRequest::parse(body) {
        assert_eq!(request.encode(), body);
    }
    if let Ok(proof) = LinkProof::parse(body) {
        assert_eq!(proof.encode(), body);
    }
    let owner = link_owner();
    let destination = DestinationName::mehr_node().single_hash(owner.public());
    let mut rng = StdRng::seed_from_u64(u64::from(selector >> 1));
    let now = Timestamp::from_secs(100);
    if selector & 1 == 0 {
        let mut request = Packet::new(
            PacketType::LinkRequest,
            DestinationType::Single,
            destination,
            Context::NONE,
            body.to_vec(),
        );
        request.hops = selector >> 1 & 0x3F;
        let Ok((link, proof_packet)) = Link::accept(owner, &request, now, &mut rng) else {
            return;
        };
        let parsed = LinkRequest::parse(body).expect("an accepted request parses");
        assert_eq!(link.id(), link_id(&request));
        assert_eq!(link.role(), Role::Responder);
        assert_eq!(link.state(), LinkState::Handshake);
        assert_eq!(link.mtu(), parsed.signalling.map_or(MTU as u32, |s| s.mtu));
        assert_eq!(proof_packet.packet_type, PacketType::Proof);
        assert_eq!(proof_packet.destination_type, DestinationType::Link);
        assert_eq!(proof_packet.context, Context::LRPROOF);
        assert_eq!(proof_packet.destination, DestinationHash::from(link.id()));
        let proof = LinkProof::parse(&proof_packet.data).expect("our proof parses");
        assert_eq!(
            proof.verify(&link.id(), owner.public()),
            Ok(()),
            "our own link proof verifies"
        );
        // The link id leaves out the signalling bytes, so MTU clamping on the way keeps it.
        let mut unsignalled = request.clone();
        unsignalled.data.truncate(64);
        assert_eq!(link_id(&unsignalled), link.id());
    } else {
        let (mut initiator, mut rng) = LinkPair::initiated(selector >> 1, now);
        let proof = Packet::new(
            PacketType::Proof,
            DestinationType::Link,
            initiator.id().into(),
            Context::LRPROOF,
            body.to_vec(),
        );
        let later = Timestamp::from_millis(now.as_millis() + 40);
        match initiator.handle_proof(&proof, later, &mut rng) {
            Ok(rtt_packet) => {
                assert_eq!(initiator.state(), LinkState::Active);
                assert_eq!(rtt_packet.context, Context::LRRTT);
                assert_eq!(
                    rtt_packet.destination,
                    DestinationHash::from(initiator.id())
                );
            }
            Err(_) => assert_eq!(initiator.state(), LinkState::Pending),
        }
    }
}

/// Traffic on an established link: operations chosen by the input (raw packets, packets
/// encrypted by the other end with a chosen context and payload, tampered packets, proofs,
/// identification, keepalives, time passing, close). Whatever the peer sends, a link never
/// panics, decrypts what the other end encrypted, and rejects every tampered byte.
pub fn link_data(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut pair = LinkPair::established();
    for _ in 0..MAX_OPS {
        let Ok(op) = u.arbitrary::<u8>() else {
            return;
        };
        let to_responder = op & 1 == 0;
        let (sender, receiver) = if to_responder {
            (&mut pair.initiator, &mut pair.responder)
        } else {
            (&mut pair.responder, &mut pair.initiator)
        };
        let now = pair.now;
        match (op >> 1) % 8 {
            0 => {
                let Ok(packet_type) = u.choose(&PACKET_TYPES) else {
                    return;
                };
                let Ok(context) = u.arbitrary::<u8>() else {
                    return;
                };
                let Ok(payload) = take_bytes(&mut u, 255) else {
                    return;
                };
                let packet = Packet::new(
                    *packet_type,
                    DestinationType::Link,
                    receiver.id().into(),
                    Context(context),
                    payload.to_vec(),
                );
                let _ = receiver.receive(&packet, now);
            }
            1 | 7 => {
                let Ok(context) = u.arbitrary::<u8>() else {
                    return;
                };
                let Ok(plaintext) = take_bytes(&mut u, sender.mdu()) else {
                    return;
                };
                let Ok(mut packet) =
                    sender.encrypt(Context(context), plaintext, now, &mut pair.rng)
                else {
                    assert!(!sender_can_send(sender));
                    continue;
                };
                let tamper = (op >> 1) % 8 == 7;
                if tamper {
                    let Ok(at) = u.choose_index(packet.data.len()) else {
                        return;
                    };
                    let Ok(flip) = u.int_in_range(1..=255u8) else {
                        return;
                    };
                    packet.data[at] ^= flip;
                }
                let receiver_open = receiver_is_open(receiver);
                let outcome = receiver.receive(&packet, now);
                let decrypted = !matches!(Context(context), Context::KEEPALIVE | Context::RESOURCE);
                if tamper && decrypted {
                    assert!(outcome.is_err(), "a tampered link packet is refused");
                } else if receiver_open && decrypted && !SPECIAL_CONTEXTS.contains(&context) {
                    match outcome {
                        Ok(o) => assert_eq!(
                            o.event,
                            LinkEvent::Data {
                                context: Context(context),
                                plaintext: plaintext.to_vec()
                            },
                            "the other end decrypts what was sent"
                        ),
                        Err(e) => panic!("an intact link packet was refused: {e}"),
                    }
                }
            }
            2 => {
                let Ok(hash) = u.arbitrary::<[u8; 32]>() else {
                    return;
                };
                let hash = mehr_transport::PacketHash(hash);
                let proof = sender.prove_hash(&hash);
                let receiver_open = receiver_is_open(receiver);
                let outcome = receiver.receive(&proof, now);
                if receiver_open {
                    assert_eq!(
                        outcome.map(|o| o.event),
                        Ok(LinkEvent::Proof { packet_hash: hash }),
                        "a proof signed by the other end verifies"
                    );
                }
            }
            3 => {
                let Ok(which) = u.choose_index(pair.identities.len()) else {
                    return;
                };
                let identity = &pair.identities[which];
                let Ok(packet) = pair.initiator.identify(identity, now, &mut pair.rng) else {
                    continue;
                };
                let responder_open = receiver_is_open(&pair.responder);
                let outcome = pair.responder.receive(&packet, now);
                if responder_open {
                    assert_eq!(
                        outcome.map(|o| o.event),
                        Ok(LinkEvent::Identified(Box::new(identity.public().clone())))
                    );
                    assert_eq!(pair.responder.remote_identity(), Some(identity.public()));
                }
            }
            4 => {
                let Ok(byte) = u.arbitrary::<u8>() else {
                    return;
                };
                let packet = Packet::new(
                    PacketType::Data,
                    DestinationType::Link,
                    receiver.id().into(),
                    Context::KEEPALIVE,
                    vec![byte],
                );
                if let Ok(outcome) = receiver.receive(&packet, now) {
                    assert_eq!(outcome.event, LinkEvent::Keepalive);
                    if let Some(reply) = outcome.reply {
                        let _ = sender.receive(&reply, now);
                    }
                }
            }
            5 => {
                let Ok(step) = u.arbitrary::<u16>() else {
                    return;
                };
                // Up to about 18 hours per step, in 1 s units: keepalives, staleness, timeouts.
                pair.now = pair
                    .now
                    .saturating_add(Duration::from_secs(u64::from(step)));
                let now = pair.now;
                poll_into(&mut pair.initiator, &mut pair.responder, now, &mut pair.rng);
                poll_into(&mut pair.responder, &mut pair.initiator, now, &mut pair.rng);
            }
            _ => {
                let receiver_open = receiver_is_open(receiver);
                let close = sender.close(now, &mut pair.rng);
                assert!(matches!(sender.state(), LinkState::Closed(_)));
                assert!(
                    sender
                        .encrypt(Context::NONE, b"after close", now, &mut pair.rng)
                        .is_err(),
                    "a closed link sends nothing"
                );
                if let Some(packet) = close {
                    let outcome = receiver.receive(&packet, now);
                    if receiver_open {
                        assert!(
                            matches!(outcome.map(|o| o.event), Ok(LinkEvent::Closed(_))),
                            "the other end learns of the close"
                        );
                        assert!(matches!(receiver.state(), LinkState::Closed(_)));
                    }
                }
            }
        }
    }
}

/// The segment protocol (`mehr_transport::segments`) that carries messages larger than one
/// packet over a link. The whole input as one packet: accepted bytes re-encode to themselves,
/// a segment lies inside its message, an Ack reports at most the encoder's maximum. Then the
/// input as a sequence of packets (a length byte before each) fed to a receiver and to a
/// sender: the receiver holds exactly the bytes of the distinct segments that arrived (never
/// what a count announces), completes only with every segment and returns them in order, and
/// its Acks parse and stay inside the message; the sender only sends segments of its message,
/// each the right slice of the payload, and once delivered stays delivered.
pub fn segments(data: &[u8]) {
    if let Ok(packet) = SegmentPacket::parse(data) {
        assert_eq!(
            packet.encode(),
            data,
            "a segment packet re-encodes to its input"
        );
        match &packet {
            SegmentPacket::Segment { index, count, .. } => assert!(index < count),
            SegmentPacket::Ack { missing, .. } => {
                assert!(missing.len() <= segments::MAX_MISSING_REPORTED);
            }
            SegmentPacket::Query { .. } | SegmentPacket::Abort { .. } => {}
        }
    }
    // A payload of a few segments, the last one short, which the sender offers.
    let payload: Vec<u8> = (0..segments::SEGMENT_PAYLOAD * 3 + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut sender = Outgoing::new(1, payload.clone(), Duration::ZERO);
    let mut delivered = false;
    // The receiver of the first segment's message, its segment count, and the length of each
    // distinct segment it took.
    let mut receiver: Option<(Incoming, u32, BTreeMap<u32, usize>)> = None;
    let mut rest = data;
    let mut now = Duration::ZERO;
    while let Some((&len, tail)) = rest.split_first() {
        let (bytes, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        now += Duration::from_millis(u64::from(len) * 100);
        match SegmentPacket::parse(bytes) {
            Ok(SegmentPacket::Segment {
                msg,
                index,
                count,
                bytes,
            }) => {
                let (incoming, expected, arrived) = receiver.get_or_insert_with(|| {
                    (Incoming::new(msg, count, now), count, BTreeMap::new())
                });
                if msg != incoming.msg() {
                    continue; // the transport hands each message its own receiver
                }
                if count == *expected {
                    arrived.entry(index).or_insert(bytes.len());
                }
                let received = incoming.on_segment(index, count, bytes, now);
                if let Some(ack) = &received.ack {
                    assert_eq!(SegmentPacket::parse(&ack.encode()).as_ref(), Ok(ack));
                    let SegmentPacket::Ack { next, missing, .. } = ack else {
                        panic!("a receiver answers with an Ack, not {ack:?}");
                    };
                    assert!(*next <= *expected);
                    assert!(missing.iter().all(|m| m >= next && m < expected));
                }
                let held: usize = arrived.values().sum();
                match received.message {
                    Some(message) => {
                        assert_eq!(
                            arrived.len(),
                            *expected as usize,
                            "complete only when whole"
                        );
                        assert_eq!(message.len(), held);
                        assert_eq!(incoming.held_bytes(), 0);
                        receiver = None;
                    }
                    None => {
                        assert!(arrived.len() < *expected as usize);
                        assert_eq!(incoming.held_bytes(), held, "holds what arrived, once");
                    }
                }
            }
            Ok(SegmentPacket::Ack { next, missing, .. }) => {
                sender.on_ack(next, &missing, now);
            }
            _ => {}
        }
        match sender.poll(now) {
            SendStep::Delivered => delivered = true,
            SendStep::Send(packets) => {
                assert!(!delivered, "a delivered message stays delivered");
                for packet in packets {
                    match packet {
                        SegmentPacket::Segment {
                            msg,
                            index,
                            count,
                            bytes,
                        } => {
                            assert_eq!((msg, count), (1, sender.count()));
                            let start = index as usize * segments::SEGMENT_PAYLOAD;
                            assert_eq!(
                                bytes,
                                payload
                                    [start..(start + segments::SEGMENT_PAYLOAD).min(payload.len())]
                            );
                        }
                        SegmentPacket::Query { msg } => assert_eq!(msg, 1),
                        other => panic!("a sender sends segments and queries, not {other:?}"),
                    }
                }
            }
        }
    }
}

/// Tokens (`iv ‖ AES-CBC ‖ HMAC`) and ciphertexts to an identity (`ephemeral ‖ token`): random
/// bytes are refused, and what is encrypted decrypts to itself.
pub fn token(data: &[u8]) {
    let token = Token::new(&TOKEN_KEY).expect("64-byte key");
    let short = Token::new(&TOKEN_KEY[..32]).expect("32-byte key");
    for key in [&token, &short] {
        if let Ok(plaintext) = key.decrypt(data) {
            let iv: [u8; 16] = data[..16].try_into().expect("a token starts with its iv");
            assert_eq!(
                key.encrypt_with_iv(&plaintext, iv),
                data,
                "an accepted token is the encryption of its plaintext"
            );
        }
    }
    let iv: [u8; 16] = std::array::from_fn(|i| data.get(i).copied().unwrap_or(0));
    let sealed = token.encrypt_with_iv(data, iv);
    assert_eq!(sealed.len(), Token::token_len(data.len()));
    assert_eq!(token.decrypt(&sealed).as_deref(), Ok(data));
    assert!(
        short.decrypt(&sealed).is_err(),
        "another key does not open it"
    );

    let owner = link_owner();
    if let Ok(plaintext) = owner.decrypt(data) {
        assert!(data.len() > 32 + plaintext.len());
    }
    let ephemeral: [u8; 32] = std::array::from_fn(|i| data.get(i + 16).copied().unwrap_or(7));
    if let Ok(ciphertext) = owner
        .public()
        .encrypt_deterministic(data, None, &ephemeral, iv)
    {
        assert_eq!(owner.decrypt(&ciphertext).as_deref(), Ok(data));
    }
}

/// HDLC framing (TCP interfaces). See [`framing`] for the properties.
pub fn hdlc(data: &[u8]) {
    framing(
        data,
        Framing {
            encode: hdlc::encode,
            decode: |max, chunks| {
                let mut decoder = hdlc::Decoder::new(max);
                let frames = chunks.iter().flat_map(|c| decoder.decode(c)).collect();
                (frames, decoder.stats())
            },
        },
    );
}

/// KISS framing (serial lines, TNCs). See [`framing`] for the properties.
pub fn kiss(data: &[u8]) {
    framing(
        data,
        Framing {
            encode: kiss::encode,
            decode: |max, chunks| {
                let mut decoder = kiss::Decoder::new(max);
                let frames = chunks.iter().flat_map(|c| decoder.decode(c)).collect();
                (frames, decoder.stats())
            },
        },
    );
}

/// Decodes a stream given as successive reads, with a frame bound: the frames and counters.
type DecodeReads = fn(usize, &[&[u8]]) -> (Vec<Vec<u8>>, DecoderStats);

struct Framing {
    encode: fn(&[u8]) -> Vec<u8>,
    decode: DecodeReads,
}

/// Input: two bytes of frame bound (1..=2048), a byte of chunk seed, then the stream.
/// Properties: the frames do not depend on how the stream is split into reads; every frame
/// is non-empty and within the bound; the counters count the frames; each frame, framed
/// again, decodes to itself; and the stream itself, framed, decodes to itself.
fn framing(data: &[u8], framing: Framing) {
    let Some((header, stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([header[0], header[1]])) % 2048 + 1;
    let (whole, stats) = (framing.decode)(max, &[stream]);
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut seed = header[2];
    while !rest.is_empty() {
        seed = seed.wrapping_mul(31).wrapping_add(7);
        let (chunk, tail) = rest.split_at((usize::from(seed) % 17 + 1).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    let (split, split_stats) = (framing.decode)(max, &chunks);
    assert_eq!(
        split, whole,
        "frames do not depend on how the stream is read"
    );
    assert_eq!(split_stats, stats);
    assert_eq!(stats.frames, whole.len() as u64);
    for frame in &whole {
        assert!(!frame.is_empty() && frame.len() <= max);
        assert_eq!(
            (framing.decode)(max, &[&(framing.encode)(frame)]).0,
            std::slice::from_ref(frame),
            "a frame survives framing"
        );
    }
    if !stream.is_empty() && stream.len() <= max {
        assert_eq!(
            (framing.decode)(max, &[&(framing.encode)(stream)]).0,
            [stream.to_vec()]
        );
    }
}

/// The router: every frame from the mesh enters through [`mehr_transport::Router::handle_inbound`].
/// See [`crate::router`] for the operations and invariants.
pub fn router(data: &[u8]) {
    crate::router::run(data);
}

/// Most operations one input of a stateful target runs, so one input costs bounded time.
pub(crate) const MAX_OPS: usize = 64;

const PACKET_TYPES: [PacketType; 4] = [
    PacketType::Data,
    PacketType::Announce,
    PacketType::LinkRequest,
    PacketType::Proof,
];

/// Contexts whose decrypted payload a link interprets itself rather than delivering.
const SPECIAL_CONTEXTS: [u8; 3] = [
    Context::LRRTT.0,
    Context::LINKCLOSE.0,
    Context::LINKIDENTIFY.0,
];

const TOKEN_KEY: [u8; 64] = {
    let mut key = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        key[i] = i as u8;
        i += 1;
    }
    key
};

fn take_bytes<'a>(u: &mut Unstructured<'a>, max: usize) -> arbitrary::Result<&'a [u8]> {
    let len = u.int_in_range(0..=max)?;
    u.bytes(len.min(u.len()))
}

/// Runs `from`'s timers and delivers what they send to `to`.
fn poll_into(from: &mut Link, to: &mut Link, now: Timestamp, rng: &mut StdRng) {
    let poll = from.poll(now, rng);
    if poll.closed.is_some() {
        assert!(matches!(from.state(), LinkState::Closed(_)));
    }
    if let Some(packet) = poll.send {
        let _ = to.receive(&packet, now);
    }
}

fn receiver_is_open(link: &Link) -> bool {
    matches!(
        link.state(),
        LinkState::Active | LinkState::Stale | LinkState::Handshake
    )
}

fn sender_can_send(link: &Link) -> bool {
    matches!(link.state(), LinkState::Active | LinkState::Stale)
        || (link.role() == Role::Responder && link.state() == LinkState::Handshake)
}

/// The identity that owns the `mehr.node` destination links are made to.
pub(crate) fn link_owner() -> &'static PrivateIdentity {
    static OWNER: OnceLock<PrivateIdentity> = OnceLock::new();
    OWNER.get_or_init(|| PrivateIdentity::from_private_key(&[0x42; 64]))
}

fn relay_identity() -> &'static PrivateIdentity {
    static RELAY: OnceLock<PrivateIdentity> = OnceLock::new();
    RELAY.get_or_init(|| PrivateIdentity::from_private_key(&[0x33; 64]))
}

/// Both ends of a link to [`link_owner`]'s `mehr.node` destination, made deterministically
/// (seeded RNG, fixed clock), so the same input always meets the same keys.
#[derive(Clone)]
pub(crate) struct LinkPair {
    pub(crate) initiator: Link,
    pub(crate) responder: Link,
    pub(crate) rng: StdRng,
    pub(crate) now: Timestamp,
    identities: [PrivateIdentity; 2],
}

impl LinkPair {
    /// The initiator's side: the link and its LINKREQUEST.
    pub(crate) fn initiate(rng: &mut StdRng, now: Timestamp) -> (Link, Packet) {
        let owner = link_owner();
        let destination = DestinationName::mehr_node().single_hash(owner.public());
        Link::initiate(owner.public(), destination, Some(MTU as u32), 1, now, rng)
    }

    /// A copy of the one pair [`Self::establish`] makes: the handshake's key agreements and
    /// signatures run once per process, not once per input, and every input starts from the
    /// same state (the copy's links, RNG and clock are its own).
    pub(crate) fn established() -> Self {
        static PAIR: OnceLock<LinkPair> = OnceLock::new();
        PAIR.get_or_init(Self::establish).clone()
    }

    /// The initiator's side made from the RNG stream `stream`, and that RNG as it is after
    /// initiating; made once per stream and copied.
    fn initiated(stream: u8, now: Timestamp) -> (Link, StdRng) {
        static INITIATED: [OnceLock<(Link, StdRng)>; 128] = [const { OnceLock::new() }; 128];
        INITIATED[usize::from(stream & 0x7F)]
            .get_or_init(|| {
                let mut rng = StdRng::seed_from_u64(u64::from(stream & 0x7F));
                let (link, _request) = Self::initiate(&mut rng, now);
                (link, rng)
            })
            .clone()
    }

    /// A completed handshake: the initiator checked the proof and the responder got the RTT.
    pub(crate) fn establish() -> Self {
        let mut rng = StdRng::seed_from_u64(0);
        let now = Timestamp::from_secs(100);
        let (mut initiator, request) = Self::initiate(&mut rng, now);
        let (mut responder, proof) =
            Link::accept(link_owner(), &request, now, &mut rng).expect("our request is accepted");
        let now = Timestamp::from_millis(now.as_millis() + 40);
        let rtt = initiator
            .handle_proof(&proof, now, &mut rng)
            .expect("our proof verifies");
        let established = responder.receive(&rtt, now).expect("our RTT is read");
        assert!(matches!(established.event, LinkEvent::Established { .. }));
        Self {
            initiator,
            responder,
            rng,
            now,
            identities: [
                PrivateIdentity::from_private_key(&[0x51; 64]),
                PrivateIdentity::from_private_key(&[0x52; 64]),
            ],
        }
    }
}
