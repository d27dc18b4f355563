//! The drain switch. The operator turns it (AdminService `Drain`, `mehr drain`); the API
//! refuses new calls while it is on, and so does every part that takes new work from peers —
//! the market declines agreement requests as busy and refuses jobs — so a drained node can be
//! restarted once what it already runs is done, wherever that work came from.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// A shared on/off switch; clones see the same state.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// True while the node takes no new work.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts (`true`) or ends a drain.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}
