//! Remote jobs under compute agreements: the consumer's side (a job sent, its partial output
//! and result matched to it) and the provider's (a job checked against its agreement, run,
//! its signed result remembered for a retransmission).

use rand::RngCore;

use super::{
    AgreementState, Capability, ComputeResult, ComputeTarget, CostStructure, FunctionId, Job,
    JobPartial, JobPlan, JobRefusal, JobResult, MAX_PAYLOAD_LEN, MarketError, NodeId, Outbound,
    PAYMENT_OVERDUE, PartialSink, PendingJob, ProofSystem, Role, SignedComputeResult, SignedJob,
    State, job_price, kinds, oneshot, output_hash,
};

impl State {
    /// Signs a job for the active agreement `hash` (this node the consumer).
    pub(in crate::market) fn start_job(
        &mut self,
        hash: [u8; 32],
        function: &str,
        input: Vec<u8>,
        deadline_ms: u32,
        partials: Option<PartialSink>,
        trace: Option<crate::telemetry::TraceContext>,
    ) -> Result<PendingJob, MarketError> {
        let entry = self
            .agreements
            .get(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let agreement = &entry.agreement;
        if agreement.role() != Role::Consumer || agreement.state() != AgreementState::Active {
            return Err(MarketError::NotActive {
                state: agreement.state(),
            });
        }
        let Some(agreement_id) = agreement.id() else {
            return Err(MarketError::UnknownAgreement);
        };
        let expected = Capability::Compute(ComputeTarget::Function(FunctionId::of(function)));
        if agreement.request().body().capability != expected {
            return Err(MarketError::InvalidArgument {
                field: "function",
                reason: format!("`{function}` is not the function this agreement is for"),
            });
        }
        let job = SignedJob::sign(
            Job {
                agreement_id,
                consumer: self.me,
                nonce: self.rng.next_u64(),
                deadline_ms,
                function: function.to_string(),
                input,
                trace,
            },
            &self.signing,
        );
        let job_hash = job.hash();
        let (tx, rx) = oneshot::channel();
        self.jobs.insert(job_hash, tx);
        let kind = match partials {
            Some(sink) => {
                self.partials.insert(job_hash, (sink, 0));
                kinds::JOB_STREAMED
            }
            None => kinds::JOB,
        };
        Ok(PendingJob {
            outbound: Outbound {
                to: agreement.counterparty(),
                kind,
                body: job.as_bytes().to_vec(),
                reliable: false,
            },
            job_hash,
            agreement_id,
            provider: entry.peer.clone(),
            result: rx,
        })
    }

    /// Stops waiting for a job's result.
    pub(in crate::market) fn forget_job(&mut self, job_hash: &[u8; 32]) {
        self.jobs.remove(job_hash);
        self.partials.remove(job_hash);
    }

    /// Passes part of a streamed job's output to the consumer waiting for it. Parts beyond
    /// the largest output a job may have are dropped (the result still carries it all).
    pub(in crate::market) fn on_job_partial(&mut self, partial: JobPartial) {
        let Some((sink, received)) = self.partials.get_mut(&partial.job_hash) else {
            return; // late, or for a job this node did not stream
        };
        *received = received.saturating_add(partial.bytes.len());
        if *received > MAX_PAYLOAD_LEN || sink.send((partial.seq, partial.bytes)).is_err() {
            self.partials.remove(&partial.job_hash);
        }
    }

    /// Hands a job result to the consumer waiting for it.
    pub(in crate::market) fn on_job_result(&mut self, result: JobResult) {
        self.partials.remove(&result.job_hash());
        match self.jobs.remove(&result.job_hash()) {
            Some(waiter) => {
                let _ = waiter.send(result);
            }
            None => self.counters.records_refused += 1,
        }
    }

    /// Checks a job against its agreement (this node the provider).
    /// The provider-side agreement `job` names when it is still only offered here: the
    /// consumer sends a job right after its countersignature, and the mesh may deliver the
    /// job first.
    pub(in crate::market) fn offered_for(&self, job: &SignedJob) -> Option<[u8; 32]> {
        let hash = *self.by_id.get(&job.job().agreement_id)?;
        let agreement = &self.agreements.get(&hash)?.agreement;
        (agreement.role() == Role::Provider && agreement.state() == AgreementState::Offered)
            .then_some(hash)
    }

    /// `received` is what the consumer has paid this node through its channels (`None`: no
    /// channels here, nothing enforced); a consumer whose unpaid dues exceed
    /// `market.consumer_credit_umhr` is refused.
    pub(in crate::market) fn accept_job(
        &mut self,
        job: &SignedJob,
        received: Option<u64>,
        now: u64,
    ) -> Result<JobPlan, JobRefusal> {
        let job_hash = job.hash();
        if let Some((_, answer)) = self.served_jobs.get(&job_hash) {
            return Err(match answer {
                Some(out) => JobRefusal::Repeat(out.clone()),
                None => JobRefusal::Running,
            });
        }
        let body = job.job();
        let failed = |reason: String| Outbound {
            to: body.consumer,
            kind: kinds::JOB_RESULT,
            body: JobResult::Failed { job_hash, reason }.encode(),
            reliable: false,
        };
        let Some(hash) = self.by_id.get(&body.agreement_id).copied() else {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(None));
        };
        let Some(entry) = self.agreements.get(&hash) else {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(None));
        };
        if entry.agreement.counterparty() != body.consumer || job.verify(&entry.peer).is_err() {
            self.counters.jobs_refused += 1;
            self.counters.records_forged += 1;
            return Err(JobRefusal::Refused(None));
        }
        let agreement = &entry.agreement;
        let refusal = if self.deps.drain.is_on() {
            self.drops.count("market.drained");
            Some(
                "provider draining: this node takes no new jobs until its operator resumes it; \
                 ask another provider"
                    .to_string(),
            )
        } else if agreement.role() != Role::Provider || agreement.state() != AgreementState::Active
        {
            Some(format!("agreement is {:?}, not active", agreement.state()))
        } else if agreement.request().body().capability
            != Capability::Compute(ComputeTarget::Function(FunctionId::of(&body.function)))
        {
            Some(format!(
                "the agreement is not for function `{}`",
                body.function
            ))
        } else {
            match agreement.cost() {
                Some(CostStructure::PerInvocation { max_input, .. })
                    if body.input.len() as u64 > u64::from(max_input) =>
                {
                    Some(format!(
                        "input is {} bytes, the agreement allows {max_input}",
                        body.input.len()
                    ))
                }
                _ => None,
            }
        };
        if let Some(reason) = refusal {
            self.counters.jobs_refused += 1;
            return Err(JobRefusal::Refused(Some(failed(reason))));
        }
        let upstream = entry.linked;
        if let Some(received) = received {
            let dues = self.dues_of(body.consumer, received);
            let credit = self.deps.config.consumer_credit_umhr;
            if dues > credit {
                self.counters.jobs_refused += 1;
                self.counters.jobs_refused_unpaid += 1;
                return Err(JobRefusal::Refused(Some(failed(format!(
                    "{PAYMENT_OVERDUE}{dues} μMHR charged is not paid yet, above the credit of {credit} μMHR this provider grants; pay through the channel first"
                )))));
            }
        }
        self.served_jobs.insert(job_hash, (now, None));
        Ok(JobPlan {
            request_hash: hash,
            job_hash,
            consumer: body.consumer,
            function: body.function.clone(),
            input: body.input.clone(),
            deadline_ms: body.deadline_ms,
            upstream,
        })
    }

    /// What `consumer` owes this node as provider and has not paid: every charge on the
    /// agreements it consumes from this node, less `received`, what its channels paid this
    /// node. Remembers `received` for the agreement views.
    pub(in crate::market) fn dues_of(&mut self, consumer: NodeId, received: u64) -> u64 {
        self.received.insert(consumer, received);
        self.charged_to(consumer).saturating_sub(received)
    }

    /// Everything charged to `consumer` as this node's consumer, μMHR.
    pub(in crate::market) fn charged_to(&self, consumer: NodeId) -> u64 {
        self.agreements
            .values()
            .filter(|e| {
                e.agreement.role() == Role::Provider && e.agreement.counterparty() == consumer
            })
            .map(|e| e.charges.amount_umhr)
            .fold(0u64, u64::saturating_add)
    }

    /// Answers a job that ran (or failed), charging the agreement for a result.
    pub(in crate::market) fn finish_job(
        &mut self,
        plan: &JobPlan,
        outcome: Result<(Vec<u8>, u64), String>,
        now: u64,
    ) -> Outbound {
        let job_hash = plan.job_hash;
        let agreement = self
            .agreements
            .get(&plan.request_hash)
            .map(|e| (e.agreement.id(), e.agreement.cost()));
        let result = match (outcome, agreement) {
            (Ok((output, fuel)), Some((Some(agreement_id), cost))) => {
                let signed = SignedComputeResult::sign(
                    ComputeResult {
                        agreement_id,
                        job_hash,
                        output_hash: output_hash(&output),
                        proof_system: ProofSystem::None,
                        proof: Vec::new(),
                        signer: self.me,
                    },
                    &self.key,
                );
                match signed {
                    Ok(result) => {
                        let price = cost.map_or(0, |c| job_price(&c, fuel));
                        if let Err(e) = self.charge(plan.request_hash, 1, price, now) {
                            tracing::error!(error = %e, "cannot record a charge");
                        }
                        self.counters.jobs_served += 1;
                        JobResult::Done {
                            job_hash,
                            result,
                            output,
                        }
                    }
                    Err(e) => JobResult::Failed {
                        job_hash,
                        reason: format!("cannot sign the result: {e}"),
                    },
                }
            }
            (Ok(_), _) => JobResult::Failed {
                job_hash,
                reason: "the agreement is gone".into(),
            },
            (Err(reason), _) => JobResult::Failed { job_hash, reason },
        };
        let out = Outbound {
            to: plan.consumer,
            kind: kinds::JOB_RESULT,
            body: result.encode(),
            reliable: false,
        };
        self.served_jobs.insert(job_hash, (now, Some(out.clone())));
        out
    }

    // ---- reputation --------------------------------------------------------------------
}
