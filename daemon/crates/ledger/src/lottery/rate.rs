//! Packets-per-minute estimate over the 5-minute window that sets the win probability.

use serde::{Deserialize, Serialize};

use super::WinProbability;
use crate::params::{RATE_BUCKETS, RATE_WINDOW_MS};

const BUCKET_MS: u64 = RATE_WINDOW_MS / RATE_BUCKETS as u64;

/// Counts packets on one link in ten 30-second buckets; the window is the current bucket plus
/// the nine before it. Time is passed in (milliseconds on any clock that does not go
/// backwards for this link); a time earlier than the newest bucket is counted in the newest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRateEstimator {
    buckets: [u64; RATE_BUCKETS],
    /// Absolute index (`time / 30 s`) of the newest bucket.
    newest: u64,
}

impl PacketRateEstimator {
    /// An estimator that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(index: u64) -> usize {
        // RATE_BUCKETS is small, so the remainder always fits a usize.
        usize::try_from(index % RATE_BUCKETS as u64).unwrap_or(0)
    }

    fn advance(&mut self, now_ms: u64) {
        let index = now_ms / BUCKET_MS;
        if index <= self.newest {
            return;
        }
        let stale = (index - self.newest).min(RATE_BUCKETS as u64);
        for step in 1..=stale {
            let slot = Self::slot(index - stale + step);
            if let Some(bucket) = self.buckets.get_mut(slot) {
                *bucket = 0;
            }
        }
        self.newest = index;
    }

    /// Counts `packets` forwarded at `now_ms`.
    pub fn record(&mut self, now_ms: u64, packets: u64) {
        self.advance(now_ms);
        if let Some(bucket) = self.buckets.get_mut(Self::slot(self.newest)) {
            *bucket = bucket.saturating_add(packets);
        }
    }

    /// Packets counted in the window ending at `now_ms`.
    pub fn packets_in_window(&self, now_ms: u64) -> u64 {
        let index = now_ms / BUCKET_MS;
        let age = index.saturating_sub(self.newest);
        if age >= RATE_BUCKETS as u64 {
            return 0;
        }
        // Buckets older than `RATE_BUCKETS - age` behind the newest have left the window.
        let keep = RATE_BUCKETS as u64 - age;
        (0..keep)
            .filter_map(|back| self.newest.checked_sub(back))
            .filter_map(|i| self.buckets.get(Self::slot(i)))
            .fold(0u64, |sum, b| sum.saturating_add(*b))
    }

    /// The average rate over the window, packets per minute.
    pub fn packets_per_minute(&self, now_ms: u64) -> f64 {
        self.packets_in_window(now_ms) as f64 / (RATE_WINDOW_MS as f64 / 60_000.0)
    }

    /// The win probability to commit for the next period: `0.1 / (packets per minute)`,
    /// clamped to `[1/10000, 1/5]`.
    pub fn win_probability(&self, now_ms: u64) -> WinProbability {
        WinProbability::for_window_count(self.packets_in_window(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn steady_ten_per_minute_gives_one_percent() {
        let mut r = PacketRateEstimator::new();
        // 10 packets per minute for 10 minutes, one every 6 s.
        for i in 0..100u64 {
            r.record(1_000_000 + i * 6_000, 1);
        }
        let now = 1_000_000 + 99 * 6_000;
        let count = r.packets_in_window(now);
        assert!((46..=50).contains(&count), "window count {count}");
        assert!((r.packets_per_minute(now) - 10.0).abs() < 1.0);
        assert!(r.win_probability(now).ppm() >= 10_000);
    }

    #[test]
    fn old_traffic_leaves_the_window() {
        let mut r = PacketRateEstimator::new();
        r.record(0, 500);
        assert_eq!(r.packets_in_window(0), 500);
        assert_eq!(r.packets_in_window(BUCKET_MS * 9), 500);
        assert_eq!(r.packets_in_window(BUCKET_MS * 10), 0);
        assert_eq!(r.win_probability(BUCKET_MS * 10), WinProbability::MAX);
        r.record(BUCKET_MS * 50, 3);
        assert_eq!(r.packets_in_window(BUCKET_MS * 50), 3);
    }

    #[test]
    fn time_going_backwards_counts_in_newest_bucket() {
        let mut r = PacketRateEstimator::new();
        r.record(BUCKET_MS * 5, 1);
        r.record(0, 1);
        assert_eq!(r.packets_in_window(BUCKET_MS * 5), 2);
    }

    proptest! {
        #[test]
        fn window_count_equals_recent_sum(events in proptest::collection::vec((0u64..2_000_000, 0u64..1_000), 0..200)) {
            let mut events = events;
            events.sort();
            let mut r = PacketRateEstimator::new();
            for (t, n) in &events { r.record(*t, *n); }
            let now = events.last().map(|e| e.0).unwrap_or(0);
            let newest = now / BUCKET_MS;
            let expected: u64 = events.iter()
                .filter(|(t, _)| t / BUCKET_MS + (RATE_BUCKETS as u64) > newest)
                .map(|(_, n)| n).sum();
            prop_assert_eq!(r.packets_in_window(now), expected);
        }
    }
}
