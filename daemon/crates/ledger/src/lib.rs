//! Mehr economics protocol logic, pure: the rules the daemon relies on, with no I/O, no
//! clocks and no threads (time, rounds, epochs and randomness are passed in).
//!
//! - [`signing`]: domain-separated Ed25519 signing of every record (decision 3).
//! - [`trust`]: the local trust graph, free relay and credit lines.
//! - [`channel`]: bilateral payment channels as an explicit state machine.
//! - [`lottery`]: VRF relay lottery (RFC 9381 ECVRF) with committed win probabilities.
//! - [`ledger`]: the CRDT settlement ledger, epoch compaction, balance proofs and minting.
//! - [`params`]: every protocol number, named.

pub mod burn;
pub mod channel;
pub mod ids;
pub mod ledger;
pub mod lottery;
pub mod params;
pub mod signing;
pub mod trust;
mod wire;

pub use ids::{ChannelId, NodeId, Party};
pub use wire::DecodeError;
