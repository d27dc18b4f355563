//! Per-packet costs: SINGLE encryption and decryption, announce validation, HDLC decoding,
//! and forwarding one packet through a transport router.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mehr_transport::announce::Announce;
use mehr_transport::destination::DestinationName;
use mehr_transport::framing::hdlc;
use mehr_transport::identity::PrivateIdentity;
use mehr_transport::packet::{Context, DestinationType, Packet, PacketType, TransportType};
use mehr_transport::router::{InterfaceConfig, InterfaceId, Router, RouterConfig, WallClock};
use mehr_transport::{Timestamp, packet::ENCRYPTED_MDU};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn single_encryption(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let target = PrivateIdentity::generate(&mut rng);
    let plaintext = vec![0x42u8; ENCRYPTED_MDU];
    let ciphertext = target.public().encrypt(&plaintext, None, &mut rng).unwrap();
    let mut group = c.benchmark_group("single_destination");
    group.throughput(Throughput::Bytes(plaintext.len() as u64));
    group.bench_function("encrypt_383B", |b| {
        b.iter(|| {
            target
                .public()
                .encrypt(black_box(&plaintext), None, &mut rng)
                .unwrap()
        })
    });
    group.bench_function("decrypt_383B", |b| {
        b.iter(|| target.decrypt(black_box(&ciphertext)).unwrap())
    });
    group.finish();
}

fn announce_validation(c: &mut Criterion) {
    let origin = PrivateIdentity::from_private_key(&[3; 64]);
    let announce = Announce::create(
        &origin,
        &DestinationName::mehr_node(),
        &[0x4E; 40],
        None,
        [1; 5],
        1_750_000_000,
    );
    let frame = announce.to_packet(false).encode();
    c.bench_function("announce_parse_and_validate", |b| {
        b.iter(|| Announce::from_packet(&Packet::parse(black_box(&frame)).unwrap()).unwrap())
    });
}

fn hdlc_decode(c: &mut Criterion) {
    // 100 packets of 500 bytes with bytes that need escaping.
    let packet: Vec<u8> = (0..500u32).map(|i| (i * 7 % 256) as u8).collect();
    let stream: Vec<u8> = (0..100).flat_map(|_| hdlc::encode(&packet)).collect();
    let mut group = c.benchmark_group("hdlc");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("decode_100x500B", |b| {
        b.iter(|| {
            let mut decoder = hdlc::Decoder::new(1024);
            let mut n = 0;
            decoder.push(black_box(&stream), |_| n += 1);
            n
        })
    });
    group.finish();
}

fn router_forward(c: &mut Criterion) {
    let clock = WallClock {
        at: Timestamp::ZERO,
        unix_secs: 1_750_000_000,
    };
    let mut router = Router::new(
        PrivateIdentity::from_private_key(&[1; 64]),
        RouterConfig::default(),
        clock,
        Box::new(StdRng::seed_from_u64(2)),
    );
    let toward_destination = InterfaceId(0);
    let toward_sender = InterfaceId(1);
    router.add_interface(toward_destination, InterfaceConfig::new(10_000_000));
    router.add_interface(toward_sender, InterfaceConfig::new(10_000_000));
    // The destination is two hops away behind another transport node.
    let origin = PrivateIdentity::from_private_key(&[2; 64]);
    let announce = Announce::create(
        &origin,
        &DestinationName::mehr_node(),
        b"",
        None,
        [1; 5],
        1_750_000_000,
    );
    let mut heard = announce.to_packet(false);
    heard.hops = 1;
    heard.transport_id = Some(mehr_transport::IdentityHash([9; 16]));
    heard.transport_type = TransportType::Transport;
    let now = Timestamp::from_secs(1);
    router.handle_inbound(toward_destination, &heard.encode(), now);
    router.drain_actions().for_each(drop);
    let destination = announce.destination;
    let transport_id = router.transport_id();

    let frame_for = |counter: u64| {
        let mut data = vec![0u8; 300];
        data[..8].copy_from_slice(&counter.to_le_bytes());
        let mut p = Packet::new(
            PacketType::Data,
            DestinationType::Single,
            destination,
            Context::NONE,
            data,
        );
        p.transport_id = Some(transport_id);
        p.transport_type = TransportType::Transport;
        p.encode()
    };
    // Check once that the benchmarked path really forwards.
    router.handle_inbound(toward_sender, &frame_for(0), now);
    let forwarded = router.drain_actions().any(|a| {
        matches!(a, mehr_transport::router::Action::Transmit { interface, .. } if interface == toward_destination)
    });
    assert!(forwarded, "benchmark setup: the packet was not forwarded");

    let mut counter = 0u64;
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(1));
    group.bench_function("forward_one_packet", |b| {
        b.iter_batched(
            || {
                counter += 1;
                frame_for(counter)
            },
            |frame| {
                router.handle_inbound(toward_sender, &frame, now);
                router.drain_actions().count()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    single_encryption,
    announce_validation,
    hdlc_decode,
    router_forward
);
criterion_main!(benches);
