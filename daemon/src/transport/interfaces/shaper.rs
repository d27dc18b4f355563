//! The medium of a simulated link, as pure arithmetic over time offsets: airtime from the
//! bitrate, one frame on the air at a time per sender, and — in half duplex — carrier sense
//! before sending and collisions when both ends transmit at once.
//!
//! Frames travel between the two ends at the *start* of their airtime, so the receiving end
//! can mark the medium busy for exactly as long as a real radio would hear the carrier; it
//! hands the frame on after the airtime plus the configured latency.

use std::{collections::VecDeque, time::Duration};

/// How many of its own recent transmissions an end remembers for collision checks.
const TX_HISTORY: usize = 64;

/// One end's view of the medium. Times are offsets from a common start.
#[derive(Debug)]
pub(super) struct Medium {
    bitrate: u64,
    half_duplex: bool,
    latency: Duration,
    tx_free_at: Duration,
    rx_busy_until: Duration,
    tx_windows: VecDeque<(Duration, Duration)>,
}

/// What happens to a frame heard on the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reception {
    /// Hand it on at this time.
    DeliverAt(Duration),
    /// It overlapped one of our own transmissions (half duplex) and is lost.
    Collided,
}

impl Medium {
    /// A medium of `bitrate` bits per second.
    pub(super) fn new(bitrate: u64, half_duplex: bool, latency: Duration) -> Self {
        Medium {
            bitrate: bitrate.max(1),
            half_duplex,
            latency,
            tx_free_at: Duration::ZERO,
            rx_busy_until: Duration::ZERO,
            tx_windows: VecDeque::new(),
        }
    }

    /// Time a frame of `len` bytes occupies the medium.
    pub(super) fn airtime(&self, len: usize) -> Duration {
        Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / self.bitrate)
    }

    /// The window a half-duplex sender draws its random backoff from: the airtime of a short
    /// frame (64 bytes), so that backoffs separate senders by more than a loopback delivery.
    pub(super) fn backoff_slot(&self) -> Duration {
        self.airtime(64).max(Duration::from_millis(1))
    }

    /// Earliest time at or after `now` that this end may start sending: after its previous
    /// frame and, in half duplex, after every frame it is hearing.
    pub(super) fn may_send_at(&self, now: Duration) -> Duration {
        let mut at = now.max(self.tx_free_at);
        if self.half_duplex {
            at = at.max(self.rx_busy_until);
        }
        at
    }

    /// Records that a frame of `len` bytes starts now; returns when its airtime ends.
    pub(super) fn start_sending(&mut self, now: Duration, len: usize) -> Duration {
        let end = now + self.airtime(len);
        self.tx_free_at = end;
        if self.tx_windows.len() == TX_HISTORY {
            self.tx_windows.pop_front();
        }
        self.tx_windows.push_back((now, end));
        end
    }

    /// A frame of `len` bytes began arriving at `now`.
    pub(super) fn hear(&mut self, now: Duration, len: usize) -> Reception {
        let end = now + self.airtime(len);
        self.rx_busy_until = self.rx_busy_until.max(end);
        let overlaps = self
            .tx_windows
            .iter()
            .any(|(start, stop)| *start < end && now < *stop);
        if self.half_duplex && overlaps {
            Reception::Collided
        } else {
            Reception::DeliverAt(end + self.latency)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn airtime_follows_the_bitrate() {
        let medium = Medium::new(1200, true, Duration::ZERO);
        assert_eq!(medium.airtime(150), Duration::from_secs(1));
    }

    #[test]
    fn frames_queue_behind_each_other_and_arrive_after_latency() {
        let mut medium = Medium::new(8000, false, 50 * MS);
        let end = medium.start_sending(Duration::ZERO, 100);
        assert_eq!(end, 100 * MS);
        assert_eq!(medium.may_send_at(10 * MS), 100 * MS);
        assert_eq!(
            medium.hear(Duration::ZERO, 100),
            Reception::DeliverAt(150 * MS),
            "full duplex: no collision"
        );
    }

    #[test]
    fn half_duplex_senses_the_carrier_and_detects_collisions() {
        let mut medium = Medium::new(8000, true, Duration::ZERO);
        assert_eq!(
            medium.hear(Duration::ZERO, 100),
            Reception::DeliverAt(100 * MS)
        );
        assert_eq!(
            medium.may_send_at(20 * MS),
            100 * MS,
            "waits for the frame it hears"
        );
        medium.start_sending(200 * MS, 100);
        assert_eq!(medium.hear(250 * MS, 10), Reception::Collided);
        assert_eq!(medium.hear(300 * MS, 10), Reception::DeliverAt(310 * MS));
    }
}
