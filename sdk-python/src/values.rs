//! What calls return: immutable Python objects built from the daemon's answers. Ids (node,
//! object, destination, link, module) are lowercase hex strings, as the `mehr` CLI prints and
//! accepts them; payloads are `bytes`.

use mehr_sdk::{
    proto as pb,
    storage::{
        ChallengeResult as SdkChallengeResult, ObjectInfo as SdkObjectInfo,
        ObjectPage as SdkObjectPage, Placement as SdkPlacement, PutOutcome,
    },
};
use pyo3::{prelude::*, types::PyBytes};

use crate::bridge::ToPython;

fn bytes(py: Python<'_>, data: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, data).unbind()
}

/// `FUNCTION_KIND_WASM` → `wasm`: the enum name without its prefix, in lower case.
fn enum_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn optional_hex(data: &[u8]) -> Option<String> {
    (!data.is_empty()).then(|| hex::encode(data))
}

/// The node: identity, version, participation level and API endpoints.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct NodeInfo {
    /// The node id: the identity hash, 16 bytes in hex.
    node_id: String,
    /// The X25519 public key (32 bytes).
    x25519_public_key: Py<PyBytes>,
    /// The Ed25519 public key (32 bytes).
    ed25519_public_key: Py<PyBytes>,
    /// The daemon's version.
    version: String,
    /// `l0_transport`, `l1_relay` or `l2_full`.
    participation_level: String,
    /// Seconds since the daemon started.
    uptime_seconds: u64,
    /// The daemon's data directory.
    data_dir: String,
    /// Where the API is served.
    api_endpoints: Vec<Py<ApiEndpoint>>,
    /// When the daemon started, milliseconds since the Unix epoch.
    started_at_unix_ms: u64,
}

#[pymethods]
impl NodeInfo {
    fn __repr__(&self) -> String {
        format!(
            "NodeInfo(node_id='{}', version='{}', participation_level='{}')",
            self.node_id, self.version, self.participation_level
        )
    }
}

/// One place where the daemon serves its API.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct ApiEndpoint {
    /// `unix` or `tcp`.
    kind: String,
    /// A socket path or `host:port`.
    address: String,
    /// Whether the endpoint speaks TLS.
    tls: bool,
    /// Whether calls need the API token.
    requires_token: bool,
}

#[pymethods]
impl ApiEndpoint {
    fn __repr__(&self) -> String {
        format!(
            "ApiEndpoint(kind='{}', address='{}', tls={}, requires_token={})",
            self.kind,
            self.address,
            py_bool(self.tls),
            py_bool(self.requires_token)
        )
    }
}

fn py_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A string as Python's `repr` writes it (single quotes).
pub(crate) fn py_str(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An optional string as Python's `repr` writes it.
pub(crate) fn py_opt_str(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_string(), py_str)
}

/// A list of strings as Python's `repr` writes it.
pub(crate) fn py_str_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| py_str(v)).collect();
    format!("[{}]", items.join(", "))
}

impl ToPython for pb::GetInfoResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let api_endpoints = self
            .api_endpoints
            .iter()
            .map(|endpoint| {
                Py::new(
                    py,
                    ApiEndpoint {
                        kind: enum_word(endpoint.kind().as_str_name(), "API_ENDPOINT_KIND_"),
                        address: endpoint.address.clone(),
                        tls: endpoint.tls,
                        requires_token: endpoint.requires_token,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        let info = NodeInfo {
            node_id: hex::encode(&self.identity_hash),
            x25519_public_key: bytes(py, &self.x25519_public_key),
            ed25519_public_key: bytes(py, &self.ed25519_public_key),
            version: self.version.clone(),
            participation_level: enum_word(
                self.participation_level().as_str_name(),
                "PARTICIPATION_LEVEL_",
            ),
            uptime_seconds: self.uptime_seconds,
            data_dir: self.data_dir.clone(),
            api_endpoints,
            started_at_unix_ms: self.started_at_unix_ms,
        };
        Ok(Py::new(py, info)?.into_any())
    }
}

/// A function the node offers.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct FunctionInfo {
    /// The id to invoke it by.
    function_id: String,
    /// Blake3 of the id, in hex: what the marketplace advertises.
    function_hash: String,
    /// `wasm` or `served`.
    kind: String,
    /// What it does, as its server described it.
    description: String,
    /// Flat price per call in μMHR (served functions), else None.
    price_per_invocation_umhr: Option<u64>,
    /// Price per million fuel in μMHR (WASM functions), else None.
    price_per_million_fuel_umhr: Option<u64>,
    /// Calls that may run at once.
    max_concurrency: u32,
    /// Largest input accepted, in bytes.
    max_input_bytes: u32,
    /// Calls running now.
    in_flight: u32,
    /// Calls waiting for a slot now.
    queued: u32,
    /// The WASM module's id in hex; None for served functions.
    module_id: Option<String>,
    /// When it became available, milliseconds since the Unix epoch.
    available_since_unix_ms: u64,
}

#[pymethods]
impl FunctionInfo {
    fn __repr__(&self) -> String {
        format!(
            "FunctionInfo(function_id='{}', kind='{}', max_concurrency={}, in_flight={}, queued={})",
            self.function_id, self.kind, self.max_concurrency, self.in_flight, self.queued
        )
    }
}

impl ToPython for pb::FunctionInfo {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        use pb::function_price::Kind;
        let price = self.price.and_then(|price| price.kind);
        let info = FunctionInfo {
            kind: enum_word(self.kind().as_str_name(), "FUNCTION_KIND_"),
            function_hash: hex::encode(&self.function_hash),
            price_per_invocation_umhr: match price {
                Some(Kind::PerInvocationUmhr(umhr)) => Some(umhr),
                _ => None,
            },
            price_per_million_fuel_umhr: match price {
                Some(Kind::PerMillionFuelUmhr(umhr)) => Some(umhr),
                _ => None,
            },
            module_id: optional_hex(&self.module_id),
            function_id: self.function_id,
            description: self.description,
            max_concurrency: self.max_concurrency,
            max_input_bytes: self.max_input_bytes,
            in_flight: self.in_flight,
            queued: self.queued,
            available_since_unix_ms: self.available_since_unix_ms,
        };
        Ok(Py::new(py, info)?.into_any())
    }
}

/// How a call ran: who ran it and what it used.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Metering {
    /// `wasm` or `served`.
    kind: String,
    /// The node that ran the call, in hex.
    provider_node_id: String,
    /// Fuel burnt (WASM only; 0 for served functions).
    fuel_used: u64,
    /// Time from the call's arrival to its result, in microseconds.
    duration_us: u64,
}

#[pymethods]
impl Metering {
    fn __repr__(&self) -> String {
        format!(
            "Metering(kind='{}', provider_node_id='{}', fuel_used={}, duration_us={})",
            self.kind, self.provider_node_id, self.fuel_used, self.duration_us
        )
    }
}

impl ToPython for pb::InvocationMetering {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, metering(&self))?.into_any())
    }
}

fn metering(metering: &pb::InvocationMetering) -> Metering {
    Metering {
        kind: enum_word(metering.kind().as_str_name(), "FUNCTION_KIND_"),
        provider_node_id: hex::encode(&metering.provider_node_id),
        fuel_used: metering.fuel_used,
        duration_us: metering.duration_us,
    }
}

/// One provider's part in a call that ran on the mesh.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct ProviderResult {
    /// The provider's node id, in hex.
    node_id: String,
    /// The agreement it ran under, in hex (`None` if none could be formed).
    agreement_id: Option<String>,
    /// Blake3 of its output, in hex (`None` without one).
    output_hash: Option<String>,
    /// `agreed`, `dissented`, `missing` or `unsettled`.
    outcome: String,
    /// Why it failed, in words (`None` if it did not).
    error: Option<String>,
}

#[pymethods]
impl ProviderResult {
    fn __repr__(&self) -> String {
        format!(
            "ProviderResult(node_id='{}', outcome='{}')",
            self.node_id, self.outcome
        )
    }
}

/// How a call ran on the mesh: the providers asked and what this node was charged.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct RemoteCall {
    /// Every provider asked, in the order asked.
    providers: Vec<Py<ProviderResult>>,
    /// Blake3 of the accepted output, in hex.
    output_hash: String,
    /// Whether an optimistic call was audited by a second provider.
    audited: bool,
    /// Whether a divergence was settled by a third provider.
    escalated: bool,
    /// What this node was charged for the accepted results, μMHR.
    charged_umhr: u64,
}

#[pymethods]
impl RemoteCall {
    fn __repr__(&self) -> String {
        format!(
            "RemoteCall(providers={}, charged_umhr={})",
            self.providers.len(),
            self.charged_umhr
        )
    }
}

fn remote_call(py: Python<'_>, remote: &pb::RemoteCall) -> PyResult<RemoteCall> {
    let providers = remote
        .providers
        .iter()
        .map(|p| {
            Py::new(
                py,
                ProviderResult {
                    node_id: hex::encode(&p.node_id),
                    agreement_id: optional_hex(&p.agreement_id),
                    output_hash: optional_hex(&p.output_hash),
                    outcome: enum_word(p.outcome().as_str_name(), "PROVIDER_OUTCOME_"),
                    error: (!p.error.is_empty()).then(|| p.error.clone()),
                },
            )
        })
        .collect::<PyResult<_>>()?;
    Ok(RemoteCall {
        providers,
        output_hash: hex::encode(&remote.output_hash),
        audited: remote.audited,
        escalated: remote.escalated,
        charged_umhr: remote.charged_umhr,
    })
}

/// A function's output and how the call ran. `bytes(result)` is the output.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct InvokeResult {
    /// The output bytes.
    output: Py<PyBytes>,
    /// Who ran the call and what it used.
    metering: Option<Py<Metering>>,
    /// For a call that ran on the mesh: the providers and the charge (`None` for local calls).
    remote: Option<Py<RemoteCall>>,
}

#[pymethods]
impl InvokeResult {
    fn __bytes__(&self, py: Python<'_>) -> Py<PyBytes> {
        self.output.clone_ref(py)
    }

    /// The output decoded as UTF-8.
    fn text(&self, py: Python<'_>) -> PyResult<String> {
        self.output
            .bind(py)
            .call_method1("decode", ("utf-8",))?
            .extract()
    }

    /// The output parsed as JSON.
    fn json(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py
            .import("json")?
            .call_method1("loads", (self.output.bind(py),))?
            .unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let output = self.output.bind(py).repr()?;
        let shown: String = output.to_string().chars().take(80).collect();
        Ok(format!("InvokeResult(output={shown})"))
    }
}

impl ToPython for pb::InvokeResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let result = InvokeResult {
            output: bytes(py, &self.output),
            metering: self
                .metering
                .as_ref()
                .map(|m| Py::new(py, metering(m)))
                .transpose()?,
            remote: self
                .remote
                .as_ref()
                .map(|r| Py::new(py, remote_call(py, r)?))
                .transpose()?,
        };
        Ok(Py::new(py, result)?.into_any())
    }
}

/// A deployed WebAssembly module.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct DeployedModule {
    /// The module id (Blake3 of its bytes), in hex.
    module_id: String,
    /// Its name, if it was deployed with one.
    name: Option<String>,
    /// The functions it offers.
    function_ids: Vec<String>,
    /// False when these bytes were already deployed.
    created: bool,
}

#[pymethods]
impl DeployedModule {
    fn __repr__(&self) -> String {
        format!(
            "DeployedModule(module_id='{}', function_ids={})",
            self.module_id,
            py_str_list(&self.function_ids)
        )
    }
}

impl ToPython for pb::DeployModuleResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let module = DeployedModule {
            module_id: hex::encode(&self.module_id),
            name: Some(self.name).filter(|name| !name.is_empty()),
            function_ids: self.function_ids,
            created: self.created,
        };
        Ok(Py::new(py, module)?.into_any())
    }
}

impl ToPython for pb::DeleteModuleResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.function_ids.into_pyobject(py)?.into_any().unbind())
    }
}

/// A stored object.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct ObjectInfo {
    /// The object id (the root of its Merkle commitment), in hex.
    id: String,
    /// Size in bytes.
    length: u64,
    /// Number of 4 KiB chunks.
    chunk_count: u64,
    /// When the node stored it, milliseconds since the Unix epoch.
    created_at_unix_ms: u64,
    /// The label given when it was stored.
    name: Option<String>,
}

#[pymethods]
impl ObjectInfo {
    fn __repr__(&self) -> String {
        format!(
            "ObjectInfo(id='{}', length={}, name={})",
            self.id,
            self.length,
            py_opt_str(self.name.as_deref())
        )
    }
}

fn object_info(info: SdkObjectInfo) -> ObjectInfo {
    ObjectInfo {
        id: info.id.to_string(),
        length: info.length,
        chunk_count: info.chunk_count,
        created_at_unix_ms: info.created_at_unix_ms,
        name: info.name,
    }
}

impl ToPython for SdkObjectInfo {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, object_info(self))?.into_any())
    }
}

/// The result of a put.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct PutResult {
    /// The stored object.
    object: Py<ObjectInfo>,
    /// True when the node already had these bytes (nothing new was stored).
    already_stored: bool,
}

#[pymethods]
impl PutResult {
    fn __repr__(&self) -> String {
        format!(
            "PutResult(object={}, already_stored={})",
            self.object.get().__repr__(),
            py_bool(self.already_stored)
        )
    }
}

impl ToPython for PutOutcome {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let result = PutResult {
            object: Py::new(py, object_info(self.object))?,
            already_stored: self.already_stored,
        };
        Ok(Py::new(py, result)?.into_any())
    }
}

/// One page of the object list.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct ObjectPage {
    /// The objects on this page.
    objects: Vec<Py<ObjectInfo>>,
    /// Pass as `page_token` for the next page; None on the last page.
    next_page_token: Option<String>,
}

#[pymethods]
impl ObjectPage {
    fn __repr__(&self) -> String {
        format!(
            "ObjectPage(objects=<{} objects>, next_page_token={})",
            self.objects.len(),
            py_opt_str(self.next_page_token.as_deref())
        )
    }
}

impl ToPython for SdkObjectPage {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let page = ObjectPage {
            objects: self
                .objects
                .into_iter()
                .map(|info| Py::new(py, object_info(info)))
                .collect::<PyResult<_>>()?,
            next_page_token: self.next_page_token,
        };
        Ok(Py::new(py, page)?.into_any())
    }
}

/// The outcome of a send.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct SendResult {
    /// `packet` or `link`.
    method: String,
    /// True when the receiver proved delivery in time.
    delivered: bool,
    /// Milliseconds from sending to the proof.
    rtt_ms: Option<u64>,
    /// The packet's hash in hex (packet sends).
    packet_hash: Option<String>,
    /// The next hop it left through, in hex (when a path was known).
    next_hop: Option<String>,
    /// Hops to the destination along that way.
    hops: Option<u32>,
    /// That way's relay fees from here, μMHR per byte (Mehr nodes' destinations only).
    cost_per_byte: Option<f64>,
}

#[pymethods]
impl SendResult {
    fn __repr__(&self) -> String {
        format!(
            "SendResult(method='{}', delivered={}, rtt_ms={})",
            self.method,
            py_bool(self.delivered),
            self.rtt_ms
                .map_or_else(|| "None".to_string(), |ms| ms.to_string())
        )
    }
}

impl ToPython for pb::SendResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let result = SendResult {
            method: enum_word(self.method().as_str_name(), "SEND_METHOD_"),
            delivered: self.delivered,
            rtt_ms: self.rtt_ms,
            packet_hash: self.packet_hash.as_deref().map(hex::encode),
            next_hop: self.route.as_ref().map(|r| hex::encode(&r.next_hop)),
            hops: self.route.as_ref().map(|r| r.hops),
            cost_per_byte: self
                .route
                .as_ref()
                .and_then(|r| r.cost.as_ref())
                .map(|c| c.cost_per_byte),
        };
        Ok(Py::new(py, result)?.into_any())
    }
}

/// A message that arrived for a listened destination.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Message {
    /// The bytes.
    payload: Py<PyBytes>,
    /// For messages that came over a link: its id in hex, for `reply`.
    link_id: Option<String>,
    /// For messages that came in a packet: the interface it arrived on.
    interface_id: Option<u32>,
}

#[pymethods]
impl Message {
    fn __bytes__(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let payload = self.payload.bind(py).repr()?.to_string();
        let shown: String = payload.chars().take(80).collect();
        Ok(format!(
            "Message(payload={shown}, link_id={})",
            py_opt_str(self.link_id.as_deref())
        ))
    }
}

impl ToPython for pb::InboundMessage {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let message = Message {
            payload: bytes(py, &self.payload),
            link_id: self.link_id.as_deref().map(hex::encode),
            interface_id: self.interface_id,
        };
        Ok(Py::new(py, message)?.into_any())
    }
}

impl ToPython for prost::bytes::Bytes {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(bytes(py, &self).into_any())
    }
}

impl ToPython for String {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.into_pyobject(py)?.into_any().unbind())
    }
}

/// A provider found by `discover`.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Offer {
    /// Its node id, in hex.
    node_id: String,
    /// Its price per unit (call, byte, byte-day, …), μMHR; `None` for unpriced kinds.
    unit_price_umhr: Option<u64>,
    /// The discovery ring it was found in (1 = neighbours' summaries, 3 = flood).
    ring: u32,
    /// Hops away.
    hops: u32,
    /// What relaying a unit to it costs on the way, μMHR.
    path_cost_umhr: u64,
    /// Its reputation as this node knows it (0–10000).
    reputation: u32,
    /// Its advertised load (0–255), when it says.
    load: Option<u32>,
}

#[pymethods]
impl Offer {
    fn __repr__(&self) -> String {
        format!(
            "Offer(node_id='{}', unit_price_umhr={:?}, hops={})",
            self.node_id, self.unit_price_umhr, self.hops
        )
    }
}

impl ToPython for pb::ProviderOffer {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let offer = Offer {
            node_id: hex::encode(&self.node_id),
            unit_price_umhr: self.unit_price_umhr,
            ring: self.ring,
            hops: self.hops,
            path_cost_umhr: self.path_cost_umhr,
            reputation: self.reputation,
            load: self.load,
        };
        Ok(Py::new(py, offer)?.into_any())
    }
}

/// This node's money, μMHR.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Balance {
    /// Its genesis allocation.
    genesis_umhr: u64,
    /// Its balance in the ledger: the genesis snapshot plus every settled channel record.
    settled_umhr: i64,
    /// Of that, what the ledger holds in escrow for open channels.
    escrowed_umhr: i64,
    /// What it may still lock into new channels (negative: overdrawn).
    free_umhr: i64,
    /// Its balances in its open channels, per their latest co-signed states.
    in_channels_umhr: u64,
    /// Of that, committed to payments not yet co-signed.
    committed_umhr: u64,
}

#[pymethods]
impl Balance {
    fn __repr__(&self) -> String {
        format!(
            "Balance(free_umhr={}, in_channels_umhr={})",
            self.free_umhr, self.in_channels_umhr
        )
    }
}

impl ToPython for pb::GetBalanceResponse {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let balance = Balance {
            genesis_umhr: self.genesis_umhr,
            settled_umhr: self.settled_umhr,
            escrowed_umhr: self.escrowed_umhr,
            free_umhr: self.free_umhr,
            in_channels_umhr: self.in_channels_umhr,
            committed_umhr: self.committed_umhr,
        };
        Ok(Py::new(py, balance)?.into_any())
    }
}

/// A payment channel with another Mehr node, at its latest co-signed state (μMHR).
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Channel {
    /// The channel id, in hex.
    channel_id: String,
    /// The peer's node id, in hex.
    peer: String,
    /// `opener` or `acceptor`.
    role: String,
    /// `open`, `disputing` or `closed`.
    phase: String,
    /// The state's sequence number (grows with every payment).
    seq: u64,
    /// This node's balance in the channel.
    balance_umhr: u64,
    /// The peer's balance in the channel.
    peer_balance_umhr: u64,
    /// What this node deposited.
    deposit_umhr: u64,
    /// What this node paid through it.
    paid_umhr: u64,
    /// What this node received through it (before the 2 % burn).
    received_umhr: u64,
    /// Payments taken on but not yet co-signed.
    owed_umhr: u64,
}

#[pymethods]
impl Channel {
    fn __repr__(&self) -> String {
        format!(
            "Channel(peer='{}', phase='{}', seq={}, balance_umhr={})",
            self.peer, self.phase, self.seq, self.balance_umhr
        )
    }
}

impl ToPython for pb::Channel {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let channel = Channel {
            channel_id: hex::encode(&self.channel_id),
            peer: hex::encode(&self.peer),
            role: enum_word(self.role().as_str_name(), "CHANNEL_ROLE_"),
            phase: enum_word(self.phase().as_str_name(), "CHANNEL_PHASE_"),
            seq: self.seq,
            balance_umhr: self.balance_umhr,
            peer_balance_umhr: self.peer_balance_umhr,
            deposit_umhr: self.deposit_umhr,
            paid_umhr: self.paid_umhr,
            received_umhr: self.received_umhr,
            owed_umhr: self.owed_umhr,
        };
        Ok(Py::new(py, channel)?.into_any())
    }
}

/// One shard of a placed object.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Shard {
    /// Its index: data shards first, then parity.
    index: u8,
    /// Its root (the shard's own object id), in hex.
    root: String,
    /// Its length in bytes.
    length: u64,
    /// The provider holding it, in hex.
    provider: String,
    /// `healthy`, `suspect` or `lost`.
    health: String,
    /// Challenges it passed and failed.
    challenges_passed: u64,
    challenges_failed: u64,
    /// What its provider has earned by passed challenges and is still owed, μMHR.
    owed_umhr: u64,
    /// What has been paid to its provider through the ledger's channel, μMHR.
    paid_umhr: u64,
}

/// Where an object is placed: its erasure code and one shard per provider.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Placement {
    /// Data shards (k): any k shards rebuild the object.
    data_shards: u8,
    /// Parity shards (m).
    parity_shards: u8,
    /// When the providers may drop their shards, Unix seconds.
    expires_at_unix_s: u64,
    /// The shards.
    shards: Vec<Py<Shard>>,
    /// Providers kept for repair, in hex.
    spare_providers: Vec<String>,
}

#[pymethods]
impl Placement {
    fn __repr__(&self) -> String {
        format!(
            "Placement(data_shards={}, parity_shards={}, shards={})",
            self.data_shards,
            self.parity_shards,
            self.shards.len()
        )
    }
}

impl ToPython for SdkPlacement {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shards = self
            .shards
            .into_iter()
            .map(|s| {
                Py::new(
                    py,
                    Shard {
                        index: s.index,
                        root: s.root.to_string(),
                        length: s.length,
                        provider: hex::encode(s.provider),
                        health: s.health.to_string(),
                        challenges_passed: s.challenges_passed,
                        challenges_failed: s.challenges_failed,
                        owed_umhr: s.owed_umhr,
                        paid_umhr: s.paid_umhr,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        let placement = Placement {
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
            expires_at_unix_s: self.expires_at_unix_s,
            shards,
            spare_providers: self.spare_providers.iter().map(hex::encode).collect(),
        };
        Ok(Py::new(py, placement)?.into_any())
    }
}

/// The outcome of challenging one shard.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct ChallengeResult {
    /// The shard's index.
    index: u8,
    /// Its provider, in hex.
    provider: String,
    /// Whether the proof checked out against the shard's root.
    passed: bool,
    /// Why it failed, in words.
    detail: Option<String>,
    /// The shard's health after the challenge.
    health: String,
}

#[pymethods]
impl ChallengeResult {
    fn __repr__(&self) -> String {
        format!(
            "ChallengeResult(index={}, passed={}, health='{}')",
            self.index, self.passed, self.health
        )
    }
}

impl ToPython for SdkChallengeResult {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let result = ChallengeResult {
            index: self.index,
            provider: hex::encode(self.provider),
            passed: self.passed,
            detail: self.detail,
            health: self.health.to_string(),
        };
        Ok(Py::new(py, result)?.into_any())
    }
}

/// A Mehr node one hop away.
#[pyclass(frozen, get_all, module = "mehr")]
pub(crate) struct Neighbour {
    /// Its node id, in hex.
    node_id: String,
    /// Its `mehr.node` destination hash, in hex.
    destination: String,
    /// The interface it is reached on.
    interface_id: u32,
    /// Seconds since its last announce.
    last_heard_seconds: u64,
}

#[pymethods]
impl Neighbour {
    fn __repr__(&self) -> String {
        format!(
            "Neighbour(node_id='{}', interface_id={}, last_heard_seconds={})",
            self.node_id, self.interface_id, self.last_heard_seconds
        )
    }
}

impl ToPython for pb::Neighbour {
    fn to_python(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let neighbour = Neighbour {
            node_id: hex::encode(&self.node_id),
            destination: hex::encode(&self.destination),
            interface_id: self.interface_id,
            last_heard_seconds: self.last_heard_seconds,
        };
        Ok(Py::new(py, neighbour)?.into_any())
    }
}

/// Registers the result classes on the module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NodeInfo>()?;
    module.add_class::<ApiEndpoint>()?;
    module.add_class::<FunctionInfo>()?;
    module.add_class::<Metering>()?;
    module.add_class::<InvokeResult>()?;
    module.add_class::<RemoteCall>()?;
    module.add_class::<ProviderResult>()?;
    module.add_class::<DeployedModule>()?;
    module.add_class::<ObjectInfo>()?;
    module.add_class::<PutResult>()?;
    module.add_class::<ObjectPage>()?;
    module.add_class::<SendResult>()?;
    module.add_class::<Message>()?;
    module.add_class::<Neighbour>()?;
    module.add_class::<Offer>()?;
    module.add_class::<Balance>()?;
    module.add_class::<Channel>()?;
    module.add_class::<Placement>()?;
    module.add_class::<Shard>()?;
    module.add_class::<ChallengeResult>()?;
    Ok(())
}
