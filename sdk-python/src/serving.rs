//! Serving Python functions: the Rust SDK's serving loop runs the network side; each call
//! runs the Python handler on a blocking thread (sync handlers, GIL taken only while Python
//! runs) or as a task on an asyncio loop (async handlers). The Python side
//! (`mehr.serving`) finds the functions, converts inputs and outputs and drives generators;
//! this module moves bytes and keeps serving alive across daemon restarts. Batched functions
//! go through the Rust SDK's [`Batcher`], which hands a whole batch to one Python call.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mehr_sdk::{
    Client,
    serve::{
        Call as SdkCall, FunctionSpec, Handler, HandlerError, HandlerFuture, OutputSink,
        ServeHandle,
        batch::{BatchFuture, BatchHandler, BatchOutputs, BatchPolicy, Batcher},
    },
};
use prost::bytes::Bytes;
use pyo3::{
    intern,
    prelude::*,
    pybacked::PyBackedBytes,
    types::{PyBytes, PyDict, PyList, PyTuple},
};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::{
    args::{Payload, seconds},
    bridge::{self, Built},
    failure::{Failure, status_error},
    runtime::ProcessBound,
};

/// The first wait before registering again after the daemon went away; doubles up to
/// [`RECONNECT_MAX_DELAY`].
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// How long ALREADY_EXISTS is taken for the daemon still unregistering the broken stream's
/// functions, rather than another server owning them.
const ALREADY_EXISTS_PATIENCE: Duration = Duration::from_secs(10);

/// One function to serve, read from a `mehr.serving.Function`.
#[derive(FromPyObject)]
pub(crate) struct FunctionArg {
    id: String,
    description: String,
    price_umhr: u64,
    max_concurrency: u32,
    max_input_bytes: u32,
    is_async: bool,
    /// The most calls in a batch; 0: not batched.
    batch_max_size: usize,
    /// Seconds a batch waits to fill.
    batch_max_wait: f64,
    /// The most calls waiting for a batch; 0: `batch_max_size`.
    batch_max_queue: usize,
}

impl FunctionArg {
    /// The batching policy of a batched function: `max_concurrency` batches at once.
    fn batch_policy(&self) -> Option<BatchPolicy> {
        (self.batch_max_size > 0).then(|| {
            let wait = Duration::try_from_secs_f64(self.batch_max_wait).unwrap_or_default();
            let policy = BatchPolicy::new(self.batch_max_size)
                .max_wait(wait)
                .max_concurrency(self.max_concurrency as usize);
            match self.batch_max_queue {
                0 => policy,
                calls => policy.max_queue(calls),
            }
        })
    }
}

/// The context of one invocation, passed to handlers that take a `call` argument (a list of
/// them for batched handlers).
#[pyclass(frozen, name = "Call", module = "mehr")]
pub(crate) struct CallContext {
    call: SdkCall,
    /// `None` for a call of a batch: batched calls cannot stream partial output.
    sink: Option<OutputSink>,
}

impl CallContext {
    fn sink(&self, py: Python<'_>) -> PyResult<OutputSink> {
        self.sink.clone().ok_or_else(|| {
            status_error(
                py,
                Code::FailedPrecondition,
                "a call of a batched function cannot send partial output: return it in the \
                 batch's list of outputs"
                    .into(),
            )
        })
    }
}

fn sink_closed(py: Python<'_>) -> PyErr {
    status_error(
        py,
        Code::Cancelled,
        "the call is over (the caller went away, its deadline passed, or serving stopped)".into(),
    )
}

#[pymethods]
impl CallContext {
    /// The daemon's number for this invocation.
    #[getter]
    fn invocation_id(&self) -> u64 {
        self.call.invocation_id
    }

    /// The id of the function called.
    #[getter]
    fn function_id(&self) -> &str {
        &self.call.function_id
    }

    /// Seconds left until the caller's deadline.
    #[getter]
    fn remaining(&self) -> f64 {
        self.call.remaining().as_secs_f64()
    }

    /// True once the call was withdrawn (deadline, caller gone, serving stopped): long
    /// handlers should check it and return early.
    #[getter]
    fn cancelled(&self) -> bool {
        self.call.is_cancelled()
    }

    /// Sends a partial output now (blocking; for sync handlers). Raises `mehr.Cancelled`
    /// once the call is over.
    fn send(&self, py: Python<'_>, data: Payload) -> PyResult<()> {
        let sink = self.sink(py)?;
        py.detach(move || sink.send_blocking(data.0))
            .map_err(|_| sink_closed(py))
    }

    /// Sends a partial output (an awaitable; for async handlers).
    fn send_async<'py>(&self, py: Python<'py>, data: Payload) -> PyResult<Bound<'py, PyAny>> {
        let sink = self.sink(py)?;
        bridge::spawn(py, async move {
            sink.send(data.0).await.map_err(|_| {
                Failure::status(
                    Code::Cancelled,
                    "the call is over (the caller went away, its deadline passed, or serving stopped)",
                )
            })
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Call(function_id='{}', invocation_id={}, remaining={:.3})",
            self.call.function_id,
            self.call.invocation_id,
            self.call.remaining().as_secs_f64()
        )
    }
}

/// What the Python side answers for a call: `(True, bytes)` or `(False, message)`.
fn decode_answer(ok: bool, value: &Bound<'_, PyAny>) -> Result<Bytes, HandlerError> {
    if ok {
        value
            .extract::<PyBackedBytes>()
            .map(Bytes::from_owner)
            .map_err(|e| HandlerError::new(format!("the handler's output is not bytes: {e}")))
    } else {
        Err(HandlerError::new(value.str().map_or_else(
            |_| "the handler failed".to_string(),
            |text| text.to_string(),
        )))
    }
}

/// [`decode_answer`] for the result of calling the dispatcher.
fn answer(py: Python<'_>, result: PyResult<Py<PyAny>>) -> Result<Bytes, HandlerError> {
    let pair = result.and_then(|value| value.extract::<(bool, Py<PyAny>)>(py));
    match pair {
        Ok((ok, value)) => decode_answer(ok, value.bind(py)),
        Err(error) => Err(HandlerError::new(format!(
            "the SDK could not run the handler: {error}"
        ))),
    }
}

/// What the Python side answers for a batch: `(True, [(ok, value), ...])`, one pair per
/// call, or `(False, message)` failing every call of the batch.
fn decode_batch_answer(ok: bool, value: &Bound<'_, PyAny>) -> Result<BatchOutputs, HandlerError> {
    if !ok {
        return Err(decode_answer(false, value).unwrap_err());
    }
    let pairs = value.extract::<Vec<(bool, Py<PyAny>)>>().map_err(|e| {
        HandlerError::new(format!("the SDK could not read the batch's outputs: {e}"))
    })?;
    let py = value.py();
    Ok(pairs
        .into_iter()
        .map(|(ok, value)| decode_answer(ok, value.bind(py)))
        .collect())
}

/// Where an async handler's outcome goes: one call's answer, or a batch's.
enum Waiter {
    Call(oneshot::Sender<Result<Bytes, HandlerError>>),
    Batch(oneshot::Sender<Result<BatchOutputs, HandlerError>>),
}

/// Completes an async handler's call or batch; the Python side calls it with `(ok, value)`.
#[pyclass(frozen, name = "_Completion", module = "mehr")]
pub(crate) struct Completion {
    waiter: StdMutex<Option<Waiter>>,
}

impl Completion {
    fn new(waiter: Waiter) -> Self {
        Completion {
            waiter: StdMutex::new(Some(waiter)),
        }
    }
}

#[pymethods]
impl Completion {
    fn __call__(&self, ok: bool, value: &Bound<'_, PyAny>) {
        // The call may have been withdrawn meanwhile; then nobody waits for it.
        match self.waiter.lock().ok().and_then(|mut slot| slot.take()) {
            Some(Waiter::Call(sender)) => drop(sender.send(decode_answer(ok, value))),
            Some(Waiter::Batch(sender)) => drop(sender.send(decode_batch_answer(ok, value))),
            None => {}
        }
    }
}

/// Runs calls by calling into `mehr.serving`'s dispatcher.
struct PyHandler {
    asynchronous: HashSet<String>,
    dispatcher: Arc<Py<PyAny>>,
    event_loop: Option<Arc<Py<PyAny>>>,
    /// The batched functions' batchers, by function id.
    batchers: HashMap<String, Arc<Batcher>>,
}

impl Handler for PyHandler {
    fn call(&self, call: SdkCall, output: OutputSink) -> HandlerFuture {
        if let Some(batcher) = self.batchers.get(&call.function_id) {
            return batcher.call(call, output);
        }
        let dispatcher = self.dispatcher.clone();
        match (
            &self.event_loop,
            self.asynchronous.contains(&call.function_id),
        ) {
            (Some(event_loop), true) => {
                Box::pin(run_async(dispatcher, event_loop.clone(), call, output))
            }
            _ => Box::pin(run_sync(dispatcher, call, output)),
        }
    }
}

async fn run_sync(
    dispatcher: Arc<Py<PyAny>>,
    call: SdkCall,
    output: OutputSink,
) -> Result<Bytes, HandlerError> {
    let task = tokio::task::spawn_blocking(move || {
        Python::attach(|py| {
            let input = PyBytes::new(py, &call.input);
            let function_id = call.function_id.clone();
            let context = CallContext {
                call,
                sink: Some(output),
            };
            let result = Py::new(py, context).and_then(|context| {
                dispatcher.call_method1(py, intern!(py, "run_sync"), (function_id, input, context))
            });
            answer(py, result)
        })
    });
    task.await.unwrap_or_else(|join| {
        Err(HandlerError::new(format!(
            "the handler thread failed: {join}"
        )))
    })
}

/// Cancels the asyncio task of a call (or batch) whose future is dropped before it completed
/// (the daemon withdrew the call, or serving stopped).
struct CancelOnDrop {
    armed: bool,
    dispatcher: Arc<Py<PyAny>>,
    event_loop: Arc<Py<PyAny>>,
    /// The key the dispatcher knows the task by: the call's context, or a batch's tuple.
    context: Option<Arc<Py<PyAny>>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(context) = self.context.take().filter(|_| self.armed) else {
            return;
        };
        let (dispatcher, event_loop) = (self.dispatcher.clone(), self.event_loop.clone());
        let cancel = move || {
            Python::attach(|py| {
                let scheduled = dispatcher
                    .getattr(py, intern!(py, "cancel_async"))
                    .and_then(|cancel| {
                        event_loop.call_method1(
                            py,
                            intern!(py, "call_soon_threadsafe"),
                            (cancel, context.clone_ref(py)),
                        )
                    });
                // A closed loop has no task left to cancel.
                drop(scheduled);
            })
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(cancel)),
            Err(_) => cancel(),
        }
    }
}

async fn run_async(
    dispatcher: Arc<Py<PyAny>>,
    event_loop: Arc<Py<PyAny>>,
    call: SdkCall,
    output: OutputSink,
) -> Result<Bytes, HandlerError> {
    let (sender, receiver) = oneshot::channel();
    let mut guard = CancelOnDrop {
        armed: true,
        dispatcher: dispatcher.clone(),
        event_loop: event_loop.clone(),
        context: None,
    };
    let schedule = tokio::task::spawn_blocking(move || {
        Python::attach(|py| -> PyResult<Py<PyAny>> {
            let input = PyBytes::new(py, &call.input);
            let function_id = call.function_id.clone();
            let context = CallContext {
                call,
                sink: Some(output),
            };
            let context = Py::new(py, context)?.into_any();
            let completion = Completion::new(Waiter::Call(sender));
            let start = dispatcher.getattr(py, intern!(py, "start_async"))?;
            event_loop.call_method1(
                py,
                intern!(py, "call_soon_threadsafe"),
                (start, function_id, input, context.clone_ref(py), completion),
            )?;
            Ok(context)
        })
    });
    match schedule.await {
        Ok(Ok(context)) => guard.context = Some(Arc::new(context)),
        Ok(Err(error)) => {
            return Err(HandlerError::new(format!(
                "the event loop of the async handlers cannot run the call: {error}"
            )));
        }
        Err(join) => {
            return Err(HandlerError::new(format!(
                "scheduling the call failed: {join}"
            )));
        }
    }
    let outcome = receiver.await.unwrap_or_else(|_| {
        Err(HandlerError::new(
            "the event loop of the async handlers stopped before the call ended",
        ))
    });
    guard.armed = false;
    outcome
}

/// Runs batches of one batched function by calling into `mehr.serving`'s dispatcher: on a
/// blocking thread (sync handlers) or as a task on the asyncio loop (async handlers).
struct PyBatchHandler {
    dispatcher: Arc<Py<PyAny>>,
    /// The loop of an async handler; `None` for a sync one.
    event_loop: Option<Arc<Py<PyAny>>>,
}

/// A batch's inputs and call contexts as Python objects: `(function_id, [bytes], (Call, ...))`.
fn batch_arguments<'py>(
    py: Python<'py>,
    calls: Vec<SdkCall>,
) -> PyResult<(String, Bound<'py, PyList>, Bound<'py, PyTuple>)> {
    let function_id = calls
        .first()
        .map(|call| call.function_id.clone())
        .unwrap_or_default();
    let inputs = PyList::new(py, calls.iter().map(|call| PyBytes::new(py, &call.input)))?;
    let contexts = calls
        .into_iter()
        .map(|call| Py::new(py, CallContext { call, sink: None }))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((function_id, inputs, PyTuple::new(py, contexts)?))
}

impl BatchHandler for PyBatchHandler {
    fn call_batch(&self, calls: Vec<SdkCall>) -> BatchFuture {
        let dispatcher = self.dispatcher.clone();
        match &self.event_loop {
            Some(event_loop) => Box::pin(run_batch_async(dispatcher, event_loop.clone(), calls)),
            None => Box::pin(run_batch_sync(dispatcher, calls)),
        }
    }
}

async fn run_batch_sync(
    dispatcher: Arc<Py<PyAny>>,
    calls: Vec<SdkCall>,
) -> Result<BatchOutputs, HandlerError> {
    let task = tokio::task::spawn_blocking(move || {
        Python::attach(|py| {
            let result = batch_arguments(py, calls).and_then(|(function_id, inputs, contexts)| {
                let contexts = PyList::new(py, contexts)?;
                dispatcher.call_method1(
                    py,
                    intern!(py, "run_batch_sync"),
                    (function_id, inputs, contexts),
                )
            });
            let pair = result.and_then(|value| value.extract::<(bool, Py<PyAny>)>(py));
            match pair {
                Ok((ok, value)) => decode_batch_answer(ok, value.bind(py)),
                Err(error) => Err(HandlerError::new(format!(
                    "the SDK could not run the batch handler: {error}"
                ))),
            }
        })
    });
    task.await.unwrap_or_else(|join| {
        Err(HandlerError::new(format!(
            "the handler thread failed: {join}"
        )))
    })
}

async fn run_batch_async(
    dispatcher: Arc<Py<PyAny>>,
    event_loop: Arc<Py<PyAny>>,
    calls: Vec<SdkCall>,
) -> Result<BatchOutputs, HandlerError> {
    let (sender, receiver) = oneshot::channel();
    let mut guard = CancelOnDrop {
        armed: true,
        dispatcher: dispatcher.clone(),
        event_loop: event_loop.clone(),
        context: None,
    };
    let schedule = tokio::task::spawn_blocking(move || {
        Python::attach(|py| -> PyResult<Py<PyAny>> {
            let (function_id, inputs, contexts) = batch_arguments(py, calls)?;
            let start = dispatcher.getattr(py, intern!(py, "start_batch_async"))?;
            let completion = Completion::new(Waiter::Batch(sender));
            event_loop.call_method1(
                py,
                intern!(py, "call_soon_threadsafe"),
                (start, function_id, inputs, contexts.clone(), completion),
            )?;
            Ok(contexts.into_any().unbind())
        })
    });
    match schedule.await {
        Ok(Ok(key)) => guard.context = Some(Arc::new(key)),
        Ok(Err(error)) => {
            return Err(HandlerError::new(format!(
                "the event loop of the async handlers cannot run the batch: {error}"
            )));
        }
        Err(join) => {
            return Err(HandlerError::new(format!(
                "scheduling the batch failed: {join}"
            )));
        }
    }
    let outcome = receiver.await.unwrap_or_else(|_| {
        Err(HandlerError::new(
            "the event loop of the async handlers stopped before the batch ended",
        ))
    });
    guard.armed = false;
    outcome
}

/// How serving is going, shared with the supervising task.
struct Progress {
    reconnects: AtomicU64,
    connected: AtomicBool,
}

type Outcome = Option<Result<(), (Code, String)>>;

struct ServingState {
    functions: Vec<String>,
    stop: CancellationToken,
    outcome: watch::Receiver<Outcome>,
    progress: Arc<Progress>,
    batchers: HashMap<String, Arc<Batcher>>,
}

impl Drop for ServingState {
    fn drop(&mut self) {
        // As in the Rust SDK: serving lives as long as its handle.
        self.stop.cancel();
    }
}

impl ServingState {
    /// Completes with `true` when serving has ended (or the error that ended it), `false`
    /// when `timeout` passed first.
    fn ended(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send + 'static {
        let mut outcome = self.outcome.clone();
        async move {
            let settled = async move {
                match outcome.wait_for(Option::is_some).await {
                    Ok(settled) => settled.clone().unwrap_or(Ok(())),
                    Err(_) => Err((
                        Code::Internal,
                        "the serving task ended without a result".to_string(),
                    )),
                }
            };
            let settled = match timeout {
                Some(timeout) => match tokio::time::timeout(timeout, settled).await {
                    Ok(settled) => settled,
                    Err(_) => return Ok(false),
                },
                None => settled.await,
            };
            settled
                .map(|()| true)
                .map_err(|(code, message)| Failure::status(code, message))
        }
    }
}

/// Functions being served from this process. Stop with `stop()` (or leave a `with` block):
/// the functions are unregistered at once, calls running finish, then the connection closes.
/// Ctrl-C during `wait()` does the same and then raises `KeyboardInterrupt`. Serving also
/// stops when this object is garbage-collected: keep a reference while serving.
#[pyclass(frozen, module = "mehr")]
pub(crate) struct Serving {
    state: ProcessBound<ServingState>,
}

const SERVING: &str = "Serving";

#[pymethods]
impl Serving {
    /// The ids of the functions served.
    #[getter]
    fn functions(&self) -> PyResult<Vec<String>> {
        Ok(self.state.get(SERVING)?.functions.clone())
    }

    /// True once serving has ended.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        Ok(self.state.get(SERVING)?.outcome.borrow().is_some())
    }

    /// How many times serving registered again after the daemon went away.
    #[getter]
    fn reconnects(&self) -> PyResult<u64> {
        Ok(self
            .state
            .get(SERVING)?
            .progress
            .reconnects
            .load(Ordering::SeqCst))
    }

    /// True while the functions are registered with the daemon.
    #[getter]
    fn connected(&self) -> PyResult<bool> {
        let state = self.state.get(SERVING)?;
        Ok(state.progress.connected.load(Ordering::SeqCst) && state.outcome.borrow().is_none())
    }

    /// How batching went for each batched function: `{function_id: {"batches", "calls",
    /// "largest", "withdrawn_while_queued", "rejected_queue_full"}}` (empty when no function
    /// is batched).
    fn batch_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for (function_id, batcher) in &self.state.get(SERVING)?.batchers {
            let stats = batcher.stats();
            let one = PyDict::new(py);
            one.set_item("batches", stats.batches)?;
            one.set_item("calls", stats.calls)?;
            one.set_item("largest", stats.largest)?;
            one.set_item("withdrawn_while_queued", stats.withdrawn_while_queued)?;
            one.set_item("rejected_queue_full", stats.rejected_queue_full)?;
            all.set_item(function_id, one)?;
        }
        Ok(all)
    }

    /// Blocks until serving ends (returns True) or `timeout` seconds pass (returns False).
    /// Raises the error that ended serving, if one did. On Ctrl-C, stops cleanly, then
    /// raises `KeyboardInterrupt`.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let state = self.state.get(SERVING)?;
        let timeout = seconds(py, timeout, "timeout")?;
        match bridge::wait_raw(py, state.ended(timeout)) {
            Ok(ended) => ended.map_err(|failure| failure.into_pyerr(py)),
            Err(interrupted) => {
                state.stop.cancel();
                // A second Ctrl-C gives up waiting for the running calls.
                let _ = bridge::wait_raw(py, state.ended(None))?;
                Err(interrupted)
            }
        }
    }

    /// Stops serving and waits until it has: no new calls, running calls finish (each
    /// within its deadline), the functions are unregistered.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.get(SERVING)?;
        state.stop.cancel();
        match bridge::wait_raw(py, state.ended(None))? {
            // Stopping is the goal: an earlier failure was already reported by `wait`.
            Ok(_) | Err(_) => Ok(()),
        }
    }

    /// Begins stopping and returns at once.
    fn shutdown(&self) -> PyResult<()> {
        self.state.get(SERVING)?.stop.cancel();
        Ok(())
    }

    /// An awaitable that completes when serving ends (raising the error that ended it).
    fn wait_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ended = self.state.get(SERVING)?.ended(None);
        bridge::spawn(py, async move { ended.await.map(|_| ()) })
    }

    /// Stops serving; an awaitable that completes once it has.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.get(SERVING)?;
        state.stop.cancel();
        let ended = state.ended(None);
        bridge::spawn(py, async move {
            let _ = ended.await;
            Ok::<_, Failure>(())
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.into_pyobject(py)?.into_any().unbind();
        bridge::spawn(py, async move { Ok(Built(this)) })
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _kind: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.stop_async(py)
    }

    fn __repr__(&self) -> PyResult<String> {
        let state = self.state.get(SERVING)?;
        let status = if state.outcome.borrow().is_some() {
            "done"
        } else if state.progress.connected.load(Ordering::SeqCst) {
            "serving"
        } else {
            "reconnecting"
        };
        Ok(format!(
            "Serving(functions={}, {status})",
            crate::values::py_str_list(&state.functions)
        ))
    }
}

/// Everything `start` needs, checked while attached.
pub(crate) struct ServeRequest {
    specs: Vec<FunctionSpec>,
    handler: Arc<PyHandler>,
    reconnect: bool,
    on_finish: Option<Arc<Py<PyAny>>>,
}

impl ServeRequest {
    pub(crate) fn new(
        functions: Vec<FunctionArg>,
        dispatcher: Py<PyAny>,
        event_loop: Option<Py<PyAny>>,
        reconnect: bool,
        on_finish: Option<Py<PyAny>>,
    ) -> Self {
        let asynchronous = functions
            .iter()
            .filter(|f| f.is_async)
            .map(|f| f.id.clone())
            .collect();
        let dispatcher = Arc::new(dispatcher);
        let event_loop = event_loop.map(Arc::new);
        let mut batchers = HashMap::new();
        let specs = functions
            .into_iter()
            .map(|f| {
                let spec = FunctionSpec::new(f.id.clone())
                    .description(f.description.clone())
                    .price_per_invocation_umhr(f.price_umhr)
                    .max_concurrency(f.max_concurrency)
                    .max_input_bytes(f.max_input_bytes);
                let Some(policy) = f.batch_policy() else {
                    return spec;
                };
                let handler = PyBatchHandler {
                    dispatcher: dispatcher.clone(),
                    event_loop: event_loop.clone().filter(|_| f.is_async),
                };
                batchers.insert(f.id, Batcher::new(policy, Arc::new(handler)));
                spec.batched(&policy)
            })
            .collect();
        ServeRequest {
            specs,
            handler: Arc::new(PyHandler {
                asynchronous,
                dispatcher,
                event_loop,
                batchers,
            }),
            reconnect,
            on_finish: on_finish.map(Arc::new),
        }
    }

    /// Registers the functions and starts serving; completes with the `Serving` object once
    /// the daemon accepted them (or with its refusal: INVALID_ARGUMENT, ALREADY_EXISTS).
    pub(crate) async fn start(self, client: Client) -> Result<Built, Failure> {
        let batchers = self.handler.batchers.clone();
        let handler: Arc<dyn Handler> = self.handler;
        let first = client.serve(self.specs.clone(), handler.clone()).await?;
        let stop = CancellationToken::new();
        let (settle, outcome) = watch::channel(None);
        let progress = Arc::new(Progress {
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(true),
        });
        let functions = first.functions().to_vec();
        let supervisor = Supervisor {
            client,
            specs: self.specs,
            handler,
            reconnect: self.reconnect,
            progress: progress.clone(),
        };
        let on_finish = self.on_finish;
        let stopping = stop.clone();
        tokio::spawn(async move {
            let result = supervisor.run(first, stopping).await;
            if let Some(on_finish) = on_finish {
                let _ = tokio::task::spawn_blocking(move || {
                    Python::attach(|py| {
                        if let Err(error) = on_finish.call0(py) {
                            error.write_unraisable(py, None);
                        }
                    })
                })
                .await;
            }
            let _ = settle.send(Some(result.map_err(|failure| failure.code_and_message())));
        });
        let serving = Serving {
            state: ProcessBound::new(ServingState {
                functions,
                stop,
                outcome,
                progress,
                batchers,
            }),
        };
        let built = Python::attach(|py| Py::new(py, serving))
            .map_err(|e| Failure::status(Code::Internal, e.to_string()))?;
        Ok(Built(built.into_any()))
    }
}

/// Keeps the functions registered: when the daemon ends serving or the connection breaks
/// (and reconnecting is on), registers them again until it works or serving is stopped.
struct Supervisor {
    client: Client,
    specs: Vec<FunctionSpec>,
    handler: Arc<dyn Handler>,
    reconnect: bool,
    progress: Arc<Progress>,
}

impl Supervisor {
    async fn run(self, mut handle: ServeHandle, stop: CancellationToken) -> Result<(), Failure> {
        loop {
            let ended = tokio::select! {
                _ = stop.cancelled() => return Ok(handle.stop().await?),
                ended = handle.wait() => ended,
            };
            self.progress.connected.store(false, Ordering::SeqCst);
            let reason = match &ended {
                Ok(()) => "the daemon ended serving (it is shutting down)".to_string(),
                Err(error) => format!("the connection to the daemon failed ({error})"),
            };
            if !self.reconnect {
                return Err(Failure::status(
                    Code::Unavailable,
                    format!("{reason}; serving stopped (reconnect=False)"),
                ));
            }
            log(
                "warning",
                format!("{reason}; registering {:?} again", handle.functions()),
            );
            let Some(next) = self.register_again(&stop).await? else {
                return Ok(());
            };
            handle = next;
            self.progress.reconnects.fetch_add(1, Ordering::SeqCst);
            self.progress.connected.store(true, Ordering::SeqCst);
            log("info", format!("serving {:?} again", handle.functions()));
        }
    }

    /// Registers again, waiting longer after each failure; `None` when stopped meanwhile.
    async fn register_again(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<ServeHandle>, Failure> {
        let started = Instant::now();
        let mut delay = RECONNECT_FIRST_DELAY;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep(delay) => {}
            }
            match self
                .client
                .serve(self.specs.clone(), self.handler.clone())
                .await
            {
                Ok(handle) => return Ok(Some(handle)),
                Err(error) if retryable(&error, started.elapsed()) => {
                    delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Whether registering again may succeed later: the daemon is not reachable yet, or (for a
/// while) still holds the functions of the broken stream.
fn retryable(error: &mehr_sdk::Error, waited: Duration) -> bool {
    match error {
        mehr_sdk::Error::Connect { .. } => true,
        mehr_sdk::Error::Status(status) => match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => true,
            Code::AlreadyExists => waited < ALREADY_EXISTS_PATIENCE,
            _ => false,
        },
        _ => false,
    }
}

/// Logs to Python's `logging` (logger `mehr.serving`), from any thread.
fn log(level: &'static str, message: String) {
    let write = move || {
        Python::attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("mehr.serving",)))
                .and_then(|logger| logger.call_method1(level, (message,)));
            if let Err(error) = logged {
                error.write_unraisable(py, None);
            }
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(write)),
        Err(_) => write(),
    }
}

/// Registers the serving classes on the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Serving>()?;
    module.add_class::<CallContext>()?;
    module.add_class::<Completion>()?;
    Ok(())
}
