//! Remote jobs as a provider runs them (here, or resold to an upstream provider) and as a
//! consumer sends them.

use tracing::Instrument;

use super::{
    AgreementState, CancelReason, Capability, ComputeTarget, CostStructure, DiscoverRequest,
    Duration, ForgetJob, FunctionCall, FunctionId, JobPartial, JobResult, Market, MarketError,
    NodeId, Outbound, PartialSink, ProofMethod, RejectReason, SEND_TIMEOUT, SignedJob,
    function_filter, kinds, now_ms, run_to_end, run_with_parts, state, tiers,
};
use crate::telemetry;

impl Market {
    /// Runs one job under the active consumer agreement `hash` and checks the provider's
    /// signed result against the output. With `partials`, the provider is asked to stream
    /// and the parts of the output go there as they come, ahead of the result.
    pub(crate) async fn run_job(
        &self,
        hash: [u8; 32],
        function: &str,
        input: Vec<u8>,
        deadline: Duration,
        partials: Option<PartialSink>,
    ) -> Result<tiers::JobOutput, MarketError> {
        let deadline_ms = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
        // Job out to result back, as one CLIENT span; its position rides in the job when the
        // caller opted in, so the provider's spans join the caller's trace.
        let span = telemetry::trace_span(|| {
            tracing::info_span!(
                "mesh.request",
                otel.kind = "client",
                mehr.function = function,
                mehr.node_id = %self.shared.me,
                mehr.provider = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        });
        let trace = telemetry::for_mesh(&span);
        let pending =
            self.state()
                .start_job(hash, function, input, deadline_ms, partials, trace)?;
        let provider = pending.provider.node_id();
        span.record("mehr.provider", tracing::field::display(&provider));
        let result = self
            .await_job(pending, deadline)
            .instrument(span.clone())
            .await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    /// Sends a started job and waits for its checked result.
    async fn await_job(
        &self,
        pending: state::PendingJob,
        deadline: Duration,
    ) -> Result<tiers::JobOutput, MarketError> {
        let provider = pending.provider.node_id();
        let job_hash = pending.job_hash;
        // However this ends (a timeout, or the caller dropping the call), stop waiting.
        let _forget = ForgetJob {
            market: self,
            job_hash,
        };
        self.send(pending.outbound);
        // The answer travels back over the mesh: allow for it beside the run itself.
        let wait = deadline + SEND_TIMEOUT;
        let answer = match tokio::time::timeout(wait, pending.result).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(MarketError::Stopped),
            Err(_) => {
                return Err(MarketError::JobFailed {
                    provider,
                    reason: format!("no result within {wait:?}"),
                });
            }
        };
        match answer {
            JobResult::Failed { reason, .. } => Err(MarketError::JobFailed { provider, reason }),
            JobResult::Done { result, output, .. } => {
                let body = result.body();
                let valid = result.verify(&pending.provider).is_ok()
                    && body.agreement_id == pending.agreement_id
                    && body.job_hash == job_hash
                    && body.output_hash == mehr_market::verification::output_hash(&output);
                if !valid {
                    self.state().counters.records_forged += 1;
                    return Err(MarketError::JobFailed {
                        provider,
                        reason: "its signed result does not match its output".into(),
                    });
                }
                Ok(tiers::JobOutput {
                    output_hash: body.output_hash,
                    output,
                    result,
                })
            }
        }
    }

    pub(super) async fn on_job(self, job: SignedJob, streamed: bool) {
        let offered = self.state().offered_for(&job);
        if let Some(hash) = offered {
            // The countersignature is on its way; give it the time a reliable send takes.
            self.wait_for(hash, SEND_TIMEOUT, |s| s != AgreementState::Offered)
                .await;
        }
        let plan = match self.state().accept_job(&job, now_ms()) {
            Ok(plan) => plan,
            Err(state::JobRefusal::Repeat(out)) => return self.send(out),
            Err(state::JobRefusal::Running) => return,
            Err(state::JobRefusal::Refused(out)) => {
                if let Some(out) = out {
                    self.send(out);
                }
                return;
            }
        };
        // The provider's side of a job: a SERVER span continuing the consumer's trace when the
        // job carries one, and the function's run inside it.
        let span = telemetry::trace_span(|| {
            tracing::info_span!(
                "mesh.serve",
                otel.kind = "server",
                mehr.function = %plan.function,
                mehr.node_id = %self.shared.me,
                mehr.consumer = %job.job().consumer,
            )
        });
        if let Some(trace) = &job.job().trace {
            telemetry::adopt_remote_trace(trace, &span);
        }
        let outcome = self.serve_job(&plan, streamed).instrument(span).await;
        let out = self.state().finish_job(&plan, outcome, now_ms());
        self.send(out);
    }

    /// Runs an accepted job: here, or bought from the upstream provider it is resold from.
    async fn serve_job(
        &self,
        plan: &state::JobPlan,
        streamed: bool,
    ) -> Result<(Vec<u8>, u64), String> {
        let deadline = Duration::from_millis(u64::from(plan.deadline_ms.max(1)));
        match plan.upstream {
            Some(upstream) => {
                let done = self
                    .run_job(upstream, &plan.function, plan.input.clone(), deadline, None)
                    .await
                    .map_err(|e| format!("upstream: {e}"));
                if done.is_ok() {
                    // This node owes its upstream provider for the result it resells.
                    let mut state = self.state();
                    let price = state
                        .agreements
                        .get(&upstream)
                        .and_then(|e| e.agreement.cost())
                        .map_or(0, |cost| state::job_price(&cost, 0));
                    if let Err(e) = state.charge(upstream, 1, price, now_ms()) {
                        tracing::error!(error = %e, "cannot record a charge");
                    }
                }
                done.map(|done| (done.output, 0))
            }
            None => {
                let call = FunctionCall {
                    function_id: plan.function.clone(),
                    input: plan.input.clone().into(),
                    deadline: Some(deadline),
                };
                let span = telemetry::trace_span(|| {
                    tracing::info_span!(
                        "function.run",
                        otel.kind = "internal",
                        mehr.function = %plan.function,
                    )
                });
                if streamed {
                    self.run_streamed(plan, call).instrument(span).await
                } else {
                    run_to_end(self.shared.functions.as_ref(), call)
                        .instrument(span)
                        .await
                }
            }
        }
    }

    /// Runs a streamed job here, sending each part of the output to the consumer as it is
    /// produced; returns the whole output (for the signed result) and the fuel used.
    pub(super) async fn run_streamed(
        &self,
        plan: &state::JobPlan,
        call: FunctionCall,
    ) -> Result<(Vec<u8>, u64), String> {
        let mut seq = 0u32;
        run_with_parts(self.shared.functions.as_ref(), call, |bytes| {
            let part = JobPartial {
                job_hash: plan.job_hash,
                seq,
                bytes: bytes.to_vec(),
            };
            seq = seq.wrapping_add(1);
            self.send(Outbound {
                to: plan.consumer,
                kind: kinds::JOB_PARTIAL,
                body: part.encode(),
                reliable: false,
            });
        })
        .await
    }

    /// Buys the function `function` upstream and offers it to the consumer of `downstream` at
    /// the upstream price plus the markup (a capability chain); rejects if nothing is found.
    pub(super) async fn resell(
        &self,
        downstream: [u8; 32],
        function: FunctionId,
        cap: CostStructure,
        duration_seconds: u32,
    ) {
        let percent = self.shared.config.market.resale_markup_percent;
        let request = DiscoverRequest {
            filter: function_filter(function, Some(cap.unit_price())),
            want: 4,
            max_ring: mehr_market::params::MAX_RING,
            timeout: Duration::from_secs(8),
        };
        let candidates: Vec<(NodeId, CostStructure)> = match self.discover(request).await {
            Ok(found) => {
                let state = self.state();
                let now = now_ms();
                found
                    .offers
                    .iter()
                    .filter(|f| {
                        f.offer.node_id != self.shared.me
                            && !state.is_excluded(&f.offer.node_id, now)
                    })
                    .filter_map(|f| {
                        let cost = f.offer.cost?;
                        let resale = cost
                            .with_markup(state::resale_markup(cost.unit_price(), percent))
                            .ok()?;
                        resale.within(&cap).ok().map(|_| (f.offer.node_id, cost))
                    })
                    .collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, "resale discovery failed");
                Vec::new()
            }
        };
        for (provider, cost) in candidates {
            let Some(key) = self.peer_key(provider).await else {
                continue;
            };
            let capability = Capability::Compute(ComputeTarget::Function(function));
            let Ok(upstream) = self.propose_to(
                key,
                capability,
                cost,
                duration_seconds,
                ProofMethod::ResultHash,
                true,
            ) else {
                continue;
            };
            let reached = self
                .wait_for(upstream, Duration::from_secs(15), |s| {
                    s != AgreementState::Proposed && s != AgreementState::Offered
                })
                .await;
            if reached != AgreementState::Active {
                continue;
            }
            let offered = self.state().offer_resale(downstream, upstream, now_ms());
            match offered {
                Ok(out) => {
                    tracing::info!(downstream = %hex::encode(downstream), upstream = %hex::encode(upstream), %provider, "reselling an upstream agreement");
                    self.send_all(out);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot offer the resale");
                    if let Ok(out) =
                        self.state()
                            .cancel(upstream, CancelReason::Requested, now_ms())
                    {
                        self.send_all(out);
                    }
                }
            }
        }
        let out = self
            .state()
            .reject_pending(downstream, RejectReason::Unsupported, now_ms());
        self.send_all(out);
    }

    // ---- reputation and stats ----------------------------------------------------------
}
