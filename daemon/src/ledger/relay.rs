//! The relay lottery in the daemon.
//!
//! As a relay, for every packet an untrusted neighbour hands over on a point-to-point
//! interface, this node draws the VRF lottery on the packet's hop-invariant hash with the win
//! probability it committed for the period on its channel with that neighbour, and sends a
//! winning ticket to the neighbour, which pays `cost / p` through the channel. The cost is
//! the packet's size times this node's advertised price.
//!
//! As a payer, it remembers the hashes and sizes of the packets it handed to each neighbour
//! (bounded), and pays a ticket only for such a packet, at no more than the size times the
//! relay's advertised price, with the probability committed in the channel, once.

use std::collections::{HashMap, VecDeque};

use mehr_ledger::{
    NodeId,
    channel::{ChannelMessage, ChannelPhase},
    lottery::{RelayTicket, VrfKeyCertificate, WinProbability},
};
use mehr_transport::identity::Identity;

use super::{
    core::{LedgerCore, Notice, Now, Outstanding},
    records::{RedeemedKey, node_id},
    wire::LedgerMessage,
};
use crate::transport::ForwardedPacket;

/// Packets remembered per neighbour for checking its tickets.
const SENT_PER_NEIGHBOUR: usize = 65_536;

/// Packets this node handed to each neighbour: relay hash → what was sent.
#[derive(Default)]
pub(crate) struct SentLog {
    per_neighbour: HashMap<NodeId, SentPackets>,
}

#[derive(Default)]
struct SentPackets {
    sizes: HashMap<[u8; 32], Sent>,
    order: VecDeque<[u8; 32]>,
}

/// One packet handed to a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Its size on the wire.
    pub(crate) bytes: u32,
    /// Whether a relay agreement with that neighbour paid for it when it was handed over:
    /// this node originated it (packets it relays for others stay on the lottery) and the
    /// market had an active relay agreement with the neighbour. Decided then, not when the
    /// ticket comes, so that an agreement starting or ending in between changes nothing.
    pub(crate) covered: bool,
}

impl SentLog {
    /// Remembers a packet handed to `neighbour`, forgetting the oldest past the bound.
    pub(crate) fn record(&mut self, neighbour: NodeId, hash: [u8; 32], sent: Sent) {
        let log = self.per_neighbour.entry(neighbour).or_default();
        if log.sizes.insert(hash, sent).is_none() {
            log.order.push_back(hash);
            if log.order.len() > SENT_PER_NEIGHBOUR
                && let Some(old) = log.order.pop_front()
            {
                log.sizes.remove(&old);
            }
        }
    }

    /// A packet handed to `neighbour`, if it is remembered.
    pub(crate) fn get(&self, neighbour: &NodeId, hash: &[u8; 32]) -> Option<Sent> {
        self.per_neighbour.get(neighbour)?.sizes.get(hash).copied()
    }
}

/// μ charged for relaying `bytes` at `price` μ per byte (rounded up: fees are never lost).
pub(crate) fn packet_cost(bytes: u32, price: f64) -> u64 {
    if price.is_nan() || price <= 0.0 {
        return 0;
    }
    let cost = (f64::from(bytes) * price).ceil();
    if cost >= u64::MAX as f64 {
        u64::MAX
    } else {
        cost as u64
    }
}

impl LedgerCore {
    /// Handles a report of a data packet that left this node.
    pub(crate) fn handle_forwarded(&mut self, packet: ForwardedPacket, now: Now) {
        self.last_now_ms = now.unix_ms;
        if self.is_poisoned() {
            return;
        }
        if let Some(downstream) = packet.downstream.map(|d| NodeId(d.0)) {
            let sent = Sent {
                bytes: packet.bytes,
                covered: packet.originated && self.relay_cover.contains(&downstream),
            };
            self.sent.record(downstream, packet.relay_hash, sent);
        }
        if packet.originated || !self.config.charge_relays {
            return;
        }
        let Some(upstream) = packet.upstream.map(|u| NodeId(u.0)) else {
            self.traffic.relayed_unattributed += 1;
            return;
        };
        if self.trust.is_free(&upstream) {
            self.traffic.relayed_free += 1;
            return;
        }
        let cost = packet_cost(packet.bytes, self.config.price_per_byte);
        if cost == 0 {
            self.traffic.relayed_free += 1;
            return;
        }
        self.rates
            .entry(upstream)
            .or_default()
            .record(now.unix_ms, 1);
        let Some(&id) = self.by_peer.get(&upstream) else {
            self.traffic.relayed_unpaid += 1;
            self.open_on_demand(upstream, now);
            return;
        };
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        self.traffic.relayed_paid += 1;
        entry.relayed_since_terms += 1;
        let terms = entry.channel.latest().body.lottery;
        let probability = terms.win_probability(entry.channel.me());
        match RelayTicket::draw(
            &self.prover,
            id,
            terms.period,
            probability,
            packet.relay_hash,
            cost,
        ) {
            Ok(Some(ticket)) => {
                let payout = probability.payout(cost).unwrap_or(u64::MAX);
                entry.tickets_won += 1;
                self.traffic.tickets_won += 1;
                let relay = self.identity.clone();
                self.mark_dirty(id);
                let certificate = self.vrf_certificate;
                self.send(
                    upstream,
                    LedgerMessage::Ticket {
                        relay,
                        certificate,
                        ticket,
                    },
                );
                self.notices.push(Notice::TicketWon {
                    channel: id,
                    payer: upstream,
                    payout,
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(channel = %id, error = %e, "lottery draw failed"),
        }
    }

    /// A relay asks a neighbour that relays through it without a channel for one: this node
    /// offers its own deposit (as far as its free balance allows) and asks for the configured
    /// deposit of the neighbour. Tried again only after a back-off.
    pub(super) fn open_on_demand(&mut self, peer: NodeId, now: Now) {
        if self
            .open_backoff
            .get(&peer)
            .is_some_and(|t| now.unix_ms < *t)
            || self.opens.values().any(|o| node_id(&o.peer) == peer)
        {
            return;
        }
        let Some(neighbour) = self.neighbours.get(&peer).map(|n| n.identity.clone()) else {
            // Heard from the transport before the ledger's copy of the neighbour list: asked
            // again when the list is refreshed, whether or not more packets come.
            self.neighbours_stale = true;
            self.awaiting_neighbour.insert(peer);
            return;
        };
        self.open_backoff.insert(
            peer,
            now.unix_ms.saturating_add(self.config.open_timeout_ms),
        );
        let deposit = u64::try_from(self.free_balance().max(0))
            .unwrap_or(u64::MAX)
            .min(self.config.channel_deposit);
        if let Err(e) =
            self.propose_open(neighbour, deposit, self.config.channel_deposit, None, now)
        {
            tracing::warn!(peer = %peer, error = %e, "cannot open a channel on demand");
        }
    }

    /// A relay's winning ticket for a packet this node handed it: checked, then paid through
    /// the channel (the redemption is stored before the payment is proposed).
    pub(super) fn on_ticket(
        &mut self,
        relay: Identity,
        certificate: VrfKeyCertificate,
        ticket: RelayTicket,
    ) {
        let relay_id = node_id(&relay);
        let id = ticket.channel_id;
        let Some(entry) = self.channels.get(&id) else {
            self.rejects.unknown += 1;
            return;
        };
        if entry.peer_id != relay_id {
            self.rejects.forged += 1;
            return;
        }
        if entry.channel.phase() != ChannelPhase::Open {
            self.rejects.refused += 1;
            return;
        }
        let Some(Sent { bytes, covered }) = self.sent.get(&relay_id, &ticket.packet_hash) else {
            tracing::debug!(channel = %id, "ticket for a packet this node did not hand to the relay");
            self.rejects.refused += 1;
            return;
        };
        if covered {
            // This node's own packet, handed over under a relay agreement that pays for it.
            self.traffic.tickets_declined += 1;
            return;
        }
        let Some(price) = self.neighbours.get(&relay_id).map(|n| n.max_price_per_byte) else {
            self.rejects.refused += 1;
            return;
        };
        if ticket.cost > packet_cost(bytes, price) {
            tracing::debug!(channel = %id, cost = ticket.cost, bytes, price, "ticket priced above the relay's advertised fee");
            self.rejects.refused += 1;
            return;
        }
        let Ok(payout) = ticket.win_probability.payout(ticket.cost) else {
            self.rejects.refused += 1;
            return;
        };
        if payout > entry.available() {
            tracing::info!(channel = %id, payout, available = entry.available(), "ticket not paid: the channel balance is spent");
            self.rejects.refused += 1;
            return;
        }
        let Some(entry) = self.channels.get_mut(&id) else {
            return;
        };
        // The certificate is checked once per peer: the VRF key of an identity never changes,
        // so a later ticket naming the same key needs no signature check.
        let known = entry
            .verifier
            .as_ref()
            .is_some_and(|v| v.public_key() == certificate.vrf_public);
        if !known {
            match certificate.verify(entry.peer.signing_key()) {
                Ok(verifier) => entry.verifier = Some(verifier),
                Err(e) => {
                    tracing::debug!(channel = %id, error = %e, "ticket with a VRF key its relay did not certify");
                    self.rejects.forged += 1;
                    return;
                }
            }
        }
        let Some(verifier) = entry.verifier.as_ref() else {
            self.rejects.forged += 1;
            return;
        };
        match entry
            .channel
            .check_ticket(&ticket, verifier, &mut entry.redeemed)
        {
            Ok(payout) => {
                entry.owed += payout;
                entry.redeemed_gross += payout;
                entry.tickets_redeemed += 1;
                self.traffic.tickets_paid += 1;
                self.writes.redeemed.push(RedeemedKey {
                    channel: id,
                    period: ticket.period,
                    packet_hash: ticket.packet_hash,
                });
                self.mark_dirty(id);
                self.notices.push(Notice::TicketRedeemed {
                    channel: id,
                    relay: relay_id,
                    ticket,
                    certificate,
                    payout,
                });
                self.advance(id);
            }
            Err(e) => {
                tracing::debug!(channel = %id, error = %e, "ticket refused");
                match e {
                    mehr_ledger::lottery::LotteryError::AlreadyRedeemed { .. }
                    | mehr_ledger::lottery::LotteryError::UnknownPeriod { .. } => {
                        self.rejects.stale += 1
                    }
                    mehr_ledger::lottery::LotteryError::ProofRejected
                    | mehr_ledger::lottery::LotteryError::MalformedProof
                    | mehr_ledger::lottery::LotteryError::NotAWin
                    | mehr_ledger::lottery::LotteryError::ProbabilityMismatch { .. }
                    | mehr_ledger::lottery::LotteryError::WrongChannel => self.rejects.forged += 1,
                    _ => self.rejects.refused += 1,
                }
            }
        }
    }

    /// Once per lottery period, a relay sets its win probability on each channel it relays
    /// for from the packet rate of the last five minutes (`p = 0.1 / packets per minute`,
    /// clamped): a new period is proposed when the probability changed.
    pub(super) fn refresh_lottery_terms(&mut self, now: Now) {
        let period_ms = self.config.lottery_period_ms.max(1);
        let ids: Vec<_> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.channels.get_mut(&id) else {
                continue;
            };
            if entry.channel.phase() != ChannelPhase::Open
                || entry.outstanding.is_some()
                || now.unix_ms < entry.terms_checked_ms.saturating_add(period_ms)
            {
                continue;
            }
            entry.terms_checked_ms = now.unix_ms;
            let relayed = std::mem::take(&mut entry.relayed_since_terms);
            let terms = entry.channel.latest().body.lottery;
            let current = terms.win_probability(entry.channel.me());
            let wanted = self
                .rates
                .get(&entry.peer_id)
                .map_or(WinProbability::MAX, |r| r.win_probability(now.unix_ms));
            if wanted == current || (relayed == 0 && current == WinProbability::MAX) {
                continue;
            }
            match entry.channel.propose_lottery_terms(
                terms.period.saturating_add(1),
                wanted,
                &self.key,
            ) {
                Ok(proposal) => {
                    let message = ChannelMessage::Update(proposal);
                    entry.outstanding = Some(Outstanding {
                        message,
                        payment: 0,
                        sent_ms: now.unix_ms,
                    });
                    let peer = entry.peer_id;
                    self.mark_dirty(id);
                    self.send_channel(peer, message);
                }
                Err(e) => {
                    tracing::debug!(channel = %id, error = %e, "cannot propose lottery terms")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_cost_rounds_up_and_is_zero_for_free_relays() {
        assert_eq!(packet_cost(100, 4.0), 400);
        assert_eq!(packet_cost(3, 0.5), 2);
        assert_eq!(packet_cost(100, 0.0), 0);
        assert_eq!(packet_cost(100, f64::NAN), 0);
        assert_eq!(packet_cost(u32::MAX, f64::INFINITY), u64::MAX);
    }

    #[test]
    fn the_sent_log_forgets_the_oldest_packets() {
        let mut log = SentLog::default();
        let n = NodeId([1; 16]);
        for i in 0..(SENT_PER_NEIGHBOUR as u32 + 10) {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_le_bytes());
            let sent = Sent {
                bytes: i,
                covered: i % 2 == 0,
            };
            log.record(n, hash, sent);
        }
        assert_eq!(log.get(&n, &[0; 32]), None);
        let mut last = [0u8; 32];
        last[..4].copy_from_slice(&(SENT_PER_NEIGHBOUR as u32 + 9).to_le_bytes());
        let expected = Sent {
            bytes: SENT_PER_NEIGHBOUR as u32 + 9,
            covered: false,
        };
        assert_eq!(log.get(&n, &last), Some(expected));
        assert_eq!(log.get(&NodeId([2; 16]), &last), None);
    }
}
