//! The compute verification tiers as a daemon-level mechanism: "run this function on
//! providers found by discovery, per tier, and give me the verdict".
//!
//! - `Reputation`: one provider (the best ranked; the next on failure), its result accepted.
//! - `Optimistic { one_in: N }`: one provider; on a random 1-in-N call a second provider
//!   audits. A divergence is settled by a third provider (a redundant majority over the
//!   three); with no third provider the primary is flagged, as seed 003 says, and no result
//!   is accepted.
//! - `Redundant { k }`: k providers at once; a strict majority of the k asked wins.
//!
//! Every provider runs the job under an agreement of its own with this node (reused while
//! one is active). When the providers already under agreement for the function are enough
//! for the tier, they are asked (cheapest first) without a discovery, which would otherwise
//! wait out its rings on every call; if they fail, discovery looks further. Results are signed (`ComputeResult`), checked against the output, and
//! compared by output hash. Agreeing providers gain compute reputation and are charged for;
//! dissenters lose reputation and are excluded from compute for `market.exclusion_secs`;
//! silent ones lose reputation. Ranking reads the reputation, and excluded providers are
//! never chosen.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use mehr_market::{
    CostStructure, FunctionId, NodeId,
    agreement::{AgreementId, AgreementState, Capability, ComputeTarget, ProofMethod},
    reputation::{Outcome, ServiceKind},
    verification::{
        AuditVerdict, Plan, SignedComputeResult, Tier, Verdict, audit_verdict, plan,
        redundant_verdict,
    },
};
use rand::{SeedableRng, rngs::StdRng};
use tracing::Instrument;

use super::{
    DiscoverRequest, Market, MarketError, PartialSink, now_ms,
    state::{function_filter, job_price},
};

/// Spare candidates discovered beyond what the tier needs (failover, escalation).
const SPARE: usize = 2;
/// Longest a discovery for a verified call may take.
const DISCOVERY_BUDGET: Duration = Duration::from_secs(10);
/// Longest an agreement for a verified call may take to become active.
const AGREEMENT_BUDGET: Duration = Duration::from_secs(35);

/// A verified call.
#[derive(Debug, Clone)]
pub struct VerifiedCall {
    /// The function id.
    pub function: String,
    /// The input.
    pub input: Vec<u8>,
    /// How much verification.
    pub tier: Tier,
    /// The most to pay per call, μMHR (`None`: any price).
    pub max_price_umhr: Option<u64>,
    /// How long each provider may take to run the job.
    pub deadline: Duration,
    /// Where to pass the output as it is produced, when the tier lets one provider's output
    /// through unchecked by others (reputation, unaudited optimistic): the first provider
    /// asked streams. Other tiers compare whole outputs, and ignore it.
    pub partials: Option<PartialSink>,
}

/// What became of one provider's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderOutcome {
    /// Its output was accepted (alone, or with the majority).
    Agreed,
    /// Its output differed from the accepted one.
    Dissented,
    /// It returned nothing usable.
    Missing,
    /// It answered, but no output could be accepted.
    Unsettled,
}

/// One provider's part in a verified call.
#[derive(Debug, Clone)]
pub struct ProviderResult {
    /// The provider.
    pub node_id: NodeId,
    /// The agreement it ran under.
    pub agreement_id: Option<AgreementId>,
    /// Its output hash, if it answered.
    pub output_hash: Option<[u8; 32]>,
    /// How it ended.
    pub outcome: ProviderOutcome,
    /// Why it failed, in words.
    pub error: Option<String>,
    /// The signed result it returned.
    pub signed_result: Option<Vec<u8>>,
}

/// The verdict of a verified call.
#[derive(Debug, Clone)]
pub struct VerifiedOutcome {
    /// The accepted output.
    pub output: Vec<u8>,
    /// Its hash.
    pub output_hash: [u8; 32],
    /// The tier asked for.
    pub tier: Tier,
    /// Whether an optimistic call was audited.
    pub audited: bool,
    /// Whether a divergence was escalated to a majority of three.
    pub escalated: bool,
    /// Every provider's part.
    pub providers: Vec<ProviderResult>,
    /// What this node was charged for the accepted results, μMHR.
    pub charged_umhr: u64,
}

/// A checked result of one job.
#[derive(Debug, Clone)]
pub(crate) struct JobOutput {
    pub(crate) output: Vec<u8>,
    pub(crate) output_hash: [u8; 32],
    pub(crate) result: SignedComputeResult,
}

/// One provider's answer, before the verdict.
struct Answer {
    node: NodeId,
    request_hash: Option<[u8; 32]>,
    agreement_id: Option<AgreementId>,
    cost: CostStructure,
    result: Result<JobOutput, String>,
    /// The provider refused the job because this node's unpaid dues to it exceed its
    /// credit: this node's doing, not a fault of the provider's.
    overdue: Option<MarketError>,
}

impl Answer {
    fn hash(&self) -> Option<[u8; 32]> {
        self.result.as_ref().ok().map(|o| o.output_hash)
    }
}

impl Market {
    /// Runs `call` on providers per its tier and returns the verdict (see the module docs).
    pub async fn invoke_verified(
        &self,
        call: VerifiedCall,
    ) -> Result<VerifiedOutcome, MarketError> {
        if call.function.is_empty() {
            return Err(MarketError::InvalidArgument {
                field: "function",
                reason: "must not be empty".into(),
            });
        }
        if call.deadline.is_zero() {
            return Err(MarketError::InvalidArgument {
                field: "deadline",
                reason: "must be above zero".into(),
            });
        }
        let plan = plan(call.tier, &mut StdRng::from_entropy())?;
        let needed = match call.tier {
            Tier::Redundant { k } => usize::from(k),
            _ => 1,
        };
        let capability = function_capability(&call.function);
        let margin = reuse_margin_ms(call.deadline);
        // Providers already under agreement need no negotiation and were chosen before; when
        // there are enough of them (and no audit needs a spare), discovery is skipped: it
        // would wait out its rings looking for more than exist.
        let mut agreed: Vec<(NodeId, CostStructure)> = self
            .state()
            .agreed_providers(&capability, now_ms(), margin)
            .into_iter()
            .filter(|(_, cost)| {
                call.max_price_umhr
                    .is_none_or(|max| job_price(cost, 0) <= max)
            })
            .collect();
        // Cheapest first, as discovery would rank them among equals.
        agreed.sort_by_key(|(node, cost)| (job_price(cost, 0), node.0));
        let spares_wanted = usize::from(plan.audited);
        if agreed.len() >= needed + spares_wanted {
            match self.run_tier(&call, plan, needed, agreed).await {
                // The providers under agreement failed it: look further before giving up.
                Err(MarketError::Unverified(_)) => {}
                done => return done,
            }
        }
        let candidates = self
            .discovered_candidates(&call, needed, &capability, margin)
            .await?;
        self.run_tier(&call, plan, needed, candidates).await
    }

    /// Runs `call` per its tier on `candidates`, best first.
    async fn run_tier(
        &self,
        call: &VerifiedCall,
        plan: Plan,
        needed: usize,
        candidates: Vec<(NodeId, CostStructure)>,
    ) -> Result<VerifiedOutcome, MarketError> {
        if candidates.len() < needed {
            return Err(MarketError::NoProviders {
                function: call.function.clone(),
                found: candidates.len(),
                needed,
            });
        }
        match call.tier {
            Tier::Reputation => self.first_answer(call, &candidates, false).await,
            Tier::Optimistic { .. } if !plan.audited || candidates.len() < 2 => {
                self.first_answer(call, &candidates, false).await
            }
            Tier::Optimistic { .. } => self.audited(call, &candidates).await,
            Tier::Redundant { k } => {
                let asked = &candidates[..usize::from(k)];
                let answers = futures::future::join_all(
                    asked
                        .iter()
                        .map(|(node, cost)| self.ask(call, *node, *cost, None)),
                )
                .await;
                self.settle_majority(call, answers, false, false)
            }
        }
    }

    /// Providers of `call`'s function found by discovery, those already under agreement
    /// first.
    async fn discovered_candidates(
        &self,
        call: &VerifiedCall,
        needed: usize,
        capability: &Capability,
        margin: u64,
    ) -> Result<Vec<(NodeId, CostStructure)>, MarketError> {
        let function = FunctionId::of(&call.function);
        let excluded = self.state().excluded.len();
        let span = crate::telemetry::trace_span(|| {
            tracing::info_span!(
                "market.discover",
                otel.kind = "internal",
                mehr.function = %call.function,
                mehr.found = tracing::field::Empty,
            )
        });
        let found = self
            .discover(DiscoverRequest {
                filter: function_filter(function, call.max_price_umhr),
                want: needed + SPARE + excluded,
                max_ring: mehr_market::params::MAX_RING,
                timeout: DISCOVERY_BUDGET,
            })
            .instrument(span.clone())
            .await?;
        span.record("mehr.found", found.offers.len());
        let state = self.state();
        let now = now_ms();
        let mut candidates: Vec<_> = found
            .offers
            .iter()
            .filter(|f| f.offer.node_id != self.shared.me)
            .filter(|f| !state.is_excluded(&f.offer.node_id, now))
            .filter_map(|f| f.offer.cost.map(|c| (f.offer.node_id, c)))
            .collect();
        // A provider this node already holds an active agreement with needs no negotiation
        // and was chosen before: ask it first (a stable sort keeps the discovery ranking
        // among the rest).
        candidates.sort_by_key(|(node, _)| {
            state
                .reusable_agreement(node, capability, now, margin)
                .is_none()
        });
        Ok(candidates)
    }

    /// Reputation tier (and unaudited optimistic calls): the first provider that answers.
    async fn first_answer(
        &self,
        call: &VerifiedCall,
        candidates: &[(NodeId, CostStructure)],
        audited: bool,
    ) -> Result<VerifiedOutcome, MarketError> {
        let mut providers = Vec::new();
        let mut overdue = None;
        for (asked, (node, cost)) in candidates.iter().take(1 + SPARE).enumerate() {
            // Only the first provider streams: once its parts went out, another's output
            // could not follow them.
            let partials = if asked == 0 {
                call.partials.clone()
            } else {
                None
            };
            let answer = self.ask(call, *node, *cost, partials).await;
            match &answer.result {
                Ok(done) => {
                    let charged = self.settle_one(&answer, Outcome::Success);
                    providers.push(result_of(&answer, ProviderOutcome::Agreed));
                    return Ok(VerifiedOutcome {
                        output: done.output.clone(),
                        output_hash: done.output_hash,
                        tier: call.tier,
                        audited,
                        escalated: false,
                        providers,
                        charged_umhr: charged,
                    });
                }
                Err(_) => {
                    // A refusal for this node's own unpaid dues does not count against the
                    // provider's reputation.
                    if answer.overdue.is_none() {
                        self.settle_one(&answer, Outcome::Failure);
                    }
                    providers.push(result_of(&answer, ProviderOutcome::Missing));
                    overdue = overdue.or(answer.overdue);
                }
            }
        }
        // Refused for unpaid dues: say so (FAILED_PRECONDITION, PAYMENT_OVERDUE), not that
        // no provider answered.
        if let Some(refusal) = overdue {
            return Err(refusal);
        }
        Err(MarketError::Unverified(format!(
            "no provider answered: {}",
            errors(&providers)
        )))
    }

    /// An audited optimistic call: primary and auditor at once; a divergence goes to a third.
    async fn audited(
        &self,
        call: &VerifiedCall,
        candidates: &[(NodeId, CostStructure)],
    ) -> Result<VerifiedOutcome, MarketError> {
        let (primary, auditor) = futures::future::join(
            self.ask(call, candidates[0].0, candidates[0].1, None),
            self.ask(call, candidates[1].0, candidates[1].1, None),
        )
        .await;
        match (primary.hash(), auditor.hash()) {
            (Some(p), Some(a)) => match audit_verdict((primary.node, p), (auditor.node, a)) {
                AuditVerdict::Consistent => {
                    self.settle_majority(call, vec![primary, auditor], true, false)
                }
                AuditVerdict::Diverged { flagged } => {
                    tracing::warn!(%flagged, function = call.function, "optimistic audit diverged; escalating");
                    match candidates.get(2) {
                        Some((node, cost)) => {
                            let third = self.ask(call, *node, *cost, None).await;
                            self.settle_majority(call, vec![primary, auditor, third], true, true)
                        }
                        None => {
                            let now = now_ms();
                            {
                                let mut state = self.state();
                                state.record_outcome(
                                    flagged,
                                    ServiceKind::Compute,
                                    Outcome::Failure,
                                    now,
                                );
                            }
                            Err(MarketError::Unverified(format!(
                                "the audit of {flagged} diverged and no third provider could settle it"
                            )))
                        }
                    }
                }
            },
            // One of the two failed: the other's result stands alone, as in the
            // reputation tier.
            _ => self.settle_majority(call, vec![primary, auditor], true, false),
        }
    }

    /// Applies a majority verdict over `answers` (for two answers where one failed, the
    /// other stands alone).
    fn settle_majority(
        &self,
        call: &VerifiedCall,
        answers: Vec<Answer>,
        audited: bool,
        escalated: bool,
    ) -> Result<VerifiedOutcome, MarketError> {
        let asked: Vec<NodeId> = answers.iter().map(|a| a.node).collect();
        let hashes: Vec<(NodeId, [u8; 32])> = answers
            .iter()
            .filter_map(|a| a.hash().map(|h| (a.node, h)))
            .collect();
        let lone = answers.len() == 2 && hashes.len() == 1 && !escalated;
        let verdict = if lone {
            Verdict {
                accepted: Some(hashes[0].1),
                agreeing: vec![hashes[0].0],
                dissenters: Vec::new(),
                missing: asked
                    .iter()
                    .filter(|n| **n != hashes[0].0)
                    .copied()
                    .collect(),
            }
        } else {
            redundant_verdict(&asked, &hashes)
        };
        let mut providers = Vec::new();
        let mut charged = 0;
        let mut output = None;
        for answer in &answers {
            let outcome = if verdict.agreeing.contains(&answer.node) {
                charged += self.settle_one(answer, Outcome::Success);
                if output.is_none() {
                    output = answer.result.as_ref().ok().map(|o| o.output.clone());
                }
                ProviderOutcome::Agreed
            } else if verdict.dissenters.contains(&answer.node) {
                self.settle_one(answer, Outcome::Failure);
                let now = now_ms();
                self.state().exclude(
                    answer.node,
                    format!(
                        "returned a result for `{}` that the majority of {} providers contradicted",
                        call.function,
                        asked.len()
                    ),
                    now,
                );
                ProviderOutcome::Dissented
            } else if answer.result.is_err() {
                self.settle_one(answer, Outcome::Failure);
                ProviderOutcome::Missing
            } else {
                ProviderOutcome::Unsettled
            };
            providers.push(result_of(answer, outcome));
        }
        match (verdict.accepted, output) {
            (Some(hash), Some(output)) => Ok(VerifiedOutcome {
                output,
                output_hash: hash,
                tier: call.tier,
                audited,
                escalated,
                providers,
                charged_umhr: charged,
            }),
            _ => Err(MarketError::Unverified(format!(
                "no strict majority of the {} providers asked agreed ({})",
                asked.len(),
                errors(&providers)
            ))),
        }
    }

    /// Records a provider's outcome, and charges its agreement for an accepted result.
    /// Returns the charge.
    fn settle_one(&self, answer: &Answer, outcome: Outcome) -> u64 {
        let now = now_ms();
        let mut state = self.state();
        state.record_outcome(answer.node, ServiceKind::Compute, outcome, now);
        if outcome == Outcome::Success
            && let Some(hash) = answer.request_hash
        {
            let price = job_price(&answer.cost, 0);
            if let Err(e) = state.charge(hash, 1, price, now) {
                tracing::error!(error = %e, "cannot record a charge");
            }
            return price;
        }
        0
    }

    /// Runs the call on one provider under an agreement with it.
    async fn ask(
        &self,
        call: &VerifiedCall,
        node: NodeId,
        cost: CostStructure,
        partials: Option<PartialSink>,
    ) -> Answer {
        let span = crate::telemetry::trace_span(|| {
            tracing::info_span!(
                "market.agree",
                otel.kind = "internal",
                mehr.function = %call.function,
                mehr.provider = %node,
            )
        });
        let agreement = self
            .agreement_with(node, cost, &call.function, call.deadline)
            .instrument(span)
            .await;
        let mut overdue = None;
        let (request_hash, agreement_id, result) = match agreement {
            Ok((hash, id)) => {
                let result = self
                    .run_job(
                        hash,
                        &call.function,
                        call.input.clone(),
                        call.deadline,
                        partials,
                    )
                    .await
                    .map_err(|e| {
                        let text = e.to_string();
                        if matches!(e, MarketError::PaymentOverdue { .. }) {
                            overdue = Some(e);
                        }
                        text
                    });
                (Some(hash), Some(id), result)
            }
            Err(e) => (None, None, Err(e.to_string())),
        };
        if let Err(reason) = &result {
            tracing::debug!(%node, reason, "provider gave no result");
        }
        Answer {
            node,
            request_hash,
            agreement_id,
            cost,
            result,
            overdue,
        }
    }

    /// An active agreement with `provider` for `function` that outlives the job: reused, or
    /// proposed at the advertised `cost` and countersigned.
    async fn agreement_with(
        &self,
        provider: NodeId,
        cost: CostStructure,
        function: &str,
        deadline: Duration,
    ) -> Result<([u8; 32], AgreementId), MarketError> {
        let capability = function_capability(function);
        let reusable = self.state().reusable_agreement(
            &provider,
            &capability,
            now_ms(),
            reuse_margin_ms(deadline),
        );
        let hash = match reusable {
            Some(hash) => hash,
            None => {
                let key = self
                    .peer_key(provider)
                    .await
                    .ok_or(MarketError::UnknownPeer { node: provider })?;
                let started = Instant::now();
                let hash = self.propose_to(
                    key,
                    capability,
                    cost,
                    self.shared.config.market.agreement_duration_secs,
                    ProofMethod::ResultHash,
                    true,
                )?;
                let state = self
                    .wait_for(hash, AGREEMENT_BUDGET, |s| {
                        s != AgreementState::Proposed && s != AgreementState::Offered
                    })
                    .await;
                if state != AgreementState::Active {
                    return Err(MarketError::JobFailed {
                        provider,
                        reason: format!(
                            "no active agreement after {:?} ({})",
                            started.elapsed(),
                            super::state_name(state)
                        ),
                    });
                }
                hash
            }
        };
        let id = self
            .state()
            .agreements
            .get(&hash)
            .and_then(|e| e.agreement.id())
            .ok_or(MarketError::UnknownAgreement)?;
        Ok((hash, id))
    }
}

fn function_capability(function: &str) -> Capability {
    Capability::Compute(ComputeTarget::Function(FunctionId::of(function)))
}

/// How long an agreement must still run to be reused for a job with `deadline`: the job
/// plus a margin for the answer's trip back.
fn reuse_margin_ms(deadline: Duration) -> u64 {
    u64::try_from(deadline.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(5_000)
}

fn result_of(answer: &Answer, outcome: ProviderOutcome) -> ProviderResult {
    ProviderResult {
        node_id: answer.node,
        agreement_id: answer.agreement_id,
        output_hash: answer.hash(),
        outcome,
        error: answer.result.as_ref().err().cloned(),
        signed_result: answer
            .result
            .as_ref()
            .ok()
            .map(|o| o.result.as_bytes().to_vec()),
    }
}

fn errors(providers: &[ProviderResult]) -> String {
    let described: BTreeMap<String, String> = providers
        .iter()
        .map(|p| {
            (
                p.node_id.to_string(),
                p.error.clone().unwrap_or_else(|| "answered".into()),
            )
        })
        .collect();
    described
        .into_iter()
        .map(|(node, why)| format!("{node}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
