//! Reputation and the choice of providers: outcomes recorded per service, scores, exclusions
//! after a wrong result, and the providers (and agreements) a new request may reuse.

use super::{
    AgreementState, Capability, CostStructure, EXCLUDED_KEY, EventKind, Exclusion, NodeId, Outcome,
    REPUTATION_KEY, Role, ServiceKind, State, day, round, store_postcard,
};

impl State {
    /// Records an interaction's outcome and persists the book.
    pub(in crate::market) fn record_outcome(
        &mut self,
        node: NodeId,
        kind: ServiceKind,
        outcome: Outcome,
        now: u64,
    ) {
        self.reputation
            .record(node, kind, outcome, day(now), round(now));
        if let Err(e) = store_postcard(&self.deps.store, REPUTATION_KEY, &self.reputation) {
            tracing::error!(error = %e, "cannot persist reputation");
        }
    }

    /// The effective score of `node` for `kind`.
    pub(in crate::market) fn score(&self, node: &NodeId, kind: ServiceKind, now: u64) -> u16 {
        self.reputation.score(node, kind, round(now))
    }

    /// Stops choosing `node` for compute for the configured time.
    pub(in crate::market) fn exclude(&mut self, node: NodeId, reason: String, now: u64) {
        let until = now.saturating_add(self.deps.config.exclusion_secs.saturating_mul(1_000));
        self.excluded.insert(
            node,
            Exclusion {
                until_unix_ms: until,
                reason: reason.clone(),
            },
        );
        if let Err(e) = store_postcard(&self.deps.store, EXCLUDED_KEY, &self.excluded) {
            tracing::error!(error = %e, "cannot persist exclusions");
        }
        tracing::warn!(%node, reason, "provider excluded from compute");
        self.deps.events.publish(EventKind::PeerExcluded {
            node_id: node.0,
            reason,
            until_unix_ms: until,
        });
    }

    /// Whether `node` is excluded now.
    pub(in crate::market) fn is_excluded(&self, node: &NodeId, now: u64) -> bool {
        self.excluded
            .get(node)
            .is_some_and(|e| e.until_unix_ms > now)
    }

    /// The providers of the active consumer agreements for `capability` with at least
    /// `margin_ms` left, with their agreed costs: a verified call that finds enough of them
    /// needs no discovery.
    pub(in crate::market) fn agreed_providers(
        &self,
        capability: &Capability,
        now: u64,
        margin_ms: u64,
    ) -> Vec<(NodeId, CostStructure)> {
        let mut providers: Vec<(NodeId, CostStructure)> = Vec::new();
        for entry in self.agreements.values() {
            let a = &entry.agreement;
            let usable = a.role() == Role::Consumer
                && a.state() == AgreementState::Active
                && a.request().body().capability == *capability
                && a.ends_at_ms()
                    .is_some_and(|end| end > now.saturating_add(margin_ms))
                && !self.is_excluded(&a.counterparty(), now);
            if let (true, Some(cost)) = (usable, a.cost())
                && !providers.iter().any(|(node, _)| *node == a.counterparty())
            {
                providers.push((a.counterparty(), cost));
            }
        }
        providers
    }

    /// Active consumer agreements with `provider` for `capability` with at least `margin_ms`
    /// left.
    pub(in crate::market) fn reusable_agreement(
        &self,
        provider: &NodeId,
        capability: &Capability,
        now: u64,
        margin_ms: u64,
    ) -> Option<[u8; 32]> {
        self.agreements.iter().find_map(|(hash, e)| {
            let a = &e.agreement;
            (a.role() == Role::Consumer
                && a.state() == AgreementState::Active
                && a.counterparty() == *provider
                && a.request().body().capability == *capability
                && a.ends_at_ms()
                    .is_some_and(|end| end > now.saturating_add(margin_ms)))
            .then_some(*hash)
        })
    }
}
