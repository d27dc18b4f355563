//! `mehr interfaces|paths|neighbours|announce|stats|send|listen`.

use std::{io::Read, time::Duration};

use clap::{Args, Subcommand};
use futures::StreamExt;
use mehr_sdk::{Client, proto as pb};
use serde_json::{Value, json};

use super::output::Output;

/// `mehr interfaces` actions.
#[derive(Debug, Subcommand)]
pub enum InterfacesAction {
    /// Start an interface: `mehr interfaces add tcp_client target_host=10.0.0.2 target_port=4242`.
    Add {
        /// tcp_server, tcp_client, udp, serial or sim.
        kind: String,
        /// Settings as KEY=VALUE, named as in a `[[interfaces]]` config table.
        settings: Vec<String>,
    },
    /// Stop an interface.
    Remove {
        /// Its id (see `mehr interfaces`).
        id: u32,
    },
}

/// `mehr paths` actions.
#[derive(Debug, Subcommand)]
pub enum PathsAction {
    /// Ask the network for the path to a destination and wait for it.
    Request {
        /// Destination hash (32 hex characters).
        destination: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
    },
}

/// The message of `mehr send` and `mehr reply`: an argument, a file, or stdin.
#[derive(Debug, Args)]
pub(crate) struct MessageArgs {
    /// The message; read from --file or stdin when absent.
    message: Option<String>,
    /// Read the message from this file.
    #[arg(long, short)]
    file: Option<std::path::PathBuf>,
}

impl MessageArgs {
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        Ok(match (&self.message, &self.file) {
            (Some(text), None) => text.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            (None, None) => {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes)?;
                bytes
            }
            (Some(_), Some(_)) => anyhow::bail!("give the message or --file, not both"),
        })
    }
}

/// `mehr send` arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Destination hash (32 hex characters).
    destination: String,
    #[command(flatten)]
    message: MessageArgs,
    /// Seconds to wait for a path and for the delivery proof.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Which known path to leave by (default: the one Reticulum's rules keep).
    #[arg(long, value_enum)]
    policy: Option<RoutePolicyArg>,
}

/// A route policy on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoutePolicyArg {
    /// Lowest relay fees.
    Cheapest,
    /// Lowest latency.
    Fastest,
    /// Hops, fees and latency weighed equally.
    Balanced,
}

impl From<RoutePolicyArg> for pb::RoutePolicy {
    fn from(arg: RoutePolicyArg) -> Self {
        match arg {
            RoutePolicyArg::Cheapest => pb::RoutePolicy::Cheapest,
            RoutePolicyArg::Fastest => pb::RoutePolicy::Fastest,
            RoutePolicyArg::Balanced => pb::RoutePolicy::Balanced,
        }
    }
}

/// `mehr reply` arguments.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The inbound link (32 hex characters), as `mehr listen` shows it.
    link: String,
    #[command(flatten)]
    message: MessageArgs,
}

/// `mehr listen` arguments.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Dotted destination name: app name then aspects, e.g. `chat.room`.
    name: String,
    /// Announce the destination so others can find it.
    #[arg(long)]
    announce: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<usize>,
}

fn hash_arg(what: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text).map_err(|_| anyhow::anyhow!("{what} `{text}` is not hex"))?;
    anyhow::ensure!(
        bytes.len() == 16,
        "{what} must be 16 bytes (32 hex characters), not {}",
        bytes.len()
    );
    Ok(bytes)
}

/// `mehr interfaces [add|remove]`.
pub(super) async fn interfaces(
    client: &Client,
    out: &Output,
    action: Option<InterfacesAction>,
) -> anyhow::Result<()> {
    match action {
        None => {
            let interfaces = client.interfaces().await?;
            if out.json {
                let list: Vec<Value> = interfaces.iter().map(interface_json).collect();
                println!("{}", Value::Array(list));
                return Ok(());
            }
            println!(
                "{:>4}  {:<34} {:<10} {:>10} {:>10} {:>10} {:>10} {:>7}",
                "ID", "NAME", "STATE", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES", "DROPPED"
            );
            for i in &interfaces {
                let name = if i.parent_id.is_some() {
                    format!("  └ {}", i.peer.clone().unwrap_or_default())
                } else {
                    i.name.clone()
                };
                println!(
                    "{:>4}  {:<34} {:<10} {:>10} {:>10} {:>10} {:>10} {:>7}",
                    i.id,
                    truncate(&name, 34),
                    state_name(i.state),
                    i.rx_frames,
                    i.rx_bytes,
                    i.tx_frames,
                    i.tx_bytes,
                    i.tx_dropped
                );
            }
            Ok(())
        }
        Some(InterfacesAction::Add { kind, settings }) => {
            let spec = spec_from_settings(&kind, &settings)?;
            let id = client.add_interface(spec).await?;
            out.record(
                &[("interface", id.to_string())],
                json!({ "interface_id": id }),
            );
            Ok(())
        }
        Some(InterfacesAction::Remove { id }) => {
            client.remove_interface(id).await?;
            out.record(&[("removed", id.to_string())], json!({ "removed": id }));
            Ok(())
        }
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

fn state_name(state: i32) -> &'static str {
    match pb::InterfaceState::try_from(state) {
        Ok(pb::InterfaceState::Up) => "up",
        Ok(pb::InterfaceState::Connecting) => "connecting",
        Ok(pb::InterfaceState::Down) => "down",
        _ => "unknown",
    }
}

fn interface_json(i: &pb::Interface) -> Value {
    json!({
        "id": i.id, "name": i.name, "type": i.spec.as_ref().map(|s| s.r#type.clone()),
        "parent_id": i.parent_id, "peer": i.peer, "state": state_name(i.state), "state_detail": i.state_detail,
        "bitrate": i.bitrate, "rx_frames": i.rx_frames, "rx_bytes": i.rx_bytes, "tx_frames": i.tx_frames,
        "tx_bytes": i.tx_bytes, "tx_announce_bytes": i.tx_announce_bytes, "tx_dropped": i.tx_dropped,
        "rx_malformed": i.rx_malformed, "queued_bytes": i.queued_bytes,
    })
}

/// Builds an interface spec from `KEY=VALUE` words, with the config file's key names.
fn spec_from_settings(kind: &str, settings: &[String]) -> anyhow::Result<pb::InterfaceSpec> {
    let mut spec = pb::InterfaceSpec {
        r#type: kind.to_string(),
        ..Default::default()
    };
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{setting}` is not KEY=VALUE"))?;
        let number = |v: &str| -> anyhow::Result<u64> {
            v.parse()
                .map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a number"))
        };
        let float = |v: &str| -> anyhow::Result<f64> {
            v.parse()
                .map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a number"))
        };
        match key {
            "name" => spec.name = Some(value.into()),
            "mode" => spec.mode = Some(value.into()),
            "bitrate" => spec.bitrate = Some(number(value)?),
            "announce_cap" => spec.announce_cap = Some(float(value)?),
            "listen_ip" => spec.listen_ip = Some(value.into()),
            "listen_port" => spec.listen_port = Some(number(value)? as u32),
            "target_host" => spec.target_host = Some(value.into()),
            "target_port" => spec.target_port = Some(number(value)? as u32),
            "forward_ip" => spec.forward_ip = Some(value.into()),
            "forward_port" => spec.forward_port = Some(number(value)? as u32),
            "port" => spec.port = Some(value.into()),
            "speed" => spec.speed = Some(number(value)? as u32),
            "peer_port" => spec.peer_port = Some(number(value)? as u32),
            "latency_ms" => spec.latency_ms = Some(number(value)?),
            "loss" => spec.loss = Some(float(value)?),
            "mtu" => spec.mtu = Some(number(value)? as u32),
            "half_duplex" => {
                spec.half_duplex =
                    Some(value.parse().map_err(|_| {
                        anyhow::anyhow!("half_duplex: `{value}` is not true or false")
                    })?)
            }
            other => anyhow::bail!("unknown interface setting `{other}`"),
        }
    }
    Ok(spec)
}

fn cost_text(cost: &Option<pb::PathCost>) -> String {
    match cost {
        Some(c) => format!(
            "{:.3} μ/B, {} hops, {} ms worst hop, {:.0} bps",
            c.cost_per_byte, c.hops, c.worst_latency_ms, c.bandwidth_bps
        ),
        None => "-".into(),
    }
}

fn cost_json(cost: &Option<pb::PathCost>) -> Value {
    cost.as_ref().map_or(Value::Null, |c| {
        json!({ "cost_per_byte": c.cost_per_byte, "worst_latency_ms": c.worst_latency_ms, "bandwidth_bps": c.bandwidth_bps,
                "hops": c.hops, "mtu": c.mtu, "encoded": hex::encode(&c.encoded) })
    })
}

fn path_json(p: &pb::Path) -> Value {
    json!({ "destination": hex::encode(&p.destination), "next_hop": hex::encode(&p.next_hop), "hops": p.hops,
            "interface_id": p.interface_id, "age_seconds": p.age_seconds, "mehr_node": p.mehr_node, "cost": cost_json(&p.cost),
            "routes": p.routes.iter().map(route_json).collect::<Vec<_>>() })
}

fn route_json(r: &pb::Route) -> Value {
    json!({ "next_hop": hex::encode(&r.next_hop), "hops": r.hops, "cost": cost_json(&r.cost) })
}

/// `mehr paths [request DEST]`.
pub(super) async fn paths(
    client: &Client,
    out: &Output,
    mehr_only: bool,
    action: Option<PathsAction>,
) -> anyhow::Result<()> {
    if let Some(PathsAction::Request {
        destination,
        timeout,
    }) = action
    {
        let destination = hash_arg("destination", &destination)?;
        let path = client
            .request_path(&destination, Duration::from_secs(timeout))
            .await?;
        out.record(
            &[
                ("destination", hex::encode(&path.destination)),
                ("next hop", hex::encode(&path.next_hop)),
                ("hops", path.hops.to_string()),
                ("interface", path.interface_id.to_string()),
                ("cost", cost_text(&path.cost)),
            ],
            path_json(&path),
        );
        return Ok(());
    }
    let paths = client.paths(mehr_only).await?;
    if out.json {
        println!("{}", Value::Array(paths.iter().map(path_json).collect()));
        return Ok(());
    }
    println!(
        "{:<32}  {:<32}  {:>4}  {:>5}  {:<6}  COST",
        "DESTINATION", "NEXT HOP", "HOPS", "IFACE", "MEHR"
    );
    for p in &paths {
        println!(
            "{:<32}  {:<32}  {:>4}  {:>5}  {:<6}  {}",
            hex::encode(&p.destination),
            hex::encode(&p.next_hop),
            p.hops,
            p.interface_id,
            if p.mehr_node { "yes" } else { "no" },
            cost_text(&p.cost)
        );
        // The other ways there, for `mehr send --policy`.
        for r in p.routes.iter().skip(1) {
            println!(
                "{:<32}  {:<32}  {:>4}  {:>5}  {:<6}  {}",
                "  or through",
                hex::encode(&r.next_hop),
                r.hops,
                "",
                "",
                cost_text(&r.cost)
            );
        }
    }
    Ok(())
}

/// `mehr neighbours`.
pub(super) async fn neighbours(client: &Client, out: &Output) -> anyhow::Result<()> {
    let neighbours = client.neighbours().await?;
    if out.json {
        let list: Vec<Value> = neighbours
            .iter()
            .map(|n| json!({ "destination": hex::encode(&n.destination), "node_id": hex::encode(&n.node_id),
                             "interface_id": n.interface_id, "last_heard_seconds": n.last_heard_seconds, "cost": cost_json(&n.cost) }))
            .collect();
        println!("{}", Value::Array(list));
        return Ok(());
    }
    println!(
        "{:<32}  {:<32}  {:>5}  {:>10}  COST",
        "NODE ID", "DESTINATION", "IFACE", "HEARD (s)"
    );
    for n in &neighbours {
        println!(
            "{:<32}  {:<32}  {:>5}  {:>10}  {}",
            hex::encode(&n.node_id),
            hex::encode(&n.destination),
            n.interface_id,
            n.last_heard_seconds,
            cost_text(&n.cost)
        );
    }
    Ok(())
}

/// `mehr announce`.
pub(super) async fn announce(client: &Client, out: &Output) -> anyhow::Result<()> {
    let count = client.announce().await?;
    out.record(
        &[("announced", format!("{count} destination(s)"))],
        json!({ "announced": count }),
    );
    Ok(())
}

/// `mehr stats`.
pub(super) async fn stats(client: &Client, out: &Output) -> anyhow::Result<()> {
    let s = client.transport_stats().await?;
    let drops: Vec<String> = s
        .drops
        .iter()
        .map(|d| format!("{}: {}", d.reason, d.count))
        .collect();
    let part_drops: Vec<String> = s
        .part_drops
        .iter()
        .map(|d| format!("{}: {}", d.reason, d.count))
        .collect();
    out.record(
        &[
            ("transport id", hex::encode(&s.transport_id)),
            ("mehr destination", hex::encode(&s.mehr_destination)),
            ("received", s.packets_received.to_string()),
            ("transmitted", s.packets_transmitted.to_string()),
            ("forwarded", s.packets_forwarded.to_string()),
            ("delivered", s.packets_delivered.to_string()),
            ("rebroadcasts", s.announces_rebroadcast.to_string()),
            ("paths", s.paths.to_string()),
            ("links", s.links.to_string()),
            ("dropped", if drops.is_empty() { "none".into() } else { drops.join("\n") }),
            ("listener drops", s.listener_drops.to_string()),
            ("control rejected", s.control_rejected.to_string()),
            ("control posts dropped", s.control_posts_dropped.to_string()),
            ("part drops", if part_drops.is_empty() { "none".into() } else { part_drops.join("\n") }),
        ],
        json!({
            "transport_id": hex::encode(&s.transport_id), "mehr_destination": hex::encode(&s.mehr_destination),
            "announce_app_data": hex::encode(&s.announce_app_data), "packets_received": s.packets_received,
            "packets_transmitted": s.packets_transmitted, "packets_forwarded": s.packets_forwarded,
            "packets_delivered": s.packets_delivered, "announces_rebroadcast": s.announces_rebroadcast,
            "paths": s.paths, "links": s.links, "listener_drops": s.listener_drops, "control_rejected": s.control_rejected,
            "control_posts_dropped": s.control_posts_dropped,
            "drops": s.drops.iter().map(|d| (d.reason.clone(), json!(d.count))).collect::<serde_json::Map<_, _>>(),
            "part_drops": s.part_drops.iter().map(|d| (d.reason.clone(), json!(d.count))).collect::<serde_json::Map<_, _>>(),
        }),
    );
    Ok(())
}

/// `mehr send`.
pub(super) async fn send(client: &Client, out: &Output, args: SendArgs) -> anyhow::Result<()> {
    let destination = hash_arg("destination", &args.destination)?;
    let report = client
        .send_with(
            &destination,
            args.message.read()?,
            args.policy.map_or(pb::RoutePolicy::Unspecified, Into::into),
            Duration::from_secs(args.timeout),
        )
        .await?;
    let method = if report.method == pb::SendMethod::Link as i32 {
        "link"
    } else {
        "packet"
    };
    out.record(
        &[
            ("method", method.to_string()),
            (
                "delivered",
                if report.delivered {
                    "yes (proved)".into()
                } else {
                    "no proof in time".into()
                },
            ),
            (
                "rtt",
                report.rtt_ms.map_or("-".into(), |ms| format!("{ms} ms")),
            ),
            (
                "via",
                report.route.as_ref().map_or("-".into(), |r| {
                    format!("{} ({})", hex::encode(&r.next_hop), cost_text(&r.cost))
                }),
            ),
        ],
        json!({ "method": method, "delivered": report.delivered, "rtt_ms": report.rtt_ms,
                "packet_hash": report.packet_hash.as_ref().map(hex::encode),
                "route": report.route.as_ref().map(route_json) }),
    );
    Ok(())
}

/// `mehr reply`.
pub(super) async fn reply(client: &Client, out: &Output, args: ReplyArgs) -> anyhow::Result<()> {
    let hash = client
        .reply(&hash_arg("link", &args.link)?, args.message.read()?)
        .await?;
    out.record(
        &[("sent", hex::encode(&hash))],
        json!({ "packet_hash": hex::encode(&hash) }),
    );
    Ok(())
}

/// `mehr listen`: prints messages as they arrive.
pub(super) async fn listen(client: &Client, out: &Output, args: ListenArgs) -> anyhow::Result<()> {
    let mut listening = client.listen(&args.name, args.announce).await?;
    out.line(
        &format!(
            "listening on {} ({})",
            args.name,
            hex::encode(&listening.destination)
        ),
        json!({ "listening": hex::encode(&listening.destination), "name": args.name }),
    );
    let mut seen = 0;
    while let Some(message) = listening.messages.next().await {
        let message = message?;
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let link = message.link_id.as_ref().map(hex::encode);
        out.line(
            &match &link {
                Some(link) => format!("[link {link}] {text}"),
                None => text.clone(),
            },
            json!({ "payload": text, "payload_hex": hex::encode(&message.payload), "link_id": link,
                    "interface_id": message.interface_id }),
        );
        seen += 1;
        if args.count.is_some_and(|count| seen >= count) {
            break;
        }
    }
    Ok(())
}
