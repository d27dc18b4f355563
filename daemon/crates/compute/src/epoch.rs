//! The thread that advances the engine's epoch, which is what makes wall-clock deadlines work.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// Increments the engine's epoch once per tick until dropped.
///
/// Running WASM checks the epoch at function entries and loop back-edges, so a call whose store
/// deadline is `n` ticks away traps within `n` ticks of wall time however it loops.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mehr-compute-epoch".to_owned())
            .spawn(move || {
                // The sender is never used to send: dropping it disconnects the channel, which
                // wakes this thread at once instead of after the current tick.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Number of ticks to grant a call so that it runs for at least `deadline`.
    ///
    /// The next tick may come at any moment after the deadline is set, so one tick is added:
    /// the call is interrupted between `deadline` and `deadline + tick` after it starts.
    pub(crate) fn ticks_for(deadline: Duration, tick: Duration) -> u64 {
        let tick_nanos = tick.as_nanos().max(1);
        let whole = deadline.as_nanos().div_ceil(tick_nanos);
        u64::try_from(whole).unwrap_or(u64::MAX).saturating_add(1)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The ticker body cannot panic; a join error would only repeat a panic already seen.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_add_one() {
        let tick = Duration::from_millis(10);
        assert_eq!(EpochTicker::ticks_for(Duration::ZERO, tick), 1);
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(10), tick), 2);
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(11), tick), 3);
        assert_eq!(
            EpochTicker::ticks_for(Duration::MAX, Duration::ZERO),
            u64::MAX
        );
    }

    #[test]
    fn ticker_stops_promptly_on_drop() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(engine, Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // Dropping joins the thread; the test would hang if the stop signal were lost.
        drop(ticker);
    }
}
