//! Every protocol number this crate uses, named once, with its source in PROTOCOL.md.
//!
//! Amounts are in μMHR (1 MHR = 10^6 μ). Rounds are gossip rounds (60 s nominal) counted by the
//! caller; epochs are ledger epochs (see [`crate::ledger::epoch`]).

/// μMHR in one MHR (§4 token supply).
pub const MICRO_PER_MHR: u64 = 1_000_000;

/// Share of every funded payment that is burned, in basis points (§4: 2%, payee keeps 98%).
pub const BURN_BASIS_POINTS: u64 = 200;

/// Denominator of every basis-point figure.
pub const BASIS_POINTS: u64 = 10_000;

// ---- trust (§4 trust, §8 item 13) ----

/// Default share of a voucher's credit limit extended to a friend of a friend: 10%.
pub const DEFAULT_TRANSITIVE_CREDIT_BPS: u16 = 1_000;

/// Largest allowed transitive credit ratio: 50%.
pub const MAX_TRANSITIVE_CREDIT_BPS: u16 = 5_000;

// ---- payment channels (§4 payment channels) ----

/// Rounds one cooperative settlement attempt may take before it counts as failed (~2 h).
pub const SETTLEMENT_TIMEOUT_ROUNDS: u64 = 120;

/// Failed cooperative settlement attempts after which a unilateral settlement may be filed.
pub const SETTLEMENT_FAILURES_BEFORE_UNILATERAL: u32 = 3;

/// Challenge window of a unilateral settlement, in rounds (~48 h); the highest seq wins.
pub const DISPUTE_WINDOW_ROUNDS: u64 = 2_880;

/// Idle epochs after which either party may close a channel as abandoned.
pub const ABANDONMENT_IDLE_EPOCHS: u64 = 4;

// ---- stochastic relay reward (§4, decision 4, §8 items 16–17) ----

/// Parts-per-million scale of a committed win probability.
pub const WIN_PROBABILITY_SCALE: u32 = 1_000_000;

/// Lowest win probability: 1/10000, in parts per million.
pub const MIN_WIN_PROBABILITY_PPM: u32 = 100;

/// Highest win probability: 1/5, in parts per million.
pub const MAX_WIN_PROBABILITY_PPM: u32 = 200_000;

/// Target wins per minute on a link: `p = 0.1 / (packets per minute)`.
pub const TARGET_WINS_PER_MINUTE_NUMERATOR: u64 = 1;
/// Denominator of [`TARGET_WINS_PER_MINUTE_NUMERATOR`] (0.1 = 1/10).
pub const TARGET_WINS_PER_MINUTE_DENOMINATOR: u64 = 10;

/// Width of the packet-rate averaging window, in milliseconds (5 minutes).
pub const RATE_WINDOW_MS: u64 = 5 * 60 * 1_000;

/// Number of buckets the rate window is cut into (30 s each).
pub const RATE_BUCKETS: usize = 10;

// ---- CRDT ledger and epochs (§4 CRDT ledger, epoch compaction, §8 items 19–20) ----

/// Trigger: settlements since the last epoch that force a new epoch.
pub const EPOCH_TRIGGER_SETTLEMENTS: u64 = 10_000;

/// Trigger: size of the settlement set since the last epoch that forces a new epoch (500 KB).
pub const EPOCH_TRIGGER_GSET_BYTES: u64 = 500 * 1_000;

/// Trigger (small networks): floor of the settlement count, `max(200, 10·active)`.
pub const EPOCH_TRIGGER_MIN_SETTLEMENTS: u64 = 200;

/// Trigger (small networks): settlements required per active node.
pub const EPOCH_TRIGGER_SETTLEMENTS_PER_ACTIVE: u64 = 10;

/// Trigger (small networks): rounds that must have passed since the last epoch.
pub const EPOCH_TRIGGER_MIN_ROUNDS: u64 = 1_000;

/// A proposer must hold at least `min(3, active/2)` links.
pub const PROPOSER_MIN_LINKS: u64 = 3;

/// A node ACKs a proposal whose settlement count is within 5% of its own.
pub const ACK_TOLERANCE_BPS: u64 = 500;

/// An epoch activates once 67% of the previous active set ACKed it.
pub const ACK_THRESHOLD_BPS: u64 = 6_700;

/// Rounds a node that NAKed waits before re-proposing.
pub const REPROPOSE_AFTER_ROUNDS: u64 = 3;

/// Epochs during which records already folded into a snapshot must still be kept (late
/// proofs and rival snapshots), after which they may be pruned.
pub const RECORD_RETENTION_EPOCHS: u64 = 4;

/// Nodes that settled within this many epochs form the active set.
pub const ACTIVE_SET_EPOCHS: u64 = 2;

/// Epochs a unilaterally closed channel keeps its funds escrowed after its closing record was
/// first folded into a snapshot (the ledger-side dispute window, §8 item 23: counted in epochs).
pub const UNILATERAL_RELEASE_EPOCHS: u64 = 1;

// ---- token supply and minting (§4 token supply, §8 items 21–22) ----

/// Base emission of the first halving period: 10^12 μ = 1M MHR per epoch.
pub const BASE_EMISSION_PER_EPOCH: u128 = 1_000_000_000_000;

/// Epochs per halving of the base emission.
pub const HALVING_INTERVAL_EPOCHS: u64 = 100_000;

/// Largest shift applied to the base emission (the spec's `min(e/100000, 63)`).
pub const MAX_HALVINGS: u64 = 63;

/// Tail emission per year as a fraction of supply: 0.1% = 1/1000.
pub const TAIL_EMISSION_DENOMINATOR: u128 = 1_000;

/// Active nodes with mutual trust needed for full emission (`E_s = E·min(N,100)/100`).
pub const FULL_EMISSION_ACTIVE_NODES: u64 = 100;

/// Minting is capped at 50% of net service income, in basis points.
pub const MINT_CAP_OF_NET_INCOME_BPS: u64 = 5_000;
