//! Agreements (§5 agreements, decision 3, §8 items 9 and 24): single-round negotiation
//! (signed request → signed offer or rejection → consumer countersignature), the per-agreement
//! state machine with its timeouts, and capability chains.

mod chain;
mod error;
mod messages;
mod state;

pub use chain::{ChainError, ChainLink, break_even_markup, resale_terms, validate_chain_link};
pub use error::AgreementError;
pub use messages::{
    ACCEPTANCE_LEN, Acceptance, AgreementId, CANCEL_LEN, Cancel, CancelReason, Capability,
    ComputeTarget, MAX_OFFER_LEN, MAX_REQUEST_LEN, Offer, Privacy, ProofMethod, REJECTION_LEN,
    RejectReason, Rejection, Request, SignedAcceptance, SignedCancel, SignedOffer, SignedRejection,
    SignedRequest,
};
pub use state::{Agreement, AgreementState, OfferTerms, Role};

#[cfg(test)]
mod tests;
