//! Agreements as the API and the other parts ask for them: requests from consumers, proposals
//! to providers (waiting for their answer), accepting, cancelling, and views.

use super::{
    AgreementFilter, AgreementState, AgreementView, CancelReason, Capability, ComputeTarget,
    CostStructure, Duration, Market, MarketError, NodeId, PeerKey, ProofMethod, Proposal,
    RequestOutcome, State, now_ms,
};
use crate::seams::payments::PaymentProgress;
use mehr_market::agreement::Role;

impl Market {
    pub(super) async fn on_request(self, request: mehr_market::agreement::SignedRequest) {
        let consumer = request.body().consumer;
        let Some(key) = self.peer_key(consumer).await else {
            tracing::debug!(%consumer, "request from a node whose key is unknown");
            self.state().counters.records_refused += 1;
            return;
        };
        let outcome = self.state().on_request(request, &key, now_ms());
        match outcome {
            RequestOutcome::Answered(out) => self.send_all(out),
            RequestOutcome::Resell {
                request_hash,
                function,
                cap,
                duration_seconds,
            } => {
                self.resell(request_hash, function, cap, duration_seconds)
                    .await
            }
        }
    }

    pub(super) fn view(&self, state: &State, hash: &[u8; 32]) -> Option<AgreementView> {
        let entry = state.agreements.get(hash)?;
        let a = &entry.agreement;
        let request = a.request().body();
        let function_name = match request.capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                let now = now_ms();
                let own = state.own_advert().capabilities().function(&id).cloned();
                own.or_else(|| {
                    state
                        .table
                        .advert(&a.counterparty(), now)
                        .and_then(|ad| ad.capabilities().function(&id).cloned())
                })
                .map(|f| f.name)
            }
            _ => None,
        };
        Some(AgreementView {
            request_id: *hash,
            agreement_id: a.id(),
            role: a.role(),
            state: a.state(),
            counterparty: a.counterparty(),
            capability: request.capability,
            function_name,
            cost_cap: request.cost_cap,
            cost: a.cost(),
            duration_seconds: request.duration_seconds,
            channel: request.channel,
            proof: a.offer().map_or(request.proof, |o| o.body().proof),
            privacy: request.privacy,
            proposed_at_unix_ms: a.proposed_at_ms(),
            offered_at_unix_ms: a.offered_at_ms(),
            activated_at_unix_ms: a.activated_at_ms(),
            ends_at_unix_ms: a.ends_at_ms(),
            updated_at_unix_ms: entry.updated_at,
            charges: entry.charges,
            payment: self.payment_progress(state, hash),
            upstream: a.offer().and_then(|o| o.body().upstream),
            linked: entry.linked,
            note: entry.note.clone(),
            heartbeat_misses: state.misses(hash),
        })
    }

    /// Paid and owed of agreement `hash` (see [`AgreementView::payment`]).
    fn payment_progress(&self, state: &State, hash: &[u8; 32]) -> PaymentProgress {
        let Some(entry) = state.agreements.get(hash) else {
            return PaymentProgress::default();
        };
        let a = &entry.agreement;
        let charged = entry.charges.amount_umhr;
        let unpaid = PaymentProgress {
            owed_umhr: charged,
            paid_umhr: 0,
        };
        match a.role() {
            Role::Consumer => a
                .id()
                .and_then(|id| self.shared.payments.progress(id))
                .unwrap_or(unpaid),
            Role::Provider => {
                let Some(&received) = state.received.get(&a.counterparty()) else {
                    return unpaid;
                };
                // Oldest agreement first: what was paid before this one's turn is spent on
                // the earlier ones.
                let mine = (a.proposed_at_ms(), hash);
                let earlier: u64 = state
                    .agreements
                    .iter()
                    .filter(|(h, e)| {
                        e.agreement.role() == Role::Provider
                            && e.agreement.counterparty() == a.counterparty()
                            && (e.agreement.proposed_at_ms(), *h) < mine
                    })
                    .map(|(_, e)| e.charges.amount_umhr)
                    .fold(0u64, u64::saturating_add);
                let paid = received.saturating_sub(earlier).min(charged);
                PaymentProgress {
                    owed_umhr: charged - paid,
                    paid_umhr: paid,
                }
            }
        }
    }

    /// Asks the ledger what each consumer of this node's agreements has paid, so that the
    /// views that follow show it (see [`AgreementView::payment`]).
    pub async fn refresh_payments(&self) {
        let consumers: std::collections::BTreeSet<NodeId> = self
            .state()
            .agreements
            .values()
            .filter(|e| e.agreement.role() == Role::Provider)
            .map(|e| e.agreement.counterparty())
            .collect();
        for consumer in consumers {
            if let Some(received) = self.shared.payments.received_from(consumer).await {
                self.state().received.insert(consumer, received);
            }
        }
    }

    /// Every agreement matching `filter`, ordered by request id.
    pub fn agreements(&self, filter: AgreementFilter) -> Vec<AgreementView> {
        let state = self.state();
        state
            .agreements
            .iter()
            .filter(|(_, e)| filter.role.is_none_or(|r| e.agreement.role() == r))
            .filter(|(_, e)| !filter.live_only || !e.agreement.state().is_final())
            .filter_map(|(hash, _)| self.view(&state, hash))
            .collect()
    }

    /// One agreement, by agreement id or request id.
    pub fn agreement(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let state = self.state();
        let hash = state.resolve(id).ok_or(MarketError::UnknownAgreement)?;
        self.view(&state, &hash)
            .ok_or(MarketError::UnknownAgreement)
    }

    /// The price `provider` advertises for `capability`.
    pub(super) fn advertised_cost(
        &self,
        provider: &NodeId,
        capability: &Capability,
    ) -> Result<CostStructure, MarketError> {
        let state = self.state();
        let no_advert = || MarketError::NoAdvert { node: *provider };
        let advert = state
            .table
            .advert(provider, now_ms())
            .ok_or_else(no_advert)?;
        let caps = advert.capabilities();
        match capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                caps.function(id).map(|f| f.cost).ok_or_else(no_advert)
            }
            Capability::Compute(ComputeTarget::Wasm(_)) => Err(no_advert()),
            Capability::Storage { bytes } => caps
                .storage
                .map(|s| CostStructure::PerDuration {
                    per_epoch: s.cost_per_byte_day.saturating_mul(*bytes),
                })
                .ok_or_else(no_advert),
            Capability::Relay | Capability::Proxy => {
                let gateway = *capability == Capability::Proxy;
                caps.interfaces
                    .iter()
                    .filter(|i| !gateway || i.internet_gateway)
                    .map(|i| i.cost_per_byte)
                    .min()
                    .map(|per_byte| CostStructure::PerByte { per_byte })
                    .ok_or_else(no_advert)
            }
        }
    }

    /// Proposes an agreement; with `wait`, returns once the provider answered (and, with
    /// `accept`, once this node countersigned) or the time is up.
    pub async fn propose(&self, proposal: Proposal) -> Result<AgreementView, MarketError> {
        if proposal.duration_seconds == 0 {
            return Err(MarketError::InvalidArgument {
                field: "duration_seconds",
                reason: "must be above zero".into(),
            });
        }
        let provider = self
            .peer_key(proposal.provider)
            .await
            .ok_or(MarketError::UnknownPeer {
                node: proposal.provider,
            })?;
        let cost_cap = match proposal.cost_cap {
            Some(cap) => cap,
            None => self.advertised_cost(&proposal.provider, &proposal.capability)?,
        };
        let hash = self.propose_to(
            provider,
            proposal.capability,
            cost_cap,
            proposal.duration_seconds,
            proposal.proof,
            proposal.accept,
        )?;
        if !proposal.wait.is_zero() {
            let settled = |s: AgreementState| match s {
                AgreementState::Proposed => false,
                AgreementState::Offered => !proposal.accept,
                _ => true,
            };
            self.wait_for(hash, proposal.wait, settled).await;
        }
        self.agreement(&hash)
    }

    pub(super) fn propose_to(
        &self,
        provider: PeerKey,
        capability: Capability,
        cost_cap: CostStructure,
        duration_seconds: u32,
        proof: ProofMethod,
        accept: bool,
    ) -> Result<[u8; 32], MarketError> {
        let (hash, out) = self.state().propose(
            provider,
            capability,
            cost_cap,
            duration_seconds,
            proof,
            accept,
            None,
            now_ms(),
        )?;
        self.send(out);
        Ok(hash)
    }

    /// Waits until agreement `hash` reaches a state `done` accepts, at most `timeout`.
    pub(super) async fn wait_for(
        &self,
        hash: [u8; 32],
        timeout: Duration,
        done: impl Fn(AgreementState) -> bool,
    ) -> AgreementState {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (state, changed) = {
                let mut st = self.state();
                let state = st
                    .agreements
                    .get(&hash)
                    .map_or(AgreementState::Expired, |e| e.agreement.state());
                (state, st.watch(hash))
            };
            if done(state) {
                return state;
            }
            // The tick expires a silent negotiation, so this never waits past its deadline
            // by more than `timeout`.
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return state;
            }
        }
    }

    /// Countersigns an offered agreement this node proposed.
    pub fn accept(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let hash = self
            .state()
            .resolve(id)
            .ok_or(MarketError::UnknownAgreement)?;
        let out = self.state().accept(hash, now_ms())?;
        self.send_all(out);
        self.agreement(&hash)
    }

    /// Cancels an offered or active agreement (either side).
    pub fn cancel(&self, id: &[u8; 32]) -> Result<AgreementView, MarketError> {
        let hash = self
            .state()
            .resolve(id)
            .ok_or(MarketError::UnknownAgreement)?;
        let out = self
            .state()
            .cancel(hash, CancelReason::Requested, now_ms())?;
        self.send_all(out);
        self.agreement(&hash)
    }
}
