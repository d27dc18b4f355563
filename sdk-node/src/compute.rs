//! Compute: serving JavaScript functions (calls delivered through a weak thread-safe function,
//! so neither the event loop nor the daemon ever waits on the other) and invoking functions
//! locally or on the mesh.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use mehr_sdk::{
    InvokeOptions, Placement,
    market::Tier,
    proto as pb,
    serve::{
        Call, FunctionSpec, Handler, HandlerError, HandlerFuture, OutputSink, ServeHandle,
        batch::{BatchFuture, BatchHandler, BatchPolicy, Batcher},
        handler_fn,
    },
};
use napi::{
    Status,
    bindgen_prelude::{Buffer, Function, Promise},
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
};
use napi_derive::napi;
use prost::bytes::Bytes;

use crate::{
    cancel::{CancelToken, Scope},
    client::NativeClient,
    failure::{Result, invalid, sdk},
    values::{FunctionInfo, InvokeResult, metering, number, remote, whole},
};

/// A function to serve.
#[napi(object)]
pub struct FunctionSpecJs {
    /// The id callers use (letters, digits, `.`, `_`, `-`).
    pub name: String,
    pub description: Option<String>,
    /// Price per call, μMHR (default 0).
    pub price_per_invocation_umhr: Option<f64>,
    /// Calls handled at once (default 1, at most 1024); the daemon queues the rest.
    pub max_concurrency: Option<u32>,
    /// Largest input accepted (default: the node's maximum).
    pub max_input_bytes: Option<u32>,
    /// Dynamic batching: the most calls in one batch (unset: not batched). `maxConcurrency`
    /// then counts batches running at once.
    pub batch_max_size: Option<u32>,
    /// How long a batch waits for more calls after its first, ms (default 2).
    pub batch_max_wait_ms: Option<f64>,
    /// The most calls waiting for a batch (default: `batchMaxSize`).
    pub batch_max_queue: Option<u32>,
}

/// One batch delivered to a JavaScript batch handler: the calls of one function, in order.
#[napi(object)]
pub struct ServeBatch {
    pub function_id: String,
    pub invocation_ids: Vec<f64>,
    pub inputs: Vec<Buffer>,
    /// Milliseconds left until each caller's deadline.
    pub remaining_ms: Vec<f64>,
}

/// The weak thread-safe function the SDK calls per batch; it resolves with one output per
/// call, in order.
type BatchFunction =
    ThreadsafeFunction<ServeBatch, Promise<Vec<Buffer>>, ServeBatch, Status, false, true>;

/// Hands batches formed by the SDK's `Batcher` to JavaScript.
struct JsBatches {
    function: Arc<BatchFunction>,
}

impl BatchHandler for JsBatches {
    fn call_batch(&self, calls: Vec<Call>) -> BatchFuture {
        let function = self.function.clone();
        Box::pin(async move {
            let batch = ServeBatch {
                function_id: calls
                    .first()
                    .map(|c| c.function_id.clone())
                    .unwrap_or_default(),
                invocation_ids: calls.iter().map(|c| number(c.invocation_id)).collect(),
                inputs: calls.iter().map(|c| c.input.to_vec().into()).collect(),
                remaining_ms: calls
                    .iter()
                    .map(|c| c.remaining().as_millis() as f64)
                    .collect(),
            };
            let outputs = match function.call_async(batch).await {
                Ok(promise) => promise.await,
                Err(e) => Err(e),
            }
            .map_err(|e| HandlerError::new(e.reason.clone()))?;
            Ok(outputs
                .into_iter()
                .map(|output| Ok(Bytes::from(output.to_vec())))
                .collect())
        })
    }
}

/// Routes each call to its function's batcher, or to the per-call handler.
struct Dispatch {
    single: Arc<dyn Handler>,
    batchers: HashMap<String, Arc<Batcher>>,
}

impl Handler for Dispatch {
    fn call(&self, call: Call, output: OutputSink) -> HandlerFuture {
        match self.batchers.get(&call.function_id) {
            Some(batcher) => batcher.call(call, output),
            None => self.single.call(call, output),
        }
    }
}

/// One call delivered to a JavaScript handler.
#[napi(object)]
pub struct ServeCall {
    /// The daemon's number for this call (unique on its serving stream).
    pub invocation_id: f64,
    /// Which served function is called.
    pub function_id: String,
    pub input: Buffer,
    /// Milliseconds left until the caller's deadline.
    pub remaining_ms: f64,
    /// Set on the notice that call `invocationId`, delivered before, was withdrawn (the
    /// caller's deadline passed, the caller went away, or serving stopped): lib/ aborts that
    /// call's `AbortSignal`. It comes through the same queue as the call, so always after it.
    pub withdrawn: bool,
}

/// Tells JavaScript that a call was withdrawn if its handler future is dropped unfinished
/// (the serve runtime drops it when the daemon cancels the call or serving stops).
struct WithdrawOnDrop {
    function: Arc<HandlerFunction>,
    invocation_id: u64,
    function_id: String,
    finished: bool,
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let notice = ServeCall {
            invocation_id: number(self.invocation_id),
            function_id: std::mem::take(&mut self.function_id),
            input: Vec::new().into(),
            remaining_ms: 0.0,
            withdrawn: true,
        };
        // Non-blocking into the unbounded queue; lost only when Node is exiting anyway.
        let _ = self
            .function
            .call(notice, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// The weak thread-safe function the SDK calls per invocation: weak, so a server never keeps
/// Node alive by itself (the pending `wait()` Promise does); not callee-handled, so a rejected
/// Promise comes back here as that call's error.
type HandlerFunction =
    ThreadsafeFunction<ServeCall, Promise<Buffer>, ServeCall, Status, false, true>;

/// A JavaScript handler, ready to serve from any thread.
#[napi]
pub struct JsHandler {
    function: Arc<HandlerFunction>,
    batches: Option<Arc<BatchFunction>>,
}

#[napi]
impl JsHandler {
    /// Wraps `callback` (per call) and `batchCallback` (per batch of a batched function), which
    /// must return Promises (lib/ wraps user handlers in async functions so that a synchronous
    /// throw becomes a rejection).
    #[napi(constructor)]
    pub fn new(
        callback: Function<'_, ServeCall, Promise<Buffer>>,
        batch_callback: Option<Function<'_, ServeBatch, Promise<Vec<Buffer>>>>,
    ) -> Result<Self> {
        let function = callback
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        let batches = batch_callback
            .map(|callback| {
                callback
                    .build_threadsafe_function()
                    .callee_handled::<false>()
                    .weak::<true>()
                    .build()
            })
            .transpose()?;
        Ok(JsHandler {
            function: Arc::new(function),
            batches: batches.map(Arc::new),
        })
    }
}

/// Partial-output sinks of the calls in flight, by invocation id.
type Sinks = Arc<Mutex<HashMap<u64, OutputSink>>>;

/// The counters of one batched function's batcher.
#[napi(object)]
pub struct BatchStatsJs {
    pub function_id: String,
    /// Batches handed to the handler, and the calls in them.
    pub batches: f64,
    pub calls: f64,
    /// The largest batch so far.
    pub largest: f64,
    /// Calls withdrawn (deadline, caller gone) while they waited for their batch.
    pub withdrawn_while_queued: f64,
    /// Calls failed at once because the batch queue was full.
    pub rejected_queue_full: f64,
}

/// Functions being served from this process.
#[napi]
pub struct Server {
    handle: Arc<ServeHandle>,
    sinks: Sinks,
    batchers: HashMap<String, Arc<Batcher>>,
}

#[napi]
impl Server {
    /// The ids of the functions served.
    #[napi(getter)]
    pub fn functions(&self) -> Vec<String> {
        self.handle.functions().to_vec()
    }

    /// Sends a partial output of call `invocationId`; resolves when the daemon has room.
    /// Resolves `false` when the call is over (cancelled, or serving stopped).
    #[napi]
    pub async fn emit(&self, invocation_id: f64, chunk: Buffer) -> Result<bool> {
        let id = whole(invocation_id, "invocationId")?;
        let sink = self
            .sinks
            .lock()
            .ok()
            .and_then(|sinks| sinks.get(&id).cloned());
        let Some(sink) = sink else { return Ok(false) };
        Ok(sink.send(Bytes::from(chunk.to_vec())).await.is_ok())
    }

    /// The batching counters of each batched function.
    #[napi]
    pub fn batch_stats(&self) -> Vec<BatchStatsJs> {
        let mut stats: Vec<BatchStatsJs> = self
            .batchers
            .iter()
            .map(|(function_id, batcher)| {
                let s = batcher.stats();
                BatchStatsJs {
                    function_id: function_id.clone(),
                    batches: number(s.batches),
                    calls: number(s.calls),
                    largest: number(s.largest),
                    withdrawn_while_queued: number(s.withdrawn_while_queued),
                    rejected_queue_full: number(s.rejected_queue_full),
                }
            })
            .collect();
        stats.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        stats
    }

    /// Stops: the daemon sends no new calls, calls running finish, then serving ends.
    #[napi]
    pub async fn stop(&self) -> Result<()> {
        sdk(self.handle.stop().await)
    }

    /// Resolves when serving has ended (stopped, or the daemon shut down); rejects when the
    /// connection to the daemon failed.
    #[napi]
    pub async fn wait(&self) -> Result<()> {
        sdk(self.handle.wait().await)
    }
}

/// Where a call may run.
#[napi(string_enum)]
pub enum PlacementJs {
    #[napi(value = "auto")]
    Auto,
    #[napi(value = "local")]
    Local,
    #[napi(value = "mesh")]
    Mesh,
}

/// How a call on the mesh is verified.
#[napi(object)]
pub struct TierJs {
    /// `reputation`, `optimistic` or `redundant`.
    pub kind: String,
    /// `optimistic`: audit one call in this many (default 10).
    pub one_in: Option<u32>,
    /// `redundant`: providers asked (default 3).
    pub k: Option<u32>,
}

/// Limits of one call.
#[napi(object)]
pub struct InvokeOptionsJs {
    /// Wall-clock time the call may take, ms.
    pub timeout_ms: Option<u32>,
    pub placement: Option<PlacementJs>,
    pub tier: Option<TierJs>,
    /// Calls on the mesh: the most to pay one provider, μMHR.
    pub max_price_umhr: Option<f64>,
    /// WASM only: the most fuel the call may burn.
    pub max_fuel: Option<f64>,
}

fn invoke_options(options: Option<InvokeOptionsJs>) -> Result<InvokeOptions> {
    let mut out = InvokeOptions::default();
    let Some(o) = options else { return Ok(out) };
    if let Some(ms) = o.timeout_ms {
        out = out.deadline(Duration::from_millis(ms.into()));
    }
    out = out.placement(match o.placement {
        None | Some(PlacementJs::Auto) => Placement::Auto,
        Some(PlacementJs::Local) => Placement::Local,
        Some(PlacementJs::Mesh) => Placement::Mesh,
    });
    if let Some(tier) = o.tier {
        out = out.tier(match tier.kind.as_str() {
            "reputation" => Tier::Reputation,
            "optimistic" => Tier::Optimistic {
                one_in: tier.one_in.unwrap_or(10),
            },
            "redundant" => Tier::Redundant {
                k: tier.k.unwrap_or(3),
            },
            other => {
                return Err(invalid(format!(
                    "tier.kind `{other}` is not reputation, optimistic or redundant"
                )));
            }
        });
    }
    if let Some(price) = o.max_price_umhr {
        out = out.max_price(whole(price, "maxPriceUmhr")?);
    }
    if let Some(fuel) = o.max_fuel {
        out = out.max_fuel(whole(fuel, "maxFuel")?);
    }
    Ok(out)
}

/// A deployed WebAssembly module.
#[napi(object)]
pub struct DeployedModule {
    /// BLAKE3 of the module's bytes, hex.
    pub module_id: String,
    pub name: Option<String>,
    /// The functions it offers.
    pub function_ids: Vec<String>,
    /// False when the same module was already deployed.
    pub created: bool,
}

/// One message of a streamed call: a partial output, or the last one (`done`, with the
/// call's metering and, on the mesh, its `RemoteCall`).
#[napi(object)]
pub struct StreamedOutput {
    pub output: Buffer,
    pub done: bool,
    pub metering: Option<crate::values::Metering>,
    pub remote: Option<crate::values::RemoteCall>,
}

impl From<pb::InvokeStreamResponse> for StreamedOutput {
    fn from(message: pb::InvokeStreamResponse) -> Self {
        StreamedOutput {
            output: message.output.to_vec().into(),
            done: message.done,
            metering: metering(message.metering),
            remote: remote(message.remote),
        }
    }
}

crate::streams::pull_stream!(
    /// The outputs of a streamed call.
    OutputStream,
    pb::InvokeStreamResponse,
    StreamedOutput
);

#[napi]
impl NativeClient {
    /// Registers `functions` and serves them with `handler` until stopped.
    #[napi]
    pub async fn serve(
        &self,
        functions: Vec<FunctionSpecJs>,
        handler: &JsHandler,
    ) -> Result<Server> {
        let mut batchers = HashMap::new();
        let specs = functions
            .into_iter()
            .map(|f| {
                let name = f.name.clone();
                let max_concurrency = f.max_concurrency.unwrap_or(1);
                let mut spec = FunctionSpec::new(f.name)
                    .description(f.description.unwrap_or_default())
                    .max_concurrency(max_concurrency)
                    .max_input_bytes(f.max_input_bytes.unwrap_or(0));
                if let Some(price) = f.price_per_invocation_umhr {
                    spec = spec.price_per_invocation_umhr(whole(price, "pricePerInvocationUmhr")?);
                }
                let Some(size) = f.batch_max_size else {
                    return Ok(spec);
                };
                let Some(batches) = handler.batches.clone() else {
                    return Err(invalid(format!(
                        "`{name}` is batched but no batch handler was given"
                    )));
                };
                let mut policy =
                    BatchPolicy::new(size as usize).max_concurrency(max_concurrency as usize);
                if let Some(ms) = f.batch_max_wait_ms {
                    if !(ms.is_finite() && ms >= 0.0) {
                        return Err(invalid(format!(
                            "`{name}`: batch maxWaitMs {ms} is not a duration"
                        )));
                    }
                    policy = policy.max_wait(Duration::from_secs_f64(ms / 1000.0));
                }
                if let Some(queue) = f.batch_max_queue {
                    policy = policy.max_queue(queue as usize);
                }
                policy
                    .validate()
                    .map_err(|e| invalid(format!("`{name}`: {e}")))?;
                batchers.insert(
                    name,
                    Batcher::new(policy, Arc::new(JsBatches { function: batches })),
                );
                Ok(spec.batched(&policy))
            })
            .collect::<Result<Vec<_>>>()?;
        let sinks: Sinks = Arc::default();
        let function = handler.function.clone();
        let call_sinks = sinks.clone();
        let handler = handler_fn(move |call, sink| {
            let function = function.clone();
            let sinks = call_sinks.clone();
            let id = call.invocation_id;
            if let Ok(mut map) = sinks.lock() {
                map.insert(id, sink);
            }
            async move {
                let mut withdraw = WithdrawOnDrop {
                    function: function.clone(),
                    invocation_id: id,
                    function_id: call.function_id.clone(),
                    finished: false,
                };
                let delivered = ServeCall {
                    invocation_id: number(id),
                    function_id: call.function_id.clone(),
                    input: call.input.to_vec().into(),
                    remaining_ms: call.remaining().as_millis() as f64,
                    withdrawn: false,
                };
                let result = match function.call_async(delivered).await {
                    Ok(promise) => promise.await,
                    Err(e) => Err(e),
                };
                withdraw.finished = true;
                if let Ok(mut map) = sinks.lock() {
                    map.remove(&id);
                }
                result
                    .map(|output| Bytes::from(output.to_vec()))
                    .map_err(|e| HandlerError::new(e.reason.clone()))
            }
        });
        let handler: Arc<dyn Handler> = if batchers.is_empty() {
            handler
        } else {
            Arc::new(Dispatch {
                single: handler,
                batchers: batchers.clone(),
            })
        };
        let handle = sdk(self.client.serve(specs, handler).await)?;
        Ok(Server {
            handle: Arc::new(handle),
            sinks,
            batchers,
        })
    }

    /// Calls a function and returns its whole output.
    #[napi]
    pub async fn invoke(
        &self,
        function_id: String,
        input: Buffer,
        options: Option<InvokeOptionsJs>,
        cancel: Option<&CancelToken>,
    ) -> Result<InvokeResult> {
        let options = invoke_options(options)?;
        let input = Bytes::from(input.to_vec());
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let answer = sdk(client.invoke_with(&function_id, input, options).await)?;
                Ok(InvokeResult {
                    output: answer.output.to_vec().into(),
                    metering: metering(answer.metering),
                    remote: remote(answer.remote),
                })
            })
            .await
    }

    /// Calls a function and streams its partial outputs.
    #[napi]
    pub async fn invoke_stream(
        &self,
        function_id: String,
        input: Buffer,
        options: Option<InvokeOptionsJs>,
        cancel: Option<&CancelToken>,
    ) -> Result<OutputStream> {
        let options = invoke_options(options)?;
        let input = Bytes::from(input.to_vec());
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(OutputStream::new(sdk(client
                    .invoke_stream(&function_id, input, options)
                    .await)?))
            })
            .await
    }

    /// Every function the node offers.
    #[napi]
    pub async fn functions(&self, cancel: Option<&CancelToken>) -> Result<Vec<FunctionInfo>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.list_functions().await)?
                    .into_iter()
                    .map(FunctionInfo::from)
                    .collect())
            })
            .await
    }

    /// Deploys a WebAssembly module (its binary), optionally under `name`: its exported
    /// functions are then offered as `<name>/<export>` (or `<module id>/<export>`).
    #[napi]
    pub async fn deploy_module(
        &self,
        wasm: Buffer,
        name: Option<String>,
        cancel: Option<&CancelToken>,
    ) -> Result<DeployedModule> {
        let wasm = Bytes::from(wasm.to_vec());
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let deployed = sdk(client.deploy_module(wasm, name.as_deref()).await)?;
                Ok(DeployedModule {
                    module_id: hex::encode(&deployed.module_id),
                    name: (!deployed.name.is_empty()).then_some(deployed.name),
                    function_ids: deployed.function_ids,
                    created: deployed.created,
                })
            })
            .await
    }

    /// Removes a module (its name, or its id in hex); resolves with the ids of the functions
    /// no longer offered.
    #[napi]
    pub async fn remove_module(
        &self,
        module: String,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<String>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(sdk(client.remove_module(&module).await)?.function_ids) })
            .await
    }
}
