//! Inbound control messages: decoding, then the payment channel protocol.
//!
//! Every message about a known channel must come from the channel's other party (the
//! sender identity in the envelope hashes to it) and is then checked by the crate's state
//! machine against the channel's keys. Refusals are counted by kind and never answered,
//! except a refused open, which is answered with a signed refusal so the opener can tell
//! its operator why.

use mehr_ledger::{
    ChannelId, NodeId, Party,
    channel::{
        Channel, ChannelError, ChannelMessage, ChannelPhase, ChannelState, OpenAccept,
        OpenProposal, SettleAccept, SettleProposal, UnilateralSettlement, UpdateAck,
        UpdateProposal,
    },
    ledger::SettlementKind,
};
use mehr_transport::identity::Identity;

use super::{
    core::{LedgerCore, Notice, Now, Outstanding, channel_keys},
    records::node_id,
    wire::{LedgerMessage, OpenRefusal, RefusalReason},
};

impl LedgerCore {
    /// Handles one control message of a ledger type.
    pub(crate) fn handle_control(&mut self, kind: u8, body: &[u8], now: Now) {
        self.last_now_ms = now.unix_ms;
        if self.is_poisoned() {
            return;
        }
        let message = match LedgerMessage::decode(kind, body) {
            Ok(message) => message,
            Err(e) => {
                self.rejects.malformed += 1;
                tracing::debug!(kind, error = %e, "malformed ledger message");
                return;
            }
        };
        match message {
            LedgerMessage::Channel { sender, message } => {
                self.on_channel_message(sender, message, now)
            }
            LedgerMessage::Ticket {
                relay,
                certificate,
                ticket,
            } => self.on_ticket(relay, certificate, ticket),
            LedgerMessage::Settlements(records) => self.on_settlements(records),
            LedgerMessage::Digest(digest) => self.on_digest(digest, now),
            LedgerMessage::OpenRefused(refusal) => self.on_open_refused(refusal),
            LedgerMessage::EpochProposal(proposal) => self.on_epoch_proposal(proposal, now),
            LedgerMessage::EpochAck { sender, ack } => self.on_epoch_ack(sender, ack, now),
            LedgerMessage::EpochActivation(activation) => {
                self.on_epoch_activation(*activation, now)
            }
        }
    }

    fn on_channel_message(&mut self, sender: Identity, message: ChannelMessage, now: Now) {
        let sender_id = node_id(&sender);
        match message {
            ChannelMessage::OpenProposal(p) => self.on_open_proposal(sender, p),
            ChannelMessage::OpenAccept(a) => self.on_open_accept(sender_id, a),
            other => {
                let id = other.channel_id();
                let Some(entry) = self.channels.get(&id) else {
                    self.rejects.unknown += 1;
                    return;
                };
                if entry.peer_id != sender_id {
                    // Only the channel's other party may speak for it.
                    self.rejects.forged += 1;
                    return;
                }
                match other {
                    ChannelMessage::Update(u) => self.on_update(id, u),
                    ChannelMessage::Ack(a) => self.on_ack(id, a),
                    ChannelMessage::SettleProposal(s) => self.on_settle_proposal(id, s),
                    ChannelMessage::SettleAccept(a) => self.on_settle_accept(id, a),
                    ChannelMessage::Unilateral(u) => self.on_unilateral(id, u, now),
                    ChannelMessage::OpenProposal(_) | ChannelMessage::OpenAccept(_) => {}
                }
            }
        }
    }

    fn refuse_open(&mut self, to: NodeId, channel_id: ChannelId, reason: RefusalReason) {
        self.rejects.refused += 1;
        let refusal = OpenRefusal::sign(self.identity.clone(), &self.key, channel_id, reason);
        self.send(to, LedgerMessage::OpenRefused(refusal));
    }

    fn on_open_proposal(&mut self, sender: Identity, proposal: OpenProposal) {
        let sender_id = node_id(&sender);
        let body = proposal.body;
        let id = body.channel_id;
        if body.party_a != sender_id {
            self.rejects.forged += 1;
            return;
        }
        if body.party_b != self.me {
            self.rejects.unknown += 1;
            return;
        }
        if let Some(existing) = self.channels.get(&id) {
            // The opener sent its proposal again: our acceptance was lost.
            let latest = existing.channel.latest();
            if existing.peer_id == sender_id && latest.body.seq == 0 && latest.body == body {
                let accept = OpenAccept {
                    channel_id: id,
                    sig_b: latest.sig_b,
                };
                self.send_channel(sender_id, ChannelMessage::OpenAccept(accept));
            } else {
                self.rejects.stale += 1;
            }
            return;
        }
        if self.by_peer.contains_key(&sender_id) {
            return self.refuse_open(sender_id, id, RefusalReason::ChannelExists);
        }
        if let Some(mine) = self
            .opens
            .iter()
            .find(|(_, o)| node_id(&o.peer) == sender_id)
            .map(|(id, _)| *id)
        {
            // Both proposed at once: the lower channel id wins on both sides.
            if mine < id {
                return self.refuse_open(sender_id, id, RefusalReason::ConcurrentOpen);
            }
            self.opens.remove(&mine);
            self.writes.opens_put.remove(&mine);
            self.writes.opens_delete.insert(mine);
            self.notices.push(Notice::OpenFailed {
                channel: mine,
                peer: sender_id,
                reason: "the peer proposed a channel at the same time and its proposal won",
                instead: Some(id),
            });
        }
        let (deposit_a, deposit_b) = (body.balance_a, body.balance_b);
        if deposit_b > self.config.max_requested_deposit
            || i128::from(deposit_b) > self.free_balance()
        {
            return self.refuse_open(sender_id, id, RefusalReason::DepositTooLarge);
        }
        if i128::from(deposit_a) > self.ledger.account(&sender_id).free() {
            return self.refuse_open(sender_id, id, RefusalReason::OpenerUnderfunded);
        }
        let keys = channel_keys(Party::B, &self.identity, &sender);
        match Channel::accept_open(&proposal, keys, &self.key, self.epoch()) {
            Ok((channel, accept)) => {
                self.install_channel(channel, sender);
                self.send_channel(sender_id, ChannelMessage::OpenAccept(accept));
                self.notices.push(Notice::Opened {
                    channel: id,
                    peer: sender_id,
                });
            }
            Err(e) => self.count_channel_error(&e),
        }
    }

    fn install_channel(&mut self, channel: Channel, peer: Identity) {
        let id = channel.id();
        let peer_id = node_id(&peer);
        let period = channel.latest().body.lottery.period;
        self.by_peer.entry(peer_id).or_insert(id);
        self.channels.insert(
            id,
            super::core::ChannelEntry {
                verifier: None,
                peer_id,
                peer,
                channel,
                redeemed: mehr_ledger::lottery::RedeemedTickets::new(period),
                owed: 0,
                redeemed_gross: 0,
                tickets_redeemed: 0,
                tickets_won: 0,
                outstanding: None,
                settle_wanted: None,
                terms_checked_ms: self.last_now_ms,
                relayed_since_terms: 0,
                checkpointed_seq: None,
                checkpoint_checked_ms: self.last_now_ms,
            },
        );
        self.mark_dirty(id);
    }

    fn on_open_accept(&mut self, sender_id: NodeId, accept: OpenAccept) {
        let id = accept.channel_id;
        // An acceptance after this node gave up on the open: the peer holds the channel, so
        // open it here too (when the deposit is still free) rather than leave it one-sided.
        if !self.opens.contains_key(&id)
            && let Some((open, _)) = self.expired_opens.remove(&id)
        {
            if node_id(&open.peer) == sender_id
                && i128::from(open.proposal.body.balance_a) <= self.free_balance()
            {
                self.opens.insert(id, open);
            } else {
                self.rejects.refused += 1;
                return;
            }
        }
        let Some(open) = self.opens.get(&id) else {
            // A repeated acceptance of a channel already open is harmless.
            if !self.channels.contains_key(&id) {
                self.rejects.unknown += 1;
            }
            return;
        };
        if node_id(&open.peer) != sender_id {
            self.rejects.forged += 1;
            return;
        }
        let state = ChannelState {
            body: open.proposal.body,
            sig_a: open.proposal.sig_a,
            sig_b: accept.sig_b,
        };
        let keys = channel_keys(Party::A, &self.identity, &open.peer);
        match Channel::restore(Party::A, keys, state, self.epoch()) {
            Ok(channel) => {
                let Some(open) = self.opens.remove(&id) else {
                    return;
                };
                self.writes.opens_put.remove(&id);
                self.writes.opens_delete.insert(id);
                self.install_channel(channel, open.peer);
                self.notices.push(Notice::Opened {
                    channel: id,
                    peer: sender_id,
                });
                // The seq-0 checkpoint is the ledger's escrow entry for the deposits.
                if let Some(entry) = self.channels.get_mut(&id) {
                    entry.settle_wanted = Some(SettlementKind::Checkpoint);
                }
                self.advance(id);
            }
            Err(e) => self.count_channel_error(&e),
        }
    }

    fn on_open_refused(&mut self, refusal: OpenRefusal) {
        let id = refusal.channel_id;
        let Some(open) = self.opens.get(&id) else {
            self.rejects.unknown += 1;
            return;
        };
        if node_id(&open.peer) != node_id(&refusal.sender) || !refusal.verify() {
            self.rejects.forged += 1;
            return;
        }
        let peer = node_id(&open.peer);
        self.opens.remove(&id);
        self.writes.opens_put.remove(&id);
        self.writes.opens_delete.insert(id);
        // Do not ask again for a while.
        self.open_backoff.insert(
            peer,
            self.last_now_ms
                .saturating_add(self.config.open_timeout_ms.saturating_mul(10)),
        );
        self.notices.push(Notice::OpenFailed {
            channel: id,
            peer,
            reason: refusal.reason.describe(),
            instead: None,
        });
    }

    fn on_update(&mut self, id: ChannelId, proposal: UpdateProposal) {
        let epoch = self.epoch();
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        let latest = *entry.channel.latest();
        if proposal.body == latest.body && proposal.proposer == entry.channel.me().other() {
            // Our acknowledgement was lost: send it again.
            let ack = UpdateAck {
                channel_id: id,
                seq: latest.body.seq,
                signer: entry.channel.me(),
                signature: match entry.channel.me() {
                    Party::A => latest.sig_a,
                    Party::B => latest.sig_b,
                },
            };
            let peer = entry.peer_id;
            self.send_channel(peer, ChannelMessage::Ack(ack));
            return;
        }
        let mine_before = entry.outstanding.clone();
        match entry.channel.receive_update(&proposal, &self.key, epoch) {
            Ok(ack) => {
                match mine_before {
                    // B yields to A's concurrent proposal; a payment it carried is owed again.
                    Some(Outstanding {
                        message: ChannelMessage::Update(_),
                        payment,
                        ..
                    }) => {
                        entry.owed += payment;
                        entry.outstanding = None;
                    }
                    // A settlement of the state just replaced can no longer complete; ask
                    // again on the new state.
                    Some(Outstanding {
                        message: ChannelMessage::SettleProposal(s),
                        ..
                    }) => {
                        entry.outstanding = None;
                        entry.settle_wanted = Some(s.kind);
                        if let Err(e) = drop_pending(entry) {
                            tracing::warn!(channel = %id, error = %e, "cannot drop a superseded settlement proposal");
                        }
                    }
                    _ => {}
                }
                let peer = entry.peer_id;
                let seq = ack.seq;
                self.mark_dirty(id);
                self.send_channel(peer, ChannelMessage::Ack(ack));
                self.notices.push(Notice::CoSigned { channel: id, seq });
                self.advance(id);
            }
            // A's proposal wins a race; B drops its own when it sees A's.
            Err(ChannelError::ConcurrentProposal { .. }) => {}
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "update refused");
                self.count_channel_error(&e);
            }
        }
    }

    fn on_ack(&mut self, id: ChannelId, ack: UpdateAck) {
        let epoch = self.epoch();
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        if ack.seq == entry.channel.latest().body.seq {
            // A repeated acknowledgement of the state already co-signed.
            return;
        }
        match entry.channel.receive_ack(&ack, epoch) {
            Ok(state) => {
                let seq = state.body.seq;
                entry.outstanding = None;
                self.mark_dirty(id);
                self.notices.push(Notice::CoSigned { channel: id, seq });
                self.advance(id);
            }
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "acknowledgement refused");
                self.count_channel_error(&e);
            }
        }
    }

    fn on_settle_proposal(&mut self, id: ChannelId, proposal: SettleProposal) {
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        if let Some(record) = entry.channel.final_record().copied() {
            // Closed already: our acceptance was lost, send it again.
            if record.body == proposal.body && record.kind == proposal.kind {
                let me = entry.channel.me();
                let accept = SettleAccept {
                    channel_id: id,
                    seq: record.body.seq,
                    kind: record.kind,
                    signer: me,
                    signature: match me {
                        Party::A => record.sig_a,
                        Party::B => record.sig_b,
                    },
                };
                let peer = entry.peer_id;
                self.send_channel(peer, ChannelMessage::SettleAccept(accept));
            } else {
                self.rejects.stale += 1;
            }
            return;
        }
        match entry.channel.receive_settlement(&proposal, &self.key) {
            Ok((accept, record)) => {
                if record.kind.closes() {
                    entry.outstanding = None;
                    entry.owed = 0;
                }
                let peer = entry.peer.clone();
                let peer_id = entry.peer_id;
                self.mark_dirty(id);
                self.finish_settlement(id, record, peer);
                self.send_channel(peer_id, ChannelMessage::SettleAccept(accept));
                self.advance(id);
            }
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "settlement refused");
                self.count_channel_error(&e);
            }
        }
    }

    fn on_settle_accept(&mut self, id: ChannelId, accept: SettleAccept) {
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        match entry.channel.receive_settlement_accept(&accept) {
            Ok(record) => {
                entry.outstanding = None;
                if record.kind.closes() {
                    entry.owed = 0;
                }
                let peer = entry.peer.clone();
                self.mark_dirty(id);
                self.finish_settlement(id, record, peer);
                self.advance(id);
            }
            // A repeated acceptance.
            Err(ChannelError::NoPendingProposal) => {}
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "settlement acceptance refused");
                self.count_channel_error(&e);
            }
        }
    }

    /// A completed settlement of this node's channel: into the ledger and out to gossip.
    pub(super) fn finish_settlement(
        &mut self,
        id: ChannelId,
        record: mehr_ledger::ledger::SettlementRecord,
        peer: Identity,
    ) {
        let Some(entry) = self.channels.get(&id) else {
            return;
        };
        let (identity_a, identity_b) = match entry.channel.me() {
            Party::A => (self.identity.clone(), peer),
            Party::B => (peer, self.identity.clone()),
        };
        if record.kind.closes() {
            let peer_id = entry.peer_id;
            if self.by_peer.get(&peer_id) == Some(&id) {
                self.by_peer.remove(&peer_id);
            }
        }
        if let Err(e) = self.record_settlement(record, identity_a, identity_b) {
            tracing::warn!(channel = %id, error = %e, "own settlement record refused by the ledger");
        }
        self.notices.push(Notice::Settled {
            channel: id,
            record,
        });
    }

    fn on_unilateral(&mut self, id: ChannelId, filing: UnilateralSettlement, now: Now) {
        let round = self.round(now);
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        let was_open = entry.channel.phase() == ChannelPhase::Open;
        match entry.channel.receive_unilateral(&filing, round) {
            Ok(counter) => {
                entry.outstanding = None;
                let peer_id = entry.peer_id;
                let me = entry.channel.me();
                let closes_at_round = entry.channel.dispute().map_or(round, |d| d.closes_at());
                if self.by_peer.get(&peer_id) == Some(&id) {
                    self.by_peer.remove(&peer_id);
                }
                self.mark_dirty(id);
                if let Some(state) = counter {
                    // A newer co-signed state wins the dispute: file it back.
                    let challenge = UnilateralSettlement::file(state, filing.reason, me, &self.key);
                    self.send_channel(peer_id, ChannelMessage::Unilateral(challenge));
                }
                if was_open {
                    self.notices.push(Notice::DisputeStarted {
                        channel: id,
                        closes_at_round,
                    });
                }
            }
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "unilateral settlement refused");
                self.count_channel_error(&e);
            }
        }
    }
}

/// Forgets the channel's outstanding proposal (the crate has no call for it: it is dropped
/// by restoring the channel without it). Only for a settlement proposal whose state was
/// superseded: completing it would record an old state, which the ledger keeps below the
/// newer one anyway.
fn drop_pending(entry: &mut super::core::ChannelEntry) -> Result<(), ChannelError> {
    let mut persisted = entry.channel.to_persisted();
    persisted.pending = None;
    let keys = *entry.channel.keys();
    entry.channel = Channel::from_persisted(&persisted, keys)?;
    Ok(())
}
