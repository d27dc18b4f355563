//! VRF prove/verify and ledger merge cost (channel updates: mehrd's `channel_update` bench,
//! which adds the durable write).
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;

use mehr_ledger::channel::{ChannelBody, Deposits, LotteryTerms};
use mehr_ledger::ledger::{Ledger, SettlementKind, SettlementRecord, Snapshot, sign_settlement};
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

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = vrf, ledger_merge
}
criterion_main!(benches);
