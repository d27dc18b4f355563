//! The shared sandbox: one engine, the deployed modules, and the epoch ticker.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, Linker, OptLevel,
    PoolingAllocationConfig,
};

use crate::deploy::{DeployRules, DeployedModule};
use crate::epoch::EpochTicker;
use crate::invoke::{self, CallContext};
use crate::limiter::MAX_TABLE_ELEMENTS;
use crate::{DeployError, InvokeError, Limits, ModuleId, Output, Tier};

/// Settings fixed for the life of a [`Runtime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Directory for wasmtime's on-disk compilation cache, so that modules deployed again after
    /// a restart load instead of recompiling. `None` disables the disk cache. The directory is
    /// created if missing; this crate does no other file I/O.
    pub cache_dir: Option<PathBuf>,
    /// The most any call may ask for; [`Runtime::invoke`] refuses limits above these.
    pub ceilings: Limits,
    /// Largest module accepted by [`Runtime::deploy`], in bytes.
    pub max_module_bytes: usize,
    /// Number of calls that can run at once. Each reserves a pooled instance slot (address
    /// space only until used); a call beyond this fails fast with [`InvokeError::Busy`].
    pub max_concurrent_calls: u32,
    /// Period of the epoch ticker. Deadlines are honoured to within one tick.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    /// Full-tier ceilings, no disk cache, 8 MiB modules, 256 concurrent calls, 10 ms ticks.
    fn default() -> Self {
        Self {
            cache_dir: None,
            ceilings: Tier::Full.limits(),
            max_module_bytes: 8 * 1024 * 1024,
            max_concurrent_calls: 256,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The compilation cache directory could not be created or resolved.
    #[error("compilation cache directory {path}: {source}")]
    CacheDir {
        /// The directory given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused the configuration (for example the cache settings, or the host could
    /// not reserve the instance pool's address space).
    #[error("wasmtime engine: {reason}")]
    Engine {
        /// What wasmtime reported.
        reason: String,
    },
    /// The configuration itself is inconsistent.
    #[error("invalid runtime config: {reason}")]
    Config {
        /// Which setting is wrong and why.
        reason: String,
    },
    /// The epoch ticker thread could not be started.
    #[error("could not start the epoch ticker thread: {source}")]
    Ticker {
        /// The I/O error from spawning the thread.
        source: std::io::Error,
    },
}

/// Hits and misses of the on-disk compilation cache since the runtime started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules loaded from the cache.
    pub hits: usize,
    /// Modules compiled and written to the cache.
    pub misses: usize,
}

/// The WASM sandbox: deploys modules and invokes their functions under [`Limits`].
///
/// `Runtime` is `Send + Sync`; share one behind an `Arc` and call it from many threads (from
/// async code, inside `spawn_blocking`: a call blocks for up to its deadline). Each call gets a
/// fresh store and instance, so calls never see each other's memory or globals.
pub struct Runtime {
    engine: Engine,
    linker: Linker<crate::limiter::CallState>,
    modules: RwLock<HashMap<ModuleId, Arc<DeployedModule>>>,
    config: RuntimeConfig,
    cache: Option<Cache>,
    // Declared last so it is dropped last; it only needs the engine it owns a handle to.
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .field("modules", &self.module_count())
            .finish_non_exhaustive()
    }
}

/// A 32-bit linear memory can never exceed 4 GiB; pool slots are sized to that so that any
/// module's declared memory passes the pool and meets this crate's own, clearer check.
const MAX_32BIT_MEMORY: usize = 1 << 32;

/// Bytes of each pooled memory and table that are zeroed in place, rather than returned to the
/// kernel, when a call ends: small calls then reuse warm pages instead of faulting fresh ones.
const KEEP_RESIDENT_BYTES: usize = 64 * 1024;

impl Runtime {
    /// Builds the engine (fuel metering, epoch interruption, pooling allocator, deterministic
    /// floats) and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError::Config {
                reason: "epoch_tick must be longer than zero".to_owned(),
            });
        }
        if config.max_concurrent_calls == 0 {
            return Err(RuntimeError::Config {
                reason: "max_concurrent_calls must be at least 1".to_owned(),
            });
        }
        if config.ceilings.memory_bytes > MAX_32BIT_MEMORY as u64 {
            return Err(RuntimeError::Config {
                reason: format!(
                    "ceilings.memory_bytes is {}, a 32-bit memory holds at most {MAX_32BIT_MEMORY}",
                    config.ceilings.memory_bytes
                ),
            });
        }

        let cache = match &config.cache_dir {
            Some(dir) => Some(open_cache(dir)?),
            None => None,
        };
        let engine = Engine::new(&engine_config(&config, cache.clone())).map_err(|err| {
            RuntimeError::Engine {
                reason: format!("{err:#}"),
            }
        })?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|source| RuntimeError::Ticker { source })?;
        Ok(Self {
            linker: Linker::new(&engine),
            engine,
            modules: RwLock::new(HashMap::new()),
            config,
            cache,
            _ticker: ticker,
        })
    }

    /// Validates, compiles and keeps a module; returns its id (Blake3 of `wasm`).
    ///
    /// Deploying bytes that are already deployed returns the same id without recompiling.
    pub fn deploy(&self, wasm: &[u8]) -> Result<ModuleId, DeployError> {
        let id = ModuleId::of_wasm(wasm);
        if self.contains(&id) {
            return Ok(id);
        }
        let rules = DeployRules {
            max_module_bytes: self.config.max_module_bytes,
            max_memory_bytes: self.config.ceilings.memory_bytes,
        };
        let module = DeployedModule::compile(&self.engine, &self.linker, wasm, rules)?;
        tracing::debug!(module = %id, functions = ?module.function_names(), "deployed WASM module");
        self.modules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(module));
        Ok(id)
    }

    /// Calls `function` of module `module` with `input` under `limits`.
    ///
    /// Blocks the calling thread until the function returns or a limit stops it.
    pub fn invoke(
        &self,
        module: &ModuleId,
        function: &str,
        input: &[u8],
        limits: &Limits,
    ) -> Result<Output, InvokeError> {
        if let Some((field, requested, ceiling)) = limits.first_excess(&self.config.ceilings) {
            return Err(InvokeError::LimitAboveCeiling {
                field,
                requested,
                ceiling,
            });
        }
        if input.len() > limits.max_input_bytes as usize {
            return Err(InvokeError::InputTooLarge {
                len: input.len(),
                limit: limits.max_input_bytes,
            });
        }
        let deployed = self
            .module(module)
            .ok_or(InvokeError::UnknownModule { id: *module })?;
        let entry =
            deployed
                .abi
                .functions
                .get(function)
                .ok_or_else(|| InvokeError::UnknownFunction {
                    name: function.to_owned(),
                })?;
        let context = CallContext {
            engine: &self.engine,
            epoch_tick: self.config.epoch_tick,
            instance_slots: self.config.max_concurrent_calls,
        };
        invoke::call(&context, &deployed, entry, input, limits)
    }

    /// Whether a module with this id is deployed.
    pub fn contains(&self, module: &ModuleId) -> bool {
        self.modules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(module)
    }

    /// The callable function names of a deployed module, sorted; `None` if it is not deployed.
    pub fn functions(&self, module: &ModuleId) -> Option<Vec<String>> {
        self.module(module)
            .map(|deployed| deployed.function_names())
    }

    /// Forgets a module; calls already running finish normally. Returns whether it was deployed.
    pub fn remove(&self, module: &ModuleId) -> bool {
        self.modules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(module)
            .is_some()
    }

    /// Number of deployed modules.
    pub fn module_count(&self) -> usize {
        self.modules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Statistics of the on-disk compilation cache; `None` when it is disabled.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|cache| CacheStats {
            hits: cache.cache_hits(),
            misses: cache.cache_misses(),
        })
    }

    fn module(&self, module: &ModuleId) -> Option<Arc<DeployedModule>> {
        self.modules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(module)
            .cloned()
    }
}

fn open_cache(dir: &std::path::Path) -> Result<Cache, RuntimeError> {
    let io_error = |source| RuntimeError::CacheDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    // wasmtime requires an absolute cache path.
    let absolute = std::fs::canonicalize(dir).map_err(io_error)?;
    let mut cache_config = CacheConfig::new();
    cache_config.with_directory(absolute);
    Cache::new(cache_config).map_err(|err| RuntimeError::Engine {
        reason: format!("{err:#}"),
    })
}

fn engine_config(config: &RuntimeConfig, cache: Option<Cache>) -> Config {
    let mut engine = Config::new();
    engine
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        // Same input, same output and same fuel on every provider, so results can be compared
        // by verification tiers that re-run a job elsewhere.
        .cranelift_nan_canonicalization(true)
        .wasm_relaxed_simd(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        // Error messages name only the innermost frame; capturing a deep stack on every
        // overflow would make that failure needlessly slow.
        .wasm_backtrace_max_frames(NonZeroUsize::new(4))
        .cache(cache);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_concurrent_calls)
        .total_memories(config.max_concurrent_calls)
        .total_tables(config.max_concurrent_calls)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_32BIT_MEMORY)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    engine.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Runtime>();
    }

    #[test]
    fn rejects_inconsistent_config() {
        let zero_tick = RuntimeConfig {
            epoch_tick: Duration::ZERO,
            ..RuntimeConfig::default()
        };
        assert!(matches!(
            Runtime::new(zero_tick),
            Err(RuntimeError::Config { .. })
        ));
        let no_slots = RuntimeConfig {
            max_concurrent_calls: 0,
            ..RuntimeConfig::default()
        };
        assert!(matches!(
            Runtime::new(no_slots),
            Err(RuntimeError::Config { .. })
        ));
        let huge_memory = RuntimeConfig {
            ceilings: Limits {
                memory_bytes: 1 << 33,
                ..Tier::Full.limits()
            },
            ..RuntimeConfig::default()
        };
        assert!(matches!(
            Runtime::new(huge_memory),
            Err(RuntimeError::Config { .. })
        ));
    }
}
