//! The challenge window of a unilateral settlement.
//!
//! Anyone holding the parties' keys (either party, or a watcher) can track a dispute: the
//! filed state stands unless a co-signed state with a higher seq arrives before the window
//! closes. Rounds are passed in by the caller.

use super::ChannelError;
use super::messages::UnilateralSettlement;
use super::state::{ChannelKeys, ChannelState};
use crate::ids::Party;
use crate::ledger::SettlementRecord;
use crate::params::DISPUTE_WINDOW_ROUNDS;

/// An open dispute over one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispute {
    keys: ChannelKeys,
    filing: UnilateralSettlement,
    best: ChannelState,
    filed_round: u64,
}

impl Dispute {
    /// Starts tracking a verified filing seen at `now_round`.
    pub fn open(
        filing: UnilateralSettlement,
        keys: ChannelKeys,
        now_round: u64,
    ) -> Result<Self, ChannelError> {
        filing.verify(&keys)?;
        Ok(Self {
            keys,
            filing,
            best: filing.state,
            filed_round: now_round,
        })
    }

    /// The filing that opened the dispute.
    pub fn filing(&self) -> &UnilateralSettlement {
        &self.filing
    }

    /// The highest co-signed state seen so far.
    pub fn best(&self) -> &ChannelState {
        &self.best
    }

    /// The first round at which the dispute can be resolved.
    pub fn closes_at(&self) -> u64 {
        self.filed_round.saturating_add(DISPUTE_WINDOW_ROUNDS)
    }

    /// Offers a co-signed state during the window. A higher seq replaces the best state; an
    /// equal or lower seq is stale.
    pub fn challenge(&mut self, state: ChannelState, now_round: u64) -> Result<(), ChannelError> {
        if now_round >= self.closes_at() {
            return Err(ChannelError::DisputeWindowClosed {
                closed_at: self.closes_at(),
            });
        }
        let current = &self.best.body;
        if state.body.channel_id != current.channel_id {
            return Err(ChannelError::UnknownChannel(state.body.channel_id));
        }
        if state.body.party_a != current.party_a || state.body.party_b != current.party_b {
            return Err(ChannelError::PartiesChanged);
        }
        if state.body.seq <= current.seq {
            return Err(ChannelError::StaleSequence {
                latest: current.seq,
                got: state.body.seq,
            });
        }
        state.verify(&self.keys)?;
        let locked = current.deposits().ok_or(ChannelError::InconsistentBody)?;
        let claimed = state
            .body
            .deposits()
            .ok_or(ChannelError::InconsistentBody)?;
        if locked.a != claimed.a {
            return Err(ChannelError::DepositChanged {
                party: Party::A,
                expected: locked.a,
                claimed: claimed.a,
            });
        }
        if locked.b != claimed.b {
            return Err(ChannelError::DepositChanged {
                party: Party::B,
                expected: locked.b,
                claimed: claimed.b,
            });
        }
        self.best = state;
        Ok(())
    }

    /// After the window: the unilateral-close record of the best state, for the ledger.
    pub fn resolve(&self, now_round: u64) -> Result<SettlementRecord, ChannelError> {
        if now_round < self.closes_at() {
            return Err(ChannelError::DisputeWindowOpen {
                closes_at: self.closes_at(),
            });
        }
        Ok(SettlementRecord::unilateral(&self.best))
    }
}
