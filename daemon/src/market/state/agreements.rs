//! Agreements, step by step: proposing, deciding on and accepting requests, the records
//! exchanged with the other side, charges against an agreement, cancellation, and the tick
//! that enforces deadlines and heartbeats. Every step is written to the store before the
//! record it produced is returned.

use rand::RngCore;

use super::{
    AGREEMENTS, Agreement, AgreementEvent, AgreementId, AgreementState, CancelReason, Capability,
    Charge, Charges, ComputeTarget, CostStructure, Entry, EventKind, HeartbeatError,
    HeartbeatMonitor, MarketError, MarketMessage, OfferTerms, Outbound, Outcome, PeerKey, Privacy,
    ProofMethod, Refusal, RejectReason, Request, RequestOutcome, Role, SignedRequest, State,
    StoreError, answer_ping, is_forgery, oneshot, resale_markup, resale_terms, service_kind,
    validate_chain_link,
};

impl State {
    /// The request hash of the agreement `id` names: a request hash or an agreement id.
    pub(in crate::market) fn resolve(&self, id: &[u8; 32]) -> Option<[u8; 32]> {
        if self.agreements.contains_key(id) {
            return Some(*id);
        }
        self.by_id.get(&AgreementId(*id)).copied()
    }

    /// Waits for the next change of agreement `hash`.
    pub(in crate::market) fn watch(&mut self, hash: [u8; 32]) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.watchers.entry(hash).or_default().push(tx);
        rx
    }

    /// Writes agreement `hash` durably before returning (callers acknowledge afterwards).
    ///
    /// The synced write runs under the market's lock, which keeps writes of one agreement in
    /// order; on the node's multi-threaded runtime it runs inside `block_in_place`, so the
    /// other tasks queued on this worker move to another one while the disk syncs.
    pub(super) fn commit(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        let Some(entry) = self.agreements.get(hash) else {
            return Ok(());
        };
        let record = entry.record();
        let write = || self.deps.store.put(AGREEMENTS, hash, &record);
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded {
            tokio::task::block_in_place(write)
        } else {
            write()
        }
    }

    pub(super) fn publish(&mut self, hash: [u8; 32]) {
        if let Some(entry) = self.agreements.get(&hash) {
            let a = &entry.agreement;
            self.deps
                .events
                .publish(EventKind::AgreementChanged(AgreementEvent {
                    request_id: hash,
                    agreement_id: a.id(),
                    counterparty: a.counterparty(),
                    role: a.role(),
                    state: a.state(),
                    note: entry.note.clone(),
                }));
        }
        if let Some(watchers) = self.watchers.remove(&hash) {
            for w in watchers {
                let _ = w.send(());
            }
        }
    }

    /// Persists agreement `hash` after a step and applies what its new state implies:
    /// payment opened or closed, heartbeats started or stopped, the other end of a chain
    /// cancelled, an event.
    pub(super) fn settle(
        &mut self,
        hash: [u8; 32],
        before: Option<AgreementState>,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> Result<(), StoreError> {
        let heartbeats = self.heartbeats();
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Ok(());
        };
        entry.updated_at = now;
        let after = entry.agreement.state();
        let role = entry.agreement.role();
        let id = entry.agreement.id();
        let counterparty = entry.agreement.counterparty();
        let channel = entry.agreement.request().body().channel;
        let linked = entry.linked;
        if after == AgreementState::Terminated && entry.note.is_empty() {
            entry.note = "verification failed".into();
        }
        if let Some(id) = id {
            self.by_id.insert(id, hash);
        }
        // The ledger follows the agreement as it stands in memory, written or not.
        self.publish_relay_cover();
        self.commit(&hash)?;
        if before == Some(after) {
            self.publish(hash);
            return Ok(());
        }
        if let Some(id) = id {
            if after == AgreementState::Active {
                self.deps.payments.opened(id, role, counterparty, channel);
                if role == Role::Consumer {
                    self.monitors.insert(
                        hash,
                        HeartbeatMonitor::new(id, counterparty, heartbeats, now),
                    );
                }
            }
            if after.is_final() && before == Some(AgreementState::Active) {
                if let Err(e) = self.bill_relay_rest(hash, after, now) {
                    // The agreement has ended all the same; what it owed stays unbilled.
                    tracing::error!(error = %e, "cannot persist the last relay charge");
                }
                self.deps.payments.closed(id, role, after);
            }
        }
        if after.is_final() {
            self.monitors.remove(&hash);
            if let Some(other) = linked {
                let reason = if after == AgreementState::Terminated {
                    CancelReason::VerificationFailed
                } else {
                    CancelReason::Requested
                };
                let live = self.agreements.get(&other).is_some_and(|e| {
                    matches!(
                        e.agreement.state(),
                        AgreementState::Offered | AgreementState::Active
                    )
                });
                if live {
                    if let Some(e) = self.agreements.get_mut(&other) {
                        e.note = "the other end of its capability chain ended".into();
                    }
                    if let Ok(cancel) = self.cancel_step(other, reason, now) {
                        out.extend(cancel);
                    }
                } else if let Some(e) = self.agreements.get(&other)
                    && e.agreement.state() == AgreementState::Proposed
                    && e.agreement.role() == Role::Provider
                {
                    out.extend(self.reject_pending(other, RejectReason::Other, now));
                }
            }
        }
        self.publish(hash);
        Ok(())
    }

    /// Proposes an agreement to `provider`; returns the request hash and the request to send.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::market) fn propose(
        &mut self,
        provider: PeerKey,
        capability: Capability,
        cost_cap: CostStructure,
        duration_seconds: u32,
        proof: ProofMethod,
        auto_accept: bool,
        linked: Option<[u8; 32]>,
        now: u64,
    ) -> Result<([u8; 32], Outbound), MarketError> {
        if provider.node_id() == self.me {
            return Err(MarketError::InvalidArgument {
                field: "provider",
                reason: "is this node itself".into(),
            });
        }
        let request = Request {
            consumer: self.me,
            provider: provider.node_id(),
            capability,
            cost_cap,
            duration_seconds,
            channel: self.deps.payments.channel_for(self.me, provider.node_id()),
            proof,
            privacy: Privacy::None,
            nonce: self.rng.next_u64(),
        };
        let (agreement, signed) = Agreement::propose(&self.key, request, now)?;
        let hash = signed.hash();
        self.keys.insert(provider.node_id(), provider.clone());
        self.agreements.insert(
            hash,
            Entry {
                agreement,
                peer: provider.clone(),
                charges: Charges::default(),
                updated_at: now,
                linked,
                note: String::new(),
                auto_accept,
            },
        );
        if let Some(other) = linked
            && let Some(e) = self.agreements.get_mut(&other)
        {
            e.linked = Some(hash);
            self.commit(&other)?;
        }
        let mut out = Vec::new();
        self.settle(hash, None, now, &mut out)?;
        Ok((
            hash,
            Outbound::record(provider.node_id(), MarketMessage::Request(signed)),
        ))
    }

    /// Countersigns an offered agreement.
    pub(in crate::market) fn accept(
        &mut self,
        hash: [u8; 32],
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let entry = self
            .agreements
            .get_mut(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let before = entry.agreement.state();
        let result = entry.agreement.accept(&self.key, now);
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match result {
            Ok(acceptance) => {
                self.settle(hash, Some(before), now, &mut out)?;
                out.push(Outbound::record(to, MarketMessage::Acceptance(acceptance)));
                Ok(out)
            }
            Err(e) => {
                self.settle(hash, Some(before), now, &mut out)?;
                Err(e.into())
            }
        }
    }

    pub(super) fn cancel_step(
        &mut self,
        hash: [u8; 32],
        reason: CancelReason,
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let entry = self
            .agreements
            .get_mut(&hash)
            .ok_or(MarketError::UnknownAgreement)?;
        let before = entry.agreement.state();
        let cancel = entry.agreement.cancel(&self.key, reason)?;
        if entry.note.is_empty() {
            entry.note = "cancelled by this node".into();
        }
        let to = entry.agreement.counterparty();
        let mut out = vec![Outbound::record(to, MarketMessage::Cancel(cancel))];
        self.settle(hash, Some(before), now, &mut out)?;
        Ok(out)
    }

    /// Cancels an offered or active agreement.
    pub(in crate::market) fn cancel(
        &mut self,
        hash: [u8; 32],
        reason: CancelReason,
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        self.cancel_step(hash, reason, now)
    }

    /// Rejects a request still being decided (a resale that found nothing upstream).
    pub(in crate::market) fn reject_pending(
        &mut self,
        hash: [u8; 32],
        reason: RejectReason,
        now: u64,
    ) -> Vec<Outbound> {
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Vec::new();
        };
        let before = entry.agreement.state();
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match entry.agreement.reject(&self.key, reason) {
            Ok(rejection) => out.push(Outbound::record(to, MarketMessage::Rejection(rejection))),
            Err(e) => tracing::debug!(error = %e, "cannot reject"),
        }
        if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
            tracing::error!(error = %e, "cannot persist an agreement");
            return Vec::new();
        }
        out
    }

    /// Records a charge on agreement `hash` and tells the payments seam.
    pub(in crate::market) fn charge(
        &mut self,
        hash: [u8; 32],
        units: u64,
        amount_umhr: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let active = self
            .agreements
            .get(&hash)
            .is_some_and(|e| e.agreement.state() == AgreementState::Active);
        if !active {
            return Ok(());
        }
        self.apply_charge(hash, units, amount_umhr, now)
    }

    /// Records a charge on agreement `hash`, whatever its state (the last bill of an
    /// agreement that just ended), and tells the payments seam.
    pub(in crate::market) fn apply_charge(
        &mut self,
        hash: [u8; 32],
        units: u64,
        amount_umhr: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return Ok(());
        };
        let Some(agreement_id) = entry.agreement.id() else {
            return Ok(());
        };
        entry.charges.units = entry.charges.units.saturating_add(units);
        entry.charges.amount_umhr = entry.charges.amount_umhr.saturating_add(amount_umhr);
        entry.updated_at = now;
        let charge = Charge {
            agreement_id,
            role: entry.agreement.role(),
            counterparty: entry.agreement.counterparty(),
            channel: entry.agreement.request().body().channel,
            units,
            amount_umhr,
        };
        self.commit(&hash)?;
        self.deps.payments.charge(&charge);
        Ok(())
    }

    /// What this node charges for `capability` under `cap`, or why it declines.
    pub(super) fn decide(&self, request: &Request) -> Result<CostStructure, RejectReason> {
        if self.deps.drain.is_on() {
            // Drained: no new agreements, whatever is asked (the API refuses its calls too).
            self.drops.count("market.drained");
            return Err(RejectReason::Busy);
        }
        let active = self
            .agreements
            .values()
            .filter(|e| {
                e.agreement.role() == Role::Provider
                    && e.agreement.state() == AgreementState::Active
            })
            .count();
        if active >= self.deps.config.max_active_agreements as usize {
            return Err(RejectReason::Busy);
        }
        let caps = self.own.advert().capabilities();
        let fits = |cost: CostStructure| {
            cost.within(&request.cost_cap)
                .map(|_| cost)
                .map_err(|_| RejectReason::PriceTooLow)
        };
        match request.capability {
            Capability::Compute(ComputeTarget::Function(id)) => {
                let f = caps.function(&id).ok_or(RejectReason::Unsupported)?;
                fits(f.cost)
            }
            Capability::Compute(ComputeTarget::Wasm(module)) => {
                if !self.settings.offer_compute || !self.modules.contains(&module) {
                    return Err(RejectReason::Unsupported);
                }
                match request.cost_cap {
                    CostStructure::PerCycle { max_cycles, .. } => fits(CostStructure::PerCycle {
                        per_million: self.settings.wasm_price_per_million_cycles_umhr,
                        max_cycles,
                    }),
                    _ => Err(RejectReason::PriceTooLow),
                }
            }
            Capability::Storage { bytes } => {
                let storage = caps.storage.ok_or(RejectReason::Unsupported)?;
                if storage.available_bytes < bytes {
                    return Err(RejectReason::InsufficientCapacity);
                }
                fits(CostStructure::PerDuration {
                    per_epoch: storage.cost_per_byte_day.saturating_mul(bytes),
                })
            }
            Capability::Relay if !caps.interfaces.is_empty() => fits(CostStructure::PerByte {
                per_byte: self.settings.relay_price_per_byte_umhr,
            }),
            Capability::Proxy if caps.interfaces.iter().any(|i| i.internet_gateway) => {
                fits(CostStructure::PerByte {
                    per_byte: self.settings.relay_price_per_byte_umhr,
                })
            }
            Capability::Relay | Capability::Proxy => Err(RejectReason::Unsupported),
        }
    }

    /// Takes a consumer's request (its key already looked up): offers, rejects, or asks for
    /// a resale. A repeated request gets the answer already given.
    pub(in crate::market) fn on_request(
        &mut self,
        request: SignedRequest,
        consumer: &PeerKey,
        now: u64,
    ) -> RequestOutcome {
        let hash = request.hash();
        if let Some(entry) = self.agreements.get(&hash) {
            let to = entry.agreement.counterparty();
            let answer = match (entry.agreement.offer(), entry.agreement.rejection()) {
                (Some(offer), _) => vec![Outbound::record(to, MarketMessage::Offer(offer.clone()))],
                (None, Some(r)) => vec![Outbound::record(to, MarketMessage::Rejection(r.clone()))],
                (None, None) => Vec::new(),
            };
            return RequestOutcome::Answered(answer);
        }
        let proven = self
            .reputation
            .get(&consumer.node_id())
            .is_some_and(|p| p.total() > p.failed().saturating_mul(2));
        if let Err(reason) =
            self.request_admission
                .admit(consumer.node_id(), self.agreements.len(), proven, now)
        {
            self.drops.count(reason);
            self.counters.records_refused += 1;
            return RequestOutcome::Answered(Vec::new());
        }
        let agreement = match Agreement::receive_request(request, consumer, self.me, now) {
            Ok(agreement) => agreement,
            Err(e) => {
                tracing::debug!(error = %e, "request refused");
                if is_forgery(&e) {
                    self.counters.records_forged += 1;
                } else {
                    self.counters.records_refused += 1;
                }
                return RequestOutcome::Answered(Vec::new());
            }
        };
        self.counters.records_accepted += 1;
        self.keys.insert(consumer.node_id(), consumer.clone());
        let body = *agreement.request().body();
        self.agreements.insert(
            hash,
            Entry {
                agreement,
                peer: consumer.clone(),
                charges: Charges::default(),
                updated_at: now,
                linked: None,
                note: String::new(),
                auto_accept: false,
            },
        );
        let mut out = Vec::new();
        if let Err(e) = self.settle(hash, None, now, &mut out) {
            tracing::error!(error = %e, "cannot persist a request");
            return RequestOutcome::Answered(Vec::new());
        }
        if let Capability::Compute(ComputeTarget::Function(id)) = body.capability {
            let resold = self
                .own
                .advert()
                .capabilities()
                .function(&id)
                .is_some_and(|f| self.resold.contains(&f.name));
            if resold {
                return RequestOutcome::Resell {
                    request_hash: hash,
                    function: id,
                    cap: body.cost_cap,
                    duration_seconds: body.duration_seconds,
                };
            }
        }
        let decision = self.decide(&body);
        let Some(entry) = self.agreements.get_mut(&hash) else {
            return RequestOutcome::Answered(out);
        };
        match decision {
            Ok(cost) => {
                let terms = OfferTerms {
                    cost,
                    valid_for_seconds: self.deps.config.offer_validity_secs,
                    proof: body.proof,
                    upstream: None,
                };
                let before = entry.agreement.state();
                match entry.agreement.make_offer(&self.key, terms, now) {
                    Ok(offer) => {
                        out.push(Outbound::record(body.consumer, MarketMessage::Offer(offer)))
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot offer"),
                }
                if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                    tracing::error!(error = %e, "cannot persist an offer");
                    return RequestOutcome::Answered(Vec::new());
                }
                RequestOutcome::Answered(out)
            }
            Err(reason) => {
                if let Some(e) = self.agreements.get_mut(&hash) {
                    e.note = format!("rejected: {reason:?}");
                }
                out.extend(self.reject_pending(hash, reason, now));
                RequestOutcome::Answered(out)
            }
        }
    }

    /// Offers a resold agreement once its upstream agreement is active.
    pub(in crate::market) fn offer_resale(
        &mut self,
        downstream: [u8; 32],
        upstream: [u8; 32],
        now: u64,
    ) -> Result<Vec<Outbound>, MarketError> {
        let up = self
            .agreements
            .get(&upstream)
            .ok_or(MarketError::UnknownAgreement)?
            .agreement
            .clone();
        let price = up.cost().map_or(0, |c| c.unit_price());
        let markup = resale_markup(price, self.deps.config.resale_markup_percent);
        let entry = self
            .agreements
            .get_mut(&downstream)
            .ok_or(MarketError::UnknownAgreement)?;
        let proof = entry.agreement.request().body().proof;
        let terms = resale_terms(&up, markup, self.deps.config.offer_validity_secs, proof)
            .map_err(|e| MarketError::Chain(e.to_string()))?;
        let before = entry.agreement.state();
        let offer = entry.agreement.make_offer(&self.key, terms, now);
        entry.linked = Some(upstream);
        let to = entry.agreement.counterparty();
        let mut out = Vec::new();
        match offer {
            Ok(offer) => {
                if let Err(e) = validate_chain_link(&entry.agreement, &up) {
                    tracing::warn!(error = %e, "resale does not chain");
                }
                out.push(Outbound::record(to, MarketMessage::Offer(offer)));
                if let Some(u) = self.agreements.get_mut(&upstream) {
                    u.linked = Some(downstream);
                }
                self.commit(&upstream)?;
                self.settle(downstream, Some(before), now, &mut out)?;
                Ok(out)
            }
            Err(e) => {
                self.settle(downstream, Some(before), now, &mut out)?;
                Err(e.into())
            }
        }
    }

    /// Takes an agreement or heartbeat record (not a request: see [`Self::on_request`]).
    pub(in crate::market) fn on_record(
        &mut self,
        message: MarketMessage,
        now: u64,
    ) -> Vec<Outbound> {
        let mut out = Vec::new();
        let outcome = self.take_record(message, now, &mut out);
        match outcome {
            Ok(true) => self.counters.records_accepted += 1,
            Ok(false) => {}
            Err(Refusal::Forged(why)) => {
                tracing::debug!(why, "forged market record refused");
                self.counters.records_forged += 1;
            }
            Err(Refusal::Refused(why)) => {
                tracing::debug!(%why, "market record refused");
                self.counters.records_refused += 1;
            }
        }
        out
    }

    /// `Ok(false)`: a harmless repeat, dropped silently.
    pub(super) fn take_record(
        &mut self,
        message: MarketMessage,
        now: u64,
        out: &mut Vec<Outbound>,
    ) -> Result<bool, Refusal> {
        let unknown = || Refusal::Refused("no such agreement".into());
        match message {
            MarketMessage::Offer(offer) => {
                let hash = offer.body().request_hash;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.offer().map(|o| o.as_bytes()) == Some(offer.as_bytes()) {
                    return Ok(false);
                }
                if entry.agreement.role() != Role::Consumer
                    || offer.body().provider != entry.agreement.counterparty()
                    || offer.verify(&entry.peer).is_err()
                {
                    return Err(Refusal::Forged("offer"));
                }
                let before = entry.agreement.state();
                let result = entry.agreement.receive_offer(offer, &entry.peer, now);
                let auto = entry.auto_accept;
                if result.is_ok() && auto {
                    let to = entry.agreement.counterparty();
                    if let Ok(acceptance) = entry.agreement.accept(&self.key, now) {
                        out.push(Outbound::record(to, MarketMessage::Acceptance(acceptance)));
                    }
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Rejection(rejection) => {
                let hash = rejection.body().request_hash;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.rejection().map(|r| r.as_bytes()) == Some(rejection.as_bytes()) {
                    return Ok(false);
                }
                if rejection.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("rejection"));
                }
                let before = entry.agreement.state();
                let reason = rejection.body().reason;
                let result = entry.agreement.receive_rejection(rejection, &entry.peer);
                if result.is_ok() {
                    entry.note = format!("rejected by the provider: {reason:?}");
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Acceptance(acceptance) => {
                let hash = *self
                    .by_id
                    .get(&acceptance.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.acceptance().map(|a| a.as_bytes()) == Some(acceptance.as_bytes())
                {
                    return Ok(false);
                }
                if acceptance.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("acceptance"));
                }
                let before = entry.agreement.state();
                let result = entry
                    .agreement
                    .receive_acceptance(acceptance, &entry.peer, now);
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Cancel(cancel) => {
                let hash = *self
                    .by_id
                    .get(&cancel.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get_mut(&hash).ok_or_else(unknown)?;
                if entry.agreement.cancellation().map(|c| c.as_bytes()) == Some(cancel.as_bytes()) {
                    return Ok(false);
                }
                if cancel.verify(&entry.peer).is_err() {
                    return Err(Refusal::Forged("cancel"));
                }
                let before = entry.agreement.state();
                let reason = cancel.body().reason;
                let result = entry.agreement.receive_cancel(cancel, &entry.peer);
                if result.is_ok() {
                    entry.note = format!("cancelled by the other side: {reason:?}");
                }
                self.settle(hash, Some(before), now, out)
                    .map_err(|e| Refusal::Refused(e.to_string()))?;
                result
                    .map(|_| true)
                    .map_err(|e| Refusal::Refused(e.to_string()))
            }
            MarketMessage::Ping(ping) => {
                let hash = *self
                    .by_id
                    .get(&ping.body().agreement_id)
                    .ok_or_else(unknown)?;
                let entry = self.agreements.get(&hash).ok_or_else(unknown)?;
                if entry.agreement.role() != Role::Provider
                    || entry.agreement.state() != AgreementState::Active
                {
                    return Err(Refusal::Refused(
                        "ping for an agreement not provided".into(),
                    ));
                }
                let id = ping.body().agreement_id;
                let pong = answer_ping(&ping, &entry.peer, id, &self.key).map_err(|e| match e {
                    HeartbeatError::Record(_) => Refusal::Forged("ping"),
                    other => Refusal::Refused(other.to_string()),
                })?;
                out.push(Outbound {
                    reliable: false,
                    ..Outbound::record(entry.agreement.counterparty(), MarketMessage::Pong(pong))
                });
                self.counters.pings_answered += 1;
                Ok(true)
            }
            MarketMessage::Pong(pong) => {
                let hash = *self
                    .by_id
                    .get(&pong.body().agreement_id)
                    .ok_or_else(unknown)?;
                let peer = self.agreements.get(&hash).ok_or_else(unknown)?.peer.clone();
                let monitor = self.monitors.get_mut(&hash).ok_or_else(|| {
                    Refusal::Refused("pong for an agreement not monitored".into())
                })?;
                monitor.on_pong(&pong, &peer).map_err(|e| match e {
                    HeartbeatError::Record(_) => Refusal::Forged("pong"),
                    other => Refusal::Refused(other.to_string()),
                })?;
                self.counters.pongs_received += 1;
                Ok(true)
            }
            other => Err(Refusal::Refused(format!(
                "a {} is not expected here",
                crate::market::wire::message_name(&other)
            ))),
        }
    }

    /// Applies deadlines (expiry, completion) and heartbeats; returns the pings and
    /// cancellations to send.
    pub(in crate::market) fn tick(&mut self, now: u64) -> Vec<Outbound> {
        let mut out = Vec::new();
        self.bill_relays_due(now);
        self.prune_final(now);
        let due: Vec<([u8; 32], AgreementState)> = self
            .agreements
            .iter()
            .filter(|(_, e)| e.agreement.next_deadline_ms().is_some_and(|d| now >= d))
            .map(|(h, e)| (*h, e.agreement.state()))
            .collect();
        for (hash, before) in due {
            if let Some(entry) = self.agreements.get_mut(&hash)
                && let Some(state) = entry.agreement.tick(now)
            {
                entry.note = match state {
                    AgreementState::Expired => "timed out in negotiation".into(),
                    AgreementState::Completed => "ran its full duration".into(),
                    _ => String::new(),
                };
                if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                    tracing::error!(error = %e, "cannot persist an agreement");
                }
            }
        }
        let monitored: Vec<[u8; 32]> = self.monitors.keys().copied().collect();
        for hash in monitored {
            let Some(monitor) = self.monitors.get_mut(&hash) else {
                continue;
            };
            match monitor.poll(now, &mut self.rng) {
                mehr_market::verification::HeartbeatAction::Wait { .. } => {}
                mehr_market::verification::HeartbeatAction::SendPing { nonce } => {
                    let (Ok(ping), Some(entry)) =
                        (monitor.ping(&self.key, nonce), self.agreements.get(&hash))
                    else {
                        continue;
                    };
                    out.push(Outbound {
                        reliable: false,
                        ..Outbound::record(
                            entry.agreement.counterparty(),
                            MarketMessage::Ping(ping),
                        )
                    });
                }
                mehr_market::verification::HeartbeatAction::Terminate { misses } => {
                    let Some(entry) = self.agreements.get_mut(&hash) else {
                        continue;
                    };
                    let before = entry.agreement.state();
                    if entry.agreement.terminate().is_err() {
                        self.monitors.remove(&hash);
                        continue;
                    }
                    entry.note = format!("{misses} heartbeats missed in a row");
                    let provider = entry.agreement.counterparty();
                    let kind = service_kind(&entry.agreement.request().body().capability);
                    tracing::info!(agreement = %hex::encode(hash), %provider, misses, "provider stopped answering heartbeats; agreement terminated");
                    self.record_outcome(provider, kind, Outcome::Failure, now);
                    if let Err(e) = self.settle(hash, Some(before), now, &mut out) {
                        tracing::error!(error = %e, "cannot persist an agreement");
                    }
                }
            }
        }
        out
    }

    /// Drops final agreements whose last change is older than the retention, from memory
    /// and RocksDB (one unsynced batch: a prune lost in a crash is done again).
    pub(in crate::market) fn prune_final(&mut self, now: u64) {
        let stale: Vec<[u8; 32]> = self
            .agreements
            .iter()
            .filter(|(_, e)| {
                e.agreement.state().is_final()
                    && now.saturating_sub(e.updated_at) > super::admission::FINAL_RETENTION_MS
            })
            .map(|(hash, _)| *hash)
            .collect();
        if stale.is_empty() {
            return;
        }
        let mut batch = self.deps.store.batch();
        for hash in &stale {
            if let Some(id) = self.agreements.remove(hash).and_then(|e| e.agreement.id()) {
                self.by_id.remove(&id);
            }
            self.monitors.remove(hash);
            self.watchers.remove(hash);
            batch.delete(AGREEMENTS, hash);
        }
        if let Err(e) = self.deps.store.commit_unsynced(batch) {
            tracing::warn!(error = %e, "cannot prune finished agreements");
        }
        self.drops
            .add("market.agreements_pruned", stale.len() as u64);
    }

    /// Heartbeat misses counted on a consumer agreement.
    pub(in crate::market) fn misses(&self, hash: &[u8; 32]) -> u32 {
        self.monitors.get(hash).map_or(0, HeartbeatMonitor::misses)
    }

    // ---- jobs ------------------------------------------------------------------------
}
