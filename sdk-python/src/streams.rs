//! Server streams as Python iterators: each stream object works with `for` (blocking, the GIL
//! released while waiting, Ctrl-C honoured) and with `async for`.

use std::{
    pin::Pin,
    sync::{Arc, Mutex as StdMutex},
};

use futures::{Stream, StreamExt};
use mehr_sdk::proto as pb;
use prost::bytes::Bytes;
use pyo3::prelude::*;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    bridge::{self, ToPython},
    failure::Failure,
    runtime::ProcessBound,
};

type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Failure>> + Send>>;

/// The part every stream object shares: the stream, behind an async lock so one `next` runs
/// at a time, and a token that ends it early.
pub(crate) struct StreamCore<T> {
    stream: Arc<Mutex<Option<ItemStream<T>>>>,
    closed: CancellationToken,
}

impl<T: ToPython> StreamCore<T> {
    pub(crate) fn new(stream: impl Stream<Item = Result<T, Failure>> + Send + 'static) -> Self {
        StreamCore {
            stream: Arc::new(Mutex::new(Some(Box::pin(stream)))),
            closed: CancellationToken::new(),
        }
    }

    /// The next item, as a future that owns what it needs.
    fn next_item(
        &self,
        asynchronous: bool,
    ) -> impl Future<Output = Result<T, Failure>> + Send + 'static {
        let (stream, closed) = (self.stream.clone(), self.closed.clone());
        async move {
            let mut guard = stream.lock().await;
            let end = Failure::EndOfStream { asynchronous };
            let Some(inner) = guard.as_mut() else {
                return Err(end);
            };
            let item = tokio::select! {
                item = inner.next() => item,
                _ = closed.cancelled() => None,
            };
            match item {
                Some(item) => item,
                None => {
                    // Dropping the stream ends the call on the daemon's side too.
                    *guard = None;
                    Err(end)
                }
            }
        }
    }

    /// `__next__`: blocks; `StopIteration` at the end.
    pub(crate) fn next_blocking(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        bridge::wait(py, self.next_item(false))
    }

    /// `__anext__`: an awaitable; `StopAsyncIteration` at the end.
    pub(crate) fn next_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        bridge::spawn(py, self.next_item(true))
    }

    /// Ends the stream: pending and later `next` calls end the iteration.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        if let Ok(mut guard) = self.stream.try_lock() {
            *guard = None;
        }
    }
}

/// Generates the iterator protocol of a stream pyclass whose `core` field is a
/// `ProcessBound<StreamCore<_>>`.
macro_rules! stream_protocol {
    ($class:ident, $what:literal $(, $extra:item)*) => {
        #[pymethods]
        impl $class {
            $($extra)*

            fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.core.get($what)?.next_blocking(py)
            }

            fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                self.core.get($what)?.next_async(py)
            }

            /// Stops the stream (the daemon ends the call); iteration ends.
            fn close(&self) -> PyResult<()> {
                self.core.get($what)?.close();
                Ok(())
            }

            fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
                slf
            }

            fn __exit__(
                &self,
                _kind: Option<&Bound<'_, PyAny>>,
                _value: Option<&Bound<'_, PyAny>>,
                _traceback: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<bool> {
                self.close()?;
                Ok(false)
            }

            fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                let py = slf.py();
                let this = slf.into_pyobject(py)?.into_any().unbind();
                bridge::spawn(py, async move { Ok(bridge::Built(this)) })
            }

            fn __aexit__<'py>(
                &self,
                py: Python<'py>,
                _kind: Option<&Bound<'_, PyAny>>,
                _value: Option<&Bound<'_, PyAny>>,
                _traceback: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                self.close()?;
                bridge::spawn(py, async { Ok(false) })
            }
        }
    };
}

/// Messages arriving for a listened destination; iterate with `for` or `async for`.
/// Listening stops when the subscription is closed or garbage-collected.
#[pyclass(frozen, module = "mehr")]
pub(crate) struct Subscription {
    core: ProcessBound<StreamCore<pb::InboundMessage>>,
    /// The destination hash, in hex: give it to senders.
    #[pyo3(get)]
    destination: String,
}

impl Subscription {
    pub(crate) fn new(listening: mehr_sdk::Listening) -> Self {
        let messages = listening.messages.map(|item| item.map_err(Failure::from));
        Subscription {
            core: ProcessBound::new(StreamCore::new(messages)),
            destination: hex::encode(&listening.destination),
        }
    }
}

stream_protocol!(Subscription, "Subscription");

/// The output of a streamed invocation: `bytes` chunks as the function produces them.
/// Once iteration ends, `metering` says who ran the call.
#[pyclass(frozen, module = "mehr")]
pub(crate) struct OutputStream {
    core: ProcessBound<StreamCore<Bytes>>,
    metering: Arc<StdMutex<Option<pb::InvocationMetering>>>,
}

impl OutputStream {
    pub(crate) fn new(
        stream: impl Stream<Item = Result<pb::InvokeStreamResponse, mehr_sdk::Error>> + Send + 'static,
    ) -> Self {
        let metering = Arc::new(StdMutex::new(None));
        let recorded = metering.clone();
        let chunks = stream.filter_map(move |item| {
            let recorded = recorded.clone();
            async move {
                match item {
                    Ok(piece) => {
                        if piece.done
                            && let Ok(mut slot) = recorded.lock()
                        {
                            *slot = piece.metering;
                        }
                        (!piece.output.is_empty()).then(|| Ok(piece.output))
                    }
                    Err(error) => Some(Err(Failure::from(error))),
                }
            }
        });
        OutputStream {
            core: ProcessBound::new(StreamCore::new(chunks)),
            metering,
        }
    }
}

stream_protocol!(
    OutputStream,
    "OutputStream",
    /// Who ran the call and what it used; None until the output has been read to its end.
    #[getter]
    fn metering(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let metering = self.metering.lock().ok().and_then(|slot| slot.clone());
        metering.to_python(py)
    }
);

/// Registers the stream classes on the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Subscription>()?;
    module.add_class::<OutputStream>()?;
    Ok(())
}
