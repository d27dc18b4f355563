//! The negotiation records (§5 agreements, §8 item 24). All are signed records: body, then
//! Ed25519 over `Blake3(tag ‖ body)`.
//!
//! ```text
//! Request     consumer [16], provider [16], capability, cost_cap CostStructure,
//!             duration_seconds u32, channel [16], proof u8, privacy u8, nonce u64, sig [64]
//!   capability: u8 code (0 Compute, 1 Storage, 2 Relay, 3 Proxy), then
//!               Compute: target u8 (0 Function, 1 Wasm) + id [32]; Storage: bytes u64
//! Offer       request_hash [32], provider [16], cost CostStructure, valid_for_seconds u32,
//!             proof u8, upstream (presence u8 [+ agreement id 32]), sig [64]
//! Rejection   request_hash [32], provider [16], reason u8, sig [64]          (113 B)
//! Acceptance  agreement_id [32], consumer [16], sig [64]                     (112 B)
//! Cancel      agreement_id [32], by [16], reason u8, sig [64]                (113 B)
//! ```
//!
//! `request_hash = Blake3(request bytes)` and `agreement_id = Blake3(request bytes ‖ offer
//! bytes)` (decision 3), both over the full signed encodings. The spec's `valid_until`
//! becomes `valid_for_seconds` from receipt (decision 8), and the offer names the whole
//! request by hash rather than by nonce, so it cannot be re-attached to another request.

use std::fmt;

use mehr_ledger::{ChannelId, NodeId};
use serde::{Deserialize, Serialize};

use crate::capabilities::FunctionId;
use crate::cost::CostStructure;
use crate::record::signed_record;
use crate::signing::MarketTag;
use crate::wire::{DecodeError, Reader, ReaderExt, Writer};

/// An agreement's id: `Blake3(request ‖ offer)` over both signed encodings.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct AgreementId(pub [u8; 32]);

impl AgreementId {
    /// The id of the agreement formed by this request and offer.
    pub fn of(request: &SignedRequest, offer: &SignedOffer) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(request.as_bytes());
        h.update(offer.as_bytes());
        Self(*h.finalize().as_bytes())
    }
}

impl fmt::Debug for AgreementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgreementId({})", hex::encode(self.0))
    }
}

impl fmt::Display for AgreementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What a compute agreement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComputeTarget {
    /// 0: a named function (`Blake3(name)`).
    Function(FunctionId),
    /// 1: a WASM module (`Blake3(module bytes)`).
    Wasm([u8; 32]),
}

/// The capability an agreement is about; codes in the spec's declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Capability {
    /// 0: compute.
    Compute(ComputeTarget),
    /// 1: storage of up to `bytes`.
    Storage {
        /// Bytes to store.
        bytes: u64,
    },
    /// 2: packet relay.
    Relay,
    /// 3: proxy / Internet gateway.
    Proxy,
}

impl Capability {
    fn write(&self, w: &mut Writer) {
        match self {
            Capability::Compute(target) => {
                w.u8(0);
                match target {
                    ComputeTarget::Function(id) => {
                        w.u8(0);
                        w.raw(&id.0);
                    }
                    ComputeTarget::Wasm(module) => {
                        w.u8(1);
                        w.raw(module);
                    }
                }
            }
            Capability::Storage { bytes } => {
                w.u8(1);
                w.u64(*bytes);
            }
            Capability::Relay => w.u8(2),
            Capability::Proxy => w.u8(3),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => match r.u8()? {
                0 => Ok(Capability::Compute(ComputeTarget::Function(FunctionId(
                    r.array()?,
                )))),
                1 => Ok(Capability::Compute(ComputeTarget::Wasm(r.array()?))),
                code => Err(r.unknown("compute target", code)),
            },
            1 => Ok(Capability::Storage { bytes: r.u64()? }),
            2 => Ok(Capability::Relay),
            3 => Ok(Capability::Proxy),
            code => Err(r.unknown("capability", code)),
        }
    }
}

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, [$($(#[$vmeta:meta])* $variant:ident),+ $(,)?]) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire code (declaration order).
            pub fn code(self) -> u8 {
                self as u8
            }

            /// Parses a wire code.
            pub fn from_code(code: u8) -> Option<Self> {
                Self::ALL.get(usize::from(code)).copied()
            }

            pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let code = r.u8()?;
                Self::from_code(code).ok_or_else(|| r.unknown($field, code))
            }
        }
    };
}

code_enum!(
    /// How delivery is proven (§5 agreements).
    ProofMethod,
    "proof method",
    [
        /// 0: destination-signed delivery receipts (relay).
        DeliveryReceipt,
        /// 1: storage challenges.
        ChallengeResponse,
        /// 2: compute result hashes (verification tiers).
        ResultHash,
        /// 3: heartbeats (ongoing services).
        Heartbeat,
    ]
);

code_enum!(
    /// Privacy the consumer requires (§5 agreements).
    Privacy,
    "privacy",
    [
        /// 0: none.
        None,
        /// 1: the job is split across providers.
        Split,
        /// 2: secret-shared inputs.
        SecretShared,
        /// 3: trusted execution environment.
        Tee,
    ]
);

code_enum!(
    /// Why a provider turned a request down.
    RejectReason,
    "reject reason",
    [
        /// 0: at capacity right now.
        Busy,
        /// 1: the capability is not offered.
        Unsupported,
        /// 2: the cost cap is below the provider's price.
        PriceTooLow,
        /// 3: not enough space, memory or bandwidth for the request.
        InsufficientCapacity,
        /// 4: the consumer is not trusted or has no usable channel.
        Untrusted,
        /// 5: anything else.
        Other,
    ]
);

code_enum!(
    /// Why a side cancelled an agreement.
    CancelReason,
    "cancel reason",
    [
        /// 0: the side no longer needs or offers the service.
        Requested,
        /// 1: payment did not arrive.
        Unpaid,
        /// 2: delivery could not be verified.
        VerificationFailed,
        /// 3: the node is shutting down.
        Shutdown,
    ]
);

/// A consumer's request (§5 negotiation step 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The consumer (signer).
    pub consumer: NodeId,
    /// The provider asked.
    pub provider: NodeId,
    /// What is wanted.
    pub capability: Capability,
    /// The most the consumer pays (see [`CostStructure::within`]).
    pub cost_cap: CostStructure,
    /// How long the agreement runs once active, seconds (at least 1).
    pub duration_seconds: u32,
    /// The payment channel between the two that pays for it.
    pub channel: ChannelId,
    /// Preferred proof method.
    pub proof: ProofMethod,
    /// Required privacy.
    pub privacy: Privacy,
    /// Random, so two requests with equal terms differ.
    pub nonce: u64,
}

impl Request {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.consumer
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.consumer.0);
        w.raw(&self.provider.0);
        self.capability.write(w);
        self.cost_cap.write(w);
        w.u32(self.duration_seconds);
        w.raw(&self.channel.0);
        w.u8(self.proof.code());
        w.u8(self.privacy.code());
        w.u64(self.nonce);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let req = Self {
            consumer: NodeId(r.array()?),
            provider: NodeId(r.array()?),
            capability: Capability::read(r)?,
            cost_cap: CostStructure::read(r)?,
            duration_seconds: r.u32()?,
            channel: ChannelId(r.array()?),
            proof: ProofMethod::read(r)?,
            privacy: Privacy::read(r)?,
            nonce: r.u64()?,
        };
        if req.duration_seconds == 0 {
            return Err(r.invalid("duration_seconds", "must be at least 1"));
        }
        if req.consumer == req.provider {
            return Err(r.invalid("provider", "equals the consumer"));
        }
        Ok(req)
    }
}

/// A provider's offer (§5 negotiation step 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// `Blake3` of the signed request it answers.
    pub request_hash: [u8; 32],
    /// The provider (signer).
    pub provider: NodeId,
    /// The price, within the request's cap.
    pub cost: CostStructure,
    /// How long the consumer has to countersign, seconds from receipt (1–300).
    pub valid_for_seconds: u32,
    /// The proof method the provider will supply.
    pub proof: ProofMethod,
    /// The agreement this one resells, in a capability chain.
    pub upstream: Option<AgreementId>,
}

impl Offer {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.provider
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.request_hash);
        w.raw(&self.provider.0);
        self.cost.write(w);
        w.u32(self.valid_for_seconds);
        w.u8(self.proof.code());
        match self.upstream {
            None => w.u8(0),
            Some(id) => {
                w.u8(1);
                w.raw(&id.0);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offer = Self {
            request_hash: r.array()?,
            provider: NodeId(r.array()?),
            cost: CostStructure::read(r)?,
            valid_for_seconds: r.u32()?,
            proof: ProofMethod::read(r)?,
            upstream: if r.present("upstream")? {
                Some(AgreementId(r.array()?))
            } else {
                None
            },
        };
        if offer.valid_for_seconds == 0
            || offer.valid_for_seconds > crate::params::MAX_OFFER_VALIDITY_SECONDS
        {
            return Err(r.invalid("valid_for_seconds", "must be 1 to 300"));
        }
        Ok(offer)
    }
}

/// A provider's refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// `Blake3` of the signed request refused.
    pub request_hash: [u8; 32],
    /// The provider (signer).
    pub provider: NodeId,
    /// Why.
    pub reason: RejectReason,
}

impl Rejection {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.provider
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.request_hash);
        w.raw(&self.provider.0);
        w.u8(self.reason.code());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            request_hash: r.array()?,
            provider: NodeId(r.array()?),
            reason: RejectReason::read(r)?,
        })
    }
}

/// The consumer's countersignature (§5 negotiation step 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The agreement bound.
    pub agreement_id: AgreementId,
    /// The consumer (signer).
    pub consumer: NodeId,
}

impl Acceptance {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.consumer
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.agreement_id.0);
        w.raw(&self.consumer.0);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            agreement_id: AgreementId(r.array()?),
            consumer: NodeId(r.array()?),
        })
    }
}

/// A cancellation by either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The agreement cancelled.
    pub agreement_id: AgreementId,
    /// The side cancelling (signer).
    pub by: NodeId,
    /// Why.
    pub reason: CancelReason,
}

impl Cancel {
    /// The signer.
    pub fn signer(&self) -> NodeId {
        self.by
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.agreement_id.0);
        w.raw(&self.by.0);
        w.u8(self.reason.code());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            agreement_id: AgreementId(r.array()?),
            by: NodeId(r.array()?),
            reason: CancelReason::read(r)?,
        })
    }
}

/// Largest request: 16+16+34+17+4+16+1+1+8+64.
pub const MAX_REQUEST_LEN: usize = 177;
/// Largest offer: 32+16+17+4+1+33+64.
pub const MAX_OFFER_LEN: usize = 167;
/// Rejection length.
pub const REJECTION_LEN: usize = 113;
/// Acceptance length.
pub const ACCEPTANCE_LEN: usize = 112;
/// Cancel length.
pub const CANCEL_LEN: usize = 113;

signed_record!(
    /// A signed [`Request`].
    SignedRequest,
    Request,
    MarketTag::Request,
    "agreement request",
    MAX_REQUEST_LEN
);
signed_record!(
    /// A signed [`Offer`].
    SignedOffer,
    Offer,
    MarketTag::Offer,
    "agreement offer",
    MAX_OFFER_LEN
);
signed_record!(
    /// A signed [`Rejection`].
    SignedRejection,
    Rejection,
    MarketTag::Rejection,
    "agreement rejection",
    REJECTION_LEN
);
signed_record!(
    /// A signed [`Acceptance`].
    SignedAcceptance,
    Acceptance,
    MarketTag::Acceptance,
    "agreement acceptance",
    ACCEPTANCE_LEN
);
signed_record!(
    /// A signed [`Cancel`].
    SignedCancel,
    Cancel,
    MarketTag::Cancel,
    "agreement cancel",
    CANCEL_LEN
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use crate::record::RecordError;
    use proptest::prelude::*;

    pub(crate) fn request() -> Request {
        Request {
            consumer: node_key(1).node_id(),
            provider: node_key(2).node_id(),
            capability: Capability::Compute(ComputeTarget::Function(FunctionId::of("embed"))),
            cost_cap: CostStructure::PerCycle {
                per_million: 50,
                max_cycles: 1 << 30,
            },
            duration_seconds: 3_600,
            channel: ChannelId([7; 16]),
            proof: ProofMethod::ResultHash,
            privacy: Privacy::None,
            nonce: 99,
        }
    }

    #[test]
    fn records_round_trip_at_their_documented_sizes() {
        let req = SignedRequest::sign(request(), &node_key(1)).unwrap();
        assert_eq!(req.as_bytes().len(), MAX_REQUEST_LEN);
        assert_eq!(SignedRequest::decode(req.as_bytes()).unwrap(), req);
        req.verify(&node_key(1).peer_key()).unwrap();
        let offer = Offer {
            request_hash: req.hash(),
            provider: node_key(2).node_id(),
            cost: CostStructure::PerCycle {
                per_million: 40,
                max_cycles: 1 << 30,
            },
            valid_for_seconds: 30,
            proof: ProofMethod::ResultHash,
            upstream: Some(AgreementId([3; 32])),
        };
        let offer = SignedOffer::sign(offer, &node_key(2)).unwrap();
        assert_eq!(offer.as_bytes().len(), MAX_OFFER_LEN);
        assert_eq!(SignedOffer::decode(offer.as_bytes()).unwrap(), offer);
        let id = AgreementId::of(&req, &offer);
        let mut pre = req.as_bytes().to_vec();
        pre.extend_from_slice(offer.as_bytes());
        assert_eq!(id.0, *blake3::hash(&pre).as_bytes());
        let rej = SignedRejection::sign(
            Rejection {
                request_hash: req.hash(),
                provider: node_key(2).node_id(),
                reason: RejectReason::Busy,
            },
            &node_key(2),
        )
        .unwrap();
        assert_eq!(rej.as_bytes().len(), REJECTION_LEN);
        assert_eq!(SignedRejection::decode(rej.as_bytes()).unwrap(), rej);
        let acc = SignedAcceptance::sign(
            Acceptance {
                agreement_id: id,
                consumer: node_key(1).node_id(),
            },
            &node_key(1),
        )
        .unwrap();
        assert_eq!(acc.as_bytes().len(), ACCEPTANCE_LEN);
        assert_eq!(SignedAcceptance::decode(acc.as_bytes()).unwrap(), acc);
        let cancel = SignedCancel::sign(
            Cancel {
                agreement_id: id,
                by: node_key(2).node_id(),
                reason: CancelReason::Shutdown,
            },
            &node_key(2),
        )
        .unwrap();
        assert_eq!(cancel.as_bytes().len(), CANCEL_LEN);
        assert_eq!(SignedCancel::decode(cancel.as_bytes()).unwrap(), cancel);
    }

    #[test]
    fn signing_and_verifying_check_the_signer() {
        assert!(matches!(
            SignedRequest::sign(request(), &node_key(2)),
            Err(RecordError::WrongSigner { .. })
        ));
        let req = SignedRequest::sign(request(), &node_key(1)).unwrap();
        assert!(matches!(
            req.verify(&node_key(2).peer_key()),
            Err(RecordError::WrongSigner { .. })
        ));
        let mut bytes = req.as_bytes().to_vec();
        bytes[60] ^= 1;
        let forged = SignedRequest::decode(&bytes).unwrap();
        assert!(matches!(
            forged.verify(&node_key(1).peer_key()),
            Err(RecordError::BadSignature { .. })
        ));
    }

    #[test]
    fn invalid_fields_are_rejected() {
        let mut r = request();
        r.duration_seconds = 0;
        assert!(matches!(
            SignedRequest::sign(r, &node_key(1)),
            Err(RecordError::Malformed(DecodeError::Invalid {
                field: "duration_seconds",
                ..
            }))
        ));
        let mut r = request();
        r.provider = r.consumer;
        assert!(SignedRequest::sign(r, &node_key(1)).is_err());
        // A receiver refuses the same rule broken on the wire.
        let signed = SignedRequest::sign(request(), &node_key(1)).unwrap();
        let mut bytes = signed.as_bytes().to_vec();
        let duration_at = 16 + 16 + 34 + 17;
        bytes[duration_at..duration_at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(SignedRequest::decode(&bytes).is_err());
        for code in 0..4 {
            assert_eq!(ProofMethod::from_code(code).unwrap().code(), code);
            assert_eq!(Privacy::from_code(code).unwrap().code(), code);
            assert_eq!(CancelReason::from_code(code).unwrap().code(), code);
        }
        assert!(ProofMethod::from_code(4).is_none());
        assert!(RejectReason::from_code(6).is_none());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SignedRequest::decode(&bytes);
            let _ = SignedOffer::decode(&bytes);
            let _ = SignedRejection::decode(&bytes);
            let _ = SignedAcceptance::decode(&bytes);
            let _ = SignedCancel::decode(&bytes);
        }
    }
}
