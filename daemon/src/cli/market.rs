//! `mehr offer`, `mehr discover`, `mehr agreements`, `mehr agree …`, `mehr reputation` and
//! `mehr market-stats`: the node's side of the capability marketplace.

use std::{io::Read, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use futures::StreamExt;
use mehr_sdk::{
    Client,
    market::{Discover, Proposal, Tier, VerifiedOptions},
    proto as pb,
};
use serde_json::{Value, json};

use super::output::{self, Output};

/// `mehr offer set` arguments.
#[derive(Debug, clap::Args)]
pub struct SetOfferArgs {
    /// Start from the `[market]` configuration (forget earlier `offer set` changes).
    #[arg(long)]
    pub reset: bool,
    /// Price of relay, μMHR per byte.
    #[arg(long, value_name = "UMHR")]
    pub relay_price: Option<u64>,
    /// Price of storage, μMHR per byte per day.
    #[arg(long, value_name = "UMHR")]
    pub storage_price: Option<u64>,
    /// Price of WASM execution, μMHR per million cycles.
    #[arg(long, value_name = "UMHR")]
    pub wasm_price: Option<u64>,
    /// Per-call price of a served function, replacing its registered one (repeatable).
    #[arg(long, value_name = "FUNCTION=UMHR", value_parser = parse_function_price)]
    pub function_price: Vec<(String, u64)>,
    /// Go back to a function's registered price (repeatable).
    #[arg(long, value_name = "FUNCTION")]
    pub clear_function_price: Vec<String>,
    /// Advertise relay.
    #[arg(long, value_name = "BOOL")]
    pub offer_relay: Option<bool>,
    /// Advertise storage.
    #[arg(long, value_name = "BOOL")]
    pub offer_storage: Option<bool>,
    /// Advertise compute.
    #[arg(long, value_name = "BOOL")]
    pub offer_compute: Option<bool>,
    /// When the node is up.
    #[arg(long, value_enum)]
    pub availability: Option<AvailabilityArg>,
}

/// Availability on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AvailabilityArg {
    /// Always on.
    AlwaysOn,
    /// Solar powered.
    Solar,
    /// Comes and goes.
    Intermittent,
}

/// `mehr offer` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OfferAction {
    /// Change prices and what is offered; the advert is re-signed and gossiped at once.
    Set(SetOfferArgs),
}

/// A capability kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Packet relay.
    Relay,
    /// Internet gateway.
    Gateway,
    /// Storage.
    Storage,
    /// MHR-Byte contracts.
    MhrByte,
    /// WebAssembly.
    Wasm,
    /// Publish/subscribe.
    Pubsub,
    /// DHT.
    Dht,
    /// Naming.
    Naming,
    /// A named function (give --function).
    Function,
}

impl KindArg {
    fn to_proto(self) -> pb::CapabilityKind {
        match self {
            KindArg::Relay => pb::CapabilityKind::Relay,
            KindArg::Gateway => pb::CapabilityKind::Gateway,
            KindArg::Storage => pb::CapabilityKind::Storage,
            KindArg::MhrByte => pb::CapabilityKind::MhrByte,
            KindArg::Wasm => pb::CapabilityKind::Wasm,
            KindArg::Pubsub => pb::CapabilityKind::Pubsub,
            KindArg::Dht => pb::CapabilityKind::Dht,
            KindArg::Naming => pb::CapabilityKind::Naming,
            KindArg::Function => pb::CapabilityKind::Function,
        }
    }
}

/// `mehr discover` arguments.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// What to look for (default: function when --function is given).
    #[arg(value_enum)]
    pub kind: Option<KindArg>,
    /// The function id to look for.
    #[arg(long)]
    pub function: Option<String>,
    /// Highest acceptable unit price, μMHR.
    #[arg(long, value_name = "UMHR")]
    pub max_price: Option<u64>,
    /// Offers wanted; the search widens until it has them.
    #[arg(long, default_value_t = 1)]
    pub want: u32,
    /// Outermost ring: 0 neighbours, 1 within 3 hops, 2 trusted peers, 3 beyond.
    #[arg(long)]
    pub max_ring: Option<u32>,
    /// Storage: free bytes needed.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub min_storage: u64,
    /// Relay: bandwidth needed, bit/s.
    #[arg(long, value_name = "BPS", default_value_t = 0)]
    pub min_bandwidth: u64,
    /// Give up after this long, e.g. `5s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `mehr agreements` arguments.
#[derive(Debug, clap::Args)]
pub struct AgreementsArgs {
    /// Show one agreement (agreement id or request id, hex).
    pub id: Option<String>,
    /// Follow changes until interrupted.
    #[arg(long, conflicts_with = "id")]
    pub watch: bool,
    /// Only this side.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Only proposed, offered and active agreements.
    #[arg(long)]
    pub live: bool,
}

/// A side on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// This node buys.
    Consumer,
    /// This node provides.
    Provider,
}

/// `mehr agree` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AgreeAction {
    /// Send a signed request to a provider.
    Propose(ProposeArgs),
    /// Countersign an offered agreement (it becomes active).
    Accept {
        /// Agreement id or request id (hex).
        id: String,
    },
    /// Cancel an offered or active agreement; payment stops.
    Cancel {
        /// Agreement id or request id (hex).
        id: String,
    },
    /// Run a function on providers found by discovery, verified per tier.
    Run(RunArgs),
}

/// `mehr agree propose` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["function", "storage", "relay"])))]
pub struct ProposeArgs {
    /// The provider's node id (hex).
    pub provider: String,
    /// Buy calls of this function.
    #[arg(long)]
    pub function: Option<String>,
    /// Buy storage of this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub storage: Option<u64>,
    /// Buy relay.
    #[arg(long)]
    pub relay: bool,
    /// Pay at most this unit price, μMHR (default: the advertised price).
    #[arg(long, value_name = "UMHR")]
    pub max_price: Option<u64>,
    /// How long it runs once active, e.g. `1h` (default: market.agreement_duration_secs).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Countersign the offer as soon as it arrives.
    #[arg(long)]
    pub accept: bool,
    /// How long to wait for the answer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "35s")]
    pub wait: Duration,
}

/// `mehr agree run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The function id.
    pub function: String,
    /// `reputation`, `optimistic:N` (audit 1 call in N) or `redundant:K` (majority of K).
    #[arg(long, default_value = "reputation", value_parser = parse_tier)]
    pub tier: Tier,
    /// Pay at most this per call, μMHR.
    #[arg(long, value_name = "UMHR")]
    pub max_price: Option<u64>,
    /// Read the input from FILE (default: stdin, or nothing when it is a terminal).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write the output to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How long each provider may take, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
}

fn parse_function_price(text: &str) -> Result<(String, u64), String> {
    let (name, price) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not FUNCTION=UMHR"))?;
    let price = price
        .parse()
        .map_err(|_| format!("`{price}` is not a price in μMHR"))?;
    Ok((name.to_string(), price))
}

/// Every provider's part in a verified call, as JSON.
pub(super) fn providers_json(providers: &[pb::ProviderResult]) -> Vec<Value> {
    providers
        .iter()
        .map(|p| {
            json!({
                "node_id": hex::encode(&p.node_id),
                "agreement_id": hex::encode(&p.agreement_id),
                "output_hash": hex::encode(&p.output_hash),
                "outcome": outcome_name(p.outcome),
                "error": p.error,
            })
        })
        .collect()
}

pub(super) fn parse_tier(text: &str) -> Result<Tier, String> {
    let (name, arg) = match text.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (text, None),
    };
    let number = |what: &str| -> Result<u32, String> {
        arg.ok_or_else(|| format!("`{name}` needs a number: {name}:{what}"))?
            .parse()
            .map_err(|_| format!("`{text}`: {what} must be a number"))
    };
    match name {
        "reputation" if arg.is_none() => Ok(Tier::Reputation),
        "optimistic" => Ok(Tier::Optimistic {
            one_in: number("N")?,
        }),
        "redundant" => Ok(Tier::Redundant { k: number("K")? }),
        _ => Err(format!(
            "`{text}` is not a tier: reputation, optimistic:N or redundant:K"
        )),
    }
}

fn hex_id(what: &str, text: &str, len: usize) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("{what} `{text}` is not hex"))?;
    if bytes.len() != len {
        bail!(
            "{what} `{text}` is {} bytes, expected {len} ({} hex digits)",
            bytes.len(),
            len * 2
        );
    }
    Ok(bytes)
}

/// The word for an agreement side.
pub(super) fn role_name(role: i32) -> &'static str {
    match pb::AgreementRole::try_from(role) {
        Ok(pb::AgreementRole::Consumer) => "consumer",
        Ok(pb::AgreementRole::Provider) => "provider",
        _ => "unknown",
    }
}

/// The word for an agreement state.
pub(super) fn state_name(state: i32) -> &'static str {
    match pb::AgreementState::try_from(state) {
        Ok(pb::AgreementState::Proposed) => "proposed",
        Ok(pb::AgreementState::Offered) => "offered",
        Ok(pb::AgreementState::Active) => "active",
        Ok(pb::AgreementState::Rejected) => "rejected",
        Ok(pb::AgreementState::Cancelled) => "cancelled",
        Ok(pb::AgreementState::Expired) => "expired",
        Ok(pb::AgreementState::Terminated) => "terminated",
        Ok(pb::AgreementState::Completed) => "completed",
        _ => "unknown",
    }
}

fn cost_text(cost: Option<&pb::CostStructure>) -> (String, Value) {
    use pb::cost_structure::Kind;
    match cost.and_then(|c| c.kind) {
        Some(Kind::PerByte(c)) => (
            format!("{} μMHR/B", c.per_byte_umhr),
            json!({ "per_byte_umhr": c.per_byte_umhr }),
        ),
        Some(Kind::PerInvocation(c)) => (
            format!("{} μMHR/call", c.per_call_umhr),
            json!({ "per_call_umhr": c.per_call_umhr, "max_input_bytes": c.max_input_bytes }),
        ),
        Some(Kind::PerDuration(c)) => (
            format!("{} μMHR/epoch", c.per_epoch_umhr),
            json!({ "per_epoch_umhr": c.per_epoch_umhr }),
        ),
        Some(Kind::PerCycle(c)) => (
            format!("{} μMHR/Mcycle", c.per_million_umhr),
            json!({ "per_million_umhr": c.per_million_umhr, "max_cycles": c.max_cycles }),
        ),
        None => ("-".into(), Value::Null),
    }
}

fn capability_text(c: Option<&pb::AgreementCapability>) -> (String, Value) {
    use pb::agreement_capability::Kind;
    let Some(c) = c else {
        return ("-".into(), Value::Null);
    };
    match &c.kind {
        Some(Kind::FunctionHash(hash)) => {
            let text = if c.function_name.is_empty() {
                format!("function {}", hex::encode(hash))
            } else {
                format!("function {}", c.function_name)
            };
            (
                text,
                json!({ "function_hash": hex::encode(hash), "function_name": c.function_name }),
            )
        }
        Some(Kind::WasmModule(m)) => (
            format!("wasm {}", hex::encode(m)),
            json!({ "wasm_module": hex::encode(m) }),
        ),
        Some(Kind::StorageBytes(b)) => (format!("storage {b} B"), json!({ "storage_bytes": b })),
        Some(Kind::Relay(_)) => ("relay".into(), json!({ "relay": true })),
        Some(Kind::Proxy(_)) => ("proxy".into(), json!({ "proxy": true })),
        None => ("-".into(), Value::Null),
    }
}

fn capabilities_text(caps: Option<&pb::Capabilities>) -> (String, Value) {
    let Some(caps) = caps else {
        return ("-".into(), Value::Null);
    };
    let mut parts = Vec::new();
    if !caps.interfaces.is_empty() {
        let cheapest = caps.interfaces.iter().map(|i| i.cost_per_byte_umhr).min();
        parts.push(format!("relay {} μMHR/B", cheapest.unwrap_or(0)));
    }
    if let Some(c) = &caps.compute {
        for f in &c.functions {
            parts.push(format!("{} {}", f.name, cost_text(f.cost.as_ref()).0));
        }
        if c.wasm {
            parts.push(format!(
                "wasm {} μMHR/Mcycle",
                c.cost_per_million_cycles_umhr
            ));
        }
    }
    if let Some(s) = &caps.storage {
        parts.push(format!(
            "storage {} B at {} μMHR/B·day",
            s.available_bytes, s.cost_per_byte_day_umhr
        ));
    }
    let functions: Vec<Value> = caps
        .compute
        .iter()
        .flat_map(|c| &c.functions)
        .map(|f| {
            json!({
                "name": f.name,
                "function_hash": hex::encode(&f.function_hash),
                "description": f.description,
                "cost": cost_text(f.cost.as_ref()).1,
                "max_concurrent": f.max_concurrent,
            })
        })
        .collect();
    (
        parts.join("; "),
        json!({
            "interfaces": caps.interfaces.iter().map(|i| json!({
                "medium": i.medium, "bandwidth_bps": i.bandwidth_bps, "latency_ms": i.latency_ms,
                "cost_per_byte_umhr": i.cost_per_byte_umhr, "internet_gateway": i.internet_gateway,
            })).collect::<Vec<_>>(),
            "compute": caps.compute.as_ref().map(|c| json!({
                "cpu_class": c.cpu_class, "memory_mb": c.memory_mb, "wasm": c.wasm,
                "cost_per_million_cycles_umhr": c.cost_per_million_cycles_umhr,
                "functions": functions,
            })),
            "storage": caps.storage.as_ref().map(|s| json!({
                "available_bytes": s.available_bytes, "cost_per_byte_day_umhr": s.cost_per_byte_day_umhr,
                "max_object_size": s.max_object_size,
            })),
        }),
    )
}

fn agreement_json(a: &pb::Agreement) -> Value {
    json!({
        "request_id": hex::encode(&a.request_id),
        "agreement_id": hex::encode(&a.agreement_id),
        "role": role_name(a.role),
        "state": state_name(a.state),
        "note": a.note,
        "counterparty": hex::encode(&a.counterparty),
        "capability": capability_text(a.capability.as_ref()).1,
        "cost_cap": cost_text(a.cost_cap.as_ref()).1,
        "cost": cost_text(a.cost.as_ref()).1,
        "duration_seconds": a.duration_seconds,
        "channel_id": hex::encode(&a.channel_id),
        "proposed_at_unix_ms": a.proposed_at_unix_ms,
        "activated_at_unix_ms": a.activated_at_unix_ms,
        "ends_at_unix_ms": a.ends_at_unix_ms,
        "charged_units": a.charged_units,
        "charged_umhr": a.charged_umhr,
        "paid_umhr": a.paid_umhr,
        "owed_umhr": a.owed_umhr,
        "upstream_agreement_id": hex::encode(&a.upstream_agreement_id),
        "linked_request_id": hex::encode(&a.linked_request_id),
        "heartbeat_misses": a.heartbeat_misses,
    })
}

fn agreement_id_text(a: &pb::Agreement) -> String {
    if a.agreement_id.is_empty() {
        hex::encode(&a.request_id)
    } else {
        hex::encode(&a.agreement_id)
    }
}

fn print_agreement(out: &Output, a: &pb::Agreement) {
    let mut rows = vec![
        ("agreement", hex::encode(&a.agreement_id)),
        ("request", hex::encode(&a.request_id)),
        ("role", role_name(a.role).to_string()),
        ("state", state_name(a.state).to_string()),
        ("counterparty", hex::encode(&a.counterparty)),
        ("capability", capability_text(a.capability.as_ref()).0),
        ("price cap", cost_text(a.cost_cap.as_ref()).0),
        ("price", cost_text(a.cost.as_ref()).0),
        ("duration", output::duration(u64::from(a.duration_seconds))),
        (
            "charged",
            format!("{} μMHR for {} units", a.charged_umhr, a.charged_units),
        ),
        (
            "paid",
            format!(
                "{} μMHR through the channel, {} μMHR owed",
                a.paid_umhr, a.owed_umhr
            ),
        ),
    ];
    if a.ends_at_unix_ms > 0 {
        rows.push(("ends", output::timestamp(a.ends_at_unix_ms)));
    }
    if !a.upstream_agreement_id.is_empty() {
        rows.push(("resells", hex::encode(&a.upstream_agreement_id)));
    }
    if !a.linked_request_id.is_empty() {
        rows.push(("chain link", hex::encode(&a.linked_request_id)));
    }
    if !a.note.is_empty() {
        rows.push(("note", a.note.clone()));
    }
    out.record(&rows, agreement_json(a));
}

/// `mehr offer [set …]`.
pub(super) async fn offer(
    client: &Client,
    out: &Output,
    action: Option<OfferAction>,
) -> anyhow::Result<()> {
    let offer = match action {
        None => client.offer().await?,
        Some(OfferAction::Set(args)) => {
            let availability =
                args.availability
                    .map_or(pb::Availability::Unspecified, |a| match a {
                        AvailabilityArg::AlwaysOn => pb::Availability::AlwaysOn,
                        AvailabilityArg::Solar => pb::Availability::Solar,
                        AvailabilityArg::Intermittent => pb::Availability::Intermittent,
                    });
            client
                .set_offer(pb::UpdateOfferRequest {
                    reset: args.reset,
                    offer_relay: args.offer_relay,
                    offer_storage: args.offer_storage,
                    offer_compute: args.offer_compute,
                    relay_price_per_byte_umhr: args.relay_price,
                    storage_price_per_byte_day_umhr: args.storage_price,
                    wasm_price_per_million_cycles_umhr: args.wasm_price,
                    function_prices: args.function_price.into_iter().collect(),
                    remove_function_prices: args.clear_function_price,
                    availability: availability as i32,
                })
                .await?
        }
    };
    let (caps_text, caps_json) = capabilities_text(offer.capabilities.as_ref());
    let settings = offer.settings.clone().unwrap_or_default();
    out.record(
        &[
            ("node", hex::encode(&offer.node_id)),
            (
                "advert",
                format!(
                    "seq {}, {} bytes, lives {} s",
                    offer.seq,
                    offer.advert.len(),
                    offer.ttl_seconds
                ),
            ),
            ("offers", caps_text.replace("; ", "\n")),
            (
                "resold",
                if offer.resold_functions.is_empty() {
                    "-".into()
                } else {
                    offer.resold_functions.join(", ")
                },
            ),
        ],
        json!({
            "node_id": hex::encode(&offer.node_id),
            "seq": offer.seq,
            "ttl_seconds": offer.ttl_seconds,
            "advert_hex": hex::encode(&offer.advert),
            "capabilities": caps_json,
            "settings": {
                "offer_relay": settings.offer_relay,
                "offer_storage": settings.offer_storage,
                "offer_compute": settings.offer_compute,
                "relay_price_per_byte_umhr": settings.relay_price_per_byte_umhr,
                "storage_price_per_byte_day_umhr": settings.storage_price_per_byte_day_umhr,
                "wasm_price_per_million_cycles_umhr": settings.wasm_price_per_million_cycles_umhr,
                "function_prices": settings.function_prices,
            },
            "resold_functions": offer.resold_functions,
        }),
    );
    Ok(())
}

/// `mehr discover KIND …`.
pub(super) async fn discover(
    client: &Client,
    out: &Output,
    args: DiscoverArgs,
) -> anyhow::Result<()> {
    let kind = match (args.kind, &args.function) {
        (Some(kind), Some(_)) if kind != KindArg::Function => {
            bail!("--function only goes with the kind `function`")
        }
        (Some(kind), _) => kind,
        (None, Some(_)) => KindArg::Function,
        (None, None) => {
            bail!("say what to discover: a kind (relay, storage, wasm, …) or --function NAME")
        }
    };
    let mut what = match &args.function {
        Some(name) => Discover::function(name.clone()),
        None => Discover::kind(kind.to_proto()),
    }
    .want(args.want)
    .min_storage_bytes(args.min_storage)
    .min_bandwidth_bps(args.min_bandwidth);
    if let Some(price) = args.max_price {
        what = what.max_price(price);
    }
    if let Some(ring) = args.max_ring {
        what = what.max_ring(ring);
    }
    if let Some(timeout) = args.timeout {
        what = what.timeout(timeout);
    }
    let found = client.discover(what).await?;
    let outcome = match pb::DiscoveryOutcome::try_from(found.outcome) {
        Ok(pb::DiscoveryOutcome::Satisfied) => "satisfied",
        Ok(pb::DiscoveryOutcome::Exhausted) => "exhausted",
        Ok(pb::DiscoveryOutcome::TimedOut) => "timed out",
        _ => "unknown",
    };
    let rows: Vec<Vec<String>> = found
        .offers
        .iter()
        .map(|o| {
            vec![
                hex::encode(&o.node_id),
                o.unit_price_umhr.map_or("-".into(), |p| p.to_string()),
                o.ring.to_string(),
                o.hops.to_string(),
                o.path_cost_umhr.to_string(),
                o.reputation.to_string(),
                o.load.map_or("-".into(), |l| l.to_string()),
                capabilities_text(o.capabilities.as_ref()).0,
            ]
        })
        .collect();
    let offers: Vec<Value> = found
        .offers
        .iter()
        .map(|o| {
            json!({
                "node_id": hex::encode(&o.node_id),
                "unit_price_umhr": o.unit_price_umhr,
                "cost": cost_text(o.cost.as_ref()).1,
                "ring": o.ring,
                "hops": o.hops,
                "path_cost_umhr": o.path_cost_umhr,
                "reputation": o.reputation,
                "load": o.load,
                "score_ppm": o.score_ppm,
                "via": hex::encode(&o.via),
                "capabilities": capabilities_text(o.capabilities.as_ref()).1,
            })
        })
        .collect();
    let json = json!({
        "offers": offers,
        "outcome": outcome,
        "rings_searched": found.rings_searched,
        "pulls_sent": found.pulls_sent,
        "answers_received": found.answers_received,
        "elapsed_us": found.elapsed_us,
    });
    out.table(
        &[
            "NODE",
            "PRICE",
            "RING",
            "HOPS",
            "PATH COST",
            "REPUTATION",
            "LOAD",
            "OFFERS",
        ],
        &rows,
        json,
    );
    if !out.json {
        println!(
            "{} offer(s), {outcome} after ring {} in {:.1} ms ({} pulls, {} answers)",
            found.offers.len(),
            found.rings_searched,
            found.elapsed_us as f64 / 1000.0,
            found.pulls_sent,
            found.answers_received
        );
    }
    Ok(())
}

/// `mehr agreements [ID] [--watch]`.
pub(super) async fn agreements(
    client: &Client,
    out: &Output,
    args: AgreementsArgs,
) -> anyhow::Result<()> {
    if let Some(id) = &args.id {
        let agreement = client.agreement(&hex_id("agreement id", id, 32)?).await?;
        print_agreement(out, &agreement);
        return Ok(());
    }
    if args.watch {
        let mut changes = client.watch_agreements().await?;
        while let Some(change) = changes.next().await {
            let change = change?;
            let Some(a) = change.agreement else { continue };
            out.line(
                &format!(
                    "{}  {} {} ({} with {}){}",
                    output::timestamp(change.at_unix_ms),
                    agreement_id_text(&a),
                    state_name(a.state),
                    role_name(a.role),
                    hex::encode(&a.counterparty),
                    if a.note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", a.note)
                    }
                ),
                json!({ "at_unix_ms": change.at_unix_ms, "agreement": agreement_json(&a) }),
            );
        }
        return Ok(());
    }
    let role = match args.role {
        None => pb::AgreementRole::Unspecified,
        Some(RoleArg::Consumer) => pb::AgreementRole::Consumer,
        Some(RoleArg::Provider) => pb::AgreementRole::Provider,
    };
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .agreements_page(pb::ListAgreementsRequest {
                role: role as i32,
                live_only: args.live,
                page_size: 0,
                page_token: token,
            })
            .await?;
        all.extend(page.agreements);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            vec![
                agreement_id_text(a),
                role_name(a.role).to_string(),
                state_name(a.state).to_string(),
                hex::encode(&a.counterparty),
                capability_text(a.capability.as_ref()).0,
                cost_text(a.cost.as_ref().or(a.cost_cap.as_ref())).0,
                a.charged_umhr.to_string(),
                a.paid_umhr.to_string(),
                a.owed_umhr.to_string(),
            ]
        })
        .collect();
    out.table(
        &[
            "ID",
            "ROLE",
            "STATE",
            "COUNTERPARTY",
            "CAPABILITY",
            "PRICE",
            "CHARGED",
            "PAID",
            "OWED",
        ],
        &rows,
        json!({ "agreements": all.iter().map(agreement_json).collect::<Vec<_>>() }),
    );
    Ok(())
}

/// `mehr agree …`.
pub(super) async fn agree(
    client: &Client,
    out: &Output,
    action: AgreeAction,
) -> anyhow::Result<()> {
    match action {
        AgreeAction::Propose(args) => {
            let provider = hex_id("provider", &args.provider, 16)?;
            let mut proposal = if let Some(function) = &args.function {
                Proposal::function(&provider, function.clone())
            } else if let Some(bytes) = args.storage {
                Proposal::storage(&provider, bytes)
            } else {
                Proposal::relay(&provider)
            };
            if let Some(price) = args.max_price {
                use pb::cost_structure::Kind;
                let kind = if args.function.is_some() {
                    Kind::PerInvocation(pb::PerInvocation {
                        per_call_umhr: price,
                        max_input_bytes: 0,
                    })
                } else if args.storage.is_some() {
                    Kind::PerDuration(pb::PerDuration {
                        per_epoch_umhr: price,
                    })
                } else {
                    Kind::PerByte(pb::PerByte {
                        per_byte_umhr: price,
                    })
                };
                proposal = proposal.cost_cap(pb::CostStructure { kind: Some(kind) });
            }
            if let Some(duration) = args.duration {
                proposal = proposal.duration(duration);
            }
            if args.accept {
                proposal = proposal.accept();
            }
            let agreement = client.propose_agreement(proposal.wait(args.wait)).await?;
            print_agreement(out, &agreement);
        }
        AgreeAction::Accept { id } => {
            let agreement = client
                .accept_agreement(&hex_id("agreement id", &id, 32)?)
                .await?;
            print_agreement(out, &agreement);
        }
        AgreeAction::Cancel { id } => {
            let agreement = client
                .cancel_agreement(&hex_id("agreement id", &id, 32)?)
                .await?;
            print_agreement(out, &agreement);
        }
        AgreeAction::Run(args) => run(client, out, args).await?,
    }
    Ok(())
}

async fn run(client: &Client, out: &Output, args: RunArgs) -> anyhow::Result<()> {
    let input = match &args.input {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read input {}", path.display()))?
        }
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => Vec::new(),
        None => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read input from stdin")?;
            input
        }
    };
    let verdict = client
        .invoke_verified(
            &args.function,
            input,
            args.tier,
            VerifiedOptions {
                max_price_umhr: args.max_price,
                deadline: args.deadline,
            },
        )
        .await?;
    if let Some(path) = &args.output {
        std::fs::write(path, &verdict.output)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let providers = providers_json(&verdict.providers);
    if out.json {
        let mut record = json!({
            "function": args.function,
            "output_hash": hex::encode(&verdict.output_hash),
            "bytes": verdict.output.len(),
            "audited": verdict.audited,
            "escalated": verdict.escalated,
            "charged_umhr": verdict.charged_umhr,
            "providers": providers,
            "output_file": args.output.as_ref().map(|p| p.display().to_string()),
        });
        if args.output.is_none() {
            record["output_text"] = std::str::from_utf8(&verdict.output)
                .map_or(Value::Null, |s| Value::String(s.to_string()));
            record["output_hex"] = Value::String(hex::encode(&verdict.output));
        }
        println!("{record}");
        return Ok(());
    }
    if args.output.is_none() {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&verdict.output)
            .context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
        eprintln!();
    }
    for p in &verdict.providers {
        eprintln!(
            "{}  {}{}",
            hex::encode(&p.node_id),
            outcome_name(p.outcome),
            if p.error.is_empty() {
                String::new()
            } else {
                format!(": {}", p.error)
            }
        );
    }
    eprintln!(
        "accepted {} bytes ({}), charged {} μMHR{}",
        verdict.output.len(),
        hex::encode(&verdict.output_hash),
        verdict.charged_umhr,
        if verdict.escalated {
            ", audit diverged and was settled by a third provider"
        } else if verdict.audited {
            ", audited"
        } else {
            ""
        }
    );
    Ok(())
}

fn outcome_name(outcome: i32) -> &'static str {
    match pb::ProviderOutcome::try_from(outcome) {
        Ok(pb::ProviderOutcome::Agreed) => "agreed",
        Ok(pb::ProviderOutcome::Dissented) => "dissented",
        Ok(pb::ProviderOutcome::Missing) => "missing",
        Ok(pb::ProviderOutcome::Unsettled) => "unsettled",
        _ => "unknown",
    }
}

/// `mehr reputation [NODE]`.
pub(super) async fn reputation(
    client: &Client,
    out: &Output,
    node: Option<String>,
) -> anyhow::Result<()> {
    let node = node.map(|n| hex_id("node id", &n, 16)).transpose()?;
    let peers = client.reputation(node.as_deref()).await?;
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                hex::encode(&p.node_id),
                p.relay_score.to_string(),
                p.storage_score.to_string(),
                p.compute_score.to_string(),
                format!("{}/{}", p.failures, p.interactions),
                if p.excluded_until_unix_ms > 0 {
                    format!("until {}", output::timestamp(p.excluded_until_unix_ms))
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    let json: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "node_id": hex::encode(&p.node_id),
                "relay_score": p.relay_score,
                "storage_score": p.storage_score,
                "compute_score": p.compute_score,
                "interactions": p.interactions,
                "failures": p.failures,
                "excluded_until_unix_ms": p.excluded_until_unix_ms,
                "excluded_reason": p.excluded_reason,
            })
        })
        .collect();
    out.table(
        &["NODE", "RELAY", "STORAGE", "COMPUTE", "FAILED", "EXCLUDED"],
        &rows,
        json!({ "peers": json }),
    );
    Ok(())
}

/// `mehr market-stats`.
pub(super) async fn stats(client: &Client, out: &Output) -> anyhow::Result<()> {
    let s = client.market_stats().await?;
    let links: Vec<String> = s
        .links
        .iter()
        .map(|l| {
            let sent = l.advert_bytes + l.summary_bytes + l.pull_bytes;
            format!(
                "{}  {} bit/s  sent {sent} B (adverts {}, summaries {}, pulls {}) of {} B/h budget",
                hex::encode(&l.node_id),
                l.bitrate,
                l.advert_bytes,
                l.summary_bytes,
                l.pull_bytes,
                l.budget_bytes_per_hour
            )
        })
        .collect();
    let agreements: Vec<String> = s
        .agreements
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    out.record(
        &[
            ("since", output::timestamp(s.since_unix_ms)),
            ("own advert", format!("seq {}", s.own_seq)),
            ("adverts held", s.adverts_held.to_string()),
            (
                "adverts in",
                format!(
                    "{} accepted, {} forged, {} stale, {} expired, {} refused",
                    s.adverts_accepted,
                    s.adverts_forged,
                    s.adverts_stale,
                    s.adverts_expired,
                    s.adverts_refused
                ),
            ),
            (
                "records in",
                format!(
                    "{} accepted, {} forged, {} refused",
                    s.records_accepted, s.records_forged, s.records_refused
                ),
            ),
            (
                "pulls",
                format!(
                    "{} answered, {} duplicate, {} answers relayed",
                    s.pulls_answered, s.pulls_duplicate, s.pull_answers_relayed
                ),
            ),
            (
                "jobs",
                format!("{} served, {} refused", s.jobs_served, s.jobs_refused),
            ),
            (
                "heartbeats",
                format!(
                    "{} pings answered, {} pongs received",
                    s.pings_answered, s.pongs_received
                ),
            ),
            (
                "beacons",
                format!("{} sent, {} received", s.beacons_sent, s.beacons_received),
            ),
            ("sends failed", s.sends_failed.to_string()),
            ("deliveries unmetered", s.deliveries_dropped.to_string()),
            (
                "agreements",
                if agreements.is_empty() {
                    "-".into()
                } else {
                    agreements.join(", ")
                },
            ),
            (
                "gossip",
                if links.is_empty() {
                    "-".into()
                } else {
                    links.join("\n")
                },
            ),
        ],
        json!({
            "since_unix_ms": s.since_unix_ms,
            "own_seq": s.own_seq,
            "adverts_held": s.adverts_held,
            "adverts_accepted": s.adverts_accepted,
            "adverts_forged": s.adverts_forged,
            "adverts_stale": s.adverts_stale,
            "adverts_expired": s.adverts_expired,
            "adverts_refused": s.adverts_refused,
            "gossip_refused": s.gossip_refused,
            "records_accepted": s.records_accepted,
            "records_forged": s.records_forged,
            "records_refused": s.records_refused,
            "pulls_answered": s.pulls_answered,
            "pulls_duplicate": s.pulls_duplicate,
            "pull_answers_relayed": s.pull_answers_relayed,
            "jobs_served": s.jobs_served,
            "jobs_refused": s.jobs_refused,
            "pings_answered": s.pings_answered,
            "pongs_received": s.pongs_received,
            "beacons_sent": s.beacons_sent,
            "beacons_received": s.beacons_received,
            "sends_failed": s.sends_failed,
            "deliveries_dropped": s.deliveries_dropped,
            "agreements": s.agreements,
            "links": s.links.iter().map(|l| json!({
                "node_id": hex::encode(&l.node_id),
                "bitrate": l.bitrate,
                "budget_bytes_per_hour": l.budget_bytes_per_hour,
                "advert_bytes": l.advert_bytes,
                "summary_bytes": l.summary_bytes,
                "pull_bytes": l.pull_bytes,
                "messages": l.messages,
                "dropped": l.dropped,
            })).collect::<Vec<_>>(),
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_prices_parse() {
        assert_eq!(parse_tier("reputation").unwrap(), Tier::Reputation);
        assert_eq!(parse_tier("redundant:3").unwrap(), Tier::Redundant { k: 3 });
        assert_eq!(
            parse_tier("optimistic:10").unwrap(),
            Tier::Optimistic { one_in: 10 }
        );
        assert!(
            parse_tier("redundant")
                .unwrap_err()
                .contains("needs a number")
        );
        assert!(parse_tier("majority:2").is_err());
        assert_eq!(
            parse_function_price("embed=40").unwrap(),
            ("embed".to_string(), 40)
        );
        assert!(parse_function_price("embed").is_err());
        assert!(hex_id("node id", "abcd", 16).is_err());
    }
}
