//! The CRDT settlement ledger, epoch compaction, balance proofs and minting (decision 5,
//! §4 CRDT ledger / epoch compaction / token supply, §8 items 19–22).

mod crdt;
pub mod epoch;
mod merkle;
pub mod minting;
mod record;
mod snapshot;

pub use crdt::{Account, CompactionParams, InsertOutcome, Ledger};
pub use merkle::{AbsenceProof, BalanceProof};
pub(crate) use record::verify_settlement_signature;
pub use record::{
    RecordError, SETTLEMENT_ID_DOMAIN, SETTLEMENT_RECORD_LEN, SettlementKind, SettlementRecord,
    sign_settlement,
};
pub use snapshot::{AccountProof, Baseline, ChannelKey, ChannelStatus, Snapshot};

#[cfg(test)]
mod tests;
