//! Live counters of one interface, updated by its tasks without locks and read by the API.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

/// Whether an interface can carry traffic now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Carrying traffic.
    Up,
    /// Trying to (re)connect; the text says to what and why the last try failed.
    Connecting(String),
    /// Not carrying traffic; the text says why.
    Down(String),
}

/// Counters of one interface.
#[derive(Debug)]
pub struct InterfaceStats {
    /// Frames received.
    pub rx_frames: AtomicU64,
    /// Bytes received (packet bytes, without framing).
    pub rx_bytes: AtomicU64,
    /// Frames sent.
    pub tx_frames: AtomicU64,
    /// Bytes sent (packet bytes, without framing).
    pub tx_bytes: AtomicU64,
    /// Announce bytes sent (a subset of `tx_bytes`), to check the announce cap.
    pub tx_announce_bytes: AtomicU64,
    /// Frames dropped because the outbound queue was full or the link was down.
    pub tx_dropped: AtomicU64,
    /// Frames received that were malformed at the framing level (bad escapes, oversize).
    pub rx_malformed: AtomicU64,
    state: Mutex<LinkState>,
}

impl Default for InterfaceStats {
    fn default() -> Self {
        InterfaceStats {
            rx_frames: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_frames: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            tx_announce_bytes: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            rx_malformed: AtomicU64::new(0),
            state: Mutex::new(LinkState::Connecting("starting".into())),
        }
    }
}

impl InterfaceStats {
    /// Records a received frame.
    pub fn received(&self, len: usize) {
        self.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Records a sent frame.
    pub fn sent(&self, frame: &[u8]) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        // Packet type is the low two bits of the flags byte; 1 is an announce.
        if frame.first().is_some_and(|flags| flags & 0b11 == 1) {
            self.tx_announce_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
    }

    /// Adds to the dropped-frame count.
    pub fn dropped(&self, frames: usize) {
        self.tx_dropped.fetch_add(frames as u64, Ordering::Relaxed);
    }

    /// Adds to the malformed-frame count.
    pub fn malformed(&self, frames: u64) {
        self.rx_malformed.fetch_add(frames, Ordering::Relaxed);
    }

    /// Sets the link state.
    pub fn set_state(&self, state: LinkState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
