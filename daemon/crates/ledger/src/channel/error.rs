//! Errors of the channel state machine.

use thiserror::Error;

use super::UnilateralReason;
use crate::ids::{ChannelId, Party};
use crate::wire::DecodeError;

/// Why a channel operation or incoming channel message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    /// A state or acknowledgement whose seq is not above the latest co-signed seq (a stale or
    /// replayed message).
    #[error("stale or replayed sequence: latest co-signed seq is {latest}, message has {got}")]
    StaleSequence {
        /// The latest co-signed seq.
        latest: u64,
        /// The seq in the message.
        got: u64,
    },
    /// A proposed state whose seq jumps more than [`super::MAX_SEQUENCE_STEP`] past the latest
    /// co-signed seq: honest proposals step by one, and a jump towards `u64::MAX` would leave
    /// the channel no room for another state.
    #[error("sequence jump: latest co-signed seq is {latest}, proposal has {got}")]
    SequenceJump {
        /// The latest co-signed seq.
        latest: u64,
        /// The seq in the proposal.
        got: u64,
    },
    /// A signature that does not verify under the named party's key.
    #[error("bad signature from {party}")]
    BadSignature {
        /// Whose signature failed.
        party: Party,
    },
    /// A payment larger than the payer's balance.
    #[error("overdraft by {party}: balance {available} μ, payment {requested} μ")]
    Overdraft {
        /// The payer.
        party: Party,
        /// Its balance before the payment.
        available: u64,
        /// The payment asked for.
        requested: u64,
    },
    /// A message for another channel.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// A state whose balances do not follow from the deposits and cumulative totals.
    #[error(
        "balance of {party} not conserved: deposits and totals give {expected} μ, state claims {claimed} μ"
    )]
    BalanceNotConserved {
        /// The party whose balance is wrong.
        party: Party,
        /// The balance implied by deposits and totals.
        expected: u64,
        /// The balance the state claims.
        claimed: u64,
    },
    /// A state whose implied deposit differs from the deposit locked at open.
    #[error("deposit of {party} changed: locked {expected} μ at open, state implies {claimed} μ")]
    DepositChanged {
        /// The party whose deposit differs.
        party: Party,
        /// The deposit locked at open.
        expected: u64,
        /// The deposit the state implies.
        claimed: u64,
    },
    /// A body whose balances and totals imply a negative deposit.
    #[error("channel body is inconsistent: its balances and totals imply a negative deposit")]
    InconsistentBody,
    /// The operation is not allowed in the channel's current phase.
    #[error("cannot {operation} while the channel is {phase}")]
    WrongState {
        /// What was attempted.
        operation: &'static str,
        /// The channel's phase.
        phase: &'static str,
    },
    /// A state that changes the parties or channel id.
    #[error("state changes the channel's parties or id")]
    PartiesChanged,
    /// A cumulative total that went down (a payment taken back).
    #[error("cumulative total paid by {payer} went down from {before} μ to {after} μ")]
    PaymentReversed {
        /// The payer of that direction.
        payer: Party,
        /// Total before.
        before: u64,
        /// Total claimed.
        after: u64,
    },
    /// An update proposed by the other party that makes this node pay. Only the payer
    /// proposes payments; the payee only acknowledges.
    #[error(
        "update would make {payer} (the acceptor) pay {amount} μ; only the payer may propose a payment"
    )]
    UnauthorizedDebit {
        /// The acceptor, who would pay.
        payer: Party,
        /// The increase of its cumulative total.
        amount: u64,
    },
    /// Lottery terms that break the rules (period went back, or the proposer changed the
    /// other party's probability, or changed terms without starting a new period).
    #[error("invalid lottery terms: {0}")]
    InvalidLotteryTerms(&'static str),
    /// Both parties proposed an update for the same seq; A's proposal wins, so B drops its own.
    #[error("concurrent proposal for seq {seq}: party A's proposal takes precedence")]
    ConcurrentProposal {
        /// The contested seq.
        seq: u64,
    },
    /// An acknowledgement with no matching outstanding proposal.
    #[error("no outstanding proposal matches this acknowledgement")]
    NoPendingProposal,
    /// Another proposal is still outstanding.
    #[error("a proposal for seq {seq} is still outstanding")]
    ProposalOutstanding {
        /// Its seq.
        seq: u64,
    },
    /// The message names this node as its author, or the other party as the acceptor.
    #[error("message is attributed to the wrong party")]
    WrongParty,
    /// An open proposal that breaks the opening rules.
    #[error("invalid channel open: {0}")]
    InvalidOpen(&'static str),
    /// A settlement proposal whose state differs from the latest co-signed state.
    #[error("settlement is for a state other than the latest co-signed one (seq {latest})")]
    StateMismatch {
        /// The latest co-signed seq.
        latest: u64,
    },
    /// A unilateral settlement filed before its precondition holds.
    #[error("unilateral settlement ({reason:?}) not allowed yet: {detail}")]
    UnilateralNotAllowed {
        /// The reason given.
        reason: UnilateralReason,
        /// What is missing.
        detail: &'static str,
    },
    /// The dispute window is still open.
    #[error("dispute window is open until round {closes_at}")]
    DisputeWindowOpen {
        /// The first round at which the dispute can be resolved.
        closes_at: u64,
    },
    /// A challenge after the dispute window closed.
    #[error("dispute window closed at round {closed_at}")]
    DisputeWindowClosed {
        /// The round it closed.
        closed_at: u64,
    },
    /// An amount or seq that would overflow a u64.
    #[error("amount or sequence overflows a u64")]
    AmountOverflow,
    /// A message that could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}
