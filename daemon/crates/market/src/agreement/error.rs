//! Why an agreement transition was refused.

use mehr_ledger::NodeId;
use thiserror::Error;

use super::AgreementState;
use crate::cost::CostError;
use crate::record::RecordError;
use crate::wire::DecodeError;

/// Why an agreement step failed. A failed step leaves the agreement unchanged, except a
/// deadline miss, which moves it to [`AgreementState::Expired`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AgreementError {
    /// A record is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A record's signature or signer is wrong.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The offered price does not fit the request's cap.
    #[error("offer does not fit the request: {0}")]
    Cost(#[from] CostError),
    /// The step is not allowed in the current state.
    #[error("cannot {step} an agreement that is {state:?}")]
    WrongState {
        /// The step attempted.
        step: &'static str,
        /// The state it was attempted in.
        state: AgreementState,
    },
    /// The step belongs to the other side.
    #[error("only the {role} may {step}")]
    WrongRole {
        /// The step attempted.
        step: &'static str,
        /// The side allowed to take it.
        role: &'static str,
    },
    /// A record names another node than the negotiation requires.
    #[error("{field} is {actual}, expected {expected}")]
    WrongNode {
        /// The field checked.
        field: &'static str,
        /// The node required.
        expected: NodeId,
        /// The node found.
        actual: NodeId,
    },
    /// A record answers another request or agreement.
    #[error("{what} refers to another {refers_to}")]
    Mismatch {
        /// The record received.
        what: &'static str,
        /// What it should have referred to.
        refers_to: &'static str,
    },
    /// The step came after its deadline; the agreement expired.
    #[error("{step} at {now_ms} ms is past the deadline of {deadline_ms} ms")]
    Timeout {
        /// The step attempted.
        step: &'static str,
        /// The deadline, caller's ms.
        deadline_ms: u64,
        /// The time of the attempt.
        now_ms: u64,
    },
    /// Offer terms break a rule.
    #[error("offer terms invalid: {0}")]
    InvalidTerms(&'static str),
    /// A persisted agreement does not decode.
    #[error("persisted agreement: {0}")]
    Persisted(&'static str),
}

impl From<mehr_wire::WireError> for AgreementError {
    /// A stored agreement read field by field fails like a malformed record.
    fn from(e: mehr_wire::WireError) -> Self {
        AgreementError::Decode(e.into())
    }
}
