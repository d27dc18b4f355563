//! Byte-stream framing for interfaces that carry packets over a stream: HDLC-like framing
//! on TCP (as Reticulum's TCP interfaces use) and KISS on serial lines and TNCs. UDP needs
//! none: one packet per datagram.
//!
//! Decoders are incremental (feed whatever the socket returned), bound the frame size, and
//! count what they discard, so a noisy or hostile peer costs bounded memory and shows up in
//! the counters.

pub mod hdlc;
pub mod kiss;

/// What a decoder has seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames delivered.
    pub frames: u64,
    /// Frames dropped for exceeding the size bound.
    pub oversize: u64,
    /// Frames dropped for an invalid escape sequence.
    pub bad_escapes: u64,
    /// KISS frames with a command other than data (ignored).
    pub non_data: u64,
}
