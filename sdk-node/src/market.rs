//! The market: agreements (propose, accept, cancel, follow) with providers.

use std::time::Duration;

use mehr_sdk::{market::Proposal, proto as pb};
use napi_derive::napi;

use crate::{
    cancel::{CancelToken, Scope},
    client::NativeClient,
    failure::{Result, invalid, sdk},
    streams::AgreementStream,
    values::{Agreement, Cost, cost_structure, hex_bytes, whole},
};

/// An agreement to propose to a provider: for one of `function`, `storageBytes` or `relay`.
#[napi(object)]
pub struct ProposalJs {
    /// The provider's node id, hex.
    pub provider: String,
    /// Calls of this function.
    pub function: Option<String>,
    /// Storage of this many bytes.
    pub storage_bytes: Option<f64>,
    /// Relay through the provider.
    pub relay: Option<bool>,
    /// The most to pay, in the provider's cost structure (default: its advertised price).
    pub cost_cap: Option<Cost>,
    /// How long it runs once active, seconds (default: the node's agreement duration).
    pub duration_seconds: Option<u32>,
    /// `delivery_receipt`, `challenge_response` or `result_hash`.
    pub proof: Option<String>,
    /// Countersign the provider's offer as soon as it arrives.
    pub accept: Option<bool>,
    /// Wait up to this long for the provider's answer before resolving, ms.
    pub wait_ms: Option<u32>,
}

fn proposal(p: ProposalJs) -> Result<Proposal> {
    let provider = hex_bytes(&p.provider, "provider")?;
    let chosen = [
        p.function.is_some(),
        p.storage_bytes.is_some(),
        p.relay == Some(true),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(invalid(
            "a proposal is for exactly one of `function`, `storageBytes` or `relay: true`",
        ));
    }
    let mut out = match (p.function, p.storage_bytes) {
        (Some(function), _) => Proposal::function(&provider, function),
        (None, Some(bytes)) => Proposal::storage(&provider, whole(bytes, "storageBytes")?),
        (None, None) => Proposal::relay(&provider),
    };
    if let Some(cap) = &p.cost_cap {
        out = out.cost_cap(cost_structure(cap)?);
    }
    if let Some(seconds) = p.duration_seconds {
        out = out.duration(Duration::from_secs(seconds.into()));
    }
    if let Some(proof) = p.proof {
        let name = format!("PROOF_METHOD_{}", proof.to_uppercase());
        let method = pb::ProofMethod::from_str_name(&name).ok_or_else(|| {
            invalid(format!(
                "proof `{proof}` is not delivery_receipt, challenge_response or result_hash"
            ))
        })?;
        out = out.proof(method);
    }
    if p.accept == Some(true) {
        out = out.accept();
    }
    if let Some(ms) = p.wait_ms {
        out = out.wait(Duration::from_millis(ms.into()));
    }
    Ok(out)
}

#[napi]
impl NativeClient {
    /// Every agreement of this node.
    #[napi]
    pub async fn agreements(&self, cancel: Option<&CancelToken>) -> Result<Vec<Agreement>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.agreements().await)?
                    .into_iter()
                    .map(Agreement::from)
                    .collect())
            })
            .await
    }

    /// One agreement, by its agreement or request id (hex).
    #[napi]
    pub async fn agreement(&self, id: String, cancel: Option<&CancelToken>) -> Result<Agreement> {
        let id = hex_bytes(&id, "id")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(Agreement::from(sdk(client.agreement(&id).await)?)) })
            .await
    }

    /// Proposes an agreement to a provider; resolves with it as it stands after `waitMs`.
    #[napi]
    pub async fn propose_agreement(
        &self,
        proposal_js: ProposalJs,
        cancel: Option<&CancelToken>,
    ) -> Result<Agreement> {
        let proposal = proposal(proposal_js)?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(Agreement::from(sdk(client
                    .propose_agreement(proposal)
                    .await)?))
            })
            .await
    }

    /// Countersigns a provider's offer (agreement or request id, hex).
    #[napi]
    pub async fn accept_agreement(
        &self,
        id: String,
        cancel: Option<&CancelToken>,
    ) -> Result<Agreement> {
        let id = hex_bytes(&id, "id")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(Agreement::from(sdk(client.accept_agreement(&id).await)?)) })
            .await
    }

    /// Cancels an agreement (agreement or request id, hex).
    #[napi]
    pub async fn cancel_agreement(
        &self,
        id: String,
        cancel: Option<&CancelToken>,
    ) -> Result<Agreement> {
        let id = hex_bytes(&id, "id")?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(Agreement::from(sdk(client.cancel_agreement(&id).await)?)) })
            .await
    }

    /// Follows agreement changes.
    #[napi]
    pub async fn watch_agreements(&self, cancel: Option<&CancelToken>) -> Result<AgreementStream> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(AgreementStream::new(sdk(client.watch_agreements().await)?)) })
            .await
    }
}
