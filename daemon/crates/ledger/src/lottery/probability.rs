//! The committed win probability and the mapping from VRF output to a win.

use serde::{Deserialize, Serialize};

use super::LotteryError;
use crate::params::{
    MAX_WIN_PROBABILITY_PPM, MIN_WIN_PROBABILITY_PPM, RATE_WINDOW_MS,
    TARGET_WINS_PER_MINUTE_DENOMINATOR, TARGET_WINS_PER_MINUTE_NUMERATOR, WIN_PROBABILITY_SCALE,
};

/// A lottery win probability in parts per million, always within `[1/10000, 1/5]`.
///
/// Parts per million keep the committed value a small exact integer that both parties sign;
/// the VRF threshold is `floor(ppm · 2^64 / 10^6)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct WinProbability(u32);

impl WinProbability {
    /// The lowest probability, 1/10000.
    pub const MIN: WinProbability = WinProbability(MIN_WIN_PROBABILITY_PPM);
    /// The highest probability, 1/5: the value for an idle link.
    pub const MAX: WinProbability = WinProbability(MAX_WIN_PROBABILITY_PPM);

    /// A probability of `ppm` parts per million; fails outside `[100, 200000]`.
    pub fn from_ppm(ppm: u32) -> Result<Self, LotteryError> {
        if (MIN_WIN_PROBABILITY_PPM..=MAX_WIN_PROBABILITY_PPM).contains(&ppm) {
            Ok(Self(ppm))
        } else {
            Err(LotteryError::ProbabilityOutOfRange {
                ppm,
                min: MIN_WIN_PROBABILITY_PPM,
                max: MAX_WIN_PROBABILITY_PPM,
            })
        }
    }

    /// `ppm` clamped into the allowed range.
    pub fn clamped(ppm: u64) -> Self {
        let clamped = ppm.clamp(
            u64::from(MIN_WIN_PROBABILITY_PPM),
            u64::from(MAX_WIN_PROBABILITY_PPM),
        );
        Self(u32::try_from(clamped).unwrap_or(MAX_WIN_PROBABILITY_PPM))
    }

    /// `p = 0.1 / (packets per minute)` from the packets counted over the 5-minute window,
    /// rounded down and clamped. An idle link gets the maximum.
    pub fn for_window_count(packets_in_window: u64) -> Self {
        if packets_in_window == 0 {
            return Self::MAX;
        }
        let window_minutes = u128::from(RATE_WINDOW_MS / 60_000);
        // ppm = 10^6 · (num/den) · window_minutes / packets
        let numerator = u128::from(WIN_PROBABILITY_SCALE)
            * u128::from(TARGET_WINS_PER_MINUTE_NUMERATOR)
            * window_minutes;
        let denominator =
            u128::from(TARGET_WINS_PER_MINUTE_DENOMINATOR) * u128::from(packets_in_window);
        Self::clamped(u64::try_from(numerator / denominator).unwrap_or(u64::MAX))
    }

    /// Parts per million.
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// The VRF threshold: a ticket wins when its output is below `floor(p · 2^64)`.
    pub fn threshold(self) -> u64 {
        let t = (u128::from(self.0) << 64) / u128::from(WIN_PROBABILITY_SCALE);
        // p ≤ 1/5, so the threshold is below 2^62.
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Whether a VRF output (first 8 bytes, little-endian) wins at this probability.
    pub fn wins(self, output: u64) -> bool {
        output < self.threshold()
    }

    /// Gross payout of one win: `ceil(cost / p)` (rounded up so small costs are never lost).
    pub fn payout(self, cost: u64) -> Result<u64, LotteryError> {
        let gross =
            (u128::from(cost) * u128::from(WIN_PROBABILITY_SCALE)).div_ceil(u128::from(self.0));
        u64::try_from(gross).map_err(|_| LotteryError::PayoutOverflow { cost, ppm: self.0 })
    }
}

impl TryFrom<u32> for WinProbability {
    type Error = LotteryError;
    fn try_from(ppm: u32) -> Result<Self, LotteryError> {
        Self::from_ppm(ppm)
    }
}

impl From<WinProbability> for u32 {
    fn from(p: WinProbability) -> u32 {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_five_micro_at_one_percent_pays_500() {
        let p = WinProbability::from_ppm(10_000).unwrap();
        assert_eq!(p.payout(5).unwrap(), 500);
    }

    #[test]
    fn rate_maps_to_probability_and_clamps() {
        // 10 pkt/min = 50 packets in 5 minutes -> p = 0.01.
        assert_eq!(WinProbability::for_window_count(50).ppm(), 10_000);
        // 0.5 pkt/min would give p = 0.2 exactly.
        assert_eq!(WinProbability::for_window_count(2).ppm(), 200_000);
        assert_eq!(WinProbability::for_window_count(1), WinProbability::MAX);
        assert_eq!(WinProbability::for_window_count(0), WinProbability::MAX);
        // 1000 pkt/min -> 1/10000; faster links stay clamped there.
        assert_eq!(WinProbability::for_window_count(5_000), WinProbability::MIN);
        assert_eq!(
            WinProbability::for_window_count(u64::MAX),
            WinProbability::MIN
        );
    }

    #[test]
    fn range_is_enforced() {
        assert!(WinProbability::from_ppm(99).is_err());
        assert!(WinProbability::from_ppm(200_001).is_err());
        assert!(WinProbability::from_ppm(100).is_ok());
        assert_eq!(WinProbability::clamped(0), WinProbability::MIN);
        assert_eq!(WinProbability::clamped(u64::MAX), WinProbability::MAX);
    }

    #[test]
    fn threshold_matches_probability() {
        let p = WinProbability::MAX;
        assert_eq!(p.threshold(), u64::MAX / 5); // floor(2^64 / 5) = floor((2^64-1)/5)
        assert!(p.wins(p.threshold() - 1));
        assert!(!p.wins(p.threshold()));
        assert_eq!(
            WinProbability::MIN.threshold(),
            ((1u128 << 64) / 10_000) as u64
        );
    }

    #[test]
    fn payout_overflow_is_an_error() {
        assert!(WinProbability::MIN.payout(u64::MAX).is_err());
        assert_eq!(WinProbability::MAX.payout(0).unwrap(), 0);
        assert_eq!(WinProbability::MAX.payout(1).unwrap(), 5);
        assert_eq!(
            WinProbability::from_ppm(30_000).unwrap().payout(1).unwrap(),
            34
        );
    }
}
