//! Pull requests and answers: how a query widens past what gossip brought.
//!
//! ```text
//! PullRequest:  nonce u64, kind u8, function (presence u8 [+ 32]), min_storage_bytes u64,
//!               min_bandwidth_bps u64, max_price (presence u8 [+ u64]), max_hops u8,
//!               forward bool, limit u8 (1–8)
//! PullAnswer:   nonce u64, count u8 (≤ 8), then per entry: public_key [64], hops u8,
//!               path_cost u64, age_seconds u32, advert (u16 length + bytes, ≤ 2048)
//! ```
//!
//! An answer entry carries the provider's 64-byte identity key, so a requester that never
//! heard the provider's announce can still verify the advert (the key must hash to the
//! advert's node id and verify its signature). `hops`, `path_cost` and `age_seconds` are the
//! answering node's unsigned claims; each node relaying an answer back adds its hop and link
//! cost ([`PullAnswer::via_hop`]). The age lets the requester expire a relayed advert when the
//! origin meant it to (decision 8: lifetimes are relative to receipt, so a relay that held an
//! advert for 10 minutes must say so).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::capabilities::{CapabilityAdvert, CapabilityKind, FunctionId};
use crate::identity::PUBLIC_KEY_LEN;
use crate::params::{MAX_ADVERT_LEN, MAX_PULL_ANSWER_ADVERTS, PULL_DEDUP_CAPACITY, PULL_DEDUP_MS};
use crate::wire::{DecodeError, Reader, ReaderExt, Writer, check_size};

use super::Filter;

const REQUEST: &str = "pull request";
const ANSWER: &str = "pull answer";
/// Encoded length of a pull request without the optional fields.
const REQUEST_MIN_LEN: usize = 8 + 1 + 1 + 8 + 8 + 1 + 1 + 1 + 1;
/// Largest pull answer: 8 entries of the largest advert.
pub const MAX_PULL_ANSWER_LEN: usize =
    8 + 1 + MAX_PULL_ANSWER_ADVERTS * (PUBLIC_KEY_LEN + 1 + 8 + 4 + 2 + MAX_ADVERT_LEN);

/// A request for adverts matching a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Random id, echoed in the answer and used to suppress flood duplicates.
    pub nonce: u64,
    /// What is wanted.
    pub filter: Filter,
    /// Largest distance from the requester an answered provider may have.
    pub max_hops: u8,
    /// Whether the receiver forwards the request to its own neighbours (ring-3 flood).
    pub forward: bool,
    /// Most adverts wanted in the answer, 1–8.
    pub limit: u8,
}

impl PullRequest {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.nonce);
        w.u8(self.filter.kind.code());
        match self.filter.function {
            None => w.u8(0),
            Some(id) => {
                w.u8(1);
                w.raw(&id.0);
            }
        }
        w.u64(self.filter.min_storage_bytes);
        w.u64(self.filter.min_bandwidth_bps);
        match self.filter.max_price {
            None => w.u8(0),
            Some(p) => {
                w.u8(1);
                w.u64(p);
            }
        }
        w.u8(self.max_hops);
        w.bool(self.forward);
        w.u8(self.limit);
        w.into_bytes()
    }

    /// Parses an encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(REQUEST, bytes, REQUEST_MIN_LEN + 32 + 8)?;
        let mut r = Reader::new(REQUEST, bytes);
        let nonce = r.u64()?;
        let code = r.u8()?;
        let kind = CapabilityKind::from_code(code).ok_or_else(|| r.unknown("kind", code))?;
        let function = if r.present("function")? {
            Some(FunctionId(r.array()?))
        } else {
            None
        };
        let min_storage_bytes = r.u64()?;
        let min_bandwidth_bps = r.u64()?;
        let max_price = if r.present("max_price")? {
            Some(r.u64()?)
        } else {
            None
        };
        let max_hops = r.u8()?;
        let forward = r.bool("forward")?;
        let limit = r.u8()?;
        if limit == 0 || usize::from(limit) > MAX_PULL_ANSWER_ADVERTS {
            return Err(r.invalid("limit", "must be 1 to 8"));
        }
        if max_hops == 0 {
            return Err(r.invalid("max_hops", "must be at least 1"));
        }
        r.finish()?;
        Ok(Self {
            nonce,
            filter: Filter {
                kind,
                function,
                min_storage_bytes,
                min_bandwidth_bps,
                max_price,
            },
            max_hops,
            forward,
            limit,
        })
    }

    /// The request to pass on to the receiver's neighbours, one hop further out: `None`
    /// unless it is a flood with hops left beyond the receiver's neighbours.
    pub fn forwarded(&self) -> Option<PullRequest> {
        (self.forward && self.max_hops > 2).then(|| PullRequest {
            max_hops: self.max_hops - 1,
            ..*self
        })
    }
}

/// One advert in a pull answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullEntry {
    /// The provider's 64-byte identity key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Hops from the node that sends this answer to the provider (0: itself).
    pub hops: u8,
    /// Path cost from the sending node to the provider, μ per byte.
    pub path_cost: u64,
    /// Seconds the sending node has held the advert (added to the age it arrived with).
    pub age_seconds: u32,
    /// The signed advert.
    pub advert: CapabilityAdvert,
}

/// The answer to a [`PullRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullAnswer {
    /// The request's nonce.
    pub nonce: u64,
    /// Matching adverts, best first, at most 8.
    pub entries: Vec<PullEntry>,
}

impl PullAnswer {
    /// The answer as the next node towards the requester passes it on: one more hop and the
    /// cost of the link it came over (μ per byte) on every entry.
    pub fn via_hop(&self, link_cost: u64) -> PullAnswer {
        PullAnswer {
            nonce: self.nonce,
            entries: self
                .entries
                .iter()
                .map(|e| PullEntry {
                    hops: e.hops.saturating_add(1),
                    path_cost: e.path_cost.saturating_add(link_cost),
                    ..e.clone()
                })
                .collect(),
        }
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        9 + self
            .entries
            .iter()
            .map(|e| PUBLIC_KEY_LEN + 1 + 8 + 4 + 2 + e.advert.as_bytes().len())
            .sum::<usize>()
    }

    /// The encoding (at most 8 entries are written).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.nonce);
        let n = self.entries.len().min(MAX_PULL_ANSWER_ADVERTS);
        w.count8(n);
        for e in self.entries.iter().take(n) {
            w.raw(&e.public_key);
            w.u8(e.hops);
            w.u64(e.path_cost);
            w.u32(e.age_seconds);
            w.bytes16(e.advert.as_bytes());
        }
        w.into_bytes()
    }

    /// Parses an encoding (adverts are parsed, not yet verified: the table verifies them on
    /// insertion).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(ANSWER, bytes, MAX_PULL_ANSWER_LEN)?;
        let mut r = Reader::new(ANSWER, bytes);
        let nonce = r.u64()?;
        // An entry is at least its fixed fields and an advert's length.
        let n = r.count8(
            "entries",
            MAX_PULL_ANSWER_ADVERTS,
            PUBLIC_KEY_LEN + 1 + 8 + 4 + 2,
        )?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let public_key = r.array()?;
            let hops = r.u8()?;
            let path_cost = r.u64()?;
            let age_seconds = r.u32()?;
            let advert = CapabilityAdvert::decode(r.bytes16("advert", MAX_ADVERT_LEN)?)?;
            entries.push(PullEntry {
                public_key,
                hops,
                path_cost,
                age_seconds,
                advert,
            });
        }
        r.finish()?;
        Ok(Self { nonce, entries })
    }
}

/// Remembers recent pull nonces so a flooded request is answered and forwarded once.
#[derive(Clone, Debug, Default)]
pub struct PullDedup {
    seen: BTreeMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
}

impl PullDedup {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` the first time `nonce` is seen within [`PULL_DEDUP_MS`]; remembers it.
    pub fn first_sight(&mut self, nonce: u64, now_ms: u64) -> bool {
        while let Some(&(seen_at, old)) = self.order.front() {
            let too_many = self.order.len() >= PULL_DEDUP_CAPACITY;
            if now_ms.saturating_sub(seen_at) < PULL_DEDUP_MS && !too_many {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&seen_at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&nonce) {
            return false;
        }
        self.seen.insert(nonce, now_ms);
        self.order.push_back((now_ms, nonce));
        true
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tests::full;
    use crate::identity::test_keys::node_key;
    use proptest::prelude::*;

    fn request() -> PullRequest {
        PullRequest {
            nonce: 42,
            filter: Filter::function("whisper-small", Some(600)),
            max_hops: 8,
            forward: true,
            limit: 4,
        }
    }

    #[test]
    fn request_round_trips_and_forwards_one_hop_less() {
        let req = request();
        let bytes = req.encode();
        assert_eq!(bytes.len(), REQUEST_MIN_LEN + 32 + 8);
        assert_eq!(PullRequest::decode(&bytes).unwrap(), req);
        let plain = PullRequest {
            filter: Filter::kind(CapabilityKind::Relay),
            forward: false,
            max_hops: 3,
            ..req
        };
        assert_eq!(plain.encode().len(), REQUEST_MIN_LEN);
        assert_eq!(PullRequest::decode(&plain.encode()).unwrap(), plain);
        assert_eq!(req.forwarded().unwrap().max_hops, 7);
        assert!(plain.forwarded().is_none());
        let last = PullRequest { max_hops: 2, ..req };
        assert!(last.forwarded().is_none());
        let mut bad = req.encode();
        let len = bad.len();
        bad[len - 1] = 9;
        assert!(PullRequest::decode(&bad).is_err());
    }

    #[test]
    fn answer_round_trips_and_accumulates_hops() {
        let key = node_key(5);
        let advert = full().sign(&key, 1, 600).unwrap();
        let answer = PullAnswer {
            nonce: 42,
            entries: vec![PullEntry {
                public_key: key.public_key(),
                hops: 0,
                path_cost: 0,
                age_seconds: 12,
                advert,
            }],
        };
        let bytes = answer.encode();
        assert_eq!(bytes.len(), answer.encoded_len());
        assert_eq!(PullAnswer::decode(&bytes).unwrap(), answer);
        let relayed = answer.via_hop(3).via_hop(4);
        assert_eq!(relayed.entries[0].hops, 2);
        assert_eq!(relayed.entries[0].path_cost, 7);
    }

    #[test]
    fn dedup_answers_once_and_forgets_after_the_window() {
        let mut d = PullDedup::new();
        assert!(d.first_sight(1, 0));
        assert!(!d.first_sight(1, 1_000));
        assert!(d.first_sight(2, 1_000));
        assert!(d.first_sight(1, PULL_DEDUP_MS + 1));
        assert_eq!(d.len(), 2);
        for n in 0..(PULL_DEDUP_CAPACITY as u64 + 10) {
            d.first_sight(1_000 + n, PULL_DEDUP_MS + 2);
        }
        assert!(d.len() <= PULL_DEDUP_CAPACITY);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = PullRequest::decode(&bytes);
            let _ = PullAnswer::decode(&bytes);
        }
    }
}
