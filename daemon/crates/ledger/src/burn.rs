//! The 2% burn on every funded payment (§4 stochastic relay reward, token supply).
//!
//! Burns are computed on cumulative per-direction totals, never per payment, so the rounding
//! of many small payments cannot add up (or be split to dodge the burn): the burn of a
//! channel direction is always `burn_of(total paid)`. It rounds up, so every non-zero payment
//! burns at least 1 μ and supply can only be over-burned by under 1 μ per direction.

use crate::params::{BASIS_POINTS, BURN_BASIS_POINTS};

/// μ burned out of a gross amount: `ceil(gross · 2%)`.
pub fn burn_of(gross: u64) -> u64 {
    let scaled = u128::from(gross) * u128::from(BURN_BASIS_POINTS);
    let burn = scaled.div_ceil(u128::from(BASIS_POINTS));
    // burn ≤ gross because BURN_BASIS_POINTS < BASIS_POINTS, so it fits in a u64.
    u64::try_from(burn).unwrap_or(gross)
}

/// μ the payee receives out of a gross amount (98%, rounded down).
pub fn net_of(gross: u64) -> u64 {
    gross - burn_of(gross)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example_relay_keeps_490_of_500() {
        assert_eq!(burn_of(500), 10);
        assert_eq!(net_of(500), 490);
        assert_eq!(burn_of(0), 0);
        assert_eq!(burn_of(1), 1);
        assert_eq!(burn_of(50), 1);
        assert_eq!(burn_of(51), 2);
    }

    proptest! {
        #[test]
        fn burn_is_monotone_and_bounded(x in any::<u64>(), y in any::<u64>()) {
            prop_assert!(burn_of(x) <= x);
            prop_assert_eq!(net_of(x) + burn_of(x), x);
            if x <= y { prop_assert!(burn_of(x) <= burn_of(y)); prop_assert!(net_of(x) <= net_of(y)); }
        }
    }
}
