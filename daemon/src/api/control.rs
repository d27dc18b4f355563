//! The switches an operator turns while the node runs: drain, the live settings
//! (`api.request_timeout_secs`, `api.max_concurrent_requests`) and the request to shut down.
//! One value shared by the access layer, the deadline layer, health and AdminService.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::seams::{drain::Drain, drops::PartDrops};
use tokio_util::sync::CancellationToken;

/// Live settings' bounds (the same as the configuration's).
pub const REQUEST_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;
/// Default of `api.max_concurrent_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// Bounds of `api.max_concurrent_requests` when changed live.
pub const MAX_CONCURRENT_RANGE: std::ops::RangeInclusive<usize> = 1..=100_000;

/// Node-wide API switches.
pub struct ApiControl {
    drain: Drain,
    request_timeout_ms: AtomicU64,
    max_concurrent: AtomicUsize,
    permits: Arc<Semaphore>,
    max_streams: AtomicUsize,
    stream_permits: Arc<Semaphore>,
    drops: PartDrops,
    shutdown: CancellationToken,
    shutdown_reason: Mutex<Option<String>>,
}

impl ApiControl {
    /// Switches with the configured settings, not draining.
    pub fn new(request_timeout: Duration, max_concurrent: usize) -> Arc<Self> {
        Arc::new(ApiControl {
            drain: Drain::default(),
            request_timeout_ms: AtomicU64::new(request_timeout.as_millis() as u64),
            max_concurrent: AtomicUsize::new(max_concurrent),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_streams: AtomicUsize::new(DEFAULT_MAX_STREAMS),
            stream_permits: Arc::new(Semaphore::new(DEFAULT_MAX_STREAMS)),
            drops: PartDrops::default(),
            shutdown: CancellationToken::new(),
            shutdown_reason: Mutex::new(None),
        })
    }

    /// True while the node takes no new work.
    pub fn draining(&self) -> bool {
        self.drain.is_on()
    }

    /// Starts or ends a drain.
    pub fn set_draining(&self, draining: bool) {
        self.drain.set(draining);
    }

    /// The drain switch, for the parts that take work from peers.
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// The server deadline of unary calls.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// The server deadline of unary calls, in whole seconds (as the setting is written).
    pub fn request_timeout_secs(&self) -> u64 {
        self.request_timeout().as_secs()
    }

    /// Changes the server deadline (for calls that start from now on).
    pub fn set_request_timeout_secs(&self, secs: u64) {
        self.request_timeout_ms
            .store(secs.saturating_mul(1000), Ordering::Relaxed);
    }

    /// The permits every listener's concurrency limit draws from.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Calls served at once before load shedding.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent.load(Ordering::Relaxed)
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent()
            .saturating_sub(self.permits.available_permits())
    }

    /// The drop counters of the node (the API counts refused streams; the parts count theirs
    /// into the same registry).
    pub fn drops(&self) -> PartDrops {
        self.drops.clone()
    }

    /// A permit for one server-streaming call, or `None` at `api.max_concurrent_streams`.
    pub fn try_stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.stream_permits.clone().try_acquire_owned().ok()
    }

    /// Server-streaming calls open now.
    pub fn streams_in_flight(&self) -> usize {
        self.max_streams
            .load(Ordering::Relaxed)
            .saturating_sub(self.stream_permits.available_permits())
    }

    /// Sets the bound on server-streaming calls open at once (at start, before serving).
    pub fn set_max_streams(&self, limit: usize) {
        let old = self.max_streams.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.stream_permits.add_permits(limit - old);
        } else {
            self.stream_permits.forget_permits(old - limit);
        }
    }

    /// Changes the concurrency limit. Raising it adds permits at once; lowering it takes
    /// permits away as running calls return them (calls running now are not cut short).
    pub fn set_max_concurrent(&self, limit: usize) {
        let old = self.max_concurrent.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.permits.add_permits(limit - old);
        } else if limit < old {
            let excess = old - limit;
            let taken = self.permits.forget_permits(excess);
            let owed = excess - taken;
            if owed > 0 {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(permit) = permits.acquire_many_owned(owed as u32).await {
                        permit.forget();
                    }
                });
            }
        }
    }

    /// Asks the node to shut down gracefully (the daemon waits on [`Self::shutdown_requested`]).
    pub fn request_shutdown(&self, reason: String) {
        *self
            .shutdown_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.shutdown.cancel();
    }

    /// Completes when an operator asked for a shutdown; yields their reason.
    pub async fn shutdown_requested(&self) -> String {
        self.shutdown.cancelled().await;
        self.shutdown_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// True once a shutdown was asked for.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_concurrency_limit_changes_live() {
        let control = ApiControl::new(Duration::from_secs(30), 4);
        control.set_max_concurrent(6);
        assert_eq!(control.permits().available_permits(), 6);
        let held = control.permits().acquire_many_owned(5).await.unwrap();
        control.set_max_concurrent(2);
        // One free permit is taken now; the other three when the running calls end.
        assert_eq!(control.permits().available_permits(), 0);
        drop(held);
        tokio::task::yield_now().await;
        for _ in 0..10 {
            if control.permits().available_permits() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(control.permits().available_permits(), 2);
        assert_eq!(control.max_concurrent(), 2);
    }
}
