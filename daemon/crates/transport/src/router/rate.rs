//! A token bucket: how the router bounds work a neighbour can make it do per unit of time
//! (each inbound announce costs an Ed25519 verification) before doing it.

use crate::clock::Timestamp;

/// Holds up to `burst` tokens, refilled at `per_second`; each admitted unit of work takes one.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Timestamp,
}

impl TokenBucket {
    /// A full bucket. A rate of zero or less disables the limit.
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_second,
            last: Timestamp::ZERO,
        }
    }

    /// Takes a token if one is left at `now`.
    pub(crate) fn take(&mut self, now: Timestamp) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let elapsed = now.since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(10.0, 5);
        let t0 = Timestamp::from_secs(1);
        assert_eq!((0..100).filter(|_| bucket.take(t0)).count(), 5);
        // One second later: ten more (the burst caps at five).
        let t1 = Timestamp::from_secs(2);
        assert_eq!((0..100).filter(|_| bucket.take(t1)).count(), 5);
        let t2 = Timestamp::from_millis(2_300);
        assert_eq!((0..100).filter(|_| bucket.take(t2)).count(), 3);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut bucket = TokenBucket::new(0.0, 1);
        assert!((0..1000).all(|_| bucket.take(Timestamp::ZERO)));
    }
}
