//! The compute part: the function registry of this node and the dispatch of calls to a local
//! WASM module or to a function served by a connected SDK process.
//!
//! [`Compute`] owns the WASM sandbox (`mehr_compute::Runtime`), the deployed modules (kept in
//! RocksDB and compiled again at start-up) and the served functions of every open Serve
//! stream. A call is resolved by function id (see [`function_id`]), checked against the
//! function's limits, and then runs as an [`Invocation`] whose output the caller pulls piece
//! by piece. Remote invocation through the marketplace will resolve to another target kind
//! beside these two; callers of [`Compute::start_invocation`] will not change.
//!
//! The registry sits behind one lock that is never held across an await; deployments are
//! serialized by a second, async lock because they compile and write to disk.

pub mod function_id;
mod gate;
mod invocation;
mod modules;
mod seam;
mod served;
mod wasm;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use mehr_compute::{Limits, ModuleId, Runtime, RuntimeConfig, RuntimeError};
use tokio_util::sync::CancellationToken;

use self::{
    function_id::{FunctionRef, NameError, check_module_name, function_hash, wasm_function_id},
    gate::Gate,
    invocation::Target,
    served::{MAX_FUNCTIONS_PER_SESSION, ServedFunction, Session},
};
pub use self::{
    gate::GateError,
    invocation::{Chunk, Completed, Invocation, InvokeFailure, InvokeRequest, Metering},
    modules::{MODULES, ModuleRecord},
    served::{
        CancelReason, FromProvider, Outbound, RegistrationError, ServedFunctionSpec,
        SessionViolation, ToProvider,
    },
};
pub use crate::seams::functions::{FunctionKind, Price};
use crate::{
    config::ComputeConfig,
    events::{EventBus, EventKind, unix_ms_now},
    store::{Store, StoreError},
};

/// Directory under the data dir for the sandbox's compilation cache.
pub const COMPILE_CACHE_DIR: &str = "compute-cache";
/// Page size of ListFunctions when the caller names none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page of ListFunctions.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Room for the other fields of a message that carries a module, an input or an output.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// One function this node offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The id to call it by.
    pub function_id: String,
    /// Blake3 of the id: what the marketplace advertises.
    pub function_hash: [u8; 32],
    /// WASM or served.
    pub kind: FunctionKind,
    /// What it does (served functions).
    pub description: String,
    /// What a call costs.
    pub price: Price,
    /// Calls that may run at once (WASM: the sandbox slots, shared by all WASM functions).
    pub max_concurrency: u32,
    /// Largest input.
    pub max_input_bytes: u32,
    /// Calls running now (WASM: across all WASM functions).
    pub in_flight: u32,
    /// Calls waiting now (WASM: across all WASM functions).
    pub queued: u32,
    /// The module, for WASM functions.
    pub module_id: Option<ModuleId>,
    /// When it became available, milliseconds since the Unix epoch.
    pub available_since_unix_ms: u64,
}

/// One page of [`Compute::list_functions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionPage {
    /// Functions ordered by id.
    pub functions: Vec<FunctionInfo>,
    /// Token for the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

/// A deployed module, as DeployModule reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedModule {
    /// Blake3 of the bytes.
    pub module_id: ModuleId,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its function ids, sorted.
    pub function_ids: Vec<String>,
    /// False when the same bytes were already deployed.
    pub created: bool,
}

/// A removed module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedModule {
    /// Its id.
    pub module_id: ModuleId,
    /// The function ids no longer offered.
    pub function_ids: Vec<String>,
}

/// Why the compute part could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The sandbox could not be built.
    #[error("WASM sandbox: {0}")]
    Runtime(#[from] RuntimeError),
    /// The start-up task failed.
    #[error("compute start-up task failed: {0}")]
    Task(String),
}

/// Why a module was not deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The requested name is not acceptable.
    #[error("name `{name}` {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: NameError,
    },
    /// The sandbox refused the module.
    #[error(transparent)]
    Module(#[from] mehr_compute::DeployError),
    /// Another module has this name.
    #[error(
        "module name `{name}` is taken by module {module}; remove that module or pick another name"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// The module that has it.
        module: ModuleId,
    },
    /// The same bytes are deployed under another name (or none); names are fixed at the
    /// first deployment.
    #[error("module {module} is already deployed {}; remove it first to deploy it under another name", match .name { Some(n) => format!("as `{n}`"), None => "without a name".to_string() })]
    AlreadyDeployedAs {
        /// The module.
        module: ModuleId,
        /// Its current name.
        name: Option<String>,
    },
    /// The module could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The deployment task failed.
    #[error("deployment task failed: {0}")]
    Task(String),
}

/// Why a module was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// No module has this name or id.
    #[error("no module `{module}` on this node")]
    NotFound {
        /// What was asked for.
        module: String,
    },
    /// The store refused the deletion.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The removal task failed.
    #[error("removal task failed: {0}")]
    Task(String),
}

/// Why a page of functions could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The page token did not come from ListFunctions.
    #[error("page_token: not a token returned by ListFunctions")]
    BadPageToken,
}

/// The compute part. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Compute {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("runtime", &self.shared.runtime)
            .finish_non_exhaustive()
    }
}

struct Shared {
    runtime: Arc<Runtime>,
    store: Store,
    events: Arc<EventBus>,
    config: ComputeConfig,
    wasm_limits: Limits,
    wasm_gate: Arc<Gate>,
    registry: Mutex<Registry>,
    deployments: tokio::sync::Mutex<()>,
    next_session: AtomicU64,
    shutdown: CancellationToken,
    /// Calls started and refused, WASM then served: `[wasm started, wasm refused, served
    /// started, served refused]` (read by the metrics endpoint).
    calls: [AtomicU64; 4],
}

/// What the compute part is doing, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComputeLoad {
    /// WASM calls resolved and started.
    pub wasm_started: u64,
    /// WASM calls refused (unknown function or export, input too large).
    pub wasm_refused: u64,
    /// Calls of served functions started.
    pub served_started: u64,
    /// Calls of served functions refused.
    pub served_refused: u64,
    /// WASM calls running now.
    pub wasm_running: usize,
    /// WASM calls waiting for a slot now.
    pub wasm_queued: usize,
}

#[derive(Default)]
struct Registry {
    modules: BTreeMap<ModuleId, ModuleEntry>,
    names: HashMap<String, ModuleId>,
    served: BTreeMap<String, Arc<ServedFunction>>,
}

struct ModuleEntry {
    name: Option<String>,
    exports: Vec<String>,
    deployed_at_unix_ms: u64,
}

impl ModuleEntry {
    fn function_ids(&self, id: &ModuleId) -> Vec<String> {
        let mut ids: Vec<String> = self
            .exports
            .iter()
            .map(|export| wasm_function_id(id, self.name.as_deref(), export))
            .collect();
        ids.sort();
        ids
    }
}

/// The WASM limits `config` sets: every call's default and maximum.
pub fn wasm_limits(config: &ComputeConfig) -> Limits {
    Limits {
        fuel: config.wasm_fuel,
        memory_bytes: u64::from(config.wasm_memory_mib) * 1024 * 1024,
        deadline: Duration::from_millis(config.wasm_deadline_ms),
        max_input_bytes: config.wasm_max_input_bytes,
        max_output_bytes: config.wasm_max_output_bytes,
    }
}

impl Compute {
    /// Builds the sandbox and compiles every stored module (from the compilation cache under
    /// `data_dir` when enabled). A stored module that no longer deploys (for example after
    /// `max_module_bytes` was lowered) is logged, kept in the store, and not offered.
    /// Serve streams end when `shutdown` is cancelled.
    pub async fn start(
        config: &ComputeConfig,
        store: Store,
        events: Arc<EventBus>,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Compute, StartError> {
        let limits = wasm_limits(config);
        let runtime_config = RuntimeConfig {
            cache_dir: config
                .compile_cache
                .then(|| data_dir.join(COMPILE_CACHE_DIR)),
            ceilings: limits,
            max_module_bytes: config.max_module_bytes as usize,
            max_concurrent_calls: config.wasm_max_concurrent_calls,
            ..RuntimeConfig::default()
        };
        let loader_store = store.clone();
        let (runtime, registry) = tokio::task::spawn_blocking(move || {
            let runtime = Runtime::new(runtime_config)?;
            let registry = load_modules(&runtime, &loader_store);
            Ok::<_, RuntimeError>((runtime, registry))
        })
        .await
        .map_err(|e| StartError::Task(e.to_string()))??;
        tracing::info!(
            modules = registry.modules.len(),
            cache = ?runtime.cache_stats(),
            "compute started"
        );
        Ok(Compute {
            shared: Arc::new(Shared {
                runtime: Arc::new(runtime),
                store,
                events,
                wasm_limits: limits,
                wasm_gate: Arc::new(Gate::new(
                    config.wasm_max_concurrent_calls as usize,
                    config.max_queued_invocations as usize,
                )),
                config: config.clone(),
                registry: Mutex::new(registry),
                deployments: tokio::sync::Mutex::new(()),
                next_session: AtomicU64::new(1),
                calls: Default::default(),
                shutdown,
            }),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The largest gRPC message the compute API must accept: a module, an input or an output
    /// at the configured limits, plus room for the other fields.
    pub fn max_message_bytes(&self) -> usize {
        let config = &self.shared.config;
        [
            config.max_module_bytes,
            config.wasm_max_input_bytes,
            config.wasm_max_output_bytes,
            config.served_max_input_bytes,
            config.served_max_output_bytes,
        ]
        .into_iter()
        .max()
        .unwrap_or(0) as usize
            + MESSAGE_OVERHEAD
    }

    /// Validates, compiles and stores a module, and offers its functions. Deploying the same
    /// bytes again (with the same name or none) changes nothing.
    pub async fn deploy_module(
        &self,
        wasm: Vec<u8>,
        name: Option<String>,
    ) -> Result<DeployedModule, DeployError> {
        if let Some(name) = &name {
            check_module_name(name).map_err(|reason| DeployError::InvalidName {
                name: name.clone(),
                reason,
            })?;
        }
        let module_id = ModuleId::of_wasm(&wasm);
        let _one_at_a_time = self.shared.deployments.lock().await;
        {
            let registry = self.registry();
            if let Some(entry) = registry.modules.get(&module_id) {
                if name.is_some() && name != entry.name {
                    return Err(DeployError::AlreadyDeployedAs {
                        module: module_id,
                        name: entry.name.clone(),
                    });
                }
                return Ok(DeployedModule {
                    module_id,
                    name: entry.name.clone(),
                    function_ids: entry.function_ids(&module_id),
                    created: false,
                });
            }
            if let Some(name) = &name
                && let Some(other) = registry.names.get(name)
            {
                return Err(DeployError::NameTaken {
                    name: name.clone(),
                    module: *other,
                });
            }
        }

        let record = ModuleRecord {
            name,
            deployed_at_unix_ms: unix_ms_now(),
            wasm,
        };
        let runtime = self.shared.runtime.clone();
        let store = self.shared.store.clone();
        let (record, exports) = tokio::task::spawn_blocking(move || {
            let deployed = runtime.deploy(&record.wasm)?;
            debug_assert_eq!(deployed, module_id);
            let exports = runtime.functions(&module_id).unwrap_or_default();
            if let Err(e) = store.put(MODULES, module_id.as_bytes(), &record) {
                runtime.remove(&module_id);
                return Err(DeployError::Store(e));
            }
            Ok((record, exports))
        })
        .await
        .map_err(|e| DeployError::Task(e.to_string()))??;

        let entry = ModuleEntry {
            name: record.name.clone(),
            exports,
            deployed_at_unix_ms: record.deployed_at_unix_ms,
        };
        let function_ids = entry.function_ids(&module_id);
        {
            let mut registry = self.registry();
            if let Some(name) = &entry.name {
                registry.names.insert(name.clone(), module_id);
            }
            registry.modules.insert(module_id, entry);
        }
        for function_id in &function_ids {
            self.shared.events.publish(EventKind::FunctionRegistered {
                function_id: function_id.clone(),
                kind: FunctionKind::Wasm,
            });
        }
        tracing::info!(module = %module_id, name = ?record.name, functions = ?function_ids, "module deployed");
        Ok(DeployedModule {
            module_id,
            name: record.name,
            function_ids,
            created: true,
        })
    }

    /// Stops offering a module (named, or by id in hex) and deletes it. Running calls finish.
    pub async fn remove_module(&self, module: &str) -> Result<RemovedModule, RemoveError> {
        let _one_at_a_time = self.shared.deployments.lock().await;
        let by_id = module.parse::<ModuleId>().ok();
        let found = {
            let registry = self.registry();
            by_id
                .filter(|id| registry.modules.contains_key(id))
                .or_else(|| registry.names.get(module).copied())
        };
        // A stored module that failed to compile at start-up is not in the registry, but can
        // still be deleted by id.
        let module_id = match (found, by_id) {
            (Some(id), _) => id,
            (None, Some(id)) if self.shared.store.get(MODULES, id.as_bytes())?.is_some() => id,
            _ => {
                return Err(RemoveError::NotFound {
                    module: module.to_string(),
                });
            }
        };
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = store.batch();
            batch.delete(MODULES, module_id.as_bytes());
            store.commit(batch)
        })
        .await
        .map_err(|e| RemoveError::Task(e.to_string()))??;

        let entry = {
            let mut registry = self.registry();
            let entry = registry.modules.remove(&module_id);
            if let Some(name) = entry.as_ref().and_then(|e| e.name.as_ref()) {
                registry.names.remove(name);
            }
            entry
        };
        self.shared.runtime.remove(&module_id);
        let function_ids = entry
            .map(|e| e.function_ids(&module_id))
            .unwrap_or_default();
        for function_id in &function_ids {
            self.shared.events.publish(EventKind::FunctionUnregistered {
                function_id: function_id.clone(),
                kind: FunctionKind::Wasm,
                reason: "module removed".into(),
            });
        }
        tracing::info!(module = %module_id, "module removed");
        Ok(RemovedModule {
            module_id,
            function_ids,
        })
    }

    /// One page of the functions this node offers, ordered by id. `page_token` is empty for
    /// the first page; `page_size` 0 means [`DEFAULT_PAGE_SIZE`], and it is capped at
    /// [`MAX_PAGE_SIZE`].
    pub fn list_functions(
        &self,
        page_token: &str,
        page_size: usize,
    ) -> Result<FunctionPage, ListError> {
        let after = if page_token.is_empty() {
            None
        } else {
            let bytes = hex::decode(page_token).map_err(|_| ListError::BadPageToken)?;
            Some(String::from_utf8(bytes).map_err(|_| ListError::BadPageToken)?)
        };
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut all = self.all_functions();
        all.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        let mut page: Vec<FunctionInfo> = all
            .into_iter()
            .filter(|f| after.as_ref().is_none_or(|after| f.function_id > *after))
            .take(size + 1)
            .collect();
        let next_page_token = if page.len() > size {
            page.truncate(size);
            page.last().map(|f| hex::encode(&f.function_id))
        } else {
            None
        };
        Ok(FunctionPage {
            functions: page,
            next_page_token,
        })
    }

    fn all_functions(&self) -> Vec<FunctionInfo> {
        let config = &self.shared.config;
        let gate = &self.shared.wasm_gate;
        let registry = self.registry();
        let mut functions = Vec::new();
        for (module_id, entry) in &registry.modules {
            for export in &entry.exports {
                let function_id = wasm_function_id(module_id, entry.name.as_deref(), export);
                functions.push(FunctionInfo {
                    function_hash: function_hash(&function_id),
                    function_id,
                    kind: FunctionKind::Wasm,
                    description: String::new(),
                    price: Price::PerMillionFuel(config.wasm_price_per_million_fuel_umhr),
                    max_concurrency: config.wasm_max_concurrent_calls,
                    max_input_bytes: config.wasm_max_input_bytes,
                    in_flight: count(gate.in_flight()),
                    queued: count(gate.queued()),
                    module_id: Some(*module_id),
                    available_since_unix_ms: entry.deployed_at_unix_ms,
                });
            }
        }
        for (name, function) in &registry.served {
            let spec = &function.spec;
            functions.push(FunctionInfo {
                function_id: name.clone(),
                function_hash: function_hash(name),
                kind: FunctionKind::Served,
                description: spec.description.clone(),
                price: Price::PerInvocation(spec.price_per_invocation_umhr),
                max_concurrency: spec.max_concurrency,
                max_input_bytes: spec.max_input_bytes,
                in_flight: count(function.gate.in_flight()),
                queued: count(function.gate.queued()),
                module_id: None,
                available_since_unix_ms: function.registered_at_unix_ms,
            });
        }
        functions
    }

    /// Resolves and checks a call; the returned [`Invocation`] runs it as its output is
    /// pulled. Waiting for a free slot happens then, within the call's deadline.
    pub fn start_invocation(&self, request: InvokeRequest) -> Result<Invocation, InvokeFailure> {
        let served = matches!(
            FunctionRef::parse(&request.function_id),
            FunctionRef::Served(_)
        );
        let started = self.resolve_invocation(request);
        let counter = usize::from(served) * 2 + usize::from(started.is_err());
        self.shared.calls[counter].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        started
    }

    /// What the part is doing now and has done (see [`ComputeLoad`]).
    pub fn load(&self) -> ComputeLoad {
        let calls = |i: usize| self.shared.calls[i].load(std::sync::atomic::Ordering::Relaxed);
        ComputeLoad {
            wasm_started: calls(0),
            wasm_refused: calls(1),
            served_started: calls(2),
            served_refused: calls(3),
            wasm_running: self.shared.wasm_gate.in_flight(),
            wasm_queued: self.shared.wasm_gate.queued(),
        }
    }

    fn resolve_invocation(&self, request: InvokeRequest) -> Result<Invocation, InvokeFailure> {
        let InvokeRequest {
            function_id,
            input,
            deadline,
            max_fuel,
            deadline_cap,
        } = request;
        if function_id.is_empty() {
            return Err(InvokeFailure::EmptyFunctionId);
        }
        let config = &self.shared.config;
        let cap = |d: Duration| deadline_cap.map_or(d, |cap| d.min(cap));
        let unknown = || InvokeFailure::UnknownFunction {
            function_id: function_id.clone(),
        };
        let registry = self.registry();
        let (canonical, target, deadline, max_input) = match FunctionRef::parse(&function_id) {
            FunctionRef::Served(name) => {
                let function = registry.served.get(name).cloned().ok_or_else(unknown)?;
                let default = Duration::from_millis(config.served_default_deadline_ms);
                let max = Duration::from_millis(config.served_max_deadline_ms);
                let deadline = cap(deadline.unwrap_or(default).min(max));
                let max_input = u64::from(function.spec.max_input_bytes);
                let target = Target::Served {
                    function,
                    max_output: config.served_max_output_bytes as usize,
                };
                (name.to_string(), target, deadline, max_input)
            }
            wasm_ref => {
                let (module_id, export) = match wasm_ref {
                    FunctionRef::WasmById { module, export } => (module, export),
                    FunctionRef::WasmByName { module, export } => {
                        (*registry.names.get(module).ok_or_else(unknown)?, export)
                    }
                    FunctionRef::Served(_) => return Err(unknown()),
                };
                let entry = registry.modules.get(&module_id).ok_or_else(unknown)?;
                if !entry.exports.iter().any(|e| e == export) {
                    return Err(unknown());
                }
                let node = self.shared.wasm_limits;
                let deadline = cap(deadline.map_or(node.deadline, |d| d.min(node.deadline)));
                let limits = Limits {
                    fuel: max_fuel.map_or(node.fuel, |f| f.min(node.fuel)),
                    deadline,
                    ..node
                };
                let target = Target::Wasm {
                    runtime: self.shared.runtime.clone(),
                    gate: self.shared.wasm_gate.clone(),
                    module: module_id,
                    export: export.to_string(),
                    limits,
                };
                let canonical = wasm_function_id(&module_id, entry.name.as_deref(), export);
                (canonical, target, deadline, u64::from(node.max_input_bytes))
            }
        };
        drop(registry);
        if input.len() as u64 > max_input {
            return Err(InvokeFailure::InputTooLarge {
                function_id: canonical,
                len: input.len(),
                limit: max_input,
            });
        }
        Ok(Invocation::new(canonical, target, input, deadline))
    }

    /// Runs a call to the end and returns its whole output.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<Completed, InvokeFailure> {
        self.start_invocation(request)?.collect().await
    }

    /// Registers the functions of a new Serve stream and starts routing its messages:
    /// `inbound` is what the server sends after its registration (an `Err` is a protocol
    /// violation, the end of the stream a disconnection). Returns what to send to the server.
    ///
    /// The functions are unregistered when `inbound` ends, on `Drain`, on a violation, or when
    /// the node shuts down; calls still running then fail with "provider disconnected".
    pub fn serve<S>(
        &self,
        specs: Vec<ServedFunctionSpec>,
        inbound: S,
    ) -> Result<Outbound, RegistrationError>
    where
        S: Stream<Item = Result<FromProvider, SessionViolation>> + Send + Unpin + 'static,
    {
        if self.shared.shutdown.is_cancelled() {
            return Err(RegistrationError::ShuttingDown);
        }
        let specs = self.validate_registration(specs)?;
        let (session, outbound) = {
            let mut registry = self.registry();
            if let Some(taken) = specs.iter().find(|s| registry.served.contains_key(&s.name)) {
                return Err(RegistrationError::AlreadyServed {
                    function_id: taken.name.clone(),
                });
            }
            let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
            let names = specs.iter().map(|s| s.name.clone()).collect();
            let (session, outbound) = Session::new(id, names);
            let now = unix_ms_now();
            for spec in specs {
                let gate = Gate::new(
                    spec.max_concurrency as usize,
                    self.shared.config.max_queued_invocations as usize,
                );
                registry.served.insert(
                    spec.name.clone(),
                    Arc::new(ServedFunction {
                        spec,
                        session: session.clone(),
                        gate: Arc::new(gate),
                        registered_at_unix_ms: now,
                    }),
                );
            }
            (session, outbound)
        };
        for function_id in &session.functions {
            self.shared.events.publish(EventKind::FunctionRegistered {
                function_id: function_id.clone(),
                kind: FunctionKind::Served,
            });
        }
        tracing::info!(session = session.id, functions = ?session.functions, "server registered functions");
        tokio::spawn(self.clone().run_session(session, inbound));
        Ok(outbound)
    }

    fn validate_registration(
        &self,
        specs: Vec<ServedFunctionSpec>,
    ) -> Result<Vec<ServedFunctionSpec>, RegistrationError> {
        if specs.is_empty() {
            return Err(RegistrationError::NoFunctions);
        }
        if specs.len() > MAX_FUNCTIONS_PER_SESSION {
            return Err(RegistrationError::TooManyFunctions { count: specs.len() });
        }
        let node_max_input = self.shared.config.served_max_input_bytes;
        let mut seen = std::collections::HashSet::new();
        specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let spec = spec.validate(index, node_max_input)?;
                if !seen.insert(spec.name.clone()) {
                    return Err(RegistrationError::InvalidField {
                        index,
                        field: "name",
                        reason: format!("`{}` appears twice in this registration", spec.name),
                    });
                }
                Ok(spec)
            })
            .collect()
    }

    async fn run_session<S>(self, session: Arc<Session>, mut inbound: S)
    where
        S: Stream<Item = Result<FromProvider, SessionViolation>> + Send + Unpin + 'static,
    {
        let shutdown = self.shared.shutdown.clone();
        let (violation, reason) = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break (None, "node shutting down"),
                message = inbound.next() => match message {
                    None => break (None, "server disconnected"),
                    Some(Err(violation)) => break (Some(violation), "protocol violation"),
                    Some(Ok(FromProvider::Drain)) => self.unregister(&session, "server drained"),
                    Some(Ok(message)) => {
                        if let Err(violation) = session.handle(message) {
                            break (Some(violation), "protocol violation");
                        }
                    }
                },
            }
        };
        if let Some(violation) = &violation {
            tracing::warn!(session = session.id, %violation, "ending a Serve stream");
        }
        self.unregister(&session, reason);
        session.close(violation);
        tracing::info!(session = session.id, reason, "Serve stream ended");
    }

    /// Removes the session's functions from the registry (those it still owns) and fails the
    /// calls waiting for a slot.
    fn unregister(&self, session: &Arc<Session>, reason: &str) {
        let removed: Vec<Arc<ServedFunction>> = {
            let mut registry = self.registry();
            let mut removed = Vec::new();
            for name in &session.functions {
                let owned = registry
                    .served
                    .get(name)
                    .is_some_and(|f| Arc::ptr_eq(&f.session, session));
                if let Some(function) = owned.then(|| registry.served.remove(name)).flatten() {
                    removed.push(function);
                }
            }
            removed
        };
        for function in removed {
            function.gate.close();
            self.shared.events.publish(EventKind::FunctionUnregistered {
                function_id: function.spec.name.clone(),
                kind: FunctionKind::Served,
                reason: reason.to_string(),
            });
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Compiles every stored module. Failures are logged and skip the module: one bad record must
/// not keep the node from starting.
fn load_modules(runtime: &Runtime, store: &Store) -> Registry {
    let mut registry = Registry::default();
    for item in store.scan_from(MODULES, &[]) {
        let (key, record) = match item {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "skipping an unreadable stored module");
                continue;
            }
        };
        let module_id = ModuleId::from_bytes(key);
        if ModuleId::of_wasm(&record.wasm) != module_id {
            tracing::error!(module = %module_id, "stored module bytes do not match their id; not offered");
            continue;
        }
        if let Err(e) = runtime.deploy(&record.wasm) {
            tracing::error!(module = %module_id, error = %e, "stored module no longer deploys; kept but not offered");
            continue;
        }
        let exports = runtime.functions(&module_id).unwrap_or_default();
        if let Some(name) = &record.name {
            registry.names.insert(name.clone(), module_id);
        }
        registry.modules.insert(
            module_id,
            ModuleEntry {
                name: record.name,
                exports,
                deployed_at_unix_ms: record.deployed_at_unix_ms,
            },
        );
    }
    registry
}

#[cfg(test)]
mod tests;
