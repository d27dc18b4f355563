//! What happens with time: proposals sent again until answered, opens given up, settlement
//! timeouts counted, dispute windows resolved, channels checkpointed, lottery periods
//! renewed, digests gossiped.

use mehr_ledger::{
    ChannelId,
    channel::{ChannelMessage, ChannelPhase},
    ledger::SettlementKind,
};

use super::{
    core::{LedgerCore, Notice, Now},
    records::node_id,
};

impl LedgerCore {
    /// Runs the timers.
    pub(crate) fn tick(&mut self, now: Now) {
        self.last_now_ms = now.unix_ms;
        if self.is_poisoned() {
            return;
        }
        self.retry_opens(now);
        self.expire_requests(now);
        self.retry_proposals(now);
        self.settlement_timers(now);
        self.checkpoints(now);
        self.refresh_lottery_terms(now);
        self.gossip_digest(now);
        self.epoch_timers(now);
    }

    fn retry_opens(&mut self, now: Now) {
        let retry = self.config.retry_ms;
        let timeout = self.config.open_timeout_ms;
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        for (id, open) in &mut self.opens {
            if now.unix_ms >= open.proposed_ms.saturating_add(timeout) {
                expired.push((*id, node_id(&open.peer)));
            } else if now.unix_ms >= open.sent_ms.saturating_add(retry) {
                open.sent_ms = now.unix_ms;
                resend.push((node_id(&open.peer), open.proposal));
            }
        }
        for (to, proposal) in resend {
            self.send_channel(to, ChannelMessage::OpenProposal(proposal));
        }
        let memory = timeout.saturating_mul(super::core::EXPIRED_OPEN_MEMORY);
        self.expired_opens
            .retain(|_, (_, expired_ms)| now.unix_ms < expired_ms.saturating_add(memory));
        for (id, peer) in expired {
            if let Some(open) = self.opens.remove(&id) {
                if self.expired_opens.len() >= super::core::MAX_EXPIRED_OPENS {
                    self.expired_opens.pop_first();
                }
                self.expired_opens.insert(id, (open, now.unix_ms));
            }
            self.writes.opens_put.remove(&id);
            self.writes.opens_delete.insert(id);
            self.notices.push(Notice::OpenFailed {
                channel: id,
                peer,
                reason: "the peer did not answer the proposal in time",
                instead: None,
            });
        }
    }

    fn retry_proposals(&mut self, now: Now) {
        let retry = self.config.retry_ms;
        let mut resend = Vec::new();
        for entry in self.channels.values_mut() {
            if let Some(outstanding) = &mut entry.outstanding
                && now.unix_ms >= outstanding.sent_ms.saturating_add(retry)
            {
                outstanding.sent_ms = now.unix_ms;
                resend.push((entry.peer_id, outstanding.message));
            }
        }
        for (to, message) in resend {
            self.send_channel(to, message);
        }
    }

    fn settlement_timers(&mut self, now: Now) {
        let round = self.round(now);
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.channels.get_mut(&id) else {
                continue;
            };
            match entry.channel.phase() {
                ChannelPhase::Open => {
                    if entry.channel.check_settlement_timeout(round) {
                        entry.outstanding = None;
                        self.mark_dirty(id);
                        self.advance(id);
                    }
                }
                ChannelPhase::Disputing => {
                    if entry
                        .channel
                        .dispute()
                        .is_some_and(|d| round >= d.closes_at())
                    {
                        match entry.channel.resolve_dispute(round) {
                            Ok(record) => {
                                let peer = entry.peer.clone();
                                self.mark_dirty(id);
                                self.finish_settlement(id, record, peer);
                            }
                            Err(e) => {
                                tracing::warn!(channel = %id, error = %e, "cannot resolve a dispute")
                            }
                        }
                    }
                }
                ChannelPhase::Closed => {}
            }
        }
    }

    /// Checkpoints every open channel whose state moved since its last record, once per
    /// checkpoint interval, so the ledger follows the channels (spec: about once per epoch).
    fn checkpoints(&mut self, now: Now) {
        let interval = self.config.checkpoint_interval_ms;
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.channels.get_mut(&id) else {
                continue;
            };
            if entry.channel.phase() != ChannelPhase::Open
                || now.unix_ms < entry.checkpoint_checked_ms.saturating_add(interval)
            {
                continue;
            }
            entry.checkpoint_checked_ms = now.unix_ms;
            let seq = entry.channel.latest().body.seq;
            if entry.checkpointed_seq.is_none_or(|s| s < seq) && entry.settle_wanted.is_none() {
                entry.settle_wanted = Some(SettlementKind::Checkpoint);
                self.advance(id);
            }
        }
    }
}
