//! HDLC-like framing: `FLAG ‖ escaped(packet) ‖ FLAG`, with FLAG = 0x7E, ESC = 0x7D and
//! escaped bytes sent as `ESC ‖ (byte ^ 0x20)`. ESC is escaped before FLAG, so the two
//! substitutions never interfere. A closing FLAG may also open the next frame.

use super::DecoderStats;

/// Frame delimiter.
pub const FLAG: u8 = 0x7E;
/// Escape byte.
pub const ESC: u8 = 0x7D;
/// XOR applied to an escaped byte.
pub const ESC_MASK: u8 = 0x20;

/// Frames `packet` for a stream.
pub fn encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + packet.len() / 16 + 2);
    encode_into(packet, &mut out);
    out
}

/// Appends the framed `packet` to `out` (lets a writer frame many packets into one buffer).
/// Runs of bytes that need no escape are copied whole.
pub fn encode_into(packet: &[u8], out: &mut Vec<u8>) {
    out.reserve(packet.len() + 2);
    out.push(FLAG);
    let mut rest = packet;
    while let Some(at) = memchr::memchr2(FLAG, ESC, rest) {
        out.extend_from_slice(&rest[..at]);
        out.push(ESC);
        out.push(rest[at] ^ ESC_MASK);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(FLAG);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first FLAG: bytes are noise.
    Hunting,
    InFrame,
    Escaped,
    /// Dropping the rest of a bad frame until the next FLAG.
    Discarding,
}

/// Incremental HDLC decoder with a frame size bound.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_frame: usize,
    state: State,
    stats: DecoderStats,
}

impl Decoder {
    /// A decoder that drops frames longer than `max_frame` bytes (after unescaping).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_frame,
            state: State::Hunting,
            stats: DecoderStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Feeds stream bytes; calls `on_frame` for each complete, non-empty frame.
    pub fn push(&mut self, bytes: &[u8], mut on_frame: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while !rest.is_empty() {
            // Inside a frame, copy the run up to the next FLAG or ESC in one go.
            if self.state == State::InFrame {
                let run = memchr::memchr2(FLAG, ESC, rest).unwrap_or(rest.len());
                if self.buf.len() + run > self.max_frame {
                    self.stats.oversize += 1;
                    self.discard();
                } else {
                    self.buf.extend_from_slice(&rest[..run]);
                }
                rest = &rest[run..];
                if rest.is_empty() {
                    return;
                }
            } else if matches!(self.state, State::Hunting | State::Discarding) {
                // Skip to the next FLAG.
                match memchr::memchr(FLAG, rest) {
                    Some(at) => rest = &rest[at..],
                    None => return,
                }
            }
            let b = rest[0];
            rest = &rest[1..];
            match (self.state, b) {
                (State::Hunting, FLAG) | (State::Discarding, FLAG) => self.start(),
                (State::Hunting, _) | (State::Discarding, _) => {}
                (State::InFrame, FLAG) => {
                    if !self.buf.is_empty() {
                        self.stats.frames += 1;
                        on_frame(&self.buf);
                    }
                    self.start();
                }
                (State::InFrame, ESC) => self.state = State::Escaped,
                (State::InFrame, _) => self.append(b),
                (State::Escaped, FLAG) => {
                    // A frame cut off after an escape: drop it; the FLAG opens the next one.
                    self.stats.bad_escapes += 1;
                    self.start();
                }
                (State::Escaped, _) => {
                    let unescaped = b ^ ESC_MASK;
                    if unescaped == FLAG || unescaped == ESC {
                        self.state = State::InFrame;
                        self.append(unescaped);
                    } else {
                        self.stats.bad_escapes += 1;
                        self.discard();
                    }
                }
            }
        }
    }

    /// Feeds stream bytes and returns the complete frames.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        self.push(bytes, |f| frames.push(f.to_vec()));
        frames
    }

    fn start(&mut self) {
        self.buf.clear();
        self.state = State::InFrame;
    }

    fn discard(&mut self) {
        self.buf.clear();
        self.state = State::Discarding;
    }

    fn append(&mut self, b: u8) {
        if self.buf.len() >= self.max_frame {
            self.stats.oversize += 1;
            self.discard();
        } else {
            self.buf.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_flag_and_esc() {
        assert_eq!(
            encode(&[1, FLAG, 2, ESC, 3]),
            vec![FLAG, 1, ESC, 0x5E, 2, ESC, 0x5D, 3, FLAG]
        );
        assert_eq!(encode(&[]), vec![FLAG, FLAG]);
    }

    #[test]
    fn decodes_split_and_back_to_back_frames() {
        let mut stream = encode(b"first\x7e");
        stream.extend_from_slice(&encode(b"\x7dsecond"));
        // Shared flag between frames, plus noise before the first flag.
        let mut shared = vec![0x11, 0x22];
        shared.extend_from_slice(&encode(b"a"));
        shared.extend_from_slice(&encode(b"b")[1..]);
        let mut d = Decoder::new(100);
        let mut frames = Vec::new();
        for chunk in stream.chunks(3) {
            frames.extend(d.decode(chunk));
        }
        assert_eq!(frames, vec![b"first\x7e".to_vec(), b"\x7dsecond".to_vec()]);
        assert_eq!(
            Decoder::new(100).decode(&shared),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(d.stats().frames, 2);
    }

    #[test]
    fn drops_oversize_and_badly_escaped_frames() {
        let mut d = Decoder::new(4);
        let mut stream = encode(b"toolong");
        stream.extend_from_slice(&[FLAG, 1, ESC, 0x00, 2, FLAG]);
        stream.extend_from_slice(&[FLAG, 1, ESC, FLAG]);
        stream.extend_from_slice(&encode(b"ok"));
        assert_eq!(d.decode(&stream), vec![b"ok".to_vec()]);
        assert_eq!(
            d.stats(),
            DecoderStats {
                frames: 1,
                oversize: 1,
                bad_escapes: 2,
                non_data: 0
            }
        );
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..600), 1..5)) {
            let mut stream = Vec::new();
            for f in &frames {
                stream.extend_from_slice(&encode(f));
            }
            prop_assert_eq!(Decoder::new(600).decode(&stream), frames);
        }

        #[test]
        fn any_split_of_the_stream_gives_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut stream = Vec::new();
            for frame in &frames {
                encode_into(frame, &mut stream);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut decoder = Decoder::new(1024);
            let mut got = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                got.extend(decoder.decode(&stream[from..cut]));
                from = cut;
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn random_bytes_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = Decoder::new(64);
            for f in d.decode(&bytes) {
                prop_assert!(!f.is_empty() && f.len() <= 64);
            }
        }
    }
}
