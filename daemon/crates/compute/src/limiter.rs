//! Per-call store state: the resource limiter that enforces the memory limit and remembers
//! whether it refused anything.

use wasmtime::ResourceLimiter;

/// Largest table a module may have or grow to, in elements. Tables hold function references
/// for indirect calls; compilers emit one table sized to the number of address-taken functions.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The data a call's `Store` carries.
#[derive(Debug)]
pub(crate) struct CallState {
    pub(crate) limiter: CallLimiter,
}

impl CallState {
    pub(crate) fn new(memory_limit_bytes: u64) -> Self {
        Self {
            limiter: CallLimiter {
                memory_limit_bytes: usize::try_from(memory_limit_bytes).unwrap_or(usize::MAX),
                memory_refused: false,
            },
        }
    }
}

/// Refuses memory growth past the call's limit.
///
/// A refused `memory.grow` returns -1 to the guest, as the WASM spec says it must, so a guest
/// that handles allocation failure can still answer. The refusal is remembered: if the call then
/// fails (typically a guest allocator aborting), the failure is reported as a memory-limit error
/// rather than as an anonymous trap.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    memory_limit_bytes: usize,
    memory_refused: bool,
}

impl CallLimiter {
    /// Whether any memory growth (including the initial allocation) was refused in this call.
    pub(crate) fn memory_refused(&self) -> bool {
        self.memory_refused
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    // One instance with one memory and at most one table per call; anything more is a module
    // this ABI does not describe.
    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_growth_past_the_limit_and_remembers() {
        let mut state = CallState::new(2 * 65536);
        let limiter = &mut state.limiter;
        assert!(limiter.memory_growing(0, 65536, None).unwrap());
        assert!(limiter.memory_growing(65536, 2 * 65536, None).unwrap());
        assert!(!limiter.memory_refused());
        assert!(!limiter.memory_growing(2 * 65536, 3 * 65536, None).unwrap());
        assert!(limiter.memory_refused());
    }

    #[test]
    fn caps_tables() {
        let mut state = CallState::new(0);
        let limiter = &mut state.limiter;
        assert!(limiter.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }
}
