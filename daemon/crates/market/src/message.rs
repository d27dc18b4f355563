//! The envelope of every market message sent to a `mehr.node` destination: one type byte,
//! then the record.
//!
//! | type | message | type | message |
//! |---|---|---|---|
//! | 0x20 | capability advert | 0x30 | agreement request |
//! | 0x21 | summary batch | 0x31 | agreement offer |
//! | 0x22 | pull request | 0x32 | agreement rejection |
//! | 0x23 | pull answer | 0x33 | agreement acceptance |
//! | | | 0x34 | agreement cancel |
//! | 0x40 | heartbeat ping | 0x42 | delivery receipt |
//! | 0x41 | heartbeat pong | 0x43 | compute result |
//!
//! The codes stay clear of the ledger's channel messages (0x01–0x07), so the daemon can
//! dispatch both from one destination on the first byte. Signatures cover the record, not
//! the type byte (each record type has its own signing tag).

use crate::agreement::{
    SignedAcceptance, SignedCancel, SignedOffer, SignedRejection, SignedRequest,
};
use crate::capabilities::CapabilityAdvert;
use crate::discovery::{PullAnswer, PullRequest};
use crate::summary::{CapabilitySummary, decode_summaries, encode_summaries};
use crate::verification::{DeliveryReceipt, SignedComputeResult, SignedPing, SignedPong};
use crate::wire::DecodeError;

/// Any market message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketMessage {
    /// 0x20.
    Advert(CapabilityAdvert),
    /// 0x21.
    Summaries(Vec<CapabilitySummary>),
    /// 0x22.
    Pull(PullRequest),
    /// 0x23.
    PullAnswer(PullAnswer),
    /// 0x30.
    Request(SignedRequest),
    /// 0x31.
    Offer(SignedOffer),
    /// 0x32.
    Rejection(SignedRejection),
    /// 0x33.
    Acceptance(SignedAcceptance),
    /// 0x34.
    Cancel(SignedCancel),
    /// 0x40.
    Ping(SignedPing),
    /// 0x41.
    Pong(SignedPong),
    /// 0x42.
    Receipt(DeliveryReceipt),
    /// 0x43.
    ComputeResult(SignedComputeResult),
}

impl MarketMessage {
    /// The type byte.
    pub fn type_code(&self) -> u8 {
        match self {
            MarketMessage::Advert(_) => 0x20,
            MarketMessage::Summaries(_) => 0x21,
            MarketMessage::Pull(_) => 0x22,
            MarketMessage::PullAnswer(_) => 0x23,
            MarketMessage::Request(_) => 0x30,
            MarketMessage::Offer(_) => 0x31,
            MarketMessage::Rejection(_) => 0x32,
            MarketMessage::Acceptance(_) => 0x33,
            MarketMessage::Cancel(_) => 0x34,
            MarketMessage::Ping(_) => 0x40,
            MarketMessage::Pong(_) => 0x41,
            MarketMessage::Receipt(_) => 0x42,
            MarketMessage::ComputeResult(_) => 0x43,
        }
    }

    /// Type byte, then the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.type_code()];
        match self {
            MarketMessage::Advert(a) => out.extend_from_slice(a.as_bytes()),
            MarketMessage::Summaries(s) => out.extend_from_slice(&encode_summaries(s)),
            MarketMessage::Pull(p) => out.extend_from_slice(&p.encode()),
            MarketMessage::PullAnswer(a) => out.extend_from_slice(&a.encode()),
            MarketMessage::Request(r) => out.extend_from_slice(r.as_bytes()),
            MarketMessage::Offer(o) => out.extend_from_slice(o.as_bytes()),
            MarketMessage::Rejection(r) => out.extend_from_slice(r.as_bytes()),
            MarketMessage::Acceptance(a) => out.extend_from_slice(a.as_bytes()),
            MarketMessage::Cancel(c) => out.extend_from_slice(c.as_bytes()),
            MarketMessage::Ping(p) => out.extend_from_slice(p.as_bytes()),
            MarketMessage::Pong(p) => out.extend_from_slice(p.as_bytes()),
            MarketMessage::Receipt(r) => out.extend_from_slice(r.as_bytes()),
            MarketMessage::ComputeResult(c) => out.extend_from_slice(c.as_bytes()),
        }
        out
    }

    /// Parses a message (records are parsed, not verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&code, body) = bytes.split_first().ok_or(DecodeError::Length {
            what: "market message",
            expected: 1,
            actual: 0,
        })?;
        Ok(match code {
            0x20 => MarketMessage::Advert(CapabilityAdvert::decode(body)?),
            0x21 => MarketMessage::Summaries(decode_summaries(body)?),
            0x22 => MarketMessage::Pull(PullRequest::decode(body)?),
            0x23 => MarketMessage::PullAnswer(PullAnswer::decode(body)?),
            0x30 => MarketMessage::Request(SignedRequest::decode(body)?),
            0x31 => MarketMessage::Offer(SignedOffer::decode(body)?),
            0x32 => MarketMessage::Rejection(SignedRejection::decode(body)?),
            0x33 => MarketMessage::Acceptance(SignedAcceptance::decode(body)?),
            0x34 => MarketMessage::Cancel(SignedCancel::decode(body)?),
            0x40 => MarketMessage::Ping(SignedPing::decode(body)?),
            0x41 => MarketMessage::Pong(SignedPong::decode(body)?),
            0x42 => MarketMessage::Receipt(DeliveryReceipt::decode(body)?),
            0x43 => MarketMessage::ComputeResult(SignedComputeResult::decode(body)?),
            code => {
                return Err(DecodeError::UnknownCode {
                    what: "market message",
                    field: "type",
                    code,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::AgreementId;
    use crate::capabilities::CapabilityKind;
    use crate::capabilities::tests::full;
    use crate::discovery::Filter;
    use crate::identity::test_keys::node_key;
    use crate::verification::{Ping, Receipt};
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips_through_the_envelope() {
        let k = node_key(1);
        let advert = full().sign(&k, 1, 60).unwrap();
        let messages = vec![
            MarketMessage::Advert(advert.clone()),
            MarketMessage::Summaries(
                CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(3), 1)])
                    .into_iter()
                    .collect(),
            ),
            MarketMessage::Pull(PullRequest {
                nonce: 1,
                filter: Filter::kind(CapabilityKind::Storage),
                max_hops: 3,
                forward: false,
                limit: 2,
            }),
            MarketMessage::PullAnswer(PullAnswer {
                nonce: 1,
                entries: vec![],
            }),
            MarketMessage::Ping(
                SignedPing::sign(
                    Ping {
                        agreement_id: AgreementId([1; 32]),
                        nonce: 3,
                        signer: k.node_id(),
                    },
                    &k,
                )
                .unwrap(),
            ),
            MarketMessage::Receipt(
                DeliveryReceipt::sign(
                    Receipt {
                        packet_hash: [5; 32],
                        signer: k.node_id(),
                    },
                    &k,
                )
                .unwrap(),
            ),
        ];
        for m in messages {
            let bytes = m.encode();
            assert_eq!(bytes[0], m.type_code());
            assert_eq!(MarketMessage::decode(&bytes).unwrap(), m);
        }
        assert!(MarketMessage::decode(&[]).is_err());
        assert!(MarketMessage::decode(&[0x01, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(code in 0x1fu8..0x45, bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut msg = vec![code];
            msg.extend_from_slice(&bytes);
            let _ = MarketMessage::decode(&msg);
        }
    }
}
