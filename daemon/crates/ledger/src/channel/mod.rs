//! Bilateral payment channels (§4 payment channels, decisions 3–4, §8 items 14, 17, 23).
//!
//! [`Channel`] is one party's view of a channel and an explicit state machine:
//!
//! ```text
//!  A: Channel::propose_open ──OpenProposal──▶ B: Channel::accept_open
//!  A: PendingOpen::complete ◀──OpenAccept───   (both now hold the co-signed seq-0 state)
//!
//!  Open ──propose_payment / propose_lottery_terms──▶ UpdateProposal ──▶ receive_update
//!       ◀──────────────────────── UpdateAck ◀─────────────────────────┘
//!       receive_ack: the proposal becomes the latest co-signed state
//!
//!  Open ──propose_settlement(Checkpoint|CooperativeClose)──▶ receive_settlement
//!       ◀──SettleAccept── (both hold the SettlementRecord; a close moves to Closed)
//!
//!  Open ──file_unilateral (3 failed settlements, or 4 idle epochs)──▶ Disputing
//!  Disputing ──challenge(higher co-signed state) during 2880 rounds──▶ Disputing
//!  Disputing ──resolve_dispute after the window──▶ Closed (unilateral-close record)
//! ```
//!
//! Only the payer proposes a payment: an update that raises the acceptor's cumulative total
//! is refused. Each relay sets its own lottery probability by starting a new period.
//! The daemon must persist (see [`Channel::to_persisted`]) before it sends any message this
//! type returns: a signature, once sent, commits the node to that state.

mod dispute;
mod error;
mod messages;
mod state;

pub use dispute::Dispute;
pub use error::ChannelError;
pub use messages::{
    ChannelMessage, OPEN_ACCEPT_LEN, OPEN_PROPOSAL_LEN, OpenAccept, OpenProposal,
    SETTLE_ACCEPT_LEN, SETTLE_PROPOSAL_LEN, SettleAccept, SettleProposal, UNILATERAL_LEN,
    UPDATE_ACK_LEN, UPDATE_PROPOSAL_LEN, UnilateralReason, UnilateralSettlement, UpdateAck,
    UpdateProposal,
};
pub use state::{
    CHANNEL_BODY_LEN, CHANNEL_STATE_LEN, ChannelBody, ChannelKeys, ChannelState, Deposits,
    LotteryTerms,
};

use ed25519_dalek::{Signature, SigningKey};

/// The largest step a received state's seq may take past the latest co-signed one. Honest
/// proposals step by exactly one; the slack covers nothing the protocol needs and is kept
/// small so that no sequence of valid-looking proposals can push a channel to `u64::MAX`,
/// where it could take no further state.
pub const MAX_SEQUENCE_STEP: u64 = 16;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ids::{CHANNEL_NONCE_LEN, ChannelId, NodeId, Party};
use crate::ledger::{SettlementKind, SettlementRecord, sign_settlement};
use crate::lottery::{LotteryError, RedeemedTickets, RelayTicket, VrfVerifier, WinProbability};
use crate::params::{
    ABANDONMENT_IDLE_EPOCHS, SETTLEMENT_FAILURES_BEFORE_UNILATERAL, SETTLEMENT_TIMEOUT_ROUNDS,
};
use crate::wire::DecodeError;
use state::balances_for;

/// The coarse phase of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelPhase {
    /// Updates and settlements are possible.
    Open,
    /// A unilateral settlement was filed; the challenge window runs.
    Disputing,
    /// The channel is closed; its final record is known.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    Disputing(Box<Dispute>),
    Closed(Box<SettlementRecord>),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::Disputing(_) => "disputing",
            Phase::Closed(_) => "closed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Update {
        body: ChannelBody,
        signature: Signature,
    },
    Settlement {
        kind: SettlementKind,
        body: ChannelBody,
        signature: Signature,
        started_round: u64,
    },
}

/// A's side of an open that B has not yet accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingOpen {
    proposal: OpenProposal,
    keys: ChannelKeys,
}

impl PendingOpen {
    /// The proposal to send (again, if it was lost).
    pub fn proposal(&self) -> &OpenProposal {
        &self.proposal
    }

    /// Completes the open with B's countersignature.
    pub fn complete(self, accept: &OpenAccept, now_epoch: u64) -> Result<Channel, ChannelError> {
        let body = self.proposal.body;
        if accept.channel_id != body.channel_id {
            return Err(ChannelError::UnknownChannel(accept.channel_id));
        }
        let state = ChannelState {
            body,
            sig_a: self.proposal.sig_a,
            sig_b: accept.sig_b,
        };
        Channel::restore(Party::A, self.keys, state, now_epoch)
    }
}

/// One party's view of a payment channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    me: Party,
    keys: ChannelKeys,
    deposits: Deposits,
    latest: ChannelState,
    previous_terms: Option<LotteryTerms>,
    phase: Phase,
    pending: Option<Pending>,
    last_active_epoch: u64,
    settlement_failures: u32,
}

impl Channel {
    /// A proposes a channel to B with both deposits and the initial lottery terms. The
    /// nonce in the channel id comes from `rng`.
    #[allow(clippy::too_many_arguments)]
    pub fn propose_open<R: RngCore + CryptoRng>(
        rng: &mut R,
        me: NodeId,
        peer: NodeId,
        keys: ChannelKeys,
        deposits: Deposits,
        lottery: LotteryTerms,
        key: &SigningKey,
    ) -> Result<PendingOpen, ChannelError> {
        if me == peer {
            return Err(ChannelError::InvalidOpen(
                "a channel needs two distinct parties",
            ));
        }
        if key.verifying_key() != keys.a {
            return Err(ChannelError::WrongParty);
        }
        let mut nonce = [0u8; CHANNEL_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let channel_id = ChannelId::derive(&me, &peer, &nonce);
        let body = ChannelBody::opening(channel_id, me, peer, deposits, lottery);
        let sig_a = body.sign(key);
        Ok(PendingOpen {
            proposal: OpenProposal { nonce, body, sig_a },
            keys,
        })
    }

    /// B accepts an open proposal: checks it and countersigns the seq-0 state.
    pub fn accept_open(
        proposal: &OpenProposal,
        keys: ChannelKeys,
        key: &SigningKey,
        now_epoch: u64,
    ) -> Result<(Channel, OpenAccept), ChannelError> {
        let body = proposal.body;
        if key.verifying_key() != keys.b {
            return Err(ChannelError::WrongParty);
        }
        if body.seq != 0 {
            return Err(ChannelError::InvalidOpen("seq must be 0"));
        }
        if body.paid_a_to_b != 0 || body.paid_b_to_a != 0 {
            return Err(ChannelError::InvalidOpen(
                "cumulative totals must start at 0",
            ));
        }
        if ChannelId::derive(&body.party_a, &body.party_b, &proposal.nonce) != body.channel_id {
            return Err(ChannelError::InvalidOpen(
                "channel id does not match a ‖ b ‖ nonce",
            ));
        }
        if !body.verify(&keys.a, &proposal.sig_a) {
            return Err(ChannelError::BadSignature { party: Party::A });
        }
        let sig_b = body.sign(key);
        let state = ChannelState {
            body,
            sig_a: proposal.sig_a,
            sig_b,
        };
        let channel = Channel::restore(Party::B, keys, state, now_epoch)?;
        Ok((
            channel,
            OpenAccept {
                channel_id: body.channel_id,
                sig_b,
            },
        ))
    }

    /// Rebuilds an open channel from its latest co-signed state (checks both signatures).
    pub fn restore(
        me: Party,
        keys: ChannelKeys,
        latest: ChannelState,
        last_active_epoch: u64,
    ) -> Result<Channel, ChannelError> {
        latest.verify(&keys)?;
        let deposits = latest
            .body
            .deposits()
            .ok_or(ChannelError::InconsistentBody)?;
        Ok(Channel {
            me,
            keys,
            deposits,
            latest,
            previous_terms: None,
            phase: Phase::Open,
            pending: None,
            last_active_epoch,
            settlement_failures: 0,
        })
    }

    /// The channel id.
    pub fn id(&self) -> ChannelId {
        self.latest.body.channel_id
    }

    /// Which party this node is.
    pub fn me(&self) -> Party {
        self.me
    }

    /// The parties' keys.
    pub fn keys(&self) -> &ChannelKeys {
        &self.keys
    }

    /// The latest co-signed state.
    pub fn latest(&self) -> &ChannelState {
        &self.latest
    }

    /// The deposits locked at open.
    pub fn deposits(&self) -> Deposits {
        self.deposits
    }

    /// The coarse phase.
    pub fn phase(&self) -> ChannelPhase {
        match self.phase {
            Phase::Open => ChannelPhase::Open,
            Phase::Disputing(_) => ChannelPhase::Disputing,
            Phase::Closed(_) => ChannelPhase::Closed,
        }
    }

    /// The running dispute, if any.
    pub fn dispute(&self) -> Option<&Dispute> {
        match &self.phase {
            Phase::Disputing(d) => Some(d.as_ref()),
            _ => None,
        }
    }

    /// The final record of a closed channel.
    pub fn final_record(&self) -> Option<&SettlementRecord> {
        match &self.phase {
            Phase::Closed(r) => Some(r.as_ref()),
            _ => None,
        }
    }

    /// The epoch of the last co-signed update (for abandonment).
    pub fn last_active_epoch(&self) -> u64 {
        self.last_active_epoch
    }

    /// Failed cooperative settlement attempts since the last success.
    pub fn settlement_failures(&self) -> u32 {
        self.settlement_failures
    }

    /// The probability committed for tickets won by `relay` in `period`: the current period
    /// or the one before it (so tickets in flight at a period change still redeem).
    pub fn committed_win_probability(&self, period: u64, relay: Party) -> Option<WinProbability> {
        let current = self.latest.body.lottery;
        if current.period == period {
            return Some(current.win_probability(relay));
        }
        self.previous_terms
            .filter(|t| t.period == period)
            .map(|t| t.win_probability(relay))
    }

    /// The payer's check of a ticket won by the other party on this channel: the committed
    /// probability for its period, the VRF proof, the win, and no earlier redemption. Returns
    /// the gross payout to pass to [`Channel::propose_payment`]. The caller must also check
    /// that it sent a packet with `ticket.packet_hash` and priced it at `ticket.cost`.
    pub fn check_ticket(
        &self,
        ticket: &RelayTicket,
        relay: &VrfVerifier,
        redeemed: &mut RedeemedTickets,
    ) -> Result<u64, LotteryError> {
        if ticket.channel_id != self.id() {
            return Err(LotteryError::WrongChannel);
        }
        let committed = self
            .committed_win_probability(ticket.period, self.me.other())
            .ok_or(LotteryError::UnknownPeriod {
                period: ticket.period,
            })?;
        if committed != ticket.win_probability {
            return Err(LotteryError::ProbabilityMismatch {
                claimed_ppm: ticket.win_probability.ppm(),
                committed_ppm: committed.ppm(),
            });
        }
        let payout = ticket.verify(relay)?;
        redeemed.redeem(ticket.period, ticket.packet_hash)?;
        Ok(payout)
    }

    fn require_open(&self, operation: &'static str) -> Result<(), ChannelError> {
        match self.phase {
            Phase::Open => Ok(()),
            ref other => Err(ChannelError::WrongState {
                operation,
                phase: other.name(),
            }),
        }
    }

    fn require_no_pending(&self) -> Result<(), ChannelError> {
        match &self.pending {
            None => Ok(()),
            Some(Pending::Update { body, .. }) | Some(Pending::Settlement { body, .. }) => {
                Err(ChannelError::ProposalOutstanding { seq: body.seq })
            }
        }
    }

    fn propose(&mut self, body: ChannelBody, key: &SigningKey) -> UpdateProposal {
        let signature = body.sign(key);
        self.pending = Some(Pending::Update { body, signature });
        UpdateProposal {
            proposer: self.me,
            body,
            signature,
        }
    }

    /// Proposes paying `amount` μ more to the other party (seq + 1), signed by this node.
    pub fn propose_payment(
        &mut self,
        amount: u64,
        key: &SigningKey,
    ) -> Result<UpdateProposal, ChannelError> {
        self.require_open("propose a payment")?;
        self.require_no_pending()?;
        let body = self.latest.body.pay(self.me, amount)?;
        Ok(self.propose(body, key))
    }

    /// Starts lottery period `period` with this node's new win probability (for tickets this
    /// node wins); the other party's probability carries over.
    pub fn propose_lottery_terms(
        &mut self,
        period: u64,
        my_probability: WinProbability,
        key: &SigningKey,
    ) -> Result<UpdateProposal, ChannelError> {
        self.require_open("propose lottery terms")?;
        self.require_no_pending()?;
        let current = self.latest.body;
        if period <= current.lottery.period {
            return Err(ChannelError::InvalidLotteryTerms(
                "a new period must be above the current one",
            ));
        }
        let mut body = current;
        body.seq = current
            .seq
            .checked_add(1)
            .ok_or(ChannelError::AmountOverflow)?;
        body.lottery.period = period;
        match self.me {
            Party::A => body.lottery.win_a = my_probability,
            Party::B => body.lottery.win_b = my_probability,
        }
        Ok(self.propose(body, key))
    }

    fn check_next(&self, next: &ChannelBody, proposer: Party) -> Result<(), ChannelError> {
        let current = &self.latest.body;
        if next.channel_id != current.channel_id {
            return Err(ChannelError::UnknownChannel(next.channel_id));
        }
        if next.party_a != current.party_a || next.party_b != current.party_b {
            return Err(ChannelError::PartiesChanged);
        }
        if next.seq <= current.seq {
            return Err(ChannelError::StaleSequence {
                latest: current.seq,
                got: next.seq,
            });
        }
        if next.seq - current.seq > MAX_SEQUENCE_STEP {
            return Err(ChannelError::SequenceJump {
                latest: current.seq,
                got: next.seq,
            });
        }
        for payer in [Party::A, Party::B] {
            if next.paid_by(payer) < current.paid_by(payer) {
                return Err(ChannelError::PaymentReversed {
                    payer,
                    before: current.paid_by(payer),
                    after: next.paid_by(payer),
                });
            }
        }
        match balances_for(self.deposits, next.paid_a_to_b, next.paid_b_to_a) {
            Err((party, _)) => {
                return Err(ChannelError::Overdraft {
                    party,
                    available: current.balance(party),
                    requested: next.paid_by(party) - current.paid_by(party),
                });
            }
            Ok((a, b)) => {
                for (party, expected) in [(Party::A, a), (Party::B, b)] {
                    if next.balance(party) != expected {
                        return Err(ChannelError::BalanceNotConserved {
                            party,
                            expected,
                            claimed: next.balance(party),
                        });
                    }
                }
            }
        }
        let acceptor = proposer.other();
        let debit = next.paid_by(acceptor) - current.paid_by(acceptor);
        if debit > 0 {
            return Err(ChannelError::UnauthorizedDebit {
                payer: acceptor,
                amount: debit,
            });
        }
        let (old, new) = (current.lottery, next.lottery);
        if new.period < old.period {
            return Err(ChannelError::InvalidLotteryTerms("period went back"));
        }
        if new.period == old.period && new != old {
            return Err(ChannelError::InvalidLotteryTerms(
                "terms changed without a new period",
            ));
        }
        if new.win_probability(acceptor) != old.win_probability(acceptor) {
            return Err(ChannelError::InvalidLotteryTerms(
                "the proposer changed the other party's win probability",
            ));
        }
        Ok(())
    }

    fn install(&mut self, state: ChannelState, now_epoch: u64) {
        if state.body.lottery.period != self.latest.body.lottery.period {
            self.previous_terms = Some(self.latest.body.lottery);
        }
        self.latest = state;
        self.last_active_epoch = self.last_active_epoch.max(now_epoch);
    }

    fn co_signed(&self, body: ChannelBody, mine: Signature, theirs: Signature) -> ChannelState {
        match self.me {
            Party::A => ChannelState {
                body,
                sig_a: mine,
                sig_b: theirs,
            },
            Party::B => ChannelState {
                body,
                sig_a: theirs,
                sig_b: mine,
            },
        }
    }

    /// Checks the other party's proposal and countersigns it; the proposal becomes the
    /// latest state. Persist [`Channel::latest`] before sending the returned ack.
    pub fn receive_update(
        &mut self,
        proposal: &UpdateProposal,
        key: &SigningKey,
        now_epoch: u64,
    ) -> Result<UpdateAck, ChannelError> {
        self.require_open("accept an update")?;
        if proposal.proposer != self.me.other() {
            return Err(ChannelError::WrongParty);
        }
        match self.pending {
            Some(Pending::Settlement {
                kind: SettlementKind::CooperativeClose,
                ..
            }) => {
                return Err(ChannelError::WrongState {
                    operation: "accept an update",
                    phase: "closing",
                });
            }
            Some(Pending::Update { body, .. }) if self.me == Party::A => {
                return Err(ChannelError::ConcurrentProposal { seq: body.seq });
            }
            _ => {}
        }
        let next = proposal.body;
        self.check_next(&next, proposal.proposer)?;
        if !next.verify(self.keys.of(proposal.proposer), &proposal.signature) {
            return Err(ChannelError::BadSignature {
                party: proposal.proposer,
            });
        }
        if matches!(self.pending, Some(Pending::Update { .. })) {
            // B yields to A's concurrent proposal; its own was never countersigned.
            self.pending = None;
        }
        let signature = next.sign(key);
        let state = self.co_signed(next, signature, proposal.signature);
        self.install(state, now_epoch);
        Ok(UpdateAck {
            channel_id: next.channel_id,
            seq: next.seq,
            signer: self.me,
            signature,
        })
    }

    /// Completes this node's outstanding update with the other party's countersignature.
    pub fn receive_ack(
        &mut self,
        ack: &UpdateAck,
        now_epoch: u64,
    ) -> Result<&ChannelState, ChannelError> {
        self.require_open("complete an update")?;
        if ack.channel_id != self.id() {
            return Err(ChannelError::UnknownChannel(ack.channel_id));
        }
        if ack.seq <= self.latest.body.seq {
            return Err(ChannelError::StaleSequence {
                latest: self.latest.body.seq,
                got: ack.seq,
            });
        }
        let Some(Pending::Update { body, signature }) = self.pending else {
            return Err(ChannelError::NoPendingProposal);
        };
        if body.seq != ack.seq {
            return Err(ChannelError::NoPendingProposal);
        }
        let other = self.me.other();
        if ack.signer != other {
            return Err(ChannelError::WrongParty);
        }
        if !body.verify(self.keys.of(other), &ack.signature) {
            return Err(ChannelError::BadSignature { party: other });
        }
        let state = self.co_signed(body, signature, ack.signature);
        self.pending = None;
        self.install(state, now_epoch);
        Ok(&self.latest)
    }

    /// Proposes settling the latest co-signed state (a checkpoint, or a cooperative close).
    pub fn propose_settlement(
        &mut self,
        kind: SettlementKind,
        now_round: u64,
        key: &SigningKey,
    ) -> Result<SettleProposal, ChannelError> {
        self.require_open("propose a settlement")?;
        if kind == SettlementKind::UnilateralClose {
            return Err(ChannelError::WrongState {
                operation: "propose a unilateral close (file it instead)",
                phase: "open",
            });
        }
        self.require_no_pending()?;
        let body = self.latest.body;
        let signature = sign_settlement(&body, kind, key);
        self.pending = Some(Pending::Settlement {
            kind,
            body,
            signature,
            started_round: now_round,
        });
        Ok(SettleProposal {
            kind,
            proposer: self.me,
            body,
            signature,
        })
    }

    /// Checks and countersigns the other party's settlement proposal. Returns the accept to
    /// send and the complete record to publish; a close moves the channel to Closed.
    pub fn receive_settlement(
        &mut self,
        proposal: &SettleProposal,
        key: &SigningKey,
    ) -> Result<(SettleAccept, SettlementRecord), ChannelError> {
        self.require_open("accept a settlement")?;
        if proposal.proposer != self.me.other() {
            return Err(ChannelError::WrongParty);
        }
        if proposal.body.channel_id != self.id() {
            return Err(ChannelError::UnknownChannel(proposal.body.channel_id));
        }
        if proposal.kind == SettlementKind::UnilateralClose {
            return Err(ChannelError::WrongState {
                operation: "accept a proposed unilateral close",
                phase: "open",
            });
        }
        let latest = self.latest.body.seq;
        if proposal.body.seq < latest {
            return Err(ChannelError::StaleSequence {
                latest,
                got: proposal.body.seq,
            });
        }
        if proposal.body != self.latest.body {
            return Err(ChannelError::StateMismatch { latest });
        }
        let theirs = proposal.signature;
        if !crate::ledger::verify_settlement_signature(
            &proposal.body,
            proposal.kind,
            self.keys.of(proposal.proposer),
            &theirs,
        ) {
            return Err(ChannelError::BadSignature {
                party: proposal.proposer,
            });
        }
        let mine = sign_settlement(&proposal.body, proposal.kind, key);
        let (sig_a, sig_b) = match self.me {
            Party::A => (mine, theirs),
            Party::B => (theirs, mine),
        };
        let record = SettlementRecord {
            body: proposal.body,
            kind: proposal.kind,
            sig_a,
            sig_b,
        };
        if proposal.kind.closes() {
            self.pending = None;
            self.phase = Phase::Closed(Box::new(record));
        }
        self.settlement_failures = 0;
        let accept = SettleAccept {
            channel_id: self.id(),
            seq: latest,
            kind: proposal.kind,
            signer: self.me,
            signature: mine,
        };
        Ok((accept, record))
    }

    /// Completes this node's settlement proposal with the other party's countersignature.
    pub fn receive_settlement_accept(
        &mut self,
        accept: &SettleAccept,
    ) -> Result<SettlementRecord, ChannelError> {
        self.require_open("complete a settlement")?;
        if accept.channel_id != self.id() {
            return Err(ChannelError::UnknownChannel(accept.channel_id));
        }
        let Some(Pending::Settlement {
            kind,
            body,
            signature,
            ..
        }) = self.pending
        else {
            return Err(ChannelError::NoPendingProposal);
        };
        if accept.seq != body.seq || accept.kind != kind {
            return Err(ChannelError::NoPendingProposal);
        }
        let other = self.me.other();
        if accept.signer != other {
            return Err(ChannelError::WrongParty);
        }
        if !crate::ledger::verify_settlement_signature(
            &body,
            kind,
            self.keys.of(other),
            &accept.signature,
        ) {
            return Err(ChannelError::BadSignature { party: other });
        }
        let (sig_a, sig_b) = match self.me {
            Party::A => (signature, accept.signature),
            Party::B => (accept.signature, signature),
        };
        let record = SettlementRecord {
            body,
            kind,
            sig_a,
            sig_b,
        };
        self.pending = None;
        self.settlement_failures = 0;
        if kind.closes() {
            self.phase = Phase::Closed(Box::new(record));
        }
        Ok(record)
    }

    /// Gives up on an outstanding settlement proposal older than 120 rounds and counts the
    /// failure. Returns `true` if one timed out.
    pub fn check_settlement_timeout(&mut self, now_round: u64) -> bool {
        if let Some(Pending::Settlement { started_round, .. }) = self.pending
            && now_round >= started_round.saturating_add(SETTLEMENT_TIMEOUT_ROUNDS)
        {
            self.pending = None;
            self.settlement_failures = self.settlement_failures.saturating_add(1);
            return true;
        }
        false
    }

    /// Files a unilateral settlement with the latest co-signed state and starts the dispute
    /// window. Allowed after 3 failed cooperative settlements (`Unresponsive`) or 4 idle
    /// epochs (`Abandonment`). Publish the returned filing.
    pub fn file_unilateral(
        &mut self,
        reason: UnilateralReason,
        now_round: u64,
        now_epoch: u64,
        key: &SigningKey,
    ) -> Result<UnilateralSettlement, ChannelError> {
        self.require_open("file a unilateral settlement")?;
        match reason {
            UnilateralReason::Unresponsive
                if self.settlement_failures < SETTLEMENT_FAILURES_BEFORE_UNILATERAL =>
            {
                return Err(ChannelError::UnilateralNotAllowed {
                    reason,
                    detail: "fewer than 3 cooperative settlement attempts have failed",
                });
            }
            UnilateralReason::Abandonment
                if now_epoch
                    < self
                        .last_active_epoch
                        .saturating_add(ABANDONMENT_IDLE_EPOCHS) =>
            {
                return Err(ChannelError::UnilateralNotAllowed {
                    reason,
                    detail: "the channel has been idle for fewer than 4 epochs",
                });
            }
            _ => {}
        }
        let filing = UnilateralSettlement::file(self.latest, reason, self.me, key);
        let dispute = Dispute::open(filing, self.keys, now_round)?;
        self.pending = None;
        self.phase = Phase::Disputing(Box::new(dispute));
        Ok(filing)
    }

    /// Handles the other party's unilateral filing. If this node holds a higher co-signed
    /// state, it is entered as a challenge and returned so the daemon can publish it.
    pub fn receive_unilateral(
        &mut self,
        filing: &UnilateralSettlement,
        now_round: u64,
    ) -> Result<Option<ChannelState>, ChannelError> {
        if filing.state.body.channel_id != self.id() {
            return Err(ChannelError::UnknownChannel(filing.state.body.channel_id));
        }
        if filing.filed_by != self.me.other() {
            return Err(ChannelError::WrongParty);
        }
        let mut dispute = match &self.phase {
            Phase::Open => Dispute::open(*filing, self.keys, now_round)?,
            Phase::Disputing(d) => {
                filing.verify(&self.keys)?;
                let mut d = **d;
                match d.challenge(filing.state, now_round) {
                    Ok(()) | Err(ChannelError::StaleSequence { .. }) => {}
                    Err(e) => return Err(e),
                }
                d
            }
            Phase::Closed(_) => {
                return Err(ChannelError::WrongState {
                    operation: "handle a unilateral settlement",
                    phase: "closed",
                });
            }
        };
        let mut counter = None;
        if self.latest.body.seq > dispute.best().body.seq {
            dispute.challenge(self.latest, now_round)?;
            counter = Some(self.latest);
        } else if dispute.best().body.seq > self.latest.body.seq {
            // The other party holds a state this node signed but never saw completed (a
            // lost ack); both signatures were just verified, so adopt it.
            let best = *dispute.best();
            self.install(best, self.last_active_epoch);
        }
        self.pending = None;
        self.phase = Phase::Disputing(Box::new(dispute));
        Ok(counter)
    }

    /// Enters a co-signed state seen during the dispute (from either party or a watcher).
    pub fn challenge(&mut self, state: ChannelState, now_round: u64) -> Result<(), ChannelError> {
        let Phase::Disputing(dispute) = &mut self.phase else {
            return Err(ChannelError::WrongState {
                operation: "challenge",
                phase: self.phase.name(),
            });
        };
        dispute.challenge(state, now_round)?;
        if state.body.seq > self.latest.body.seq {
            self.install(state, self.last_active_epoch);
        }
        Ok(())
    }

    /// After the window, closes the channel on the best state and returns its record.
    pub fn resolve_dispute(&mut self, now_round: u64) -> Result<SettlementRecord, ChannelError> {
        let Phase::Disputing(dispute) = &self.phase else {
            return Err(ChannelError::WrongState {
                operation: "resolve a dispute",
                phase: self.phase.name(),
            });
        };
        let record = dispute.resolve(now_round)?;
        self.phase = Phase::Closed(Box::new(record));
        Ok(record)
    }

    /// Everything the daemon must store to resume this channel after a restart.
    pub fn to_persisted(&self) -> PersistedChannel {
        let pending = self.pending.map(|p| match p {
            Pending::Update { body, signature } => ChannelMessage::Update(UpdateProposal {
                proposer: self.me,
                body,
                signature,
            })
            .encode(),
            Pending::Settlement {
                kind,
                body,
                signature,
                ..
            } => ChannelMessage::SettleProposal(SettleProposal {
                kind,
                proposer: self.me,
                body,
                signature,
            })
            .encode(),
        });
        let pending_started_round = match self.pending {
            Some(Pending::Settlement { started_round, .. }) => started_round,
            _ => 0,
        };
        let (dispute, closed) = match &self.phase {
            Phase::Open => (None, None),
            Phase::Disputing(d) => (
                Some(PersistedDispute {
                    filing: ChannelMessage::Unilateral(*d.filing()).encode(),
                    best: d.best().encode().to_vec(),
                    closes_at: d.closes_at(),
                }),
                None,
            ),
            Phase::Closed(r) => (None, Some(r.encode().to_vec())),
        };
        PersistedChannel {
            me: self.me,
            latest: self.latest.encode().to_vec(),
            previous_terms: self
                .previous_terms
                .map(|t| (t.period, t.win_a.ppm(), t.win_b.ppm())),
            pending,
            pending_started_round,
            dispute,
            closed,
            last_active_epoch: self.last_active_epoch,
            settlement_failures: self.settlement_failures,
        }
    }

    /// Resumes a channel from [`Channel::to_persisted`]'s output, re-checking signatures.
    pub fn from_persisted(
        persisted: &PersistedChannel,
        keys: ChannelKeys,
    ) -> Result<Channel, ChannelError> {
        let latest = ChannelState::decode(&persisted.latest)?;
        let mut channel =
            Channel::restore(persisted.me, keys, latest, persisted.last_active_epoch)?;
        channel.settlement_failures = persisted.settlement_failures;
        if let Some((period, a, b)) = persisted.previous_terms {
            let p = |ppm| {
                WinProbability::from_ppm(ppm).map_err(|_| DecodeError::Invalid {
                    what: "persisted channel",
                    field: "previous_terms",
                    reason: "probability out of range",
                })
            };
            channel.previous_terms = Some(LotteryTerms {
                period,
                win_a: p(a)?,
                win_b: p(b)?,
            });
        }
        if let Some(bytes) = &persisted.pending {
            let own = channel.keys.of(persisted.me);
            channel.pending = Some(match ChannelMessage::decode(bytes)? {
                ChannelMessage::Update(u) if u.body.verify(own, &u.signature) => Pending::Update {
                    body: u.body,
                    signature: u.signature,
                },
                ChannelMessage::SettleProposal(s)
                    if crate::ledger::verify_settlement_signature(
                        &s.body,
                        s.kind,
                        own,
                        &s.signature,
                    ) =>
                {
                    Pending::Settlement {
                        kind: s.kind,
                        body: s.body,
                        signature: s.signature,
                        started_round: persisted.pending_started_round,
                    }
                }
                _ => {
                    return Err(ChannelError::BadSignature {
                        party: persisted.me,
                    });
                }
            });
        }
        if let Some(d) = &persisted.dispute {
            let ChannelMessage::Unilateral(filing) = ChannelMessage::decode(&d.filing)? else {
                return Err(DecodeError::Invalid {
                    what: "persisted channel",
                    field: "dispute.filing",
                    reason: "not a unilateral settlement",
                }
                .into());
            };
            let filed_round = d
                .closes_at
                .saturating_sub(crate::params::DISPUTE_WINDOW_ROUNDS);
            let mut dispute = Dispute::open(filing, keys, filed_round)?;
            let best = ChannelState::decode(&d.best)?;
            if best.body.seq > filing.state.body.seq {
                dispute.challenge(best, filed_round)?;
            }
            channel.phase = Phase::Disputing(Box::new(dispute));
        }
        if let Some(bytes) = &persisted.closed {
            let record = SettlementRecord::decode(bytes)?;
            record
                .verify(&keys)
                .map_err(|_| ChannelError::BadSignature {
                    party: persisted.me,
                })?;
            channel.phase = Phase::Closed(Box::new(record));
        }
        Ok(channel)
    }
}

/// A dispute as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedDispute {
    /// The encoded [`ChannelMessage::Unilateral`] filing.
    pub filing: Vec<u8>,
    /// The encoded best [`ChannelState`].
    pub best: Vec<u8>,
    /// The first round at which the dispute resolves.
    pub closes_at: u64,
}

/// A channel as the daemon persists it (serde; byte fields hold the wire encodings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedChannel {
    /// This node's side.
    pub me: Party,
    /// The latest co-signed [`ChannelState`], encoded.
    pub latest: Vec<u8>,
    /// `(period, ppm A, ppm B)` of the previous lottery period.
    pub previous_terms: Option<(u64, u32, u32)>,
    /// This node's outstanding proposal, encoded as a [`ChannelMessage`].
    pub pending: Option<Vec<u8>>,
    /// The round an outstanding settlement proposal was made.
    pub pending_started_round: u64,
    /// The running dispute.
    pub dispute: Option<PersistedDispute>,
    /// The final [`SettlementRecord`] of a closed channel, encoded.
    pub closed: Option<Vec<u8>>,
    /// The epoch of the last co-signed update.
    pub last_active_epoch: u64,
    /// Failed cooperative settlements since the last success.
    pub settlement_failures: u32,
}

#[cfg(test)]
mod tests;
