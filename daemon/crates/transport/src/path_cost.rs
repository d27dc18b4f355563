//! `CompactPathCost`: a path's cost, latency, bandwidth, hop count and MTU in 7 bytes.
//!
//! ```text
//! off 0  cumulative_cost    u16 LE  code = 16·log2(v+1), v in μMHR per byte (step ×1.044)
//! off 2  worst_latency_ms   u16 LE  linear, saturating
//! off 4  bottleneck_bps     u8      code = 5·log2(bps)  (step ×1.149, up to 2^51 bps)
//! off 5  hop_count          u8      linear, saturating
//! off 6  bottleneck_mtu     u8      code = 4·log2(bytes) (step ×1.19)
//! ```
//!
//! Fresh values are encoded by rounding to the nearest code, as the spec's formulas say. The
//! per-hop update re-encodes the accumulated cost rounding **up** (PROTOCOL.md decision 2,
//! §8 item 4): with round-to-nearest a small fee added to a large cost would vanish. The
//! bandwidth scale is 5 rather than the spec's 8 (§8 item 4): 8 saturates at ~3.9 Gbps.

/// Encoded length.
pub const COMPACT_PATH_COST_LEN: usize = 7;
/// Codes per doubling of `cost + 1`.
pub const COST_SCALE: f64 = 16.0;
/// Codes per doubling of bandwidth.
pub const BANDWIDTH_SCALE: f64 = 5.0;
/// Codes per doubling of MTU.
pub const MTU_SCALE: f64 = 4.0;

/// Relative slack when rounding a decoded-then-summed cost up, so that float error in
/// `decode` never bumps an exact code to the next one.
const CEIL_SLACK: f64 = 1e-9;

/// Why bytes are not a `CompactPathCost`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathCostError {
    /// Not exactly 7 bytes were available.
    #[error("CompactPathCost needs {COMPACT_PATH_COST_LEN} bytes, got {found}")]
    Length {
        /// Bytes available.
        found: usize,
    },
}

/// The cost summary of a path, as carried on the wire (all fields are codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompactPathCost {
    /// Cumulative cost code (see [`decode_cost`]).
    pub cost: u16,
    /// Worst single-hop latency, milliseconds.
    pub worst_latency_ms: u16,
    /// Bottleneck bandwidth code (see [`decode_bandwidth`]).
    pub bandwidth: u8,
    /// Hops so far.
    pub hops: u8,
    /// Bottleneck MTU code (see [`decode_mtu`]).
    pub mtu: u8,
}

/// What one hop adds to a path, in plain units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HopCost {
    /// The hop's fee, μMHR per byte.
    pub cost_per_byte: f64,
    /// The hop's latency, milliseconds.
    pub latency_ms: u32,
    /// The hop's bandwidth, bits per second.
    pub bandwidth_bps: u64,
    /// The hop's MTU, bytes.
    pub mtu: u32,
}

impl CompactPathCost {
    /// A path of zero hops that constrains nothing: zero cost and latency, maximal bandwidth
    /// and MTU. The origin adds its own hop to it.
    pub const UNCONSTRAINED: CompactPathCost = CompactPathCost {
        cost: 0,
        worst_latency_ms: 0,
        bandwidth: u8::MAX,
        hops: 0,
        mtu: u8::MAX,
    };

    /// The origin's own cost summary (hop count zero), encoding each value to the nearest code.
    pub fn origin(hop: &HopCost) -> Self {
        Self {
            cost: encode_cost(hop.cost_per_byte),
            worst_latency_ms: saturating_u16(hop.latency_ms),
            bandwidth: encode_bandwidth(hop.bandwidth_bps),
            hops: 0,
            mtu: encode_mtu(hop.mtu),
        }
    }

    /// Reads 7 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, PathCostError> {
        let b: &[u8; COMPACT_PATH_COST_LEN] = bytes
            .try_into()
            .map_err(|_| PathCostError::Length { found: bytes.len() })?;
        Ok(Self::from_bytes(b))
    }

    /// Decodes the 7-byte layout.
    pub fn from_bytes(b: &[u8; COMPACT_PATH_COST_LEN]) -> Self {
        Self {
            cost: u16::from_le_bytes([b[0], b[1]]),
            worst_latency_ms: u16::from_le_bytes([b[2], b[3]]),
            bandwidth: b[4],
            hops: b[5],
            mtu: b[6],
        }
    }

    /// Encodes the 7-byte layout.
    pub fn to_bytes(&self) -> [u8; COMPACT_PATH_COST_LEN] {
        let c = self.cost.to_le_bytes();
        let l = self.worst_latency_ms.to_le_bytes();
        [c[0], c[1], l[0], l[1], self.bandwidth, self.hops, self.mtu]
    }

    /// The path extended by one hop: cost summed and re-encoded rounding up, latency max,
    /// bandwidth and MTU min, hops + 1 (all saturating).
    pub fn add_hop(&self, hop: &HopCost) -> Self {
        Self {
            cost: encode_cost_ceil(decode_cost(self.cost) + hop.cost_per_byte.max(0.0)),
            worst_latency_ms: self.worst_latency_ms.max(saturating_u16(hop.latency_ms)),
            bandwidth: self.bandwidth.min(encode_bandwidth(hop.bandwidth_bps)),
            hops: self.hops.saturating_add(1),
            mtu: self.mtu.min(encode_mtu(hop.mtu)),
        }
    }

    /// Decoded cumulative cost, μMHR per byte.
    pub fn cost_per_byte(&self) -> f64 {
        decode_cost(self.cost)
    }

    /// Decoded bottleneck bandwidth, bits per second.
    pub fn bandwidth_bps(&self) -> f64 {
        decode_bandwidth(self.bandwidth)
    }

    /// Decoded bottleneck MTU, bytes.
    pub fn mtu_bytes(&self) -> f64 {
        decode_mtu(self.mtu)
    }
}

/// Cost code nearest to `v` μMHR/B: `round(16·log2(v+1))`, saturating. Negative and NaN
/// inputs encode as 0.
pub fn encode_cost(v: f64) -> u16 {
    saturating_code(
        COST_SCALE * (clean(v) + 1.0).log2(),
        f64::round,
        u16::MAX.into(),
    ) as u16
}

/// Smallest cost code whose decoded value is at least `v`: never understates a fee.
pub fn encode_cost_ceil(v: f64) -> u16 {
    let exact = COST_SCALE * (clean(v) + 1.0).log2();
    if exact.is_infinite() {
        return u16::MAX;
    }
    let code = saturating_code(
        exact - CEIL_SLACK * exact.abs().max(1.0),
        f64::ceil,
        u16::MAX.into(),
    ) as u16;
    // Code 0 means free. A positive fee too small to clear the slack (below ~4e-11 μMHR per
    // byte), or for `1 + v` to differ from 1 at all, would otherwise be advertised as free.
    if code == 0 && clean(v) > 0.0 { 1 } else { code }
}

/// μMHR per byte of a cost code: `2^(e/16) − 1` (infinite for codes past f64's range).
pub fn decode_cost(code: u16) -> f64 {
    (f64::from(code) / COST_SCALE).exp2() - 1.0
}

/// Bandwidth code nearest to `bps`: `round(5·log2 bps)`, saturating; 0 for 0 or 1 bps.
pub fn encode_bandwidth(bps: u64) -> u8 {
    if bps <= 1 {
        return 0;
    }
    saturating_code(
        BANDWIDTH_SCALE * (bps as f64).log2(),
        f64::round,
        u8::MAX.into(),
    ) as u8
}

/// Bits per second of a bandwidth code: `2^(e/5)`.
pub fn decode_bandwidth(code: u8) -> f64 {
    (f64::from(code) / BANDWIDTH_SCALE).exp2()
}

/// MTU code nearest to `bytes`: `round(4·log2 bytes)`, saturating; 0 for 0 or 1 byte.
pub fn encode_mtu(bytes: u32) -> u8 {
    if bytes <= 1 {
        return 0;
    }
    saturating_code(
        MTU_SCALE * f64::from(bytes).log2(),
        f64::round,
        u8::MAX.into(),
    ) as u8
}

/// Bytes of an MTU code: `2^(e/4)`.
pub fn decode_mtu(code: u8) -> f64 {
    (f64::from(code) / MTU_SCALE).exp2()
}

fn clean(v: f64) -> f64 {
    if v.is_nan() || v < 0.0 { 0.0 } else { v }
}

fn saturating_code(x: f64, rounding: fn(f64) -> f64, max: u32) -> u32 {
    let r = rounding(x);
    if r.is_nan() || r <= 0.0 {
        0
    } else if r >= f64::from(max) {
        max
    } else {
        r as u32
    }
}

fn saturating_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mtu_codes_follow_the_formula() {
        // PROTOCOL.md §2: codes computed from round(4·log2 B).
        for (bytes, code) in [
            (228, 31),
            (484, 36),
            (500, 36),
            (1500, 42),
            (4096, 48),
            (9000, 53),
        ] {
            assert_eq!(encode_mtu(bytes), code, "MTU {bytes}");
            assert_eq!(code, (4.0 * f64::from(bytes).log2()).round() as u8);
        }
        assert_eq!(decode_mtu(48), 4096.0);
        assert_eq!(encode_mtu(u32::MAX), 128);
    }

    #[test]
    fn cost_codes() {
        assert_eq!(encode_cost(0.0), 0);
        assert_eq!(encode_cost(1.0), 16);
        assert_eq!(encode_cost(3.0), 32);
        assert_eq!(encode_cost(15.0), 64);
        assert_eq!(encode_cost(-5.0), 0);
        assert_eq!(encode_cost(f64::NAN), 0);
        assert_eq!(encode_cost(f64::INFINITY), u16::MAX);
        assert!((decode_cost(16) - 1.0).abs() < 1e-12);
        // One step is ×1.044 on v+1.
        assert!(((decode_cost(17) + 1.0) / (decode_cost(16) + 1.0) - 1.0443).abs() < 1e-4);
    }

    #[test]
    fn ceil_keeps_small_fees_that_rounding_drops() {
        // From code 89 up, adding 1 μMHR/B moves the exact code by less than half a step, so
        // rounding to nearest loses it (the spec's "code 87" example is two steps early).
        assert_eq!(encode_cost(decode_cost(88) + 1.0), 89);
        assert_eq!(encode_cost(decode_cost(100) + 1.0), 100);
        assert_eq!(encode_cost_ceil(decode_cost(100) + 1.0), 101);
        // Exact codes stay put despite float error.
        for code in [0u16, 1, 16, 87, 1000, 16000] {
            assert_eq!(encode_cost_ceil(decode_cost(code)), code);
        }
    }

    #[test]
    fn bandwidth_codes() {
        assert_eq!(encode_bandwidth(0), 0);
        assert_eq!(encode_bandwidth(1200), 51);
        assert_eq!(encode_bandwidth(1_000_000_000), 149);
        assert_eq!(encode_bandwidth(10_000_000_000_000), 216);
        assert_eq!(encode_bandwidth(u64::MAX), 255);
        assert_eq!(decode_bandwidth(50), 1024.0);
    }

    #[test]
    fn layout_is_little_endian() {
        let c = CompactPathCost {
            cost: 0x0102,
            worst_latency_ms: 0x0304,
            bandwidth: 5,
            hops: 6,
            mtu: 7,
        };
        assert_eq!(c.to_bytes(), [0x02, 0x01, 0x04, 0x03, 5, 6, 7]);
        assert_eq!(CompactPathCost::parse(&c.to_bytes()).unwrap(), c);
        assert_eq!(
            CompactPathCost::parse(&[0; 6]),
            Err(PathCostError::Length { found: 6 })
        );
    }

    #[test]
    fn a_positive_fee_never_rounds_to_free() {
        // Found by the path_cost fuzz target: a denormal fee on a free path gave code 0.
        for fee in [f64::from_bits(1), 1.363e-309, 1e-300, 1e-12, 4e-11] {
            assert_eq!(encode_cost_ceil(fee), 1, "{fee}");
            let free = CompactPathCost::UNCONSTRAINED;
            let next = free.add_hop(&HopCost {
                cost_per_byte: fee,
                latency_ms: 0,
                bandwidth_bps: 0,
                mtu: 0,
            });
            assert!(next.cost_per_byte() >= fee);
        }
        assert_eq!(encode_cost_ceil(0.0), 0);
        assert_eq!(encode_cost_ceil(-1.0), 0);
        assert_eq!(encode_cost_ceil(f64::NAN), 0);
    }

    #[test]
    fn add_hop_updates_each_field() {
        let origin = CompactPathCost::origin(&HopCost {
            cost_per_byte: 2.0,
            latency_ms: 40,
            bandwidth_bps: 1_000_000,
            mtu: 1500,
        });
        let next = origin.add_hop(&HopCost {
            cost_per_byte: 1.0,
            latency_ms: 900,
            bandwidth_bps: 1200,
            mtu: 500,
        });
        assert_eq!(next.hops, 1);
        assert_eq!(next.worst_latency_ms, 900);
        assert_eq!(next.bandwidth, encode_bandwidth(1200));
        assert_eq!(next.mtu, encode_mtu(500));
        assert!(next.cost_per_byte() >= decode_cost(origin.cost) + 1.0);
        assert_eq!(
            next.cost,
            encode_cost_ceil(decode_cost(encode_cost(2.0)) + 1.0)
        );
        let saturated = CompactPathCost {
            hops: 255,
            worst_latency_ms: 10,
            ..next
        }
        .add_hop(&HopCost {
            cost_per_byte: 0.0,
            latency_ms: 100_000,
            bandwidth_bps: 0,
            mtu: 0,
        });
        assert_eq!(saturated.hops, 255);
        assert_eq!(saturated.worst_latency_ms, u16::MAX);
    }

    proptest! {
        #[test]
        fn cost_never_decreases_and_fees_are_never_lost(code in 0u16..20000, fee in 0.0f64..1e6) {
            let before = CompactPathCost { cost: code, ..CompactPathCost::UNCONSTRAINED };
            let after = before.add_hop(&HopCost { cost_per_byte: fee, latency_ms: 0, bandwidth_bps: u64::MAX, mtu: u32::MAX });
            prop_assert!(after.cost >= code);
            if after.cost < u16::MAX {
                prop_assert!(decode_cost(after.cost) >= (decode_cost(code) + fee) * (1.0 - 1e-6));
            }
            // A fee of a whole μMHR/B is visible next to any cost below ~2^37 μMHR/B.
            if fee >= 1.0 && code < 600 {
                prop_assert!(after.cost > code);
            }
        }

        #[test]
        fn round_trip_bytes(bytes in any::<[u8; 7]>()) {
            prop_assert_eq!(CompactPathCost::from_bytes(&bytes).to_bytes(), bytes);
        }
    }
}
