//! Epoch compaction protocol: triggers, proposer eligibility, signed summaries, ACKs and
//! activation (§4 epoch compaction, §8 item 20).
//!
//! Rival proposals for one epoch are ordered by settlement count, ties to the lowest root, as
//! the spec says; but because a count is cheap to inflate, activation only counts ACKs from
//! the previous epoch's active set (§8 item 20), never from whoever shows up.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use thiserror::Error;

use super::snapshot::Snapshot;
use crate::ids::NodeId;
use crate::params::{
    ACK_THRESHOLD_BPS, ACK_TOLERANCE_BPS, BASIS_POINTS, EPOCH_TRIGGER_GSET_BYTES,
    EPOCH_TRIGGER_MIN_ROUNDS, EPOCH_TRIGGER_MIN_SETTLEMENTS, EPOCH_TRIGGER_SETTLEMENTS,
    EPOCH_TRIGGER_SETTLEMENTS_PER_ACTIVE, PROPOSER_MIN_LINKS, RECORD_RETENTION_EPOCHS,
};
use crate::signing::{RecordTag, sign_record, verify_record};
use crate::wire::{DecodeError, ReadSignature, Reader, expect_len};

/// Which rule fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionTrigger {
    /// At least 10 000 settlements since the last epoch.
    SettlementCount,
    /// The settlement set reached 500 KB.
    SetSize,
    /// Small network: `≥ max(200, 10·active)` settlements and `≥ 1000` rounds.
    SmallNetwork,
}

/// What the node has seen since the last epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochProgress {
    /// Settlements not yet folded into a snapshot.
    pub settlements: u64,
    /// Bytes of those settlement records.
    pub set_bytes: u64,
    /// Size of the active set.
    pub active_nodes: u64,
    /// Rounds since the last epoch activated.
    pub rounds: u64,
}

impl EpochProgress {
    /// The small-network settlement threshold `max(200, 10·active)`.
    pub fn small_network_threshold(&self) -> u64 {
        EPOCH_TRIGGER_MIN_SETTLEMENTS.max(
            self.active_nodes
                .saturating_mul(EPOCH_TRIGGER_SETTLEMENTS_PER_ACTIVE),
        )
    }

    /// The first trigger that fires, if any.
    pub fn trigger(&self) -> Option<CompactionTrigger> {
        if self.settlements >= EPOCH_TRIGGER_SETTLEMENTS {
            Some(CompactionTrigger::SettlementCount)
        } else if self.set_bytes >= EPOCH_TRIGGER_GSET_BYTES {
            Some(CompactionTrigger::SetSize)
        } else if self.settlements >= self.small_network_threshold()
            && self.rounds >= EPOCH_TRIGGER_MIN_ROUNDS
        {
            Some(CompactionTrigger::SmallNetwork)
        } else {
            None
        }
    }

    /// Whether this node may propose: a trigger fired, it has seen at least
    /// `min(10 000, threshold)` settlements, and it holds `≥ min(3, active/2)` links. The
    /// caller enforces one proposal per node per epoch.
    pub fn may_propose(&self, links: u64) -> bool {
        let Some(trigger) = self.trigger() else {
            return false;
        };
        let threshold = match trigger {
            CompactionTrigger::SettlementCount | CompactionTrigger::SetSize => {
                EPOCH_TRIGGER_SETTLEMENTS
            }
            CompactionTrigger::SmallNetwork => self.small_network_threshold(),
        };
        let seen_enough = self.settlements >= EPOCH_TRIGGER_SETTLEMENTS.min(threshold)
            || trigger == CompactionTrigger::SetSize;
        seen_enough && links >= PROPOSER_MIN_LINKS.min(self.active_nodes / 2)
    }
}

/// Errors of the epoch protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EpochError {
    /// A signature that does not verify.
    #[error("bad signature on epoch {what} from {node}")]
    BadSignature {
        /// Summary or ACK.
        what: &'static str,
        /// The claimed signer.
        node: NodeId,
    },
    /// An ACK for another epoch or root.
    #[error("ACK is for epoch {epoch} with another root")]
    WrongProposal {
        /// The ACK's epoch.
        epoch: u64,
    },
    /// An ACK from a node outside the previous active set.
    #[error("ACK from {0}, which is not in the previous active set")]
    NotInActiveSet(NodeId),
    /// The summary does not describe the given snapshot.
    #[error("summary does not match the snapshot (field {0})")]
    SnapshotMismatch(&'static str),
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Length of an encoded [`EpochSummary`].
pub const EPOCH_SUMMARY_LEN: usize = 8 + 32 + 32 + 8 + 8 + 32 + 4 + 16 * 3 + 16 + 64;

/// Blake3 of the sorted ids of the active set.
pub fn active_set_hash(active: &[NodeId]) -> [u8; 32] {
    let sorted: BTreeSet<&NodeId> = active.iter().collect();
    let mut h = blake3::Hasher::new();
    for id in sorted {
        h.update(&id.0);
    }
    *h.finalize().as_bytes()
}

/// The signed summary of a proposed epoch (< 5 KB; here 252 bytes). Layout: epoch u64,
/// snapshot_root [32], balances_root [32], account_count u64, settlement_count u64,
/// active_set_hash [32], active_set_size u32, supply u128, burned_total u128, minted_total
/// u128, proposer [16], signature [64] over `Blake3("mehr/epoch-summary/v1" ‖ all before it)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochSummary {
    /// The epoch number.
    pub epoch: u64,
    /// [`Snapshot::root`].
    pub snapshot_root: [u8; 32],
    /// [`Snapshot::balances_root`], against which balance proofs verify.
    pub balances_root: [u8; 32],
    /// Accounts in the balance tree.
    pub account_count: u64,
    /// Settlements folded in.
    pub settlement_count: u64,
    /// [`active_set_hash`] of the snapshot's active set.
    pub active_set_hash: [u8; 32],
    /// Its size.
    pub active_set_size: u32,
    /// Total supply.
    pub supply: u128,
    /// Burned to date.
    pub burned_total: u128,
    /// Minted to date.
    pub minted_total: u128,
    /// The proposer.
    pub proposer: NodeId,
    /// The proposer's signature.
    pub signature: Signature,
}

impl EpochSummary {
    /// Summarises and signs a snapshot as `proposer`.
    pub fn propose(snapshot: &Snapshot, proposer: NodeId, key: &SigningKey) -> Self {
        let active = snapshot.active_set();
        let mut summary = Self {
            epoch: snapshot.epoch(),
            snapshot_root: snapshot.root(),
            balances_root: snapshot.balances_root(),
            account_count: snapshot.balances().len() as u64,
            settlement_count: snapshot.settlement_count(),
            active_set_hash: active_set_hash(&active),
            active_set_size: u32::try_from(active.len()).unwrap_or(u32::MAX),
            supply: snapshot.supply(),
            burned_total: snapshot.burned_total(),
            minted_total: snapshot.minted_total(),
            proposer,
            signature: Signature::from_bytes(&[0; 64]),
        };
        summary.signature = sign_record(key, RecordTag::EpochSummary, &summary.signed_bytes());
        summary
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(EPOCH_SUMMARY_LEN - 64);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.snapshot_root);
        out.extend_from_slice(&self.balances_root);
        out.extend_from_slice(&self.account_count.to_le_bytes());
        out.extend_from_slice(&self.settlement_count.to_le_bytes());
        out.extend_from_slice(&self.active_set_hash);
        out.extend_from_slice(&self.active_set_size.to_le_bytes());
        out.extend_from_slice(&self.supply.to_le_bytes());
        out.extend_from_slice(&self.burned_total.to_le_bytes());
        out.extend_from_slice(&self.minted_total.to_le_bytes());
        out.extend_from_slice(&self.proposer.0);
        out
    }

    /// Checks the proposer's signature.
    pub fn verify(&self, proposer_key: &VerifyingKey) -> Result<(), EpochError> {
        if verify_record(
            proposer_key,
            RecordTag::EpochSummary,
            &self.signed_bytes(),
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(EpochError::BadSignature {
                what: "summary",
                node: self.proposer,
            })
        }
    }

    /// Checks that `snapshot` (fetched from the proposer) is the one summarised.
    pub fn matches(&self, snapshot: &Snapshot) -> Result<(), EpochError> {
        if snapshot.root() != self.snapshot_root {
            return Err(EpochError::SnapshotMismatch("snapshot_root"));
        }
        if snapshot.epoch() != self.epoch {
            return Err(EpochError::SnapshotMismatch("epoch"));
        }
        if active_set_hash(&snapshot.active_set()) != self.active_set_hash {
            return Err(EpochError::SnapshotMismatch("active_set_hash"));
        }
        Ok(())
    }

    /// Of two rival proposals for one epoch, the one that wins: more settlements, ties to
    /// the lower snapshot root.
    pub fn preferred<'a>(&'a self, other: &'a EpochSummary) -> &'a EpochSummary {
        let key = |s: &EpochSummary| (s.settlement_count, std::cmp::Reverse(s.snapshot_root));
        if key(other) > key(self) { other } else { self }
    }

    /// ACK if this node's own settlement count is within 5% of the proposal's; otherwise NAK
    /// and re-propose after `REPROPOSE_AFTER_ROUNDS`.
    pub fn should_ack(&self, own_count: u64) -> bool {
        let diff = own_count.abs_diff(self.settlement_count);
        u128::from(diff) * u128::from(BASIS_POINTS)
            <= u128::from(own_count) * u128::from(ACK_TOLERANCE_BPS)
    }

    /// The fixed encoding.
    pub fn encode(&self) -> [u8; EPOCH_SUMMARY_LEN] {
        let mut out = [0u8; EPOCH_SUMMARY_LEN];
        let body = self.signed_bytes();
        out[..body.len()].copy_from_slice(&body);
        out[body.len()..].copy_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes the fixed encoding; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "epoch summary";
        expect_len(WHAT, bytes, EPOCH_SUMMARY_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let s = Self {
            epoch: r.u64()?,
            snapshot_root: r.array()?,
            balances_root: r.array()?,
            account_count: r.u64()?,
            settlement_count: r.u64()?,
            active_set_hash: r.array()?,
            active_set_size: r.u32()?,
            supply: u128::from_le_bytes(r.array()?),
            burned_total: u128::from_le_bytes(r.array()?),
            minted_total: u128::from_le_bytes(r.array()?),
            proposer: NodeId(r.array()?),
            signature: r.signature()?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// Length of an encoded [`EpochAck`].
pub const EPOCH_ACK_LEN: usize = 8 + 32 + 16 + 64;

/// A node's ACK of a proposal: epoch u64, snapshot_root [32], node [16], signature [64] over
/// `Blake3("mehr/epoch-ack/v1" ‖ epoch ‖ root ‖ node)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochAck {
    /// The epoch.
    pub epoch: u64,
    /// The acknowledged snapshot root.
    pub snapshot_root: [u8; 32],
    /// The acknowledging node.
    pub node: NodeId,
    /// Its signature.
    pub signature: Signature,
}

impl EpochAck {
    fn signed_bytes(epoch: u64, root: &[u8; 32], node: &NodeId) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..8].copy_from_slice(&epoch.to_le_bytes());
        out[8..40].copy_from_slice(root);
        out[40..].copy_from_slice(&node.0);
        out
    }

    /// Signs an ACK of `summary` as `node`.
    pub fn sign(summary: &EpochSummary, node: NodeId, key: &SigningKey) -> Self {
        let bytes = Self::signed_bytes(summary.epoch, &summary.snapshot_root, &node);
        Self {
            epoch: summary.epoch,
            snapshot_root: summary.snapshot_root,
            node,
            signature: sign_record(key, RecordTag::EpochAck, &bytes),
        }
    }

    /// The fixed encoding.
    pub fn encode(&self) -> [u8; EPOCH_ACK_LEN] {
        let mut out = [0u8; EPOCH_ACK_LEN];
        out[..56].copy_from_slice(&Self::signed_bytes(
            self.epoch,
            &self.snapshot_root,
            &self.node,
        ));
        out[56..].copy_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes the fixed encoding; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "epoch ack";
        expect_len(WHAT, bytes, EPOCH_ACK_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let ack = Self {
            epoch: r.u64()?,
            snapshot_root: r.array()?,
            node: NodeId(r.array()?),
            signature: r.signature()?,
        };
        r.finish()?;
        Ok(ack)
    }
}

/// Counts ACKs for one proposal from the previous epoch's active set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckTally {
    summary: EpochSummary,
    electorate: BTreeSet<NodeId>,
    acked: BTreeSet<NodeId>,
}

impl AckTally {
    /// Starts counting for `summary`; `previous_active_set` is the active set of the epoch
    /// being replaced (the caller's adopted snapshot).
    pub fn new(
        summary: EpochSummary,
        previous_active_set: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Self {
            summary,
            electorate: previous_active_set.into_iter().collect(),
            acked: BTreeSet::new(),
        }
    }

    /// Counts a verified ACK. Duplicates are harmless.
    pub fn add(&mut self, ack: &EpochAck, key: &VerifyingKey) -> Result<(), EpochError> {
        if ack.epoch != self.summary.epoch || ack.snapshot_root != self.summary.snapshot_root {
            return Err(EpochError::WrongProposal { epoch: ack.epoch });
        }
        if !self.electorate.contains(&ack.node) {
            return Err(EpochError::NotInActiveSet(ack.node));
        }
        let bytes = EpochAck::signed_bytes(ack.epoch, &ack.snapshot_root, &ack.node);
        if !verify_record(key, RecordTag::EpochAck, &bytes, &ack.signature) {
            return Err(EpochError::BadSignature {
                what: "ack",
                node: ack.node,
            });
        }
        self.acked.insert(ack.node);
        Ok(())
    }

    /// ACKs counted.
    pub fn ack_count(&self) -> usize {
        self.acked.len()
    }

    /// ACKs needed: 67% of the electorate, rounded up (at least 1).
    pub fn threshold(&self) -> usize {
        let n = self.electorate.len() as u128;
        let needed = (n * u128::from(ACK_THRESHOLD_BPS)).div_ceil(u128::from(BASIS_POINTS));
        usize::try_from(needed).unwrap_or(usize::MAX).max(1)
    }

    /// Whether the epoch activates.
    pub fn is_activated(&self) -> bool {
        self.acked.len() >= self.threshold()
    }
}

/// Lifecycle of an epoch, from its activation epoch and the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochStatus {
    /// The newest activated epoch; late proofs may still arrive.
    Active,
    /// Within the 4-epoch window after a newer epoch replaced it.
    Finalizing,
    /// The window closed; folded records may be pruned.
    Finalized,
}

/// Status of `epoch` when `current` is the newest activated epoch.
pub fn epoch_status(epoch: u64, current: u64) -> EpochStatus {
    if epoch >= current {
        EpochStatus::Active
    } else if current - epoch < RECORD_RETENTION_EPOCHS {
        EpochStatus::Finalizing
    } else {
        EpochStatus::Finalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn triggers_follow_the_spec_numbers() {
        let p = |settlements, set_bytes, active_nodes, rounds| EpochProgress {
            settlements,
            set_bytes,
            active_nodes,
            rounds,
        };
        assert_eq!(
            p(10_000, 0, 5, 0).trigger(),
            Some(CompactionTrigger::SettlementCount)
        );
        assert_eq!(
            p(1, 500_000, 5, 0).trigger(),
            Some(CompactionTrigger::SetSize)
        );
        assert_eq!(
            p(200, 0, 5, 1_000).trigger(),
            Some(CompactionTrigger::SmallNetwork)
        );
        assert_eq!(p(200, 0, 5, 999).trigger(), None);
        assert_eq!(p(299, 0, 30, 5_000).trigger(), None);
        assert_eq!(
            p(300, 0, 30, 5_000).trigger(),
            Some(CompactionTrigger::SmallNetwork)
        );
        assert!(p(300, 0, 30, 5_000).may_propose(3));
        assert!(!p(300, 0, 30, 5_000).may_propose(2));
        assert!(p(300, 0, 4, 5_000).may_propose(2));
        assert!(!p(10, 0, 4, 5_000).may_propose(9));
    }

    #[test]
    fn summary_signs_round_trips_and_orders_rivals() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let snap = Snapshot::genesis(BTreeMap::from([(NodeId([1; 16]), 10)]));
        let s = EpochSummary::propose(&snap, NodeId([9; 16]), &key);
        s.verify(&key.verifying_key()).unwrap();
        s.matches(&snap).unwrap();
        assert_eq!(EpochSummary::decode(&s.encode()).unwrap(), s);
        let mut forged = s;
        forged.supply += 1;
        assert!(forged.verify(&key.verifying_key()).is_err());
        let mut bigger = s;
        bigger.settlement_count = 5;
        assert_eq!(s.preferred(&bigger), &bigger);
        assert_eq!(bigger.preferred(&s), &bigger);
        assert!(bigger.should_ack(5));
        assert!(!bigger.should_ack(100));
        let mut tie = s;
        tie.snapshot_root = [0; 32];
        assert_eq!(s.preferred(&tie), &tie);
    }

    #[test]
    fn activation_needs_67_percent_of_previous_active_set() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let snap = Snapshot::genesis(BTreeMap::new());
        let s = EpochSummary::propose(&snap, NodeId([9; 16]), &key);
        let voters: Vec<(NodeId, SigningKey)> = (0..6u8)
            .map(|i| (NodeId([i; 16]), SigningKey::from_bytes(&[i + 50; 32])))
            .collect();
        let mut tally = AckTally::new(s, voters.iter().map(|(n, _)| *n));
        assert_eq!(tally.threshold(), 5); // ceil(6 · 0.67) = 5
        let outsider = SigningKey::from_bytes(&[99; 32]);
        let ack = EpochAck::sign(&s, NodeId([77; 16]), &outsider);
        assert_eq!(
            tally.add(&ack, &outsider.verifying_key()),
            Err(EpochError::NotInActiveSet(NodeId([77; 16])))
        );
        for (node, k) in voters.iter().take(4) {
            let ack = EpochAck::decode(&EpochAck::sign(&s, *node, k).encode()).unwrap();
            tally.add(&ack, &k.verifying_key()).unwrap();
            tally.add(&ack, &k.verifying_key()).unwrap();
        }
        assert!(!tally.is_activated());
        let (node, k) = &voters[4];
        let ack = EpochAck::sign(&s, *node, k);
        assert!(tally.add(&ack, &voters[5].1.verifying_key()).is_err());
        tally.add(&ack, &k.verifying_key()).unwrap();
        assert!(tally.is_activated());
    }

    #[test]
    fn status_window() {
        assert_eq!(epoch_status(10, 10), EpochStatus::Active);
        assert_eq!(epoch_status(7, 10), EpochStatus::Finalizing);
        assert_eq!(epoch_status(6, 10), EpochStatus::Finalized);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = EpochSummary::decode(&bytes);
            let _ = EpochAck::decode(&bytes);
        }
    }
}
