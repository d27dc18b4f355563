//! Channel updates per second per core, durable write included (issue 4's target).
//!
//! An update's work is split between two nodes, each on its own machine: the payer signs the
//! proposal and checks the ack (1 Ed25519 sign, 1 verify); the payee checks the proposal and
//! signs the ack. Each side then makes the new co-signed state durable before it answers, in
//! the ledger's batch commit (one synced RocksDB write for everything a batch of inputs
//! changed, up to 512 inputs). This program measures, in one run on one core: each side's
//! signature work (through `mehr_ledger::channel::Channel`, as the daemon calls it), and a
//! synced commit into a real store (`mehrd::store::Store`) of one channel record and of 64,
//! then adds them up per update.
//!
//! It also measures the market's durable payment queue (issue 17) against those figures: each
//! charge is one synced write of the agreement's dues record before anything is paid, and each
//! payment of an agreement's dues two more (marked in flight, then paid) around the channel
//! update; the queue merges the charges that arrive while a payment is under way into the next
//! payment. The network round trip to the provider is not included (it is the same for a
//! channel update made directly).
//!
//! `cargo bench -p mehrd --bench channel_update` (MEHR_BENCH_UPDATES sets the updates timed,
//! default 20 000).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use mehr_ledger::{
    NodeId,
    channel::{Channel, ChannelKeys, Deposits, LotteryTerms},
};
use mehrd::store::{Store, Table};
use rand::{SeedableRng, rngs::StdRng};

/// Bytes of one persisted channel record (peer identity, both signatures, the state body and
/// the payment bookkeeping come to less; the figure errs high).
const RECORD_BYTES: usize = 600;
/// The table the ledger keeps its channels in.
const CHANNELS: Table<Vec<u8>, Vec<u8>> = Table::new("ledger_channels");
/// The table the payment queue keeps each agreement's dues in.
const DUES: Table<Vec<u8>, Vec<u8>> = Table::new("ledger_dues");
/// Bytes of one dues record: provider (16), charged, paid, in flight (3 × 8), ended (1).
const DUES_BYTES: usize = 41;

fn main() {
    let updates: u32 = std::env::var("MEHR_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (payer, payee) = sides(updates);
    let temp = tempfile::tempdir().expect("temp dir");
    let store = Store::open(temp.path()).expect("store");
    let single = commit_time(&store, 1, 500);
    let batched = commit_time(&store, 64, 100);

    println!("channel update, per side, one core ({updates} updates):");
    println!(
        "  payer: sign proposal + verify ack    {:>8.1} µs",
        micros(payer)
    );
    println!(
        "  payee: verify proposal + sign ack    {:>8.1} µs",
        micros(payee)
    );
    println!(
        "  synced commit of 1 record             {:>8.1} µs",
        micros(single)
    );
    println!(
        "  synced commit of 64 records, each     {:>8.1} µs",
        micros(batched) / 64.0
    );
    for (label, write) in [
        ("a commit per update", micros(single)),
        ("64 updates per commit", micros(batched) / 64.0),
    ] {
        let slower = micros(payer).max(micros(payee)) + write;
        println!(
            "  updates/s per core, slower side, {label:<22} {:>8.0}",
            1e6 / slower
        );
    }

    // The durable payment queue: a dues write per charge, two per payment, and the payer's
    // side of the channel update with its own commit (a lone payment batches with nothing).
    let dues_write = micros(dues_write_time(&store, 2_000));
    let update = micros(payer) + micros(single);
    println!("durable payment queue, one core (anchor: a channel update alone, {update:.1} µs):");
    println!("  synced write of a dues record         {dues_write:>8.1} µs");
    println!(
        "  charges recorded/s                    {:>8.0}",
        1e6 / dues_write
    );
    for merged in [1u32, 8, 64] {
        let per_payment = f64::from(merged) * dues_write + 2.0 * dues_write + update;
        println!(
            "  charges paid/s, {merged:>2} merged per payment  {:>8.0}  ({:.2}× the direct updates/s)",
            f64::from(merged) * 1e6 / per_payment,
            f64::from(merged) * update / per_payment
        );
    }
}

/// The mean time of a synced write of one dues record, over `rounds` writes.
fn dues_write_time(store: &Store, rounds: u32) -> Duration {
    let value = vec![0x3c; DUES_BYTES];
    let start = Instant::now();
    for round in 0..rounds {
        let key = [[7u8; 28].as_slice(), &round.to_le_bytes()].concat();
        store.put(DUES, &key, &value).expect("dues write");
    }
    start.elapsed() / rounds
}

/// The mean time of each side's part of an update, over `updates` updates.
fn sides(updates: u32) -> (Duration, Duration) {
    let ka = SigningKey::from_bytes(&[1; 32]);
    let kb = SigningKey::from_bytes(&[2; 32]);
    let keys = ChannelKeys {
        a: ka.verifying_key(),
        b: kb.verifying_key(),
    };
    let pending = Channel::propose_open(
        &mut StdRng::seed_from_u64(1),
        NodeId([1; 16]),
        NodeId([2; 16]),
        keys,
        Deposits {
            a: u64::MAX / 4,
            b: 0,
        },
        LotteryTerms::initial(),
        &ka,
    )
    .expect("open");
    let (mut b, accept) = Channel::accept_open(pending.proposal(), keys, &kb, 0).expect("accept");
    let mut a = pending.complete(&accept, 0).expect("complete");
    let (mut payer, mut payee) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..updates {
        let start = Instant::now();
        let proposal = a.propose_payment(1, &ka).expect("propose");
        payer += start.elapsed();
        let start = Instant::now();
        let ack = b.receive_update(&proposal, &kb, 0).expect("accept");
        payee += start.elapsed();
        let start = Instant::now();
        black_box(a.receive_ack(&ack, 0).expect("ack").body.seq);
        payer += start.elapsed();
    }
    (payer / updates, payee / updates)
}

/// The mean time of a synced commit of `records` channel records, over `rounds` commits.
fn commit_time(store: &Store, records: usize, rounds: u32) -> Duration {
    let value = vec![0x5a; RECORD_BYTES];
    let start = Instant::now();
    for round in 0..rounds {
        let mut batch = store.batch();
        for record in 0..records {
            let key = [round.to_le_bytes(), (record as u32).to_le_bytes()].concat();
            batch.put(CHANNELS, &key, &value);
        }
        store.commit(batch).expect("commit");
    }
    start.elapsed() / rounds
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
