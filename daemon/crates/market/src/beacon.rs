//! `PresenceBeacon` (§5, §8 item 25): 20 bytes broadcast to whoever is in radio range, every
//! 10 s (20 s above 50% channel use, 30 s above 75%), never relayed.
//!
//! ```text
//! off 0   beacon_id  [16]  rotating id (below), not the node id
//! off 16  caps       u16   b0 relay, b1 gateway, b2 storage, b3 MHR-Byte, b4 WASM, b5 pubsub,
//!                          b6 dht, b7 naming; b8–15 must be 0
//! off 18  cost_tier  u8    0–3
//! off 19  load       u8    0 idle … 255 saturated
//! ```
//!
//! The spec's beacon carries the static node id, which lets anyone track a device. Here the
//! first 16 bytes are `keyed_Blake3(beacon_key, "mehr/beacon-id/v1" ‖ counter u64)[..16]`:
//! the node draws a random 32-byte beacon key and bumps the counter every
//! [`BEACON_ROTATION_MS`]. Strangers see unlinkable ids; peers the node gave its key to
//! (over an encrypted link) can recognise it with [`recognize_beacon`]. Beacons stay unsigned
//! (20 bytes cannot hold a signature): they are hints for whom to link with, and everything
//! that matters is then verified over the link.

use crate::params::{
    BEACON_INTERVAL_BUSY_MS, BEACON_INTERVAL_MS, BEACON_INTERVAL_SATURATED_MS, BEACON_ROTATION_MS,
};
use crate::wire::{DecodeError, Reader};

/// Encoded length.
pub const BEACON_LEN: usize = 20;
/// Highest cost tier.
pub const MAX_COST_TIER: u8 = 3;

const BEACON_ID_DOMAIN: &[u8] = b"mehr/beacon-id/v1";

/// A presence beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PresenceBeacon {
    /// The current rotating beacon id.
    pub beacon_id: [u8; 16],
    /// Capability bits (b0–b7).
    pub caps: u16,
    /// Cost tier, 0 (free) to 3.
    pub cost_tier: u8,
    /// Load, 0 idle to 255 saturated.
    pub load: u8,
}

impl PresenceBeacon {
    /// The 20-byte encoding.
    pub fn to_bytes(&self) -> [u8; BEACON_LEN] {
        let mut out = [0u8; BEACON_LEN];
        out[..16].copy_from_slice(&self.beacon_id);
        out[16..18].copy_from_slice(&self.caps.to_le_bytes());
        out[18] = self.cost_tier;
        out[19] = self.load;
        out
    }

    /// Parses exactly 20 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("presence beacon", bytes);
        let beacon = Self {
            beacon_id: r.array()?,
            caps: r.u16()?,
            cost_tier: r.u8()?,
            load: r.u8()?,
        };
        r.finish()?;
        if beacon.caps & 0xFF00 != 0 {
            return Err(DecodeError::Invalid {
                what: "presence beacon",
                field: "caps",
                reason: "bits 8-15 must be 0",
            });
        }
        if beacon.cost_tier > MAX_COST_TIER {
            return Err(DecodeError::Invalid {
                what: "presence beacon",
                field: "cost_tier",
                reason: "must be 0 to 3",
            });
        }
        Ok(beacon)
    }

    /// Handoff preference (§5 "pick minimum cost×load"): `(cost_tier + 1)·(load + 1)`, so a
    /// free but saturated node does not beat a cheap idle one. Lower is better.
    pub fn handoff_score(&self) -> u32 {
        (u32::from(self.cost_tier) + 1) * (u32::from(self.load) + 1)
    }
}

/// The beacon to hand off to among those offering every bit of `required_caps`: the lowest
/// [`PresenceBeacon::handoff_score`], ties broken by the lower beacon id.
pub fn best_handoff(beacons: &[PresenceBeacon], required_caps: u16) -> Option<&PresenceBeacon> {
    beacons
        .iter()
        .filter(|b| b.caps & required_caps == required_caps)
        .min_by_key(|b| (b.handoff_score(), b.beacon_id))
}

/// Beacon interval for a channel utilisation in percent.
pub fn beacon_interval_ms(channel_use_percent: u8) -> u64 {
    if channel_use_percent > 75 {
        BEACON_INTERVAL_SATURATED_MS
    } else if channel_use_percent > 50 {
        BEACON_INTERVAL_BUSY_MS
    } else {
        BEACON_INTERVAL_MS
    }
}

/// The beacon id of `key` at rotation `counter`.
pub fn beacon_id(key: &[u8; 32], counter: u64) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(BEACON_ID_DOMAIN);
    hasher.update(&counter.to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    id
}

/// Finds the rotation counter in `from..=from + window` whose id is `id`, for a peer that
/// holds `key` and last recognised the node at counter `from`.
pub fn recognize_beacon(key: &[u8; 32], id: &[u8; 16], from: u64, window: u64) -> Option<u64> {
    (from..=from.saturating_add(window)).find(|c| beacon_id(key, *c) == *id)
}

/// This node's rotating beacon identity.
#[derive(Clone, Debug)]
pub struct BeaconRotation {
    key: [u8; 32],
    counter: u64,
    rotated_at_ms: u64,
}

impl BeaconRotation {
    /// Starts with a random `key` (from the caller's CSPRNG) at counter 0.
    pub fn new(key: [u8; 32], now_ms: u64) -> Self {
        Self {
            key,
            counter: 0,
            rotated_at_ms: now_ms,
        }
    }

    /// The key, to share with trusted peers so they can recognise the node.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The current rotation counter.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The beacon to send now, rotating the id first if its period has passed.
    pub fn beacon(&mut self, now_ms: u64, caps: u16, cost_tier: u8, load: u8) -> PresenceBeacon {
        let elapsed = now_ms.saturating_sub(self.rotated_at_ms);
        if elapsed >= BEACON_ROTATION_MS {
            self.counter = self.counter.saturating_add(elapsed / BEACON_ROTATION_MS);
            self.rotated_at_ms = now_ms - elapsed % BEACON_ROTATION_MS;
        }
        PresenceBeacon {
            beacon_id: beacon_id(&self.key, self.counter),
            caps: caps & 0x00FF,
            cost_tier: cost_tier.min(MAX_COST_TIER),
            load,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn beacon_round_trips_in_twenty_bytes() {
        let b = PresenceBeacon {
            beacon_id: [7; 16],
            caps: 0b1010_0101,
            cost_tier: 2,
            load: 200,
        };
        let bytes = b.to_bytes();
        assert_eq!(bytes.len(), 20);
        assert_eq!(PresenceBeacon::decode(&bytes).unwrap(), b);
        let mut bad = bytes;
        bad[17] = 1;
        assert!(PresenceBeacon::decode(&bad).is_err());
        let mut bad = bytes;
        bad[18] = 4;
        assert!(PresenceBeacon::decode(&bad).is_err());
        assert!(PresenceBeacon::decode(&bytes[..19]).is_err());
    }

    #[test]
    fn ids_rotate_and_are_recognised_only_with_the_key() {
        let mut rot = BeaconRotation::new([9; 32], 1_000);
        let first = rot.beacon(1_000, 1, 0, 0).beacon_id;
        assert_eq!(
            rot.beacon(1_000 + BEACON_ROTATION_MS - 1, 1, 0, 0)
                .beacon_id,
            first
        );
        let second = rot.beacon(1_000 + BEACON_ROTATION_MS, 1, 0, 0).beacon_id;
        assert_ne!(first, second);
        assert_eq!(rot.counter(), 1);
        // Long silence jumps several periods at once.
        let later = rot
            .beacon(1_000 + 5 * BEACON_ROTATION_MS + 7, 1, 0, 0)
            .beacon_id;
        assert_eq!(rot.counter(), 5);
        assert_eq!(recognize_beacon(&[9; 32], &later, 1, 10), Some(5));
        assert_eq!(recognize_beacon(&[8; 32], &later, 0, 10), None);
        assert_eq!(recognize_beacon(&[9; 32], &later, 0, 3), None);
    }

    #[test]
    fn handoff_prefers_low_cost_times_load_and_required_caps() {
        let mk = |id: u8, caps: u16, tier: u8, load: u8| PresenceBeacon {
            beacon_id: [id; 16],
            caps,
            cost_tier: tier,
            load,
        };
        let beacons = [mk(1, 0b11, 0, 255), mk(2, 0b11, 1, 10), mk(3, 0b01, 0, 0)];
        assert_eq!(best_handoff(&beacons, 0b10).unwrap().beacon_id, [2; 16]);
        assert_eq!(best_handoff(&beacons, 0b01).unwrap().beacon_id, [3; 16]);
        assert!(best_handoff(&beacons, 0b100).is_none());
        assert_eq!(beacon_interval_ms(10), 10_000);
        assert_eq!(beacon_interval_ms(60), 20_000);
        assert_eq!(beacon_interval_ms(90), 30_000);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = PresenceBeacon::decode(&bytes);
        }
    }
}
