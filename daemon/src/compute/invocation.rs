//! One call of a function: what the caller asks, the output it gets back piece by piece, and
//! every way the call can fail.

use std::{sync::Arc, time::Duration};

use mehr_compute::{Limits, ModuleId, Runtime};
use prost::bytes::Bytes;
use tokio::time::Instant;

use super::{
    FunctionKind,
    gate::{Gate, GateError},
    served::{Piece, RunningCall, ServedFunction},
    wasm,
};

/// What a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    /// The function id.
    pub function_id: String,
    /// The input.
    pub input: Bytes,
    /// How long the call may take, queueing included; `None` uses the function's default.
    /// Longer values are lowered to the node's maximum.
    pub deadline: Option<Duration>,
    /// WASM only: the most fuel the call may burn; `None` uses the node's limit, larger values
    /// are lowered to it.
    pub max_fuel: Option<u64>,
    /// A bound set by the transport rather than the caller (a unary call must answer before
    /// the API's request timeout); the deadline is lowered to it.
    pub deadline_cap: Option<Duration>,
}

impl InvokeRequest {
    /// A call of `function_id` with `input` and every limit at its default.
    pub fn new(function_id: impl Into<String>, input: impl Into<Bytes>) -> Self {
        InvokeRequest {
            function_id: function_id.into(),
            input: input.into(),
            deadline: None,
            max_fuel: None,
            deadline_cap: None,
        }
    }
}

/// How a finished call ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// WASM or served.
    pub kind: FunctionKind,
    /// WASM: fuel burnt, instantiation included; zero for served functions.
    pub fuel_used: u64,
    /// From the call's arrival to its result, queueing included.
    pub duration: Duration,
}

/// A piece of a call's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Output produced before the end; more follows.
    Partial(Bytes),
    /// The last output, and how the call ran.
    Final {
        /// The last bytes (possibly empty when everything came as partial output).
        output: Bytes,
        /// How the call ran.
        metering: Metering,
    },
}

/// A finished call with its whole output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The partial outputs and the final bytes, concatenated.
    pub output: Bytes,
    /// How the call ran.
    pub metering: Metering,
}

/// Why a call produced no (more) output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeFailure {
    /// The request named no function.
    #[error("function_id must not be empty")]
    EmptyFunctionId,
    /// No function has this id on this node.
    #[error("no function `{function_id}` on this node")]
    UnknownFunction {
        /// The id asked for.
        function_id: String,
    },
    /// The input is larger than the function accepts.
    #[error("input is {len} bytes, function `{function_id}` accepts at most {limit}")]
    InputTooLarge {
        /// The function.
        function_id: String,
        /// Input size.
        len: usize,
        /// The function's limit.
        limit: u64,
    },
    /// Every slot is busy and the waiting line is full.
    #[error("function `{function_id}` is busy: {reason}")]
    Busy {
        /// The function.
        function_id: String,
        /// The gate's explanation.
        reason: GateError,
    },
    /// The deadline passed.
    #[error("function `{function_id}`: deadline of {deadline:?} exceeded {phase}")]
    DeadlineExceeded {
        /// The function.
        function_id: String,
        /// The call's deadline.
        deadline: Duration,
        /// `while waiting for a free slot` or `while running`.
        phase: &'static str,
    },
    /// The server of a served function went away during the call.
    #[error("function `{function_id}`: provider disconnected")]
    ProviderDisconnected {
        /// The function.
        function_id: String,
    },
    /// The function was unregistered while the call waited for a slot.
    #[error("function `{function_id}` is no longer served")]
    NoLongerServed {
        /// The function.
        function_id: String,
    },
    /// The served function's handler reported an error.
    #[error("function `{function_id}` failed: {message}")]
    HandlerFailed {
        /// The function.
        function_id: String,
        /// The handler's message.
        message: String,
    },
    /// The served function produced more output than the node allows.
    #[error("function `{function_id}` produced more than {limit} bytes of output")]
    OutputTooLarge {
        /// The function.
        function_id: String,
        /// The node's limit.
        limit: usize,
    },
    /// The caller read partial output too slowly; the call was cancelled.
    #[error("the output of `{function_id}` was read too slowly; the call was cancelled")]
    CallerTooSlow {
        /// The function.
        function_id: String,
    },
    /// The WASM sandbox stopped the call.
    #[error("function `{function_id}`: {source}")]
    Wasm {
        /// The function.
        function_id: String,
        /// What the sandbox reported.
        source: mehr_compute::InvokeError,
    },
    /// The sandbox task ended abnormally (a bug, not the guest's fault).
    #[error("function `{function_id}`: the sandbox task failed: {reason}")]
    Internal {
        /// The function.
        function_id: String,
        /// What happened.
        reason: String,
    },
}

impl InvokeFailure {
    pub(super) fn from_gate(function_id: &str, deadline: Duration, error: GateError) -> Self {
        let function_id = function_id.to_string();
        match error {
            GateError::QueueFull { .. } => InvokeFailure::Busy {
                function_id,
                reason: error,
            },
            GateError::DeadlineWhileQueued => InvokeFailure::DeadlineExceeded {
                function_id,
                deadline,
                phase: "while waiting for a free slot",
            },
            GateError::Closed => InvokeFailure::NoLongerServed { function_id },
        }
    }
}

/// Where a call runs, once resolved.
pub(super) enum Target {
    /// An export of a deployed module.
    Wasm {
        runtime: Arc<Runtime>,
        gate: Arc<Gate>,
        module: ModuleId,
        export: String,
        limits: Limits,
    },
    /// A function served by a connected client.
    Served {
        function: Arc<ServedFunction>,
        max_output: usize,
    },
}

/// A call in progress. Pull its output with [`Invocation::next`]; dropping it before the end
/// cancels the call (a served function's server is told).
pub struct Invocation {
    function_id: String,
    started: Instant,
    deadline: Duration,
    step: Step,
}

enum Step {
    Ready { target: Target, input: Bytes },
    Running(RunningCall),
    Done,
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("function_id", &self.function_id)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Invocation {
    pub(super) fn new(
        function_id: String,
        target: Target,
        input: Bytes,
        deadline: Duration,
    ) -> Self {
        Invocation {
            function_id,
            started: Instant::now(),
            deadline,
            step: Step::Ready { target, input },
        }
    }

    /// The canonical id of the function being called.
    pub fn function_id(&self) -> &str {
        &self.function_id
    }

    /// The next piece of output; `None` after the final chunk or an error.
    pub async fn next(&mut self) -> Option<Result<Chunk, InvokeFailure>> {
        let deadline_at = self.started + self.deadline;
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Done => None,
            Step::Ready {
                target:
                    Target::Wasm {
                        runtime,
                        gate,
                        module,
                        export,
                        limits,
                    },
                input,
            } => {
                let call = wasm::WasmCall {
                    function_id: &self.function_id,
                    module,
                    export,
                    input,
                    limits,
                    deadline: self.deadline,
                    deadline_at,
                };
                let result = wasm::run(runtime, &gate, call).await;
                Some(result.map(|output| Chunk::Final {
                    output: output.bytes.into(),
                    metering: Metering {
                        kind: FunctionKind::Wasm,
                        fuel_used: output.fuel_used,
                        duration: self.started.elapsed(),
                    },
                }))
            }
            Step::Ready {
                target:
                    Target::Served {
                        function,
                        max_output,
                    },
                input,
            } => {
                let running =
                    RunningCall::start(function, input, self.deadline, deadline_at, max_output)
                        .await;
                match running {
                    Ok(running) => {
                        self.step = Step::Running(running);
                        self.pull_running().await
                    }
                    Err(failure) => Some(Err(failure)),
                }
            }
            Step::Running(running) => {
                self.step = Step::Running(running);
                self.pull_running().await
            }
        }
    }

    async fn pull_running(&mut self) -> Option<Result<Chunk, InvokeFailure>> {
        let Step::Running(running) = &mut self.step else {
            return None;
        };
        match running.next().await {
            Ok(Piece::Partial(partial)) => Some(Ok(Chunk::Partial(partial))),
            Ok(Piece::Final(output)) => {
                self.step = Step::Done;
                Some(Ok(Chunk::Final {
                    output,
                    metering: Metering {
                        kind: FunctionKind::Served,
                        fuel_used: 0,
                        duration: self.started.elapsed(),
                    },
                }))
            }
            Err(failure) => {
                self.step = Step::Done;
                Some(Err(failure))
            }
        }
    }

    /// Runs the call to the end and concatenates its output.
    pub async fn collect(mut self) -> Result<Completed, InvokeFailure> {
        let mut output = Vec::new();
        while let Some(chunk) = self.next().await {
            match chunk? {
                Chunk::Partial(bytes) => output.extend_from_slice(&bytes),
                Chunk::Final {
                    output: last,
                    metering,
                } => {
                    // The common case, a single chunk, is handed over without copying.
                    let output = if output.is_empty() {
                        last
                    } else {
                        output.extend_from_slice(&last);
                        Bytes::from(output)
                    };
                    return Ok(Completed { output, metering });
                }
            }
        }
        Err(InvokeFailure::Internal {
            function_id: self.function_id,
            reason: "the output ended without a final chunk".into(),
        })
    }
}
