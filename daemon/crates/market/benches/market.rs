//! Benchmarks: advert signing/verification, discovery queries on a full table, and one
//! discovery in the simulated 50-node mesh (CPU time of the pure logic).
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

#[path = "../tests/sim/mod.rs"]
mod sim;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use mehr_market::capabilities::{
    Availability, Compute, CpuClass, Interface, Medium, OfferedFunction, Services,
};
use mehr_market::discovery::{Filter, NoReputation, Origin, Query};
use mehr_market::{CapabilityAdvert, CostStructure, DiscoveryTable, NodeCapabilities, NodeKey};

fn key(i: u32) -> NodeKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    NodeKey::new(SigningKey::from_bytes(&seed), [7; 32])
}

fn caps(price: u64) -> NodeCapabilities {
    NodeCapabilities {
        interfaces: vec![Interface {
            medium: Medium::WiFi,
            bandwidth_bps: 10_000_000,
            latency_ms: 5,
            reliability: 200,
            cost_per_byte: 2,
            internet_gateway: false,
        }],
        compute: Some(Compute {
            cpu_class: CpuClass::High,
            memory_mb: 8_192,
            mhr_byte: false,
            wasm: true,
            cost_per_million_cycles: 30,
            functions: vec![OfferedFunction {
                name: "embed".into(),
                description: "sentence embeddings".into(),
                cost: CostStructure::PerInvocation {
                    per_call: price,
                    max_input: 65_536,
                },
                max_concurrent: 4,
            }],
        }),
        storage: None,
        services: Services::default(),
        availability: Availability::AlwaysOn,
    }
}

fn adverts(c: &mut Criterion) {
    let k = key(1);
    let advert = caps(50).sign(&k, 1, 600).unwrap();
    let peer = k.peer_key();
    c.bench_function("advert sign", |b| {
        b.iter(|| caps(50).sign(&k, 2, 600).unwrap())
    });
    c.bench_function("advert decode+verify", |b| {
        b.iter(|| CapabilityAdvert::decode_verified(advert.as_bytes(), &peer).unwrap())
    });
}

fn queries(c: &mut Criterion) {
    let mut table = DiscoveryTable::new(key(0).node_id());
    for i in 1..=1_000u32 {
        let k = key(i);
        let origin = Origin {
            ring: (i % 4) as u8,
            hops: (i % 7 + 1) as u8,
            path_cost: u64::from(i % 13),
            via: key(i % 5 + 1).node_id(),
        };
        let advert = caps(u64::from(i % 200) + 1).sign(&k, 1, 3_600).unwrap();
        table
            .insert_advert(advert, &k.peer_key(), origin, 0, 0)
            .unwrap();
    }
    let q = Query {
        want: 5,
        ..Query::new(Filter::function("embed", Some(100)))
    };
    c.bench_function("query 1000-advert table", |b| {
        b.iter(|| table.query(&q, &NoReputation, 1_000))
    });
}

fn mesh(c: &mut Criterion) {
    let mut wifi = sim::Mesh::build(50, 8, sim::WIFI, 2024);
    wifi.run_gossip(0, 1);
    c.bench_function("mesh discovery from node 18, 50-node WiFi", |b| {
        b.iter_batched(
            || wifi.clone(),
            |mut m| m.discover(18, 80),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("mesh gossip hour, 50-node LoRa", |b| {
        b.iter_batched(
            || sim::Mesh::build(50, 8, sim::LORA, 2024),
            |mut m| m.run_gossip(0, 1),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, adverts, queries, mesh);
criterion_main!(benches);
