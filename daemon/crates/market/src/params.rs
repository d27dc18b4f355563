//! Every protocol number this crate uses, named once, with its source.
//!
//! Times are milliseconds on the caller's clock unless the name says otherwise; amounts are
//! μMHR.

// ---- adverts (§5 NodeCapabilities, §1 version byte, decision 8) ----

/// Version byte of the advert layout: v1.0 = `1 << 4 | 0`.
pub const ADVERT_VERSION: u8 = 0x10;
/// Largest encoded advert, signature included. A relay-only advert is 122 B; the cap keeps a
/// worst case to ~14 s of airtime at 1200 bit/s.
pub const MAX_ADVERT_LEN: usize = 2048;
/// Interfaces per advert.
pub const MAX_INTERFACES: usize = 8;
/// Offered functions per advert.
pub const MAX_FUNCTIONS: usize = 16;
/// Function name length, bytes.
pub const MAX_FUNCTION_NAME_LEN: usize = 64;
/// Function description length, bytes.
pub const MAX_DESCRIPTION_LEN: usize = 128;
/// Daily windows in a schedule.
pub const MAX_SCHEDULE_WINDOWS: usize = 8;
/// Minutes in a day (schedule windows).
pub const MINUTES_PER_DAY: u16 = 1440;
/// Longest advert lifetime: one day.
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// Interval at which a node re-signs its advert with seq+1 even when nothing changed
/// (the announce period of §2: 1800 s).
pub const ADVERT_REFRESH_MS: u64 = 1_800_000;
/// Default advert lifetime: three refresh periods, like route expiry (§2: 3·1800 s).
pub const DEFAULT_ADVERT_TTL_SECONDS: u32 = 5_400;

// ---- discovery (§5 discovery rings) ----

/// Adverts a discovery table holds by default (tombstones of dropped ones: four times that).
pub const DEFAULT_TABLE_CAPACITY: usize = 4096;
/// The outermost ring (3: beyond the trust graph, on query).
pub const MAX_RING: u8 = 3;
/// Largest hop distance counted as ring 1 ("2–3 hops").
pub const RING1_MAX_HOPS: u8 = 3;
/// Hop limit of a ring-3 pull flood.
pub const RING3_PULL_HOPS: u8 = 8;
/// A neighbour's summaries are dropped this long after they were last received (three
/// summary refresh periods).
pub const SUMMARY_TTL_MS: u64 = 3 * SUMMARY_REFRESH_MS;
/// Adverts returned by one pull answer.
pub const MAX_PULL_ANSWER_ADVERTS: usize = 8;
/// Summaries in one batch (one per capability kind and ring).
pub const MAX_SUMMARIES_PER_BATCH: usize = 36;
/// How long a pull nonce is remembered to suppress flood duplicates.
pub const PULL_DEDUP_MS: u64 = 120_000;
/// Pull nonces remembered at most (oldest forgotten first).
pub const PULL_DEDUP_CAPACITY: usize = 4096;

// ---- gossip budget (§2 gossip, §8 item 6) ----

/// Gossip round length.
pub const GOSSIP_ROUND_MS: u64 = 60_000;
/// Share of link bandwidth for tier T3 (capabilities, DHT, pub/sub): 2%.
pub const T3_SHARE_BPS: u64 = 200;
/// Links below this bit rate carry capabilities of ring 0 only, and no pushed summaries.
pub const SLOW_LINK_BPS: u64 = 10_000;
/// Smallest interval between two summary batches on one link ("every few min").
pub const SUMMARY_MIN_INTERVAL_MS: u64 = 180_000;
/// Unchanged summaries are re-sent this often.
pub const SUMMARY_REFRESH_MS: u64 = 1_800_000;
/// The T3 token bucket holds this many seconds of refill (and at least one largest message).
pub const T3_BURST_SECONDS: u64 = 600;

// ---- agreements (§5 agreements) ----

/// A request without an answer, or an offer without a countersignature, expires after 30 s.
pub const OFFER_TIMEOUT_MS: u64 = 30_000;
/// Longest offer validity a provider may set.
pub const MAX_OFFER_VALIDITY_SECONDS: u32 = 300;

// ---- verification (§5 verification, seed 003) ----

/// Default heartbeat interval N.
pub const HEARTBEAT_INTERVAL_MS: u64 = 60_000;
/// Default consecutive misses M that end an agreement.
pub const HEARTBEAT_MAX_MISSES: u32 = 3;
/// Largest proof carried by a compute result.
pub const MAX_PROOF_LEN: usize = 4096;

// ---- presence beacons (§5, §8 item 25) ----

/// Beacon interval below 50% channel use.
pub const BEACON_INTERVAL_MS: u64 = 10_000;
/// Beacon interval above 50% channel use.
pub const BEACON_INTERVAL_BUSY_MS: u64 = 20_000;
/// Beacon interval above 75% channel use.
pub const BEACON_INTERVAL_SATURATED_MS: u64 = 30_000;
/// A node switches to a fresh beacon id this often (§8 item 25 fix: rotate beacon ids).
pub const BEACON_ROTATION_MS: u64 = 600_000;

// ---- reputation (§3 reputation) ----

/// Highest score.
pub const MAX_SCORE: u16 = 10_000;
/// Success: `s += (10000 − s) / 100`.
pub const SUCCESS_DIVISOR: u16 = 100;
/// Failure: `s −= s / 10`.
pub const FAILURE_DIVISOR: u16 = 10;
/// A trusted referral seeds at most this score.
pub const REFERRAL_CAP: u16 = 5_000;
/// A trusted referral seeds this share of the referrer's score: 30% in basis points.
pub const REFERRAL_SHARE_BPS: u32 = 3_000;
/// A referral seed expires after this many gossip rounds.
pub const REFERRAL_EXPIRY_ROUNDS: u64 = 500;
/// A referral seed is replaced by the node's own score after this many own interactions.
pub const REFERRAL_REPLACED_AFTER: u32 = 5;
