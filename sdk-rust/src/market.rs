//! The capability marketplace: `MarketService` — the node's offer, discovery, agreements,
//! verified remote calls and reputation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mehr_sdk::Error> {
//! use mehr_sdk::market::{Discover, Tier};
//!
//! let client = mehr_sdk::Client::connect().await?;
//! // The nearest cheap providers of `embed`, at most 50 μMHR a call.
//! let found = client.discover(Discover::function("embed").max_price(50)).await?;
//! for offer in &found.offers {
//!     println!("{} at {} hops", hex::encode(&offer.node_id), offer.hops);
//! }
//! // Run it on three of them; the majority's output wins.
//! let verdict = client
//!     .invoke_verified("embed", b"hello".to_vec(), Tier::Redundant { k: 3 }, Default::default())
//!     .await?;
//! println!("{} bytes, {} μMHR", verdict.output.len(), verdict.charged_umhr);
//! # Ok(()) }
//! ```

use std::time::Duration;

use futures::StreamExt;
use mehr_proto::v1::{self as pb, market_service_client::MarketServiceClient};
use prost::bytes::Bytes;

use crate::{AuthedChannel, Client, Error, EventStream};

/// Largest message exchanged with `MarketService` (inputs and outputs of verified calls).
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// What to look for with [`Client::discover`].
#[derive(Debug, Clone, PartialEq)]
pub struct Discover {
    request: pb::DiscoverRequest,
}

impl Discover {
    /// Providers of capability `kind`.
    pub fn kind(kind: pb::CapabilityKind) -> Self {
        Discover {
            request: pb::DiscoverRequest {
                kind: kind as i32,
                ..Default::default()
            },
        }
    }

    /// Providers of the function `function` (its id, as its provider registered it).
    pub fn function(function: impl Into<String>) -> Self {
        let mut d = Discover::kind(pb::CapabilityKind::Function);
        d.request.function = function.into();
        d
    }

    /// At most `umhr` μMHR per unit (call, byte, byte-day, million cycles).
    pub fn max_price(mut self, umhr: u64) -> Self {
        self.request.max_price_umhr = Some(umhr);
        self
    }

    /// Search until `n` offers are found (default 1).
    pub fn want(mut self, n: u32) -> Self {
        self.request.want = n;
        self
    }

    /// Search no farther than ring `ring` (0 neighbours … 3 beyond; default 3).
    pub fn max_ring(mut self, ring: u32) -> Self {
        self.request.max_ring = Some(ring);
        self
    }

    /// Storage providers with at least `bytes` free.
    pub fn min_storage_bytes(mut self, bytes: u64) -> Self {
        self.request.min_storage_bytes = bytes;
        self
    }

    /// Relays with at least `bps` of bandwidth.
    pub fn min_bandwidth_bps(mut self, bps: u64) -> Self {
        self.request.min_bandwidth_bps = bps;
        self
    }

    /// Give up after `timeout` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request.timeout_ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        self
    }

    /// The request as sent.
    pub fn into_request(self) -> pb::DiscoverRequest {
        self.request
    }
}

/// An agreement to propose with [`Client::propose_agreement`].
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    request: pb::ProposeAgreementRequest,
}

impl Proposal {
    fn new(provider: &[u8], kind: pb::agreement_capability::Kind, name: String) -> Self {
        Proposal {
            request: pb::ProposeAgreementRequest {
                provider: provider.to_vec().into(),
                capability: Some(pb::AgreementCapability {
                    kind: Some(kind),
                    function_name: name,
                }),
                ..Default::default()
            },
        }
    }

    /// Calls of the function `function` on `provider` (a 16-byte node id).
    pub fn function(provider: &[u8], function: impl Into<String>) -> Self {
        let name: String = function.into();
        let hash = blake3::hash(name.as_bytes()).as_bytes().to_vec();
        Proposal::new(
            provider,
            pb::agreement_capability::Kind::FunctionHash(hash.into()),
            name,
        )
    }

    /// Storage of `bytes` on `provider`.
    pub fn storage(provider: &[u8], bytes: u64) -> Self {
        Proposal::new(
            provider,
            pb::agreement_capability::Kind::StorageBytes(bytes),
            String::new(),
        )
    }

    /// Relay by `provider`.
    pub fn relay(provider: &[u8]) -> Self {
        Proposal::new(
            provider,
            pb::agreement_capability::Kind::Relay(true),
            String::new(),
        )
    }

    /// Pay at most this (in the provider's structure); without it, its advertised price.
    pub fn cost_cap(mut self, cost: pb::CostStructure) -> Self {
        self.request.cost_cap = Some(cost);
        self
    }

    /// Run for `duration` once active (default: the node's `market.agreement_duration_secs`).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.request.duration_seconds =
            u32::try_from(duration.as_secs()).unwrap_or(u32::MAX).max(1);
        self
    }

    /// The proof wanted.
    pub fn proof(mut self, proof: pb::ProofMethod) -> Self {
        self.request.proof = proof as i32;
        self
    }

    /// Countersign the offer as soon as it arrives.
    pub fn accept(mut self) -> Self {
        self.request.accept = true;
        self
    }

    /// Wait up to `wait` for the provider's answer before returning.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.request.wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// The request as sent.
    pub fn into_request(self) -> pb::ProposeAgreementRequest {
        self.request
    }
}

/// How much a verified call is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// One provider, its result accepted.
    Reputation,
    /// One provider, audited by a second on a random 1-in-`one_in` call.
    Optimistic {
        /// Audit rate denominator.
        one_in: u32,
    },
    /// `k` providers, a strict majority wins.
    Redundant {
        /// Providers asked (at least 2).
        k: u32,
    },
}

impl Tier {
    pub(crate) fn to_proto(self) -> pb::VerificationTier {
        use pb::verification_tier::Kind;
        pb::VerificationTier {
            kind: Some(match self {
                Tier::Reputation => Kind::Reputation(pb::ReputationTier {}),
                Tier::Optimistic { one_in } => Kind::Optimistic(pb::OptimisticTier { one_in }),
                Tier::Redundant { k } => Kind::Redundant(pb::RedundantTier { k }),
            }),
        }
    }
}

/// Optional limits of a verified call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifiedOptions {
    /// The most to pay per call, μMHR.
    pub max_price_umhr: Option<u64>,
    /// How long each provider may take (default 30 s).
    pub deadline: Option<Duration>,
}

impl Client {
    /// The raw `MarketService` client.
    pub fn market(&self) -> MarketServiceClient<AuthedChannel> {
        MarketServiceClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// This node's signed offer: what it advertises and at which prices.
    pub async fn offer(&self) -> Result<pb::GetOfferResponse, Error> {
        Ok(self
            .market()
            .get_offer(pb::GetOfferRequest {})
            .await?
            .into_inner())
    }

    /// Changes the offer settings (unset fields stay) and returns the re-signed offer.
    pub async fn set_offer(
        &self,
        request: pb::UpdateOfferRequest,
    ) -> Result<pb::GetOfferResponse, Error> {
        let response = self.market().update_offer(request).await?.into_inner();
        response
            .offer
            .ok_or_else(|| Error::InvalidResponse("UpdateOffer returned no offer".into()))
    }

    /// One page of a discovery: `request` as [`Discover::into_request`] builds it, with the
    /// page fields set.
    pub async fn discover_page(
        &self,
        request: pb::DiscoverRequest,
    ) -> Result<pb::DiscoverResponse, Error> {
        Ok(self.market().discover(request).await?.into_inner())
    }

    /// Finds providers, nearest rings first; offers come best first. Follows every page: the
    /// offers of all pages, with the search figures of the first.
    pub async fn discover(&self, what: Discover) -> Result<pb::DiscoverResponse, Error> {
        let request = what.into_request();
        let mut first = self.discover_page(request.clone()).await?;
        let mut token = std::mem::take(&mut first.next_page_token);
        while !token.is_empty() {
            let page = self
                .discover_page(pb::DiscoverRequest {
                    page_token: token,
                    ..request.clone()
                })
                .await?;
            first.offers.extend(page.offers);
            token = page.next_page_token;
        }
        Ok(first)
    }

    /// One page of agreements.
    pub async fn agreements_page(
        &self,
        request: pb::ListAgreementsRequest,
    ) -> Result<pb::ListAgreementsResponse, Error> {
        Ok(self.market().list_agreements(request).await?.into_inner())
    }

    /// Every agreement this node is a side of (all pages), by request id.
    pub async fn agreements(&self) -> Result<Vec<pb::Agreement>, Error> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .agreements_page(pb::ListAgreementsRequest {
                    page_token: token,
                    ..Default::default()
                })
                .await?;
            all.extend(page.agreements);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// One agreement, by agreement id or request id.
    pub async fn agreement(&self, id: &[u8]) -> Result<pb::Agreement, Error> {
        let response = self
            .market()
            .get_agreement(pb::GetAgreementRequest {
                id: id.to_vec().into(),
            })
            .await?
            .into_inner();
        response
            .agreement
            .ok_or_else(|| Error::InvalidResponse("GetAgreement returned no agreement".into()))
    }

    /// Proposes an agreement; returns it as it stands when the wait (if any) ends.
    pub async fn propose_agreement(&self, proposal: Proposal) -> Result<pb::Agreement, Error> {
        let response = self
            .market()
            .propose_agreement(proposal.into_request())
            .await?
            .into_inner();
        response
            .agreement
            .ok_or_else(|| Error::InvalidResponse("ProposeAgreement returned no agreement".into()))
    }

    /// Countersigns an offered agreement.
    pub async fn accept_agreement(&self, id: &[u8]) -> Result<pb::Agreement, Error> {
        let response = self
            .market()
            .accept_agreement(pb::AcceptAgreementRequest {
                id: id.to_vec().into(),
            })
            .await?
            .into_inner();
        response
            .agreement
            .ok_or_else(|| Error::InvalidResponse("AcceptAgreement returned no agreement".into()))
    }

    /// Cancels an offered or active agreement.
    pub async fn cancel_agreement(&self, id: &[u8]) -> Result<pb::Agreement, Error> {
        let response = self
            .market()
            .cancel_agreement(pb::CancelAgreementRequest {
                id: id.to_vec().into(),
            })
            .await?
            .into_inner();
        response
            .agreement
            .ok_or_else(|| Error::InvalidResponse("CancelAgreement returned no agreement".into()))
    }

    /// Runs `function` on providers found by discovery, verified per `tier`.
    pub async fn invoke_verified(
        &self,
        function: &str,
        input: impl Into<Bytes>,
        tier: Tier,
        options: VerifiedOptions,
    ) -> Result<pb::InvokeVerifiedResponse, Error> {
        Ok(self
            .market()
            .invoke_verified(pb::InvokeVerifiedRequest {
                function: function.to_string(),
                input: input.into(),
                tier: Some(tier.to_proto()),
                max_price_umhr: options.max_price_umhr,
                deadline_ms: options.deadline.map_or(0, |d| {
                    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
                }),
            })
            .await?
            .into_inner())
    }

    /// One page of the reputation of the peers this node dealt with, by node id.
    pub async fn reputation_page(
        &self,
        request: pb::ListReputationRequest,
    ) -> Result<pb::ListReputationResponse, Error> {
        Ok(self.market().list_reputation(request).await?.into_inner())
    }

    /// Reputation of the peers this node dealt with (all pages), or of `node` only.
    pub async fn reputation(&self, node: Option<&[u8]>) -> Result<Vec<pb::PeerReputation>, Error> {
        let node_id: prost::bytes::Bytes = node.unwrap_or_default().to_vec().into();
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .reputation_page(pb::ListReputationRequest {
                    node_id: node_id.clone(),
                    page_token,
                    ..Default::default()
                })
                .await?;
            all.extend(page.peers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Follows agreement changes until the daemon shuts down or the stream is dropped.
    pub async fn watch_agreements(
        &self,
    ) -> Result<EventStream<pb::WatchAgreementsResponse>, Error> {
        let stream = self
            .market()
            .watch_agreements(pb::WatchAgreementsRequest {})
            .await?
            .into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(Error::from))))
    }

    /// The market's counters: adverts taken and refused, gossip per link, agreements by state.
    pub async fn market_stats(&self) -> Result<pb::GetMarketStatsResponse, Error> {
        Ok(self
            .market()
            .get_market_stats(pb::GetMarketStatsRequest {})
            .await?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_requests() {
        let d = Discover::function("embed")
            .max_price(5)
            .want(2)
            .max_ring(1)
            .timeout(Duration::from_micros(10))
            .into_request();
        assert_eq!(d.kind, pb::CapabilityKind::Function as i32);
        assert_eq!(d.function, "embed");
        assert_eq!(d.max_price_umhr, Some(5));
        assert_eq!((d.want, d.max_ring, d.timeout_ms), (2, Some(1), 1));

        let p = Proposal::function(&[1; 16], "embed")
            .accept()
            .wait(Duration::from_secs(2))
            .duration(Duration::from_millis(10))
            .into_request();
        let capability = p.capability.unwrap();
        assert_eq!(capability.function_name, "embed");
        assert_eq!(
            capability.kind,
            Some(pb::agreement_capability::Kind::FunctionHash(
                blake3::hash(b"embed").as_bytes().to_vec().into()
            ))
        );
        assert!(p.accept);
        assert_eq!((p.wait_ms, p.duration_seconds), (2000, 1));

        assert_eq!(
            Tier::Redundant { k: 3 }.to_proto().kind,
            Some(pb::verification_tier::Kind::Redundant(pb::RedundantTier {
                k: 3
            }))
        );
    }
}
