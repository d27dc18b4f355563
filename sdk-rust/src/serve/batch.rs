//! Dynamic batching: calls of one function that arrive close together are merged into one
//! handler call, and its outputs are split back to their callers.
//!
//! The daemon still sends every invocation on its own, and every invocation still gets its own
//! answer (result or error), its own deadline, cancellation and metering; only the handler sees
//! them together. That is what a GPU model wants: one forward pass over 256 inputs costs about
//! what a pass over one costs, so merging concurrent callers multiplies throughput.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mehr_sdk::Error> {
//! use std::time::Duration;
//! use mehr_sdk::serve::{FunctionSpec, batch::{BatchPolicy, Batcher, batch_handler_fn}};
//!
//! let client = mehr_sdk::Client::connect().await?;
//! let policy = BatchPolicy::new(64).max_wait(Duration::from_millis(2));
//! let lengths = batch_handler_fn(|calls| async move {
//!     // One "model call" for the whole batch; one output per call, in order.
//!     Ok(calls.iter().map(|call| Ok(call.input.len().to_string().into())).collect())
//! });
//! let serving = client
//!     .serve(vec![FunctionSpec::new("lengths").batched(&policy)], Batcher::new(policy, lengths))
//!     .await?;
//! # serving.wait().await }
//! ```
//!
//! How a batch forms (per function id): the first call opens it; calls join until it holds
//! [`BatchPolicy::max_size`] calls or [`BatchPolicy::max_wait`] has passed since the first one
//! arrived. It then runs as soon as one of the [`BatchPolicy::max_concurrency`] handler slots is
//! free; while it waits for a slot, more calls may still join (up to `max_size`), so a busy
//! model gets full batches without any extra wait. Calls withdrawn while queued (deadline,
//! caller gone) leave the batch before it runs. A function's batcher holds at most
//! [`BatchPolicy::capacity`] calls (`max_size × max_concurrency` running plus `max_queue`
//! waiting); a call beyond that fails at once with a message saying the queue is full. The
//! daemon's own bounded queue holds the calls beyond what [`FunctionSpec::batched`] registers,
//! so through the daemon this bound is reached only by a function registered otherwise. Wrappers for other languages implement
//! [`BatchHandler`] over their own callback (see [`blocking_batch_handler_fn`]) and get the
//! same behaviour.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::FutureExt;
use prost::bytes::Bytes;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    time::Instant,
};

use super::{Call, FunctionSpec, Handler, HandlerError, HandlerFuture, OutputSink, panic_message};

/// The daemon's limit on the calls of one served function in flight at once
/// ([`FunctionSpec::max_concurrency`]); a batch can hold no more.
pub const MAX_CALLS_IN_FLIGHT: u32 = 1024;
/// The longest [`BatchPolicy::max_wait`]: batching trades latency for throughput, and a wait
/// longer than this is a mistake (the callers' deadlines would pass first).
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(10);
/// The largest [`BatchPolicy::max_queue`].
pub const MAX_QUEUE_LIMIT: usize = 65_536;

/// When a batch is closed and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    max_size: usize,
    max_wait: Duration,
    max_concurrency: usize,
    /// `None`: `max_size`.
    max_queue: Option<usize>,
}

/// A [`BatchPolicy`] value out of range; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch policy: {field} {reason}")]
pub struct InvalidPolicy {
    /// The field: `max_size`, `max_wait`, `max_concurrency` or `max_queue`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl BatchPolicy {
    /// Batches of at most `max_size` calls, closed 2 ms after their first call, one batch
    /// running at a time (one model on one GPU), room for one full batch to wait.
    pub fn new(max_size: usize) -> Self {
        BatchPolicy {
            max_size,
            max_wait: Duration::from_millis(2),
            max_concurrency: 1,
            max_queue: None,
        }
    }

    /// How many calls may wait for a batch to run (per function) while `max_concurrency` full
    /// batches run: those of the batch being formed and of the next ones. At least
    /// `max_size`, so that a batch can fill; the default is `max_size` (one full batch ready
    /// when a slot frees). Running batches smaller than `max_size` leave their room to waiting
    /// calls; a call beyond [`BatchPolicy::capacity`] fails at once ("the batch queue … is
    /// full").
    pub fn max_queue(mut self, calls: usize) -> Self {
        self.max_queue = Some(calls);
        self
    }

    /// How long a batch waits for more calls after its first one arrived. Zero: it takes the
    /// calls queued at that moment and runs.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many batches run at once (handler calls in flight). One suits a model on one GPU;
    /// two lets the next batch's input preparation overlap the current batch's compute.
    pub fn max_concurrency(mut self, batches: usize) -> Self {
        self.max_concurrency = batches;
        self
    }

    /// The most calls in one batch.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The longest wait for a batch to fill.
    pub fn wait(&self) -> Duration {
        self.max_wait
    }

    /// The most batches running at once.
    pub fn concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// The most calls waiting for a batch to run.
    pub fn queue(&self) -> usize {
        self.max_queue.unwrap_or(self.max_size)
    }

    /// The most calls a function's batcher holds, running or waiting: `max_concurrency`
    /// batches of `max_size` plus `max_queue`.
    pub fn capacity(&self) -> usize {
        self.max_size
            .saturating_mul(self.max_concurrency.max(1))
            .saturating_add(self.queue())
    }

    /// The calls the daemon should let through at once: [`BatchPolicy::capacity`] capped at
    /// [`MAX_CALLS_IN_FLIGHT`], the value to register as the function's `max_concurrency`
    /// ([`FunctionSpec::batched`] does). The daemon queues the calls beyond it in its own
    /// bounded queue.
    pub fn calls_in_flight(&self) -> u32 {
        u32::try_from(self.capacity())
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_CALLS_IN_FLIGHT)
    }

    /// Checks the ranges: `max_size` and `max_concurrency` 1 to [`MAX_CALLS_IN_FLIGHT`],
    /// `max_wait` at most [`MAX_WAIT_LIMIT`], `max_queue` from `max_size` to
    /// [`MAX_QUEUE_LIMIT`].
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let limit = MAX_CALLS_IN_FLIGHT as usize;
        if !(1..=limit).contains(&self.max_size) {
            return Err(InvalidPolicy {
                field: "max_size",
                reason: format!("is {}, must be 1 to {limit}", self.max_size),
            });
        }
        if !(1..=limit).contains(&self.max_concurrency) {
            return Err(InvalidPolicy {
                field: "max_concurrency",
                reason: format!("is {}, must be 1 to {limit}", self.max_concurrency),
            });
        }
        let queue = self.queue();
        if queue < self.max_size || queue > MAX_QUEUE_LIMIT {
            return Err(InvalidPolicy {
                field: "max_queue",
                reason: format!(
                    "is {queue}, must be {} (max_size: a batch forms in the queue) to \
                     {MAX_QUEUE_LIMIT}",
                    self.max_size
                ),
            });
        }
        if self.max_wait > MAX_WAIT_LIMIT {
            return Err(InvalidPolicy {
                field: "max_wait",
                reason: format!(
                    "is {:?}, at most {MAX_WAIT_LIMIT:?} (callers' deadlines would pass first)",
                    self.max_wait
                ),
            });
        }
        Ok(())
    }
}

impl FunctionSpec {
    /// Sets `max_concurrency` for a function served through a [`Batcher`] with `policy`:
    /// enough calls in flight for its batches to fill ([`BatchPolicy::calls_in_flight`]).
    pub fn batched(self, policy: &BatchPolicy) -> Self {
        self.max_concurrency(policy.calls_in_flight())
    }
}

/// One output per call of a batch, in the batch's order: the call's result or its own error.
pub type BatchOutputs = Vec<Result<Bytes, HandlerError>>;

/// What a batch handler returns: one output per call, or an error that fails every call of
/// the batch.
pub type BatchFuture = Pin<Box<dyn Future<Output = Result<BatchOutputs, HandlerError>> + Send>>;

/// Runs batches of calls of one function ([`Call::function_id`] is the same for all).
///
/// Must return exactly one output per call, in order; a wrong count fails every call of the
/// batch with a message that says so. When every call of a running batch is withdrawn the
/// SDK drops the returned future; a handler that panics fails its batch.
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles one batch.
    fn call_batch(&self, calls: Vec<Call>) -> BatchFuture;
}

struct FnBatchHandler<F>(F);

impl<F, Fut> BatchHandler for FnBatchHandler<F>
where
    F: Fn(Vec<Call>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BatchOutputs, HandlerError>> + Send + 'static,
{
    fn call_batch(&self, calls: Vec<Call>) -> BatchFuture {
        Box::pin((self.0)(calls))
    }
}

/// A batch handler from an async function or closure.
pub fn batch_handler_fn<F, Fut>(function: F) -> Arc<dyn BatchHandler>
where
    F: Fn(Vec<Call>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BatchOutputs, HandlerError>> + Send + 'static,
{
    Arc::new(FnBatchHandler(function))
}

struct BlockingBatchHandler<F>(Arc<F>);

impl<F> BatchHandler for BlockingBatchHandler<F>
where
    F: Fn(Vec<Call>) -> Result<BatchOutputs, HandlerError> + Send + Sync + 'static,
{
    fn call_batch(&self, calls: Vec<Call>) -> BatchFuture {
        let function = self.0.clone();
        let task = tokio::task::spawn_blocking(move || function(calls));
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

/// A batch handler from a synchronous function, run on tokio's blocking thread pool (where a
/// Python wrapper takes the GIL, a Node wrapper calls its ThreadsafeFunction). A withdrawn
/// call's thread cannot be stopped from outside: check [`Call::is_cancelled`] in long work.
pub fn blocking_batch_handler_fn<F>(function: F) -> Arc<dyn BatchHandler>
where
    F: Fn(Vec<Call>) -> Result<BatchOutputs, HandlerError> + Send + Sync + 'static,
{
    Arc::new(BlockingBatchHandler(Arc::new(function)))
}

/// Counters of a [`Batcher`], summed over its functions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches handed to the handler.
    pub batches: u64,
    /// Calls in those batches.
    pub calls: u64,
    /// The largest batch so far.
    pub largest: u64,
    /// Calls withdrawn (deadline, caller gone) while they waited for their batch to run.
    pub withdrawn_while_queued: u64,
    /// Calls failed at once because the batcher held [`BatchPolicy::capacity`] calls.
    pub rejected_queue_full: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    calls: AtomicU64,
    largest: AtomicU64,
    withdrawn: AtomicU64,
    rejected: AtomicU64,
}

/// The way into one function's queue.
struct Queue {
    calls: mpsc::UnboundedSender<Waiting>,
    /// Calls queued or running, not yet answered (nor withdrawn): what the capacity bounds.
    held: Arc<AtomicUsize>,
}

/// A call waiting for its batch, with the way back to its caller.
struct Waiting {
    call: Call,
    answer: oneshot::Sender<Result<Bytes, HandlerError>>,
}

impl Waiting {
    /// False once the call was withdrawn, its deadline passed, or nobody waits for the answer.
    fn is_live(&self) -> bool {
        !self.call.is_cancelled() && !self.answer.is_closed() && !self.call.remaining().is_zero()
    }
}

/// A [`Handler`] that gathers calls into batches for a [`BatchHandler`]; pass it to
/// [`crate::Client::serve`] for functions registered with [`FunctionSpec::batched`]. Calls of
/// different functions are never mixed: each function id has its own queue and its own
/// `max_concurrency` handler slots. Batched calls cannot stream partial output.
///
/// It needs a tokio runtime when the first call of a function arrives (serving has one); the
/// queue's task ends when the batcher is dropped, after the queued calls have run.
pub struct Batcher {
    policy: BatchPolicy,
    handler: Arc<dyn BatchHandler>,
    queues: Mutex<HashMap<String, Queue>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Batches calls for `handler` per `policy`. An out-of-range policy is clamped into range
    /// (check it first with [`BatchPolicy::validate`] to report it instead).
    pub fn new(policy: BatchPolicy, handler: Arc<dyn BatchHandler>) -> Arc<Batcher> {
        let limit = MAX_CALLS_IN_FLIGHT as usize;
        let policy = BatchPolicy {
            max_size: policy.max_size.clamp(1, limit),
            max_wait: policy.max_wait.min(MAX_WAIT_LIMIT),
            max_concurrency: policy.max_concurrency.clamp(1, limit),
            max_queue: Some(
                policy
                    .queue()
                    .clamp(policy.max_size.clamp(1, limit), MAX_QUEUE_LIMIT),
            ),
        };
        Arc::new(Batcher {
            policy,
            handler,
            queues: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// How batching has gone so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            calls: self.counters.calls.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
            withdrawn_while_queued: self.counters.withdrawn.load(Ordering::Relaxed),
            rejected_queue_full: self.counters.rejected.load(Ordering::Relaxed),
        }
    }

    /// A new queue for one function, its task started on `runtime`.
    fn start_queue(&self, runtime: &tokio::runtime::Handle) -> Queue {
        let (calls, receiver) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        runtime.spawn(collect(
            receiver,
            self.policy,
            self.handler.clone(),
            self.counters.clone(),
            held.clone(),
        ));
        Queue { calls, held }
    }

    /// Queues `waiting` on its function's queue, starting the queue's task when there is
    /// none (or when the one there stopped with an earlier runtime); fails when the function
    /// holds [`BatchPolicy::capacity`] calls already.
    fn enqueue(&self, waiting: Waiting) -> Result<(), HandlerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            HandlerError::new("batching needs a tokio runtime (serving provides one)")
        })?;
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let function_id = waiting.call.function_id.clone();
        let queue = queues
            .entry(function_id)
            .and_modify(|queue| {
                if queue.calls.is_closed() {
                    *queue = self.start_queue(&runtime);
                }
            })
            .or_insert_with(|| self.start_queue(&runtime));
        // Only this lock's holder adds to `held`, so the check and the add cannot let another
        // call past the bound.
        let held = queue.held.load(Ordering::SeqCst);
        if held >= self.policy.capacity() {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(HandlerError::new(format!(
                "the batch queue of `{}` is full: it holds {held} calls (room for {} x {} \
                 running and max_queue {} waiting); try again later",
                waiting.call.function_id,
                self.policy.max_concurrency,
                self.policy.max_size,
                self.policy.queue()
            )));
        }
        queue.held.fetch_add(1, Ordering::SeqCst);
        if queue.calls.send(waiting).is_err() {
            queue.held.fetch_sub(1, Ordering::SeqCst);
            return Err(HandlerError::new(
                "the batch queue stopped (its runtime shut down)",
            ));
        }
        Ok(())
    }
}

impl Handler for Batcher {
    fn call(&self, call: Call, _output: OutputSink) -> HandlerFuture {
        let (answer, receiver) = oneshot::channel();
        if let Err(error) = self.enqueue(Waiting { call, answer }) {
            return Box::pin(std::future::ready(Err(error)));
        }
        Box::pin(async move {
            receiver.await.unwrap_or_else(|_| {
                Err(HandlerError::new(
                    "the call's batch was dropped before it ran (serving stopped)",
                ))
            })
        })
    }
}

/// The queue of one function: forms batches and starts them, until the batcher is gone and
/// every queued call has run.
async fn collect(
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    policy: BatchPolicy,
    handler: Arc<dyn BatchHandler>,
    counters: Arc<Counters>,
    held: Arc<AtomicUsize>,
) {
    let slots = Arc::new(Semaphore::new(policy.max_concurrency));
    let mut gather = Gather {
        batch: Vec::with_capacity(policy.max_size),
        max_size: policy.max_size,
        counters: &counters,
        held: &held,
    };
    loop {
        // The first live call opens a batch.
        while gather.batch.is_empty() {
            match queue.recv().await {
                Some(waiting) => gather.push(waiting),
                None => return,
            }
        }
        let closes = Instant::now() + policy.max_wait;
        // Calls join until the batch is full or its wait is over.
        while !gather.is_full() {
            match queue.try_recv() {
                Ok(waiting) => {
                    gather.push(waiting);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) if !policy.max_wait.is_zero() => {}
                Err(_) => break,
            }
            tokio::select! {
                biased;
                next = queue.recv() => match next {
                    Some(waiting) => gather.push(waiting),
                    None => break,
                },
                _ = tokio::time::sleep_until(closes) => break,
            }
        }
        // Then it waits for a handler slot; calls may still join meanwhile.
        let permit = loop {
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break permit;
            }
            if gather.is_full() {
                break acquire(&slots).await;
            }
            tokio::select! {
                permit = acquire(&slots) => break permit,
                next = queue.recv() => match next {
                    Some(waiting) => gather.push(waiting),
                    None => break acquire(&slots).await,
                },
            }
        };
        let batch = gather.take_live();
        if batch.is_empty() {
            continue;
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .calls
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters
            .largest
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        let release = Release {
            held: held.clone(),
            calls: batch.len(),
        };
        tokio::spawn(run(batch, handler.clone(), permit, release));
    }
}

async fn acquire(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    // The semaphore is never closed.
    slots
        .clone()
        .acquire_owned()
        .await
        .unwrap_or_else(|_| unreachable!("the batch slots are never closed"))
}

/// The batch being formed.
struct Gather<'a> {
    batch: Vec<Waiting>,
    max_size: usize,
    counters: &'a Counters,
    /// The function's count of held calls, lowered as withdrawn calls leave.
    held: &'a AtomicUsize,
}

impl Gather<'_> {
    fn push(&mut self, waiting: Waiting) {
        if waiting.is_live() {
            self.batch.push(waiting);
        } else {
            self.held.fetch_sub(1, Ordering::SeqCst);
            self.counters.withdrawn.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn is_full(&self) -> bool {
        self.batch.len() >= self.max_size
    }

    /// The batch, without the calls withdrawn while it formed.
    fn take_live(&mut self) -> Vec<Waiting> {
        let before = self.batch.len();
        let mut batch = std::mem::take(&mut self.batch);
        batch.retain(Waiting::is_live);
        let withdrawn = before - batch.len();
        self.held.fetch_sub(withdrawn, Ordering::SeqCst);
        let withdrawn = withdrawn as u64;
        self.counters
            .withdrawn
            .fetch_add(withdrawn, Ordering::Relaxed);
        batch
    }
}

/// Gives a running batch's room in its function's capacity back when the batch is over
/// (answered, dropped because its callers left, or aborted with the runtime).
struct Release {
    held: Arc<AtomicUsize>,
    calls: usize,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.held.fetch_sub(self.calls, Ordering::SeqCst);
    }
}

/// Runs one batch and answers each of its calls; holds its handler slot and its room in the
/// capacity until done.
async fn run(
    batch: Vec<Waiting>,
    handler: Arc<dyn BatchHandler>,
    slot: OwnedSemaphorePermit,
    release: Release,
) {
    let count = batch.len();
    let (calls, mut answers): (Vec<Call>, Vec<_>) =
        batch.into_iter().map(|w| (w.call, w.answer)).unzip();
    let tokens: Vec<_> = calls.iter().map(|call| call.cancel.clone()).collect();
    let handled = AssertUnwindSafe(handler.call_batch(calls)).catch_unwind();
    // Every call withdrawn: nobody waits for the batch, so it is dropped (an async handler
    // stops at its next await; a blocking one runs on, its calls reporting `is_cancelled`).
    let all_withdrawn = futures::future::join_all(answers.iter_mut().zip(&tokens).map(
        |(answer, token)| async move {
            tokio::select! {
                _ = answer.closed() => {}
                _ = token.cancelled() => {}
            }
        },
    ));
    let outcome = tokio::select! {
        outcome = handled => outcome,
        _ = all_withdrawn => return,
    };
    let outputs = match outcome {
        Ok(Ok(outputs)) if outputs.len() == count => outputs,
        Ok(Ok(outputs)) => {
            let error = HandlerError::new(format!(
                "the batch handler returned {} outputs for a batch of {count} calls",
                outputs.len()
            ));
            vec![Err(error); count]
        }
        Ok(Err(error)) => vec![Err(error); count],
        Err(panic) => {
            let error = HandlerError::new(format!(
                "handler panicked: {}",
                panic_message(panic.as_ref())
            ));
            vec![Err(error); count]
        }
    };
    // The next batch may start, and the function take new calls, before these callers hear.
    drop(slot);
    drop(release);
    for (answer, output) in answers.into_iter().zip(outputs) {
        // A call withdrawn meanwhile has nobody to answer.
        let _ = answer.send(output);
    }
}

#[cfg(test)]
mod tests;
