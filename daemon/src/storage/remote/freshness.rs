//! Freshness of storage requests: a signed request can be replayed only inside the transport's
//! dedup window unless the provider remembers it, so each request id carries its sender's
//! clock and the provider refuses ids outside a time window and ids it has already seen
//! inside it (docs/PROTOCOL.md §3.6 and "Limits").
//!
//! A request id is `unix_ms << 20 | n`: the millisecond the request was made and a counter
//! that keeps ids of one node strictly increasing. The id is covered by the envelope's
//! signature, so a replayed delete is either too old or already seen.

use std::collections::{BTreeSet, HashMap};

use mehr_transport::hashes::IdentityHash;

/// Bits of a request id below its timestamp.
pub(super) const COUNTER_BITS: u32 = 20;
/// How far a request's timestamp may lie from the provider's clock, either way.
pub(super) const WINDOW_MS: u64 = 5 * 60 * 1000;
/// Request ids remembered per sender inside the window (more are refused).
pub(super) const MAX_SEEN_PER_SENDER: usize = 16_384;
/// Senders remembered at once (the oldest-used are forgotten first when none is idle).
pub(super) const MAX_SENDERS: usize = 4_096;

/// The next request id after `previous` at `now_ms`: the clock's, or one above the previous.
pub(super) fn next_request_id(previous: u64, now_ms: u64) -> u64 {
    (now_ms << COUNTER_BITS).max(previous.saturating_add(1))
}

/// Why a request was not fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stale {
    /// Its timestamp lies outside the window.
    OutsideWindow,
    /// It was seen already.
    Replayed,
    /// The sender has more requests inside the window than are remembered.
    TooMany,
}

impl Stale {
    /// The drop reason's stable name.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Stale::OutsideWindow => "storage.request_stale",
            Stale::Replayed => "storage.request_replayed",
            Stale::TooMany => "storage.request_window_full",
        }
    }
}

/// Request ids seen inside the window, per sender.
#[derive(Default)]
pub(super) struct SeenRequests {
    by_sender: HashMap<IdentityHash, BTreeSet<u64>>,
}

impl SeenRequests {
    /// Admits request `id` of `sender` at `now_ms`, remembering it, or says why not.
    pub(super) fn admit(
        &mut self,
        sender: IdentityHash,
        id: u64,
        now_ms: u64,
    ) -> Result<(), Stale> {
        let at_ms = id >> COUNTER_BITS;
        if at_ms.abs_diff(now_ms) > WINDOW_MS {
            return Err(Stale::OutsideWindow);
        }
        let oldest = now_ms.saturating_sub(WINDOW_MS) << COUNTER_BITS;
        if !self.by_sender.contains_key(&sender) && self.by_sender.len() >= MAX_SENDERS {
            self.by_sender.retain(|_, seen| {
                seen.retain(|id| *id >= oldest);
                !seen.is_empty()
            });
            if self.by_sender.len() >= MAX_SENDERS {
                return Err(Stale::TooMany);
            }
        }
        let seen = self.by_sender.entry(sender).or_default();
        // Ids older than the window are refused by their timestamp; forget them.
        while seen.first().is_some_and(|first| *first < oldest) {
            seen.pop_first();
        }
        if seen.contains(&id) {
            return Err(Stale::Replayed);
        }
        if seen.len() >= MAX_SEEN_PER_SENDER {
            return Err(Stale::TooMany);
        }
        seen.insert(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_request_is_refused_inside_the_window_and_by_its_age_after() {
        let mut seen = SeenRequests::default();
        let consumer = IdentityHash([1; 16]);
        let now = 1_700_000_000_000;
        let id = next_request_id(0, now);
        assert!(next_request_id(id, now) > id, "ids of one node increase");
        assert_eq!(seen.admit(consumer, id, now), Ok(()));
        assert_eq!(seen.admit(consumer, id, now + 1_000), Err(Stale::Replayed));
        // Another sender's id of the same value is its own.
        assert_eq!(seen.admit(IdentityHash([2; 16]), id, now), Ok(()));
        // Past the window the replay is refused by its timestamp.
        assert_eq!(
            seen.admit(consumer, id, now + WINDOW_MS + 1),
            Err(Stale::OutsideWindow)
        );
        // A request from the future beyond the window, too.
        let ahead = next_request_id(0, now + WINDOW_MS + 1);
        assert_eq!(seen.admit(consumer, ahead, now), Err(Stale::OutsideWindow));
        // A fresh request still goes through.
        assert_eq!(
            seen.admit(consumer, next_request_id(id, now + 2_000), now + 2_000),
            Ok(())
        );
    }
}
