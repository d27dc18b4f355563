//! KISS framing: `FEND ‖ command ‖ escaped(packet) ‖ FEND`, with FEND = 0xC0, FESC = 0xDB,
//! FEND sent as `FESC TFEND` (0xDC) and FESC as `FESC TFESC` (0xDD). Command 0x00 is data on
//! port 0; the high nibble of the command byte is the port and is ignored, as Reticulum does.

use super::DecoderStats;

/// Frame end.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Escaped FEND.
pub const TFEND: u8 = 0xDC;
/// Escaped FESC.
pub const TFESC: u8 = 0xDD;
/// Data frame command.
pub const CMD_DATA: u8 = 0x00;

/// Frames `packet` as a KISS data frame.
pub fn encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + packet.len() / 16 + 3);
    out.push(FEND);
    out.push(CMD_DATA);
    for &b in packet {
        match b {
            FEND => out.extend_from_slice(&[FESC, TFEND]),
            FESC => out.extend_from_slice(&[FESC, TFESC]),
            _ => out.push(b),
        }
    }
    out.push(FEND);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Hunting,
    AwaitCommand,
    InFrame,
    Escaped,
    /// Skipping a non-data frame or the rest of a bad one until the next FEND.
    Discarding,
}

/// Incremental KISS decoder with a frame size bound.
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

    /// Feeds stream bytes; calls `on_frame` for each complete, non-empty data frame.
    pub fn push(&mut self, bytes: &[u8], mut on_frame: impl FnMut(&[u8])) {
        for &b in bytes {
            match (self.state, b) {
                (_, FEND) if self.state != State::InFrame && self.state != State::Escaped => {
                    self.buf.clear();
                    self.state = State::AwaitCommand;
                }
                (State::Hunting, _) | (State::Discarding, _) => {}
                (State::AwaitCommand, cmd) => {
                    if cmd & 0x0F == CMD_DATA {
                        self.state = State::InFrame;
                    } else {
                        self.stats.non_data += 1;
                        self.state = State::Discarding;
                    }
                }
                (State::InFrame, FEND) => {
                    if !self.buf.is_empty() {
                        self.stats.frames += 1;
                        on_frame(&self.buf);
                    }
                    self.buf.clear();
                    self.state = State::AwaitCommand;
                }
                (State::InFrame, FESC) => self.state = State::Escaped,
                (State::InFrame, _) => self.append(b),
                (State::Escaped, TFEND) => {
                    self.state = State::InFrame;
                    self.append(FEND);
                }
                (State::Escaped, TFESC) => {
                    self.state = State::InFrame;
                    self.append(FESC);
                }
                (State::Escaped, FEND) => {
                    self.stats.bad_escapes += 1;
                    self.buf.clear();
                    self.state = State::AwaitCommand;
                }
                (State::Escaped, _) => {
                    self.stats.bad_escapes += 1;
                    self.buf.clear();
                    self.state = State::Discarding;
                }
            }
        }
    }

    /// Feeds stream bytes and returns the complete data frames.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        self.push(bytes, |f| frames.push(f.to_vec()));
        frames
    }

    fn append(&mut self, b: u8) {
        if self.buf.len() >= self.max_frame {
            self.stats.oversize += 1;
            self.buf.clear();
            self.state = State::Discarding;
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
    fn escapes_fend_and_fesc() {
        assert_eq!(
            encode(&[1, FEND, FESC, 2]),
            vec![FEND, 0, 1, FESC, TFEND, FESC, TFESC, 2, FEND]
        );
    }

    #[test]
    fn skips_non_data_frames_and_port_nibble() {
        let mut stream = vec![FEND, 0x01, 0x20, FEND]; // TXDELAY command
        stream.extend_from_slice(&[FEND, 0x10, 7, 8, FEND]); // data on port 1
        stream.extend_from_slice(&encode(b"x"));
        let mut d = Decoder::new(10);
        assert_eq!(d.decode(&stream), vec![vec![7, 8], b"x".to_vec()]);
        assert_eq!(d.stats().non_data, 1);
    }

    #[test]
    fn drops_oversize_and_badly_escaped_frames() {
        let mut d = Decoder::new(3);
        let mut stream = encode(b"long!");
        stream.extend_from_slice(&[FEND, 0, 1, FESC, 0x00, 2, FEND]);
        stream.extend_from_slice(&encode(b"ok"));
        assert_eq!(d.decode(&stream), vec![b"ok".to_vec()]);
        assert_eq!(
            d.stats(),
            DecoderStats {
                frames: 1,
                oversize: 1,
                bad_escapes: 1,
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
            let mut d = Decoder::new(600);
            let mut got = Vec::new();
            for chunk in stream.chunks(7) {
                got.extend(d.decode(chunk));
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
