//! The capability gossip budget (§2 gossip tier T3, §5 rings, §8 item 6).
//!
//! Tier T3 (capabilities, DHT, pub/sub) gets 2% of each link's bandwidth. It has its own
//! token bucket refilled at exactly `2%·bw/8` bytes per second, so that share is also its
//! floor: higher tiers cannot starve it, and there is no absolute floor (the spec's 10 B/s
//! would be 8% of a 1 kbit/s link, §8 item 6). The bucket holds 600 s of refill, and at least
//! one largest message so that a big advert can still leave a very slow link.
//!
//! What goes out on a link, per round, in strict priority (a message that does not fit ends
//! the round, so big messages are never starved by small ones):
//! 1. queued pull answers and pull requests (someone is waiting),
//! 2. the node's own advert, if it changed content since this neighbour got it,
//! 3. ring-1 summaries, on links of 10 kbit/s and more only, when they changed (at most
//!    every 180 s) or every 1800 s unchanged,
//! 4. the node's own advert, if only its periodic refresh is new to this neighbour.
//!
//! Below 10 kbit/s a link carries ring 0 only (the node's own advert) and pull traffic (§2:
//! T3 is pull-only there; capabilities ring 0 only). An advert is re-signed with seq+1 when
//! it changes and every 1800 s; unchanged adverts are never re-sent to a neighbour that has
//! them. Bytes are counted as they occupy a Reticulum link ([`link_frame_bytes`]).

use std::collections::VecDeque;

use crate::capabilities::{CapabilityAdvert, CapabilityError, NodeCapabilities};
use crate::discovery::{PullAnswer, PullRequest};
use crate::identity::NodeKey;
use crate::message::MarketMessage;
use crate::params::{
    ADVERT_REFRESH_MS, DEFAULT_ADVERT_TTL_SECONDS, MAX_ADVERT_LEN, SLOW_LINK_BPS,
    SUMMARY_MIN_INTERVAL_MS, SUMMARY_REFRESH_MS, T3_BURST_SECONDS, T3_SHARE_BPS,
};
use crate::summary::{CapabilitySummary, encode_summaries};

/// Largest plaintext of one Reticulum link packet at MTU 500.
pub const LINK_MDU: usize = 431;
/// Per-packet bytes a Reticulum link adds: header (2 flags/hops, 16 link id, 1 context),
/// token IV (16) and HMAC (32); PKCS#7 padding comes on top.
pub const LINK_PACKET_OVERHEAD: usize = 19 + 16 + 32;
/// Pull answers and requests waiting on one link at most (the spec drops T3 past 50 queued).
pub const MAX_QUEUED: usize = 50;

/// Bytes a market message of `payload` bytes occupies on a Reticulum link: one packet per
/// 431 bytes of plaintext, each with header, IV, HMAC and padding to the AES block (an
/// estimate for larger messages, which Reticulum sends as resources).
pub fn link_frame_bytes(payload: usize) -> u64 {
    let mut left = payload;
    let mut total = 0u64;
    loop {
        let chunk = left.min(LINK_MDU);
        let padded = (chunk / 16 + 1) * 16;
        total += (LINK_PACKET_OVERHEAD + padded) as u64;
        left -= chunk;
        if left == 0 {
            return total;
        }
    }
}

/// Token units per byte: bit/s × basis points × ms must land on whole units.
const UNITS_PER_BYTE: u128 = 8 * 10_000 * 1_000;

/// A token bucket metering a share of a link's bandwidth, in exact integer units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    link_bps: u64,
    share_bps: u64,
    capacity: u128,
    tokens: u128,
    last_ms: u64,
}

impl TokenBucket {
    /// A bucket refilled at `share_bps` basis points of `link_bps`, holding at most
    /// `capacity_bytes`, starting full.
    pub fn new(link_bps: u64, share_bps: u64, capacity_bytes: u64, now_ms: u64) -> Self {
        let capacity = u128::from(capacity_bytes) * UNITS_PER_BYTE;
        Self {
            link_bps,
            share_bps,
            capacity,
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    /// The tier-T3 bucket of a link: 2% of its bandwidth, 600 s of burst, and room for at
    /// least one largest message.
    pub fn t3(link_bps: u64, now_ms: u64) -> Self {
        let per_hour = rate_bytes_per_hour(link_bps, T3_SHARE_BPS);
        let burst = per_hour * T3_BURST_SECONDS / 3_600;
        let largest = link_frame_bytes(MAX_ADVERT_LEN + 1);
        Self::new(link_bps, T3_SHARE_BPS, burst.max(largest), now_ms)
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let add = u128::from(self.link_bps) * u128::from(self.share_bps) * u128::from(elapsed);
        self.tokens = self.tokens.saturating_add(add).min(self.capacity);
    }

    /// Whole bytes available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        u64::try_from(self.tokens / UNITS_PER_BYTE).unwrap_or(u64::MAX)
    }

    /// Takes `bytes` if available.
    pub fn try_take(&mut self, bytes: u64, now_ms: u64) -> bool {
        self.refill(now_ms);
        let need = u128::from(bytes) * UNITS_PER_BYTE;
        if need <= self.tokens {
            self.tokens -= need;
            true
        } else {
            false
        }
    }

    /// Milliseconds until `bytes` are available; `None` if they never will be (larger than
    /// the bucket, or no bandwidth).
    pub fn ms_until(&mut self, bytes: u64, now_ms: u64) -> Option<u64> {
        self.refill(now_ms);
        let need = u128::from(bytes) * UNITS_PER_BYTE;
        if need > self.capacity {
            return None;
        }
        let missing = need.saturating_sub(self.tokens);
        let per_ms = u128::from(self.link_bps) * u128::from(self.share_bps);
        if missing == 0 {
            Some(0)
        } else if per_ms == 0 {
            None
        } else {
            u64::try_from(missing.div_ceil(per_ms)).ok()
        }
    }

    /// The long-run budget, bytes per hour.
    pub fn bytes_per_hour(&self) -> u64 {
        rate_bytes_per_hour(self.link_bps, self.share_bps)
    }

    /// The burst size, bytes.
    pub fn capacity_bytes(&self) -> u64 {
        u64::try_from(self.capacity / UNITS_PER_BYTE).unwrap_or(u64::MAX)
    }
}

fn rate_bytes_per_hour(link_bps: u64, share_bps: u64) -> u64 {
    let units = u128::from(link_bps) * u128::from(share_bps) * 3_600_000;
    u64::try_from(units / UNITS_PER_BYTE).unwrap_or(u64::MAX)
}

/// This node's own advert: re-signed with seq+1 when the capabilities change and every
/// 1800 s. The daemon persists [`OwnAdvert::seq`] before sending, and resumes from it + 1
/// after a restart (a repeated seq would be refused as stale).
#[derive(Clone, Debug)]
pub struct OwnAdvert {
    advert: CapabilityAdvert,
    ttl_seconds: u32,
    signed_at_ms: u64,
    content_changed: bool,
}

impl OwnAdvert {
    /// Signs the first advert with `seq` and the default ttl (5400 s).
    pub fn new(
        key: &NodeKey,
        capabilities: NodeCapabilities,
        seq: u64,
        now_ms: u64,
    ) -> Result<Self, CapabilityError> {
        Self::with_ttl(key, capabilities, seq, DEFAULT_ADVERT_TTL_SECONDS, now_ms)
    }

    /// Signs the first advert with `seq` and `ttl_seconds`.
    pub fn with_ttl(
        key: &NodeKey,
        capabilities: NodeCapabilities,
        seq: u64,
        ttl_seconds: u32,
        now_ms: u64,
    ) -> Result<Self, CapabilityError> {
        Ok(Self {
            advert: capabilities.sign(key, seq, ttl_seconds)?,
            ttl_seconds,
            signed_at_ms: now_ms,
            content_changed: true,
        })
    }

    /// Replaces the capabilities; re-signs (seq+1) only if they differ. Returns whether it did.
    pub fn update(
        &mut self,
        key: &NodeKey,
        capabilities: NodeCapabilities,
        now_ms: u64,
    ) -> Result<bool, CapabilityError> {
        if &capabilities == self.advert.capabilities() {
            return Ok(false);
        }
        self.resign(key, capabilities, now_ms, true)?;
        Ok(true)
    }

    /// Re-signs the same capabilities with seq+1 once 1800 s have passed since the last
    /// signing. Returns whether it did.
    pub fn refresh_if_due(&mut self, key: &NodeKey, now_ms: u64) -> Result<bool, CapabilityError> {
        if now_ms.saturating_sub(self.signed_at_ms) < ADVERT_REFRESH_MS {
            return Ok(false);
        }
        let caps = self.advert.capabilities().clone();
        self.resign(key, caps, now_ms, false)?;
        Ok(true)
    }

    fn resign(
        &mut self,
        key: &NodeKey,
        capabilities: NodeCapabilities,
        now_ms: u64,
        changed: bool,
    ) -> Result<(), CapabilityError> {
        let seq = self.advert.seq().saturating_add(1);
        self.advert = capabilities.sign(key, seq, self.ttl_seconds)?;
        self.signed_at_ms = now_ms;
        self.content_changed = changed;
        Ok(())
    }

    /// The current signed advert.
    pub fn advert(&self) -> &CapabilityAdvert {
        &self.advert
    }

    /// The current seq.
    pub fn seq(&self) -> u64 {
        self.advert.seq()
    }

    /// Whether the current seq changed the content (rather than only refreshing it).
    pub fn content_changed(&self) -> bool {
        self.content_changed
    }
}

/// What a gossip message was, for accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GossipKind {
    /// The node's own advert.
    Advert,
    /// A ring-1 summary batch.
    Summaries,
    /// A pull request.
    Pull,
    /// A pull answer.
    PullAnswer,
}

/// One message to send on the link now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// What it is.
    pub kind: GossipKind,
    /// The encoded market message (type byte first).
    pub bytes: Vec<u8>,
    /// Bytes it occupies on the link, overhead included (what the budget was charged).
    pub link_bytes: u64,
}

/// Bytes and messages sent on one link, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Link bytes of adverts.
    pub advert_bytes: u64,
    /// Link bytes of summaries.
    pub summary_bytes: u64,
    /// Link bytes of pull requests and answers.
    pub pull_bytes: u64,
    /// Messages sent.
    pub messages: u64,
    /// Pull messages dropped because the queue was full.
    pub dropped: u64,
}

impl GossipStats {
    /// All link bytes sent.
    pub fn total_bytes(&self) -> u64 {
        self.advert_bytes + self.summary_bytes + self.pull_bytes
    }
}

/// Tier-T3 gossip on one neighbour link.
#[derive(Clone, Debug)]
pub struct LinkGossip {
    link_bps: u64,
    bucket: TokenBucket,
    sent_advert_seq: Option<u64>,
    sent_summaries: Option<(Vec<u8>, u64)>,
    queue: VecDeque<(GossipKind, Vec<u8>)>,
    stats: GossipStats,
}

impl LinkGossip {
    /// Gossip state for a new link of `link_bps` bit/s (the bucket starts full).
    pub fn new(link_bps: u64, now_ms: u64) -> Self {
        Self {
            link_bps,
            bucket: TokenBucket::t3(link_bps, now_ms),
            sent_advert_seq: None,
            sent_summaries: None,
            queue: VecDeque::new(),
            stats: GossipStats::default(),
        }
    }

    /// Whether the link is below 10 kbit/s (ring 0 and pulls only).
    pub fn is_slow(&self) -> bool {
        self.link_bps < SLOW_LINK_BPS
    }

    /// Queues a pull answer for this neighbour.
    pub fn queue_answer(&mut self, answer: &PullAnswer) {
        self.enqueue(
            GossipKind::PullAnswer,
            MarketMessage::PullAnswer(answer.clone()),
        );
    }

    /// Queues a pull request to this neighbour.
    pub fn queue_pull(&mut self, pull: &PullRequest) {
        self.enqueue(GossipKind::Pull, MarketMessage::Pull(*pull));
    }

    fn enqueue(&mut self, kind: GossipKind, message: MarketMessage) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
            self.stats.dropped += 1;
        }
        self.queue.push_back((kind, message.encode()));
    }

    /// Decides what to send now, charging the budget. `summaries` are this node's ring-1
    /// summaries ([`crate::discovery::DiscoveryTable::summaries`] for ring 1). Call once per
    /// gossip round, and after queueing a pull or answer to send it without waiting.
    pub fn poll(
        &mut self,
        now_ms: u64,
        own: &OwnAdvert,
        summaries: &[CapabilitySummary],
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Some((kind, bytes)) = self.queue.front() {
            let link_bytes = link_frame_bytes(bytes.len());
            if !self.bucket.try_take(link_bytes, now_ms) {
                return out;
            }
            let (kind, bytes) = (*kind, bytes.clone());
            self.queue.pop_front();
            self.record(&mut out, kind, bytes, link_bytes);
        }
        let advert_new = self.sent_advert_seq != Some(own.seq());
        if advert_new && own.content_changed() && !self.send_advert(&mut out, own, now_ms) {
            return out;
        }
        if !self.is_slow() && !summaries.is_empty() {
            let batch = encode_summaries(summaries);
            let due = match &self.sent_summaries {
                None => true,
                Some((last, at)) => {
                    let since = now_ms.saturating_sub(*at);
                    since >= SUMMARY_REFRESH_MS
                        || (*last != batch && since >= SUMMARY_MIN_INTERVAL_MS)
                }
            };
            if due {
                let message = MarketMessage::Summaries(summaries.to_vec()).encode();
                let link_bytes = link_frame_bytes(message.len());
                if !self.bucket.try_take(link_bytes, now_ms) {
                    return out;
                }
                self.sent_summaries = Some((batch, now_ms));
                self.record(&mut out, GossipKind::Summaries, message, link_bytes);
            }
        }
        if self.sent_advert_seq != Some(own.seq()) {
            self.send_advert(&mut out, own, now_ms);
        }
        out
    }

    fn send_advert(&mut self, out: &mut Vec<Outgoing>, own: &OwnAdvert, now_ms: u64) -> bool {
        let message = MarketMessage::Advert(own.advert().clone()).encode();
        let link_bytes = link_frame_bytes(message.len());
        if !self.bucket.try_take(link_bytes, now_ms) {
            return false;
        }
        self.sent_advert_seq = Some(own.seq());
        self.record(out, GossipKind::Advert, message, link_bytes);
        true
    }

    fn record(
        &mut self,
        out: &mut Vec<Outgoing>,
        kind: GossipKind,
        bytes: Vec<u8>,
        link_bytes: u64,
    ) {
        match kind {
            GossipKind::Advert => self.stats.advert_bytes += link_bytes,
            GossipKind::Summaries => self.stats.summary_bytes += link_bytes,
            GossipKind::Pull | GossipKind::PullAnswer => self.stats.pull_bytes += link_bytes,
        }
        self.stats.messages += 1;
        out.push(Outgoing {
            kind,
            bytes,
            link_bytes,
        });
    }

    /// What has been sent so far.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    /// The link's T3 budget, bytes per hour.
    pub fn budget_bytes_per_hour(&self) -> u64 {
        self.bucket.bytes_per_hour()
    }

    /// Pull messages waiting for budget.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::CapabilityKind;
    use crate::capabilities::tests::{full, relay_only};
    use crate::discovery::Filter;
    use crate::identity::test_keys::node_key;

    #[test]
    fn frame_bytes_follow_reticulum_link_packets() {
        // 122-byte advert + type byte: 67 + 128 (123 padded to 128).
        assert_eq!(link_frame_bytes(123), 67 + 128);
        assert_eq!(link_frame_bytes(0), 67 + 16);
        assert_eq!(link_frame_bytes(16), 67 + 32);
        // 431 bytes fill one packet (432 padded); 432 need two.
        assert_eq!(link_frame_bytes(431), 67 + 432);
        assert_eq!(link_frame_bytes(432), 67 + 432 + 67 + 16);
    }

    #[test]
    fn t3_is_two_percent_of_the_link() {
        let b = TokenBucket::t3(1_200, 0);
        // 1200 bit/s · 2% / 8 = 3 B/s = 10800 B/h.
        assert_eq!(b.bytes_per_hour(), 10_800);
        // 600 s of refill (1800 B) is less than one largest advert frame, which wins.
        assert_eq!(b.capacity_bytes(), link_frame_bytes(MAX_ADVERT_LEN + 1));
        let fast = TokenBucket::t3(1_000_000, 0);
        assert_eq!(fast.bytes_per_hour(), 9_000_000);
        assert_eq!(fast.capacity_bytes(), 1_500_000);
        // 1 kbit/s: 2.5 B/s exactly, no absolute floor.
        assert_eq!(TokenBucket::t3(1_000, 0).bytes_per_hour(), 9_000);
    }

    #[test]
    fn bucket_refills_exactly_and_caps() {
        let mut b = TokenBucket::new(1_200, T3_SHARE_BPS, 100, 0);
        assert!(b.try_take(100, 0));
        assert!(!b.try_take(1, 0));
        assert_eq!(b.available(333), 0);
        assert_eq!(b.available(334), 1);
        assert_eq!(b.ms_until(30, 334), Some(9_666));
        assert_eq!(b.available(1_000_000), 100);
        assert_eq!(b.ms_until(101, 0), None);
        assert_eq!(b.ms_until(50, 2_000_000), Some(0));
        let mut dead = TokenBucket::new(0, T3_SHARE_BPS, 10, 0);
        assert!(dead.try_take(10, 0));
        assert_eq!(dead.ms_until(1, 5), None);
    }

    #[test]
    fn own_advert_reseals_on_change_and_refresh() {
        let key = node_key(1);
        let mut own = OwnAdvert::new(&key, relay_only(1), 10, 0).unwrap();
        assert_eq!(own.seq(), 10);
        assert!(!own.update(&key, relay_only(1), 5).unwrap());
        assert!(own.update(&key, relay_only(2), 5).unwrap());
        assert_eq!((own.seq(), own.content_changed()), (11, true));
        assert!(!own.refresh_if_due(&key, ADVERT_REFRESH_MS).unwrap());
        assert!(own.refresh_if_due(&key, ADVERT_REFRESH_MS + 5).unwrap());
        assert_eq!((own.seq(), own.content_changed()), (12, false));
        assert_eq!(own.advert().ttl_seconds(), DEFAULT_ADVERT_TTL_SECONDS);
    }

    fn summaries() -> Vec<CapabilitySummary> {
        CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(3), 1)])
            .into_iter()
            .collect()
    }

    #[test]
    fn slow_link_sends_own_advert_once_and_no_summaries() {
        let key = node_key(1);
        let own = OwnAdvert::new(&key, relay_only(1), 1, 0).unwrap();
        let mut link = LinkGossip::new(1_200, 0);
        assert!(link.is_slow());
        let first = link.poll(0, &own, &summaries());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, GossipKind::Advert);
        assert_eq!(
            MarketMessage::decode(&first[0].bytes).unwrap(),
            MarketMessage::Advert(own.advert().clone())
        );
        // Nothing new: nothing sent, round after round.
        for round in 1..100 {
            assert!(link.poll(round * 60_000, &own, &summaries()).is_empty());
        }
        assert_eq!(link.stats().total_bytes(), first[0].link_bytes);
    }

    #[test]
    fn fast_link_sends_summaries_when_changed_but_not_too_often() {
        let key = node_key(1);
        let own = OwnAdvert::new(&key, full(), 1, 0).unwrap();
        let mut link = LinkGossip::new(1_000_000, 0);
        let kinds = |v: &[Outgoing]| v.iter().map(|o| o.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(&link.poll(0, &own, &summaries())),
            vec![GossipKind::Advert, GossipKind::Summaries]
        );
        let changed: Vec<CapabilitySummary> =
            CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(3), 1), (Some(5), 2)])
                .into_iter()
                .collect();
        assert!(link.poll(60_000, &own, &changed).is_empty());
        assert_eq!(
            kinds(&link.poll(SUMMARY_MIN_INTERVAL_MS, &own, &changed)),
            vec![GossipKind::Summaries]
        );
        assert!(
            link.poll(SUMMARY_MIN_INTERVAL_MS + 60_000, &own, &changed)
                .is_empty()
        );
        assert_eq!(
            kinds(&link.poll(SUMMARY_MIN_INTERVAL_MS + SUMMARY_REFRESH_MS, &own, &changed)),
            vec![GossipKind::Summaries]
        );
    }

    #[test]
    fn pulls_go_first_and_the_budget_holds_the_rest_back() {
        let key = node_key(1);
        let mut own = OwnAdvert::new(&key, full(), 1, 0).unwrap();
        let mut link = LinkGossip::new(1_200, 0);
        link.poll(0, &own, &[]);
        // Drain most of the bucket with pulls, then change the advert.
        let pull = PullRequest {
            nonce: 1,
            filter: Filter::kind(CapabilityKind::Storage),
            max_hops: 3,
            forward: false,
            limit: 8,
        };
        for _ in 0..30 {
            link.queue_pull(&pull);
        }
        own.update(&key, relay_only(9), 1).unwrap();
        let sent = link.poll(1, &own, &[]);
        assert!(sent.iter().all(|o| o.kind == GossipKind::Pull));
        assert!(link.queued() > 0);
        // The budget refills at 3 B/s: everything is out within a few minutes, pulls first.
        let mut order = Vec::new();
        for s in 1..=600 {
            order.extend(link.poll(s * 1_000, &own, &[]).into_iter().map(|o| o.kind));
        }
        assert_eq!(link.queued(), 0);
        assert_eq!(order.last(), Some(&GossipKind::Advert));
        let stats = link.stats();
        assert!(
            stats.total_bytes()
                <= link.budget_bytes_per_hour() / 6 + TokenBucket::t3(1_200, 0).capacity_bytes()
        );
    }

    #[test]
    fn queue_is_bounded() {
        let mut link = LinkGossip::new(0, 0);
        let answer = PullAnswer {
            nonce: 1,
            entries: vec![],
        };
        for _ in 0..(MAX_QUEUED + 5) {
            link.queue_answer(&answer);
        }
        assert_eq!(link.queued(), MAX_QUEUED);
        assert_eq!(link.stats().dropped, 5);
    }
}
