//! Running one function call in a fresh store, and classifying how it ended.

use std::time::{Duration, Instant};

use wasmtime::{Engine, Instance, Store, Trap, WasmBacktrace};

use crate::abi::unpack_result;
use crate::deploy::DeployedModule;
use crate::epoch::EpochTicker;
use crate::limiter::CallState;
use crate::{Limits, ModuleId};

/// The result of a successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The bytes the function returned.
    pub bytes: Vec<u8>,
    /// Fuel burnt, including instantiation and the `mehr_alloc` call that received the input.
    /// This is the quantity a `PerCycle` agreement prices.
    pub fuel_used: u64,
}

/// Why a call produced no output. After any of these the runtime is unaffected and the next
/// call proceeds normally.
///
/// Variants raised after the guest started running carry `fuel_used`, so the caller can still
/// charge for the work done (see [`InvokeError::fuel_used`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// No module with this id is deployed.
    #[error("module {id} is not deployed")]
    UnknownModule {
        /// The id that was asked for.
        id: ModuleId,
    },
    /// The module exports no function of this name with the entry-point signature.
    #[error("module has no function `{name}` of type (param i32 i32) (result i64)")]
    UnknownFunction {
        /// The name that was asked for.
        name: String,
    },
    /// The limits ask for more than this runtime grants.
    #[error("limit {field} = {requested} exceeds this runtime's ceiling of {ceiling}")]
    LimitAboveCeiling {
        /// Which limit (`fuel`, `memory_bytes`, `deadline_ns`, `max_input_bytes`,
        /// `max_output_bytes`).
        field: &'static str,
        /// The value asked for.
        requested: u64,
        /// The most this runtime grants.
        ceiling: u64,
    },
    /// The input is larger than the call's input limit.
    #[error("input is {len} bytes, the limit is {limit}")]
    InputTooLarge {
        /// Size of the input.
        len: usize,
        /// The call's input limit.
        limit: u32,
    },
    /// Every instance slot of the runtime is in use by other calls; retry later.
    #[error("all {capacity} instance slots are busy")]
    Busy {
        /// Number of calls the runtime runs at once.
        capacity: u32,
    },
    /// The call burnt all the fuel it was given.
    #[error("out of fuel: the limit of {limit} was used up")]
    OutOfFuel {
        /// The fuel limit, which is also the fuel used.
        limit: u64,
    },
    /// The guest needed more memory than the call's limit (its initial memory, or a growth
    /// that was refused before the call failed).
    #[error("memory limit of {limit} bytes reached")]
    MemoryLimit {
        /// The call's memory limit in bytes.
        limit: u64,
        /// Fuel burnt before the call failed.
        fuel_used: u64,
    },
    /// The call ran past its wall-clock deadline and was interrupted.
    #[error("deadline exceeded after {elapsed:?}")]
    Deadline {
        /// Time from the start of the call to the interruption.
        elapsed: Duration,
        /// Fuel burnt before the interruption.
        fuel_used: u64,
    },
    /// The guest trapped: `unreachable`, division by zero, out-of-bounds access, stack
    /// exhaustion, and so on.
    #[error("guest trapped: {message}")]
    Trap {
        /// The trap and the WASM backtrace.
        message: String,
        /// Fuel burnt before the trap.
        fuel_used: u64,
    },
    /// `mehr_alloc` returned a region that does not lie inside the guest's memory.
    #[error("mehr_alloc returned {ptr:#x} for {len} bytes, outside the {memory_size}-byte memory")]
    BadInputPointer {
        /// Address returned by the allocator.
        ptr: u32,
        /// Bytes asked for.
        len: u32,
        /// Size of the guest memory.
        memory_size: usize,
        /// Fuel burnt by instantiation and the allocator.
        fuel_used: u64,
    },
    /// The function returned an output longer than the call's output limit.
    #[error("function returned {len} bytes of output, the limit is {limit}")]
    OutputTooLarge {
        /// Output length the function returned.
        len: u32,
        /// The call's output limit.
        limit: u32,
        /// Fuel burnt by the call.
        fuel_used: u64,
    },
    /// The function returned an output region that does not lie inside the guest's memory.
    #[error("function returned output {ptr:#x}+{len}, outside the {memory_size}-byte memory")]
    BadOutputPointer {
        /// Output address the function returned.
        ptr: u32,
        /// Output length the function returned.
        len: u32,
        /// Size of the guest memory.
        memory_size: usize,
        /// Fuel burnt by the call.
        fuel_used: u64,
    },
    /// Instantiation failed for a reason other than the limits above (for instance the host
    /// could not map memory).
    #[error("could not instantiate the module: {reason}")]
    Instantiate {
        /// What wasmtime reported.
        reason: String,
    },
}

impl InvokeError {
    /// Fuel the guest burnt before the call failed; zero for errors raised before it ran.
    pub fn fuel_used(&self) -> u64 {
        match self {
            InvokeError::OutOfFuel { limit } => *limit,
            InvokeError::MemoryLimit { fuel_used, .. }
            | InvokeError::Deadline { fuel_used, .. }
            | InvokeError::Trap { fuel_used, .. }
            | InvokeError::BadInputPointer { fuel_used, .. }
            | InvokeError::OutputTooLarge { fuel_used, .. }
            | InvokeError::BadOutputPointer { fuel_used, .. } => *fuel_used,
            InvokeError::UnknownModule { .. }
            | InvokeError::UnknownFunction { .. }
            | InvokeError::LimitAboveCeiling { .. }
            | InvokeError::InputTooLarge { .. }
            | InvokeError::Busy { .. }
            | InvokeError::Instantiate { .. } => 0,
        }
    }
}

/// What a call needs from the runtime besides the module.
pub(crate) struct CallContext<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) epoch_tick: Duration,
    pub(crate) instance_slots: u32,
}

/// How a call stopped before producing output, before classification.
enum Stop {
    /// wasmtime reported an error (trap, interruption, instantiation failure).
    Wasm(wasmtime::Error),
    /// The guest broke the ABI; the error is final.
    Abi(InvokeError),
}

impl From<wasmtime::Error> for Stop {
    fn from(err: wasmtime::Error) -> Self {
        Stop::Wasm(err)
    }
}

/// Runs `function` of `module` on `input` in a fresh store under `limits`.
///
/// The caller has already checked the limits against the runtime's ceilings, the input size and
/// that `function` exists.
pub(crate) fn call(
    context: &CallContext<'_>,
    module: &DeployedModule,
    function: &wasmtime::ModuleExport,
    input: &[u8],
    limits: &Limits,
) -> Result<Output, InvokeError> {
    let started = Instant::now();
    let mut store = Store::new(context.engine, CallState::new(limits.memory_bytes));
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(EpochTicker::ticks_for(limits.deadline, context.epoch_tick));
    store.epoch_deadline_trap();
    if let Err(err) = store.set_fuel(limits.fuel) {
        // Only fails when fuel metering is off, which the runtime's engine never is.
        return Err(InvokeError::Instantiate {
            reason: format!("{err:#}"),
        });
    }

    let outcome = run(&mut store, module, function, input, limits);
    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    match outcome {
        Ok(bytes) => Ok(Output { bytes, fuel_used }),
        Err(Stop::Abi(err)) => Err(with_fuel(err, fuel_used)),
        Err(Stop::Wasm(err)) => Err(classify(
            &err,
            &store,
            limits,
            started.elapsed(),
            fuel_used,
            context.instance_slots,
        )),
    }
}

fn run(
    store: &mut Store<CallState>,
    module: &DeployedModule,
    function: &wasmtime::ModuleExport,
    input: &[u8],
    limits: &Limits,
) -> Result<Vec<u8>, Stop> {
    let instance: Instance = module.pre.instantiate(&mut *store)?;
    let missing = |what: &str| {
        // The ABI was checked at deploy time against this very module, so this is a bug here.
        Stop::Abi(InvokeError::Instantiate {
            reason: format!("export `{what}` vanished after validation"),
        })
    };
    let memory = instance
        .get_module_export(&mut *store, &module.abi.memory)
        .and_then(|export| export.into_memory())
        .ok_or_else(|| missing(crate::abi::MEMORY_EXPORT))?;
    let alloc = instance
        .get_module_export(&mut *store, &module.abi.alloc)
        .and_then(|export| export.into_func())
        .ok_or_else(|| missing(crate::abi::ALLOC_EXPORT))?
        .typed::<i32, i32>(&*store)?;
    let entry = instance
        .get_module_export(&mut *store, function)
        .and_then(|export| export.into_func())
        .ok_or_else(|| missing("function"))?
        .typed::<(i32, i32), i64>(&*store)?;

    // The caller capped the input at a u32 limit, so its length fits in 32 bits.
    let input_len = u32::try_from(input.len()).map_err(|_| {
        Stop::Abi(InvokeError::InputTooLarge {
            len: input.len(),
            limit: limits.max_input_bytes,
        })
    })?;
    let input_ptr = alloc.call(&mut *store, input_len as i32)? as u32;
    memory
        .write(&mut *store, input_ptr as usize, input)
        .map_err(|_| {
            Stop::Abi(InvokeError::BadInputPointer {
                ptr: input_ptr,
                len: input_len,
                memory_size: memory.data_size(&*store),
                fuel_used: 0,
            })
        })?;

    let packed = entry.call(&mut *store, (input_ptr as i32, input_len as i32))?;
    let (out_ptr, out_len) = unpack_result(packed);
    if out_len > limits.max_output_bytes {
        return Err(Stop::Abi(InvokeError::OutputTooLarge {
            len: out_len,
            limit: limits.max_output_bytes,
            fuel_used: 0,
        }));
    }
    let memory_size = memory.data_size(&*store);
    let bad_output = || {
        Stop::Abi(InvokeError::BadOutputPointer {
            ptr: out_ptr,
            len: out_len,
            memory_size,
            fuel_used: 0,
        })
    };
    let output_region = region(out_ptr, out_len, memory_size).ok_or_else(bad_output)?;
    memory
        .data(&*store)
        .get(output_region)
        .map(<[u8]>::to_vec)
        .ok_or_else(bad_output)
}

/// The byte range `ptr..ptr + len` if it lies inside a memory of `memory_size` bytes.
fn region(ptr: u32, len: u32, memory_size: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= memory_size).then_some(start..end)
}

/// Fills in the fuel of an ABI error, which is only known once the store stops.
fn with_fuel(err: InvokeError, fuel: u64) -> InvokeError {
    match err {
        InvokeError::BadInputPointer {
            ptr,
            len,
            memory_size,
            ..
        } => InvokeError::BadInputPointer {
            ptr,
            len,
            memory_size,
            fuel_used: fuel,
        },
        InvokeError::OutputTooLarge { len, limit, .. } => InvokeError::OutputTooLarge {
            len,
            limit,
            fuel_used: fuel,
        },
        InvokeError::BadOutputPointer {
            ptr,
            len,
            memory_size,
            ..
        } => InvokeError::BadOutputPointer {
            ptr,
            len,
            memory_size,
            fuel_used: fuel,
        },
        other => other,
    }
}

/// Names the cause of a wasmtime error. Fuel and deadline come first: they are what stopped
/// the guest, even if it had also been refused memory earlier.
fn classify(
    err: &wasmtime::Error,
    store: &Store<CallState>,
    limits: &Limits,
    elapsed: Duration,
    fuel_used: u64,
    instance_slots: u32,
) -> InvokeError {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => InvokeError::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => InvokeError::Deadline { elapsed, fuel_used },
        _ if store.data().limiter.memory_refused() => InvokeError::MemoryLimit {
            limit: limits.memory_bytes,
            fuel_used,
        },
        Some(trap) => InvokeError::Trap {
            message: trap_message(*trap, err),
            fuel_used,
        },
        None if err.is::<wasmtime::PoolConcurrencyLimitError>() => InvokeError::Busy {
            capacity: instance_slots,
        },
        None => InvokeError::Instantiate {
            reason: format!("{err:#}"),
        },
    }
}

/// The trap's cause and where the guest was, without the full backtrace (a stack overflow
/// would otherwise produce one line per frame).
fn trap_message(trap: Trap, err: &wasmtime::Error) -> String {
    let frame = err
        .downcast_ref::<WasmBacktrace>()
        .and_then(|backtrace| backtrace.frames().first());
    match frame {
        Some(frame) => {
            let function = match frame.func_name() {
                Some(name) => format!("`{name}`"),
                None => format!("#{}", frame.func_index()),
            };
            match frame.module_offset() {
                Some(offset) => format!("{trap} in function {function} at offset {offset:#x}"),
                None => format!("{trap} in function {function}"),
            }
        }
        None => trap.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_bounds_checked() {
        assert_eq!(region(0, 0, 0), Some(0..0));
        assert_eq!(region(10, 6, 16), Some(10..16));
        assert_eq!(region(10, 7, 16), None);
        assert_eq!(region(u32::MAX, u32::MAX, u32::MAX as usize), None);
        assert_eq!(region(u32::MAX, 1, u32::MAX as usize), None);
        assert_eq!(region(16, 0, 16), Some(16..16));
        assert_eq!(region(17, 0, 16), None);
    }

    #[test]
    fn fuel_is_reported_for_failures_after_start_only() {
        assert_eq!(InvokeError::OutOfFuel { limit: 7 }.fuel_used(), 7);
        assert_eq!(
            InvokeError::Trap {
                message: String::new(),
                fuel_used: 3
            }
            .fuel_used(),
            3
        );
        assert_eq!(InvokeError::Busy { capacity: 1 }.fuel_used(), 0);
        assert_eq!(
            with_fuel(
                InvokeError::OutputTooLarge {
                    len: 9,
                    limit: 8,
                    fuel_used: 0
                },
                42
            )
            .fuel_used(),
            42
        );
    }
}
