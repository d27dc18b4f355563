//! `CapabilitySummary` (§5 discovery rings): 8 bytes that tell ring-1 neighbours how many
//! providers of one capability kind a node knows, how cheap and how far.
//!
//! ```text
//! off 0  kind      u8   capability kind code (= PresenceBeacon caps bit for codes 0–7)
//! off 1  count     u8   providers, saturating at 255
//! off 2  min_cost  u16  cost code of the lowest unit price (0x0000 free, 0xFFFF unknown)
//! off 4  avg_cost  u16  cost code of the mean unit price (0xFFFF when no price is known)
//! off 6  min_hops  u8   hops from the summarising node to the nearest provider
//! off 7  max_hops  u8   hops to the farthest
//! ```
//!
//! Costs use [`crate::cost::encode_cost_code`] (rounded up, so a summary never understates a
//! price). A batch on the wire is a u8 count followed by that many summaries.

use serde::{Deserialize, Serialize};

use crate::capabilities::CapabilityKind;
use crate::cost::{COST_CODE_UNKNOWN, encode_cost_code};
use crate::params::MAX_SUMMARIES_PER_BATCH;
use crate::wire::{DecodeError, Reader, ReaderExt, Writer};

/// Encoded length of one summary.
pub const SUMMARY_LEN: usize = 8;

/// One capability kind, aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapabilitySummary {
    /// The kind summarised.
    pub kind: CapabilityKind,
    /// Providers counted (saturating at 255).
    pub count: u8,
    /// Cost code of the lowest unit price.
    pub min_cost: u16,
    /// Cost code of the mean unit price.
    pub avg_cost: u16,
    /// Hops to the nearest provider, from the summarising node.
    pub min_hops: u8,
    /// Hops to the farthest provider, from the summarising node.
    pub max_hops: u8,
}

impl CapabilitySummary {
    /// Aggregates providers given as `(unit price, hops)`; `None` when there are none.
    /// Providers without a price count but do not enter the cost fields.
    pub fn aggregate(
        kind: CapabilityKind,
        providers: impl IntoIterator<Item = (Option<u64>, u8)>,
    ) -> Option<Self> {
        let mut count = 0u32;
        let mut priced = 0u128;
        let mut sum = 0u128;
        let mut min_price: Option<u64> = None;
        let mut min_hops = u8::MAX;
        let mut max_hops = 0u8;
        for (price, hops) in providers {
            count += 1;
            min_hops = min_hops.min(hops);
            max_hops = max_hops.max(hops);
            if let Some(p) = price {
                priced += 1;
                sum += u128::from(p);
                min_price = Some(min_price.map_or(p, |m| m.min(p)));
            }
        }
        if count == 0 {
            return None;
        }
        let (min_cost, avg_cost) = match min_price {
            Some(min) => {
                let avg = u64::try_from(sum / priced.max(1)).unwrap_or(u64::MAX);
                (encode_cost_code(min), encode_cost_code(avg))
            }
            None => (COST_CODE_UNKNOWN, COST_CODE_UNKNOWN),
        };
        Some(Self {
            kind,
            count: u8::try_from(count).unwrap_or(u8::MAX),
            min_cost,
            avg_cost,
            min_hops,
            max_hops,
        })
    }

    /// The 8-byte encoding.
    pub fn to_bytes(&self) -> [u8; SUMMARY_LEN] {
        let min = self.min_cost.to_le_bytes();
        let avg = self.avg_cost.to_le_bytes();
        [
            self.kind.code(),
            self.count,
            min[0],
            min[1],
            avg[0],
            avg[1],
            self.min_hops,
            self.max_hops,
        ]
    }

    /// Parses exactly 8 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("capability summary", bytes);
        let s = Self::read(&mut r)?;
        r.finish()?;
        Ok(s)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u8()?;
        let kind = CapabilityKind::from_code(code).ok_or_else(|| r.unknown("kind", code))?;
        let s = Self {
            kind,
            count: r.u8()?,
            min_cost: r.u16()?,
            avg_cost: r.u16()?,
            min_hops: r.u8()?,
            max_hops: r.u8()?,
        };
        if s.count == 0 {
            return Err(r.invalid("count", "a summary counts at least one provider"));
        }
        if s.min_hops > s.max_hops {
            return Err(r.invalid("min_hops", "above max_hops"));
        }
        if (s.min_cost == COST_CODE_UNKNOWN) != (s.avg_cost == COST_CODE_UNKNOWN)
            || s.min_cost > s.avg_cost
        {
            return Err(r.invalid("min_cost", "above avg_cost, or only one of them unknown"));
        }
        Ok(s)
    }
}

/// Encodes a batch: u8 count, then the summaries. At most 36 summaries are written.
pub fn encode_summaries(summaries: &[CapabilitySummary]) -> Vec<u8> {
    let n = summaries.len().min(MAX_SUMMARIES_PER_BATCH);
    let mut w = Writer::new();
    w.count8(n);
    for s in summaries.iter().take(n) {
        w.raw(&s.to_bytes());
    }
    w.into_bytes()
}

/// Parses a batch written by [`encode_summaries`].
pub fn decode_summaries(bytes: &[u8]) -> Result<Vec<CapabilitySummary>, DecodeError> {
    let mut r = Reader::new("summary batch", bytes);
    let n = r.count8("summaries", MAX_SUMMARIES_PER_BATCH, SUMMARY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(CapabilitySummary::read(&mut r)?);
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aggregate_counts_prices_and_hops() {
        let s = CapabilitySummary::aggregate(
            CapabilityKind::Storage,
            [(Some(10), 2), (Some(30), 1), (None, 3)],
        )
        .unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.min_cost, encode_cost_code(10));
        assert_eq!(s.avg_cost, encode_cost_code(20));
        assert_eq!((s.min_hops, s.max_hops), (1, 3));
        let unknown = CapabilitySummary::aggregate(CapabilityKind::Dht, [(None, 1)]).unwrap();
        assert_eq!(unknown.min_cost, COST_CODE_UNKNOWN);
        assert!(CapabilitySummary::aggregate(CapabilityKind::Dht, []).is_none());
        let free = CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(0), 1)]).unwrap();
        assert_eq!(free.min_cost, 0);
    }

    #[test]
    fn summary_is_eight_bytes_and_round_trips() {
        let s = CapabilitySummary::aggregate(CapabilityKind::Function, [(Some(500), 2)]).unwrap();
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), 8);
        assert_eq!(bytes[0], 8);
        assert_eq!(CapabilitySummary::decode(&bytes).unwrap(), s);
        let batch = encode_summaries(&[s, s]);
        assert_eq!(batch.len(), 17);
        assert_eq!(decode_summaries(&batch).unwrap(), vec![s, s]);
    }

    #[test]
    fn inconsistent_summaries_are_rejected() {
        let mut b = CapabilitySummary::aggregate(CapabilityKind::Relay, [(Some(5), 2)])
            .unwrap()
            .to_bytes();
        b[6] = 9; // min_hops above max_hops
        assert!(CapabilitySummary::decode(&b).is_err());
        b[6] = 2;
        b[1] = 0;
        assert!(CapabilitySummary::decode(&b).is_err());
        b[1] = 1;
        b[0] = 9;
        assert!(matches!(
            CapabilitySummary::decode(&b),
            Err(DecodeError::UnknownCode { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = CapabilitySummary::decode(&bytes);
            let _ = decode_summaries(&bytes);
        }

        #[test]
        fn aggregate_round_trips(prices in proptest::collection::vec((proptest::option::of(any::<u64>()), any::<u8>()), 1..50)) {
            let s = CapabilitySummary::aggregate(CapabilityKind::Wasm, prices).unwrap();
            prop_assert_eq!(CapabilitySummary::decode(&s.to_bytes()).unwrap(), s);
        }
    }
}
