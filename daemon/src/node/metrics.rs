//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` in the OpenMetrics text format.
//!
//! Nothing here counts on the hot path. Each scrape asks every part for the counters it keeps
//! anyway (the same ones `GetStats`, `GetMarketStats`, `GetBalance` and `mehr stats` show) and
//! encodes them into a registry made for that scrape; only the API's call histogram is a
//! long-lived instrument (its layer records each call). The collector lives here, in the
//! assembly layer, because it is the one place that knows every part (docs/ARCHITECTURE.md,
//! "Layers").
//!
//! Label values come from closed sets (directions, drop reasons, states, configured interface
//! names) so that series cannot grow without bound; node ids are never labels. Names and units
//! are in docs/OPERATIONS.md, "Metrics".

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::ApiCallMetrics,
    compute::Compute,
    ledger::LedgerHandle,
    market::Market,
    storage::{ObjectStore, remote::RemoteStorage},
    transport::TransportHandle,
};

/// Reticulum's default share of an interface's bitrate for announces, in percent (what the
/// transport applies when `announce_cap` is not configured).
const DEFAULT_ANNOUNCE_CAP_PERCENT: f64 = 2.0;

/// The media type Prometheus asks for and this endpoint serves.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads: a handle to every part.
#[derive(Clone)]
pub(super) struct MetricsSources {
    pub(super) transport: TransportHandle,
    pub(super) ledger: LedgerHandle,
    pub(super) market: Option<Market>,
    pub(super) objects: ObjectStore,
    pub(super) remote: RemoteStorage,
    pub(super) compute: Compute,
    pub(super) api_calls: ApiCallMetrics,
}

/// Binds `address` and serves `/metrics` until `shutdown`.
pub(super) async fn serve(
    address: SocketAddr,
    sources: MetricsSources,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(sources));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

async fn scrape(State(sources): State<Arc<MetricsSources>>) -> Response {
    let mut metrics = Metrics::default();
    collect(&sources, &mut metrics).await;
    let mut text = String::new();
    match encode(&mut text, &metrics.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
            .into_response(),
    }
}

/// Label sets of the scrape-time metrics: `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// The registry of one scrape, with helpers that register a value read from a part.
#[derive(Default)]
struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A counter (`_total` is added by the encoder).
    fn counter(&mut self, name: &str, help: &str, unit: Option<Unit>, value: u64) {
        self.counters(name, help, unit, [(Labels::new(), value)]);
    }

    fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        values: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).inc_by(value);
        }
        self.register(name, help, unit, family);
    }

    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, value: i64) {
        self.gauges(name, help, unit, [(Labels::new(), value)]);
    }

    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        values: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).set(value);
        }
        self.register(name, help, unit, family);
    }

    fn register<L, M>(&mut self, name: &str, help: &str, unit: Option<Unit>, family: Family<L, M>)
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
        Family<L, M>: prometheus_client::metrics::TypedMetric
            + prometheus_client::encoding::EncodeMetric
            + Send
            + Sync
            + std::fmt::Debug
            + 'static,
    {
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, family),
            None => self.registry.register(name, help, family),
        }
    }
}

fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

fn clamp(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Reads every part into `m`. A part that does not answer (stopping) is left out of this
/// scrape rather than failing it.
async fn collect(sources: &MetricsSources, m: &mut Metrics) {
    m.gauges(
        "mehr_build_info",
        "Always 1; the labels say which build runs",
        None,
        [(label("version", env!("CARGO_PKG_VERSION")), 1)],
    );
    sources.api_calls.register(&mut m.registry);
    collect_transport(&sources.transport, m).await;
    collect_ledger(&sources.ledger, m).await;
    if let Some(market) = &sources.market {
        collect_market(market, m);
    }
    collect_storage(&sources.objects, &sources.remote, m);
    collect_compute(&sources.compute, m);
}

async fn collect_transport(transport: &TransportHandle, m: &mut Metrics) {
    if let Ok(interfaces) = transport.interfaces().await {
        // Connections a TCP server accepted are interfaces of their own that come and go; they
        // are counted under the server's (configured) name so the series stay put.
        let names: std::collections::HashMap<u32, String> =
            interfaces.iter().map(|i| (i.id, i.name.clone())).collect();
        let mut per_name: std::collections::BTreeMap<String, [u64; 9]> = Default::default();
        for i in &interfaces {
            let name = i
                .parent
                .and_then(|parent| names.get(&parent).cloned())
                .unwrap_or_else(|| i.name.clone());
            let sums = per_name.entry(name).or_default();
            let budget = (i.bitrate as f64 / 8.0
                * i.spec.announce_cap.unwrap_or(DEFAULT_ANNOUNCE_CAP_PERCENT)
                / 100.0) as u64;
            for (sum, value) in sums.iter_mut().zip([
                i.rx_frames,
                i.tx_frames,
                i.rx_bytes,
                i.tx_bytes,
                i.rx_malformed,
                i.tx_dropped,
                i.tx_announce_bytes,
                budget,
                i.queued_bytes,
            ]) {
                *sum += value;
            }
        }
        let per = |index: usize, direction: Option<(&'static str, &'static str)>| {
            per_name
                .iter()
                .map(move |(name, sums)| {
                    let mut labels = label("interface", name.clone());
                    if let Some((key, value)) = direction {
                        labels.push((key, value.to_string()));
                    }
                    (labels, sums[index])
                })
                .collect::<Vec<_>>()
        };
        let mut packets = per(0, Some(("direction", "rx")));
        packets.extend(per(1, Some(("direction", "tx"))));
        m.counters(
            "mehr_interface_packets",
            "Packets received (rx) and sent (tx) on each interface",
            None,
            packets,
        );
        let mut bytes = per(2, Some(("direction", "rx")));
        bytes.extend(per(3, Some(("direction", "tx"))));
        m.counters(
            "mehr_interface",
            "Packet bytes received (rx) and sent (tx) on each interface, without framing",
            Some(Unit::Bytes),
            bytes,
        );
        let mut drops = per(4, Some(("reason", "rx_malformed")));
        drops.extend(per(5, Some(("reason", "tx_dropped"))));
        m.counters(
            "mehr_interface_drops",
            "Frames dropped on an interface: malformed on the way in, or not sent (queue full, \
             link down)",
            None,
            drops,
        );
        m.counters(
            "mehr_interface_announce",
            "Announce bytes sent on each interface (part of the tx bytes)",
            Some(Unit::Bytes),
            per(6, None),
        );
        m.gauges(
            "mehr_interface_announce_budget_bytes_per_second",
            "What announces may use of each interface: its bitrate times its announce cap",
            None,
            per(7, None).into_iter().map(|(l, v)| (l, clamp(v))),
        );
        m.gauges(
            "mehr_interface_queued",
            "Bytes waiting in each interface's outbound queue",
            Some(Unit::Bytes),
            per(8, None).into_iter().map(|(l, v)| (l, clamp(v))),
        );
    }
    if let Ok(stats) = transport.stats().await {
        let c = &stats.counters;
        m.counters(
            "mehr_router_packets",
            "Packets through the router: received, transmitted, forwarded for others, \
             delivered here",
            None,
            [
                ("received", c.received),
                ("transmitted", c.transmitted),
                ("forwarded", c.forwarded),
                ("delivered", c.delivered),
            ]
            .map(|(kind, value)| (label("kind", kind), value)),
        );
        m.counters(
            "mehr_router_drops",
            "Packets the router dropped, by reason (the reasons of `mehr stats`)",
            None,
            c.drops()
                .map(|(reason, count)| (label("reason", drop_reason_name(reason)), count))
                .collect::<Vec<_>>(),
        );
        m.counter(
            "mehr_router_announces_rebroadcast",
            "Announces rebroadcast for others",
            None,
            c.announces_rebroadcast,
        );
        m.counter(
            "mehr_router_lost_path_requests",
            "Path requests sent for traffic in transport that had no path here",
            None,
            c.lost_path_requests,
        );
        m.counter(
            "mehr_transport_control_rejected",
            "Mehr control messages refused (malformed, unknown sender, bad signature)",
            None,
            stats.control_rejected,
        );
        m.counter(
            "mehr_transport_control_posts_dropped",
            "Control messages dropped because the queue to the transport was full",
            None,
            stats.control_posts_dropped,
        );
        m.counter(
            "mehr_transport_listener_drops",
            "Messages dropped because a listener read too slowly",
            None,
            stats.subscriber_drops,
        );
        m.gauge(
            "mehr_routing_paths",
            "Paths known",
            None,
            clamp(stats.paths),
        );
        m.gauge(
            "mehr_routing_links",
            "Links this node is an end of",
            None,
            clamp(stats.links),
        );
    }
}

/// `InvalidAnnounce` → `invalid_announce` (as `GetStats` names them).
fn drop_reason_name(reason: impl std::fmt::Debug) -> String {
    let mut name = String::new();
    for (i, c) in format!("{reason:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

async fn collect_ledger(ledger: &LedgerHandle, m: &mut Metrics) {
    if let Ok(channels) = ledger.channels().await {
        let mut by_phase = [0i64; 3];
        for channel in &channels {
            by_phase[match channel.phase {
                mehr_ledger::channel::ChannelPhase::Open => 0,
                mehr_ledger::channel::ChannelPhase::Disputing => 1,
                mehr_ledger::channel::ChannelPhase::Closed => 2,
            }] += 1;
        }
        m.gauges(
            "mehr_ledger_channels",
            "Payment channels, by phase",
            None,
            ["open", "disputing", "closed"]
                .into_iter()
                .zip(by_phase)
                .map(|(phase, count)| (label("phase", phase), count)),
        );
    }
    if let Ok(balance) = ledger.balance().await {
        m.gauges(
            "mehr_ledger_balance_umhr",
            "This node's balance in μMHR: settled in the ledger, escrowed for channels, free to \
             lock, in open channels, committed to unsigned payments",
            None,
            [
                ("settled", clamp(balance.settled)),
                ("escrowed", clamp(balance.escrowed)),
                ("free", clamp(balance.free)),
                ("in_channels", clamp(balance.in_channels)),
                ("committed", clamp(balance.committed)),
            ]
            .map(|(kind, value)| (label("kind", kind), value)),
        );
    }
    if let Ok(summary) = ledger.summary().await {
        let t = &summary.traffic;
        m.counter(
            "mehr_ledger_tickets_won",
            "Relay lottery tickets this node won and sent to payers",
            None,
            t.tickets_won,
        );
        m.counter(
            "mehr_ledger_tickets_paid",
            "Relay lottery tickets of other relays this node paid",
            None,
            t.tickets_paid,
        );
        m.counters(
            "mehr_ledger_relayed_packets",
            "Packets relayed for neighbours, by how they pay",
            None,
            [
                ("free", t.relayed_free),
                ("paid", t.relayed_paid),
                ("unpaid", t.relayed_unpaid),
                ("unattributed", t.relayed_unattributed),
            ]
            .map(|(payment, value)| (label("payment", payment), value)),
        );
    }
}

/// The names `market::state_name` gives agreement states.
const AGREEMENT_STATES: [&str; 8] = [
    "proposed",
    "offered",
    "active",
    "rejected",
    "cancelled",
    "expired",
    "terminated",
    "completed",
];

fn collect_market(market: &Market, m: &mut Metrics) {
    let stats = market.stats();
    m.gauges(
        "mehr_market_agreements",
        "Agreements this node is a party to, by state",
        None,
        // Every state, zeros included, so that a dashboard has its series from the start.
        AGREEMENT_STATES
            .iter()
            .map(|state| {
                (
                    label("state", *state),
                    clamp(stats.agreements.get(*state).copied().unwrap_or(0)),
                )
            })
            .chain(
                stats
                    .agreements
                    .iter()
                    .filter(|(state, _)| !AGREEMENT_STATES.contains(&state.as_str()))
                    .map(|(state, count)| (label("state", state.clone()), clamp(*count))),
            ),
    );
    m.gauge(
        "mehr_market_adverts",
        "Live adverts held in the discovery table",
        None,
        clamp(stats.adverts_held),
    );
    let c = &stats.counters;
    m.counters(
        "mehr_market_jobs",
        "Remote jobs asked of this node, by result",
        None,
        [
            ("served", c.jobs_served),
            (
                "refused",
                c.jobs_refused - c.jobs_refused_unpaid.min(c.jobs_refused),
            ),
            ("refused_unpaid", c.jobs_refused_unpaid),
        ]
        .map(|(result, value)| (label("result", result), value)),
    );
    m.counters(
        "mehr_market_records",
        "Agreement and heartbeat records received, by result",
        None,
        [
            ("accepted", c.records_accepted),
            ("forged", c.records_forged),
            ("refused", c.records_refused),
        ]
        .map(|(result, value)| (label("result", result), value)),
    );
    m.counter(
        "mehr_market_sends_failed",
        "Market messages that could not be sent or were never proved delivered",
        None,
        stats.sends_failed,
    );
    // Per neighbour link in `mehr market stats`; summed here, since node ids are no labels.
    let (bytes, budget) = stats.links.iter().fold((0u64, 0u64), |(b, g), link| {
        (b + link.stats.total_bytes(), g + link.budget_bytes_per_hour)
    });
    m.counter(
        "mehr_gossip",
        "Market gossip bytes sent on all neighbour links",
        Some(Unit::Bytes),
        bytes,
    );
    m.gauge(
        "mehr_gossip_budget_bytes_per_second",
        "Market gossip budget of all neighbour links together",
        None,
        clamp(budget / 3600),
    );
    m.gauge(
        "mehr_gossip_links",
        "Neighbour links market gossip runs on",
        None,
        clamp(stats.links.len()),
    );
}

fn collect_storage(objects: &ObjectStore, remote: &RemoteStorage, m: &mut Metrics) {
    let usage = objects.usage();
    m.gauge(
        "mehr_storage_used",
        "Bytes of committed objects in the local store",
        Some(Unit::Bytes),
        clamp(usage.used_bytes),
    );
    m.gauge(
        "mehr_storage_reserved",
        "Bytes held for uploads in progress",
        Some(Unit::Bytes),
        clamp(usage.reserved_bytes),
    );
    m.gauge(
        "mehr_storage_offered",
        "Bytes the local store may hold (storage.available_bytes)",
        Some(Unit::Bytes),
        clamp(usage.available_bytes),
    );
    m.gauge(
        "mehr_storage_objects",
        "Objects in the local store",
        None,
        clamp(usage.objects),
    );
    let shards = remote.shard_health();
    m.gauges(
        "mehr_storage_shards",
        "Shards of this node's objects placed on providers, by health",
        None,
        [
            ("healthy", shards.healthy),
            ("suspect", shards.suspect),
            ("lost", shards.lost),
        ]
        .map(|(health, value)| (label("health", health), clamp(value))),
    );
    m.counters(
        "mehr_storage_challenges",
        "Storage challenges of placed shards, by result",
        None,
        [
            ("passed", shards.challenges_passed),
            ("failed", shards.challenges_failed),
        ]
        .map(|(result, value)| (label("result", result), value)),
    );
}

fn collect_compute(compute: &Compute, m: &mut Metrics) {
    let load = compute.load();
    m.counters(
        "mehr_compute_calls",
        "Function calls started here, by kind and result (refused: unknown, busy or invalid)",
        None,
        [
            ("wasm", "started", load.wasm_started),
            ("wasm", "refused", load.wasm_refused),
            ("served", "started", load.served_started),
            ("served", "refused", load.served_refused),
        ]
        .map(|(kind, result, value)| {
            (
                vec![("kind", kind.to_string()), ("result", result.to_string())],
                value,
            )
        }),
    );
    m.gauges(
        "mehr_compute_running",
        "WASM calls running now",
        None,
        [(Labels::new(), clamp(load.wasm_running))],
    );
    m.gauges(
        "mehr_compute_queue_depth",
        "Calls waiting for a slot, by queue",
        None,
        [(label("queue", "wasm"), clamp(load.wasm_queued))],
    );
}
