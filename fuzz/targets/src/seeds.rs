//! Seed inputs: real messages made with the crates' own encoders, so the fuzzer starts from
//! inputs that get past the first checks (lengths, codes, signatures) and mutates from there.
//! `examples/seeds.rs` writes them to a directory per target; the committed corpora started
//! from them.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use mehr_ledger::channel::{
    ChannelBody, ChannelMessage, ChannelState, Deposits, LotteryTerms, OpenAccept, OpenProposal,
    SettleAccept, SettleProposal, UnilateralReason, UnilateralSettlement, UpdateAck,
    UpdateProposal,
};
use mehr_ledger::ledger::epoch::{EpochAck, EpochSummary};
use mehr_ledger::ledger::{
    AccountProof, SettlementKind, SettlementRecord, Snapshot, sign_settlement,
};
use mehr_ledger::lottery::{RelayTicket, VrfProver, WinProbability};
use mehr_ledger::{ChannelId, NodeId, Party};
use mehr_market::agreement::{
    Agreement, CancelReason, Capability, ComputeTarget, OfferTerms, Privacy, ProofMethod,
    RejectReason, Request,
};
use mehr_market::beacon::PresenceBeacon;
use mehr_market::capabilities::{
    Availability, Compute, CpuClass, DailyWindow, Interface, Medium, NodeCapabilities,
    OfferedFunction, Services, Storage, StorageClass,
};
use mehr_market::control;
use mehr_market::discovery::{Filter, PullAnswer, PullEntry, PullRequest};
use mehr_market::message::MarketMessage;
use mehr_market::summary::CapabilitySummary;
use mehr_market::verification::{
    ComputeResult, DeliveryReceipt, Ping, Pong, ProofSystem, Receipt, SignedComputeResult,
    SignedPing, SignedPong,
};
use mehr_market::{CapabilityKind, CostStructure, FunctionId, NodeKey};
use mehr_storage::{
    Challenge, ErasureEncoder, ErasureError, ErasureParams, ObjectBuilder, ObjectId, chunk_path,
    prove, remote,
};
use mehr_transport::announce::Announce;
use mehr_transport::cost_annotation::PathCostAnnotation;
use mehr_transport::extension::{MehrExtension, tlv_type};
use mehr_transport::framing::{hdlc, kiss};
use mehr_transport::link::Link;
use mehr_transport::path_cost::{CompactPathCost, HopCost};
use mehr_transport::path_request::PathRequest;
use mehr_transport::proof::ProofData;
use mehr_transport::segments::{AbortReason, SegmentPacket};
use mehr_transport::token::Token;
use mehr_transport::{
    Context, DestinationHash, DestinationName, DestinationType, IdentityHash, Packet, PacketHash,
    PacketType, PrivateIdentity, Timestamp, TransportType,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::transport::{LinkPair, link_owner};

/// Seeds for every target, by target name. Every seed is built by the crates' encoders and
/// checked to decode (where the target has a plain decoder).
pub fn all() -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let mut seeds = BTreeMap::new();
    seeds.insert("packet", packets());
    seeds.insert("announce", announces());
    seeds.insert("mehr_extension", extensions());
    seeds.insert("path_cost", path_costs());
    seeds.insert("path_request", path_requests());
    seeds.insert("proof", proofs());
    seeds.insert("link_handshake", link_handshakes());
    seeds.insert("link_data", random_inputs(0x11));
    seeds.insert("segments", segment_packets());
    seeds.insert("token", tokens());
    seeds.insert("hdlc", framed(hdlc::encode));
    seeds.insert("kiss", framed(kiss::encode));
    seeds.insert("router", random_inputs(0x12));
    seeds.insert("channel_message", channel_messages());
    seeds.insert("ledger_record", ledger_records());
    seeds.insert("market_message", market_messages());
    seeds.insert("market_control", market_controls());
    seeds.insert(
        "capability_advert",
        adverts()
            .into_iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
    );
    seeds.insert("beacon", beacons());
    seeds.insert("agreement_store", agreements());
    seeds.insert("storage_proof", storage_proofs());
    seeds.insert("erasure_manifest", manifests());
    seeds.insert("erasure_pieces", random_inputs(0x13));
    seeds.insert("storage_remote", storage_remotes());
    seeds
}

fn identity(seed: u8) -> PrivateIdentity {
    PrivateIdentity::from_private_key(&[seed; 64])
}

fn announce(seed: u8, app_data: &[u8], ratchet: Option<[u8; 32]>) -> Announce {
    Announce::create(
        &identity(seed),
        &DestinationName::mehr_node(),
        app_data,
        ratchet,
        [seed; 5],
        1_750_000_000,
    )
}

fn extension() -> MehrExtension {
    let mut ext = MehrExtension::new(CompactPathCost::origin(&HopCost {
        cost_per_byte: 12.5,
        latency_ms: 40,
        bandwidth_bps: 1_000_000,
        mtu: 500,
    }));
    ext.push_tlv(tlv_type::TIER, vec![2]).expect("fits");
    ext.push_tlv(tlv_type::LOAD, vec![17]).expect("fits");
    ext.push_tlv(0xEE, b"future".to_vec()).expect("fits");
    ext
}

fn packets() -> Vec<Vec<u8>> {
    let mut out = vec![
        announce(1, &extension().encode().expect("encodes"), None)
            .to_packet(false)
            .encode(),
        PathRequest::new(
            DestinationHash([3; 16]),
            None,
            &mut StdRng::seed_from_u64(1),
        )
        .to_packet()
        .encode(),
    ];
    let mut transported = Packet::new(
        PacketType::Data,
        DestinationType::Single,
        DestinationHash([9; 16]),
        Context::NONE,
        vec![0xAB; 80],
    );
    transported.transport_id = Some(IdentityHash([4; 16]));
    transported.transport_type = TransportType::Transport;
    transported.hops = 3;
    out.push(transported.encode());
    let (_, request) = LinkPair::initiate(&mut StdRng::seed_from_u64(2), Timestamp::from_secs(1));
    out.push(request.encode());
    for packet in &out {
        Packet::parse(packet).expect("a seed packet parses");
    }
    out
}

fn announces() -> Vec<Vec<u8>> {
    let ext = extension().encode().expect("encodes");
    [
        announce(1, &ext, None),
        announce(2, b"", Some([7; 32])),
        announce(3, b"some other app data", None),
    ]
    .iter()
    .map(|a| {
        let packet = a.to_packet(false);
        let mut seed = vec![u8::from(packet.context_flag)];
        seed.extend_from_slice(packet.destination.as_bytes());
        seed.extend_from_slice(&packet.data);
        assert!(Announce::from_packet(&packet).is_ok());
        seed
    })
    .collect()
}

fn extensions() -> Vec<Vec<u8>> {
    let mut versioned = MehrExtension::new(CompactPathCost::UNCONSTRAINED);
    versioned.version = 0xF0;
    versioned
        .push_tlv(tlv_type::EXTENDED_VERSION, vec![1, 0, 3, 0])
        .expect("fits");
    vec![
        extension().encode().expect("encodes"),
        MehrExtension::new(CompactPathCost::UNCONSTRAINED)
            .encode()
            .expect("encodes"),
        versioned.encode().expect("encodes"),
    ]
}

fn path_costs() -> Vec<Vec<u8>> {
    let hop = HopCost {
        cost_per_byte: 3.0,
        latency_ms: 25,
        bandwidth_bps: 54_000_000,
        mtu: 1_064,
    };
    let cost = CompactPathCost::origin(&hop).add_hop(&hop);
    let relay = identity(0x33);
    let annotation = PathCostAnnotation::sign(&relay, DestinationHash([5; 16]), [6; 10], cost);
    let mut seed = cost.to_bytes().to_vec();
    seed.extend_from_slice(&3.0f64.to_bits().to_le_bytes());
    seed.extend_from_slice(&25u32.to_le_bytes());
    seed.extend_from_slice(&54_000_000u64.to_le_bytes());
    seed.extend_from_slice(&1_064u32.to_le_bytes());
    seed.extend_from_slice(&annotation.encode());
    vec![seed, CompactPathCost::UNCONSTRAINED.to_bytes().to_vec()]
}

fn path_requests() -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(3);
    vec![
        PathRequest::new(DestinationHash([1; 16]), None, &mut rng).encode(),
        PathRequest::new(
            DestinationHash([2; 16]),
            Some(IdentityHash([3; 16])),
            &mut rng,
        )
        .encode(),
    ]
}

fn proofs() -> Vec<Vec<u8>> {
    let key = SigningKey::from_bytes(&[0x35; 32]);
    let hash = PacketHash([0x36; 32]);
    vec![
        ProofData::sign_with(&key, &hash, false).encode(),
        ProofData::sign_with(&key, &hash, true).encode(),
    ]
}

/// Link requests the responder accepts, and the proofs that the target's deterministic
/// initiator (RNG seeded from the selector byte) accepts.
fn link_handshakes() -> Vec<Vec<u8>> {
    let now = Timestamp::from_secs(100);
    let mut out = Vec::new();
    for stream in [0u8, 5] {
        let (_, request) = LinkPair::initiate(&mut StdRng::seed_from_u64(u64::from(stream)), now);
        let mut seed = vec![stream << 1];
        seed.extend_from_slice(&request.data);
        out.push(seed);
        let (_, proof) = Link::accept(link_owner(), &request, now, &mut StdRng::seed_from_u64(9))
            .expect("our request is accepted");
        let mut seed = vec![stream << 1 | 1];
        seed.extend_from_slice(&proof.data);
        out.push(seed);
    }
    out
}

fn tokens() -> Vec<Vec<u8>> {
    let key: Vec<u8> = (0u8..64).collect();
    let token = Token::new(&key).expect("64-byte key");
    let short = Token::new(&key[..32]).expect("32-byte key");
    vec![
        token.encrypt_with_iv(b"a token for the fuzzer", [1; 16]),
        short.encrypt_with_iv(&[0x5A; 40], [2; 16]),
        link_owner()
            .public()
            .encrypt_deterministic(b"to the link owner", None, &[3; 32], [4; 16])
            .expect("encrypts"),
    ]
}

fn framed(encode: fn(&[u8]) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut stream = vec![0x28, 0x04, 0x05];
    for packet in packets() {
        stream.extend_from_slice(&encode(&packet));
    }
    let escapes = [0x7E, 0x7D, 0xC0, 0xDB, 0xDC, 0xDD, 0x00, 0x7E];
    let mut small = vec![0x40, 0x00, 0x01];
    small.extend_from_slice(&encode(&escapes));
    small.extend_from_slice(&encode(b"second"));
    vec![stream, small]
}

/// Structured targets read their operations from any bytes; pseudo-random starts are as
/// good as any, and the fuzzer keeps those that reach new code.
fn random_inputs(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    [16usize, 64, 256, 1024]
        .iter()
        .map(|&n| {
            let mut bytes = vec![0u8; n];
            rng.fill_bytes(&mut bytes);
            bytes
        })
        .collect()
}

struct ChannelFixture {
    key_a: SigningKey,
    key_b: SigningKey,
    body: ChannelBody,
}

fn channel() -> ChannelFixture {
    let key_a = SigningKey::from_bytes(&[0x71; 32]);
    let key_b = SigningKey::from_bytes(&[0x72; 32]);
    let body = ChannelBody::opening(
        ChannelId([0x10; 16]),
        NodeId([0x11; 16]),
        NodeId([0x12; 16]),
        Deposits {
            a: 1_000_000,
            b: 250_000,
        },
        LotteryTerms::initial(),
    );
    ChannelFixture { key_a, key_b, body }
}

fn channel_messages() -> Vec<Vec<u8>> {
    let ChannelFixture { key_a, key_b, body } = channel();
    let next = body.pay(Party::A, 12_345).expect("within the deposit");
    let state = ChannelState {
        body: next,
        sig_a: next.sign(&key_a),
        sig_b: next.sign(&key_b),
    };
    let messages = [
        ChannelMessage::OpenProposal(OpenProposal {
            nonce: [0x13; 16],
            body,
            sig_a: body.sign(&key_a),
        }),
        ChannelMessage::OpenAccept(OpenAccept {
            channel_id: body.channel_id,
            sig_b: body.sign(&key_b),
        }),
        ChannelMessage::Update(UpdateProposal {
            proposer: Party::A,
            body: next,
            signature: next.sign(&key_a),
        }),
        ChannelMessage::Ack(UpdateAck {
            channel_id: body.channel_id,
            seq: next.seq,
            signer: Party::B,
            signature: next.sign(&key_b),
        }),
        ChannelMessage::SettleProposal(SettleProposal {
            kind: SettlementKind::Checkpoint,
            proposer: Party::B,
            body: next,
            signature: sign_settlement(&next, SettlementKind::Checkpoint, &key_b),
        }),
        ChannelMessage::SettleAccept(SettleAccept {
            channel_id: body.channel_id,
            seq: next.seq,
            kind: SettlementKind::CooperativeClose,
            signer: Party::A,
            signature: sign_settlement(&next, SettlementKind::CooperativeClose, &key_a),
        }),
        ChannelMessage::Unilateral(UnilateralSettlement::file(
            state,
            UnilateralReason::Unresponsive,
            Party::A,
            &key_a,
        )),
    ];
    let mut out: Vec<Vec<u8>> = messages.iter().map(ChannelMessage::encode).collect();
    out.push(state.encode().to_vec());
    out.push(next.encode().to_vec());
    for bytes in &out[..messages.len()] {
        ChannelMessage::decode(bytes).expect("a seed message decodes");
    }
    out
}

fn ledger_records() -> Vec<Vec<u8>> {
    let ChannelFixture { key_a, key_b, body } = channel();
    let kind = SettlementKind::Checkpoint;
    let record = SettlementRecord {
        body,
        kind,
        sig_a: sign_settlement(&body, kind, &key_a),
        sig_b: sign_settlement(&body, kind, &key_b),
    };
    let prover = VrfProver::for_identity(&key_a).expect("a valid key");
    let ticket = (0u8..=255)
        .find_map(|i| {
            RelayTicket::draw(
                &prover,
                body.channel_id,
                0,
                WinProbability::MAX,
                [i; 32],
                400,
            )
            .expect("draws")
        })
        .expect("one of 256 draws at 20% wins");
    let snapshot = Snapshot::genesis(
        (1u8..=5)
            .map(|i| (NodeId([i * 40; 16]), u64::from(i) * 1_000))
            .collect(),
    );
    let AccountProof::Present(balance) = snapshot.prove(&NodeId([80; 16])) else {
        panic!("the account is in the genesis snapshot");
    };
    let summary = EpochSummary::propose(&snapshot, NodeId([0x11; 16]), &key_a);
    let ack = EpochAck::sign(&summary, NodeId([0x12; 16]), &key_b);
    let tagged = |tag: u8, bytes: &[u8]| [&[tag][..], bytes].concat();
    vec![
        tagged(0, &record.encode()),
        tagged(1, &ticket.encode()),
        tagged(2, &balance.encode()),
        tagged(3, &summary.encode()),
        tagged(4, &ack.encode()),
        tagged(5, &snapshot.encode()),
    ]
}

fn node_key(seed: u8) -> NodeKey {
    NodeKey::new(SigningKey::from_bytes(&[seed; 32]), [seed ^ 0xFF; 32])
}

fn capabilities() -> Vec<NodeCapabilities> {
    vec![
        NodeCapabilities {
            interfaces: vec![
                Interface {
                    medium: Medium::WiFi,
                    bandwidth_bps: 50_000_000,
                    latency_ms: 5,
                    reliability: 250,
                    cost_per_byte: 2,
                    internet_gateway: true,
                },
                Interface {
                    medium: Medium::LoRa,
                    bandwidth_bps: 1_200,
                    latency_ms: 400,
                    reliability: 180,
                    cost_per_byte: 9,
                    internet_gateway: false,
                },
            ],
            compute: Some(Compute {
                cpu_class: CpuClass::High,
                memory_mb: 32_768,
                mhr_byte: true,
                wasm: true,
                cost_per_million_cycles: 40,
                functions: vec![OfferedFunction {
                    name: "embed".into(),
                    description: "sentence embeddings".into(),
                    cost: CostStructure::PerInvocation {
                        per_call: 500,
                        max_input: 1 << 20,
                    },
                    max_concurrent: 4,
                }],
            }),
            storage: Some(Storage {
                available_bytes: 100 << 30,
                class: StorageClass::Ssd,
                cost_per_byte_day: 1,
                max_object_size: 64 << 20,
                serves_content: true,
            }),
            services: Services {
                pubsub: true,
                dht: true,
                naming: false,
            },
            availability: Availability::Scheduled(vec![DailyWindow {
                start_minute: 1_380,
                duration_minutes: 600,
            }]),
        },
        NodeCapabilities {
            interfaces: vec![],
            compute: None,
            storage: None,
            services: Services::default(),
            availability: Availability::AlwaysOn,
        },
    ]
}

fn adverts() -> Vec<mehr_market::CapabilityAdvert> {
    capabilities()
        .iter()
        .enumerate()
        .map(|(i, caps)| {
            caps.sign(&node_key(0x90 + i as u8), 7 + i as u64, 5_400)
                .expect("signs")
        })
        .collect()
}

struct Negotiation {
    consumer: NodeKey,
    provider: NodeKey,
    request: Request,
}

fn negotiation() -> Negotiation {
    let consumer = node_key(0xA1);
    let provider = node_key(0xA2);
    let request = Request {
        consumer: consumer.node_id(),
        provider: provider.node_id(),
        capability: Capability::Compute(ComputeTarget::Function(FunctionId::of("embed"))),
        cost_cap: CostStructure::PerInvocation {
            per_call: 600,
            max_input: 65_536,
        },
        duration_seconds: 600,
        channel: ChannelId([9; 16]),
        proof: ProofMethod::ResultHash,
        privacy: Privacy::None,
        nonce: 7,
    };
    Negotiation {
        consumer,
        provider,
        request,
    }
}

/// The agreement records of one negotiation, and the stored agreement at each step.
fn negotiated() -> (Vec<MarketMessage>, Vec<Vec<u8>>) {
    let Negotiation {
        consumer,
        provider,
        request,
    } = negotiation();
    let (mut mine, signed_request) =
        Agreement::propose(&consumer, request, 1_000).expect("proposes");
    let mut stored = vec![mine.to_bytes()];
    let mut theirs = Agreement::receive_request(
        signed_request.clone(),
        &consumer.peer_key(),
        provider.node_id(),
        1_050,
    )
    .expect("receives");
    let terms = OfferTerms::new(theirs.request().body(), request.cost_cap);
    let offer = theirs.make_offer(&provider, terms, 1_100).expect("offers");
    mine.receive_offer(offer.clone(), &provider.peer_key(), 1_150)
        .expect("takes the offer");
    stored.push(mine.to_bytes());
    let acceptance = mine.accept(&consumer, 1_200).expect("accepts");
    stored.push(mine.to_bytes());
    theirs
        .receive_acceptance(acceptance.clone(), &consumer.peer_key(), 1_250)
        .expect("activates");
    stored.push(theirs.to_bytes());
    let cancel = mine
        .cancel(&consumer, CancelReason::Requested)
        .expect("cancels");
    stored.push(mine.to_bytes());
    let mut refused = Agreement::receive_request(
        signed_request.clone(),
        &consumer.peer_key(),
        provider.node_id(),
        1_300,
    )
    .expect("receives");
    let rejection = refused
        .reject(&provider, RejectReason::Busy)
        .expect("rejects");
    stored.push(refused.to_bytes());
    let messages = vec![
        MarketMessage::Request(signed_request),
        MarketMessage::Offer(offer),
        MarketMessage::Acceptance(acceptance),
        MarketMessage::Cancel(cancel),
        MarketMessage::Rejection(rejection),
    ];
    (messages, stored)
}

fn market_messages() -> Vec<Vec<u8>> {
    let (mut messages, _) = negotiated();
    let key = node_key(0xB1);
    let agreement_id = mehr_market::agreement::AgreementId([0xB2; 32]);
    let adverts = adverts();
    messages.extend([
        MarketMessage::Advert(adverts[0].clone()),
        MarketMessage::Summaries(vec![
            CapabilitySummary::aggregate(CapabilityKind::Storage, [(Some(3), 1), (Some(9), 2)])
                .expect("aggregates"),
            CapabilitySummary::aggregate(CapabilityKind::Relay, [(None, 4)]).expect("aggregates"),
        ]),
        MarketMessage::Pull(PullRequest {
            nonce: 77,
            filter: Filter::function("embed", Some(1_000)),
            max_hops: 4,
            forward: true,
            limit: 3,
        }),
        MarketMessage::PullAnswer(PullAnswer {
            nonce: 77,
            entries: vec![PullEntry {
                public_key: node_key(0x90).public_key(),
                hops: 2,
                path_cost: 40,
                age_seconds: 300,
                advert: adverts[0].clone(),
            }],
        }),
        MarketMessage::Ping(
            SignedPing::sign(
                Ping {
                    agreement_id,
                    nonce: 3,
                    signer: key.node_id(),
                },
                &key,
            )
            .expect("signs"),
        ),
        MarketMessage::Pong(
            SignedPong::sign(
                Pong {
                    agreement_id,
                    nonce: 3,
                    signer: key.node_id(),
                },
                &key,
            )
            .expect("signs"),
        ),
        MarketMessage::Receipt(
            DeliveryReceipt::sign(
                Receipt {
                    packet_hash: [0xB3; 32],
                    signer: key.node_id(),
                },
                &key,
            )
            .expect("signs"),
        ),
        MarketMessage::ComputeResult(
            SignedComputeResult::sign(
                ComputeResult {
                    agreement_id,
                    job_hash: [0xB4; 32],
                    output_hash: [0xB5; 32],
                    proof_system: ProofSystem::RiscZero,
                    proof: vec![0xB6; 48],
                    signer: key.node_id(),
                },
                &key,
            )
            .expect("signs"),
        ),
    ]);
    messages.iter().map(MarketMessage::encode).collect()
}

fn beacons() -> Vec<Vec<u8>> {
    let beacon = PresenceBeacon {
        beacon_id: [0xC1; 16],
        caps: 0x00A5,
        cost_tier: 2,
        load: 90,
    };
    let summary = CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(5), 2), (Some(8), 4)])
        .expect("aggregates");
    vec![beacon.to_bytes().to_vec(), summary.to_bytes().to_vec()]
}

fn agreements() -> Vec<Vec<u8>> {
    negotiated().1
}

fn storage_proofs() -> Vec<Vec<u8>> {
    let object: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let mut hashes = Vec::new();
    let mut chunks = Vec::new();
    let mut builder = ObjectBuilder::new();
    let mut keep = |c: mehr_storage::Chunk<'_>| {
        hashes.push(c.hash);
        chunks.push(c.bytes.to_vec());
        Ok::<(), std::convert::Infallible>(())
    };
    builder.update(&object, &mut keep).expect("infallible");
    let built = builder.finish(&mut keep).expect("infallible");
    let challenge = Challenge {
        object: built.id,
        nonce: [0xD1; 32],
    };
    let selection = challenge.select(built.length).expect("non-empty");
    let index = selection.chunk as usize;
    let path = chunk_path(&hashes, selection.chunk).expect("in range");
    let proof = prove(&challenge, built.length, &chunks[index], &path).expect("proves");
    let length = built.length.to_le_bytes();
    let tagged = |tag: u8, bytes: &[u8]| [&[tag][..], &length[..], bytes].concat();
    vec![
        tagged(0, &challenge.encode()),
        tagged(1, &proof.encode()),
        tagged(2, &path.encode()),
    ]
}

fn manifests() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, m, piece, length) in [(2u8, 1u8, 64u32, 1_000usize), (4, 2, 4_096, 20_000)] {
        let params = ErasureParams::new(k, m, piece).expect("valid");
        let mut encoder = ErasureEncoder::new(params).expect("valid");
        let object = vec![0xE1; length];
        encoder
            .update(&object, |_| Ok::<(), ErasureError>(()))
            .expect("encodes");
        let manifest = encoder
            .finish(|_| Ok::<(), ErasureError>(()))
            .expect("encodes");
        out.push(manifest.encode());
        out.push(manifest.shards()[0].encode().to_vec());
    }
    out
}

/// Each segment-protocol packet alone, then a whole exchange as the target reads it (a length
/// byte before each packet): a two-segment message, an Ack for the target's sender, a Query.
fn segment_packets() -> Vec<Vec<u8>> {
    let packets = [
        SegmentPacket::Segment {
            msg: 9,
            index: 0,
            count: 2,
            bytes: vec![0xD1; 100],
        },
        SegmentPacket::Segment {
            msg: 9,
            index: 1,
            count: 2,
            bytes: vec![0xD2; 40],
        },
        SegmentPacket::Ack {
            msg: 1,
            next: 2,
            missing: vec![3],
        },
        SegmentPacket::Query { msg: 9 },
        SegmentPacket::Abort {
            msg: 9,
            reason: AbortReason::Busy,
        },
    ];
    let mut out: Vec<Vec<u8>> = packets.iter().map(SegmentPacket::encode).collect();
    let mut exchange = Vec::new();
    for packet in &packets {
        let bytes = packet.encode();
        exchange.push(u8::try_from(bytes.len()).expect("under 256 bytes"));
        exchange.extend_from_slice(&bytes);
    }
    out.push(exchange);
    out
}

/// Every remote-storage request sealed by the target's consumer for its provider, and the
/// replies (type byte first).
fn storage_remotes() -> Vec<Vec<u8>> {
    let keys = crate::storage::remote_keys();
    let root = ObjectId::from_bytes([0xE1; 32]);
    let requests = [
        remote::Request::Offer {
            root,
            length: 5_000,
            expires_unix_s: 1_800_000_000,
            price_per_byte_day_umhr: 3,
        },
        remote::Request::Chunks {
            root,
            first: 0,
            count: 1,
            bytes: vec![0xE2; 300],
        },
        remote::Request::Challenge(Challenge {
            object: root,
            nonce: [0xE3; 32],
        }),
        remote::Request::Fetch {
            root,
            first: 1,
            count: 2,
        },
        remote::Request::FetchHashes {
            root,
            first: 0,
            count: 16,
        },
        remote::Request::Delete { root },
    ];
    let mut messages: Vec<(u8, Vec<u8>)> = requests
        .iter()
        .map(|request| (request.kind(), request.encode()))
        .collect();
    for reply in [
        remote::Reply::Ok(vec![1]),
        remote::Reply::Error(remote::ErrorCode::NotHeld, "no such shard".into()),
    ] {
        messages.push((remote::kinds::REPLY, reply.encode()));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(n, (kind, payload))| {
            let mut seed = vec![kind];
            seed.extend(remote::seal(
                kind,
                &keys.provider.hash(),
                &keys.consumer.hash(),
                n as u64,
                &payload,
                |digest| keys.consumer.sign(digest),
            ));
            seed
        })
        .collect()
}

/// One message of every market control type, the selector byte first (its index in
/// `control::kinds::ALL`); jobs are signed by the target's own consumer key.
fn market_controls() -> Vec<Vec<u8>> {
    let selector = |kind: u8| {
        control::kinds::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("a market kind") as u8
    };
    let tagged = |kind: u8, body: &[u8]| {
        let mut seed = vec![selector(kind)];
        seed.extend_from_slice(body);
        seed
    };
    let (records, _) = negotiated();
    let mut out: Vec<Vec<u8>> = records
        .iter()
        .map(|record| tagged(control::kinds::RECORD, &record.encode()))
        .collect();
    let adverts = adverts();
    let advert = MarketMessage::Advert(adverts[0].clone()).encode();
    out.push(tagged(
        control::kinds::GOSSIP,
        &control::GossipFrame::encode(adverts[0].node_id(), &advert),
    ));
    out.push(tagged(control::kinds::BEACON, &beacons()[0]));
    let signing = SigningKey::from_bytes(&[0x81; 32]);
    let consumer = NodeKey::new(signing.clone(), [0x82; 32]);
    let job = control::Job {
        agreement_id: mehr_market::agreement::AgreementId([0xF1; 32]),
        consumer: consumer.node_id(),
        nonce: 5,
        deadline_ms: 2_000,
        function: "embed".into(),
        input: b"fuzz me".to_vec(),
        trace: None,
    };
    let traced = control::Job {
        trace: Some(control::TraceContext {
            trace_id: [0xF2; 16],
            span_id: [0xF3; 8],
            flags: 1,
        }),
        ..job.clone()
    };
    out.push(tagged(
        control::kinds::JOB,
        control::SignedJob::sign(job, &signing).as_bytes(),
    ));
    out.push(tagged(
        control::kinds::JOB_STREAMED,
        control::SignedJob::sign(traced, &signing).as_bytes(),
    ));
    let result = SignedComputeResult::sign(
        ComputeResult {
            agreement_id: mehr_market::agreement::AgreementId([0xF1; 32]),
            job_hash: [0xF4; 32],
            output_hash: *blake3::hash(b"output").as_bytes(),
            proof_system: ProofSystem::None,
            proof: Vec::new(),
            signer: node_key(0xF5).node_id(),
        },
        &node_key(0xF5),
    )
    .expect("signs");
    for result in [
        control::JobResult::Done {
            job_hash: [0xF4; 32],
            result,
            output: b"output".to_vec(),
        },
        control::JobResult::Failed {
            job_hash: [0xF4; 32],
            reason: "no such function".into(),
        },
    ] {
        out.push(tagged(control::kinds::JOB_RESULT, &result.encode()));
    }
    out.push(tagged(
        control::kinds::JOB_PARTIAL,
        &control::JobPartial {
            job_hash: [0xF4; 32],
            seq: 0,
            bytes: b"out".to_vec(),
        }
        .encode(),
    ));
    out
}
