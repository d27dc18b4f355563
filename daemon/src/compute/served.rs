//! Functions served by client processes: the registration rules, the per-stream session that
//! numbers invocations and routes the server's answers back to each caller, and one running
//! call as its caller sees it.
//!
//! A session's state sits behind one short-held lock: the invocations waiting for answers and
//! the sender towards the server. Closing the session (the stream ended) drops both, which is
//! how every running call learns that its provider is gone.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prost::bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    function_id::check_served_name,
    gate::{Gate, Slot},
    invocation::InvokeFailure,
};

/// Most functions one Serve stream may register.
pub(super) const MAX_FUNCTIONS_PER_SESSION: usize = 256;
/// Longest function description, in bytes.
pub(super) const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most calls a served function may run at once.
pub(super) const MAX_CONCURRENCY: u32 = 1024;
/// Partial outputs buffered per call between the server and a caller that reads slowly;
/// beyond this the call fails rather than stall the server's other calls.
const PARTIAL_BUFFER: usize = 256;

/// A function as a server registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFunctionSpec {
    /// The function id.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Price per call, in μMHR.
    pub price_per_invocation_umhr: u64,
    /// Calls it runs at once.
    pub max_concurrency: u32,
    /// Largest input; 0 means the node's maximum.
    pub max_input_bytes: u32,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The first message of the stream was not a registration.
    #[error("the first message of a Serve stream must be `register`")]
    NotRegisterFirst,
    /// The registration lists no function.
    #[error("register.functions: at least one function is required")]
    NoFunctions,
    /// The registration lists too many functions.
    #[error(
        "register.functions: {count} functions, at most {MAX_FUNCTIONS_PER_SESSION} per stream"
    )]
    TooManyFunctions {
        /// How many were listed.
        count: usize,
    },
    /// A field of one function spec is invalid.
    #[error("register.functions[{index}].{field}: {reason}")]
    InvalidField {
        /// Position of the spec.
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The function id is already served on this node.
    #[error("function `{function_id}` is already served on this node")]
    AlreadyServed {
        /// The id.
        function_id: String,
    },
    /// The node is stopping and takes no new servers.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl ServedFunctionSpec {
    /// Checks the spec (it is entry `index` of a registration) and fills in the node's input
    /// limit where the spec leaves it at 0.
    pub(super) fn validate(
        mut self,
        index: usize,
        node_max_input: u32,
    ) -> Result<Self, RegistrationError> {
        let invalid = |field, reason: String| RegistrationError::InvalidField {
            index,
            field,
            reason,
        };
        check_served_name(&self.name).map_err(|e| invalid("name", e.to_string()))?;
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(
                "description",
                format!(
                    "is {} bytes long, the limit is {MAX_DESCRIPTION_BYTES}",
                    self.description.len()
                ),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(invalid(
                "max_concurrency",
                format!(
                    "is {}, must be 1 to {MAX_CONCURRENCY}",
                    self.max_concurrency
                ),
            ));
        }
        if self.max_input_bytes > node_max_input {
            return Err(invalid(
                "max_input_bytes",
                format!(
                    "is {}, this node accepts at most {node_max_input} (0 means that maximum)",
                    self.max_input_bytes
                ),
            ));
        }
        if self.max_input_bytes == 0 {
            self.max_input_bytes = node_max_input;
        }
        Ok(self)
    }
}

/// Why the daemon withdraws an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The deadline passed.
    DeadlineExceeded,
    /// The caller went away.
    CallerGone,
    /// The caller read partial output too slowly.
    CallerTooSlow,
    /// The output grew past the node's limit.
    OutputTooLarge,
}

/// A message from the daemon to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToProvider {
    /// Run a function.
    Invocation {
        /// Number of the invocation on this stream.
        invocation_id: u64,
        /// The function.
        function_id: String,
        /// The input.
        input: Bytes,
        /// Time left until the deadline, when sent.
        deadline: Duration,
    },
    /// Stop working on an invocation.
    Cancel {
        /// The invocation.
        invocation_id: u64,
        /// Why.
        reason: CancelReason,
    },
}

/// A message from a server to the daemon, after the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromProvider {
    /// Part of an invocation's output.
    Output {
        /// The invocation.
        invocation_id: u64,
        /// The bytes.
        output: Bytes,
    },
    /// The final output; ends the invocation.
    Result {
        /// The invocation.
        invocation_id: u64,
        /// The bytes.
        output: Bytes,
    },
    /// The invocation failed; ends it.
    Error {
        /// The invocation.
        invocation_id: u64,
        /// The handler's message.
        message: String,
    },
    /// Unregister the functions; running calls may finish.
    Drain,
    /// A second registration: a protocol violation.
    Register,
}

/// A server broke the Serve protocol; the stream ends with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionViolation {
    /// A `register` message after the first.
    #[error(
        "functions are already registered on this stream; open another Serve stream to add functions"
    )]
    RegisteredTwice,
    /// A message the daemon cannot read.
    #[error("{0}")]
    Malformed(String),
}

/// How a served function's caller gets its answer.
struct Pending {
    partial: mpsc::Sender<Bytes>,
    done: oneshot::Sender<Result<Bytes, String>>,
    overflowed: Arc<AtomicBool>,
}

struct SessionState {
    /// `None` once closed: nothing more goes to the server.
    outbound: Option<mpsc::UnboundedSender<Result<ToProvider, SessionViolation>>>,
    pending: HashMap<u64, Pending>,
    next_invocation: u64,
}

/// One Serve stream: the functions it registered and the invocations it is answering.
pub(super) struct Session {
    /// Serial number of the session on this node.
    pub(super) id: u64,
    /// The functions it registered.
    pub(super) functions: Vec<String>,
    state: Mutex<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

/// The messages a session sends to its server, in order. Ends when the session closes; a
/// protocol violation arrives as a last `Err`.
pub type Outbound = mpsc::UnboundedReceiver<Result<ToProvider, SessionViolation>>;

impl Session {
    pub(super) fn new(id: u64, functions: Vec<String>) -> (Arc<Session>, Outbound) {
        // Unbounded is bounded in practice: one invocation per admitted call (the gates bound
        // those) and at most one cancel each.
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Session {
            id,
            functions,
            state: Mutex::new(SessionState {
                outbound: Some(tx),
                pending: HashMap::new(),
                next_invocation: 1,
            }),
        };
        (Arc::new(session), rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends an invocation to the server and registers its caller's channels.
    fn dispatch(
        &self,
        function_id: &str,
        input: Bytes,
        remaining: Duration,
        pending: Pending,
    ) -> Option<u64> {
        let mut state = self.state();
        let outbound = state.outbound.clone()?;
        let invocation_id = state.next_invocation;
        state.next_invocation += 1;
        state.pending.insert(invocation_id, pending);
        let sent = outbound.send(Ok(ToProvider::Invocation {
            invocation_id,
            function_id: function_id.to_string(),
            input,
            deadline: remaining,
        }));
        if sent.is_err() {
            state.pending.remove(&invocation_id);
            return None;
        }
        Some(invocation_id)
    }

    /// Forgets an invocation the caller no longer waits for and tells the server.
    fn withdraw(&self, invocation_id: u64, reason: CancelReason) {
        let mut state = self.state();
        if state.pending.remove(&invocation_id).is_some()
            && let Some(outbound) = &state.outbound
        {
            // A closed receiver means the stream is gone, and the cancel with it.
            let _ = outbound.send(Ok(ToProvider::Cancel {
                invocation_id,
                reason,
            }));
        }
    }

    /// Routes one message of the server. Answers to invocations the caller has given up on
    /// are dropped: they race with cancels.
    pub(super) fn handle(&self, message: FromProvider) -> Result<(), SessionViolation> {
        match message {
            FromProvider::Output {
                invocation_id,
                output,
            } => {
                let mut state = self.state();
                let Some(pending) = state.pending.get(&invocation_id) else {
                    return Ok(());
                };
                // A closed channel means the caller is gone; its drop guard withdraws the
                // invocation.
                let overflowed = match pending.partial.try_send(output) {
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        pending.overflowed.store(true, Ordering::SeqCst);
                        true
                    }
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => false,
                };
                if overflowed {
                    state.pending.remove(&invocation_id);
                    if let Some(outbound) = &state.outbound {
                        let _ = outbound.send(Ok(ToProvider::Cancel {
                            invocation_id,
                            reason: CancelReason::CallerTooSlow,
                        }));
                    }
                }
                Ok(())
            }
            FromProvider::Result {
                invocation_id,
                output,
            } => {
                self.finish(invocation_id, Ok(output));
                Ok(())
            }
            FromProvider::Error {
                invocation_id,
                message,
            } => {
                self.finish(invocation_id, Err(message));
                Ok(())
            }
            FromProvider::Register => Err(SessionViolation::RegisteredTwice),
            // The caller of `handle` unregisters the functions; nothing changes here.
            FromProvider::Drain => Ok(()),
        }
    }

    fn finish(&self, invocation_id: u64, result: Result<Bytes, String>) {
        let pending = self.state().pending.remove(&invocation_id);
        if let Some(pending) = pending {
            // Dropping `partial` after the send lets the caller drain buffered partial output
            // before it looks at the result.
            let _ = pending.done.send(result);
        }
    }

    /// Closes the session: nothing more goes to the server, and every running call fails with
    /// "provider disconnected". A `violation` is sent to the server as the stream's last item.
    pub(super) fn close(&self, violation: Option<SessionViolation>) {
        let (outbound, pending) = {
            let mut state = self.state();
            (state.outbound.take(), std::mem::take(&mut state.pending))
        };
        if let (Some(outbound), Some(violation)) = (outbound, violation) {
            let _ = outbound.send(Err(violation));
        }
        drop(pending);
    }

    /// Invocations waiting for an answer.
    #[cfg(test)]
    pub(super) fn pending_count(&self) -> usize {
        self.state().pending.len()
    }
}

/// A function registered by a connected server.
#[derive(Debug)]
pub(super) struct ServedFunction {
    /// The validated spec (its `max_input_bytes` is never 0).
    pub(super) spec: ServedFunctionSpec,
    /// The server's session.
    pub(super) session: Arc<Session>,
    /// Its concurrency limit and waiting line.
    pub(super) gate: Arc<Gate>,
    /// When it was registered, milliseconds since the Unix epoch.
    pub(super) registered_at_unix_ms: u64,
}

/// A piece of a served call's output.
pub(super) enum Piece {
    Partial(Bytes),
    Final(Bytes),
}

/// A call to a served function, from the caller's side, once it has a slot and was sent to
/// the server. Dropping it before the end withdraws the invocation.
pub(super) struct RunningCall {
    function: Arc<ServedFunction>,
    invocation_id: u64,
    partial: mpsc::Receiver<Bytes>,
    done: oneshot::Receiver<Result<Bytes, String>>,
    overflowed: Arc<AtomicBool>,
    deadline: Duration,
    deadline_at: Instant,
    output_bytes: usize,
    max_output: usize,
    finished: bool,
    // Held for the life of the call: the function's concurrency slot.
    _slot: Slot,
}

impl RunningCall {
    /// Waits for a slot (until the deadline), then sends the invocation to the server.
    pub(super) async fn start(
        function: Arc<ServedFunction>,
        input: Bytes,
        deadline: Duration,
        deadline_at: Instant,
        max_output: usize,
    ) -> Result<RunningCall, InvokeFailure> {
        let name = &function.spec.name;
        let slot = function
            .gate
            .enter(deadline_at)
            .await
            .map_err(|e| InvokeFailure::from_gate(name, deadline, e))?;
        let remaining = deadline_at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(InvokeFailure::DeadlineExceeded {
                function_id: name.clone(),
                deadline,
                phase: "while waiting for a free slot",
            });
        }
        let (partial_tx, partial) = mpsc::channel(PARTIAL_BUFFER);
        let (done_tx, done) = oneshot::channel();
        let overflowed = Arc::new(AtomicBool::new(false));
        let pending = Pending {
            partial: partial_tx,
            done: done_tx,
            overflowed: overflowed.clone(),
        };
        let invocation_id = function
            .session
            .dispatch(name, input, remaining, pending)
            .ok_or_else(|| InvokeFailure::ProviderDisconnected {
                function_id: name.clone(),
            })?;
        Ok(RunningCall {
            function,
            invocation_id,
            partial,
            done,
            overflowed,
            deadline,
            deadline_at,
            output_bytes: 0,
            max_output,
            finished: false,
            _slot: slot,
        })
    }

    fn fail(&mut self, reason: Option<CancelReason>, failure: InvokeFailure) -> InvokeFailure {
        self.finished = true;
        if let Some(reason) = reason {
            self.function.session.withdraw(self.invocation_id, reason);
        }
        failure
    }

    fn count_output(&mut self, len: usize) -> Result<(), InvokeFailure> {
        self.output_bytes = self.output_bytes.saturating_add(len);
        if self.output_bytes > self.max_output {
            let failure = InvokeFailure::OutputTooLarge {
                function_id: self.function.spec.name.clone(),
                limit: self.max_output,
            };
            return Err(self.fail(Some(CancelReason::OutputTooLarge), failure));
        }
        Ok(())
    }

    /// The next piece of output, the final one last.
    pub(super) async fn next(&mut self) -> Result<Piece, InvokeFailure> {
        let function_id = self.function.spec.name.clone();
        match tokio::time::timeout_at(self.deadline_at, self.partial.recv()).await {
            Err(_elapsed) => {
                let failure = InvokeFailure::DeadlineExceeded {
                    function_id,
                    deadline: self.deadline,
                    phase: "while running",
                };
                Err(self.fail(Some(CancelReason::DeadlineExceeded), failure))
            }
            Ok(Some(partial)) => {
                self.count_output(partial.len())?;
                Ok(Piece::Partial(partial))
            }
            // The session dropped the sender: the call ended one way or another, and `done`
            // is settled (sent, or dropped with the session).
            Ok(None) => {
                self.finished = true;
                match (&mut self.done).await {
                    Ok(Ok(output)) => {
                        self.count_output(output.len())?;
                        Ok(Piece::Final(output))
                    }
                    Ok(Err(message)) => Err(InvokeFailure::HandlerFailed {
                        function_id,
                        message,
                    }),
                    Err(_) if self.overflowed.load(Ordering::SeqCst) => {
                        Err(InvokeFailure::CallerTooSlow { function_id })
                    }
                    Err(_) => Err(InvokeFailure::ProviderDisconnected { function_id }),
                }
            }
        }
    }
}

impl Drop for RunningCall {
    fn drop(&mut self) {
        if !self.finished {
            self.function
                .session
                .withdraw(self.invocation_id, CancelReason::CallerGone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ServedFunctionSpec {
        ServedFunctionSpec {
            name: name.into(),
            description: "d".into(),
            price_per_invocation_umhr: 5,
            max_concurrency: 2,
            max_input_bytes: 0,
        }
    }

    #[test]
    fn validation_names_the_field() {
        let err = spec("a/b").validate(3, 100).unwrap_err();
        assert!(
            err.to_string().starts_with("register.functions[3].name: "),
            "{err}"
        );
        let err = ServedFunctionSpec {
            max_concurrency: 0,
            ..spec("ok")
        }
        .validate(0, 100)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "register.functions[0].max_concurrency: is 0, must be 1 to 1024"
        );
        let err = ServedFunctionSpec {
            max_input_bytes: 101,
            ..spec("ok")
        }
        .validate(0, 100)
        .unwrap_err();
        assert!(err.to_string().contains("max_input_bytes"), "{err}");
        let err = ServedFunctionSpec {
            description: "x".repeat(1025),
            ..spec("ok")
        }
        .validate(0, 100)
        .unwrap_err();
        assert!(err.to_string().contains("description"), "{err}");
        assert_eq!(spec("ok").validate(0, 100).unwrap().max_input_bytes, 100);
    }

    fn function(session: &Arc<Session>, slots: usize) -> Arc<ServedFunction> {
        Arc::new(ServedFunction {
            spec: ServedFunctionSpec {
                max_input_bytes: 100,
                ..spec("f")
            },
            session: session.clone(),
            gate: Arc::new(Gate::new(slots, 4)),
            registered_at_unix_ms: 0,
        })
    }

    fn soon() -> (Duration, Instant) {
        let d = Duration::from_secs(30);
        (d, Instant::now() + d)
    }

    async fn dispatched(outbound: &mut Outbound) -> u64 {
        match outbound.recv().await {
            Some(Ok(ToProvider::Invocation { invocation_id, .. })) => invocation_id,
            other => panic!("expected an invocation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn partial_outputs_arrive_before_the_result() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let (d, at) = soon();
        let mut call = RunningCall::start(function(&session, 1), "in".into(), d, at, 1000)
            .await
            .unwrap();
        let id = dispatched(&mut outbound).await;
        for message in [
            FromProvider::Output {
                invocation_id: id,
                output: "a".into(),
            },
            FromProvider::Output {
                invocation_id: id,
                output: "b".into(),
            },
            FromProvider::Result {
                invocation_id: id,
                output: "c".into(),
            },
        ] {
            session.handle(message).unwrap();
        }
        let mut seen = Vec::new();
        loop {
            match call.next().await.unwrap() {
                Piece::Partial(b) => seen.push(b),
                Piece::Final(b) => {
                    seen.push(b);
                    break;
                }
            }
        }
        assert_eq!(seen, vec!["a", "b", "c"]);
        assert_eq!(session.pending_count(), 0);
    }

    #[tokio::test]
    async fn closing_the_session_fails_running_calls() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let (d, at) = soon();
        let mut call = RunningCall::start(function(&session, 1), "in".into(), d, at, 1000)
            .await
            .unwrap();
        dispatched(&mut outbound).await;
        session.close(None);
        assert!(matches!(
            call.next().await,
            Err(InvokeFailure::ProviderDisconnected { .. })
        ));
        assert!(outbound.recv().await.is_none(), "the stream ends");
    }

    #[tokio::test]
    async fn dropping_a_call_cancels_it_at_the_server() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let (d, at) = soon();
        let call = RunningCall::start(function(&session, 1), "in".into(), d, at, 1000)
            .await
            .unwrap();
        let id = dispatched(&mut outbound).await;
        drop(call);
        assert_eq!(
            outbound.recv().await,
            Some(Ok(ToProvider::Cancel {
                invocation_id: id,
                reason: CancelReason::CallerGone
            }))
        );
        // A late answer is ignored.
        session
            .handle(FromProvider::Result {
                invocation_id: id,
                output: "late".into(),
            })
            .unwrap();
    }

    #[tokio::test]
    async fn deadline_cancels_at_the_server() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let d = Duration::from_millis(20);
        let mut call = RunningCall::start(
            function(&session, 1),
            "in".into(),
            d,
            Instant::now() + d,
            1000,
        )
        .await
        .unwrap();
        let id = dispatched(&mut outbound).await;
        assert!(matches!(
            call.next().await,
            Err(InvokeFailure::DeadlineExceeded {
                phase: "while running",
                ..
            })
        ));
        assert_eq!(
            outbound.recv().await,
            Some(Ok(ToProvider::Cancel {
                invocation_id: id,
                reason: CancelReason::DeadlineExceeded
            }))
        );
    }

    #[tokio::test]
    async fn output_limit_and_handler_errors() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let f = function(&session, 2);
        let (d, at) = soon();
        let mut big = RunningCall::start(f.clone(), "in".into(), d, at, 3)
            .await
            .unwrap();
        let big_id = dispatched(&mut outbound).await;
        let mut failing = RunningCall::start(f, "in".into(), d, at, 3).await.unwrap();
        let failing_id = dispatched(&mut outbound).await;
        session
            .handle(FromProvider::Output {
                invocation_id: big_id,
                output: "abcd".into(),
            })
            .unwrap();
        session
            .handle(FromProvider::Error {
                invocation_id: failing_id,
                message: "model not loaded".into(),
            })
            .unwrap();
        assert!(matches!(
            big.next().await,
            Err(InvokeFailure::OutputTooLarge { limit: 3, .. })
        ));
        assert_eq!(
            failing.next().await.err().unwrap().to_string(),
            "function `f` failed: model not loaded"
        );
        assert_eq!(
            outbound.recv().await,
            Some(Ok(ToProvider::Cancel {
                invocation_id: big_id,
                reason: CancelReason::OutputTooLarge
            }))
        );
    }

    #[tokio::test]
    async fn a_caller_that_stops_reading_fails_alone() {
        let (session, mut outbound) = Session::new(1, vec!["f".into()]);
        let (d, at) = soon();
        let mut call = RunningCall::start(function(&session, 1), "in".into(), d, at, usize::MAX)
            .await
            .unwrap();
        let id = dispatched(&mut outbound).await;
        for _ in 0..=PARTIAL_BUFFER {
            session
                .handle(FromProvider::Output {
                    invocation_id: id,
                    output: "x".into(),
                })
                .unwrap();
        }
        assert_eq!(
            outbound.recv().await,
            Some(Ok(ToProvider::Cancel {
                invocation_id: id,
                reason: CancelReason::CallerTooSlow
            }))
        );
        let mut partials = 0;
        let failure = loop {
            match call.next().await {
                Ok(Piece::Partial(_)) => partials += 1,
                Ok(Piece::Final(_)) => panic!("no final output expected"),
                Err(failure) => break failure,
            }
        };
        assert_eq!(partials, PARTIAL_BUFFER);
        assert!(matches!(failure, InvokeFailure::CallerTooSlow { .. }));
    }

    #[test]
    fn a_second_registration_is_a_violation() {
        let (session, _outbound) = Session::new(1, vec![]);
        assert_eq!(
            session.handle(FromProvider::Register),
            Err(SessionViolation::RegisteredTwice)
        );
    }
}
