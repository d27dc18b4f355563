//! VRF prove/verify and ledger merge cost (channel updates: mehrd's `channel_update` bench,
//! which adds the durable write).
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;

use mehr_ledger::channel::{ChannelBody, Deposits, LotteryTerms};
use mehr_ledger::ledger::{
    CompactionParams, Ledger, SettlementKind, SettlementRecord, Snapshot, sign_settlement,
};
use mehr_ledger::lottery::{VrfProver, VrfVerifier, WinProbability, lottery_input};
use mehr_ledger::{ChannelId, NodeId, Party};

fn vrf(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let prover = VrfProver::for_identity(&key).expect("prover");
    let verifier = VrfVerifier::new(&prover.public_key()).expect("verifier");
    let alpha = lottery_input(&ChannelId([3; 16]), 9, WinProbability::MAX, &[5; 32]);
    let (proof, _) = prover.prove(&alpha).expect("prove");
    let mut group = c.benchmark_group("vrf");
    group.throughput(Throughput::Elements(1));
    group.bench_function("prove", |bench| {
        bench.iter(|| prover.prove(black_box(&alpha)))
    });
    group.bench_function("verify", |bench| {
        bench.iter(|| verifier.verify(black_box(&alpha), black_box(&proof)))
    });
    group.finish();
}

fn records(n: usize) -> Vec<SettlementRecord> {
    let ka = SigningKey::from_bytes(&[1; 32]);
    let kb = SigningKey::from_bytes(&[2; 32]);
    (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let body = ChannelBody::opening(
                ChannelId(id),
                NodeId([(i % 200) as u8; 16]),
                NodeId([200 + (i % 50) as u8; 16]),
                Deposits {
                    a: 1_000_000,
                    b: 1_000,
                },
                LotteryTerms::initial(),
            )
            .pay(Party::A, 1 + i as u64 % 1_000)
            .expect("pay");
            let kind = SettlementKind::Checkpoint;
            SettlementRecord {
                body,
                kind,
                sig_a: sign_settlement(&body, kind, &ka),
                sig_b: sign_settlement(&body, kind, &kb),
            }
        })
        .collect()
}

fn ledger_merge(c: &mut Criterion) {
    const N: usize = 100_000;
    let all = records(N);
    let genesis = Snapshot::genesis((0..=255u8).map(|i| (NodeId([i; 16]), 10_000_000)).collect());
    // Two partitions with half the records each, overlapping by a tenth.
    let mut left = Ledger::new(genesis.clone());
    let mut right = Ledger::new(genesis);
    for (i, r) in all.iter().enumerate() {
        if i % 2 == 0 || i % 10 == 1 {
            left.join_verified(*r);
        }
        if i % 2 == 1 {
            right.join_verified(*r);
        }
    }
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("merge_100k_records", |bench| {
        bench.iter_batched(
            || left.clone(),
            |mut l| {
                l.merge(&right);
                black_box(l.record_count())
            },
            BatchSize::LargeInput,
        )
    });
    let mut merged = left.clone();
    merged.merge(&right);
    group.bench_function("derive_balances_100k_channels", |bench| {
        bench.iter(|| black_box(merged.accounts().len()))
    });
    group.finish();
}

/// `n` settlement records of `n` channels among `n / 20` nodes, each with payments both ways
/// (a share of the pairs pay each other, so minting clusters form), unsigned: compaction never
/// checks signatures (records are verified when they enter the ledger).
fn unsigned_records(n: usize) -> Vec<SettlementRecord> {
    let nodes = (n / 20).max(2) as u64;
    let node = |k: u64| {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&k.to_le_bytes());
        id[8] = 0xa5;
        NodeId(id)
    };
    let zero = ed25519_dalek::Signature::from_bytes(&[0; 64]);
    (0..n as u64)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_le_bytes());
            let a = i % nodes;
            let b = (i * 7 + 1) % nodes;
            let b = if a == b { (b + 1) % nodes } else { b };
            let mut body = ChannelBody::opening(
                ChannelId(id),
                node(a),
                node(b),
                Deposits {
                    a: 1_000_000,
                    b: 1_000_000,
                },
                LotteryTerms::initial(),
            )
            .pay(Party::A, 1 + i % 10_000)
            .expect("pay");
            if i % 3 == 0 {
                body = body.pay(Party::B, 1 + i % 4_000).expect("pay back");
            }
            SettlementRecord {
                body,
                kind: SettlementKind::Checkpoint,
                sig_a: zero,
                sig_b: zero,
            }
        })
        .collect()
}

/// Epoch compaction (fold, burn, clusters, mint, snapshot root) of 100 k settlement records,
/// and of 1 M with `MEHR_BENCH_1M=1`; prints each snapshot's encoded size.
fn compaction(c: &mut Criterion) {
    let mut sizes = vec![100_000usize];
    if std::env::var_os("MEHR_BENCH_1M").is_some() {
        sizes.push(1_000_000);
    }
    let mut group = c.benchmark_group("epoch");
    group.sample_size(10);
    for n in sizes {
        let nodes = (n / 20).max(2) as u64;
        let genesis = Snapshot::genesis(
            (0..nodes)
                .map(|k| {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&k.to_le_bytes());
                    id[8] = 0xa5;
                    (NodeId(id), 1_000_000_000)
                })
                .collect(),
        );
        let mut ledger = Ledger::new(genesis);
        for r in unsigned_records(n) {
            ledger.join_verified(r);
        }
        let params = CompactionParams {
            epochs_per_year: 52_596,
            active_trusted_nodes: nodes,
            clusters: ledger.payment_clusters(),
        };
        let snapshot = ledger.compact(&params);
        let encoded = snapshot.encode();
        eprintln!(
            "epoch/compact_{n}: snapshot {} bytes ({} accounts, {} channels), {:.1} bytes per record, minted {} μ",
            encoded.len(),
            snapshot.balances().len(),
            snapshot.channels().len(),
            encoded.len() as f64 / n as f64,
            snapshot.minted_total()
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("compact_{n}_records"), |bench| {
            bench.iter(|| {
                let params = CompactionParams {
                    epochs_per_year: 52_596,
                    active_trusted_nodes: nodes,
                    clusters: ledger.payment_clusters(),
                };
                black_box(ledger.compact(&params).root())
            })
        });
        group.bench_function(format!("encode_snapshot_{n}"), |bench| {
            bench.iter(|| black_box(snapshot.encode().len()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = vrf, ledger_merge, compaction
}
criterion_main!(benches);
