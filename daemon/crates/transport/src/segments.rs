//! Messages larger than one packet, carried over a Reticulum link between two Mehr nodes.
//!
//! A Reticulum link carries one packet at a time. Between Mehr nodes, a larger message is cut
//! into numbered segments (a simpler scheme than Reticulum's Resource transfers, which Mehr
//! does not use: both ends here are Mehr nodes) sent as link packets with the private
//! context [`SEGMENT_CONTEXT`] (plain Reticulum peers never send it, and relays forward link
//! traffic without reading its context). The receiver acknowledges cumulatively; the sender
//! keeps at most a window of unacknowledged segments in flight, resends what the receiver
//! reports missing, and asks again (`Query`) when acknowledgements stop. All of it is pure
//! state: the transport actor feeds packets and time in and sends what comes out.
//!
//! ```text
//! Segment  0x01 ‖ msg u32 ‖ index u32 ‖ count u32 ‖ bytes     sender → receiver
//! Ack      0x02 ‖ msg u32 ‖ next u32 ‖ n u8 ‖ missing u32 × n  receiver → sender (next = count: complete)
//! Query    0x03 ‖ msg u32                                       sender → receiver
//! Abort    0x04 ‖ msg u32 ‖ reason u8                           either way
//! ```
//! Integers are little-endian.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crate::packet::{Context, LINK_MDU};

/// The link packet context of segment traffic (unused by Reticulum).
pub const SEGMENT_CONTEXT: Context = Context(0x4D);
/// Header of a segment.
pub const SEGMENT_HEADER: usize = 13;
/// Message bytes per segment at the default link MTU.
pub const SEGMENT_PAYLOAD: usize = LINK_MDU - SEGMENT_HEADER;
/// Segments in flight before the sender waits for an acknowledgement.
pub const WINDOW: u32 = 32;
/// The receiver acknowledges after this many new segments (and always on the last one).
const ACK_EVERY: u32 = WINDOW / 2;
/// Most missing indices reported in one Ack (the encoder cuts a longer list; the parser refuses
/// a larger count).
pub const MAX_MISSING_REPORTED: usize = 64;

/// Why a message was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The message is larger than the receiver accepts.
    TooLarge = 1,
    /// The receiver has too many messages in progress.
    Busy = 2,
    /// The sender gave up.
    Cancelled = 3,
}

impl AbortReason {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(AbortReason::TooLarge),
            2 => Some(AbortReason::Busy),
            3 => Some(AbortReason::Cancelled),
            _ => None,
        }
    }

    /// Words for an error message.
    pub fn describe(self) -> &'static str {
        match self {
            AbortReason::TooLarge => "the message is larger than the receiver accepts",
            AbortReason::Busy => "the receiver has too many messages in progress",
            AbortReason::Cancelled => "the sender cancelled",
        }
    }
}

/// One segment-protocol packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentPacket {
    /// Part of a message.
    Segment {
        /// Message id (chosen by the sender, unique per link).
        msg: u32,
        /// Segment index.
        index: u32,
        /// Number of segments.
        count: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Everything before `next` arrived, except `missing`.
    Ack {
        /// Message id.
        msg: u32,
        /// First index not yet received in order; `count` means complete.
        next: u32,
        /// Indices below the highest received that are missing.
        missing: Vec<u32>,
    },
    /// The sender asks for an Ack.
    Query {
        /// Message id.
        msg: u32,
    },
    /// The message is abandoned.
    Abort {
        /// Message id.
        msg: u32,
        /// Why.
        reason: AbortReason,
    },
}

/// Bytes that are not a segment-protocol packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed segment packet: {0}")]
pub struct SegmentError(&'static str);

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, SegmentError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("slice of 4")))
        .ok_or(SegmentError("truncated"))
}

impl SegmentPacket {
    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SegmentPacket::Segment {
                msg,
                index,
                count,
                bytes,
            } => {
                out.push(0x01);
                out.extend_from_slice(&msg.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            SegmentPacket::Ack { msg, next, missing } => {
                out.push(0x02);
                out.extend_from_slice(&msg.to_le_bytes());
                out.extend_from_slice(&next.to_le_bytes());
                let n = missing.len().min(MAX_MISSING_REPORTED);
                out.push(n as u8);
                for index in &missing[..n] {
                    out.extend_from_slice(&index.to_le_bytes());
                }
            }
            SegmentPacket::Query { msg } => {
                out.push(0x03);
                out.extend_from_slice(&msg.to_le_bytes());
            }
            SegmentPacket::Abort { msg, reason } => {
                out.push(0x04);
                out.extend_from_slice(&msg.to_le_bytes());
                out.push(*reason as u8);
            }
        }
        out
    }

    /// Parses a packet.
    pub fn parse(bytes: &[u8]) -> Result<Self, SegmentError> {
        let kind = *bytes.first().ok_or(SegmentError("empty"))?;
        let msg = u32_at(bytes, 1)?;
        Ok(match kind {
            0x01 => {
                let index = u32_at(bytes, 5)?;
                let count = u32_at(bytes, 9)?;
                if count == 0 || index >= count {
                    return Err(SegmentError("index outside the message"));
                }
                SegmentPacket::Segment {
                    msg,
                    index,
                    count,
                    bytes: bytes[SEGMENT_HEADER..].to_vec(),
                }
            }
            0x02 => {
                let next = u32_at(bytes, 5)?;
                let n = *bytes.get(9).ok_or(SegmentError("truncated"))? as usize;
                // The encoder never reports more than this; a larger count would be a second
                // encoding of an Ack cut to its first 64 indices.
                if n > MAX_MISSING_REPORTED {
                    return Err(SegmentError(
                        "ack reports more missing indices than allowed",
                    ));
                }
                if bytes.len() != 10 + 4 * n {
                    return Err(SegmentError("ack length does not match its count"));
                }
                let missing = (0..n)
                    .map(|i| u32_at(bytes, 10 + 4 * i))
                    .collect::<Result<_, _>>()?;
                SegmentPacket::Ack { msg, next, missing }
            }
            0x03 if bytes.len() == 5 => SegmentPacket::Query { msg },
            0x04 if bytes.len() == 6 => SegmentPacket::Abort {
                msg,
                reason: AbortReason::from_byte(bytes[5])
                    .ok_or(SegmentError("unknown abort reason"))?,
            },
            _ => return Err(SegmentError("unknown kind or wrong length")),
        })
    }
}

/// The sending side of one message.
#[derive(Debug)]
pub struct Outgoing {
    msg: u32,
    payload: Vec<u8>,
    count: u32,
    /// Everything below this is acknowledged.
    acked_below: u32,
    /// Next index never sent.
    next_new: u32,
    resend: BTreeSet<u32>,
    last_progress: Duration,
    query_after: Duration,
}

/// What the sender should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum SendStep {
    /// Send these packets now.
    Send(Vec<SegmentPacket>),
    /// Every segment is acknowledged: the message is delivered.
    Delivered,
}

/// First wait for an Ack before asking again; doubles per unanswered Query, up to a minute.
const FIRST_QUERY_AFTER: Duration = Duration::from_secs(3);
const MAX_QUERY_AFTER: Duration = Duration::from_secs(60);

impl Outgoing {
    /// Prepares `payload` as message `msg`; nothing is sent until [`Outgoing::poll`].
    pub fn new(msg: u32, payload: Vec<u8>, now: Duration) -> Self {
        let count = payload.len().div_ceil(SEGMENT_PAYLOAD).max(1) as u32;
        Outgoing {
            msg,
            payload,
            count,
            acked_below: 0,
            next_new: 0,
            resend: BTreeSet::new(),
            last_progress: now,
            query_after: FIRST_QUERY_AFTER,
        }
    }

    /// The message id.
    pub fn msg(&self) -> u32 {
        self.msg
    }

    /// Number of segments.
    pub fn count(&self) -> u32 {
        self.count
    }

    fn segment(&self, index: u32) -> SegmentPacket {
        let start = index as usize * SEGMENT_PAYLOAD;
        let end = (start + SEGMENT_PAYLOAD).min(self.payload.len());
        SegmentPacket::Segment {
            msg: self.msg,
            index,
            count: self.count,
            bytes: self.payload[start..end].to_vec(),
        }
    }

    /// Segments to (re)send now: reported gaps first, then new ones while the window has
    /// room; a Query when acknowledgements have stalled.
    pub fn poll(&mut self, now: Duration) -> SendStep {
        if self.acked_below >= self.count {
            return SendStep::Delivered;
        }
        let mut out: Vec<SegmentPacket> = std::mem::take(&mut self.resend)
            .into_iter()
            .map(|i| self.segment(i))
            .collect();
        while self.next_new < self.count && self.next_new < self.acked_below + WINDOW {
            out.push(self.segment(self.next_new));
            self.next_new += 1;
        }
        if !out.is_empty() {
            self.last_progress = now;
        } else if now.saturating_sub(self.last_progress) >= self.query_after {
            out.push(SegmentPacket::Query { msg: self.msg });
            self.last_progress = now;
            self.query_after = (self.query_after * 2).min(MAX_QUERY_AFTER);
        }
        SendStep::Send(out)
    }

    /// Takes an Ack from the receiver.
    pub fn on_ack(&mut self, next: u32, missing: &[u32], now: Duration) {
        if next > self.acked_below {
            self.acked_below = next.min(self.count);
            self.last_progress = now;
            self.query_after = FIRST_QUERY_AFTER;
        }
        for &index in missing {
            if index >= self.acked_below && index < self.next_new {
                self.resend.insert(index);
            }
        }
        // A receiver that is behind what was sent, with nothing it can report missing (its
        // report was cut short), gets the first unacknowledged segment again.
        if missing.is_empty() && self.acked_below < self.next_new && next == self.acked_below {
            self.resend.insert(self.acked_below);
        }
    }
}

/// The receiving side of one message.
#[derive(Debug)]
pub struct Incoming {
    msg: u32,
    count: u32,
    /// Segments held so far: memory grows with what arrived, never with the count a sender
    /// announces.
    parts: BTreeMap<u32, Vec<u8>>,
    /// Bytes in `parts`.
    held: usize,
    received: u32,
    next_in_order: u32,
    since_ack: u32,
    highest: u32,
    /// When a segment last arrived (to expire abandoned transfers).
    pub last_activity: Duration,
}

/// What the receiver should do after a segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// An Ack to send, if one is due.
    pub ack: Option<SegmentPacket>,
    /// The whole message, once complete.
    pub message: Option<Vec<u8>>,
}

impl Incoming {
    /// Starts receiving message `msg` of `count` segments. The caller checks the size limit
    /// (`count * SEGMENT_PAYLOAD`) first.
    pub fn new(msg: u32, count: u32, now: Duration) -> Self {
        Incoming {
            msg,
            count,
            parts: BTreeMap::new(),
            held: 0,
            received: 0,
            next_in_order: 0,
            since_ack: 0,
            highest: 0,
            last_activity: now,
        }
    }

    /// The message id.
    pub fn msg(&self) -> u32 {
        self.msg
    }

    /// Bytes of the segments held.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Takes a segment. Duplicates are acknowledged again (the sender may have missed the Ack)
    /// but stored once.
    pub fn on_segment(
        &mut self,
        index: u32,
        count: u32,
        bytes: Vec<u8>,
        now: Duration,
    ) -> Received {
        self.last_activity = now;
        if count != self.count || index >= self.count {
            return Received {
                ack: Some(self.ack()),
                message: None,
            };
        }
        let fresh = !self.parts.contains_key(&index);
        if fresh {
            self.held += bytes.len();
            self.parts.insert(index, bytes);
            self.received += 1;
            self.since_ack += 1;
            self.highest = self.highest.max(index);
            while self.next_in_order < self.count && self.parts.contains_key(&self.next_in_order) {
                self.next_in_order += 1;
            }
        }
        let complete = self.received == self.count;
        let ack_due = !fresh || complete || self.since_ack >= ACK_EVERY || index + 1 == self.count;
        let ack = ack_due.then(|| self.ack());
        let message = complete.then(|| {
            self.held = 0;
            std::mem::take(&mut self.parts)
                .into_values()
                .flatten()
                .collect()
        });
        Received { ack, message }
    }

    /// The Ack describing what has arrived.
    pub fn ack(&mut self) -> SegmentPacket {
        self.since_ack = 0;
        let missing = (self.next_in_order..self.highest)
            .filter(|i| *i < self.count && !self.parts.contains_key(i))
            .take(MAX_MISSING_REPORTED)
            .collect();
        SegmentPacket::Ack {
            msg: self.msg,
            next: self.next_in_order,
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    fn run(payload: Vec<u8>, lose: impl Fn(u32, usize) -> bool) -> Vec<u8> {
        let mut sender = Outgoing::new(7, payload, T0);
        let mut receiver = Incoming::new(7, sender.count(), T0);
        let mut attempt = 0usize;
        for round in 0..10_000u64 {
            let now = Duration::from_secs(round);
            let packets = match sender.poll(now) {
                SendStep::Delivered => panic!("delivered before the receiver completed"),
                SendStep::Send(packets) => packets,
            };
            for packet in packets {
                attempt += 1;
                let wire = SegmentPacket::parse(&packet.encode()).unwrap();
                match wire {
                    SegmentPacket::Segment {
                        index,
                        count,
                        bytes,
                        ..
                    } => {
                        if lose(index, attempt) {
                            continue;
                        }
                        let received = receiver.on_segment(index, count, bytes, now);
                        if let Some(SegmentPacket::Ack { next, missing, .. }) = received.ack {
                            sender.on_ack(next, &missing, now);
                        }
                        if let Some(message) = received.message {
                            assert_eq!(sender.poll(now), SendStep::Delivered);
                            return message;
                        }
                    }
                    SegmentPacket::Query { .. } => {
                        if let SegmentPacket::Ack { next, missing, .. } = receiver.ack() {
                            sender.on_ack(next, &missing, now);
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        panic!("never completed");
    }

    #[test]
    fn round_trips_without_loss() {
        for len in [0, 1, SEGMENT_PAYLOAD, SEGMENT_PAYLOAD + 1, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(run(payload.clone(), |_, _| false), payload, "length {len}");
        }
    }

    #[test]
    fn recovers_from_heavy_loss() {
        let payload: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
        // Lose every third transmission, including retransmissions.
        assert_eq!(run(payload.clone(), |_, attempt| attempt % 3 == 0), payload);
        // Lose the last segment the first few times.
        let last = (payload.len().div_ceil(SEGMENT_PAYLOAD) - 1) as u32;
        assert_eq!(
            run(payload.clone(), |index, attempt| index == last
                && attempt < 600),
            payload
        );
    }

    #[test]
    fn encodings_round_trip_and_reject_garbage() {
        let packets = [
            SegmentPacket::Segment {
                msg: 1,
                index: 2,
                count: 3,
                bytes: vec![9; 5],
            },
            SegmentPacket::Ack {
                msg: 1,
                next: 4,
                missing: vec![5, 9],
            },
            SegmentPacket::Query { msg: 8 },
            SegmentPacket::Abort {
                msg: 8,
                reason: AbortReason::TooLarge,
            },
        ];
        for packet in packets {
            assert_eq!(SegmentPacket::parse(&packet.encode()).unwrap(), packet);
        }
        for bad in [
            &[][..],
            &[0x01, 0, 0],
            &[0x01, 1, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0],
            &[0x02, 1, 0, 0, 0, 0, 0, 0, 0, 3],
            &[0x09, 0, 0, 0, 0],
        ] {
            assert!(SegmentPacket::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_ack_has_one_encoding() {
        // Found by the `segments` fuzz target: an Ack announcing 65..=255 missing indices was
        // accepted, and re-encoded cut to 64 of them.
        let mut bytes = vec![0x02, 1, 0, 0, 0, 0, 0, 0, 0, 65];
        bytes.extend((0..65u32).flat_map(u32::to_le_bytes));
        assert!(SegmentPacket::parse(&bytes).is_err());
        bytes[9] = 64;
        bytes.truncate(10 + 4 * 64);
        let parsed = SegmentPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.encode(), bytes);
    }

    #[test]
    fn memory_follows_the_segments_that_arrived_not_the_announced_count() {
        let mut receiver = Incoming::new(1, u32::MAX, T0);
        receiver.on_segment(5, u32::MAX, vec![1; 100], T0);
        assert_eq!(receiver.held_bytes(), 100);
        assert_eq!(receiver.parts.len(), 1);
        receiver.on_segment(5, u32::MAX, vec![1; 100], T0);
        assert_eq!(receiver.held_bytes(), 100, "a duplicate is stored once");
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = SegmentPacket::parse(&bytes);
        }
    }
}
