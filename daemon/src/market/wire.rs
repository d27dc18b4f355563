//! What the market puts in control messages (the `0x20–0x2F` range of `mehr.node`): defined in
//! the pure `mehr-market` crate (`mehr_market::control`), where it is fuzzed without the
//! daemon's storage; the market part uses it through these names.

pub use mehr_market::control::*;

// The crate's range must be the one the transport gives the market.
const _: () = assert!(MARKET_FIRST == crate::transport::control_kinds::MARKET_FIRST);

/// How a provider's `JobResult::Failed` reason starts when it refuses a job because the
/// consumer's unpaid dues exceed its credit (`market.consumer_credit_umhr`): the consumer
/// tells this refusal apart from a failed run (PROTOCOL.md, "Paying for agreements").
pub(super) const PAYMENT_OVERDUE: &str = "payment overdue: ";
