//! The SDK's tokio runtime, one per process, and what happens across `fork()`.
//!
//! A forked child has a copy of the parent's memory but only the thread that called `fork`:
//! the parent's runtime threads, and with them every connection they drive, do not exist in
//! the child. So the SDK keeps one runtime per process id: the first use in a child builds a
//! fresh runtime there, and objects created before the fork ([`ProcessBound`]) refuse to work
//! in the child with a message that says so, instead of hanging on a runtime that is gone.

use std::{
    cell::Cell,
    sync::{Mutex, TryLockError},
    time::{Duration, Instant},
};

use tokio::runtime::Runtime;

/// How long a thread waits for another one that is building the runtime.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// A runtime and the process it belongs to.
struct ProcessRuntime {
    pid: u32,
    runtime: Runtime,
}

/// The runtime of the current process. A runtime inherited through `fork` is leaked, never
/// dropped: dropping it would wait for worker threads that do not exist in the child.
static CURRENT: Mutex<Option<&'static ProcessRuntime>> = Mutex::new(None);

thread_local! {
    /// Each thread's copy of [`CURRENT`], so the lock is only taken on a thread's first call
    /// (and the first after a fork).
    static CACHED: Cell<Option<&'static ProcessRuntime>> = const { Cell::new(None) };
}

/// Why the runtime could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeError {
    /// Building the runtime failed (threads could not be started).
    #[error("cannot start the SDK's runtime: {0}")]
    Build(std::io::Error),
    /// The lock stayed taken: a thread held it when the process forked.
    #[error(
        "the SDK's runtime lock was held by a thread of the parent process when it forked; \
         fork before using mehr, or use the 'spawn' start method of multiprocessing"
    )]
    LockHeldAtFork,
}

/// The tokio runtime of this process, built on first use (in each forked child too).
pub(crate) fn runtime() -> Result<&'static Runtime, RuntimeError> {
    let pid = std::process::id();
    if let Some(cached) = CACHED.with(Cell::get).filter(|r| r.pid == pid) {
        return Ok(&cached.runtime);
    }
    let current = current_for(pid)?;
    CACHED.with(|cell| cell.set(Some(current)));
    Ok(&current.runtime)
}

fn current_for(pid: u32) -> Result<&'static ProcessRuntime, RuntimeError> {
    // `try_lock` in a loop rather than `lock`: a lock that was held when the process forked
    // is never released in the child, and waiting for it would hang forever.
    let started = Instant::now();
    let mut slot = loop {
        match CURRENT.try_lock() {
            Ok(guard) => break guard,
            Err(TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => return Err(RuntimeError::LockHeldAtFork),
        }
    };
    if let Some(existing) = slot.filter(|r| r.pid == pid) {
        return Ok(existing);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("mehr-sdk")
        .enable_all()
        .build()
        .map_err(RuntimeError::Build)?;
    let created: &'static ProcessRuntime = Box::leak(Box::new(ProcessRuntime { pid, runtime }));
    *slot = Some(created);
    Ok(created)
}

/// A value that only works in the process that created it (connections, streams, serving
/// tasks: they live on that process's runtime). In a forked child, use fails with
/// [`Forked`] and dropping leaks the value rather than touching the parent's runtime state.
pub(crate) struct ProcessBound<T> {
    pid: u32,
    value: Option<T>,
}

/// A value created before a fork was used in the child.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "this {what} was created in process {parent} and cannot be used in process {child}, \
     a fork of it: its connection lives on threads that fork() does not copy. Connect again \
     in the child (mehr.connect()), or start workers with multiprocessing's 'spawn' method"
)]
pub(crate) struct Forked {
    what: &'static str,
    parent: u32,
    child: u32,
}

impl<T> ProcessBound<T> {
    /// Binds `value` to the current process.
    pub(crate) fn new(value: T) -> Self {
        ProcessBound {
            pid: std::process::id(),
            value: Some(value),
        }
    }

    /// The value, unless this is a forked child of the process that created it. `what`
    /// names the object in the error ("Client", "Serving", …).
    pub(crate) fn get(&self, what: &'static str) -> Result<&T, Forked> {
        let child = std::process::id();
        match &self.value {
            Some(value) if self.pid == child => Ok(value),
            _ => Err(Forked {
                what,
                parent: self.pid,
                child,
            }),
        }
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if self.pid != std::process::id()
            && let Some(value) = self.value.take()
        {
            std::mem::forget(value);
        }
    }
}
