//! Which gossiped settlement records the ledger takes in (docs/PROTOCOL.md, "Limits",
//! "Parts").
//!
//! Every record held is kept in memory and RocksDB and passed on to every neighbour, and any
//! two key pairs can co-sign one, so a record is admitted only when it costs its makers
//! something the mesh can see:
//!
//! - a record of a channel the ledger does not know yet needs a **funded party**: one of its
//!   two parties holds a positive balance in the adopted epoch snapshot (genesis or income
//!   folded at an epoch). Fresh key pairs hold nothing, so minted Sybil channels are refused.
//!   The snapshot, not the live view, decides, so every node of a network judges a record
//!   alike and the check costs one map look-up;
//! - each party may add new channels at a bounded rate and land records at a bounded rate
//!   (token buckets, below). A settlements message carries no authenticated sender, so the
//!   rate is kept per party: the funded account behind the records is the scarce resource;
//! - a channel holds at most [`MAX_RECORDS_PER_CHANNEL`] records at its winning key (two
//!   co-signed versions already prove the equivocation);
//! - the ledger holds at most [`MAX_LEDGER_RECORDS`] records; past it, records of new
//!   channels are refused until an epoch folds and prunes records.
//!
//! Records of this node's own channels are always admitted: they come from its own channel
//! protocol. Refused records are counted by reason and not passed on; a neighbour's paged
//! reconciliation offers them again later.

use std::collections::HashMap;

use mehr_ledger::{NodeId, ledger::SettlementRecord};

/// The most settlement records the ledger holds (memory and RocksDB alike; a record with its
/// two identities is about 0.5 KiB, so about 50 MiB at the bound).
pub(crate) const MAX_LEDGER_RECORDS: usize = 100_000;

/// The most records one channel holds at its winning `(seq, kind)`.
pub(crate) const MAX_RECORDS_PER_CHANNEL: usize = 4;

/// New channels one party may bring in at once, and the interval at which it earns another.
const NEW_CHANNEL_BURST: f64 = 32.0;
const NEW_CHANNEL_REFILL_MS: f64 = 30_000.0;

/// Records one party may land at once (new channels and updates alike), and the interval at
/// which it earns another.
const RECORD_BURST: f64 = 256.0;
const RECORD_REFILL_MS: f64 = 250.0;

/// Parties whose buckets are tracked; when full, idle (refilled) buckets are forgotten first
/// and a party that finds no room is refused.
pub(crate) const MAX_TRACKED_PARTIES: usize = 8_192;

/// Why a gossiped record was refused (the `ledger.*` drop reasons of GetStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A new channel with no party funded in the adopted snapshot.
    Unfunded,
    /// A party over its rate.
    RateLimited,
    /// The ledger is at [`MAX_LEDGER_RECORDS`].
    LedgerFull,
    /// The channel holds [`MAX_RECORDS_PER_CHANNEL`] records at its winning key.
    ChannelFull,
}

impl Refusal {
    /// The drop reason's stable name.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Unfunded => "ledger.record_unfunded",
            Refusal::RateLimited => "ledger.record_rate_limited",
            Refusal::LedgerFull => "ledger.records_full",
            Refusal::ChannelFull => "ledger.channel_records_full",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn refill(&mut self, now_ms: u64, burst: f64, refill_ms: f64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.tokens = (self.tokens + elapsed / refill_ms).min(burst);
        self.at_ms = now_ms.max(self.at_ms);
    }
}

/// Token buckets per party for one kind of admission.
#[derive(Debug)]
struct Buckets {
    burst: f64,
    refill_ms: f64,
    by_party: HashMap<NodeId, Bucket>,
}

impl Buckets {
    fn new(burst: f64, refill_ms: f64) -> Self {
        Buckets {
            burst,
            refill_ms,
            by_party: HashMap::new(),
        }
    }

    fn has_token(&mut self, party: NodeId, now_ms: u64) -> bool {
        if !self.by_party.contains_key(&party) && self.by_party.len() >= MAX_TRACKED_PARTIES {
            let (burst, refill_ms) = (self.burst, self.refill_ms);
            self.by_party.retain(|_, bucket| {
                bucket.refill(now_ms, burst, refill_ms);
                bucket.tokens < burst
            });
            if self.by_party.len() >= MAX_TRACKED_PARTIES {
                return false;
            }
        }
        let bucket = self.by_party.entry(party).or_insert(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        bucket.refill(now_ms, self.burst, self.refill_ms);
        bucket.tokens >= 1.0
    }

    fn take(&mut self, party: NodeId) {
        if let Some(bucket) = self.by_party.get_mut(&party) {
            bucket.tokens -= 1.0;
        }
    }
}

/// The admission state of the ledger's gossip.
#[derive(Debug)]
pub(crate) struct RecordAdmission {
    new_channels: Buckets,
    records: Buckets,
}

impl Default for RecordAdmission {
    fn default() -> Self {
        RecordAdmission {
            new_channels: Buckets::new(NEW_CHANNEL_BURST, NEW_CHANNEL_REFILL_MS),
            records: Buckets::new(RECORD_BURST, RECORD_REFILL_MS),
        }
    }
}

/// What the ledger knows about a record when deciding on it.
pub(crate) struct Candidate<'a> {
    pub(crate) record: &'a SettlementRecord,
    /// The ledger knows the channel (snapshot baseline or a held record).
    pub(crate) known_channel: bool,
    /// `Some(n)`: the record would be the channel's `n + 1`-th record at its key (0 for a
    /// new channel); `None`: it replaces or duplicates what is held.
    pub(crate) adds: Option<usize>,
    /// Records the ledger holds.
    pub(crate) held: usize,
    /// Whether each party holds a positive balance in the adopted snapshot.
    pub(crate) funded: (bool, bool),
}

impl RecordAdmission {
    /// Decides on one gossiped record and, when it is admitted, charges its parties.
    pub(crate) fn admit(&mut self, c: &Candidate<'_>, now_ms: u64) -> Result<(), Refusal> {
        let (a, b) = (c.record.body.party_a, c.record.body.party_b);
        if !c.known_channel && !c.funded.0 && !c.funded.1 {
            return Err(Refusal::Unfunded);
        }
        match c.adds {
            Some(_) if c.held >= MAX_LEDGER_RECORDS => return Err(Refusal::LedgerFull),
            Some(n) if n >= MAX_RECORDS_PER_CHANNEL => return Err(Refusal::ChannelFull),
            _ => {}
        }
        // The funded party answers for a new channel (party A when both are).
        let payer = if c.funded.0 || !c.funded.1 { a } else { b };
        let new_channel = !c.known_channel;
        if new_channel && !self.new_channels.has_token(payer, now_ms) {
            return Err(Refusal::RateLimited);
        }
        if !self.records.has_token(a, now_ms) || !self.records.has_token(b, now_ms) {
            return Err(Refusal::RateLimited);
        }
        if new_channel {
            self.new_channels.take(payer);
        }
        self.records.take(a);
        self.records.take(b);
        Ok(())
    }
}
