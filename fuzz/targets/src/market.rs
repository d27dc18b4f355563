//! Targets for `mehr-market`: the envelope of every market message (adverts, summary
//! batches, pulls, agreement negotiation, heartbeats, receipts, compute results), capability
//! adverts on their own, presence beacons and summaries, and the persisted agreement.
//!
//! Besides exact round trips, every signed record is checked for a unique encoding: records
//! are named by the hash of their bytes, so two encodings of one value would be two records.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use mehr_market::agreement::Agreement;
use mehr_market::beacon::PresenceBeacon;
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

struct Keys {
    node: NodeKey,
    peer: PeerKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let node = NodeKey::new(SigningKey::from_bytes(&[0x81; 32]), [0x82; 32]);
        let other = NodeKey::new(SigningKey::from_bytes(&[0x83; 32]), [0x84; 32]);
        Keys {
            node,
            peer: other.peer_key(),
        }
    })
}
