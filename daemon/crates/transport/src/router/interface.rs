//! What the router knows about each interface, and the per-interface announce budget.
//!
//! Rebroadcast announces may use at most `announce_cap` (Reticulum: 2%) of an interface's
//! bitrate: after sending an announce of `n` bytes the next may go out `8n / bitrate /
//! announce_cap` seconds later. Announces that arrive earlier wait in a queue (one entry per
//! destination, newer emissions replace older ones), released lowest hop count first. The
//! node's own announces (hop count zero) are never held back.

use std::time::Duration;

use super::rate::TokenBucket;
use crate::clock::Timestamp;
use crate::hashes::DestinationHash;

/// Caller-chosen handle of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceId(pub u32);

/// How announces and path requests treat an interface (Reticulum's interface modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InterfaceMode {
    /// Full participation.
    #[default]
    Full,
    /// A link to exactly one peer.
    PointToPoint,
    /// Serves clients that come and go: no announces are broadcast onto it, paths learned on
    /// it expire after a day, and path requests from it are searched for.
    AccessPoint,
    /// The node itself moves: paths learned on it expire after six hours.
    Roaming,
    /// Connects to a different network segment: announces from roaming interfaces are not
    /// passed onto it.
    Boundary,
    /// Gives access to a wider network: path requests from it are searched for.
    Gateway,
}

impl InterfaceMode {
    /// Whether unknown destinations requested from this interface are searched for on the
    /// others.
    pub(crate) fn discovers_paths(self) -> bool {
        matches!(
            self,
            Self::AccessPoint | Self::Gateway | Self::Roaming | Self::Boundary
        )
    }
}

/// Properties of an interface.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceConfig {
    /// Bits per second; 0 means unknown and disables the announce cap.
    pub bitrate_bps: u64,
    /// Interface mode.
    pub mode: InterfaceMode,
    /// Hardware MTU if the interface takes part in link MTU discovery (Reticulum's
    /// autoconfigured or fixed MTU); `None` keeps links on it at the 500-byte default and
    /// bounds its frames to 500 bytes.
    pub hw_mtu: Option<u32>,
    /// Share of the bitrate rebroadcast announces may use (Reticulum: 0.02).
    pub announce_cap: f64,
    /// One peer at the other end (a TCP connection, a simulated wire), as opposed to a shared
    /// medium (UDP broadcast, a radio). An announce is not rebroadcast back onto the
    /// point-to-point interface it arrived on: the peer sent it, and if that peer restarted
    /// meanwhile the echo would hand it a path through this node back to itself — a loop
    /// until the destination announces again.
    pub point_to_point: bool,
}

impl InterfaceConfig {
    /// A full-mode interface with Reticulum's 2% announce cap and no MTU discovery.
    pub fn new(bitrate_bps: u64) -> Self {
        Self {
            bitrate_bps,
            mode: InterfaceMode::Full,
            hw_mtu: None,
            announce_cap: 0.02,
            point_to_point: false,
        }
    }

    /// Largest frame accepted from this interface.
    pub(crate) fn max_frame(&self) -> usize {
        self.hw_mtu
            .map_or(crate::packet::MTU, |m| {
                usize::try_from(m).unwrap_or(usize::MAX)
            })
            .max(crate::packet::MTU)
    }

    /// Time the announce budget needs to recover after sending `len` bytes.
    fn announce_wait(&self, len: usize) -> Duration {
        if self.bitrate_bps == 0 || self.announce_cap <= 0.0 {
            return Duration::ZERO;
        }
        let secs = (len as f64 * 8.0) / self.bitrate_bps as f64 / self.announce_cap;
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

#[derive(Debug)]
struct QueuedAnnounce {
    destination: DestinationHash,
    queued_at: Timestamp,
    hops: u8,
    emitted: u64,
    frame: Vec<u8>,
}

/// Whether an announce went out at once, was queued, or did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnnounceAdmission {
    SendNow,
    Queued,
    QueueFull,
}

/// Per-interface router state.
#[derive(Debug)]
pub(crate) struct InterfaceState {
    pub(crate) config: InterfaceConfig,
    announce_allowed_at: Timestamp,
    queue: Vec<QueuedAnnounce>,
    queue_cap: usize,
    /// Inbound announces of destinations this interface already holds the path of.
    refresh_announces: TokenBucket,
    /// Inbound announces of anything else (new destinations, paths through other
    /// interfaces): where a Sybil flood lands, kept apart so it cannot starve refreshes.
    new_announces: TokenBucket,
}

/// How many inbound announces one interface may make the router verify.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct InboundAnnounceLimit {
    pub(crate) per_second: f64,
    pub(crate) burst: u32,
}

impl InterfaceState {
    pub(crate) fn new(
        config: InterfaceConfig,
        queue_cap: usize,
        inbound: InboundAnnounceLimit,
    ) -> Self {
        Self {
            config,
            announce_allowed_at: Timestamp::ZERO,
            queue: Vec::new(),
            queue_cap,
            refresh_announces: TokenBucket::new(inbound.per_second, inbound.burst),
            new_announces: TokenBucket::new(inbound.per_second, inbound.burst),
        }
    }

    /// Whether an inbound announce may be verified now: each class (a refresh of a path held
    /// through this interface, or anything else) has its own bucket, so a flood of new
    /// destinations never delays the refreshes of the paths the interface already carries.
    pub(crate) fn admit_inbound_announce(&mut self, refresh: bool, now: Timestamp) -> bool {
        if refresh {
            self.refresh_announces.take(now)
        } else {
            self.new_announces.take(now)
        }
    }

    /// Decides what happens to a rebroadcast announce of `frame.len()` bytes.
    pub(crate) fn admit_announce(
        &mut self,
        destination: DestinationHash,
        hops: u8,
        emitted: u64,
        frame: &[u8],
        now: Timestamp,
    ) -> AnnounceAdmission {
        if self.queue.is_empty() && now >= self.announce_allowed_at {
            self.announce_allowed_at = now.saturating_add(self.config.announce_wait(frame.len()));
            return AnnounceAdmission::SendNow;
        }
        if let Some(existing) = self.queue.iter_mut().find(|q| q.destination == destination) {
            if emitted > existing.emitted {
                *existing = QueuedAnnounce {
                    destination,
                    queued_at: now,
                    hops,
                    emitted,
                    frame: frame.to_vec(),
                };
            }
            return AnnounceAdmission::Queued;
        }
        if self.queue.len() >= self.queue_cap {
            return AnnounceAdmission::QueueFull;
        }
        self.queue.push(QueuedAnnounce {
            destination,
            queued_at: now,
            hops,
            emitted,
            frame: frame.to_vec(),
        });
        AnnounceAdmission::Queued
    }

    /// The next queued announce to send, if the budget allows one now. Entries older than
    /// `max_age` are discarded.
    pub(crate) fn release_announce(
        &mut self,
        now: Timestamp,
        max_age: Duration,
    ) -> Option<Vec<u8>> {
        self.queue
            .retain(|q| now < q.queued_at.saturating_add(max_age));
        if self.queue.is_empty() || now < self.announce_allowed_at {
            return None;
        }
        let index = self
            .queue
            .iter()
            .enumerate()
            .min_by_key(|(_, q)| (q.hops, q.queued_at))
            .map(|(i, _)| i)?;
        let entry = self.queue.swap_remove(index);
        self.announce_allowed_at = now.saturating_add(self.config.announce_wait(entry.frame.len()));
        Some(entry.frame)
    }

    pub(crate) fn queued_announces(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: InboundAnnounceLimit = InboundAnnounceLimit {
        per_second: 0.0,
        burst: 1,
    };

    #[test]
    fn cap_spaces_announces_and_queue_releases_lowest_hops_first() {
        // 1200 bps at 2%: 300 bytes need 2400 bits / 1200 / 0.02 = 100 s.
        let mut iface = InterfaceState::new(InterfaceConfig::new(1200), 8, UNLIMITED);
        let t0 = Timestamp::from_secs(10);
        let frame = vec![0u8; 300];
        assert_eq!(
            iface.admit_announce(DestinationHash([1; 16]), 3, 1, &frame, t0),
            AnnounceAdmission::SendNow
        );
        assert_eq!(
            iface.admit_announce(DestinationHash([2; 16]), 5, 1, &[2; 10], t0),
            AnnounceAdmission::Queued
        );
        assert_eq!(
            iface.admit_announce(DestinationHash([3; 16]), 2, 1, &[3; 10], t0),
            AnnounceAdmission::Queued
        );
        // A newer emission replaces the queued one for the same destination.
        assert_eq!(
            iface.admit_announce(DestinationHash([2; 16]), 5, 2, &[4; 10], t0),
            AnnounceAdmission::Queued
        );
        assert_eq!(iface.queued_announces(), 2);
        let max_age = Duration::from_secs(3 * 3600);
        assert_eq!(
            iface.release_announce(Timestamp::from_secs(109), max_age),
            None
        );
        assert_eq!(
            iface.release_announce(Timestamp::from_secs(110), max_age),
            Some(vec![3; 10])
        );
        // 10 bytes: 80 bits / 1200 / 0.02 = 3.33 s.
        assert_eq!(
            iface.release_announce(Timestamp::from_secs(113), max_age),
            None
        );
        assert_eq!(
            iface.release_announce(Timestamp::from_secs(114), max_age),
            Some(vec![4; 10])
        );
    }

    #[test]
    fn queue_is_bounded_and_entries_expire() {
        let mut iface = InterfaceState::new(InterfaceConfig::new(1200), 1, UNLIMITED);
        let t0 = Timestamp::ZERO;
        iface.admit_announce(DestinationHash([1; 16]), 1, 1, &[0; 300], t0);
        assert_eq!(
            iface.admit_announce(DestinationHash([2; 16]), 1, 1, &[0; 10], t0),
            AnnounceAdmission::Queued
        );
        assert_eq!(
            iface.admit_announce(DestinationHash([3; 16]), 1, 1, &[0; 10], t0),
            AnnounceAdmission::QueueFull
        );
        assert_eq!(
            iface.release_announce(Timestamp::from_secs(200), Duration::from_secs(100)),
            None
        );
        assert_eq!(iface.queued_announces(), 0);
    }

    #[test]
    fn unknown_bitrate_disables_the_cap() {
        let mut iface = InterfaceState::new(InterfaceConfig::new(0), 4, UNLIMITED);
        for i in 0..5 {
            assert_eq!(
                iface.admit_announce(DestinationHash([i; 16]), 1, 1, &[0; 400], Timestamp::ZERO),
                AnnounceAdmission::SendNow
            );
        }
    }
}
