//! One side's view of one agreement, as an explicit state machine.

use serde::{Deserialize, Serialize};

use super::error::AgreementError;
use super::messages::{
    Acceptance, AgreementId, Cancel, CancelReason, Offer, ProofMethod, RejectReason, Rejection,
    Request, SignedAcceptance, SignedCancel, SignedOffer, SignedRejection, SignedRequest,
};
use crate::cost::CostStructure;
use crate::identity::{NodeKey, PeerKey};
use crate::params::{MAX_OFFER_VALIDITY_SECONDS, OFFER_TIMEOUT_MS};
use crate::wire::{DecodeError, Reader, Writer};
use mehr_ledger::NodeId;

/// Which side of the agreement this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Asks for and pays for the capability.
    Consumer,
    /// Provides it.
    Provider,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Provider => "provider",
        }
    }

    fn other(self) -> Self {
        match self {
            Role::Consumer => Role::Provider,
            Role::Provider => Role::Consumer,
        }
    }
}

/// Where an agreement stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AgreementState {
    /// The request was sent (consumer) or received (provider); no answer yet.
    Proposed,
    /// The offer was received (consumer) or sent (provider); not countersigned yet.
    Offered,
    /// Countersigned: the service runs and is paid for.
    Active,
    /// The provider turned the request down.
    Rejected(RejectReason),
    /// A side cancelled it.
    Cancelled {
        /// The side that cancelled.
        by: Role,
        /// Why.
        reason: CancelReason,
    },
    /// The negotiation ran out of time (no offer in 30 s, or no countersignature in time).
    Expired,
    /// Ended for failed verification (M missed heartbeats).
    Terminated,
    /// Ran its full duration, or the job finished.
    Completed,
}

impl AgreementState {
    /// Whether no further transition is possible.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            AgreementState::Proposed | AgreementState::Offered | AgreementState::Active
        )
    }

    fn code(&self) -> [u8; 3] {
        match *self {
            AgreementState::Proposed => [0, 0, 0],
            AgreementState::Offered => [1, 0, 0],
            AgreementState::Active => [2, 0, 0],
            AgreementState::Rejected(reason) => [3, reason.code(), 0],
            AgreementState::Cancelled { by, reason } => {
                [4, u8::from(by == Role::Provider), reason.code()]
            }
            AgreementState::Expired => [5, 0, 0],
            AgreementState::Terminated => [6, 0, 0],
            AgreementState::Completed => [7, 0, 0],
        }
    }

    fn from_code(code: [u8; 3]) -> Option<Self> {
        let [state, a, b] = code;
        let role = |v: u8| match v {
            0 => Some(Role::Consumer),
            1 => Some(Role::Provider),
            _ => None,
        };
        let decoded = match state {
            0 => AgreementState::Proposed,
            1 => AgreementState::Offered,
            2 => AgreementState::Active,
            3 => AgreementState::Rejected(RejectReason::from_code(a)?),
            4 => AgreementState::Cancelled {
                by: role(a)?,
                reason: CancelReason::from_code(b)?,
            },
            5 => AgreementState::Expired,
            6 => AgreementState::Terminated,
            7 => AgreementState::Completed,
            _ => return None,
        };
        // One encoding per state: the bytes a state leaves unused must be zero, so that a
        // stored agreement re-encodes to exactly what was read.
        (decoded.code() == code).then_some(decoded)
    }
}

/// The terms a provider offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferTerms {
    /// The price (must fit the request's cap).
    pub cost: CostStructure,
    /// Seconds the consumer has to countersign (1–300; 30 is the spec's timeout).
    pub valid_for_seconds: u32,
    /// The proof the provider will supply.
    pub proof: ProofMethod,
    /// The agreement resold, in a capability chain.
    pub upstream: Option<AgreementId>,
}

impl OfferTerms {
    /// Terms at `cost` with the request's preferred proof and a 30 s window.
    pub fn new(request: &Request, cost: CostStructure) -> Self {
        Self {
            cost,
            valid_for_seconds: (OFFER_TIMEOUT_MS / 1_000) as u32,
            proof: request.proof,
            upstream: None,
        }
    }
}

/// One side's view of one agreement.
///
/// ```text
/// consumer: propose ─Request─▶ provider: receive_request            (both Proposed)
/// provider: make_offer ─Offer─▶ consumer: receive_offer                   (both Offered)
///           reject ─Rejection─▶ receive_rejection                    (both Rejected)
/// consumer: accept ─Acceptance─▶ provider: receive_acceptance       (both Active)
/// either:   cancel ─Cancel─▶ receive_cancel   (Offered|Active → Cancelled)
/// either:   terminate (heartbeats failed) → Terminated; complete → Completed
/// tick:     Proposed 30 s → Expired; Offered past valid_for → Expired;
///           Active past duration → Completed
/// ```
///
/// The daemon persists [`Agreement::to_bytes`] before sending any record a step returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    role: Role,
    state: AgreementState,
    request: SignedRequest,
    offer: Option<SignedOffer>,
    rejection: Option<SignedRejection>,
    acceptance: Option<SignedAcceptance>,
    cancel: Option<SignedCancel>,
    proposed_at_ms: u64,
    offered_at_ms: Option<u64>,
    activated_at_ms: Option<u64>,
}

const PERSIST_VERSION: u8 = 1;

impl Agreement {
    // ---- consumer steps ----

    /// Consumer: signs `request` and starts the negotiation. Returns the record to send.
    pub fn propose(
        key: &NodeKey,
        request: Request,
        now_ms: u64,
    ) -> Result<(Self, SignedRequest), AgreementError> {
        let signed = SignedRequest::sign(request, key)?;
        Ok((Self::new(Role::Consumer, signed.clone(), now_ms), signed))
    }

    /// Consumer: takes the provider's offer, checking signer, signature, the request it
    /// answers, the price cap and the 30 s answer deadline.
    pub fn receive_offer(
        &mut self,
        offer: SignedOffer,
        provider: &PeerKey,
        now_ms: u64,
    ) -> Result<(), AgreementError> {
        self.expect(
            Role::Consumer,
            AgreementState::Proposed,
            "receive an offer for",
        )?;
        self.check_deadline(
            "receive an offer",
            self.proposed_at_ms.saturating_add(OFFER_TIMEOUT_MS),
            now_ms,
        )?;
        let req = self.request.body();
        expect_node("offer provider", req.provider, offer.body().provider)?;
        offer.verify(provider)?;
        if offer.body().request_hash != self.request.hash() {
            return Err(AgreementError::Mismatch {
                what: "offer",
                refers_to: "request",
            });
        }
        offer.body().cost.within(&req.cost_cap)?;
        self.offer = Some(offer);
        self.offered_at_ms = Some(now_ms);
        self.state = AgreementState::Offered;
        Ok(())
    }

    /// Consumer: takes the provider's rejection.
    pub fn receive_rejection(
        &mut self,
        rejection: SignedRejection,
        provider: &PeerKey,
    ) -> Result<(), AgreementError> {
        self.expect(
            Role::Consumer,
            AgreementState::Proposed,
            "receive a rejection for",
        )?;
        expect_node(
            "rejection provider",
            self.request.body().provider,
            rejection.body().provider,
        )?;
        rejection.verify(provider)?;
        if rejection.body().request_hash != self.request.hash() {
            return Err(AgreementError::Mismatch {
                what: "rejection",
                refers_to: "request",
            });
        }
        self.state = AgreementState::Rejected(rejection.body().reason);
        self.rejection = Some(rejection);
        Ok(())
    }

    /// Consumer: countersigns the offer, within its validity. The agreement is active.
    pub fn accept(
        &mut self,
        key: &NodeKey,
        now_ms: u64,
    ) -> Result<SignedAcceptance, AgreementError> {
        self.expect(Role::Consumer, AgreementState::Offered, "accept")?;
        let deadline = self.offer_deadline_ms().unwrap_or(now_ms);
        self.check_deadline("accept", deadline, now_ms)?;
        let id = self
            .id()
            .ok_or(AgreementError::Persisted("offered without an offer"))?;
        let acceptance = SignedAcceptance::sign(
            Acceptance {
                agreement_id: id,
                consumer: self.request.body().consumer,
            },
            key,
        )?;
        self.acceptance = Some(acceptance.clone());
        self.activated_at_ms = Some(now_ms);
        self.state = AgreementState::Active;
        Ok(acceptance)
    }

    // ---- provider steps ----

    /// Provider: takes a consumer's request addressed to `me`.
    pub fn receive_request(
        request: SignedRequest,
        consumer: &PeerKey,
        me: NodeId,
        now_ms: u64,
    ) -> Result<Self, AgreementError> {
        expect_node("request provider", me, request.body().provider)?;
        request.verify(consumer)?;
        Ok(Self::new(Role::Provider, request, now_ms))
    }

    /// Provider: answers with an offer, within 30 s of the request and within its cap.
    pub fn make_offer(
        &mut self,
        key: &NodeKey,
        terms: OfferTerms,
        now_ms: u64,
    ) -> Result<SignedOffer, AgreementError> {
        self.expect(Role::Provider, AgreementState::Proposed, "offer")?;
        self.check_deadline(
            "offer",
            self.proposed_at_ms.saturating_add(OFFER_TIMEOUT_MS),
            now_ms,
        )?;
        terms.cost.within(&self.request.body().cost_cap)?;
        if terms.valid_for_seconds == 0 || terms.valid_for_seconds > MAX_OFFER_VALIDITY_SECONDS {
            return Err(AgreementError::InvalidTerms(
                "valid_for_seconds must be 1 to 300",
            ));
        }
        let offer = SignedOffer::sign(
            Offer {
                request_hash: self.request.hash(),
                provider: self.request.body().provider,
                cost: terms.cost,
                valid_for_seconds: terms.valid_for_seconds,
                proof: terms.proof,
                upstream: terms.upstream,
            },
            key,
        )?;
        self.offer = Some(offer.clone());
        self.offered_at_ms = Some(now_ms);
        self.state = AgreementState::Offered;
        Ok(offer)
    }

    /// Provider: turns the request down.
    pub fn reject(
        &mut self,
        key: &NodeKey,
        reason: RejectReason,
    ) -> Result<SignedRejection, AgreementError> {
        self.expect(Role::Provider, AgreementState::Proposed, "reject")?;
        let rejection = SignedRejection::sign(
            Rejection {
                request_hash: self.request.hash(),
                provider: self.request.body().provider,
                reason,
            },
            key,
        )?;
        self.rejection = Some(rejection.clone());
        self.state = AgreementState::Rejected(reason);
        Ok(rejection)
    }

    /// Provider: takes the consumer's countersignature, within the offer's validity.
    pub fn receive_acceptance(
        &mut self,
        acceptance: SignedAcceptance,
        consumer: &PeerKey,
        now_ms: u64,
    ) -> Result<(), AgreementError> {
        self.expect(
            Role::Provider,
            AgreementState::Offered,
            "receive an acceptance for",
        )?;
        let deadline = self.offer_deadline_ms().unwrap_or(now_ms);
        self.check_deadline("receive an acceptance", deadline, now_ms)?;
        expect_node(
            "acceptance consumer",
            self.request.body().consumer,
            acceptance.body().consumer,
        )?;
        acceptance.verify(consumer)?;
        if Some(acceptance.body().agreement_id) != self.id() {
            return Err(AgreementError::Mismatch {
                what: "acceptance",
                refers_to: "agreement",
            });
        }
        self.acceptance = Some(acceptance);
        self.activated_at_ms = Some(now_ms);
        self.state = AgreementState::Active;
        Ok(())
    }

    // ---- either side ----

    /// Cancels an offered or active agreement; returns the signed notice for the other side.
    pub fn cancel(
        &mut self,
        key: &NodeKey,
        reason: CancelReason,
    ) -> Result<SignedCancel, AgreementError> {
        self.expect_live("cancel")?;
        let id = self.id().ok_or(AgreementError::WrongState {
            step: "cancel",
            state: self.state,
        })?;
        let cancel = SignedCancel::sign(
            Cancel {
                agreement_id: id,
                by: self.me(),
                reason,
            },
            key,
        )?;
        self.cancel = Some(cancel.clone());
        self.state = AgreementState::Cancelled {
            by: self.role,
            reason,
        };
        Ok(cancel)
    }

    /// Takes the other side's cancellation.
    pub fn receive_cancel(
        &mut self,
        cancel: SignedCancel,
        peer: &PeerKey,
    ) -> Result<(), AgreementError> {
        self.expect_live("receive a cancel for")?;
        expect_node("cancel signer", self.counterparty(), cancel.body().by)?;
        cancel.verify(peer)?;
        if Some(cancel.body().agreement_id) != self.id() {
            return Err(AgreementError::Mismatch {
                what: "cancel",
                refers_to: "agreement",
            });
        }
        self.state = AgreementState::Cancelled {
            by: self.role.other(),
            reason: cancel.body().reason,
        };
        self.cancel = Some(cancel);
        Ok(())
    }

    /// Ends an active agreement whose verification failed (e.g. M missed heartbeats).
    pub fn terminate(&mut self) -> Result<(), AgreementError> {
        self.expect_state(AgreementState::Active, "terminate")?;
        self.state = AgreementState::Terminated;
        Ok(())
    }

    /// Ends an active agreement whose job is done before its duration ran out.
    pub fn complete(&mut self) -> Result<(), AgreementError> {
        self.expect_state(AgreementState::Active, "complete")?;
        self.state = AgreementState::Completed;
        Ok(())
    }

    /// Applies the timeouts; returns the new state if it changed.
    pub fn tick(&mut self, now_ms: u64) -> Option<AgreementState> {
        let next = match self.state {
            AgreementState::Proposed
                if now_ms >= self.proposed_at_ms.saturating_add(OFFER_TIMEOUT_MS) =>
            {
                AgreementState::Expired
            }
            AgreementState::Offered if self.offer_deadline_ms().is_some_and(|d| now_ms >= d) => {
                AgreementState::Expired
            }
            AgreementState::Active if self.ends_at_ms().is_some_and(|e| now_ms >= e) => {
                AgreementState::Completed
            }
            _ => return None,
        };
        self.state = next;
        Some(next)
    }

    /// When [`Self::tick`] will next change the state, if it can.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.state {
            AgreementState::Proposed => Some(self.proposed_at_ms.saturating_add(OFFER_TIMEOUT_MS)),
            AgreementState::Offered => self.offer_deadline_ms(),
            AgreementState::Active => self.ends_at_ms(),
            _ => None,
        }
    }

    // ---- accessors ----

    /// This node's side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> AgreementState {
        self.state
    }

    /// The request.
    pub fn request(&self) -> &SignedRequest {
        &self.request
    }

    /// The offer, once made.
    pub fn offer(&self) -> Option<&SignedOffer> {
        self.offer.as_ref()
    }

    /// The countersignature, once given.
    pub fn acceptance(&self) -> Option<&SignedAcceptance> {
        self.acceptance.as_ref()
    }

    /// `Blake3(request ‖ offer)`, once an offer exists.
    pub fn id(&self) -> Option<AgreementId> {
        self.offer
            .as_ref()
            .map(|o| AgreementId::of(&self.request, o))
    }

    /// The other side's node id.
    pub fn counterparty(&self) -> NodeId {
        match self.role {
            Role::Consumer => self.request.body().provider,
            Role::Provider => self.request.body().consumer,
        }
    }

    /// The agreed cost, once offered.
    pub fn cost(&self) -> Option<CostStructure> {
        self.offer.as_ref().map(|o| o.body().cost)
    }

    /// When the request was sent (consumer) or received (provider), caller's ms.
    pub fn proposed_at_ms(&self) -> u64 {
        self.proposed_at_ms
    }

    /// When the offer was received (consumer) or sent (provider), caller's ms.
    pub fn offered_at_ms(&self) -> Option<u64> {
        self.offered_at_ms
    }

    /// When the agreement became active, caller's ms.
    pub fn activated_at_ms(&self) -> Option<u64> {
        self.activated_at_ms
    }

    /// The rejection, if the provider turned the request down.
    pub fn rejection(&self) -> Option<&SignedRejection> {
        self.rejection.as_ref()
    }

    /// The cancellation, if a side cancelled.
    pub fn cancellation(&self) -> Option<&SignedCancel> {
        self.cancel.as_ref()
    }

    /// When an active agreement's duration runs out (caller's ms).
    pub fn ends_at_ms(&self) -> Option<u64> {
        self.activated_at_ms
            .map(|a| a.saturating_add(u64::from(self.request.body().duration_seconds) * 1_000))
    }

    fn me(&self) -> NodeId {
        match self.role {
            Role::Consumer => self.request.body().consumer,
            Role::Provider => self.request.body().provider,
        }
    }

    fn offer_deadline_ms(&self) -> Option<u64> {
        let valid = self.offer.as_ref()?.body().valid_for_seconds;
        Some(self.offered_at_ms?.saturating_add(u64::from(valid) * 1_000))
    }

    fn new(role: Role, request: SignedRequest, now_ms: u64) -> Self {
        Self {
            role,
            state: AgreementState::Proposed,
            request,
            offer: None,
            rejection: None,
            acceptance: None,
            cancel: None,
            proposed_at_ms: now_ms,
            offered_at_ms: None,
            activated_at_ms: None,
        }
    }

    fn expect(
        &self,
        role: Role,
        state: AgreementState,
        step: &'static str,
    ) -> Result<(), AgreementError> {
        if self.role != role {
            return Err(AgreementError::WrongRole {
                step,
                role: role.name(),
            });
        }
        self.expect_state(state, step)
    }

    fn expect_state(
        &self,
        state: AgreementState,
        step: &'static str,
    ) -> Result<(), AgreementError> {
        if self.state == state {
            Ok(())
        } else {
            Err(AgreementError::WrongState {
                step,
                state: self.state,
            })
        }
    }

    fn expect_live(&self, step: &'static str) -> Result<(), AgreementError> {
        match self.state {
            AgreementState::Offered | AgreementState::Active => Ok(()),
            state => Err(AgreementError::WrongState { step, state }),
        }
    }

    fn check_deadline(
        &mut self,
        step: &'static str,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<(), AgreementError> {
        if now_ms >= deadline_ms {
            self.state = AgreementState::Expired;
            Err(AgreementError::Timeout {
                step,
                deadline_ms,
                now_ms,
            })
        } else {
            Ok(())
        }
    }

    // ---- persistence ----

    /// Binary encoding for the daemon's store:
    /// `version u8 (1), role u8, state [3], proposed_at u64, offered_at opt u64,
    /// activated_at opt u64, request bytes16, offer/rejection/acceptance/cancel opt bytes16`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(PERSIST_VERSION);
        w.u8(u8::from(self.role == Role::Provider));
        w.raw(&self.state.code());
        w.u64(self.proposed_at_ms);
        for t in [self.offered_at_ms, self.activated_at_ms] {
            match t {
                None => w.u8(0),
                Some(v) => {
                    w.u8(1);
                    w.u64(v);
                }
            }
        }
        w.bytes16(self.request.as_bytes());
        let records = [
            self.offer.as_ref().map(SignedOffer::as_bytes),
            self.rejection.as_ref().map(SignedRejection::as_bytes),
            self.acceptance.as_ref().map(SignedAcceptance::as_bytes),
            self.cancel.as_ref().map(SignedCancel::as_bytes),
        ];
        for record in records {
            match record {
                None => w.u8(0),
                Some(bytes) => {
                    w.u8(1);
                    w.bytes16(bytes);
                }
            }
        }
        w.into_bytes()
    }

    /// Restores an agreement from [`Self::to_bytes`]. Signatures were checked before the
    /// agreement was stored; the records are re-parsed and their links re-checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AgreementError> {
        let mut r = Reader::new("persisted agreement", bytes);
        if r.u8()? != PERSIST_VERSION {
            return Err(AgreementError::Persisted("unknown version"));
        }
        let role = match r.u8()? {
            0 => Role::Consumer,
            1 => Role::Provider,
            _ => return Err(AgreementError::Persisted("unknown role")),
        };
        let state = AgreementState::from_code(r.array()?)
            .ok_or(AgreementError::Persisted("unknown state"))?;
        let proposed_at_ms = r.u64()?;
        let offered_at_ms = optional_u64(&mut r)?;
        let activated_at_ms = optional_u64(&mut r)?;
        let request = SignedRequest::decode(r.bytes16("request", usize::from(u16::MAX))?)?;
        let offer = optional_record(&mut r, SignedOffer::decode)?;
        let rejection = optional_record(&mut r, SignedRejection::decode)?;
        let acceptance = optional_record(&mut r, SignedAcceptance::decode)?;
        let cancel = optional_record(&mut r, SignedCancel::decode)?;
        r.finish()?;
        let a = Self {
            role,
            state,
            request,
            offer,
            rejection,
            acceptance,
            cancel,
            proposed_at_ms,
            offered_at_ms,
            activated_at_ms,
        };
        if let Some(o) = &a.offer
            && (o.body().request_hash != a.request.hash() || a.offered_at_ms.is_none())
        {
            return Err(AgreementError::Persisted(
                "offer does not answer the request",
            ));
        }
        if let Some(acc) = &a.acceptance
            && (Some(acc.body().agreement_id) != a.id() || a.activated_at_ms.is_none())
        {
            return Err(AgreementError::Persisted("acceptance of another agreement"));
        }
        let consistent = match a.state {
            AgreementState::Proposed => a.offer.is_none(),
            AgreementState::Offered => a.offer.is_some() && a.acceptance.is_none(),
            AgreementState::Active | AgreementState::Terminated | AgreementState::Completed => {
                a.acceptance.is_some()
            }
            AgreementState::Rejected(_) => a.rejection.is_some(),
            AgreementState::Cancelled { .. } => a.cancel.is_some(),
            AgreementState::Expired => true,
        };
        if !consistent {
            return Err(AgreementError::Persisted("state and records disagree"));
        }
        Ok(a)
    }
}

fn optional_u64(r: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    Ok(if r.present("time")? {
        Some(r.u64()?)
    } else {
        None
    })
}

fn optional_record<T>(
    r: &mut Reader<'_>,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if r.present("record")? {
        Ok(Some(decode(r.bytes16("record", usize::from(u16::MAX))?)?))
    } else {
        Ok(None)
    }
}

fn expect_node(
    field: &'static str,
    expected: NodeId,
    actual: NodeId,
) -> Result<(), AgreementError> {
    if expected == actual {
        Ok(())
    } else {
        Err(AgreementError::WrongNode {
            field,
            expected,
            actual,
        })
    }
}
