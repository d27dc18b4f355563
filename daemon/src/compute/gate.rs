//! A concurrency limit with a bounded waiting line: at most `slots` calls run, at most
//! `max_queued` more wait (first come, first served) until a slot frees or their deadline
//! passes, and anything beyond that is refused at once.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
    time::Instant,
};

/// Why a call could not get a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Every slot is busy and the waiting line is full.
    #[error("all {slots} slots are busy and all {max_queued} places in the queue are taken")]
    QueueFull {
        /// Slots of the gate.
        slots: usize,
        /// Places in the waiting line.
        max_queued: usize,
    },
    /// The deadline passed while waiting for a slot.
    #[error("the deadline passed while waiting for a free slot")]
    DeadlineWhileQueued,
    /// The gate was closed: what it guards is gone.
    #[error("closed")]
    Closed,
}

/// A slot held by one running call; dropping it frees the slot.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The gate. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(super) struct Gate {
    semaphore: Arc<Semaphore>,
    slots: usize,
    max_queued: usize,
    queued: AtomicUsize,
}

impl Gate {
    /// A gate with `slots` slots and room for `max_queued` waiting calls.
    pub(super) fn new(slots: usize, max_queued: usize) -> Gate {
        Gate {
            semaphore: Arc::new(Semaphore::new(slots)),
            slots,
            max_queued,
            queued: AtomicUsize::new(0),
        }
    }

    /// Takes a slot, waiting in line until `deadline` if every slot is busy.
    pub(super) async fn enter(&self, deadline: Instant) -> Result<Slot, GateError> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => return Ok(Slot { _permit: permit }),
            Err(TryAcquireError::Closed) => return Err(GateError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        let _leave = LeaveQueue(&self.queued);
        if queued >= self.max_queued {
            return Err(GateError::QueueFull {
                slots: self.slots,
                max_queued: self.max_queued,
            });
        }
        // Tokio's semaphore hands freed permits to waiters in arrival order.
        match tokio::time::timeout_at(deadline, self.semaphore.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            Ok(Err(_closed)) => Err(GateError::Closed),
            Err(_elapsed) => Err(GateError::DeadlineWhileQueued),
        }
    }

    /// Closes the gate: waiting calls and later ones get [`GateError::Closed`]; running calls
    /// keep their slots.
    pub(super) fn close(&self) {
        self.semaphore.close();
    }

    /// Calls running now.
    pub(super) fn in_flight(&self) -> usize {
        self.slots
            .saturating_sub(self.semaphore.available_permits())
    }

    /// Calls waiting now.
    pub(super) fn queued(&self) -> usize {
        // Callers refused for a full line count for an instant; never report more than fit.
        self.queued.load(Ordering::SeqCst).min(self.max_queued)
    }
}

struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn limits_running_and_waiting_calls() {
        let gate = Arc::new(Gate::new(2, 1));
        let a = gate.enter(far()).await.unwrap();
        let _b = gate.enter(far()).await.unwrap();
        assert_eq!(gate.in_flight(), 2);

        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(far()).await.map(|_| ()) })
        };
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            gate.enter(far()).await.unwrap_err(),
            GateError::QueueFull {
                slots: 2,
                max_queued: 1
            }
        );
        drop(a);
        waiter.await.unwrap().unwrap();
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn deadline_ends_the_wait() {
        let gate = Gate::new(1, 4);
        let _held = gate.enter(far()).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            gate.enter(deadline).await.unwrap_err(),
            GateError::DeadlineWhileQueued
        );
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test]
    async fn closing_releases_waiters_but_not_runners() {
        let gate = Arc::new(Gate::new(1, 4));
        let held = gate.enter(far()).await.unwrap();
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(far()).await.map(|_| ()) })
        };
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        gate.close();
        assert_eq!(waiter.await.unwrap().unwrap_err(), GateError::Closed);
        assert_eq!(gate.in_flight(), 1);
        drop(held);
        assert_eq!(gate.enter(far()).await.unwrap_err(), GateError::Closed);
    }

    #[tokio::test]
    async fn no_queue_means_fail_fast() {
        let gate = Gate::new(1, 0);
        let _held = gate.enter(far()).await.unwrap();
        assert!(matches!(
            gate.enter(far()).await,
            Err(GateError::QueueFull { max_queued: 0, .. })
        ));
    }
}
