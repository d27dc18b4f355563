//! Running one WASM call: a sandbox slot from the node-wide gate, then `Runtime::invoke` on
//! tokio's blocking pool, with the deadline shortened by the time spent waiting.

use std::{sync::Arc, time::Duration};

use mehr_compute::{Limits, ModuleId, Output, Runtime};
use prost::bytes::Bytes;
use tokio::time::Instant;

use super::{gate::Gate, invocation::InvokeFailure};

/// One WASM call, resolved.
pub(super) struct WasmCall<'a> {
    pub(super) function_id: &'a str,
    pub(super) module: ModuleId,
    pub(super) export: String,
    pub(super) input: Bytes,
    /// Already narrowed by the request and the node's limits.
    pub(super) limits: Limits,
    /// The caller's deadline, for messages.
    pub(super) deadline: Duration,
    /// When the deadline passes.
    pub(super) deadline_at: Instant,
}

/// Runs `call` once a sandbox slot is free. The call cannot be stopped from outside once it
/// runs (the sandbox's own deadline stops it), so the slot stays taken until it returns even
/// if the caller has gone.
pub(super) async fn run(
    runtime: Arc<Runtime>,
    gate: &Gate,
    call: WasmCall<'_>,
) -> Result<Output, InvokeFailure> {
    let slot = gate
        .enter(call.deadline_at)
        .await
        .map_err(|e| InvokeFailure::from_gate(call.function_id, call.deadline, e))?;
    let remaining = call.deadline_at.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(InvokeFailure::DeadlineExceeded {
            function_id: call.function_id.to_string(),
            deadline: call.deadline,
            phase: "while waiting for a free slot",
        });
    }
    let limits = Limits {
        deadline: call.limits.deadline.min(remaining),
        ..call.limits
    };
    let WasmCall {
        module,
        export,
        input,
        ..
    } = call;
    let joined = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        runtime.invoke(&module, &export, &input, &limits)
    })
    .await;
    match joined {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => Err(InvokeFailure::Wasm {
            function_id: call.function_id.to_string(),
            source,
        }),
        Err(join) => Err(InvokeFailure::Internal {
            function_id: call.function_id.to_string(),
            reason: join.to_string(),
        }),
    }
}
