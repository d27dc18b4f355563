//! Convergence properties of the CRDT ledger.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::burn::burn_of;
use crate::channel::{ChannelBody, ChannelKeys, Deposits, LotteryTerms};
use crate::ids::{ChannelId, NodeId, Party};

const NODES: usize = 5;

fn key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

fn node(i: usize) -> NodeId {
    NodeId([i as u8 + 0x10; 16])
}

fn keys_for(a: usize, b: usize) -> ChannelKeys {
    ChannelKeys {
        a: key(a).verifying_key(),
        b: key(b).verifying_key(),
    }
}

fn genesis() -> Snapshot {
    Snapshot::genesis((0..NODES).map(|i| (node(i), 50_000)).collect())
}

fn co_sign(body: ChannelBody, kind: SettlementKind, a: usize, b: usize) -> SettlementRecord {
    SettlementRecord {
        body,
        kind,
        sig_a: sign_settlement(&body, kind, &key(a)),
        sig_b: sign_settlement(&body, kind, &key(b)),
    }
}

/// One channel's history: parties, deposits, payments; every state is settled as a
/// checkpoint, the last one optionally as a close, and optionally one equivocating twin.
#[derive(Clone, Debug)]
struct ChannelSpec {
    a: usize,
    b: usize,
    deposit_a: u64,
    deposit_b: u64,
    payments: Vec<(bool, u64)>,
    close: u8,
    equivocate: bool,
}

fn arb_channel() -> impl Strategy<Value = ChannelSpec> {
    (
        0..NODES,
        1..NODES,
        0u64..30_000,
        0u64..30_000,
        proptest::collection::vec((any::<bool>(), 1u64..5_000), 0..6),
        0u8..3,
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(a, off, deposit_a, deposit_b, payments, close, equivocate)| ChannelSpec {
                a,
                b: (a + off) % NODES,
                deposit_a,
                deposit_b,
                payments,
                close,
                equivocate,
            },
        )
}

fn records_of(index: usize, spec: &ChannelSpec) -> Vec<(SettlementRecord, ChannelKeys)> {
    let keys = keys_for(spec.a, spec.b);
    let mut body = ChannelBody::opening(
        ChannelId([index as u8; 16]),
        node(spec.a),
        node(spec.b),
        Deposits {
            a: spec.deposit_a,
            b: spec.deposit_b,
        },
        LotteryTerms::initial(),
    );
    let mut out = vec![(
        co_sign(body, SettlementKind::Checkpoint, spec.a, spec.b),
        keys,
    )];
    for (a_pays, amount) in &spec.payments {
        let payer = if *a_pays { Party::A } else { Party::B };
        if let Ok(next) = body.pay(payer, *amount) {
            body = next;
            out.push((
                co_sign(body, SettlementKind::Checkpoint, spec.a, spec.b),
                keys,
            ));
        }
    }
    if spec.equivocate
        && let Ok(mut twin) = body.pay(Party::A, 1).or_else(|_| body.pay(Party::B, 1))
    {
        twin.seq = body.seq;
        out.push((
            co_sign(twin, SettlementKind::Checkpoint, spec.a, spec.b),
            keys,
        ));
    }
    match spec.close {
        1 => out.push((
            co_sign(body, SettlementKind::CooperativeClose, spec.a, spec.b),
            keys,
        )),
        2 => {
            let state = crate::channel::ChannelState {
                body,
                sig_a: body.sign(&key(spec.a)),
                sig_b: body.sign(&key(spec.b)),
            };
            out.push((SettlementRecord::unilateral(&state), keys));
        }
        _ => {}
    }
    out
}

fn all_records(specs: &[ChannelSpec]) -> Vec<(SettlementRecord, ChannelKeys)> {
    specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| records_of(i, s))
        .collect()
}

fn replica(records: &[(SettlementRecord, ChannelKeys)]) -> Ledger {
    let mut l = Ledger::new(genesis());
    for (r, k) in records {
        l.insert(*r, k).unwrap();
    }
    l
}

/// Splits the records over `n` replicas (each record reaches at least one), each in a
/// shuffled order.
fn partition(
    records: &[(SettlementRecord, ChannelKeys)],
    n: usize,
    rng: &mut StdRng,
) -> Vec<Vec<(SettlementRecord, ChannelKeys)>> {
    let mut parts = vec![Vec::new(); n];
    for r in records {
        let home = rng.gen_range(0..n);
        for (i, part) in parts.iter_mut().enumerate() {
            if i == home || rng.gen_bool(0.3) {
                part.push(*r);
            }
        }
    }
    for part in &mut parts {
        part.shuffle(rng);
    }
    parts
}

fn merge_in_order(replicas: &[Ledger], order: &[usize]) -> Ledger {
    let mut acc = replicas[order[0]].clone();
    for i in &order[1..] {
        acc.merge(&replicas[*i]);
    }
    acc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_commutative_associative_idempotent(
        specs in proptest::collection::vec(arb_channel(), 1..6),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let records = all_records(&specs);
        let parts = partition(&records, 3, &mut rng);
        let r: Vec<Ledger> = parts.iter().map(|p| replica(p)).collect();

        // Commutative.
        let mut ab = r[0].clone(); ab.merge(&r[1]);
        let mut ba = r[1].clone(); ba.merge(&r[0]);
        prop_assert_eq!(&ab, &ba);
        // Associative.
        let mut ab_c = ab.clone(); ab_c.merge(&r[2]);
        let mut bc = r[1].clone(); bc.merge(&r[2]);
        let mut a_bc = r[0].clone(); a_bc.merge(&bc);
        prop_assert_eq!(&ab_c, &a_bc);
        // Idempotent.
        let mut twice = ab_c.clone(); twice.merge(&ab_c);
        prop_assert_eq!(&twice, &ab_c);
        // Every merge order converges to the state of a replica that saw everything in order.
        let everything = replica(&records);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let merged = merge_in_order(&r, &order);
            prop_assert_eq!(&merged, &everything);
            prop_assert_eq!(merged.accounts(), everything.accounts());
        }
    }

    #[test]
    fn derived_balances_conserve_value_and_flag_overdrafts(
        specs in proptest::collection::vec(arb_channel(), 1..6),
        seed in any::<u64>(),
    ) {
        let mut records = all_records(&specs);
        records.shuffle(&mut StdRng::seed_from_u64(seed));
        let ledger = replica(&records);
        let accounts = ledger.accounts();
        let total: i128 = accounts.values().map(|a| a.balance).sum();
        // Burned = burn of each channel's winning cumulative totals.
        let mut burned = 0i128;
        for (i, spec) in specs.iter().enumerate() {
            let key = ChannelKey { channel_id: ChannelId([i as u8; 16]), party_a: node(spec.a), party_b: node(spec.b) };
            let w = ledger.winner(&key).unwrap();
            burned += i128::from(burn_of(w.body.paid_a_to_b)) + i128::from(burn_of(w.body.paid_b_to_a));
        }
        prop_assert_eq!(total, 50_000 * NODES as i128 - burned);
        for (node, account) in &accounts {
            prop_assert_eq!(ledger.overdrafts().contains(node), account.free() < 0);
        }
        // Every valid record is kept whatever it does to balances.
        prop_assert!(ledger.record_count() >= specs.len());
    }

    #[test]
    fn partitions_that_compact_separately_converge_after_healing(
        specs in proptest::collection::vec(arb_channel(), 2..6),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let records = all_records(&specs);
        let parts = partition(&records, 2, &mut rng);
        let mut left = replica(&parts[0]);
        let right = replica(&parts[1]);
        // The left partition runs an epoch (no minting: no trusted active nodes).
        let snap = left.compact(&CompactionParams::default());
        prop_assert_eq!(snap.supply() as i128, snap.balances().values().sum::<i128>());
        left.adopt(snap);
        let before_heal = left.accounts();
        prop_assert_eq!(before_heal.iter().map(|(k, a)| (*k, a.balance)).collect::<BTreeMap<_, _>>(),
            replica(&parts[0]).accounts().iter().map(|(k, a)| (*k, a.balance)).collect::<BTreeMap<_, _>>());

        let mut lr = left.clone(); lr.merge(&right);
        let mut rl = right.clone(); rl.merge(&left);
        prop_assert_eq!(&lr, &rl);
        // Compaction is transparent: the healed balances equal those of a never-compacted
        // replica that saw everything. (Not for equivocated channels: there the snapshot
        // fixes which of the two co-signed twins was folded, and both parties are flagged.)
        let flat = replica(&records);
        if flat.equivocations().is_empty() {
            let balances = |l: &Ledger| l.accounts().into_iter().map(|(k, a)| (k, a.balance)).filter(|(_, b)| *b != 0).collect::<BTreeMap<_, _>>();
            prop_assert_eq!(balances(&lr), balances(&flat));
            prop_assert_eq!(lr.overdrafts(), flat.overdrafts());
        }
        // Folding into a snapshot never hides an equivocation while the records are kept.
        prop_assert_eq!(lr.equivocations(), flat.equivocations());
        // Pruning folded records changes nothing derived.
        let mut pruned = lr.clone();
        pruned.prune_folded();
        prop_assert_eq!(pruned.accounts(), lr.accounts());
    }
}

#[test]
fn one_balance_backing_two_channels_is_flagged_not_dropped() {
    let mut l = Ledger::new(Snapshot::genesis(BTreeMap::from([
        (node(0), 100),
        (node(1), 0),
    ])));
    for c in 0..2u8 {
        let body = ChannelBody::opening(
            ChannelId([c; 16]),
            node(0),
            node(1),
            Deposits { a: 100, b: 0 },
            LotteryTerms::initial(),
        );
        assert_eq!(
            l.insert(
                co_sign(body, SettlementKind::Checkpoint, 0, 1),
                &keys_for(0, 1)
            ),
            Ok(InsertOutcome::Applied)
        );
    }
    assert_eq!(l.record_count(), 2);
    assert_eq!(
        l.account(&node(0)),
        Account {
            balance: 100,
            escrowed: 200
        }
    );
    assert_eq!(
        l.overdrafts().into_iter().collect::<Vec<_>>(),
        vec![node(0)]
    );
}

#[test]
fn forged_and_colliding_records_cannot_touch_a_channel() {
    let mut l = Ledger::new(genesis());
    let body = ChannelBody::opening(
        ChannelId([1; 16]),
        node(0),
        node(1),
        Deposits { a: 1_000, b: 0 },
        LotteryTerms::initial(),
    );
    let good = co_sign(
        body.pay(Party::A, 100).unwrap(),
        SettlementKind::Checkpoint,
        0,
        1,
    );
    l.insert(good, &keys_for(0, 1)).unwrap();
    // Signed by the wrong key for B.
    let mut forged = co_sign(
        body.pay(Party::A, 900).unwrap(),
        SettlementKind::Checkpoint,
        0,
        2,
    );
    forged.body.seq = 50;
    assert!(matches!(
        l.insert(forged, &keys_for(0, 1)),
        Err(RecordError::BadSignature {
            party: Party::A,
            ..
        })
    ));
    // Two other nodes reuse the channel id: their record lives under their own key.
    let mut other = ChannelBody::opening(
        ChannelId([1; 16]),
        node(2),
        node(3),
        Deposits { a: 5, b: 0 },
        LotteryTerms::initial(),
    );
    other.seq = 99;
    l.insert(
        co_sign(other, SettlementKind::Checkpoint, 2, 3),
        &keys_for(2, 3),
    )
    .unwrap();
    let key = ChannelKey {
        channel_id: ChannelId([1; 16]),
        party_a: node(0),
        party_b: node(1),
    };
    assert_eq!(l.winner(&key), Some(&good));
    assert_eq!(l.account(&node(1)).balance, 50_000 + 98);
}

#[test]
fn late_records_apply_on_top_of_a_snapshot_without_double_counting() {
    let keys = keys_for(0, 1);
    let body0 = ChannelBody::opening(
        ChannelId([4; 16]),
        node(0),
        node(1),
        Deposits { a: 10_000, b: 0 },
        LotteryTerms::initial(),
    );
    let s1 = body0.pay(Party::A, 1_000).unwrap();
    let s2 = s1.pay(Party::A, 1_000).unwrap();
    let mut l = Ledger::new(genesis());
    l.insert(co_sign(s1, SettlementKind::Checkpoint, 0, 1), &keys)
        .unwrap();
    let snap = l.compact(&CompactionParams::default());
    assert_eq!(snap.balance(&node(1)), 50_000 + 980);
    l.adopt(snap);
    l.prune_folded();
    assert_eq!(l.record_count(), 0);
    // The same record again changes nothing; the next one adds only its difference.
    l.insert(co_sign(s1, SettlementKind::Checkpoint, 0, 1), &keys)
        .unwrap();
    assert_eq!(l.account(&node(1)).balance, 50_000 + 980);
    l.insert(co_sign(s2, SettlementKind::CooperativeClose, 0, 1), &keys)
        .unwrap();
    assert_eq!(
        l.account(&node(1)),
        Account {
            balance: 50_000 + 1_960,
            escrowed: 0
        }
    );
    assert_eq!(
        l.account(&node(0)),
        Account {
            balance: 48_000,
            escrowed: 0
        }
    );
}

#[test]
fn unilateral_close_keeps_escrow_until_released_by_a_later_epoch() {
    let keys = keys_for(0, 1);
    let body = ChannelBody::opening(
        ChannelId([5; 16]),
        node(0),
        node(1),
        Deposits { a: 1_000, b: 0 },
        LotteryTerms::initial(),
    )
    .pay(Party::A, 100)
    .unwrap();
    let state = crate::channel::ChannelState {
        body,
        sig_a: body.sign(&key(0)),
        sig_b: body.sign(&key(1)),
    };
    let mut l = Ledger::new(genesis());
    l.insert(SettlementRecord::unilateral(&state), &keys)
        .unwrap();
    assert_eq!(l.account(&node(0)).escrowed, 900);
    let e1 = l.compact(&CompactionParams::default());
    assert_eq!(
        e1.channels().values().next().unwrap().status,
        ChannelStatus::Closing { since_epoch: 1 }
    );
    l.adopt(e1);
    assert_eq!(l.account(&node(0)).escrowed, 900);
    let e2 = l.compact(&CompactionParams::default());
    assert_eq!(
        e2.channels().values().next().unwrap().status,
        ChannelStatus::Closed
    );
    l.adopt(e2);
    assert_eq!(
        l.account(&node(0)),
        Account {
            balance: 49_900,
            escrowed: 0
        }
    );
}

#[test]
fn compaction_mints_from_net_income_only() {
    let mut l = Ledger::new(genesis());
    // 0 → 1 pays 10 000 (1 earns 9 800 net); 2 ↔ 3 cycle 5 000 each way (both net −100).
    let b01 = ChannelBody::opening(
        ChannelId([1; 16]),
        node(0),
        node(1),
        Deposits { a: 20_000, b: 0 },
        LotteryTerms::initial(),
    )
    .pay(Party::A, 10_000)
    .unwrap();
    let b23 = ChannelBody::opening(
        ChannelId([2; 16]),
        node(2),
        node(3),
        Deposits {
            a: 10_000,
            b: 10_000,
        },
        LotteryTerms::initial(),
    )
    .pay(Party::A, 5_000)
    .unwrap()
    .pay(Party::B, 5_000)
    .unwrap();
    l.insert(
        co_sign(b01, SettlementKind::Checkpoint, 0, 1),
        &keys_for(0, 1),
    )
    .unwrap();
    l.insert(
        co_sign(b23, SettlementKind::Checkpoint, 2, 3),
        &keys_for(2, 3),
    )
    .unwrap();
    let params = CompactionParams {
        epochs_per_year: 52_600,
        active_trusted_nodes: 100,
        clusters: BTreeMap::new(),
    };
    let snap = l.compact(&params);
    assert_eq!(snap.minted_total(), 4_900);
    assert_eq!(snap.balance(&node(1)), 50_000 + 9_800 + 4_900);
    assert_eq!(snap.balance(&node(2)), 50_000 - 100);
    assert_eq!(snap.burned_total(), 200 + 100 + 100);
    assert_eq!(snap.supply(), 250_000 - 400 + 4_900);
    assert_eq!(snap.active_set(), vec![node(0), node(1), node(2), node(3)]);
    assert_eq!(snap.settlement_count(), 2);
    assert_eq!(Snapshot::decode(&snap.encode()).unwrap(), snap);
    // Clustering the payer with the payee removes the mint.
    let clustered = CompactionParams {
        clusters: BTreeMap::from([(node(0), 1), (node(1), 1)]),
        ..params
    };
    assert_eq!(l.compact(&clustered).minted_total(), 0);
}

#[test]
fn settlement_record_round_trips_and_rejects_garbage() {
    let body = ChannelBody::opening(
        ChannelId([1; 16]),
        node(0),
        node(1),
        Deposits { a: 7, b: 9 },
        LotteryTerms::initial(),
    );
    let r = co_sign(body, SettlementKind::CooperativeClose, 0, 1);
    let bytes = r.encode();
    assert_eq!(bytes.len(), SETTLEMENT_RECORD_LEN);
    assert_eq!(SettlementRecord::decode(&bytes).unwrap(), r);
    let mut bad = bytes;
    bad[104] = 3;
    assert!(SettlementRecord::decode(&bad).is_err());
    let mut rng = StdRng::seed_from_u64(3);
    for len in [0usize, 1, 232, 233, 234, 400] {
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = SettlementRecord::decode(&bytes);
        }
    }
}

#[test]
fn records_page_walks_every_record_once_and_news_is_told_apart() {
    let mut ledger = Ledger::new(genesis());
    let spec = |i: usize| ChannelSpec {
        a: i % NODES,
        b: (i + 1) % NODES,
        deposit_a: 100,
        deposit_b: 0,
        payments: vec![(true, 10)],
        close: 0,
        equivocate: false,
    };
    let mut all = Vec::new();
    for i in 0..20 {
        for (record, keys) in records_of(i, &spec(i)) {
            all.push(record);
            ledger.insert(record, &keys).unwrap();
        }
    }
    let held = ledger.record_count();
    assert_eq!(held, 20);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, last) = ledger.records_page(cursor.as_ref(), 3);
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(SettlementRecord::id));
        match last {
            Some(key) => cursor = Some(key),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), held, "every record once");
    // Held records, and the older states they superseded, are not news; a new channel is.
    assert!(all.iter().all(|r| !ledger.is_news(r)));
    assert_eq!(ledger.would_add(&all[0]), None);
    let (fresh, _) = records_of(99, &spec(3)).remove(0);
    assert!(ledger.is_news(&fresh));
    assert_eq!(ledger.would_add(&fresh), Some(0));
    assert!(!ledger.knows_channel(&ChannelKey {
        channel_id: fresh.body.channel_id,
        party_a: fresh.body.party_a,
        party_b: fresh.body.party_b,
    }));
}

/// A checkpoint of a fresh channel between `a` and `b` after `a` paid `ab` and `b` paid `ba`.
fn paid_both_ways(id: u8, a: usize, b: usize, ab: u64, ba: u64) -> SettlementRecord {
    let mut body = ChannelBody::opening(
        ChannelId([id; 16]),
        node(a),
        node(b),
        Deposits {
            a: 10_000,
            b: 10_000,
        },
        LotteryTerms::initial(),
    );
    if ab > 0 {
        body = body.pay(Party::A, ab).unwrap();
    }
    if ba > 0 {
        body = body.pay(Party::B, ba).unwrap();
    }
    co_sign(body, SettlementKind::Checkpoint, a, b)
}

#[test]
fn mutual_payers_form_one_cluster_transitively_and_one_way_payers_do_not() {
    let mut ledger = Ledger::new(genesis());
    // 0 ⇄ 1 in one channel; 1 → 2 and 2 → 1 across two channels; 3 → 4 one way.
    for r in [
        paid_both_ways(1, 0, 1, 1_000, 400),
        paid_both_ways(2, 1, 2, 500, 0),
        paid_both_ways(3, 2, 1, 300, 0),
        paid_both_ways(4, 3, 4, 2_000, 0),
    ] {
        ledger.join_verified(r);
    }
    let clusters = ledger.payment_clusters();
    assert_eq!(clusters.len(), 3, "{clusters:?}");
    assert_eq!(clusters[&node(0)], clusters[&node(1)]);
    assert_eq!(clusters[&node(1)], clusters[&node(2)]);
    assert!(!clusters.contains_key(&node(3)));
    // Minting: the cluster {0,1,2} nets negative (only burns leave it); 4 earns alone.
    let params = CompactionParams {
        epochs_per_year: 0,
        active_trusted_nodes: 100,
        clusters,
    };
    let snapshot = ledger.compact(&params);
    let earned_by_4 = 2_000 - burn_of(2_000);
    assert_eq!(snapshot.minted_total(), u128::from(earned_by_4 / 2));
    assert_eq!(
        snapshot.balance(&node(4)),
        i128::from(50_000 + earned_by_4 + earned_by_4 / 2)
    );
    // Unfolded winners are exactly the four records, in channel order, and none after.
    assert_eq!(ledger.unfolded_winners(10).len(), 4);
    assert_eq!(ledger.unfolded_winners(2).len(), 2);
    let mut next = ledger.clone();
    next.adopt(snapshot.clone());
    assert!(next.unfolded_winners(10).is_empty());
    assert!(!ledger.would_adopt(ledger.snapshot()));
    assert!(ledger.would_adopt(&snapshot));
    // Pruning against the snapshot drops the folded records.
    assert_eq!(next.prune_folded_by(&snapshot).len(), 4);
    assert_eq!(next.record_count(), 0);
}
