//! Plain JavaScript objects the native methods return and take (`#[napi(object)]`): the
//! generated `index.d.ts` types them. Bytes are `Buffer`s; ids people read are lowercase hex;
//! 64-bit counters are `number`s (exact up to 2^53, far above any count or μMHR amount here).

use mehr_sdk::proto as pb;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

/// A u64 as a JavaScript number.
pub(crate) fn number(value: u64) -> f64 {
    value as f64
}

/// A JavaScript number as a u64, refusing negatives, fractions and NaN.
pub(crate) fn whole(value: f64, what: &str) -> crate::failure::Result<u64> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0
    {
        Ok(value as u64)
    } else {
        Err(crate::failure::invalid(format!(
            "{what} must be a whole number of at least 0, not {value}"
        )))
    }
}

/// Bytes given as hex or as a Buffer, decoded.
pub(crate) fn hex_bytes(value: &str, what: &str) -> crate::failure::Result<Vec<u8>> {
    hex::decode(value).map_err(|e| crate::failure::invalid(format!("{what} is not hex: {e}")))
}

/// The node's identity and state.
#[napi(object)]
pub struct NodeInfo {
    /// The node id (identity hash), hex.
    pub node_id: String,
    pub x25519_public_key: String,
    pub ed25519_public_key: String,
    pub version: String,
    /// `none`, `relay`, `provider`, … as the daemon names it.
    pub participation_level: String,
    pub uptime_seconds: f64,
    pub data_dir: String,
    /// Where the node's API listens.
    pub api_endpoints: Vec<ApiEndpoint>,
    pub started_at_unix_ms: f64,
}

/// One address the node's API listens on.
#[napi(object)]
pub struct ApiEndpoint {
    /// `API_ENDPOINT_KIND_UNIX` or `API_ENDPOINT_KIND_TCP`.
    pub kind: String,
    /// The socket path or `host:port`.
    pub address: String,
    pub tls: bool,
    pub requires_token: bool,
}

impl From<pb::GetInfoResponse> for NodeInfo {
    fn from(info: pb::GetInfoResponse) -> Self {
        NodeInfo {
            node_id: hex::encode(&info.identity_hash),
            x25519_public_key: hex::encode(&info.x25519_public_key),
            ed25519_public_key: hex::encode(&info.ed25519_public_key),
            version: info.version,
            participation_level: pb::ParticipationLevel::try_from(info.participation_level)
                .map(|level| level.as_str_name().to_string())
                .unwrap_or_else(|_| info.participation_level.to_string()),
            uptime_seconds: number(info.uptime_seconds),
            data_dir: info.data_dir,
            api_endpoints: info
                .api_endpoints
                .into_iter()
                .map(|e| ApiEndpoint {
                    kind: enum_name(pb::ApiEndpointKind::try_from(e.kind).map(|k| k.as_str_name())),
                    address: e.address,
                    tls: e.tls,
                    requires_token: e.requires_token,
                })
                .collect(),
            started_at_unix_ms: number(info.started_at_unix_ms),
        }
    }
}

/// One event of the node's event stream.
#[napi(object)]
pub struct NodeEvent {
    pub sequence: f64,
    pub at_unix_ms: f64,
    /// The event's kind: the proto's field name (`function_registered`, `object_stored`, …).
    pub kind: String,
    /// The event's fields as a JSON object (lib/ parses it into `detail`): the proto's JSON
    /// names, bytes in hex, enums by name.
    pub detail_json: String,
}

impl From<pb::NodeEvent> for NodeEvent {
    fn from(event: pb::NodeEvent) -> Self {
        let (kind, detail) = crate::event_detail::kind_and_detail(&event);
        NodeEvent {
            sequence: number(event.sequence),
            at_unix_ms: number(event.at_unix_ms),
            kind,
            detail_json: detail.to_string(),
        }
    }
}

/// An enum value's proto name, or `""` for a number this build does not know.
pub(crate) fn enum_name<E>(name: Result<&'static str, E>) -> String {
    name.map(str::to_string).unwrap_or_default()
}

/// A network interface and its counters.
#[napi(object)]
pub struct Interface {
    pub id: u32,
    pub name: String,
    pub state: String,
    pub peer: Option<String>,
    pub rx_bytes: f64,
    pub tx_bytes: f64,
    pub rx_frames: f64,
    pub tx_frames: f64,
}

impl From<pb::Interface> for Interface {
    fn from(i: pb::Interface) -> Self {
        Interface {
            id: i.id,
            name: i.name,
            state: pb::InterfaceState::try_from(i.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_default(),
            peer: i.peer,
            rx_bytes: number(i.rx_bytes),
            tx_bytes: number(i.tx_bytes),
            rx_frames: number(i.rx_frames),
            tx_frames: number(i.tx_frames),
        }
    }
}

/// A path-table entry.
#[napi(object)]
pub struct PathEntry {
    pub destination: String,
    pub next_hop: String,
    pub hops: u32,
    pub interface_id: u32,
    pub age_seconds: f64,
    pub mehr_node: bool,
}

impl From<pb::Path> for PathEntry {
    fn from(p: pb::Path) -> Self {
        PathEntry {
            destination: hex::encode(&p.destination),
            next_hop: hex::encode(&p.next_hop),
            hops: p.hops,
            interface_id: p.interface_id,
            age_seconds: number(p.age_seconds),
            mehr_node: p.mehr_node,
        }
    }
}

/// A Mehr node one hop away.
#[napi(object)]
pub struct Neighbour {
    pub destination: String,
    pub node_id: String,
    pub interface_id: u32,
    pub last_heard_seconds: f64,
}

impl From<pb::Neighbour> for Neighbour {
    fn from(n: pb::Neighbour) -> Self {
        Neighbour {
            destination: hex::encode(&n.destination),
            node_id: hex::encode(&n.node_id),
            interface_id: n.interface_id,
            last_heard_seconds: number(n.last_heard_seconds),
        }
    }
}

/// A message received on a listened destination.
#[napi(object)]
pub struct InboundMessage {
    pub payload: Buffer,
    /// The inbound link (hex) to `reply` on, when the sender opened one.
    pub link_id: Option<String>,
    pub interface_id: Option<u32>,
}

impl From<pb::InboundMessage> for InboundMessage {
    fn from(m: pb::InboundMessage) -> Self {
        InboundMessage {
            payload: m.payload.to_vec().into(),
            link_id: m.link_id.map(hex::encode),
            interface_id: m.interface_id,
        }
    }
}

/// The outcome of a send.
#[napi(object)]
pub struct SendResult {
    /// `SEND_METHOD_PACKET` or `SEND_METHOD_LINK`.
    pub method: String,
    pub delivered: bool,
    pub rtt_ms: Option<f64>,
    pub packet_hash: Option<String>,
    /// The route taken, when the node knew one.
    pub route: Option<Route>,
}

impl From<pb::SendResponse> for SendResult {
    fn from(sent: pb::SendResponse) -> Self {
        SendResult {
            method: enum_name(pb::SendMethod::try_from(sent.method).map(|m| m.as_str_name())),
            delivered: sent.delivered,
            rtt_ms: sent.rtt_ms.map(number),
            packet_hash: sent.packet_hash.map(hex::encode),
            route: sent.route.map(Route::from),
        }
    }
}

/// A route to a destination.
#[napi(object)]
pub struct Route {
    /// The next hop's transport hash, hex.
    pub next_hop: String,
    pub hops: u32,
    /// The path's cost, when the node has one for it.
    pub cost: Option<PathCost>,
}

/// What a path costs and carries.
#[napi(object)]
pub struct PathCost {
    pub cost_per_byte: f64,
    pub worst_latency_ms: u32,
    pub bandwidth_bps: f64,
    pub hops: u32,
    pub mtu: f64,
}

impl From<pb::Route> for Route {
    fn from(r: pb::Route) -> Self {
        Route {
            next_hop: hex::encode(&r.next_hop),
            hops: r.hops,
            cost: r.cost.map(|c| PathCost {
                cost_per_byte: c.cost_per_byte,
                worst_latency_ms: c.worst_latency_ms,
                bandwidth_bps: c.bandwidth_bps,
                hops: c.hops,
                mtu: c.mtu,
            }),
        }
    }
}

/// Who ran a call and what it cost.
#[napi(object)]
pub struct Metering {
    /// `FUNCTION_KIND_WASM` or `FUNCTION_KIND_SERVED`.
    pub kind: String,
    pub provider_node_id: String,
    pub fuel_used: f64,
    pub duration_us: f64,
}

/// One provider's part in a call on the mesh.
#[napi(object)]
pub struct ProviderResult {
    pub node_id: String,
    /// The agreement the call ran under, hex (empty when none).
    pub agreement_id: String,
    /// The hash of this provider's output, hex (empty when it gave none).
    pub output_hash: String,
    /// `PROVIDER_OUTCOME_AGREED`, `…_DISSENTED`, `…_MISSING` or `…_UNSPECIFIED` (unsettled).
    pub outcome: String,
    /// Why this provider gave no output, when it did not.
    pub error: String,
    /// The provider's signed result (its evidence), as sent.
    pub signed_result: Buffer,
}

/// How a call on the mesh went (`RemoteCall`).
#[napi(object)]
pub struct RemoteCall {
    /// The providers asked, each with its outcome.
    pub providers: Vec<ProviderResult>,
    pub output_hash: String,
    pub audited: bool,
    pub escalated: bool,
    pub charged_umhr: f64,
}

/// A function call's answer.
#[napi(object)]
pub struct InvokeResult {
    pub output: Buffer,
    pub metering: Option<Metering>,
    /// Set when the call ran on the mesh.
    pub remote: Option<RemoteCall>,
}

fn function_kind(kind: i32) -> String {
    enum_name(pb::FunctionKind::try_from(kind).map(|k| k.as_str_name()))
}

pub(crate) fn metering(m: Option<pb::InvocationMetering>) -> Option<Metering> {
    m.map(|m| Metering {
        kind: function_kind(m.kind),
        provider_node_id: hex::encode(&m.provider_node_id),
        fuel_used: number(m.fuel_used),
        duration_us: number(m.duration_us),
    })
}

pub(crate) fn remote(r: Option<pb::RemoteCall>) -> Option<RemoteCall> {
    r.map(|r| RemoteCall {
        providers: r
            .providers
            .into_iter()
            .map(|p| ProviderResult {
                node_id: hex::encode(&p.node_id),
                agreement_id: hex::encode(&p.agreement_id),
                output_hash: hex::encode(&p.output_hash),
                outcome: enum_name(
                    pb::ProviderOutcome::try_from(p.outcome).map(|o| o.as_str_name()),
                ),
                error: p.error,
                signed_result: p.signed_result.to_vec().into(),
            })
            .collect(),
        output_hash: hex::encode(&r.output_hash),
        audited: r.audited,
        escalated: r.escalated,
        charged_umhr: number(r.charged_umhr),
    })
}

/// A function the node offers.
#[napi(object)]
pub struct FunctionInfo {
    pub function_id: String,
    /// BLAKE3 of the function id, hex: what agreements name.
    pub function_hash: String,
    /// `FUNCTION_KIND_WASM` or `FUNCTION_KIND_SERVED`.
    pub kind: String,
    pub description: String,
    /// Price per call, μMHR, when priced per call.
    pub price_per_invocation_umhr: Option<f64>,
    /// Price per million fuel, μMHR, when priced by fuel (WASM).
    pub price_per_million_fuel_umhr: Option<f64>,
    pub max_concurrency: u32,
    pub max_input_bytes: u32,
    pub in_flight: u32,
    pub queued: u32,
    /// The module the function comes from, hex (WASM only).
    pub module_id: Option<String>,
    pub available_since_unix_ms: f64,
}

impl From<pb::FunctionInfo> for FunctionInfo {
    fn from(f: pb::FunctionInfo) -> Self {
        use pb::function_price::Kind as Price;
        let price = f.price.and_then(|p| p.kind);
        FunctionInfo {
            function_id: f.function_id,
            function_hash: hex::encode(&f.function_hash),
            kind: function_kind(f.kind),
            description: f.description,
            price_per_invocation_umhr: match price {
                Some(Price::PerInvocationUmhr(umhr)) => Some(number(umhr)),
                _ => None,
            },
            price_per_million_fuel_umhr: match price {
                Some(Price::PerMillionFuelUmhr(umhr)) => Some(number(umhr)),
                _ => None,
            },
            max_concurrency: f.max_concurrency,
            max_input_bytes: f.max_input_bytes,
            in_flight: f.in_flight,
            queued: f.queued,
            module_id: (!f.module_id.is_empty()).then(|| hex::encode(&f.module_id)),
            available_since_unix_ms: number(f.available_since_unix_ms),
        }
    }
}

/// The node's balance, μMHR.
#[napi(object)]
pub struct Balance {
    pub node_id: String,
    pub genesis_umhr: f64,
    pub settled_umhr: f64,
    pub escrowed_umhr: f64,
    pub free_umhr: f64,
    pub in_channels_umhr: f64,
    pub committed_umhr: f64,
}

impl From<pb::GetBalanceResponse> for Balance {
    fn from(b: pb::GetBalanceResponse) -> Self {
        Balance {
            node_id: hex::encode(&b.node_id),
            genesis_umhr: number(b.genesis_umhr),
            settled_umhr: b.settled_umhr as f64,
            escrowed_umhr: b.escrowed_umhr as f64,
            free_umhr: b.free_umhr as f64,
            in_channels_umhr: number(b.in_channels_umhr),
            committed_umhr: number(b.committed_umhr),
        }
    }
}

/// A payment channel with a peer.
#[napi(object)]
pub struct PaymentChannel {
    pub channel_id: String,
    pub peer: String,
    /// `CHANNEL_ROLE_OPENER` or `CHANNEL_ROLE_ACCEPTOR`.
    pub role: String,
    pub phase: String,
    pub seq: f64,
    pub balance_umhr: f64,
    pub peer_balance_umhr: f64,
    pub deposit_umhr: f64,
    pub peer_deposit_umhr: f64,
    pub paid_umhr: f64,
    pub received_umhr: f64,
    /// Lost to relay lotteries.
    pub burned_umhr: f64,
    pub lottery_period: f64,
    pub win_ppm: u32,
    pub peer_win_ppm: u32,
    /// What the peer owes this node and has not yet paid.
    pub owed_umhr: f64,
    pub proposal_outstanding: bool,
    /// The round a unilateral close's dispute window ends, while disputed.
    pub dispute_closes_at_round: Option<f64>,
    pub tickets_won: f64,
    pub tickets_paid: f64,
    /// The last state recorded in a settlement.
    pub recorded_seq: Option<f64>,
    pub peer_trusted: bool,
}

impl From<pb::Channel> for PaymentChannel {
    fn from(c: pb::Channel) -> Self {
        PaymentChannel {
            channel_id: hex::encode(&c.channel_id),
            peer: hex::encode(&c.peer),
            role: enum_name(pb::ChannelRole::try_from(c.role).map(|r| r.as_str_name())),
            phase: enum_name(pb::ChannelPhase::try_from(c.phase).map(|p| p.as_str_name())),
            seq: number(c.seq),
            balance_umhr: number(c.balance_umhr),
            peer_balance_umhr: number(c.peer_balance_umhr),
            deposit_umhr: number(c.deposit_umhr),
            peer_deposit_umhr: number(c.peer_deposit_umhr),
            paid_umhr: number(c.paid_umhr),
            received_umhr: number(c.received_umhr),
            burned_umhr: number(c.burned_umhr),
            lottery_period: number(c.lottery_period),
            win_ppm: c.win_ppm,
            peer_win_ppm: c.peer_win_ppm,
            owed_umhr: number(c.owed_umhr),
            proposal_outstanding: c.proposal_outstanding,
            dispute_closes_at_round: c.dispute_closes_at_round.map(number),
            tickets_won: number(c.tickets_won),
            tickets_paid: number(c.tickets_paid),
            recorded_seq: c.recorded_seq.map(number),
            peer_trusted: c.peer_trusted,
        }
    }
}

/// A price in one of the market's cost structures, μMHR; exactly one field is set.
#[napi(object)]
pub struct Cost {
    /// Per byte carried or stored.
    pub per_byte_umhr: Option<f64>,
    /// Per call.
    pub per_call_umhr: Option<f64>,
    /// With `perCallUmhr`: the largest input the price covers (0: any).
    pub max_input_bytes: Option<u32>,
    /// Per epoch of storage or relay.
    pub per_epoch_umhr: Option<f64>,
    /// Per million fuel (WASM).
    pub per_million_umhr: Option<f64>,
    /// With `perMillionUmhr`: the most fuel one call may burn.
    pub max_cycles: Option<f64>,
}

pub(crate) fn cost_of(cost: Option<pb::CostStructure>) -> Option<Cost> {
    use pb::cost_structure::Kind;
    let mut out = Cost {
        per_byte_umhr: None,
        per_call_umhr: None,
        max_input_bytes: None,
        per_epoch_umhr: None,
        per_million_umhr: None,
        max_cycles: None,
    };
    match cost?.kind? {
        Kind::PerByte(p) => out.per_byte_umhr = Some(number(p.per_byte_umhr)),
        Kind::PerInvocation(p) => {
            out.per_call_umhr = Some(number(p.per_call_umhr));
            out.max_input_bytes = Some(p.max_input_bytes);
        }
        Kind::PerDuration(p) => out.per_epoch_umhr = Some(number(p.per_epoch_umhr)),
        Kind::PerCycle(p) => {
            out.per_million_umhr = Some(number(p.per_million_umhr));
            out.max_cycles = Some(number(p.max_cycles));
        }
    }
    Some(out)
}

/// A `Cost` as the proto's structure; exactly one price must be set.
pub(crate) fn cost_structure(cost: &Cost) -> crate::failure::Result<pb::CostStructure> {
    use pb::cost_structure::Kind;
    let set = [
        cost.per_byte_umhr,
        cost.per_call_umhr,
        cost.per_epoch_umhr,
        cost.per_million_umhr,
    ]
    .iter()
    .filter(|p| p.is_some())
    .count();
    if set != 1 {
        return Err(crate::failure::invalid(
            "a cost sets exactly one of perByteUmhr, perCallUmhr, perEpochUmhr, perMillionUmhr",
        ));
    }
    let kind = if let Some(p) = cost.per_byte_umhr {
        Kind::PerByte(pb::PerByte {
            per_byte_umhr: whole(p, "perByteUmhr")?,
        })
    } else if let Some(p) = cost.per_call_umhr {
        Kind::PerInvocation(pb::PerInvocation {
            per_call_umhr: whole(p, "perCallUmhr")?,
            max_input_bytes: cost.max_input_bytes.unwrap_or(0),
        })
    } else if let Some(p) = cost.per_epoch_umhr {
        Kind::PerDuration(pb::PerDuration {
            per_epoch_umhr: whole(p, "perEpochUmhr")?,
        })
    } else {
        Kind::PerCycle(pb::PerCycle {
            per_million_umhr: whole(cost.per_million_umhr.unwrap_or(0.0), "perMillionUmhr")?,
            max_cycles: whole(cost.max_cycles.unwrap_or(0.0), "maxCycles")?,
        })
    };
    Ok(pb::CostStructure { kind: Some(kind) })
}

/// A provider found by discovery.
#[napi(object)]
pub struct ProviderOffer {
    pub node_id: String,
    pub unit_price_umhr: Option<f64>,
    /// Its price in its own cost structure.
    pub cost: Option<Cost>,
    pub hops: u32,
    pub ring: u32,
    /// What reaching it costs, μMHR.
    pub path_cost_umhr: f64,
    pub reputation: u32,
    /// Its load in percent, when it advertises one.
    pub load: Option<u32>,
    pub score_ppm: u32,
    /// The node that answered for it, hex (empty when it answered itself).
    pub via: String,
}

impl From<pb::ProviderOffer> for ProviderOffer {
    fn from(o: pb::ProviderOffer) -> Self {
        ProviderOffer {
            node_id: hex::encode(&o.node_id),
            unit_price_umhr: o.unit_price_umhr.map(number),
            cost: cost_of(o.cost),
            hops: o.hops,
            ring: o.ring,
            path_cost_umhr: number(o.path_cost_umhr),
            reputation: o.reputation,
            load: o.load,
            score_ppm: o.score_ppm,
            via: hex::encode(&o.via),
        }
    }
}

/// What an agreement is for; exactly one of the kinds is set.
#[napi(object)]
pub struct AgreementCapability {
    /// Calls of the function with this hash (hex).
    pub function_hash: Option<String>,
    /// Calls of the functions of this WASM module (id, hex).
    pub wasm_module: Option<String>,
    /// Storage of this many bytes.
    pub storage_bytes: Option<f64>,
    pub relay: Option<bool>,
    pub proxy: Option<bool>,
    /// The function's name, when it is a function.
    pub function_name: String,
}

fn capability_of(capability: Option<pb::AgreementCapability>) -> Option<AgreementCapability> {
    use pb::agreement_capability::Kind;
    let capability = capability?;
    let mut out = AgreementCapability {
        function_hash: None,
        wasm_module: None,
        storage_bytes: None,
        relay: None,
        proxy: None,
        function_name: capability.function_name,
    };
    match capability.kind {
        Some(Kind::FunctionHash(h)) => out.function_hash = Some(hex::encode(&h)),
        Some(Kind::WasmModule(m)) => out.wasm_module = Some(hex::encode(&m)),
        Some(Kind::StorageBytes(b)) => out.storage_bytes = Some(number(b)),
        Some(Kind::Relay(r)) => out.relay = Some(r),
        Some(Kind::Proxy(p)) => out.proxy = Some(p),
        None => {}
    }
    Some(out)
}

/// An agreement between this node and a counterparty.
#[napi(object)]
pub struct Agreement {
    pub agreement_id: String,
    pub request_id: String,
    /// `AGREEMENT_ROLE_CONSUMER` or `AGREEMENT_ROLE_PROVIDER`.
    pub role: String,
    pub state: String,
    /// Why it is in this state (a refusal's reason, …).
    pub note: String,
    pub counterparty: String,
    pub capability: Option<AgreementCapability>,
    /// The most the consumer would pay.
    pub cost_cap: Option<Cost>,
    /// The price agreed.
    pub cost: Option<Cost>,
    pub duration_seconds: u32,
    /// The payment channel it is paid through, hex.
    pub channel_id: String,
    /// `PROOF_METHOD_*`.
    pub proof: String,
    pub proposed_at_unix_ms: f64,
    pub offered_at_unix_ms: f64,
    pub activated_at_unix_ms: f64,
    pub ends_at_unix_ms: f64,
    pub updated_at_unix_ms: f64,
    pub charged_units: f64,
    pub charged_umhr: f64,
    /// The agreement this one serves, when a provider subcontracted (hex; empty otherwise).
    pub upstream_agreement_id: String,
    pub linked_request_id: String,
    pub heartbeat_misses: u32,
}

impl From<pb::Agreement> for Agreement {
    fn from(a: pb::Agreement) -> Self {
        Agreement {
            agreement_id: hex::encode(&a.agreement_id),
            request_id: hex::encode(&a.request_id),
            role: enum_name(pb::AgreementRole::try_from(a.role).map(|r| r.as_str_name())),
            state: enum_name(pb::AgreementState::try_from(a.state).map(|s| s.as_str_name())),
            note: a.note,
            counterparty: hex::encode(&a.counterparty),
            capability: capability_of(a.capability),
            cost_cap: cost_of(a.cost_cap),
            cost: cost_of(a.cost),
            duration_seconds: a.duration_seconds,
            channel_id: hex::encode(&a.channel_id),
            proof: enum_name(pb::ProofMethod::try_from(a.proof).map(|p| p.as_str_name())),
            proposed_at_unix_ms: number(a.proposed_at_unix_ms),
            offered_at_unix_ms: number(a.offered_at_unix_ms),
            activated_at_unix_ms: number(a.activated_at_unix_ms),
            ends_at_unix_ms: number(a.ends_at_unix_ms),
            updated_at_unix_ms: number(a.updated_at_unix_ms),
            charged_units: number(a.charged_units),
            charged_umhr: number(a.charged_umhr),
            upstream_agreement_id: hex::encode(&a.upstream_agreement_id),
            linked_request_id: hex::encode(&a.linked_request_id),
            heartbeat_misses: a.heartbeat_misses,
        }
    }
}
