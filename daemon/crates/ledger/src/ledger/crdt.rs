//! The settlement ledger as a state-based CRDT (decision 5, §8 item 19).
//!
//! State: the adopted epoch snapshot plus, per channel, the settlement records at the
//! highest `(seq, kind)` seen. Merge takes the snapshot with the highest precedence and joins
//! the per-channel sets (higher key wins, equal keys union), so it is commutative,
//! associative and idempotent. Balances are never stored: they are derived from the snapshot
//! and the cumulative per-direction totals of each channel's winning record, so the result
//! cannot depend on the order records arrived in. Overdrafts and equivocations are flagged in
//! the derived view, never dropped from the state.

use std::collections::{BTreeMap, BTreeSet};

use super::minting::{NodeFlows, epoch_emission, mint, scaled_emission};
use super::record::{RecordError, SettlementKind, SettlementRecord};
use super::snapshot::{Baseline, ChannelKey, ChannelStatus, Snapshot};
use crate::burn::net_of;
use crate::channel::ChannelKeys;
use crate::ids::NodeId;
use crate::params::UNILATERAL_RELEASE_EPOCHS;

#[derive(Clone, Debug, PartialEq, Eq)]
struct ChannelRecords {
    seq: u64,
    rank: u8,
    /// Records at the highest key, by record id.
    records: BTreeMap<[u8; 32], SettlementRecord>,
}

impl ChannelRecords {
    fn key(&self) -> (u64, u8) {
        (self.seq, self.rank)
    }

    fn winner(&self) -> Option<&SettlementRecord> {
        // Lowest record id: deterministic whatever the arrival order.
        self.records.values().next()
    }

    fn join_record(&mut self, record: SettlementRecord) -> InsertOutcome {
        let key = (record.body.seq, record.kind.rank());
        match key.cmp(&self.key()) {
            std::cmp::Ordering::Less => InsertOutcome::Superseded,
            std::cmp::Ordering::Greater => {
                self.seq = key.0;
                self.rank = key.1;
                self.records = BTreeMap::from([(record.id(), record)]);
                InsertOutcome::Applied
            }
            std::cmp::Ordering::Equal => {
                let id = record.id();
                match self.records.get(&id) {
                    Some(existing) => {
                        // Same content, possibly other signature bytes: keep the smaller
                        // encoding so every replica holds the same bytes.
                        if record.encode() < existing.encode() {
                            self.records.insert(id, record);
                        }
                        InsertOutcome::Duplicate
                    }
                    None => {
                        self.records.insert(id, record);
                        InsertOutcome::Equivocation
                    }
                }
            }
        }
    }
}

/// What inserting one record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The record is the channel's new highest.
    Applied,
    /// The record was already known.
    Duplicate,
    /// A higher record for the channel is already known (kept out; the higher one wins).
    Superseded,
    /// Another record with the same seq and kind but different content exists: both parties
    /// signed two versions of one state. Both are kept and the channel is flagged.
    Equivocation,
}

/// One account in the derived view, μ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Total balance: snapshot plus channel flows (includes escrowed channel balances).
    pub balance: i128,
    /// Held in open or closing channels.
    pub escrowed: i128,
}

impl Account {
    /// Spendable outside channels: `balance − escrowed`. Negative means overdraft.
    pub fn free(&self) -> i128 {
        self.balance - self.escrowed
    }
}

/// Inputs to epoch compaction that the ledger cannot know by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionParams {
    /// Trailing 1000-epoch average of epochs per year (for the emission tail); 0 disables it.
    pub epochs_per_year: u64,
    /// Active nodes with mutual trust (`N` in `E_s = E·min(N,100)/100`).
    pub active_trusted_nodes: u64,
    /// Minting clusters (e.g. trust clusters): nodes mapped to one id net their income.
    pub clusters: BTreeMap<NodeId, u64>,
}

/// A channel's state as the derived view sees it.
struct Effect<'a> {
    key: &'a ChannelKey,
    base: Option<&'a Baseline>,
    /// The winning record, if it is above the baseline.
    fresh: Option<&'a SettlementRecord>,
    /// More than one record at the winning key.
    equivocation: bool,
}

impl Effect<'_> {
    fn base_paid(&self) -> (u64, u64) {
        self.base.map_or((0, 0), |b| (b.paid_a_to_b, b.paid_b_to_a))
    }

    fn paid(&self) -> (u64, u64) {
        match (self.fresh, self.base) {
            (Some(r), _) => (r.body.paid_a_to_b, r.body.paid_b_to_a),
            (None, Some(b)) => (b.paid_a_to_b, b.paid_b_to_a),
            (None, None) => (0, 0),
        }
    }

    fn balances(&self) -> (u64, u64) {
        match (self.fresh, self.base) {
            (Some(r), _) => (r.body.balance_a, r.body.balance_b),
            (None, Some(b)) => (b.balance_a, b.balance_b),
            (None, None) => (0, 0),
        }
    }

    /// Status after folding the fresh record (closing starts at `epoch`).
    fn status(&self, epoch: u64) -> ChannelStatus {
        let base = self.base.map(|b| b.status);
        let Some(record) = self.fresh else {
            return base.unwrap_or(ChannelStatus::Open);
        };
        match (base, record.kind) {
            (Some(ChannelStatus::Closed), _) | (_, SettlementKind::CooperativeClose) => {
                ChannelStatus::Closed
            }
            (Some(closing @ ChannelStatus::Closing { .. }), _) => closing,
            (_, SettlementKind::UnilateralClose) => ChannelStatus::Closing { since_epoch: epoch },
            (_, SettlementKind::Checkpoint) => ChannelStatus::Open,
        }
    }

    /// Signed balance change of A and B since the baseline: payments out gross, payments in
    /// net of the burn, both from cumulative totals.
    fn flows(&self) -> (i128, i128) {
        let (b_ab, b_ba) = self.base_paid();
        let (ab, ba) = self.paid();
        let out_a = i128::from(ab) - i128::from(b_ab);
        let out_b = i128::from(ba) - i128::from(b_ba);
        let in_a = i128::from(net_of(ba)) - i128::from(net_of(b_ba));
        let in_b = i128::from(net_of(ab)) - i128::from(net_of(b_ab));
        (in_a - out_a, in_b - out_b)
    }
}

/// The CRDT settlement ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    snapshot: Snapshot,
    channels: BTreeMap<ChannelKey, ChannelRecords>,
}

fn key_of(record: &SettlementRecord) -> ChannelKey {
    ChannelKey {
        channel_id: record.body.channel_id,
        party_a: record.body.party_a,
        party_b: record.body.party_b,
    }
}

impl Ledger {
    /// A ledger starting from `snapshot` (genesis, or an adopted epoch).
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            channels: BTreeMap::new(),
        }
    }

    /// The adopted snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Verifies a record under its parties' keys (supplied by the caller for
    /// `record.body.party_a` / `party_b`) and joins it. Invalid records are refused; valid
    /// ones are always kept, whatever they do to balances.
    pub fn insert(
        &mut self,
        record: SettlementRecord,
        keys: &ChannelKeys,
    ) -> Result<InsertOutcome, RecordError> {
        record.verify(keys)?;
        Ok(self.join_verified(record))
    }

    /// Joins a record that was already verified (e.g. re-read from the node's own storage).
    pub fn join_verified(&mut self, record: SettlementRecord) -> InsertOutcome {
        let key = key_of(&record);
        match self.channels.get_mut(&key) {
            Some(entry) => entry.join_record(record),
            None => {
                self.channels.insert(
                    key,
                    ChannelRecords {
                        seq: record.body.seq,
                        rank: record.kind.rank(),
                        records: BTreeMap::from([(record.id(), record)]),
                    },
                );
                InsertOutcome::Applied
            }
        }
    }

    /// Merges another replica into this one.
    pub fn merge(&mut self, other: &Ledger) {
        if other.snapshot.precedence() > self.snapshot.precedence() {
            self.snapshot = other.snapshot.clone();
        }
        for entry in other.channels.values() {
            for record in entry.records.values() {
                self.join_verified(*record);
            }
        }
    }

    /// Adopts an activated epoch snapshot (a merge with a replica holding only it).
    pub fn adopt(&mut self, snapshot: Snapshot) {
        if snapshot.precedence() > self.snapshot.precedence() {
            self.snapshot = snapshot;
        }
    }

    /// Every record held, by channel (for gossip and persistence).
    pub fn records(&self) -> impl Iterator<Item = &SettlementRecord> {
        self.channels.values().flat_map(|e| e.records.values())
    }

    /// Whether the ledger knows the channel: a baseline in the adopted snapshot or a record.
    pub fn knows_channel(&self, key: &ChannelKey) -> bool {
        self.channels.contains_key(key) || self.snapshot.channels().contains_key(key)
    }

    /// Whether inserting `record` would change the ledger: a new channel, a higher
    /// `(seq, kind)`, or another record at the channel's highest one. Duplicates and
    /// superseded records are not news.
    pub fn is_news(&self, record: &SettlementRecord) -> bool {
        let key = (record.body.seq, record.kind.rank());
        match self.channels.get(&key_of(record)) {
            None => true,
            Some(entry) => {
                key > entry.key()
                    || (key == entry.key() && !entry.records.contains_key(&record.id()))
            }
        }
    }

    /// Whether inserting `record` would add a record to its channel (a new channel, or
    /// another record at the channel's highest `(seq, kind)`) rather than replace or leave
    /// the held ones. Returns the number of records the channel holds at that key.
    pub fn would_add(&self, record: &SettlementRecord) -> Option<usize> {
        let key = (record.body.seq, record.kind.rank());
        match self.channels.get(&key_of(record)) {
            None => Some(0),
            Some(entry) if entry.key() == key && !entry.records.contains_key(&record.id()) => {
                Some(entry.records.len())
            }
            Some(_) => None,
        }
    }

    /// Up to `limit` records of the channels after `after` (all channels when `None`), in
    /// channel-key order, with the key of the last channel returned: a cursor for paging
    /// through the record set a little at a time.
    pub fn records_page(
        &self,
        after: Option<&ChannelKey>,
        limit: usize,
    ) -> (Vec<SettlementRecord>, Option<ChannelKey>) {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(*key),
            None => Bound::Unbounded,
        };
        let mut page = Vec::new();
        let mut last = None;
        for (key, entry) in self.channels.range((start, Bound::Unbounded)) {
            if page.len() + entry.records.len() > limit && !page.is_empty() {
                break;
            }
            page.extend(entry.records.values().copied());
            last = Some(*key);
        }
        (page, last)
    }

    /// Number of records held.
    pub fn record_count(&self) -> usize {
        self.channels.values().map(|e| e.records.len()).sum()
    }

    /// The winning record of a channel, if any is held.
    pub fn winner(&self, key: &ChannelKey) -> Option<&SettlementRecord> {
        self.channels.get(key).and_then(ChannelRecords::winner)
    }

    fn effects(&self) -> Vec<Effect<'_>> {
        let snap = self.snapshot.channels();
        let keys: BTreeSet<&ChannelKey> = snap.keys().chain(self.channels.keys()).collect();
        keys.into_iter()
            .map(|key| {
                let base = snap.get(key);
                let live = self.channels.get(key);
                let base_key = base.map(|b| (b.seq, b.kind.rank()));
                let fresh = live
                    .filter(|l| base_key.is_none_or(|bk| l.key() > bk))
                    .and_then(ChannelRecords::winner);
                let equivocation = live.is_some_and(|l| l.records.len() > 1);
                Effect {
                    key,
                    base,
                    fresh,
                    equivocation,
                }
            })
            .collect()
    }

    fn derive_accounts(&self, effects: &[Effect<'_>]) -> BTreeMap<NodeId, Account> {
        let mut accounts: BTreeMap<NodeId, Account> = self
            .snapshot
            .balances()
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    Account {
                        balance: *v,
                        escrowed: 0,
                    },
                )
            })
            .collect();
        let next_epoch = self.snapshot.epoch().saturating_add(1);
        for e in effects {
            let (flow_a, flow_b) = e.flows();
            let escrow = e.status(next_epoch) != ChannelStatus::Closed;
            let (bal_a, bal_b) = e.balances();
            for (node, flow, bal) in [
                (e.key.party_a, flow_a, bal_a),
                (e.key.party_b, flow_b, bal_b),
            ] {
                let acc = accounts.entry(node).or_default();
                acc.balance += flow;
                if escrow {
                    acc.escrowed += i128::from(bal);
                }
            }
        }
        accounts
    }

    /// Every account touched by the snapshot or a channel.
    pub fn accounts(&self) -> BTreeMap<NodeId, Account> {
        self.derive_accounts(&self.effects())
    }

    /// One account (zero if unknown).
    pub fn account(&self, node: &NodeId) -> Account {
        self.accounts().get(node).copied().unwrap_or_default()
    }

    /// Accounts whose escrow exceeds their balance: one balance backing several channels.
    pub fn overdrafts(&self) -> BTreeSet<NodeId> {
        self.accounts()
            .into_iter()
            .filter(|(_, a)| a.free() < 0)
            .map(|(k, _)| k)
            .collect()
    }

    /// Channels with two different co-signed records for the same seq and kind.
    pub fn equivocations(&self) -> Vec<ChannelKey> {
        self.effects()
            .into_iter()
            .filter(|e| e.equivocation)
            .map(|e| *e.key)
            .collect()
    }

    /// Channels whose winning record is not yet folded into the snapshot: the settlement
    /// count that drives the compaction triggers.
    pub fn unfolded_settlements(&self) -> u64 {
        self.effects().iter().filter(|e| e.fresh.is_some()).count() as u64
    }

    /// Computes the next epoch's snapshot: folds every unfolded winner into the channel
    /// baselines and balances, releases unilateral closes past their window, burns, and
    /// mints from net service income. Pure: the ledger is unchanged until the snapshot is
    /// activated and [`Ledger::adopt`]ed.
    pub fn compact(&self, params: &CompactionParams) -> Snapshot {
        let epoch = self.snapshot.epoch().saturating_add(1);
        let effects = self.effects();
        let accounts = self.derive_accounts(&effects);
        let overdrafted: BTreeSet<NodeId> = accounts
            .iter()
            .filter(|(_, a)| a.free() < 0)
            .map(|(k, _)| *k)
            .collect();

        let mut flows: BTreeMap<NodeId, NodeFlows> = BTreeMap::new();
        let mut channels = BTreeMap::new();
        let mut last_settled = self.snapshot.last_settled().clone();
        let mut folded = 0u64;
        for e in &effects {
            let mut status = e.status(epoch);
            if let ChannelStatus::Closing { since_epoch } = status
                && epoch >= since_epoch.saturating_add(UNILATERAL_RELEASE_EPOCHS)
                && e.fresh.is_none()
            {
                status = ChannelStatus::Closed;
            }
            let (paid_a_to_b, paid_b_to_a) = e.paid();
            let (balance_a, balance_b) = e.balances();
            let (seq, kind) = match (e.fresh, e.base) {
                (Some(r), _) => (r.body.seq, r.kind),
                (None, Some(b)) => (b.seq, b.kind),
                (None, None) => continue,
            };
            channels.insert(
                *e.key,
                Baseline {
                    seq,
                    kind,
                    paid_a_to_b,
                    paid_b_to_a,
                    balance_a,
                    balance_b,
                    status,
                },
            );
            if e.fresh.is_none() {
                continue;
            }
            folded += 1;
            last_settled.insert(e.key.party_a, epoch);
            last_settled.insert(e.key.party_b, epoch);
            let (b_ab, b_ba) = e.base_paid();
            for (payer, payee, before, after) in [
                (e.key.party_a, e.key.party_b, b_ab, paid_a_to_b),
                (e.key.party_b, e.key.party_a, b_ba, paid_b_to_a),
            ] {
                let spent = after.saturating_sub(before);
                if spent == 0 {
                    continue;
                }
                flows.entry(payer).or_default().spending += u128::from(spent);
                // A payment counts as service income only if the payer's funds backed it.
                if !overdrafted.contains(&payer) {
                    let received = net_of(after).saturating_sub(net_of(before));
                    flows.entry(payee).or_default().income += u128::from(received);
                }
            }
        }

        let emission = scaled_emission(
            epoch_emission(epoch, self.snapshot.supply(), params.epochs_per_year),
            params.active_trusted_nodes,
        );
        let minted = mint(&flows, &params.clusters, emission);

        let mut balances: BTreeMap<NodeId, i128> =
            accounts.iter().map(|(k, a)| (*k, a.balance)).collect();
        for (node, amount) in &minted.per_node {
            *balances.entry(*node).or_default() += i128::try_from(*amount).unwrap_or(i128::MAX);
        }
        balances.retain(|_, v| *v != 0);

        // Supply follows from the balances (payments only move value; burns and mints are the
        // only changes), which keeps `Σ balances = supply` exact.
        let total: i128 = balances.values().sum();
        let supply = u128::try_from(total.max(0)).unwrap_or(0);
        let before = self.snapshot.supply().saturating_add(minted.total);
        let burned = before.saturating_sub(supply);
        Snapshot::build(
            epoch,
            balances,
            channels,
            last_settled,
            supply,
            self.snapshot.burned_total().saturating_add(burned),
            self.snapshot.minted_total().saturating_add(minted.total),
            folded,
        )
    }

    /// The winning records of channels not yet folded into the snapshot, in channel-key
    /// order, at most `limit`: what the next epoch folds. A proposer sends exactly these, and
    /// a validator rebuilds the proposed snapshot from its own adopted one and them alone, so
    /// records that arrive in the meantime do not change what is being agreed on.
    pub fn unfolded_winners(&self, limit: usize) -> Vec<SettlementRecord> {
        self.effects()
            .into_iter()
            .filter_map(|e| e.fresh.copied())
            .take(limit)
            .collect()
    }

    /// Minting clusters for the next epoch, derived from the flows it folds (§8 item 21):
    /// two nodes that paid each other, in one channel or across several, are one cluster, and
    /// clusters join transitively. Cycling value between one's own identities therefore nets
    /// out inside one cluster and mints nothing, whatever the amounts each way. A cluster's id
    /// is the first 8 bytes (little-endian) of its smallest member.
    pub fn payment_clusters(&self) -> BTreeMap<NodeId, u64> {
        let mut paid: BTreeSet<(NodeId, NodeId)> = BTreeSet::new();
        for e in self.effects() {
            if e.fresh.is_none() {
                continue;
            }
            let (b_ab, b_ba) = e.base_paid();
            let (ab, ba) = e.paid();
            if ab > b_ab {
                paid.insert((e.key.party_a, e.key.party_b));
            }
            if ba > b_ba {
                paid.insert((e.key.party_b, e.key.party_a));
            }
        }
        // Union-find over the mutual pairs.
        let mut parent: BTreeMap<NodeId, NodeId> = BTreeMap::new();
        fn root(parent: &mut BTreeMap<NodeId, NodeId>, node: NodeId) -> NodeId {
            let mut at = node;
            while let Some(&up) = parent.get(&at) {
                if up == at {
                    break;
                }
                at = up;
            }
            parent.insert(node, at);
            at
        }
        for (from, to) in &paid {
            if from < to && paid.contains(&(*to, *from)) {
                parent.entry(*from).or_insert(*from);
                parent.entry(*to).or_insert(*to);
                let (ra, rb) = (root(&mut parent, *from), root(&mut parent, *to));
                if ra != rb {
                    // The smaller id becomes the root, so the id names the cluster.
                    let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
                    parent.insert(high, low);
                }
            }
        }
        let members: Vec<NodeId> = parent.keys().copied().collect();
        members
            .into_iter()
            .map(|node| {
                let r = root(&mut parent, node);
                let mut id = [0u8; 8];
                id.copy_from_slice(&r.0[..8]);
                (node, u64::from_le_bytes(id))
            })
            .collect()
    }

    /// Whether `snapshot` takes precedence over the adopted one (higher epoch, then more
    /// settlements, then the lower root): what [`Ledger::adopt`] would do with it.
    pub fn would_adopt(&self, snapshot: &Snapshot) -> bool {
        snapshot.precedence() > self.snapshot.precedence()
    }

    /// Drops records folded into `snapshot` (an older, final epoch than the adopted one, so
    /// that records stay while a rival snapshot of a recent epoch could still win). Returns
    /// the ids of the records dropped.
    pub fn prune_folded_by(&mut self, snapshot: &Snapshot) -> Vec<[u8; 32]> {
        let snap = snapshot.channels();
        let mut dropped = Vec::new();
        self.channels.retain(|key, entry| {
            let keep = snap
                .get(key)
                .is_none_or(|b| entry.key() > (b.seq, b.kind.rank()));
            if !keep {
                dropped.extend(entry.records.keys().copied());
            }
            keep
        });
        dropped
    }

    /// Drops records already folded into the adopted snapshot. Call only once that epoch is
    /// final (`RECORD_RETENTION_EPOCHS` after activation): before that, a rival snapshot could
    /// still win and the records would be needed again.
    pub fn prune_folded(&mut self) {
        let snap = self.snapshot.channels();
        self.channels.retain(|key, entry| {
            snap.get(key)
                .is_none_or(|b| entry.key() > (b.seq, b.kind.rank()))
        });
    }
}
