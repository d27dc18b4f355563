//! Targets for `mehr-ledger`: channel protocol messages and the records the ledger keeps or
//! gossips (settlements, relay tickets, balance proofs, epoch summaries and ACKs,
//! snapshots).

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use mehr_ledger::channel::{ChannelBody, ChannelKeys, ChannelMessage, ChannelState};
use mehr_ledger::ledger::epoch::{EpochAck, EpochSummary};
use mehr_ledger::ledger::{AccountProof, BalanceProof, SettlementRecord, Snapshot};
use mehr_ledger::lottery::{RelayTicket, VrfProver, VrfVerifier};
use mehr_ledger::{NodeId, Party};

/// Channel messages (type byte, fixed layout), and the channel body and state inside them:
/// exact round trips, decoded bodies are consistent, and a payment conserves the deposits.
pub fn channel_message(data: &[u8]) {
    if let Ok(message) = ChannelMessage::decode(data) {
        assert_eq!(
            message.encode(),
            data,
            "a channel message re-encodes to its input"
        );
        let body = match &message {
            ChannelMessage::OpenProposal(m) => Some(m.body),
            ChannelMessage::Update(m) => Some(m.body),
            ChannelMessage::SettleProposal(m) => Some(m.body),
            ChannelMessage::Unilateral(m) => {
                let _ = m.verify(&keys().channel);
                assert_eq!(m.record().body, m.state.body);
                Some(m.state.body)
            }
            _ => None,
        };
        if let Some(body) = body {
            check_body(&body, data);
            assert_eq!(message.channel_id(), body.channel_id);
        }
    }
    if let Ok(body) = ChannelBody::decode(data) {
        assert_eq!(body.encode(), data);
        check_body(&body, data);
    }
    if let Ok(state) = ChannelState::decode(data) {
        assert_eq!(state.encode(), data);
        if state.verify(&keys().channel).is_ok() {
            let mut tampered = state;
            tampered.body.seq ^= 1;
            assert!(
                tampered.verify(&keys().channel).is_err(),
                "signatures cover the seq"
            );
        }
        check_body(&state.body, data);
    }
}

/// A decoded body implies non-negative deposits, and any payment from it keeps them.
fn check_body(body: &ChannelBody, data: &[u8]) {
    let deposits = body
        .deposits()
        .expect("the decoder refuses bodies with inconsistent balances");
    let amount = data
        .last_chunk::<8>()
        .map_or(1, |b| u64::from_le_bytes(*b) >> (data[0] % 64));
    for payer in [Party::A, Party::B] {
        if let Ok(next) = body.pay(payer, amount) {
            assert_eq!(
                next.deposits(),
                Some(deposits),
                "a payment conserves the deposits"
            );
            assert_eq!(next.seq, body.seq + 1);
            assert_eq!(
                next.balance(payer),
                body.balance(payer) - next_paid(&next, body, payer)
            );
            assert_eq!(
                ChannelBody::decode(&next.encode()),
                Ok(next),
                "a body we compute is one we accept"
            );
        }
    }
}

/// How much more `payer` has paid in `next` than in `body` (gross).
fn next_paid(next: &ChannelBody, body: &ChannelBody, payer: Party) -> u64 {
    let (before, after) = match payer {
        Party::A => (body.paid_a_to_b, next.paid_a_to_b),
        Party::B => (body.paid_b_to_a, next.paid_b_to_a),
    };
    after - before
}

/// The ledger's own records, chosen by the first byte: settlement record, relay ticket (its
/// VRF proof is decoded and checked), balance proof (checked against a root), epoch summary,
/// epoch ACK, snapshot (whose proofs must verify against its own roots). Exact round trips.
pub fn ledger_record(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 6 {
        0 => {
            if let Ok(record) = SettlementRecord::decode(body) {
                assert_eq!(record.encode(), body);
                if record.verify(&keys().channel).is_ok() {
                    let mut tampered = record;
                    tampered.body.paid_a_to_b ^= 1;
                    assert!(
                        tampered.verify(&keys().channel).is_err(),
                        "signatures cover the totals"
                    );
                }
                assert!(record.body.deposits().is_some());
            }
        }
        1 => {
            if let Ok(ticket) = RelayTicket::decode(body) {
                assert_eq!(ticket.encode(), body);
                // The VRF proof bytes come from the relay: decoding them must not panic.
                let _ = ticket.verify(&keys().vrf);
            }
        }
        2 => {
            if let Ok(proof) = BalanceProof::decode(body) {
                assert_eq!(proof.encode(), body);
                let root = *blake3::hash(body).as_bytes();
                assert!(!proof.verify(&root));
            }
        }
        3 => {
            if let Ok(summary) = EpochSummary::decode(body) {
                assert_eq!(summary.encode(), body);
                let key = keys().signer.verifying_key();
                if summary.verify(&key).is_ok() {
                    let mut tampered = summary;
                    tampered.supply ^= 1;
                    assert!(
                        tampered.verify(&key).is_err(),
                        "the signature covers the supply"
                    );
                }
                let _ = summary.should_ack(summary.settlement_count / 2);
            }
        }
        4 => {
            if let Ok(ack) = EpochAck::decode(body) {
                assert_eq!(ack.encode(), body);
            }
        }
        _ => snapshot(body),
    }
}

fn snapshot(data: &[u8]) {
    let Ok(snapshot) = Snapshot::decode(data) else {
        return;
    };
    assert_eq!(
        snapshot.encode(),
        data,
        "a snapshot re-encodes to its input"
    );
    let root = snapshot.balances_root();
    let mut probes: Vec<NodeId> = snapshot.balances().keys().take(3).copied().collect();
    probes.push(NodeId([0; 16]));
    probes.push(NodeId([0xFF; 16]));
    probes.push(NodeId(
        *blake3::hash(data)
            .as_bytes()
            .first_chunk()
            .expect("32 bytes"),
    ));
    for node in probes {
        match snapshot.prove(&node) {
            AccountProof::Present(proof) => {
                assert_eq!(proof.node, node);
                assert_eq!(proof.balance, snapshot.balance(&node));
                assert!(proof.verify(&root), "an inclusion proof verifies");
                assert_eq!(BalanceProof::decode(&proof.encode()), Ok(proof));
            }
            AccountProof::Absent(absence) => {
                assert!(!snapshot.balances().contains_key(&node));
                for side in [&absence.left, &absence.right].into_iter().flatten() {
                    assert!(side.verify(&root), "an absence proof's neighbours verify");
                }
                if let Some(left) = &absence.left {
                    assert!(left.node < node);
                }
                if let Some(right) = &absence.right {
                    assert!(right.node > node);
                }
            }
        }
    }
}

struct Keys {
    channel: ChannelKeys,
    signer: SigningKey,
    vrf: VrfVerifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let a = SigningKey::from_bytes(&[0x71; 32]);
        let b = SigningKey::from_bytes(&[0x72; 32]);
        Keys {
            channel: ChannelKeys {
                a: a.verifying_key(),
                b: b.verifying_key(),
            },
            vrf: VrfVerifier::new(
                &VrfProver::for_identity(&a)
                    .expect("a valid key")
                    .public_key(),
            )
            .expect("a valid key"),
            signer: a,
        }
    })
}
