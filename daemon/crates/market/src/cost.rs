//! Prices: the agreement `CostStructure` (§5 agreements) and the logarithmic cost code used by
//! capability summaries (§5, the CompactPathCost cost codec of §2).
//!
//! Amounts are μMHR. A cost structure's *unit price* is the one number discovery compares:
//! μ per byte (`PerByte`), per call (`PerInvocation`), per epoch (`PerDuration`) or per million
//! cycles (`PerCycle`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::wire::{DecodeError, Reader, ReaderExt, Writer};

/// How a capability is priced (§5 agreements); u8 codes in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CostStructure {
    /// Code 0: relay and proxy traffic, μ per byte.
    PerByte {
        /// μ per byte.
        per_byte: u64,
    },
    /// Code 1: function calls, μ per call, for inputs up to `max_input` bytes.
    PerInvocation {
        /// μ per call.
        per_call: u64,
        /// Largest input accepted (offer) or needed (request), bytes.
        max_input: u32,
    },
    /// Code 2: storage, μ per whole epoch (partial epochs bill as whole ones).
    PerDuration {
        /// μ per epoch.
        per_epoch: u64,
    },
    /// Code 3: contracts, μ per million cycles, execution capped at `max_cycles`.
    PerCycle {
        /// μ per million cycles.
        per_million: u64,
        /// Cycle cap: the consumer's budget in a request, the enforced cap in an offer.
        max_cycles: u64,
    },
}

/// The variant of a [`CostStructure`], without its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CostKind {
    /// [`CostStructure::PerByte`].
    PerByte,
    /// [`CostStructure::PerInvocation`].
    PerInvocation,
    /// [`CostStructure::PerDuration`].
    PerDuration,
    /// [`CostStructure::PerCycle`].
    PerCycle,
}

/// Why an offered cost does not fit a cap, or a resale price does not cover its upstream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CostError {
    /// The two structures price different things.
    #[error("cost structure {offered:?} does not match the requested {cap:?}")]
    KindMismatch {
        /// The offered (or downstream) variant.
        offered: CostKind,
        /// The cap's (or upstream) variant.
        cap: CostKind,
    },
    /// The unit price is above the cap.
    #[error("unit price {offered} μ exceeds the cap of {cap} μ")]
    PriceAboveCap {
        /// Offered unit price.
        offered: u64,
        /// The cap.
        cap: u64,
    },
    /// The offer accepts smaller inputs than the request needs.
    #[error("offer accepts inputs up to {offered} bytes, the request needs {needed}")]
    InputTooSmall {
        /// Offered `max_input`.
        offered: u32,
        /// Requested `max_input`.
        needed: u32,
    },
    /// The offer's cycle cap exceeds the consumer's cycle budget.
    #[error("offer caps execution at {offered} cycles, above the consumer's budget of {budget}")]
    CyclesAboveBudget {
        /// Offered `max_cycles`.
        offered: u64,
        /// Requested `max_cycles`.
        budget: u64,
    },
    /// A resold price is below the upstream price it must cover.
    #[error("resale unit price {downstream} μ is below the upstream price {upstream} μ")]
    BelowUpstream {
        /// Downstream unit price.
        downstream: u64,
        /// Upstream unit price.
        upstream: u64,
    },
    /// Adding a markup overflowed.
    #[error("unit price {price} μ plus markup {markup} μ overflows")]
    Overflow {
        /// The upstream unit price.
        price: u64,
        /// The markup.
        markup: u64,
    },
}

impl CostStructure {
    /// The variant.
    pub fn kind(&self) -> CostKind {
        match self {
            CostStructure::PerByte { .. } => CostKind::PerByte,
            CostStructure::PerInvocation { .. } => CostKind::PerInvocation,
            CostStructure::PerDuration { .. } => CostKind::PerDuration,
            CostStructure::PerCycle { .. } => CostKind::PerCycle,
        }
    }

    /// The number discovery and caps compare: μ per byte, call, epoch or million cycles.
    pub fn unit_price(&self) -> u64 {
        match *self {
            CostStructure::PerByte { per_byte } => per_byte,
            CostStructure::PerInvocation { per_call, .. } => per_call,
            CostStructure::PerDuration { per_epoch } => per_epoch,
            CostStructure::PerCycle { per_million, .. } => per_million,
        }
    }

    /// Checks an offered cost against the consumer's cap: same variant, unit price at most
    /// the cap's, `max_input` at least the needed input, `max_cycles` at most the budget.
    pub fn within(&self, cap: &CostStructure) -> Result<(), CostError> {
        if self.kind() != cap.kind() {
            return Err(CostError::KindMismatch {
                offered: self.kind(),
                cap: cap.kind(),
            });
        }
        if self.unit_price() > cap.unit_price() {
            return Err(CostError::PriceAboveCap {
                offered: self.unit_price(),
                cap: cap.unit_price(),
            });
        }
        match (*self, *cap) {
            (
                CostStructure::PerInvocation { max_input, .. },
                CostStructure::PerInvocation {
                    max_input: needed, ..
                },
            ) if max_input < needed => Err(CostError::InputTooSmall {
                offered: max_input,
                needed,
            }),
            (
                CostStructure::PerCycle { max_cycles, .. },
                CostStructure::PerCycle {
                    max_cycles: budget, ..
                },
            ) if max_cycles > budget => Err(CostError::CyclesAboveBudget {
                offered: max_cycles,
                budget,
            }),
            _ => Ok(()),
        }
    }

    /// The same structure with `markup` μ added to the unit price (a resale in a capability
    /// chain: upstream cost + markup).
    pub fn with_markup(&self, markup: u64) -> Result<CostStructure, CostError> {
        let price = self.unit_price();
        let raised = price
            .checked_add(markup)
            .ok_or(CostError::Overflow { price, markup })?;
        Ok(match *self {
            CostStructure::PerByte { .. } => CostStructure::PerByte { per_byte: raised },
            CostStructure::PerInvocation { max_input, .. } => CostStructure::PerInvocation {
                per_call: raised,
                max_input,
            },
            CostStructure::PerDuration { .. } => CostStructure::PerDuration { per_epoch: raised },
            CostStructure::PerCycle { max_cycles, .. } => CostStructure::PerCycle {
                per_million: raised,
                max_cycles,
            },
        })
    }

    /// Encoded length: 1 code byte + 8 (+ 4 for `max_input`, + 8 for `max_cycles`).
    pub fn encoded_len(&self) -> usize {
        match self {
            CostStructure::PerByte { .. } | CostStructure::PerDuration { .. } => 9,
            CostStructure::PerInvocation { .. } => 13,
            CostStructure::PerCycle { .. } => 17,
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        match *self {
            CostStructure::PerByte { per_byte } => {
                w.u8(0);
                w.u64(per_byte);
            }
            CostStructure::PerInvocation {
                per_call,
                max_input,
            } => {
                w.u8(1);
                w.u64(per_call);
                w.u32(max_input);
            }
            CostStructure::PerDuration { per_epoch } => {
                w.u8(2);
                w.u64(per_epoch);
            }
            CostStructure::PerCycle {
                per_million,
                max_cycles,
            } => {
                w.u8(3);
                w.u64(per_million);
                w.u64(max_cycles);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(CostStructure::PerByte { per_byte: r.u64()? }),
            1 => Ok(CostStructure::PerInvocation {
                per_call: r.u64()?,
                max_input: r.u32()?,
            }),
            2 => Ok(CostStructure::PerDuration {
                per_epoch: r.u64()?,
            }),
            3 => Ok(CostStructure::PerCycle {
                per_million: r.u64()?,
                max_cycles: r.u64()?,
            }),
            code => Err(r.unknown("cost_structure", code)),
        }
    }
}

/// Summary cost code for "free" (a zero price).
pub const COST_CODE_FREE: u16 = 0x0000;
/// Summary cost code for "price unknown" (the capability carries no price).
pub const COST_CODE_UNKNOWN: u16 = 0xFFFF;

/// The smallest code `c` with `2^(c/16) − 1 ≥ v`: `ceil(16·log2(v+1))`, computed exactly in
/// integers so every node encodes a value the same way. Rounding up means a code never
/// understates a price (decision 2). The largest code is 1024 (`v = u64::MAX`), far from
/// [`COST_CODE_UNKNOWN`].
pub fn encode_cost_code(v: u64) -> u16 {
    let n = u128::from(v) + 1;
    if n.is_power_of_two() {
        // 16·log2(2^k) = 16k exactly.
        return u16::try_from(16 * n.trailing_zeros()).unwrap_or(COST_CODE_UNKNOWN - 1);
    }
    // n is not a power of two, so neither is n^16 and ceil(log2(n^16)) is its bit length.
    let bits = pow16_bit_length(n);
    u16::try_from(bits).unwrap_or(COST_CODE_UNKNOWN - 1)
}

/// The largest price whose code is `code` or lower: `floor(2^(code/16)) − 1`, saturating at
/// `u64::MAX`. `None` for [`COST_CODE_UNKNOWN`].
pub fn decode_cost_code(code: u16) -> Option<u64> {
    if code == COST_CODE_UNKNOWN {
        return None;
    }
    if code >= 1024 {
        return Some(u64::MAX);
    }
    // Binary search for the largest v with encode(v) ≤ code; encode is monotone.
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if encode_cost_code(mid) <= code {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Bit length of `n^16` for `1 ≤ n ≤ 2^64`, by exact multi-limb squaring.
fn pow16_bit_length(n: u128) -> u32 {
    let mut x = vec![n as u64, (n >> 64) as u64];
    for _ in 0..4 {
        x = square(&x);
    }
    let top = x.iter().rposition(|limb| *limb != 0).unwrap_or(0);
    let top_limb = x.get(top).copied().unwrap_or(0);
    u32::try_from(top).unwrap_or(u32::MAX / 128) * 64 + (64 - top_limb.leading_zeros())
}

fn square(a: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; a.len() * 2];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &aj) in a.iter().enumerate() {
            if let Some(slot) = out.get_mut(i + j) {
                let t = u128::from(ai) * u128::from(aj) + u128::from(*slot) + carry;
                *slot = t as u64;
                carry = t >> 64;
            }
        }
        if let Some(slot) = out.get_mut(i + a.len()) {
            *slot = carry as u64;
        }
    }
    while out.len() > 1 && out.last() == Some(&0) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cost_code_vectors() {
        assert_eq!(encode_cost_code(0), 0);
        // 16·log2(2) = 16.
        assert_eq!(encode_cost_code(1), 16);
        // 16·log2(3) = 25.36 → 26.
        assert_eq!(encode_cost_code(2), 26);
        assert_eq!(encode_cost_code(3), 32);
        // 16·log2(101) = 106.53 → 107.
        assert_eq!(encode_cost_code(100), 107);
        assert_eq!(encode_cost_code(u64::MAX), 1024);
        assert_eq!(encode_cost_code(u64::MAX - 1), 1024);
        assert_eq!(decode_cost_code(0), Some(0));
        assert_eq!(decode_cost_code(16), Some(1));
        assert_eq!(decode_cost_code(26), Some(2));
        assert_eq!(decode_cost_code(1024), Some(u64::MAX));
        assert_eq!(decode_cost_code(COST_CODE_UNKNOWN), None);
    }

    #[test]
    fn codes_agree_with_floating_point_away_from_boundaries() {
        for v in [5u64, 17, 999, 123_456, 10_000_000, 1 << 40] {
            let exact = 16.0 * ((v as f64) + 1.0).log2();
            assert_eq!(f64::from(encode_cost_code(v)), exact.ceil(), "v={v}");
        }
    }

    proptest! {
        #[test]
        fn code_never_understates_and_is_monotone(v in any::<u64>(), w in any::<u64>()) {
            let c = encode_cost_code(v);
            prop_assert!(decode_cost_code(c).unwrap() >= v);
            if c > 0 {
                prop_assert!(decode_cost_code(c - 1).unwrap() < v);
            }
            if v <= w {
                prop_assert!(encode_cost_code(v) <= encode_cost_code(w));
            }
        }

        #[test]
        fn cost_structure_round_trips(kind in 0u8..4, a in any::<u64>(), b in any::<u64>(), c in any::<u32>()) {
            let cost = match kind {
                0 => CostStructure::PerByte { per_byte: a },
                1 => CostStructure::PerInvocation { per_call: a, max_input: c },
                2 => CostStructure::PerDuration { per_epoch: a },
                _ => CostStructure::PerCycle { per_million: a, max_cycles: b },
            };
            let mut w = Writer::new();
            cost.write(&mut w);
            let bytes = w.into_bytes();
            prop_assert_eq!(bytes.len(), cost.encoded_len());
            let mut r = Reader::new("cost", &bytes);
            prop_assert_eq!(CostStructure::read(&mut r).unwrap(), cost);
            r.finish().unwrap();
        }
    }

    #[test]
    fn within_checks_kind_price_and_limits() {
        let cap = CostStructure::PerInvocation {
            per_call: 100,
            max_input: 1000,
        };
        assert!(
            CostStructure::PerInvocation {
                per_call: 100,
                max_input: 4096
            }
            .within(&cap)
            .is_ok()
        );
        assert_eq!(
            CostStructure::PerInvocation {
                per_call: 101,
                max_input: 4096
            }
            .within(&cap),
            Err(CostError::PriceAboveCap {
                offered: 101,
                cap: 100
            })
        );
        assert_eq!(
            CostStructure::PerInvocation {
                per_call: 10,
                max_input: 999
            }
            .within(&cap),
            Err(CostError::InputTooSmall {
                offered: 999,
                needed: 1000
            })
        );
        assert!(matches!(
            CostStructure::PerByte { per_byte: 1 }.within(&cap),
            Err(CostError::KindMismatch { .. })
        ));
        let budget = CostStructure::PerCycle {
            per_million: 50,
            max_cycles: 1_000_000,
        };
        assert!(matches!(
            CostStructure::PerCycle {
                per_million: 40,
                max_cycles: 2_000_000
            }
            .within(&budget),
            Err(CostError::CyclesAboveBudget { .. })
        ));
    }

    #[test]
    fn markup_adds_to_unit_price_and_keeps_limits() {
        let up = CostStructure::PerCycle {
            per_million: 40,
            max_cycles: 7,
        };
        assert_eq!(
            up.with_markup(5).unwrap(),
            CostStructure::PerCycle {
                per_million: 45,
                max_cycles: 7
            }
        );
        assert!(matches!(
            CostStructure::PerByte { per_byte: u64::MAX }.with_markup(1),
            Err(CostError::Overflow { .. })
        ));
    }
}
