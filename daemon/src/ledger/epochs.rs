//! Epochs in the daemon: who proposes the next epoch and when, how the electorate checks and
//! acknowledges it, how an activated epoch is adopted (durably, in one RocksDB batch) and
//! spread, and what catches a node up after a restart or a partition. The rules of
//! compaction and minting are the crate's ([`Ledger::compact`]); this module decides what is
//! folded and who agrees to it. docs/PROTOCOL.md "Epochs" gives the reasons.
//!
//! 1. **When.** Epoch `e + 1` is due `epoch_ms` after this node adopted epoch `e` (after
//!    startup for genesis).
//! 2. **Who proposes.** The electorate of `e + 1` is the active set of snapshot `e` (nodes
//!    that settled in its last 2 epochs), or, when that is empty, every node with a positive
//!    balance in it. Its members are ranked by `Blake3("mehr/epoch-proposer/v1" ‖ e+1 ‖ id)`;
//!    the member at rank `r` proposes once `r` back-offs (half an epoch each) have passed
//!    after the due time, so a dead proposer is replaced without a vote.
//! 3. **What.** A proposal folds the winning records of the first
//!    [`MAX_FOLDED_PER_EPOCH`] unfolded channels (channel-key order) and carries them, so a
//!    validator rebuilds the proposed snapshot from its own snapshot `e` and those records
//!    alone and compares roots: records still arriving do not matter, and what is agreed is
//!    exactly what was checked. Minting parameters are derived from the same data (clusters
//!    from mutual payments, `N` = electorate size), so every node computes the same snapshot.
//! 4. **Acknowledgement.** A member of the electorate ACKs (signed, to the proposer) a
//!    proposal that builds on its own snapshot, rebuilds to the signed root, is not early
//!    (half an epoch after its own adoption at least), and comes from a proposer ranked no
//!    worse than one it already ACKed for that epoch.
//! 5. **Activation.** At 67% of the electorate the proposer builds an activation (summary,
//!    electorate, ACKs, snapshot), adopts it and floods it to its neighbours; every node that
//!    adopts it floods it on. A node also sends its latest activation to a neighbour whose
//!    digest shows another snapshot, which catches up restarted and partitioned nodes.
//! 6. **Adoption** writes the snapshot and the activation in one synced batch: a `kill -9`
//!    leaves either the old or the new epoch, never half of one, and the records stay until
//!    the epoch is [`RECORD_RETENTION_EPOCHS`] old, so nothing folded is lost either way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mehr_ledger::{
    NodeId,
    channel::ChannelKeys,
    ledger::{
        CompactionParams, Ledger, Snapshot,
        epoch::{AckTally, EpochAck, EpochSummary},
    },
    params::RECORD_RETENTION_EPOCHS,
};
use mehr_transport::identity::Identity;

use super::{
    core::{LedgerCore, Now},
    records::node_id,
    wire::{
        EpochActivation, EpochProposal, GossipedRecord, LedgerMessage, MAX_ELECTORATE,
        MAX_FOLDED_PER_EPOCH,
    },
};

/// Milliseconds in a (Julian) year, for the emission tail's epochs per year.
const YEAR_MS: u64 = 31_557_600_000;

/// The epoch protocol's state in the core.
#[derive(Default)]
pub(crate) struct EpochState {
    /// When this node adopted its current epoch (or started), Unix ms.
    pub(super) adopted_ms: u64,
    /// This node's proposal for the next epoch, while it collects ACKs.
    own: Option<OwnProposal>,
    /// The best-ranked proposer this node ACKed for the next epoch.
    acked: Option<Acked>,
    /// Proposers of the next epoch this node gave up on (an ACK to them held for a whole
    /// epoch without an activation): (epoch, worst rank given up). Their proposals are
    /// refused for the rest of that epoch's round, so a proposer that keeps proposing but
    /// cannot gather its quorum (it hears no ACKs) cannot hold the others back again.
    passed_over: Option<(u64, usize)>,
    /// The activation of the adopted epoch (to forward and to catch others up).
    pub(super) activation: Option<EpochActivation>,
    /// Snapshots adopted lately, oldest first: records folded into one that is
    /// [`RECORD_RETENTION_EPOCHS`] old are pruned.
    history: VecDeque<Snapshot>,
    /// Epoch messages refused, by why (GetStats through the drop counters as well).
    pub(crate) counters: EpochCounters,
}

/// What the epoch protocol did and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EpochCounters {
    /// Proposals this node made.
    pub(crate) proposed: u64,
    /// Proposals this node acknowledged.
    pub(crate) acked: u64,
    /// Epochs adopted.
    pub(crate) adopted: u64,
    /// Proposals or activations for another base, an old epoch, or too early.
    pub(crate) stale: u64,
    /// Proposals whose rebuilt snapshot differs from the signed summary, bad signatures,
    /// proposers or ACKs from outside the electorate.
    pub(crate) refused: u64,
}

/// An acknowledgement that holds this node to a proposer: while it holds, the node neither
/// proposes nor ACKs a worse-ranked proposer for that epoch, so one proposal can gather its
/// quorum. It holds for one epoch length from the first ACK to that proposer: a proposer that
/// died after being acknowledged must not stall the network until it comes back.
#[derive(Clone, Copy, Debug)]
struct Acked {
    epoch: u64,
    rank: usize,
    since_ms: u64,
}

impl Acked {
    /// Whether it still keeps this node from a proposer of `rank` for `epoch` at `now_ms`.
    fn holds_against(&self, epoch: u64, rank: usize, now_ms: u64, epoch_ms: u64) -> bool {
        self.epoch == epoch && self.rank < rank && now_ms < self.since_ms.saturating_add(epoch_ms)
    }
}

struct OwnProposal {
    proposal: EpochProposal,
    snapshot: Snapshot,
    tally: AckTally,
    acks: BTreeMap<NodeId, (Identity, EpochAck)>,
    electorate: Vec<NodeId>,
    proposed_ms: u64,
    sent_ms: u64,
}

/// The electorate of the epoch after `snapshot`: its active set, or every funded node when
/// nobody settled lately (genesis, an idle network). Sorted.
pub(crate) fn electorate(snapshot: &Snapshot) -> Vec<NodeId> {
    let active = snapshot.active_set();
    if !active.is_empty() {
        return active;
    }
    snapshot
        .balances()
        .iter()
        .filter(|(_, b)| **b > 0)
        .map(|(id, _)| *id)
        .collect()
}

/// Proposer order for `epoch`: lowest `Blake3("mehr/epoch-proposer/v1" ‖ epoch ‖ id)` first.
pub(crate) fn proposer_rank(electorate: &[NodeId], epoch: u64, node: &NodeId) -> Option<usize> {
    let draw = |id: &NodeId| {
        let mut h = blake3::Hasher::new();
        h.update(b"mehr/epoch-proposer/v1");
        h.update(&epoch.to_le_bytes());
        h.update(&id.0);
        *h.finalize().as_bytes()
    };
    let mut order: Vec<([u8; 32], NodeId)> = electorate.iter().map(|id| (draw(id), *id)).collect();
    order.sort();
    order.iter().position(|(_, id)| id == node)
}

/// The compaction inputs every node derives alike from the ledger about to be compacted.
pub(crate) fn compaction_params(
    ledger: &Ledger,
    electorate_size: usize,
    epoch_ms: u64,
) -> CompactionParams {
    CompactionParams {
        epochs_per_year: YEAR_MS / epoch_ms.max(1),
        active_trusted_nodes: electorate_size as u64,
        clusters: ledger.payment_clusters(),
    }
}

impl LedgerCore {
    fn epoch_backoff_ms(&self) -> u64 {
        (self.config.epoch_ms / 2).max(500)
    }

    /// Proposes the next epoch when it is this node's turn, and sends its outstanding
    /// proposal again to the members that have not acknowledged it.
    pub(super) fn epoch_timers(&mut self, now: Now) {
        if self.epochs.adopted_ms == 0 {
            // The first tick after startup starts the clock of the adopted epoch.
            self.epochs.adopted_ms = now.unix_ms;
        }
        let next = self.epoch() + 1;
        if let Some(own) = &mut self.epochs.own {
            if own.proposal.summary.epoch != next
                || now.unix_ms >= own.proposed_ms.saturating_add(self.config.epoch_ms)
            {
                // Adopted meanwhile, or not activated within an epoch: start afresh.
                self.epochs.own = None;
            } else {
                if now.unix_ms >= own.sent_ms.saturating_add(self.config.retry_ms) {
                    own.sent_ms = now.unix_ms;
                    let missing: Vec<NodeId> = own
                        .electorate
                        .iter()
                        .filter(|id| **id != self.me && !own.acks.contains_key(id))
                        .copied()
                        .collect();
                    let message = LedgerMessage::EpochProposal(own.proposal.clone());
                    for id in missing {
                        self.send(id, message.clone());
                    }
                }
                return;
            }
        }
        if let Some(held) = self.epochs.acked
            && held.epoch == next
            && now.unix_ms >= held.since_ms.saturating_add(self.config.epoch_ms)
        {
            tracing::debug!(
                epoch = next,
                rank = held.rank,
                "an acknowledged proposer is passed over"
            );
            let worst = self
                .epochs
                .passed_over
                .filter(|(epoch, _)| *epoch == next)
                .map_or(held.rank, |(_, worst)| worst.max(held.rank));
            self.epochs.passed_over = Some((next, worst));
            self.epochs.acked = None;
        }
        let electorate = electorate(self.ledger.snapshot());
        let Some(rank) = proposer_rank(&electorate, next, &self.me) else {
            return;
        };
        let due = self
            .epochs
            .adopted_ms
            .saturating_add(self.config.epoch_ms)
            .saturating_add(self.epoch_backoff_ms().saturating_mul(rank as u64));
        if now.unix_ms < due {
            return;
        }
        if self
            .epochs
            .acked
            .is_some_and(|a| a.holds_against(next, rank, now.unix_ms, self.config.epoch_ms))
        {
            // A better-ranked proposer's proposal is out; wait for its activation.
            return;
        }
        self.propose_epoch(electorate, now);
    }

    fn propose_epoch(&mut self, electorate: Vec<NodeId>, now: Now) {
        let folded = self.ledger.unfolded_winners(MAX_FOLDED_PER_EPOCH);
        let records: Vec<GossipedRecord> = folded
            .iter()
            .filter_map(|record| {
                Some(GossipedRecord {
                    record: *record,
                    identity_a: self.parties.get(&record.body.party_a)?.clone(),
                    identity_b: self.parties.get(&record.body.party_b)?.clone(),
                })
            })
            .collect();
        let mut next = Ledger::new(self.ledger.snapshot().clone());
        for r in &records {
            next.join_verified(r.record);
        }
        let params = compaction_params(&next, electorate.len(), self.config.epoch_ms);
        let snapshot = next.compact(&params);
        let summary = EpochSummary::propose(&snapshot, self.me, &self.key);
        let proposal = EpochProposal {
            proposer: self.identity.clone(),
            base_root: self.ledger.snapshot().root(),
            summary,
            records,
        };
        let mut tally = AckTally::new(summary, electorate.iter().copied());
        let mut acks = BTreeMap::new();
        let own_ack = EpochAck::sign(&summary, self.me, &self.key);
        if tally.add(&own_ack, &self.key.verifying_key()).is_ok() {
            acks.insert(self.me, (self.identity.clone(), own_ack));
        }
        self.epochs.counters.proposed += 1;
        tracing::debug!(
            epoch = summary.epoch,
            rank = proposer_rank(&electorate, summary.epoch, &self.me),
            electorate = electorate.len(),
            folded = proposal.records.len(),
            minted = %summary.minted_total,
            "proposing an epoch"
        );
        let message = LedgerMessage::EpochProposal(proposal.clone());
        for id in &electorate {
            if *id != self.me {
                self.send(*id, message.clone());
            }
        }
        let own = OwnProposal {
            proposal,
            snapshot,
            tally,
            acks,
            electorate,
            proposed_ms: now.unix_ms,
            sent_ms: now.unix_ms,
        };
        if own.tally.is_activated() {
            self.activate(own, now);
        } else {
            self.epochs.own = Some(own);
        }
    }

    /// A proposal from a member of the electorate: rebuild it, ACK it if it matches.
    pub(super) fn on_epoch_proposal(&mut self, proposal: EpochProposal, now: Now) {
        let summary = proposal.summary;
        let next = self.epoch() + 1;
        if summary.epoch != next
            || proposal.base_root != self.ledger.snapshot().root()
            || now.unix_ms
                < self
                    .epochs
                    .adopted_ms
                    .saturating_add(self.config.epoch_ms / 2)
        {
            tracing::debug!(
                epoch = summary.epoch,
                own_epoch = self.epoch(),
                same_base = proposal.base_root == self.ledger.snapshot().root(),
                "an epoch proposal is stale here"
            );
            self.epochs.counters.stale += 1;
            self.drops.count("ledger.epoch_stale");
            return;
        }
        let electorate = electorate(self.ledger.snapshot());
        let proposer = node_id(&proposal.proposer);
        let rank = proposer_rank(&electorate, next, &proposer);
        if proposer != summary.proposer
            || rank.is_none()
            || summary.verify(proposal.proposer.signing_key()).is_err()
            || !electorate.contains(&self.me)
        {
            self.epochs.counters.refused += 1;
            self.drops.count("ledger.epoch_refused");
            return;
        }
        let rank = rank.unwrap_or(usize::MAX);
        if self
            .epochs
            .passed_over
            .is_some_and(|(epoch, worst)| epoch == next && rank <= worst)
        {
            tracing::debug!(
                epoch = next,
                rank,
                "an epoch proposal from a proposer passed over"
            );
            self.epochs.counters.stale += 1;
            self.drops.count("ledger.epoch_stale");
            return;
        }
        if self
            .epochs
            .acked
            .is_some_and(|a| a.holds_against(next, rank, now.unix_ms, self.config.epoch_ms))
        {
            tracing::debug!(
                epoch = summary.epoch,
                rank,
                acknowledged = self.epochs.acked.map(|a| a.rank),
                "an epoch proposal ranks below one acknowledged here"
            );
            self.epochs.counters.stale += 1;
            self.drops.count("ledger.epoch_stale");
            return;
        }
        let mut rebuilt = Ledger::new(self.ledger.snapshot().clone());
        for r in &proposal.records {
            let body = r.record.body;
            if node_id(&r.identity_a) != body.party_a || node_id(&r.identity_b) != body.party_b {
                self.epochs.counters.refused += 1;
                self.drops.count("ledger.epoch_refused");
                return;
            }
            let keys = ChannelKeys {
                a: *r.identity_a.signing_key(),
                b: *r.identity_b.signing_key(),
            };
            if rebuilt.insert(r.record, &keys).is_err() {
                self.epochs.counters.refused += 1;
                self.drops.count("ledger.epoch_refused");
                return;
            }
        }
        let params = compaction_params(&rebuilt, electorate.len(), self.config.epoch_ms);
        let snapshot = rebuilt.compact(&params);
        if summary.matches(&snapshot).is_err() {
            tracing::debug!(
                epoch = summary.epoch,
                "an epoch proposal does not rebuild to its root"
            );
            self.epochs.counters.refused += 1;
            self.drops.count("ledger.epoch_refused");
            return;
        }
        // The proposal's records are news to a node that missed their gossip: keep them.
        for r in proposal.records {
            if self.ledger.is_news(&r.record) {
                let _ = self.record_settlement(r.record, r.identity_a, r.identity_b);
            }
        }
        tracing::debug!(
            epoch = summary.epoch,
            proposer = %hex::encode(&proposer.0[..4]),
            rank,
            "epoch proposal acknowledged"
        );
        // The hold runs from the first ACK to this proposer for this epoch.
        let since_ms = match self.epochs.acked {
            Some(a) if a.epoch == next && a.rank == rank => a.since_ms,
            _ => now.unix_ms,
        };
        self.epochs.acked = Some(Acked {
            epoch: next,
            rank,
            since_ms,
        });
        self.epochs.counters.acked += 1;
        let ack = EpochAck::sign(&summary, self.me, &self.key);
        self.send(
            proposer,
            LedgerMessage::EpochAck {
                sender: self.identity.clone(),
                ack,
            },
        );
    }

    /// An ACK of this node's proposal.
    pub(super) fn on_epoch_ack(&mut self, sender: Identity, ack: EpochAck, now: Now) {
        let Some(mut own) = self.epochs.own.take() else {
            self.epochs.counters.stale += 1;
            return;
        };
        if node_id(&sender) != ack.node {
            self.epochs.counters.refused += 1;
            self.drops.count("ledger.epoch_refused");
            self.epochs.own = Some(own);
            return;
        }
        match own.tally.add(&ack, sender.signing_key()) {
            Ok(()) => {
                own.acks.insert(ack.node, (sender, ack));
                tracing::debug!(
                    epoch = ack.epoch,
                    acks = own.acks.len(),
                    needed = own.tally.threshold(),
                    "epoch ACK counted"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "epoch ACK refused");
                self.epochs.counters.refused += 1;
                self.drops.count("ledger.epoch_refused");
            }
        }
        if own.tally.is_activated() {
            self.activate(own, now);
        } else {
            self.epochs.own = Some(own);
        }
    }

    fn activate(&mut self, own: OwnProposal, now: Now) {
        let activation = EpochActivation {
            proposer: self.identity.clone(),
            summary: own.proposal.summary,
            electorate: own.electorate,
            acks: own.acks.into_values().collect(),
            snapshot: own.snapshot.encode(),
        };
        self.adopt_epoch(own.snapshot, activation, now);
    }

    /// An activated epoch from a neighbour (or a catch-up): check it and adopt it.
    pub(super) fn on_epoch_activation(&mut self, activation: EpochActivation, now: Now) {
        let Ok(snapshot) = Snapshot::decode(&activation.snapshot) else {
            self.rejects.malformed += 1;
            return;
        };
        if !self.ledger.would_adopt(&snapshot) {
            // Known already, or older: the common case of the flood.
            return;
        }
        let summary = activation.summary;
        if node_id(&activation.proposer) != summary.proposer
            || summary.verify(activation.proposer.signing_key()).is_err()
            || summary.matches(&snapshot).is_err()
            || activation.electorate.len() > MAX_ELECTORATE
            || !activation.electorate.contains(&summary.proposer)
        {
            self.epochs.counters.refused += 1;
            self.drops.count("ledger.epoch_refused");
            return;
        }
        let mut tally = AckTally::new(summary, activation.electorate.iter().copied());
        let mut signers = BTreeSet::new();
        for (who, ack) in &activation.acks {
            if node_id(who) == ack.node && tally.add(ack, who.signing_key()).is_ok() {
                signers.insert(ack.node);
            }
        }
        let mine = electorate(self.ledger.snapshot());
        let sequential = summary.epoch == self.epoch() + 1 && activation.electorate == mine;
        // A jump (a node far behind, or a rival snapshot of an epoch already adopted) cannot
        // be rebuilt here: it is taken only if a third of this node's own electorate signed
        // it, on top of two thirds of the electorate it names.
        let vouched = signers.iter().filter(|id| mine.contains(id)).count();
        let jump_ok = vouched * 3 >= mine.len().max(1);
        if !tally.is_activated() || !(sequential || jump_ok) {
            tracing::debug!(
                epoch = summary.epoch,
                own_epoch = self.epoch(),
                activated = tally.is_activated(),
                sequential,
                vouched,
                "an epoch activation is refused"
            );
            self.epochs.counters.refused += 1;
            self.drops.count("ledger.epoch_refused");
            return;
        }
        self.adopt_epoch(snapshot, activation, now);
    }

    /// Adopts an activated snapshot: the ledger moves to it, it is written with its
    /// activation in the next flush's batch, old folded records are pruned, and the
    /// activation goes on to every neighbour.
    fn adopt_epoch(&mut self, snapshot: Snapshot, activation: EpochActivation, now: Now) {
        if !self.ledger.would_adopt(&snapshot) {
            return;
        }
        let epoch = snapshot.epoch();
        tracing::info!(
            epoch,
            root = %hex::encode(&snapshot.root()[..8]),
            folded = snapshot.settlement_count(),
            minted_total = %snapshot.minted_total(),
            "epoch adopted"
        );
        self.ledger.adopt(snapshot.clone());
        let (_, activation_bytes) =
            LedgerMessage::EpochActivation(Box::new(activation.clone())).encode();
        self.writes.epoch = Some((snapshot.encode(), activation_bytes));
        self.epochs.history.push_back(snapshot);
        while self.epochs.history.len() > RECORD_RETENTION_EPOCHS as usize + 1 {
            self.epochs.history.pop_front();
        }
        if let Some(old) = self
            .epochs
            .history
            .iter()
            .find(|s| s.epoch() + RECORD_RETENTION_EPOCHS == epoch)
            .cloned()
        {
            for id in self.ledger.prune_folded_by(&old) {
                self.writes.records_put.remove(&id);
                self.writes.records_delete.insert(id);
            }
            self.records_digest = None;
        }
        self.records_digest = None;
        self.epochs.adopted_ms = now.unix_ms;
        self.epochs.own = None;
        self.epochs.counters.adopted += 1;
        let neighbours: Vec<NodeId> = self.neighbours.keys().copied().collect();
        for id in neighbours {
            self.send(
                id,
                LedgerMessage::EpochActivation(Box::new(activation.clone())),
            );
        }
        self.epochs.activation = Some(activation);
    }

    /// Sends the adopted epoch's activation to a neighbour whose snapshot differs.
    pub(super) fn offer_epoch(&mut self, to: NodeId) {
        if let Some(activation) = self.epochs.activation.clone() {
            self.send(to, LedgerMessage::EpochActivation(Box::new(activation)));
        }
    }

    /// Restores the adopted epoch from the store: the snapshot the ledger starts from, and
    /// the activation to offer neighbours.
    pub(super) fn restore_epoch(
        &mut self,
        snapshot: &[u8],
        activation: Option<&[u8]>,
    ) -> Result<(), String> {
        let snapshot = Snapshot::decode(snapshot).map_err(|e| e.to_string())?;
        self.ledger = Ledger::new(snapshot.clone());
        self.epochs.history.push_back(snapshot);
        if let Some(bytes) = activation
            && let Ok(LedgerMessage::EpochActivation(a)) =
                LedgerMessage::decode(super::wire::kinds::EPOCH_ACTIVATION, bytes)
        {
            self.epochs.activation = Some(*a);
        }
        Ok(())
    }
}
