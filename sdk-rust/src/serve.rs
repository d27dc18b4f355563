//! Serving functions from this process: register them with the daemon, run a [`Handler`] for
//! each invocation the daemon sends, stream partial output, and stop cleanly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mehr_sdk::Error> {
//! use mehr_sdk::serve::{FunctionSpec, HandlerError, handler_fn};
//!
//! let client = mehr_sdk::Client::connect().await?;
//! let upper = handler_fn(|call, _output| async move {
//!     let text = std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
//!     Ok(text.to_uppercase())
//! });
//! let serving = client
//!     .serve(vec![FunctionSpec::new("upper").max_concurrency(8)], upper)
//!     .await?;
//! serving.wait().await?; // until the daemon stops, or `serving.stop()` from elsewhere
//! # Ok(()) }
//! ```
//!
//! Wrappers for other languages: [`blocking_handler_fn`] runs a synchronous callback on
//! tokio's blocking pool (where a Python wrapper takes the GIL and a Node wrapper calls its
//! ThreadsafeFunction); [`ServeHandle::wait_blocking`] and [`ServeHandle::stop_blocking`] block
//! the calling thread without needing a runtime, so a pyo3 wrapper can call them inside
//! `py.allow_threads`.
//!
//! Dynamic batching ([`batch`]): a [`batch::Batcher`] is a [`Handler`] that merges calls
//! arriving close together into one [`batch::BatchHandler`] call (one forward pass of a model
//! for many callers) and answers each call on its own.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use mehr_proto::v1::{self as pb, serve_request, serve_response};
use prost::bytes::Bytes;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use crate::{Client, Error};

pub mod batch;

/// Messages buffered towards the daemon before partial output waits.
const OUTBOUND_BUFFER: usize = 64;
/// How long a clean stop waits for the daemon to end the stream after this side closed it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A function to serve, as registered with the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The function id callers use: 1 to 128 letters, digits, `.`, `_`, `-`, starting with a
    /// letter or digit (for example `embed-minilm`).
    pub name: String,
    /// What it does (at most 1024 bytes).
    pub description: String,
    /// Price per call, in μMHR.
    pub price_per_invocation_umhr: u64,
    /// Calls handled at once (1 to 1024); the daemon queues the rest.
    pub max_concurrency: u32,
    /// Largest input accepted; 0 means the node's maximum.
    pub max_input_bytes: u32,
}

impl FunctionSpec {
    /// A free function handling one call at a time, with the node's input limit.
    pub fn new(name: impl Into<String>) -> Self {
        FunctionSpec {
            name: name.into(),
            description: String::new(),
            price_per_invocation_umhr: 0,
            max_concurrency: 1,
            max_input_bytes: 0,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the price per call, in μMHR.
    pub fn price_per_invocation_umhr(mut self, umhr: u64) -> Self {
        self.price_per_invocation_umhr = umhr;
        self
    }

    /// Sets how many calls run at once.
    pub fn max_concurrency(mut self, calls: u32) -> Self {
        self.max_concurrency = calls;
        self
    }

    /// Sets the largest input accepted.
    pub fn max_input_bytes(mut self, bytes: u32) -> Self {
        self.max_input_bytes = bytes;
        self
    }

    fn to_proto(&self) -> pb::FunctionSpec {
        pb::FunctionSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            price_per_invocation_umhr: self.price_per_invocation_umhr,
            max_concurrency: self.max_concurrency,
            max_input_bytes: self.max_input_bytes,
        }
    }
}

/// One invocation handed to a [`Handler`].
#[derive(Debug, Clone)]
pub struct Call {
    /// The daemon's number for this invocation (unique on this serving stream).
    pub invocation_id: u64,
    /// Which of the registered functions is called.
    pub function_id: String,
    /// The input bytes.
    pub input: Bytes,
    /// When the caller's deadline passes; the daemon cancels the call then.
    pub deadline: Instant,
    cancel: CancellationToken,
}

impl Call {
    /// True once the daemon withdrew the call (deadline, caller gone) or serving stopped.
    /// Blocking handlers should check this in long loops.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the call is withdrawn.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The call is over: it was cancelled or serving stopped; stop producing output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the invocation is over (cancelled, or serving stopped)")]
pub struct SinkClosed;

/// Where a handler sends partial output. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutputSink {
    invocation_id: u64,
    // Weak, so a sink kept past its call never holds the serving stream open.
    outbound: mpsc::WeakSender<pb::ServeRequest>,
    cancel: CancellationToken,
}

impl OutputSink {
    fn message(
        &self,
        output: Bytes,
    ) -> Result<(mpsc::Sender<pb::ServeRequest>, pb::ServeRequest), SinkClosed> {
        if self.cancel.is_cancelled() {
            return Err(SinkClosed);
        }
        let outbound = self.outbound.upgrade().ok_or(SinkClosed)?;
        let message = pb::ServeRequest {
            kind: Some(serve_request::Kind::Output(pb::InvocationOutput {
                invocation_id: self.invocation_id,
                output,
            })),
        };
        Ok((outbound, message))
    }

    /// Sends a partial output; waits while the daemon reads more slowly than it is produced.
    pub async fn send(&self, output: impl Into<Bytes>) -> Result<(), SinkClosed> {
        let (outbound, message) = self.message(output.into())?;
        outbound.send(message).await.map_err(|_| SinkClosed)
    }

    /// Like [`OutputSink::send`], blocking the thread: for handlers that run outside async code
    /// (those of [`blocking_handler_fn`]). Never call it from async code.
    pub fn send_blocking(&self, output: impl Into<Bytes>) -> Result<(), SinkClosed> {
        let (outbound, message) = self.message(output.into())?;
        outbound.blocking_send(message).map_err(|_| SinkClosed)
    }
}

/// A handler's failure; the caller gets ABORTED with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with `message` for the caller.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::new(message)
    }
}

impl From<SinkClosed> for HandlerError {
    fn from(closed: SinkClosed) -> Self {
        HandlerError::new(closed.to_string())
    }
}

/// What a handler returns: its final output, or an error for the caller.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Bytes, HandlerError>> + Send>>;

/// Runs invocations. One handler serves every function of a [`Client::serve`] call (see
/// [`Call::function_id`]); calls run concurrently, up to each function's `max_concurrency`.
///
/// When a call is withdrawn the SDK drops the returned future; a handler that panics fails
/// its call ("handler panicked: …") and serving goes on.
pub trait Handler: Send + Sync + 'static {
    /// Handles one call: send partial output through `output`, return the final bytes.
    fn call(&self, call: Call, output: OutputSink) -> HandlerFuture;
}

struct FnHandler<F>(F);

impl<F, Fut, O> Handler for FnHandler<F>
where
    F: Fn(Call, OutputSink) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    O: Into<Bytes>,
{
    fn call(&self, call: Call, output: OutputSink) -> HandlerFuture {
        let future = (self.0)(call, output);
        Box::pin(async move { future.await.map(Into::into) })
    }
}

/// A handler from an async function or closure.
pub fn handler_fn<F, Fut, O>(function: F) -> Arc<dyn Handler>
where
    F: Fn(Call, OutputSink) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, HandlerError>> + Send + 'static,
    O: Into<Bytes>,
{
    Arc::new(FnHandler(function))
}

struct BlockingHandler<F>(Arc<F>);

impl<F, O> Handler for BlockingHandler<F>
where
    F: Fn(Call, OutputSink) -> Result<O, HandlerError> + Send + Sync + 'static,
    O: Into<Bytes> + Send + 'static,
{
    fn call(&self, call: Call, output: OutputSink) -> HandlerFuture {
        let function = self.0.clone();
        let task = tokio::task::spawn_blocking(move || function(call, output).map(Into::into));
        Box::pin(async move {
            task.await.unwrap_or_else(|join| {
                Err(HandlerError::new(format!(
                    "handler panicked: {}",
                    panic_message(join.into_panic().as_ref())
                )))
            })
        })
    }
}

/// A handler from a synchronous function, run on tokio's blocking thread pool. A withdrawn
/// call's thread cannot be stopped from outside: check [`Call::is_cancelled`] in long work.
pub fn blocking_handler_fn<F, O>(function: F) -> Arc<dyn Handler>
where
    F: Fn(Call, OutputSink) -> Result<O, HandlerError> + Send + Sync + 'static,
    O: Into<Bytes> + Send + 'static,
{
    Arc::new(BlockingHandler(Arc::new(function)))
}

/// `now + remaining`, saturating far in the future instead of overflowing.
fn deadline_after(remaining: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(remaining)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 60 * 60)))
        .unwrap_or(now)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string())
}

/// How serving ended: `Ok` when it was stopped or the daemon shut down.
type Outcome = Result<(), (tonic::Code, String)>;

/// Functions being served. Stop with [`ServeHandle::stop`] (also done on drop): the daemon
/// stops sending new calls at once, calls already running finish, then the stream closes.
#[derive(Debug)]
pub struct ServeHandle {
    functions: Vec<String>,
    stop: CancellationToken,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl ServeHandle {
    /// The ids of the functions being served.
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// Begins a clean stop and returns at once; [`ServeHandle::wait`] tells when it is done.
    /// Calling it again does nothing.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until serving has ended: stopped, or the daemon ended the stream (`Ok`), or the
    /// connection failed (`Err`). Any number of tasks may wait.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut outcome = self.outcome.clone();
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(settled) => settled.clone().unwrap_or(Ok(())),
            Err(_) => Err((
                tonic::Code::Internal,
                "the serving task ended without a result".to_string(),
            )),
        };
        result.map_err(|(code, message)| Error::from(tonic::Status::new(code, message)))
    }

    /// Stops cleanly and waits until done.
    pub async fn stop(&self) -> Result<(), Error> {
        self.shutdown();
        self.wait().await
    }

    /// [`ServeHandle::wait`], blocking the calling thread; it needs no async runtime (but must
    /// not be called from async code).
    pub fn wait_blocking(&self) -> Result<(), Error> {
        futures::executor::block_on(self.wait())
    }

    /// [`ServeHandle::stop`], blocking the calling thread.
    pub fn stop_blocking(&self) -> Result<(), Error> {
        self.shutdown();
        self.wait_blocking()
    }

    /// True once serving has ended.
    pub fn is_finished(&self) -> bool {
        self.outcome.borrow().is_some()
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Client {
    /// Registers `functions` with the daemon and serves them with `handler` until stopped.
    /// Fails with INVALID_ARGUMENT (naming the field) for an invalid spec and ALREADY_EXISTS
    /// when a function id is already served on the node. Must be called within a tokio
    /// runtime, which then runs the serving task and the handlers.
    pub async fn serve(
        &self,
        functions: Vec<FunctionSpec>,
        handler: Arc<dyn Handler>,
    ) -> Result<ServeHandle, Error> {
        let (outbound, receiver) = mpsc::channel(OUTBOUND_BUFFER);
        let register = pb::ServeRequest {
            kind: Some(serve_request::Kind::Register(pb::ServeRegister {
                functions: functions.iter().map(FunctionSpec::to_proto).collect(),
            })),
        };
        outbound
            .send(register)
            .await
            .map_err(|_| Error::from(tonic::Status::internal("serving channel closed")))?;
        let inbound = self
            .compute()
            .serve(ReceiverStream::new(receiver))
            .await?
            .into_inner();

        let limits = functions
            .iter()
            .map(|f| {
                let slots = usize::try_from(f.max_concurrency).unwrap_or(usize::MAX);
                (f.name.clone(), Arc::new(Semaphore::new(slots.max(1))))
            })
            .collect();
        let stop = CancellationToken::new();
        let (settle, outcome) = watch::channel(None);
        let dispatcher = Dispatcher {
            inbound,
            outbound: Some(outbound),
            handler,
            limits,
            running: HashMap::new(),
            tasks: JoinSet::new(),
        };
        tokio::spawn(dispatcher.run(stop.clone(), settle));
        Ok(ServeHandle {
            functions: functions.into_iter().map(|f| f.name).collect(),
            stop,
            outcome,
        })
    }
}

struct Dispatcher {
    inbound: Streaming<pb::ServeResponse>,
    /// `None` once this side closed its half of the stream.
    outbound: Option<mpsc::Sender<pb::ServeRequest>>,
    handler: Arc<dyn Handler>,
    limits: HashMap<String, Arc<Semaphore>>,
    running: HashMap<u64, CancellationToken>,
    tasks: JoinSet<u64>,
}

impl Dispatcher {
    async fn run(mut self, stop: CancellationToken, settle: watch::Sender<Option<Outcome>>) {
        let mut draining = false;
        let outcome = loop {
            tokio::select! {
                _ = stop.cancelled(), if !draining => {
                    draining = true;
                    if let Some(outbound) = &self.outbound {
                        let drain = pb::ServeRequest {
                            kind: Some(serve_request::Kind::Drain(pb::ServeDrain {})),
                        };
                        let _ = outbound.send(drain).await;
                    }
                    self.close_when_idle(draining);
                }
                Some(finished) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(invocation_id) = finished {
                        self.running.remove(&invocation_id);
                    }
                    self.close_when_idle(draining);
                }
                message = self.inbound.message() => match message {
                    Ok(Some(message)) => self.handle(message),
                    // The daemon ended the stream: after our close, or at its shutdown.
                    Ok(None) => break Ok(()),
                    Err(status) => break Err((status.code(), status.message().to_string())),
                },
                // Bounds the wait for the daemon's end of stream once this side closed.
                _ = tokio::time::sleep(CLOSE_GRACE), if self.outbound.is_none() => break Ok(()),
            }
        };
        for cancel in self.running.values() {
            cancel.cancel();
        }
        self.tasks.abort_all();
        let _ = settle.send(Some(outcome));
    }

    /// Closes this side of the stream once draining and no call runs; the daemon then ends it.
    fn close_when_idle(&mut self, draining: bool) {
        if draining && self.tasks.is_empty() {
            self.outbound = None;
        }
    }

    fn handle(&mut self, message: pb::ServeResponse) {
        match message.kind {
            Some(serve_response::Kind::Invocation(invocation)) => self.start(invocation),
            Some(serve_response::Kind::Cancel(cancel)) => {
                if let Some(token) = self.running.get(&cancel.invocation_id) {
                    token.cancel();
                }
            }
            // A message kind from a newer daemon.
            None => {}
        }
    }

    fn start(&mut self, invocation: pb::Invocation) {
        let Some(outbound) = self.outbound.clone() else {
            return;
        };
        let invocation_id = invocation.invocation_id;
        let cancel = CancellationToken::new();
        self.running.insert(invocation_id, cancel.clone());
        let slots = self.limits.get(&invocation.function_id).cloned();
        let sink = OutputSink {
            invocation_id,
            outbound: outbound.downgrade(),
            cancel: cancel.clone(),
        };
        let call = Call {
            invocation_id,
            function_id: invocation.function_id,
            input: invocation.input,
            deadline: deadline_after(Duration::from_millis(invocation.deadline_ms)),
            cancel: cancel.clone(),
        };
        let handler = self.handler.clone();
        self.tasks.spawn(async move {
            // The daemon already keeps to each function's limit; this also holds for calls
            // the daemon has withdrawn but whose handler has not returned yet.
            let _slot = match slots {
                Some(slots) => tokio::select! {
                    slot = slots.acquire_owned() => slot.ok(),
                    _ = cancel.cancelled() => return invocation_id,
                },
                None => None,
            };
            let handled =
                AssertUnwindSafe(async move { handler.call(call, sink).await }).catch_unwind();
            let result = tokio::select! {
                result = handled => result,
                _ = cancel.cancelled() => return invocation_id,
            };
            let kind = match result {
                Ok(Ok(output)) => serve_request::Kind::Result(pb::InvocationResult {
                    invocation_id,
                    output,
                }),
                Ok(Err(error)) => serve_request::Kind::Error(pb::InvocationError {
                    invocation_id,
                    message: error.message,
                }),
                Err(panic) => serve_request::Kind::Error(pb::InvocationError {
                    invocation_id,
                    message: format!("handler panicked: {}", panic_message(panic.as_ref())),
                }),
            };
            let _ = outbound.send(pb::ServeRequest { kind: Some(kind) }).await;
            invocation_id
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_builder_sets_every_field() {
        let spec = FunctionSpec::new("embed")
            .description("sentence embeddings")
            .price_per_invocation_umhr(7)
            .max_concurrency(4)
            .max_input_bytes(1024);
        assert_eq!(
            spec.to_proto(),
            pb::FunctionSpec {
                name: "embed".into(),
                description: "sentence embeddings".into(),
                price_per_invocation_umhr: 7,
                max_concurrency: 4,
                max_input_bytes: 1024,
            }
        );
    }

    #[test]
    fn absurd_deadlines_do_not_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now());
        let soon = deadline_after(Duration::from_millis(5));
        assert!(soon <= Instant::now() + Duration::from_millis(5));
    }

    #[tokio::test]
    async fn a_sink_of_a_finished_call_is_closed() {
        let (outbound, mut receiver) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let sink = OutputSink {
            invocation_id: 9,
            outbound: outbound.downgrade(),
            cancel: cancel.clone(),
        };
        sink.send("a").await.unwrap();
        assert!(matches!(
            receiver.recv().await.unwrap().kind,
            Some(serve_request::Kind::Output(pb::InvocationOutput {
                invocation_id: 9,
                ..
            }))
        ));
        cancel.cancel();
        assert_eq!(sink.send("b").await, Err(SinkClosed));
        drop(outbound);
        let reopened = OutputSink {
            cancel: CancellationToken::new(),
            ..sink
        };
        assert_eq!(
            reopened.send("c").await,
            Err(SinkClosed),
            "the stream is gone"
        );
    }

    #[tokio::test]
    async fn blocking_handlers_report_panics() {
        let handler = blocking_handler_fn(|call: Call, _sink| -> Result<Vec<u8>, HandlerError> {
            if call.input.is_empty() {
                panic!("empty input");
            }
            Ok(call.input.to_vec())
        });
        let (outbound, _receiver) = mpsc::channel(1);
        let call = |input: &'static str| Call {
            invocation_id: 1,
            function_id: "f".into(),
            input: Bytes::from_static(input.as_bytes()),
            deadline: Instant::now() + Duration::from_secs(5),
            cancel: CancellationToken::new(),
        };
        let sink = OutputSink {
            invocation_id: 1,
            outbound: outbound.downgrade(),
            cancel: CancellationToken::new(),
        };
        assert_eq!(
            handler.call(call("x"), sink.clone()).await.unwrap(),
            Bytes::from_static(b"x")
        );
        assert_eq!(
            handler.call(call(""), sink).await.unwrap_err().message(),
            "handler panicked: empty input"
        );
    }
}
