//! Running the SDK's futures for Python: blocking (the sync API) or as asyncio futures (the
//! async API). Neither holds the GIL while the network is waited on.

use std::{future::Future, pin::Pin, time::Duration};

use pyo3::{prelude::*, sync::PyOnceLock, types::PyCFunction};

use crate::{failure::Failure, runtime::runtime};

/// How often a blocking call looks for signals (Ctrl-C) while it waits.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// A result that becomes a Python object once the interpreter is attached.
pub(crate) trait ToPython: Send + 'static {
    /// Builds the Python object.
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl ToPython for () {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py.None())
    }
}

impl ToPython for bool {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(pyo3::types::PyBool::new(py, self)
            .to_owned()
            .into_any()
            .unbind())
    }
}

impl ToPython for u64 {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.into_pyobject(py)?.into_any().unbind())
    }
}

impl<T: ToPython> ToPython for Vec<T> {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let items = self
            .into_iter()
            .map(|item| item.to_python(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
    }
}

impl<T: ToPython> ToPython for Option<T> {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Some(value) => value.to_python(py),
            None => Ok(py.None()),
        }
    }
}

/// An already built Python object (created while attached, e.g. a stream object).
pub(crate) struct Built(pub(crate) Py<PyAny>);

impl ToPython for Built {
    fn to_python(self, _py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.0)
    }
}

type BoxedCall<T> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send>>;

/// Runs `call` to completion on the SDK runtime, blocking this thread with the GIL released.
/// Ctrl-C (any pending signal handler that raises) cancels the call and raises.
pub(crate) fn wait<T, F>(py: Python<'_>, call: F) -> PyResult<Py<PyAny>>
where
    T: ToPython,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let outcome = wait_raw(py, call)?;
    outcome
        .map_err(|failure| failure.into_pyerr(py))
        .and_then(|value| value.to_python(py))
}

/// The W3C `traceparent` of the caller's active OpenTelemetry span, when `opentelemetry-api`
/// is installed and a span is active: every call carries it, so the daemon's spans join the
/// caller's trace. Without the package this costs one lookup per process.
fn current_traceparent(py: Python<'_>) -> Option<String> {
    static INJECT: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let inject = INJECT.get_or_init(py, || {
        py.import("opentelemetry.propagate")
            .and_then(|module| module.getattr("inject"))
            .ok()
            .map(Bound::unbind)
    });
    let carrier = pyo3::types::PyDict::new(py);
    inject.as_ref()?.call1(py, (&carrier,)).ok()?;
    carrier
        .get_item("traceparent")
        .ok()??
        .extract::<String>()
        .ok()
}

/// Like [`wait`], returning the Rust value.
pub(crate) fn wait_raw<T, F>(py: Python<'_>, call: F) -> PyResult<Result<T, Failure>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let runtime = runtime().map_err(|e| Failure::from(e).into_pyerr(py))?;
    let traceparent = current_traceparent(py);
    let mut call: BoxedCall<T> =
        Box::pin(
            async move { mehr_sdk::trace::with_traceparent(traceparent.as_deref(), call).await },
        );
    loop {
        // The future is polled on this thread; the runtime's threads drive its I/O.
        let step = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut call).await.ok() })
        });
        match step {
            Some(outcome) => return Ok(outcome),
            // Dropping `call` on the way out (the `?`) cancels it.
            None => py.check_signals()?,
        }
    }
}

/// Starts `call` on the SDK runtime and returns an asyncio future of the running event loop
/// that completes with its result. Cancelling the asyncio future cancels the call.
pub(crate) fn spawn<'py, T, F>(py: Python<'py>, call: F) -> PyResult<Bound<'py, PyAny>>
where
    T: ToPython,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let runtime = runtime().map_err(|e| Failure::from(e).into_pyerr(py))?;
    let event_loop = running_loop(py)?;
    let future = event_loop.call_method0("create_future")?;
    let (target_loop, target) = (event_loop.clone().unbind(), future.clone().unbind());
    let traceparent = current_traceparent(py);
    let task = runtime.spawn(async move {
        let outcome = mehr_sdk::trace::with_traceparent(traceparent.as_deref(), call).await;
        Python::attach(|py| settle_from_thread(py, &target_loop, &target, outcome));
    });
    let abort = task.abort_handle();
    let on_done = PyCFunction::new_closure(
        py,
        Some(c"abort_if_cancelled"),
        None,
        move |args, _kwargs| -> PyResult<()> {
            let future = args.get_item(0)?;
            if future.call_method0("cancelled")?.is_truthy()? {
                abort.abort();
            }
            Ok(())
        },
    )?;
    future.call_method1("add_done_callback", (on_done,))?;
    Ok(future)
}

/// Completes `future` (on `event_loop`, from any thread) with `outcome`.
pub(crate) fn settle_from_thread<T: ToPython>(
    py: Python<'_>,
    event_loop: &Py<PyAny>,
    future: &Py<PyAny>,
    outcome: Result<T, Failure>,
) {
    let (ok, value) = match outcome.map(|value| value.to_python(py)) {
        Ok(Ok(value)) => (true, value),
        Ok(Err(error)) => (false, error.into_value(py).into_any()),
        Err(failure) => (false, failure.into_pyerr(py).into_value(py).into_any()),
    };
    let scheduled = settle_function(py).and_then(|settle| {
        event_loop.call_method1(
            py,
            "call_soon_threadsafe",
            (settle, future.clone_ref(py), ok, value),
        )
    });
    // A closed loop can take no result; nobody is left to await it.
    if let Err(error) = scheduled
        && !is_closed_loop_error(py, event_loop)
    {
        error.write_unraisable(py, Some(&event_loop.bind(py).clone()));
    }
}

fn is_closed_loop_error(py: Python<'_>, event_loop: &Py<PyAny>) -> bool {
    event_loop
        .call_method0(py, "is_closed")
        .and_then(|closed| closed.is_truthy(py))
        .unwrap_or(true)
}

/// The running asyncio loop, or a clear error when called outside async code.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()
}

/// `_settle(future, ok, value)`: sets the result or exception unless the future was
/// cancelled meanwhile (setting a cancelled future raises).
fn settle_function(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static SETTLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SETTLE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(wrap_pyfunction!(settle, py)?.into_any().unbind())
        })
        .map(|settle| settle.clone_ref(py))
}

#[pyfunction]
fn settle(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if ok {
        future.call_method1("set_result", (value,))?;
    } else {
        future.call_method1("set_exception", (value,))?;
    }
    Ok(())
}
