//! `mehr.v1.MarketService`: converts between proto messages and the market part's types, and
//! delegates to [`Market`].

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use mehr_market::{
    CapabilityKind, CostStructure, FunctionId, NodeId,
    agreement::{AgreementState, Capability, ComputeTarget, ProofMethod, Role},
    capabilities::{Availability, CpuClass, Medium, NodeCapabilities, StorageClass},
    discovery::Filter,
    verification::Tier,
};
use mehr_proto::v1::{
    self as pb,
    market_service_server::{MarketService, MarketServiceServer},
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    deadline::CallDeadline,
    paging::{Filters, PageRequest, invalid_token},
    status::invalid_field,
};
use crate::{
    events::{EventBus, EventKind},
    market::{
        AgreementFilter, AgreementView, DiscoverRequest, Discovery, DiscoveryOutcome, Market,
        MarketError, OfferSettings, OfferUpdate, OfferView, Proposal, ProviderOutcome,
        ProviderResult, VerifiedCall,
    },
};

/// Default discovery timeout.
const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest discovery timeout.
const MAX_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Default per-provider deadline of a verified call.
pub(super) const DEFAULT_JOB_DEADLINE: Duration = Duration::from_secs(30);
/// Largest input of a verified call (the transport's default message limit).
const MAX_VERIFIED_INPUT: usize = 16 << 20;

/// The MarketService implementation. Every call fails with FAILED_PRECONDITION when the
/// market is disabled.
#[derive(Clone)]
pub struct MarketApi {
    market: Option<Market>,
    events: Arc<EventBus>,
}

impl MarketApi {
    /// Serves `market` (`None` when `market.enabled` is false).
    pub fn new(market: Option<Market>, events: Arc<EventBus>) -> Self {
        MarketApi { market, events }
    }

    /// The tonic service, accepting inputs of verified calls up to 16 MiB.
    pub fn into_server(self) -> MarketServiceServer<MarketApi> {
        MarketServiceServer::new(self)
            .max_decoding_message_size(MAX_VERIFIED_INPUT + 64 * 1024)
            .max_encoding_message_size(MAX_VERIFIED_INPUT + 64 * 1024)
    }

    fn market(&self) -> Result<&Market, Status> {
        self.market
            .as_ref()
            .ok_or_else(|| MarketError::Disabled.into())
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    invalid_field(field, format!("{field}: {reason}"))
}

fn node_id(field: &str, bytes: &[u8]) -> Result<NodeId, Status> {
    <[u8; 16]>::try_from(bytes)
        .map(NodeId)
        .map_err(|_| invalid(field, format!("expected 16 bytes, got {}", bytes.len())))
}

fn id32(field: &str, bytes: &[u8]) -> Result<[u8; 32], Status> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| invalid(field, format!("expected 32 bytes, got {}", bytes.len())))
}

// ---- conversions -------------------------------------------------------------------------

/// A cost structure as the API shows it.
pub fn cost_to_proto(cost: &CostStructure) -> pb::CostStructure {
    use pb::cost_structure::Kind;
    let kind = match *cost {
        CostStructure::PerByte { per_byte } => Kind::PerByte(pb::PerByte {
            per_byte_umhr: per_byte,
        }),
        CostStructure::PerInvocation {
            per_call,
            max_input,
        } => Kind::PerInvocation(pb::PerInvocation {
            per_call_umhr: per_call,
            max_input_bytes: max_input,
        }),
        CostStructure::PerDuration { per_epoch } => Kind::PerDuration(pb::PerDuration {
            per_epoch_umhr: per_epoch,
        }),
        CostStructure::PerCycle {
            per_million,
            max_cycles,
        } => Kind::PerCycle(pb::PerCycle {
            per_million_umhr: per_million,
            max_cycles,
        }),
    };
    pb::CostStructure { kind: Some(kind) }
}

fn cost_from_proto(field: &str, cost: &pb::CostStructure) -> Result<CostStructure, Status> {
    use pb::cost_structure::Kind;
    Ok(match cost.kind.as_ref() {
        Some(Kind::PerByte(c)) => CostStructure::PerByte {
            per_byte: c.per_byte_umhr,
        },
        Some(Kind::PerInvocation(c)) => CostStructure::PerInvocation {
            per_call: c.per_call_umhr,
            max_input: c.max_input_bytes,
        },
        Some(Kind::PerDuration(c)) => CostStructure::PerDuration {
            per_epoch: c.per_epoch_umhr,
        },
        Some(Kind::PerCycle(c)) => CostStructure::PerCycle {
            per_million: c.per_million_umhr,
            max_cycles: c.max_cycles,
        },
        None => {
            return Err(invalid(
                field,
                "give one of per_byte, per_invocation, per_duration, per_cycle",
            ));
        }
    })
}

fn availability_to_proto(a: &Availability) -> (pb::Availability, Vec<pb::DailyWindow>) {
    match a {
        Availability::AlwaysOn => (pb::Availability::AlwaysOn, Vec::new()),
        Availability::Solar => (pb::Availability::Solar, Vec::new()),
        Availability::Intermittent => (pb::Availability::Intermittent, Vec::new()),
        Availability::Scheduled(windows) => (
            pb::Availability::Scheduled,
            windows
                .iter()
                .map(|w| pb::DailyWindow {
                    start_minute: u32::from(w.start_minute),
                    duration_minutes: u32::from(w.duration_minutes),
                })
                .collect(),
        ),
    }
}

/// Capabilities as the API shows them.
pub fn capabilities_to_proto(caps: &NodeCapabilities) -> pb::Capabilities {
    let (availability, schedule) = availability_to_proto(&caps.availability);
    pb::Capabilities {
        interfaces: caps
            .interfaces
            .iter()
            .map(|i| pb::AdvertisedInterface {
                medium: match i.medium {
                    Medium::LoRa => pb::Medium::Lora,
                    Medium::WiFi => pb::Medium::Wifi,
                    Medium::Bluetooth => pb::Medium::Bluetooth,
                    Medium::Cellular => pb::Medium::Cellular,
                    Medium::Ethernet => pb::Medium::Ethernet,
                    Medium::Serial => pb::Medium::Serial,
                    Medium::Internet => pb::Medium::Internet,
                    Medium::Other => pb::Medium::Other,
                } as i32,
                bandwidth_bps: i.bandwidth_bps,
                latency_ms: i.latency_ms,
                reliability: u32::from(i.reliability),
                cost_per_byte_umhr: i.cost_per_byte,
                internet_gateway: i.internet_gateway,
            })
            .collect(),
        compute: caps.compute.as_ref().map(|c| pb::ComputeOffer {
            cpu_class: match c.cpu_class {
                CpuClass::Micro => pb::CpuClass::Micro,
                CpuClass::Low => pb::CpuClass::Low,
                CpuClass::Medium => pb::CpuClass::Medium,
                CpuClass::High => pb::CpuClass::High,
            } as i32,
            memory_mb: c.memory_mb,
            mhr_byte: c.mhr_byte,
            wasm: c.wasm,
            cost_per_million_cycles_umhr: c.cost_per_million_cycles,
            functions: c
                .functions
                .iter()
                .map(|f| pb::OfferedFunction {
                    name: f.name.clone(),
                    function_hash: f.id().0.to_vec().into(),
                    description: f.description.clone(),
                    cost: Some(cost_to_proto(&f.cost)),
                    max_concurrent: f.max_concurrent,
                })
                .collect(),
        }),
        storage: caps.storage.map(|s| pb::StorageOffer {
            available_bytes: s.available_bytes,
            class: match s.class {
                StorageClass::Volatile => pb::StorageClass::Volatile,
                StorageClass::Flash => pb::StorageClass::Flash,
                StorageClass::Ssd => pb::StorageClass::Ssd,
                StorageClass::Hdd => pb::StorageClass::Hdd,
            } as i32,
            cost_per_byte_day_umhr: s.cost_per_byte_day,
            max_object_size: s.max_object_size,
            serves_content: s.serves_content,
        }),
        availability: availability as i32,
        schedule,
        pubsub: caps.services.pubsub,
        dht: caps.services.dht,
        naming: caps.services.naming,
    }
}

fn settings_to_proto(s: &OfferSettings) -> pb::OfferSettings {
    pb::OfferSettings {
        offer_relay: s.offer_relay,
        offer_storage: s.offer_storage,
        offer_compute: s.offer_compute,
        relay_price_per_byte_umhr: s.relay_price_per_byte_umhr,
        storage_price_per_byte_day_umhr: s.storage_price_per_byte_day_umhr,
        wasm_price_per_million_cycles_umhr: s.wasm_price_per_million_cycles_umhr,
        function_prices: s.function_prices.clone().into_iter().collect(),
        availability: availability_to_proto(&s.availability).0 as i32,
    }
}

fn offer_to_proto(offer: OfferView) -> pb::GetOfferResponse {
    pb::GetOfferResponse {
        node_id: offer.node_id.0.to_vec().into(),
        seq: offer.seq,
        ttl_seconds: offer.ttl_seconds,
        capabilities: Some(capabilities_to_proto(&offer.capabilities)),
        advert: offer.advert.into(),
        settings: Some(settings_to_proto(&offer.settings)),
        resold_functions: offer.resold,
    }
}

/// A role as the API shows it.
pub fn role_to_proto(role: Role) -> pb::AgreementRole {
    match role {
        Role::Consumer => pb::AgreementRole::Consumer,
        Role::Provider => pb::AgreementRole::Provider,
    }
}

/// A state as the API shows it.
pub fn state_to_proto(state: AgreementState) -> pb::AgreementState {
    match state {
        AgreementState::Proposed => pb::AgreementState::Proposed,
        AgreementState::Offered => pb::AgreementState::Offered,
        AgreementState::Active => pb::AgreementState::Active,
        AgreementState::Rejected(_) => pb::AgreementState::Rejected,
        AgreementState::Cancelled { .. } => pb::AgreementState::Cancelled,
        AgreementState::Expired => pb::AgreementState::Expired,
        AgreementState::Terminated => pb::AgreementState::Terminated,
        AgreementState::Completed => pb::AgreementState::Completed,
    }
}

fn proof_to_proto(proof: ProofMethod) -> pb::ProofMethod {
    match proof {
        ProofMethod::DeliveryReceipt => pb::ProofMethod::DeliveryReceipt,
        ProofMethod::ChallengeResponse => pb::ProofMethod::ChallengeResponse,
        ProofMethod::ResultHash => pb::ProofMethod::ResultHash,
        ProofMethod::Heartbeat => pb::ProofMethod::Heartbeat,
    }
}

fn capability_to_proto(capability: &Capability, name: Option<String>) -> pb::AgreementCapability {
    use pb::agreement_capability::Kind;
    let kind = match capability {
        Capability::Compute(ComputeTarget::Function(id)) => {
            Kind::FunctionHash(id.0.to_vec().into())
        }
        Capability::Compute(ComputeTarget::Wasm(module)) => {
            Kind::WasmModule(module.to_vec().into())
        }
        Capability::Storage { bytes } => Kind::StorageBytes(*bytes),
        Capability::Relay => Kind::Relay(true),
        Capability::Proxy => Kind::Proxy(true),
    };
    pb::AgreementCapability {
        kind: Some(kind),
        function_name: name.unwrap_or_default(),
    }
}

fn capability_from_proto(
    capability: Option<&pb::AgreementCapability>,
) -> Result<Capability, Status> {
    use pb::agreement_capability::Kind;
    let capability = capability.ok_or_else(|| invalid("capability", "is required"))?;
    Ok(match capability.kind.as_ref() {
        Some(Kind::FunctionHash(hash)) => Capability::Compute(ComputeTarget::Function(FunctionId(
            id32("capability.function_hash", hash)?,
        ))),
        None if !capability.function_name.is_empty() => Capability::Compute(
            ComputeTarget::Function(FunctionId::of(&capability.function_name)),
        ),
        Some(Kind::WasmModule(module)) => {
            Capability::Compute(ComputeTarget::Wasm(id32("capability.wasm_module", module)?))
        }
        Some(Kind::StorageBytes(0)) => {
            return Err(invalid("capability.storage_bytes", "must be above zero"));
        }
        Some(Kind::StorageBytes(bytes)) => Capability::Storage { bytes: *bytes },
        Some(Kind::Relay(_)) => Capability::Relay,
        Some(Kind::Proxy(_)) => Capability::Proxy,
        None => {
            return Err(invalid(
                "capability",
                "give function_name, function_hash, wasm_module, storage_bytes, relay or proxy",
            ));
        }
    })
}

fn opt_ms(ms: Option<u64>) -> u64 {
    ms.unwrap_or(0)
}

/// An agreement as the API shows it.
pub fn agreement_to_proto(a: &AgreementView) -> pb::Agreement {
    pb::Agreement {
        request_id: a.request_id.to_vec().into(),
        agreement_id: a
            .agreement_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default()
            .into(),
        role: role_to_proto(a.role) as i32,
        state: state_to_proto(a.state) as i32,
        note: a.note.clone(),
        counterparty: a.counterparty.0.to_vec().into(),
        capability: Some(capability_to_proto(&a.capability, a.function_name.clone())),
        cost_cap: Some(cost_to_proto(&a.cost_cap)),
        cost: a.cost.as_ref().map(cost_to_proto),
        duration_seconds: a.duration_seconds,
        channel_id: a.channel.0.to_vec().into(),
        proof: proof_to_proto(a.proof) as i32,
        proposed_at_unix_ms: a.proposed_at_unix_ms,
        offered_at_unix_ms: opt_ms(a.offered_at_unix_ms),
        activated_at_unix_ms: opt_ms(a.activated_at_unix_ms),
        ends_at_unix_ms: opt_ms(a.ends_at_unix_ms),
        updated_at_unix_ms: a.updated_at_unix_ms,
        charged_units: a.charges.units,
        charged_umhr: a.charges.amount_umhr,
        upstream_agreement_id: a
            .upstream
            .map(|id| id.0.to_vec())
            .unwrap_or_default()
            .into(),
        linked_request_id: a.linked.map(|h| h.to_vec()).unwrap_or_default().into(),
        heartbeat_misses: a.heartbeat_misses,
        paid_umhr: a.payment.paid_umhr,
        owed_umhr: a.payment.owed_umhr,
    }
}

fn kind_from_proto(kind: i32) -> Result<CapabilityKind, Status> {
    Ok(match pb::CapabilityKind::try_from(kind) {
        Ok(pb::CapabilityKind::Relay) => CapabilityKind::Relay,
        Ok(pb::CapabilityKind::Gateway) => CapabilityKind::Gateway,
        Ok(pb::CapabilityKind::Storage) => CapabilityKind::Storage,
        Ok(pb::CapabilityKind::MhrByte) => CapabilityKind::MhrByte,
        Ok(pb::CapabilityKind::Wasm) => CapabilityKind::Wasm,
        Ok(pb::CapabilityKind::Pubsub) => CapabilityKind::PubSub,
        Ok(pb::CapabilityKind::Dht) => CapabilityKind::Dht,
        Ok(pb::CapabilityKind::Naming) => CapabilityKind::Naming,
        Ok(pb::CapabilityKind::Function) => CapabilityKind::Function,
        Ok(pb::CapabilityKind::Unspecified) | Err(_) => {
            return Err(invalid(
                "kind",
                "give a capability kind (relay, storage, function, …)",
            ));
        }
    })
}

/// An optional filter value as bytes that tell "unset" from every value.
fn optional(value: Option<u64>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => [&[1u8][..], &v.to_le_bytes()].concat(),
    }
}

/// A discovery as the API shows it (one page: the caller sets `next_page_token`).
fn discovery_to_proto(found: Discovery) -> pb::DiscoverResponse {
    pb::DiscoverResponse {
        offers: found
            .offers
            .into_iter()
            .map(|f| pb::ProviderOffer {
                node_id: f.offer.node_id.0.to_vec().into(),
                unit_price_umhr: f.offer.unit_price,
                cost: f.offer.cost.as_ref().map(cost_to_proto),
                ring: u32::from(f.offer.origin.ring),
                hops: u32::from(f.offer.origin.hops),
                path_cost_umhr: f.offer.origin.path_cost,
                reputation: u32::from(f.offer.reputation),
                load: f.offer.load.map(u32::from),
                score_ppm: f.offer.score,
                capabilities: f.capabilities.as_ref().map(capabilities_to_proto),
                via: f.offer.origin.via.0.to_vec().into(),
            })
            .collect(),
        outcome: match found.outcome {
            DiscoveryOutcome::Satisfied => pb::DiscoveryOutcome::Satisfied,
            DiscoveryOutcome::Exhausted => pb::DiscoveryOutcome::Exhausted,
            DiscoveryOutcome::TimedOut => pb::DiscoveryOutcome::TimedOut,
        } as i32,
        rings_searched: u32::from(found.rings_searched),
        pulls_sent: found.pulls_sent,
        answers_received: found.answers,
        elapsed_us: u64::try_from(found.elapsed.as_micros()).unwrap_or(u64::MAX),
        next_page_token: String::new(),
    }
}

pub(super) fn tier_from_proto(tier: Option<&pb::VerificationTier>) -> Result<Tier, Status> {
    use pb::verification_tier::Kind;
    Ok(match tier.and_then(|t| t.kind.as_ref()) {
        None | Some(Kind::Reputation(_)) => Tier::Reputation,
        Some(Kind::Optimistic(o)) => Tier::Optimistic { one_in: o.one_in },
        Some(Kind::Redundant(r)) => Tier::Redundant {
            k: u8::try_from(r.k)
                .map_err(|_| invalid("tier.redundant.k", format!("{} is more than 255", r.k)))?,
        },
    })
}

/// Every provider's part in a verified call, as the API shows it.
pub(super) fn providers_to_proto(providers: Vec<ProviderResult>) -> Vec<pb::ProviderResult> {
    providers
        .into_iter()
        .map(|p| pb::ProviderResult {
            node_id: p.node_id.0.to_vec().into(),
            agreement_id: p
                .agreement_id
                .map(|id| id.0.to_vec())
                .unwrap_or_default()
                .into(),
            output_hash: p.output_hash.map(|h| h.to_vec()).unwrap_or_default().into(),
            outcome: match p.outcome {
                ProviderOutcome::Agreed => pb::ProviderOutcome::Agreed,
                ProviderOutcome::Dissented => pb::ProviderOutcome::Dissented,
                ProviderOutcome::Missing => pb::ProviderOutcome::Missing,
                ProviderOutcome::Unsettled => pb::ProviderOutcome::Unsettled,
            } as i32,
            error: p.error.unwrap_or_default(),
            signed_result: p.signed_result.unwrap_or_default().into(),
        })
        .collect()
}

type AgreementStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchAgreementsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MarketService for MarketApi {
    async fn get_offer(
        &self,
        _: Request<pb::GetOfferRequest>,
    ) -> Result<Response<pb::GetOfferResponse>, Status> {
        Ok(Response::new(offer_to_proto(self.market()?.offer())))
    }

    async fn update_offer(
        &self,
        request: Request<pb::UpdateOfferRequest>,
    ) -> Result<Response<pb::UpdateOfferResponse>, Status> {
        let r = request.into_inner();
        let availability = match pb::Availability::try_from(r.availability) {
            Ok(pb::Availability::Unspecified) => None,
            Ok(pb::Availability::AlwaysOn) => Some(Availability::AlwaysOn),
            Ok(pb::Availability::Solar) => Some(Availability::Solar),
            Ok(pb::Availability::Intermittent) => Some(Availability::Intermittent),
            Ok(pb::Availability::Scheduled) | Err(_) => {
                return Err(invalid(
                    "availability",
                    "give always_on, solar or intermittent",
                ));
            }
        };
        let update = OfferUpdate {
            reset: r.reset,
            offer_relay: r.offer_relay,
            offer_storage: r.offer_storage,
            offer_compute: r.offer_compute,
            relay_price_per_byte_umhr: r.relay_price_per_byte_umhr,
            storage_price_per_byte_day_umhr: r.storage_price_per_byte_day_umhr,
            wasm_price_per_million_cycles_umhr: r.wasm_price_per_million_cycles_umhr,
            function_prices: r.function_prices.into_iter().collect(),
            remove_function_prices: r.remove_function_prices,
            availability,
        };
        let offer = self.market()?.set_offer(update).await?;
        Ok(Response::new(pb::UpdateOfferResponse {
            offer: Some(offer_to_proto(offer)),
        }))
    }

    async fn discover(
        &self,
        request: Request<pb::DiscoverRequest>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        // Discovery answers with what it found when its time is up, which must come before
        // the call's deadline.
        let timeout = CallDeadline::cap(
            &request,
            match request.get_ref().timeout_ms {
                0 => DEFAULT_DISCOVERY_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)).min(MAX_DISCOVERY_TIMEOUT),
            },
        );
        let r = request.into_inner();
        let kind = kind_from_proto(r.kind)?;
        if !r.function.is_empty() && kind != CapabilityKind::Function {
            return Err(invalid("function", "only goes with kind FUNCTION"));
        }
        let want = (r.want.max(1) as usize).min(64);
        let filters = Filters::new("Discover")
            .field("kind", r.kind.to_le_bytes())
            .field("function", &r.function)
            .field("min_storage_bytes", r.min_storage_bytes.to_le_bytes())
            .field("min_bandwidth_bps", r.min_bandwidth_bps.to_le_bytes())
            .field("max_price_umhr", optional(r.max_price_umhr))
            .field("want", (want as u64).to_le_bytes())
            .field("max_ring", optional(r.max_ring.map(u64::from)));
        let paging = PageRequest::parse(filters, r.page_size, &r.page_token)?;
        // The cursor is the providers already sent, 16 bytes each.
        let sent = match &paging.after {
            Some(cursor) if cursor.len() % 16 != 0 => {
                return Err(invalid_token());
            }
            Some(cursor) => cursor.clone(),
            None => Vec::new(),
        };
        let filter = Filter {
            kind,
            function: (!r.function.is_empty()).then(|| FunctionId::of(&r.function)),
            min_storage_bytes: r.min_storage_bytes,
            min_bandwidth_bps: r.min_bandwidth_bps,
            max_price: r.max_price_umhr,
        };
        let max_ring = match r.max_ring {
            None => mehr_market::params::MAX_RING,
            Some(ring @ 0..=3) => ring as u8,
            Some(ring) => return Err(invalid("max_ring", format!("is {ring}, rings are 0 to 3"))),
        };
        let mut found = self
            .market()?
            .discover(DiscoverRequest {
                filter,
                want,
                max_ring,
                timeout,
            })
            .await?;
        found
            .offers
            .retain(|f| !sent.chunks(16).any(|id| id == f.offer.node_id.0));
        let more = found.offers.len() > paging.size;
        found.offers.truncate(paging.size);
        let next_page_token = if more {
            let mut cursor = sent;
            for f in &found.offers {
                cursor.extend_from_slice(&f.offer.node_id.0);
            }
            paging.token(&cursor)
        } else {
            String::new()
        };
        Ok(Response::new(pb::DiscoverResponse {
            next_page_token,
            ..discovery_to_proto(found)
        }))
    }

    async fn list_agreements(
        &self,
        request: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::ListAgreementsResponse>, Status> {
        let r = request.into_inner();
        let role = match pb::AgreementRole::try_from(r.role) {
            Ok(pb::AgreementRole::Unspecified) => None,
            Ok(pb::AgreementRole::Consumer) => Some(Role::Consumer),
            Ok(pb::AgreementRole::Provider) => Some(Role::Provider),
            Err(_) => return Err(invalid("role", format!("{} is not a role", r.role))),
        };
        let filters = Filters::new("ListAgreements")
            .field("role", r.role.to_le_bytes())
            .field("live_only", [u8::from(r.live_only)]);
        let paging = PageRequest::parse(filters, r.page_size, &r.page_token)?;
        let market = self.market()?;
        market.refresh_payments().await;
        let all = market.agreements(AgreementFilter {
            role,
            live_only: r.live_only,
        });
        let (items, next) = paging.page(all, |a| a.request_id.to_vec());
        Ok(Response::new(pb::ListAgreementsResponse {
            agreements: items.iter().map(agreement_to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn get_agreement(
        &self,
        request: Request<pb::GetAgreementRequest>,
    ) -> Result<Response<pb::GetAgreementResponse>, Status> {
        let id = id32("id", &request.into_inner().id)?;
        let market = self.market()?;
        market.refresh_payments().await;
        let agreement = market.agreement(&id)?;
        Ok(Response::new(pb::GetAgreementResponse {
            agreement: Some(agreement_to_proto(&agreement)),
        }))
    }

    async fn propose_agreement(
        &self,
        request: Request<pb::ProposeAgreementRequest>,
    ) -> Result<Response<pb::ProposeAgreementResponse>, Status> {
        let r = request.into_inner();
        let market = self.market()?;
        let provider = node_id("provider", &r.provider)?;
        let capability = capability_from_proto(r.capability.as_ref())?;
        let cost_cap = r
            .cost_cap
            .as_ref()
            .map(|c| cost_from_proto("cost_cap", c))
            .transpose()?;
        let proof = match pb::ProofMethod::try_from(r.proof) {
            Ok(pb::ProofMethod::Unspecified) => match capability {
                Capability::Compute(_) => ProofMethod::ResultHash,
                _ => ProofMethod::Heartbeat,
            },
            Ok(pb::ProofMethod::DeliveryReceipt) => ProofMethod::DeliveryReceipt,
            Ok(pb::ProofMethod::ChallengeResponse) => ProofMethod::ChallengeResponse,
            Ok(pb::ProofMethod::ResultHash) => ProofMethod::ResultHash,
            Ok(pb::ProofMethod::Heartbeat) => ProofMethod::Heartbeat,
            Err(_) => {
                return Err(invalid(
                    "proof",
                    format!("{} is not a proof method", r.proof),
                ));
            }
        };
        let duration_seconds = match r.duration_seconds {
            0 => market_duration(market),
            d => d,
        };
        let agreement = market
            .propose(Proposal {
                provider,
                capability,
                cost_cap,
                duration_seconds,
                proof,
                accept: r.accept,
                wait: Duration::from_millis(u64::from(r.wait_ms)),
            })
            .await?;
        Ok(Response::new(pb::ProposeAgreementResponse {
            agreement: Some(agreement_to_proto(&agreement)),
        }))
    }

    async fn accept_agreement(
        &self,
        request: Request<pb::AcceptAgreementRequest>,
    ) -> Result<Response<pb::AcceptAgreementResponse>, Status> {
        let id = id32("id", &request.into_inner().id)?;
        let agreement = self.market()?.accept(&id)?;
        Ok(Response::new(pb::AcceptAgreementResponse {
            agreement: Some(agreement_to_proto(&agreement)),
        }))
    }

    async fn cancel_agreement(
        &self,
        request: Request<pb::CancelAgreementRequest>,
    ) -> Result<Response<pb::CancelAgreementResponse>, Status> {
        let id = id32("id", &request.into_inner().id)?;
        let agreement = self.market()?.cancel(&id)?;
        Ok(Response::new(pb::CancelAgreementResponse {
            agreement: Some(agreement_to_proto(&agreement)),
        }))
    }

    async fn invoke_verified(
        &self,
        request: Request<pb::InvokeVerifiedRequest>,
    ) -> Result<Response<pb::InvokeVerifiedResponse>, Status> {
        let r = request.into_inner();
        let tier = tier_from_proto(r.tier.as_ref())?;
        let deadline = match r.deadline_ms {
            0 => DEFAULT_JOB_DEADLINE,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let outcome = self
            .market()?
            .invoke_verified(VerifiedCall {
                function: r.function,
                input: r.input.to_vec(),
                tier,
                max_price_umhr: r.max_price_umhr,
                deadline,
                partials: None,
            })
            .await?;
        Ok(Response::new(pb::InvokeVerifiedResponse {
            output: outcome.output.into(),
            output_hash: outcome.output_hash.to_vec().into(),
            audited: outcome.audited,
            escalated: outcome.escalated,
            providers: providers_to_proto(outcome.providers),
            charged_umhr: outcome.charged_umhr,
        }))
    }

    async fn list_reputation(
        &self,
        request: Request<pb::ListReputationRequest>,
    ) -> Result<Response<pb::ListReputationResponse>, Status> {
        let r = request.into_inner();
        let node = (!r.node_id.is_empty())
            .then(|| node_id("node_id", &r.node_id))
            .transpose()?;
        let filters = Filters::new("ListReputation").field("node_id", &r.node_id);
        let paging = PageRequest::parse(filters, r.page_size, &r.page_token)?;
        let (peers, next_page_token) =
            paging.page(self.market()?.reputation(node), |p| p.node_id.0.to_vec());
        let peers = peers
            .into_iter()
            .map(|p| pb::PeerReputation {
                node_id: p.node_id.0.to_vec().into(),
                relay_score: u32::from(p.relay),
                storage_score: u32::from(p.storage),
                compute_score: u32::from(p.compute),
                interactions: p.interactions,
                failures: p.failures,
                excluded_until_unix_ms: p.excluded.as_ref().map_or(0, |e| e.until_unix_ms),
                excluded_reason: p.excluded.map(|e| e.reason).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListReputationResponse {
            peers,
            next_page_token,
        }))
    }

    type WatchAgreementsStream = AgreementStream;

    async fn watch_agreements(
        &self,
        _: Request<pb::WatchAgreementsRequest>,
    ) -> Result<Response<Self::WatchAgreementsStream>, Status> {
        let market = self.market()?.clone();
        let mut events = self.events.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let message = match &event.kind {
                    EventKind::ShuttingDown { .. } => return,
                    EventKind::AgreementChanged(change) => {
                        match market.agreement(&change.request_id) {
                            Ok(view) => pb::WatchAgreementsResponse {
                                agreement: Some(agreement_to_proto(&view)),
                                at_unix_ms: event.at_unix_ms,
                            },
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_market_stats(
        &self,
        _: Request<pb::GetMarketStatsRequest>,
    ) -> Result<Response<pb::GetMarketStatsResponse>, Status> {
        let s = self.market()?.stats();
        let c = s.counters;
        Ok(Response::new(pb::GetMarketStatsResponse {
            adverts_accepted: c.adverts_accepted,
            adverts_forged: c.adverts_forged,
            adverts_stale: c.adverts_stale,
            adverts_expired: c.adverts_expired,
            adverts_refused: c.adverts_refused,
            gossip_refused: c.gossip_refused,
            pulls_answered: c.pulls_answered,
            pulls_duplicate: c.pulls_duplicate,
            pull_answers_relayed: c.pull_answers_relayed,
            records_accepted: c.records_accepted,
            records_forged: c.records_forged,
            records_refused: c.records_refused,
            beacons_sent: c.beacons_sent,
            beacons_received: c.beacons_received,
            jobs_served: c.jobs_served,
            jobs_refused: c.jobs_refused,
            pings_answered: c.pings_answered,
            pongs_received: c.pongs_received,
            sends_failed: s.sends_failed,
            deliveries_dropped: s.deliveries_dropped,
            adverts_held: s.adverts_held as u64,
            own_seq: s.own_seq,
            links: s
                .links
                .into_iter()
                .map(|l| pb::LinkGossip {
                    node_id: l.node_id.0.to_vec().into(),
                    bitrate: l.bitrate,
                    budget_bytes_per_hour: l.budget_bytes_per_hour,
                    advert_bytes: l.stats.advert_bytes,
                    summary_bytes: l.stats.summary_bytes,
                    pull_bytes: l.stats.pull_bytes,
                    messages: l.stats.messages,
                    dropped: l.stats.dropped,
                })
                .collect(),
            agreements: s.agreements.into_iter().collect(),
            since_unix_ms: s.since_unix_ms,
        }))
    }
}

fn market_duration(market: &Market) -> u32 {
    market.default_agreement_secs()
}
