//! Verification (seed 003, §5 verification): proof that a provider delivers.
//!
//! - [`receipt`]: destination-signed delivery receipts for relayed packets (decision 4).
//! - [`heartbeat`]: signed ping/pong and the monitor that ends an agreement after M misses.
//! - [`tiers`]: compute verification tiers (reputation, optimistic 1-in-N audit, redundant
//!   K-of-N majority), and signed compute results.
//!
//! Storage challenges live in the storage crate (decision 6).

pub mod heartbeat;
pub mod receipt;
pub mod tiers;

pub use heartbeat::{
    HeartbeatAction, HeartbeatConfig, HeartbeatError, HeartbeatMonitor, Ping, Pong, SignedPing,
    SignedPong, answer_ping,
};
pub use receipt::{DeliveryReceipt, Receipt, packet_hash};
pub use tiers::{
    AuditVerdict, ComputeResult, Plan, ProofSystem, SignedComputeResult, Tier, TierError, Verdict,
    audit_verdict, output_hash, plan, redundant_verdict,
};
