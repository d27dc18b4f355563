//! Settlement records between neighbours: new records are pushed to every neighbour as they
//! are learned (and forwarded on by those that did not have them); every gossip interval
//! each node tells its neighbours a digest of its ledger, and a neighbour whose ledger
//! differs gets the next page of the record set (at most [`RECONCILE_PAGE_RECORDS`] per
//! round, from a cursor kept per neighbour, so successive rounds walk the whole set without
//! one digest costing the whole set). The ledger is a CRDT, so whatever the order and the
//! duplicates, nodes that saw the same records hold the same ledger. Gossiped records pass
//! the admission rules of [`super::admission`] first.

use std::collections::HashMap;

use mehr_ledger::{NodeId, ledger::InsertOutcome};

/// The most records one digest answer sends a neighbour (4 settlements messages).
pub(crate) const RECONCILE_PAGE_RECORDS: usize = 4 * MAX_RECORDS_PER_MESSAGE;

use super::{
    admission::Candidate,
    core::{LedgerCore, NeighbourInfo, Now},
    records::node_id,
    wire::{GossipedRecord, LedgerDigest, LedgerMessage, MAX_RECORDS_PER_MESSAGE},
};

impl LedgerCore {
    /// Replaces the set of Mehr neighbours. A neighbour seen for the first time gets this
    /// node's digest at once, so two parts of a healed partition compare ledgers right away.
    pub(crate) fn set_neighbours(&mut self, neighbours: HashMap<NodeId, NeighbourInfo>, now: Now) {
        self.last_now_ms = now.unix_ms;
        let new: Vec<NodeId> = neighbours
            .keys()
            .filter(|id| !self.neighbours.contains_key(id))
            .copied()
            .collect();
        self.pushed_ms.retain(|id, _| neighbours.contains_key(id));
        self.reconcile_cursor
            .retain(|id, _| neighbours.contains_key(id));
        self.neighbours = neighbours;
        let known: Vec<NodeId> = self
            .awaiting_neighbour
            .iter()
            .filter(|id| self.neighbours.contains_key(id))
            .copied()
            .collect();
        for peer in known {
            self.awaiting_neighbour.remove(&peer);
            if !self.by_peer.contains_key(&peer) {
                self.open_on_demand(peer, now);
            }
        }
        if !new.is_empty() {
            let digest = self.digest();
            for id in new {
                self.send(id, LedgerMessage::Digest(digest));
            }
        }
    }

    fn digest(&mut self) -> LedgerDigest {
        LedgerDigest {
            sender: self.me,
            snapshot_root: self.ledger.snapshot().root(),
            records_digest: self.records_digest(),
            record_count: self.ledger.record_count() as u64,
        }
    }

    /// Sends this node's digest to every neighbour, once per gossip interval.
    pub(super) fn gossip_digest(&mut self, now: Now) {
        if now.unix_ms
            < self
                .digest_sent_ms
                .saturating_add(self.config.gossip_interval_ms)
        {
            return;
        }
        self.digest_sent_ms = now.unix_ms;
        let digest = self.digest();
        let neighbours: Vec<NodeId> = self.neighbours.keys().copied().collect();
        for id in neighbours {
            self.send(id, LedgerMessage::Digest(digest));
        }
    }

    pub(super) fn on_digest(&mut self, digest: LedgerDigest, now: Now) {
        // The sender field is unauthenticated: records only ever go to current neighbours,
        // at most once per half interval each, so a forged digest cannot turn this node into
        // an amplifier.
        if !self.neighbours.contains_key(&digest.sender) {
            // Perhaps a neighbour the ledger has not been told about yet; its next digest
            // will find it.
            self.neighbours_stale = true;
            return;
        }
        let mine = self.digest();
        if mine.snapshot_root == digest.snapshot_root
            && mine.records_digest == digest.records_digest
        {
            return;
        }
        let last = self.pushed_ms.get(&digest.sender).copied().unwrap_or(0);
        if last != 0 && now.unix_ms < last.saturating_add(self.config.gossip_interval_ms / 2) {
            return;
        }
        self.pushed_ms.insert(digest.sender, now.unix_ms.max(1));
        if mine.snapshot_root != digest.snapshot_root {
            // Another epoch: offer ours (ignored there unless it takes precedence).
            self.offer_epoch(digest.sender);
        }
        let cursor = self.reconcile_cursor.get(&digest.sender).copied();
        let (page, last) = self
            .ledger
            .records_page(cursor.as_ref(), RECONCILE_PAGE_RECORDS);
        match last {
            Some(key) => self.reconcile_cursor.insert(digest.sender, key),
            None => self.reconcile_cursor.remove(&digest.sender),
        };
        let all: Vec<GossipedRecord> = page
            .iter()
            .filter_map(|record| {
                Some(GossipedRecord {
                    record: *record,
                    identity_a: self.parties.get(&record.body.party_a)?.clone(),
                    identity_b: self.parties.get(&record.body.party_b)?.clone(),
                })
            })
            .collect();
        for chunk in all.chunks(MAX_RECORDS_PER_MESSAGE) {
            self.send(digest.sender, LedgerMessage::Settlements(chunk.to_vec()));
        }
        // Ask for theirs too, in case this node is the one missing records.
        self.send(digest.sender, LedgerMessage::Digest(mine));
    }

    pub(super) fn on_settlements(&mut self, records: Vec<GossipedRecord>) {
        let mut held = self.ledger.record_count();
        for gossiped in records {
            let body = gossiped.record.body;
            if node_id(&gossiped.identity_a) != body.party_a
                || node_id(&gossiped.identity_b) != body.party_b
            {
                self.rejects.forged += 1;
                continue;
            }
            if let Err(refusal) = self.admit_gossiped(&gossiped.record, held) {
                self.rejects.refused += 1;
                self.drops.count(refusal.reason());
                continue;
            }
            held += 1;
            match self.record_settlement(gossiped.record, gossiped.identity_a, gossiped.identity_b)
            {
                Ok(InsertOutcome::Applied | InsertOutcome::Equivocation) => {
                    self.observe_own_channel_record(&gossiped.record)
                }
                Ok(InsertOutcome::Duplicate | InsertOutcome::Superseded) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "gossiped settlement refused");
                    self.rejects.forged += 1;
                }
            }
        }
    }

    /// Applies the admission rules to a gossiped record that would change the ledger;
    /// duplicates and superseded records pass (they cost nothing to hold).
    fn admit_gossiped(
        &mut self,
        record: &mehr_ledger::ledger::SettlementRecord,
        held: usize,
    ) -> Result<(), super::admission::Refusal> {
        let body = record.body;
        if !self.ledger.is_news(record)
            || body.party_a == self.me
            || body.party_b == self.me
            || self.channels.contains_key(&body.channel_id)
        {
            return Ok(());
        }
        let key = mehr_ledger::ledger::ChannelKey {
            channel_id: body.channel_id,
            party_a: body.party_a,
            party_b: body.party_b,
        };
        let balances = self.ledger.snapshot().balances();
        let funded = |party| balances.get(&party).is_some_and(|b| *b > 0);
        let candidate = Candidate {
            record,
            known_channel: self.ledger.knows_channel(&key),
            adds: self.ledger.would_add(record),
            held,
            funded: (funded(body.party_a), funded(body.party_b)),
        };
        self.admission.admit(&candidate, self.last_now_ms)
    }

    /// A record about one of this node's channels that arrived by gossip (the peer's
    /// unilateral close resolved on its side): a close ends the channel here too.
    fn observe_own_channel_record(&mut self, record: &mehr_ledger::ledger::SettlementRecord) {
        let id = record.body.channel_id;
        if let Some(entry) = self.channels.get(&id)
            && record.kind.closes()
            && self.by_peer.get(&entry.peer_id) == Some(&id)
        {
            let peer = entry.peer_id;
            self.by_peer.remove(&peer);
        }
    }

    /// Turns the records learned since the last flush into settlements messages for every
    /// neighbour.
    pub(super) fn queue_gossip(&mut self) {
        if self.gossip.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.gossip);
        let neighbours: Vec<NodeId> = self.neighbours.keys().copied().collect();
        for chunk in records.chunks(MAX_RECORDS_PER_MESSAGE) {
            for id in &neighbours {
                self.send(*id, LedgerMessage::Settlements(chunk.to_vec()));
            }
        }
    }
}
