use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::lottery::{VrfProver, VrfVerifier};

struct Pair {
    a: Channel,
    b: Channel,
    ka: SigningKey,
    kb: SigningKey,
}

fn ids() -> (NodeId, NodeId) {
    (NodeId([0xa1; 16]), NodeId([0xb2; 16]))
}

fn open(deposit_a: u64, deposit_b: u64) -> Pair {
    let ka = SigningKey::from_bytes(&[1; 32]);
    let kb = SigningKey::from_bytes(&[2; 32]);
    let keys = ChannelKeys {
        a: ka.verifying_key(),
        b: kb.verifying_key(),
    };
    let (ia, ib) = ids();
    let mut rng = StdRng::seed_from_u64(7);
    let pending = Channel::propose_open(
        &mut rng,
        ia,
        ib,
        keys,
        Deposits {
            a: deposit_a,
            b: deposit_b,
        },
        LotteryTerms::initial(),
        &ka,
    )
    .unwrap();
    let wire = ChannelMessage::OpenProposal(*pending.proposal()).encode();
    let ChannelMessage::OpenProposal(proposal) = ChannelMessage::decode(&wire).unwrap() else {
        panic!("wrong message type");
    };
    let (b, accept) = Channel::accept_open(&proposal, keys, &kb, 0).unwrap();
    let a = pending.complete(&accept, 0).unwrap();
    assert_eq!(a.latest(), b.latest());
    Pair { a, b, ka, kb }
}

/// A pays B through the full propose / accept / ack exchange, over the wire encoding.
fn pay_a_to_b(p: &mut Pair, amount: u64) {
    let proposal = p.a.propose_payment(amount, &p.ka).unwrap();
    let ChannelMessage::Update(proposal) =
        ChannelMessage::decode(&ChannelMessage::Update(proposal).encode()).unwrap()
    else {
        panic!("wrong message type");
    };
    let ack = p.b.receive_update(&proposal, &p.kb, 1).unwrap();
    p.a.receive_ack(&ack, 1).unwrap();
    assert_eq!(p.a.latest(), p.b.latest());
}

#[test]
fn open_pay_checkpoint_and_close() {
    let mut p = open(10_000, 1_000);
    assert_eq!(p.a.latest().body.seq, 0);
    pay_a_to_b(&mut p, 500);
    pay_a_to_b(&mut p, 500);
    let body = p.a.latest().body;
    assert_eq!(
        (body.balance_a, body.balance_b, body.seq),
        (9_000, 1_980, 2)
    );

    let proposal =
        p.a.propose_settlement(SettlementKind::Checkpoint, 10, &p.ka)
            .unwrap();
    let (accept, record_b) = p.b.receive_settlement(&proposal, &p.kb).unwrap();
    let record_a = p.a.receive_settlement_accept(&accept).unwrap();
    assert_eq!(record_a, record_b);
    record_a.verify(p.a.keys()).unwrap();
    assert_eq!(p.a.phase(), ChannelPhase::Open);

    pay_a_to_b(&mut p, 100);
    let proposal =
        p.b.propose_settlement(SettlementKind::CooperativeClose, 20, &p.kb)
            .unwrap();
    let (accept, record) = p.a.receive_settlement(&proposal, &p.ka).unwrap();
    assert_eq!(p.b.receive_settlement_accept(&accept).unwrap(), record);
    assert_eq!(record.body.seq, 3);
    assert_eq!(
        (p.a.phase(), p.b.phase()),
        (ChannelPhase::Closed, ChannelPhase::Closed)
    );
    assert!(matches!(
        p.a.propose_payment(1, &p.ka),
        Err(ChannelError::WrongState {
            phase: "closed",
            ..
        })
    ));
}

#[test]
fn a_proposal_that_jumps_the_sequence_is_refused_and_the_channel_goes_on() {
    let mut p = open(1_000, 0);
    for jump in [super::MAX_SEQUENCE_STEP + 1, u64::MAX] {
        let mut body = p.a.latest().body.pay(Party::A, 10).unwrap();
        body.seq = jump;
        let proposal = UpdateProposal {
            proposer: Party::A,
            body,
            signature: body.sign(&p.ka),
        };
        assert_eq!(
            p.b.receive_update(&proposal, &p.kb, 1),
            Err(ChannelError::SequenceJump {
                latest: 0,
                got: jump
            })
        );
    }
    // The channel is not wedged: the next honest payment goes through.
    let proposal = p.a.propose_payment(10, &p.ka).unwrap();
    let ack = p.b.receive_update(&proposal, &p.kb, 1).unwrap();
    p.a.receive_ack(&ack, 1).unwrap();
    assert_eq!(p.b.latest().body.seq, 1);
}

#[test]
fn replayed_and_stale_messages_are_refused() {
    let mut p = open(1_000, 0);
    let proposal = p.a.propose_payment(10, &p.ka).unwrap();
    let ack = p.b.receive_update(&proposal, &p.kb, 1).unwrap();
    p.a.receive_ack(&ack, 1).unwrap();
    assert_eq!(
        p.b.receive_update(&proposal, &p.kb, 1),
        Err(ChannelError::StaleSequence { latest: 1, got: 1 })
    );
    assert_eq!(
        p.a.receive_ack(&ack, 1),
        Err(ChannelError::StaleSequence { latest: 1, got: 1 })
    );
    let mut future = ack;
    future.seq = 9;
    assert_eq!(
        p.a.receive_ack(&future, 1),
        Err(ChannelError::NoPendingProposal)
    );
}

#[test]
fn bad_signatures_name_the_party() {
    let mut p = open(1_000, 0);
    let fresh_a = p.a.clone();
    let mut proposal = p.a.propose_payment(10, &p.ka).unwrap();
    proposal.signature = p.kb.sign_as_a_forgery(&proposal.body);
    assert_eq!(
        p.b.receive_update(&proposal, &p.kb, 1),
        Err(ChannelError::BadSignature { party: Party::A })
    );
    p.a = fresh_a;
    let good = p.a.propose_payment(10, &p.ka).unwrap();
    let mut ack = p.b.receive_update(&good, &p.kb, 1).unwrap();
    ack.signature = good.signature;
    assert_eq!(
        p.a.receive_ack(&ack, 1),
        Err(ChannelError::BadSignature { party: Party::B })
    );
}

trait Forge {
    fn sign_as_a_forgery(&self, body: &ChannelBody) -> ed25519_dalek::Signature;
}

impl Forge for SigningKey {
    fn sign_as_a_forgery(&self, body: &ChannelBody) -> ed25519_dalek::Signature {
        body.sign(self)
    }
}

#[test]
fn overdraft_and_conservation_are_checked() {
    let mut p = open(1_000, 50);
    assert_eq!(
        p.a.propose_payment(1_001, &p.ka),
        Err(ChannelError::Overdraft {
            party: Party::A,
            available: 1_000,
            requested: 1_001
        })
    );
    // A forged proposal (validly signed by A) that overdraws A.
    let mut body = p.a.latest().body;
    body.seq = 1;
    body.paid_a_to_b = 2_000;
    body.balance_a = 0;
    body.balance_b = 50 + crate::burn::net_of(2_000);
    let proposal = UpdateProposal {
        proposer: Party::A,
        body,
        signature: body.sign(&p.ka),
    };
    assert_eq!(
        p.b.receive_update(&proposal, &p.kb, 1),
        Err(ChannelError::Overdraft {
            party: Party::A,
            available: 1_000,
            requested: 2_000
        })
    );
    // Balances that do not follow from the totals.
    let mut body = p.a.latest().body.pay(Party::A, 100).unwrap();
    body.balance_b += 1;
    let proposal = UpdateProposal {
        proposer: Party::A,
        body,
        signature: body.sign(&p.ka),
    };
    assert_eq!(
        p.b.receive_update(&proposal, &p.kb, 1),
        Err(ChannelError::BalanceNotConserved {
            party: Party::B,
            expected: 148,
            claimed: 149
        })
    );
    // A proposal that makes the acceptor pay.
    let body = p.a.latest().body.pay(Party::B, 10).unwrap();
    let proposal = UpdateProposal {
        proposer: Party::A,
        body,
        signature: body.sign(&p.ka),
    };
    assert_eq!(
        p.b.receive_update(&proposal, &p.kb, 1),
        Err(ChannelError::UnauthorizedDebit {
            payer: Party::B,
            amount: 10
        })
    );
    // A proposal that takes a payment back.
    pay_a_to_b(&mut p, 100);
    let mut body = p.b.latest().body;
    body.seq += 1;
    body.paid_a_to_b = 50;
    body.balance_a = 950;
    body.balance_b = 50 + crate::burn::net_of(50);
    let proposal = UpdateProposal {
        proposer: Party::B,
        body,
        signature: body.sign(&p.kb),
    };
    assert_eq!(
        p.a.receive_update(&proposal, &p.ka, 1),
        Err(ChannelError::PaymentReversed {
            payer: Party::A,
            before: 100,
            after: 50
        })
    );
    // The same state sent as if it came from A itself.
    let proposal = UpdateProposal {
        proposer: Party::A,
        ..proposal
    };
    assert_eq!(
        p.a.receive_update(&proposal, &p.ka, 1),
        Err(ChannelError::WrongParty)
    );
}

#[test]
fn messages_for_other_channels_are_unknown() {
    let mut p = open(1_000, 0);
    let proposal = p.a.propose_payment(10, &p.ka).unwrap();
    let mut ack = p.b.receive_update(&proposal, &p.kb, 1).unwrap();
    ack.channel_id = ChannelId([0; 16]);
    assert_eq!(
        p.a.receive_ack(&ack, 1),
        Err(ChannelError::UnknownChannel(ChannelId([0; 16])))
    );
}

#[test]
fn concurrent_proposals_resolve_in_favour_of_a() {
    let mut p = open(1_000, 1_000);
    let from_a = p.a.propose_payment(10, &p.ka).unwrap();
    let from_b = p.b.propose_payment(20, &p.kb).unwrap();
    assert_eq!(
        p.a.receive_update(&from_b, &p.ka, 1),
        Err(ChannelError::ConcurrentProposal { seq: 1 })
    );
    let ack = p.b.receive_update(&from_a, &p.kb, 1).unwrap();
    p.a.receive_ack(&ack, 1).unwrap();
    assert_eq!(p.a.latest(), p.b.latest());
    // B's dropped proposal can be made again on top of the new state.
    let again = p.b.propose_payment(20, &p.kb).unwrap();
    assert_eq!(again.body.seq, 2);
    let ack = p.a.receive_update(&again, &p.ka, 2).unwrap();
    p.b.receive_ack(&ack, 2).unwrap();
    assert_eq!(p.a.latest().body.paid_b_to_a, 20);
}

#[test]
fn lottery_terms_and_ticket_redemption() {
    let mut p = open(100_000, 0);
    // B relays A's packets: B commits its own probability for period 1.
    let prob = WinProbability::from_ppm(200_000).unwrap();
    let proposal = p.b.propose_lottery_terms(1, prob, &p.kb).unwrap();
    let ack = p.a.receive_update(&proposal, &p.ka, 1).unwrap();
    p.b.receive_ack(&ack, 1).unwrap();
    assert_eq!(p.a.committed_win_probability(1, Party::B), Some(prob));
    assert_eq!(
        p.a.committed_win_probability(0, Party::B),
        Some(WinProbability::MAX)
    );
    assert_eq!(p.a.committed_win_probability(2, Party::B), None);

    // A cannot change B's probability.
    let mut body = p.a.latest().body;
    body.seq += 1;
    body.lottery.period = 2;
    body.lottery.win_b = WinProbability::MIN;
    let bad = UpdateProposal {
        proposer: Party::A,
        body,
        signature: body.sign(&p.ka),
    };
    assert!(matches!(
        p.b.receive_update(&bad, &p.kb, 1),
        Err(ChannelError::InvalidLotteryTerms(_))
    ));

    let prover = VrfProver::for_identity(&p.kb).unwrap();
    let verifier = VrfVerifier::new(&prover.public_key()).unwrap();
    let ticket = (0u32..)
        .find_map(|i| {
            let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
            RelayTicket::draw(&prover, p.b.id(), 1, prob, hash, 7).unwrap()
        })
        .unwrap();
    let mut redeemed = RedeemedTickets::new(1);
    let payout = p.a.check_ticket(&ticket, &verifier, &mut redeemed).unwrap();
    assert_eq!(payout, 35);
    assert_eq!(
        p.a.check_ticket(&ticket, &verifier, &mut redeemed),
        Err(LotteryError::AlreadyRedeemed { period: 1 })
    );
    let mut wrong_p = ticket.clone();
    wrong_p.win_probability = WinProbability::MAX;
    wrong_p.period = 0;
    assert!(
        p.a.check_ticket(&wrong_p, &verifier, &mut redeemed)
            .is_err()
    );
    pay_a_to_b(&mut p, payout);
    assert_eq!(p.b.latest().body.balance_b, crate::burn::net_of(35));
}

#[test]
fn unilateral_settlement_and_dispute() {
    let mut p = open(10_000, 0);
    pay_a_to_b(&mut p, 100);
    assert!(matches!(
        p.a.file_unilateral(UnilateralReason::Unresponsive, 0, 1, &p.ka),
        Err(ChannelError::UnilateralNotAllowed { .. })
    ));
    for attempt in 0..3u64 {
        let start = attempt * 200;
        p.a.propose_settlement(SettlementKind::Checkpoint, start, &p.ka)
            .unwrap();
        assert!(!p.a.check_settlement_timeout(start + 119));
        assert!(p.a.check_settlement_timeout(start + 120));
    }
    assert_eq!(p.a.settlement_failures(), 3);

    // B has a newer state than A's filing: A's ack was lost, so make B's state ahead.
    let mut stale_a = p.a.clone();
    pay_a_to_b(&mut p, 200);
    let filing = stale_a
        .file_unilateral(UnilateralReason::Unresponsive, 1_000, 1, &p.ka)
        .unwrap();
    assert_eq!(filing.state.body.seq, 1);
    let wire = ChannelMessage::Unilateral(filing).encode();
    let ChannelMessage::Unilateral(filing) = ChannelMessage::decode(&wire).unwrap() else {
        panic!("wrong message type");
    };
    let counter = p.b.receive_unilateral(&filing, 1_001).unwrap().unwrap();
    assert_eq!(counter.body.seq, 2);
    stale_a.challenge(counter, 1_002).unwrap();
    assert_eq!(
        stale_a.resolve_dispute(3_879),
        Err(ChannelError::DisputeWindowOpen { closes_at: 3_880 })
    );
    assert!(matches!(
        stale_a.challenge(counter, 3_880),
        Err(ChannelError::DisputeWindowClosed { .. })
    ));
    let record = stale_a.resolve_dispute(3_880).unwrap();
    assert_eq!(record.kind, SettlementKind::UnilateralClose);
    assert_eq!(record.body.seq, 2);
    record.verify(stale_a.keys()).unwrap();
    assert_eq!(p.b.resolve_dispute(3_881).unwrap(), record);
}

#[test]
fn abandonment_needs_four_idle_epochs() {
    let mut p = open(1_000, 0);
    pay_a_to_b(&mut p, 1); // active in epoch 1
    assert!(
        p.b.file_unilateral(UnilateralReason::Abandonment, 0, 4, &p.kb)
            .is_err()
    );
    let filing =
        p.b.file_unilateral(UnilateralReason::Abandonment, 0, 5, &p.kb)
            .unwrap();
    assert_eq!(filing.filed_by, Party::B);
    assert_eq!(p.b.phase(), ChannelPhase::Disputing);
    assert!(p.a.receive_unilateral(&filing, 0).unwrap().is_none());
}

#[test]
fn persisted_channels_resume_exactly() {
    let mut p = open(5_000, 5_000);
    pay_a_to_b(&mut p, 10);
    p.a.propose_payment(20, &p.ka).unwrap();
    let json = serde_json::to_string(&p.a.to_persisted()).unwrap();
    let restored =
        Channel::from_persisted(&serde_json::from_str(&json).unwrap(), *p.a.keys()).unwrap();
    assert_eq!(restored, p.a);

    p.b.propose_settlement(SettlementKind::Checkpoint, 33, &p.kb)
        .unwrap();
    let restored = Channel::from_persisted(&p.b.to_persisted(), *p.b.keys()).unwrap();
    assert_eq!(restored, p.b);

    let mut c = p.b.clone();
    for r in [0, 200, 400] {
        c.pending = None;
        c.propose_settlement(SettlementKind::Checkpoint, r, &p.kb)
            .unwrap();
        c.check_settlement_timeout(r + 120);
    }
    c.file_unilateral(UnilateralReason::Unresponsive, 50, 1, &p.kb)
        .unwrap();
    assert_eq!(
        Channel::from_persisted(&c.to_persisted(), *c.keys()).unwrap(),
        c
    );
    c.resolve_dispute(5_000).unwrap();
    assert_eq!(
        Channel::from_persisted(&c.to_persisted(), *c.keys()).unwrap(),
        c
    );
}

#[test]
fn open_rules_are_enforced() {
    let ka = SigningKey::from_bytes(&[1; 32]);
    let kb = SigningKey::from_bytes(&[2; 32]);
    let keys = ChannelKeys {
        a: ka.verifying_key(),
        b: kb.verifying_key(),
    };
    let (ia, ib) = ids();
    let mut rng = StdRng::seed_from_u64(1);
    let pending = Channel::propose_open(
        &mut rng,
        ia,
        ib,
        keys,
        Deposits { a: 1, b: 2 },
        LotteryTerms::initial(),
        &ka,
    )
    .unwrap();
    let mut bad = *pending.proposal();
    bad.nonce[0] ^= 1;
    assert!(matches!(
        Channel::accept_open(&bad, keys, &kb, 0),
        Err(ChannelError::InvalidOpen(_))
    ));
    let mut bad = *pending.proposal();
    bad.sig_a = bad.body.sign(&kb);
    assert_eq!(
        Channel::accept_open(&bad, keys, &kb, 0).map(|_| ()),
        Err(ChannelError::BadSignature { party: Party::A })
    );
    assert!(
        Channel::propose_open(
            &mut rng,
            ia,
            ia,
            keys,
            Deposits::default(),
            LotteryTerms::initial(),
            &ka
        )
        .is_err()
    );
}

fn arb_body() -> impl Strategy<Value = ChannelBody> {
    (
        any::<[u8; 16]>(),
        0u64..1 << 40,
        0u64..1 << 40,
        any::<u64>(),
        0u64..1 << 30,
        0u64..1 << 30,
        any::<u64>(),
        100u32..=200_000,
        100u32..=200_000,
    )
        .prop_map(|(id, da, db, seq, pab, pba, period, pa, pb)| {
            let deposits = Deposits {
                a: da + pab,
                b: db + pba,
            };
            let (balance_a, balance_b) = state::balances_for(deposits, pab, pba).unwrap();
            ChannelBody {
                channel_id: ChannelId(id),
                party_a: NodeId([1; 16]),
                party_b: NodeId([2; 16]),
                balance_a,
                balance_b,
                seq,
                paid_a_to_b: pab,
                paid_b_to_a: pba,
                lottery: LotteryTerms {
                    period,
                    win_a: WinProbability::from_ppm(pa).unwrap(),
                    win_b: WinProbability::from_ppm(pb).unwrap(),
                },
            }
        })
}

fn arb_message() -> impl Strategy<Value = ChannelMessage> {
    let sig = any::<[u8; 32]>().prop_map(|s| {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&s);
        b[32..].copy_from_slice(&s);
        ed25519_dalek::Signature::from_bytes(&b)
    });
    let party = prop_oneof![Just(Party::A), Just(Party::B)];
    let kind = prop_oneof![
        Just(SettlementKind::Checkpoint),
        Just(SettlementKind::CooperativeClose)
    ];
    prop_oneof![
        (any::<[u8; 16]>(), arb_body(), sig.clone()).prop_map(|(nonce, body, sig_a)| {
            ChannelMessage::OpenProposal(OpenProposal { nonce, body, sig_a })
        }),
        (any::<[u8; 16]>(), sig.clone()).prop_map(|(id, sig_b)| ChannelMessage::OpenAccept(
            OpenAccept {
                channel_id: ChannelId(id),
                sig_b
            }
        )),
        (party.clone(), arb_body(), sig.clone()).prop_map(|(proposer, body, signature)| {
            ChannelMessage::Update(UpdateProposal {
                proposer,
                body,
                signature,
            })
        }),
        (any::<[u8; 16]>(), any::<u64>(), party.clone(), sig.clone()).prop_map(
            |(id, seq, signer, signature)| {
                ChannelMessage::Ack(UpdateAck {
                    channel_id: ChannelId(id),
                    seq,
                    signer,
                    signature,
                })
            }
        ),
        (kind.clone(), party.clone(), arb_body(), sig.clone()).prop_map(
            |(kind, proposer, body, signature)| {
                ChannelMessage::SettleProposal(SettleProposal {
                    kind,
                    proposer,
                    body,
                    signature,
                })
            }
        ),
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            kind,
            party.clone(),
            sig.clone()
        )
            .prop_map(|(id, seq, kind, signer, signature)| {
                ChannelMessage::SettleAccept(SettleAccept {
                    channel_id: ChannelId(id),
                    seq,
                    kind,
                    signer,
                    signature,
                })
            }),
        (
            arb_body(),
            sig.clone(),
            sig.clone(),
            party,
            sig,
            any::<bool>()
        )
            .prop_map(|(body, sig_a, sig_b, filed_by, signature, abandon)| {
                ChannelMessage::Unilateral(UnilateralSettlement {
                    state: ChannelState { body, sig_a, sig_b },
                    reason: if abandon {
                        UnilateralReason::Abandonment
                    } else {
                        UnilateralReason::Unresponsive
                    },
                    filed_by,
                    signature,
                })
            }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(message in arb_message()) {
        let bytes = message.encode();
        let expected_len = match message {
            ChannelMessage::OpenProposal(_) => OPEN_PROPOSAL_LEN,
            ChannelMessage::OpenAccept(_) => OPEN_ACCEPT_LEN,
            ChannelMessage::Update(_) => UPDATE_PROPOSAL_LEN,
            ChannelMessage::Ack(_) => UPDATE_ACK_LEN,
            ChannelMessage::SettleProposal(_) => SETTLE_PROPOSAL_LEN,
            ChannelMessage::SettleAccept(_) => SETTLE_ACCEPT_LEN,
            ChannelMessage::Unilateral(_) => UNILATERAL_LEN,
        };
        prop_assert_eq!(bytes.len(), expected_len);
        prop_assert_eq!(ChannelMessage::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..320)) {
        let _ = ChannelMessage::decode(&bytes);
    }

    #[test]
    fn decode_of_mutated_messages_never_panics(message in arb_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = message.encode();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        let _ = ChannelMessage::decode(&bytes);
    }
}
