//! Targets for `mehr-market`: the envelope of every market message (adverts, summary
//! batches, pulls, agreement negotiation, heartbeats, receipts, compute results), capability
//! adverts on their own, presence beacons and summaries, the persisted agreement, and the
//! daemon-level control messages around them (records, gossip, jobs and their results).
//!
//! Besides exact round trips, every signed record is checked for a unique encoding: records
//! are named by the hash of their bytes, so two encodings of one value would be two records.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use mehr_market::agreement::Agreement;
use mehr_market::beacon::PresenceBeacon;
use mehr_market::control;
use mehr_market::message::MarketMessage;
use mehr_market::params::MAX_ADVERT_LEN;
use mehr_market::summary::CapabilitySummary;
use mehr_market::{CapabilityAdvert, NodeKey, PeerKey};

/// Any market message: decoded, re-encoded to exactly the input, every record inside it
/// canonical, signatures checked against a key that did not make them.
pub fn market_message(data: &[u8]) {
    let Ok(message) = MarketMessage::decode(data) else {
        return;
    };
    assert_eq!(
        message.encode(),
        data,
        "a market message re-encodes to its input"
    );
    assert_eq!(data[0], message.type_code());
    let peer = &keys().peer;
    match &message {
        MarketMessage::Advert(advert) => check_advert(advert),
        MarketMessage::Summaries(summaries) => {
            for summary in summaries {
                assert_eq!(
                    CapabilitySummary::decode(&summary.to_bytes()).as_ref(),
                    Ok(summary)
                );
            }
        }
        MarketMessage::Pull(pull) => {
            assert!(pull.limit >= 1 && pull.max_hops >= 1);
            if let Some(next) = pull.forwarded() {
                assert_eq!(next.max_hops, pull.max_hops - 1);
                assert_eq!(
                    mehr_market::discovery::PullRequest::decode(&next.encode()),
                    Ok(next)
                );
            }
        }
        MarketMessage::PullAnswer(answer) => {
            assert_eq!(answer.encoded_len(), data.len() - 1);
            for entry in &answer.entries {
                check_advert(&entry.advert);
            }
            let relayed = answer.via_hop(u64::MAX);
            assert_eq!(relayed.entries.len(), answer.entries.len());
        }
        MarketMessage::Request(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Offer(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Rejection(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Acceptance(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Cancel(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Ping(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Pong(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::Receipt(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
        MarketMessage::ComputeResult(r) => {
            assert_eq!(r.canonical_bytes(), r.as_bytes());
            assert!(r.verify(peer).is_err());
        }
    }
}

/// A capability advert on its own (the bytes gossip relays unchanged).
pub fn capability_advert(data: &[u8]) {
    if let Ok(advert) = CapabilityAdvert::decode(data) {
        assert_eq!(advert.as_bytes(), data);
        check_advert(&advert);
    }
}

/// The advert's capabilities, signed afresh by another key, encode to the same bytes
/// between header and signature; the signer accepts everything the decoder accepts.
fn check_advert(advert: &CapabilityAdvert) {
    /// version u8, node id [16], seq u64, ttl u32.
    const HEADER_LEN: usize = 1 + 16 + 8 + 4;
    const SIGNATURE_LEN: usize = 64;
    assert!(advert.as_bytes().len() <= MAX_ADVERT_LEN);
    let key = &keys().node;
    let resigned = advert
        .capabilities()
        .sign(key, advert.seq(), advert.ttl_seconds())
        .unwrap_or_else(|e| panic!("a decoded advert's capabilities cannot be signed: {e}"));
    let (ours, theirs) = (resigned.as_bytes(), advert.as_bytes());
    assert_eq!(ours.len(), theirs.len(), "capabilities have one encoding");
    assert_eq!(
        ours[HEADER_LEN..ours.len() - SIGNATURE_LEN],
        theirs[HEADER_LEN..theirs.len() - SIGNATURE_LEN],
        "capabilities have one encoding"
    );
    assert_eq!(resigned.verify(&key.peer_key()), Ok(()));
    assert!(advert.verify(&keys().peer).is_err() || advert.node_id() == key.node_id());
}

/// Presence beacons (20 bytes) and capability summaries (8 bytes): exact round trips.
pub fn beacon(data: &[u8]) {
    if let Ok(beacon) = PresenceBeacon::decode(data) {
        assert_eq!(beacon.to_bytes(), data);
        assert!(beacon.handoff_score() >= 1);
    }
    if let Ok(summary) = CapabilitySummary::decode(data) {
        assert_eq!(summary.to_bytes(), data);
        assert!(summary.count >= 1 && summary.min_hops <= summary.max_hops);
    }
}

/// The daemon's stored form of an agreement (read back at start-up): its records re-parsed
/// and their links re-checked; what is accepted re-encodes to the input.
pub fn agreement_store(data: &[u8]) {
    let Ok(agreement) = Agreement::from_bytes(data) else {
        return;
    };
    assert_eq!(
        agreement.to_bytes(),
        data,
        "a stored agreement re-encodes to its input"
    );
    assert_eq!(
        Agreement::from_bytes(&agreement.to_bytes()).as_ref(),
        Ok(&agreement)
    );
}

/// The daemon-level market control messages (`mehr_market::control`, types 0x20–0x26 of
/// `mehr.node`): records and gossip (their `MarketMessage` allowed there and re-encoding to
/// the body), signed jobs (the signed body re-encodes from the fields; only the fixed
/// consumer's own signature verifies, and re-signing gives the same bytes), job results and
/// partial outputs (exact round trips, lengths within their limits). The first byte picks
/// the message type, the rest is the body.
pub fn market_control(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = control::kinds::ALL[usize::from(selector) % control::kinds::ALL.len()];
    match kind {
        control::kinds::RECORD => {
            if let Ok(message) = control::decode_record(body) {
                assert_eq!(message.encode(), body, "a record re-encodes to its body");
                assert!(!matches!(
                    message,
                    MarketMessage::Advert(_)
                        | MarketMessage::Summaries(_)
                        | MarketMessage::Pull(_)
                        | MarketMessage::PullAnswer(_)
                        | MarketMessage::ComputeResult(_)
                ));
            }
        }
        control::kinds::GOSSIP => {
            if let Ok(frame) = control::GossipFrame::decode(body) {
                assert_eq!(
                    control::GossipFrame::encode(frame.from, &frame.message.encode()),
                    body,
                    "a gossip frame re-encodes to its body"
                );
                assert!(matches!(
                    frame.message,
                    MarketMessage::Advert(_)
                        | MarketMessage::Summaries(_)
                        | MarketMessage::Pull(_)
                        | MarketMessage::PullAnswer(_)
                ));
            }
        }
        control::kinds::BEACON => beacon(body),
        control::kinds::JOB | control::kinds::JOB_STREAMED => {
            let Ok(signed) = control::SignedJob::decode(body) else {
                return;
            };
            assert_eq!(signed.as_bytes(), body);
            let job = signed.job();
            let encoded = job.signed_body();
            assert_eq!(
                encoded[..],
                body[..body.len() - 64],
                "a job's signed body re-encodes from its fields"
            );
            assert!(!job.function.is_empty() && job.function.len() <= control::MAX_FUNCTION_LEN);
            assert!(job.input.len() <= control::MAX_PAYLOAD_LEN);
            assert_eq!(signed.hash(), *blake3::hash(body).as_bytes());
            let keys = keys();
            if signed.verify(&keys.node.peer_key()).is_ok() {
                let resigned = control::SignedJob::sign(job.clone(), &keys.signing);
                assert_eq!(resigned.as_bytes(), body, "only our own signature verifies");
            }
            assert!(
                signed.verify(&keys.peer).is_err(),
                "a key other than the consumer's never verifies"
            );
        }
        control::kinds::JOB_RESULT => {
            if let Ok(result) = control::JobResult::decode(body) {
                assert_eq!(result.encode(), body, "a job result re-encodes to its body");
                match &result {
                    control::JobResult::Done { output, .. } => {
                        assert!(output.len() <= control::MAX_PAYLOAD_LEN);
                    }
                    control::JobResult::Failed { reason, .. } => {
                        assert!(reason.len() <= control::MAX_ERROR_LEN);
                    }
                }
            }
        }
        _ => {
            if let Ok(partial) = control::JobPartial::decode(body) {
                assert_eq!(
                    partial.encode(),
                    body,
                    "a job partial re-encodes to its body"
                );
                assert!(partial.bytes.len() <= control::MAX_PAYLOAD_LEN);
            }
        }
    }
}

struct Keys {
    /// The signing key of `node`.
    signing: SigningKey,
    node: NodeKey,
    peer: PeerKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signing = SigningKey::from_bytes(&[0x81; 32]);
        let node = NodeKey::new(signing.clone(), [0x82; 32]);
        let other = NodeKey::new(SigningKey::from_bytes(&[0x83; 32]), [0x84; 32]);
        Keys {
            signing,
            node,
            peer: other.peer_key(),
        }
    })
}
