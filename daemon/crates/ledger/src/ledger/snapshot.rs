//! Epoch snapshots: frozen balances, per-channel baselines and supply totals (§4 epoch
//! compaction, "rebase: freeze the balance and zero the deltas").
//!
//! Instead of the spec's bloom of included settlements (whose false positives lose records
//! for good, §8 item 20), a snapshot keeps each channel's baseline: the highest record folded
//! in so far. A record that arrives late is applied as the difference between its cumulative
//! totals and the baseline's, or ignored if it is not above the baseline, so nothing is lost
//! or counted twice.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::merkle::{
    AbsenceProof, BalanceProof, balance_leaf, inclusion_path, leaf_hash, merkle_root,
};
use super::record::SettlementKind;
use crate::ids::{ChannelId, NodeId};
use crate::wire::{DecodeError, Reader};

/// Domain of the snapshot root.
pub(super) const SNAPSHOT_DOMAIN: &[u8] = b"mehr/epoch-snapshot/v1";

/// A channel as the ledger keys it: the id together with its parties, so records signed by
/// other parties under a colliding id can never touch this channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey {
    /// The channel id.
    pub channel_id: ChannelId,
    /// Party A.
    pub party_a: NodeId,
    /// Party B.
    pub party_b: NodeId,
}

/// The ledger's view of whether a channel still holds escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Balances are escrowed in the channel.
    Open,
    /// Unilaterally closed; escrow is released `UNILATERAL_RELEASE_EPOCHS` after
    /// `since_epoch`, the epoch whose snapshot first folded the close in.
    Closing {
        /// The epoch that first folded the close in.
        since_epoch: u64,
    },
    /// Closed; balances are free.
    Closed,
}

impl ChannelStatus {
    fn code(self) -> (u8, u64) {
        match self {
            ChannelStatus::Open => (0, 0),
            ChannelStatus::Closing { since_epoch } => (1, since_epoch),
            ChannelStatus::Closed => (2, 0),
        }
    }
}

/// The last record of a channel folded into a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Its seq.
    pub seq: u64,
    /// Its kind.
    pub kind: SettlementKind,
    /// Cumulative gross paid A → B.
    pub paid_a_to_b: u64,
    /// Cumulative gross paid B → A.
    pub paid_b_to_a: u64,
    /// A's channel balance.
    pub balance_a: u64,
    /// B's channel balance.
    pub balance_b: u64,
    /// Escrow status.
    pub status: ChannelStatus,
}

const CHANNEL_ENTRY_LEN: usize = 16 * 3 + 8 + 1 + 8 * 4 + 1 + 8;
const ACCOUNT_ENTRY_LEN: usize = 16 + 16;
const ACTIVE_ENTRY_LEN: usize = 16 + 8;

fn channel_entry(key: &ChannelKey, b: &Baseline) -> [u8; CHANNEL_ENTRY_LEN] {
    let mut out = [0u8; CHANNEL_ENTRY_LEN];
    let (status, since) = b.status.code();
    let parts: [&[u8]; 12] = [
        &key.channel_id.0,
        &key.party_a.0,
        &key.party_b.0,
        &b.seq.to_le_bytes(),
        &[b.kind.code()],
        &b.paid_a_to_b.to_le_bytes(),
        &b.paid_b_to_a.to_le_bytes(),
        &b.balance_a.to_le_bytes(),
        &b.balance_b.to_le_bytes(),
        &[status],
        &since.to_le_bytes(),
        &[],
    ];
    let mut at = 0;
    for part in parts {
        if let Some(dst) = out.get_mut(at..at + part.len()) {
            dst.copy_from_slice(part);
        }
        at += part.len();
    }
    out
}

fn active_entry(node: &NodeId, epoch: u64) -> [u8; ACTIVE_ENTRY_LEN] {
    let mut out = [0u8; ACTIVE_ENTRY_LEN];
    out[..16].copy_from_slice(&node.0);
    out[16..].copy_from_slice(&epoch.to_le_bytes());
    out
}

/// An epoch snapshot. Construct with [`Snapshot::genesis`], [`super::Ledger::compact`] or
/// [`Snapshot::decode`]; the root is computed once on construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    epoch: u64,
    balances: BTreeMap<NodeId, i128>,
    channels: BTreeMap<ChannelKey, Baseline>,
    last_settled: BTreeMap<NodeId, u64>,
    supply: u128,
    burned_total: u128,
    minted_total: u128,
    settlement_count: u64,
    balances_root: [u8; 32],
    root: [u8; 32],
}

/// Whether an account is in a snapshot, with the proof either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountProof {
    /// The account's balance and its inclusion proof.
    Present(BalanceProof),
    /// Its sorted neighbours, proving absence.
    Absent(AbsenceProof),
}

impl Snapshot {
    /// Epoch 0: the disclosed genesis allocation.
    pub fn genesis(allocations: BTreeMap<NodeId, u64>) -> Self {
        let supply = allocations.values().map(|v| u128::from(*v)).sum();
        let balances = allocations
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| (k, i128::from(v)))
            .collect();
        Self::build(
            0,
            balances,
            BTreeMap::new(),
            BTreeMap::new(),
            supply,
            0,
            0,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        epoch: u64,
        balances: BTreeMap<NodeId, i128>,
        channels: BTreeMap<ChannelKey, Baseline>,
        last_settled: BTreeMap<NodeId, u64>,
        supply: u128,
        burned_total: u128,
        minted_total: u128,
        settlement_count: u64,
    ) -> Self {
        let balance_leaves: Vec<[u8; 32]> =
            balances.iter().map(|(k, v)| balance_leaf(k, *v)).collect();
        let balances_root = merkle_root(&balance_leaves);
        let channel_leaves: Vec<[u8; 32]> = channels
            .iter()
            .map(|(k, b)| leaf_hash(&channel_entry(k, b)))
            .collect();
        let active_leaves: Vec<[u8; 32]> = last_settled
            .iter()
            .map(|(k, e)| leaf_hash(&active_entry(k, *e)))
            .collect();
        let mut h = blake3::Hasher::new();
        h.update(SNAPSHOT_DOMAIN);
        h.update(&epoch.to_le_bytes());
        h.update(&supply.to_le_bytes());
        h.update(&burned_total.to_le_bytes());
        h.update(&minted_total.to_le_bytes());
        h.update(&settlement_count.to_le_bytes());
        h.update(&balances_root);
        h.update(&merkle_root(&channel_leaves));
        h.update(&merkle_root(&active_leaves));
        let root = *h.finalize().as_bytes();
        Self {
            epoch,
            balances,
            channels,
            last_settled,
            supply,
            burned_total,
            minted_total,
            settlement_count,
            balances_root,
            root,
        }
    }

    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Frozen balances (including escrowed channel balances), μ; negative for debts left
    /// by overdrafts. Accounts at zero are omitted.
    pub fn balances(&self) -> &BTreeMap<NodeId, i128> {
        &self.balances
    }

    /// One account's frozen balance.
    pub fn balance(&self, node: &NodeId) -> i128 {
        self.balances.get(node).copied().unwrap_or(0)
    }

    /// Per-channel baselines.
    pub fn channels(&self) -> &BTreeMap<ChannelKey, Baseline> {
        &self.channels
    }

    /// The epoch each node last took part in a folded settlement.
    pub fn last_settled(&self) -> &BTreeMap<NodeId, u64> {
        &self.last_settled
    }

    /// Nodes that settled within the last 2 epochs (the active set), sorted.
    pub fn active_set(&self) -> Vec<NodeId> {
        let from = self
            .epoch
            .saturating_sub(crate::params::ACTIVE_SET_EPOCHS - 1);
        self.last_settled
            .iter()
            .filter(|(_, e)| **e >= from)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Total supply, μ.
    pub fn supply(&self) -> u128 {
        self.supply
    }

    /// Everything burned up to this epoch, μ.
    pub fn burned_total(&self) -> u128 {
        self.burned_total
    }

    /// Everything minted up to this epoch, μ.
    pub fn minted_total(&self) -> u128 {
        self.minted_total
    }

    /// Settlements folded in by this epoch's compaction.
    pub fn settlement_count(&self) -> u64 {
        self.settlement_count
    }

    /// Root of the sorted balance tree.
    pub fn balances_root(&self) -> [u8; 32] {
        self.balances_root
    }

    /// The snapshot root: `Blake3("mehr/epoch-snapshot/v1" ‖ epoch ‖ supply ‖ burned ‖ minted
    /// ‖ settlement_count ‖ balances_root ‖ channels_root ‖ active_root)`.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// Order used to pick between snapshots: higher epoch, then more settlements, then the
    /// lower root.
    pub(crate) fn precedence(&self) -> (u64, u64, Reverse<[u8; 32]>) {
        (self.epoch, self.settlement_count, Reverse(self.root))
    }

    /// A proof of `node`'s balance, or of its absence.
    pub fn prove(&self, node: &NodeId) -> AccountProof {
        let leaves: Vec<[u8; 32]> = self
            .balances
            .iter()
            .map(|(k, v)| balance_leaf(k, *v))
            .collect();
        let size = leaves.len() as u64;
        let proof_at = |index: usize| -> Option<BalanceProof> {
            let (node, balance) = self.balances.iter().nth(index)?;
            Some(BalanceProof {
                node: *node,
                balance: *balance,
                index: index as u64,
                size,
                path: inclusion_path(&leaves, index),
            })
        };
        let position = self.balances.range(..*node).count();
        if self.balances.contains_key(node)
            && let Some(p) = proof_at(position)
        {
            return AccountProof::Present(p);
        }
        AccountProof::Absent(AbsenceProof {
            left: position.checked_sub(1).and_then(proof_at),
            right: proof_at(position),
        })
    }

    /// The canonical encoding: header, then sorted accounts, channel baselines and
    /// last-settled epochs, each list behind a u32 count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            72 + 12
                + self.balances.len() * ACCOUNT_ENTRY_LEN
                + self.channels.len() * CHANNEL_ENTRY_LEN
                + self.last_settled.len() * ACTIVE_ENTRY_LEN,
        );
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.supply.to_le_bytes());
        out.extend_from_slice(&self.burned_total.to_le_bytes());
        out.extend_from_slice(&self.minted_total.to_le_bytes());
        out.extend_from_slice(&self.settlement_count.to_le_bytes());
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        out.extend_from_slice(&count(self.balances.len()));
        for (k, v) in &self.balances {
            out.extend_from_slice(&k.0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&count(self.channels.len()));
        for (k, b) in &self.channels {
            out.extend_from_slice(&channel_entry(k, b));
        }
        out.extend_from_slice(&count(self.last_settled.len()));
        for (k, e) in &self.last_settled {
            out.extend_from_slice(&active_entry(k, *e));
        }
        out
    }

    /// Decodes [`Snapshot::encode`]'s output; lists must be strictly sorted. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "epoch snapshot";
        let mut r = Reader::new(WHAT, bytes);
        let epoch = r.u64()?;
        let supply = u128::from_le_bytes(r.array()?);
        let burned_total = u128::from_le_bytes(r.array()?);
        let minted_total = u128::from_le_bytes(r.array()?);
        let settlement_count = r.u64()?;
        let unsorted = |field| DecodeError::Invalid {
            what: WHAT,
            field,
            reason: "not strictly sorted",
        };
        // Each list's count is bounded by the remaining input, so a hostile count cannot
        // make the decoder allocate.
        let mut balances = BTreeMap::new();
        let n = r.u32()?;
        for _ in 0..n {
            let k = NodeId(r.array()?);
            let v = i128::from_le_bytes(r.array()?);
            if balances
                .last_key_value()
                .is_some_and(|(last, _)| *last >= k)
            {
                return Err(unsorted("balances"));
            }
            balances.insert(k, v);
        }
        let mut channels = BTreeMap::new();
        let n = r.u32()?;
        for _ in 0..n {
            let key = ChannelKey {
                channel_id: ChannelId(r.array()?),
                party_a: NodeId(r.array()?),
                party_b: NodeId(r.array()?),
            };
            let seq = r.u64()?;
            let code = r.u8()?;
            let kind = SettlementKind::from_code(code).ok_or(DecodeError::UnknownCode {
                what: WHAT,
                field: "baseline kind",
                code,
            })?;
            let paid_a_to_b = r.u64()?;
            let paid_b_to_a = r.u64()?;
            let balance_a = r.u64()?;
            let balance_b = r.u64()?;
            let code = r.u8()?;
            let since = r.u64()?;
            let status = match code {
                0 => ChannelStatus::Open,
                1 => ChannelStatus::Closing { since_epoch: since },
                2 => ChannelStatus::Closed,
                code => {
                    return Err(DecodeError::UnknownCode {
                        what: WHAT,
                        field: "status",
                        code,
                    });
                }
            };
            if channels
                .last_key_value()
                .is_some_and(|(last, _)| *last >= key)
            {
                return Err(unsorted("channels"));
            }
            channels.insert(
                key,
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
        }
        let mut last_settled = BTreeMap::new();
        let n = r.u32()?;
        for _ in 0..n {
            let k = NodeId(r.array()?);
            let e = r.u64()?;
            if last_settled
                .last_key_value()
                .is_some_and(|(last, _)| *last >= k)
            {
                return Err(unsorted("last_settled"));
            }
            last_settled.insert(k, e);
        }
        r.finish()?;
        Ok(Self::build(
            epoch,
            balances,
            channels,
            last_settled,
            supply,
            burned_total,
            minted_total,
            settlement_count,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proofs_of_presence_and_absence_verify() {
        let allocations: BTreeMap<NodeId, u64> = (1..=9u8)
            .map(|i| (NodeId([i * 10; 16]), u64::from(i) * 1_000))
            .collect();
        let snap = Snapshot::genesis(allocations);
        let root = snap.balances_root();
        let size = snap.balances().len() as u64;
        for i in 1..=9u8 {
            match snap.prove(&NodeId([i * 10; 16])) {
                AccountProof::Present(p) => {
                    assert_eq!(p.balance, i128::from(i) * 1_000);
                    assert!(p.verify(&root));
                    assert_eq!(BalanceProof::decode(&p.encode()).unwrap(), p);
                    let mut forged = p.clone();
                    forged.balance += 1;
                    assert!(!forged.verify(&root));
                }
                AccountProof::Absent(_) => panic!("present account proved absent"),
            }
        }
        for probe in [0u8, 15, 55, 91, 255] {
            let node = NodeId([probe; 16]);
            match snap.prove(&node) {
                AccountProof::Absent(a) => {
                    assert!(a.verify(&node, size, &root), "absence of {probe}");
                    // The same neighbours do not prove a present id absent.
                    assert!(!a.verify(&NodeId([10; 16]), size, &root));
                }
                AccountProof::Present(_) => panic!("absent account proved present"),
            }
        }
        assert_eq!(snap.supply(), 45_000);
    }

    #[test]
    fn snapshot_round_trips() {
        let snap = Snapshot::genesis(BTreeMap::from([(NodeId([1; 16]), 5), (NodeId([2; 16]), 0)]));
        assert_eq!(snap.balances().len(), 1);
        let decoded = Snapshot::decode(&snap.encode()).unwrap();
        assert_eq!(decoded, snap);
    }

    proptest! {
        #[test]
        fn snapshot_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
