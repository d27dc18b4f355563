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
    pub started_at_unix_ms: f64,
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
            started_at_unix_ms: number(info.started_at_unix_ms),
        }
    }
}

/// One event of the node's event stream.
#[napi(object)]
pub struct NodeEvent {
    pub sequence: f64,
    pub at_unix_ms: f64,
    /// The event's kind in snake_case (`function_registered`, `object_stored`, …).
    pub kind: String,
    /// The event's fields, as the daemon sent them (debug text).
    pub detail: String,
}

impl From<pb::NodeEvent> for NodeEvent {
    fn from(event: pb::NodeEvent) -> Self {
        let (kind, detail) = match &event.kind {
            Some(kind) => {
                let text = format!("{kind:?}");
                let name = text
                    .split(['(', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                (snake_case(&name), text)
            }
            None => ("unknown".to_string(), String::new()),
        };
        NodeEvent {
            sequence: number(event.sequence),
            at_unix_ms: number(event.at_unix_ms),
            kind,
            detail,
        }
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
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
    pub delivered: bool,
    pub rtt_ms: Option<f64>,
    pub packet_hash: Option<String>,
}

/// Who ran a call and what it cost.
#[napi(object)]
pub struct Metering {
    pub provider_node_id: String,
    pub fuel_used: f64,
    pub duration_us: f64,
}

/// How a call on the mesh went (`RemoteCall`).
#[napi(object)]
pub struct RemoteCall {
    /// The providers asked (node ids, hex).
    pub providers: Vec<String>,
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

pub(crate) fn metering(m: Option<pb::InvocationMetering>) -> Option<Metering> {
    m.map(|m| Metering {
        provider_node_id: hex::encode(&m.provider_node_id),
        fuel_used: number(m.fuel_used),
        duration_us: number(m.duration_us),
    })
}

pub(crate) fn remote(r: Option<pb::RemoteCall>) -> Option<RemoteCall> {
    r.map(|r| RemoteCall {
        providers: r
            .providers
            .iter()
            .map(|p| hex::encode(&p.node_id))
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
    pub description: String,
    pub max_concurrency: u32,
    pub in_flight: u32,
    pub queued: u32,
}

impl From<pb::FunctionInfo> for FunctionInfo {
    fn from(f: pb::FunctionInfo) -> Self {
        FunctionInfo {
            function_id: f.function_id,
            description: f.description,
            max_concurrency: f.max_concurrency,
            in_flight: f.in_flight,
            queued: f.queued,
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
    pub phase: String,
    pub seq: f64,
    pub balance_umhr: f64,
    pub peer_balance_umhr: f64,
    pub paid_umhr: f64,
    pub received_umhr: f64,
}

impl From<pb::Channel> for PaymentChannel {
    fn from(c: pb::Channel) -> Self {
        PaymentChannel {
            channel_id: hex::encode(&c.channel_id),
            peer: hex::encode(&c.peer),
            phase: pb::ChannelPhase::try_from(c.phase)
                .map(|p| p.as_str_name().to_string())
                .unwrap_or_default(),
            seq: number(c.seq),
            balance_umhr: number(c.balance_umhr),
            peer_balance_umhr: number(c.peer_balance_umhr),
            paid_umhr: number(c.paid_umhr),
            received_umhr: number(c.received_umhr),
        }
    }
}

/// A provider found by discovery.
#[napi(object)]
pub struct ProviderOffer {
    pub node_id: String,
    pub unit_price_umhr: Option<f64>,
    pub hops: u32,
    pub ring: u32,
    pub reputation: u32,
    pub score_ppm: u32,
}

/// An agreement between this node and a counterparty.
#[napi(object)]
pub struct Agreement {
    pub agreement_id: String,
    pub request_id: String,
    pub role: String,
    pub state: String,
    pub counterparty: String,
    pub charged_umhr: f64,
    pub ends_at_unix_ms: f64,
}

impl From<pb::Agreement> for Agreement {
    fn from(a: pb::Agreement) -> Self {
        Agreement {
            agreement_id: hex::encode(&a.agreement_id),
            request_id: hex::encode(&a.request_id),
            role: pb::AgreementRole::try_from(a.role)
                .map(|r| r.as_str_name().to_string())
                .unwrap_or_default(),
            state: pb::AgreementState::try_from(a.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_default(),
            counterparty: hex::encode(&a.counterparty),
            charged_umhr: number(a.charged_umhr),
            ends_at_unix_ms: number(a.ends_at_unix_ms),
        }
    }
}
