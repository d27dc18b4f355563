//! `mehr fleet`: one command across many nodes, read from an inventory file.
//!
//! ```toml
//! timeout_secs = 5                     # per node and step (default 5)
//! [[node]]
//! name = "edge-1"
//! endpoint = "https://10.0.0.1:7440"
//! token_file = "/etc/mehr/fleet/edge-1.token"   # a readonly token is enough for status
//! ca_cert = "/etc/mehr/fleet/edge-1.pem"        # optional
//! ```
//!
//! `status` and `exec` ask every node at once, each under its own timeout, so one slow or dead
//! node is marked unreachable instead of holding the others up. `roll` goes one node at a time:
//! drain, shut down (the supervisor — systemd `Restart=always`, Kubernetes — starts it again),
//! and wait until it answers again with readiness SERVING, before moving to the next.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mehr_sdk::{Client, ConnectOptions, proto as pb};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::output::{self, Output};

/// `mehr fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The inventory (TOML: `[[node]]` tables with name, endpoint, token_file, ca_cert).
    #[arg(long, env = "MEHR_INVENTORY")]
    inventory: PathBuf,
    /// Per-node timeout for each step, overriding the inventory's `timeout_secs`.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// What to do on every node.
    #[command(subcommand)]
    command: FleetCommand,
}

/// What `mehr fleet` does.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// One row per node: version, uptime, peers, balance, storage, health.
    Status,
    /// Run a `mehr` subcommand on every node (with --json) and merge the outputs by node name.
    Exec {
        /// The subcommand and its arguments, e.g. `-- balance`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Rolling restart, one node at a time: drain, shut down, wait until it is back and ready.
    Roll {
        /// How long to wait for each node to come back ready.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default)]
    node: Vec<InventoryNode>,
}

fn default_timeout_secs() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryNode {
    name: String,
    endpoint: String,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
}

impl InventoryNode {
    fn options(&self, timeout: Duration) -> ConnectOptions {
        ConnectOptions {
            endpoint: Some(self.endpoint.clone()),
            token_file: self.token_file.clone(),
            ca_cert: self.ca_cert.clone(),
            connect_timeout: Some(timeout),
            // Never the caller's own MEHR_TOKEN or data dir: each node has its own token.
            data_dir: Some(PathBuf::from("/nonexistent-mehr-fleet-data-dir")),
            ..Default::default()
        }
    }

    async fn connect(&self, timeout: Duration) -> anyhow::Result<Client> {
        Ok(
            tokio::time::timeout(timeout, Client::connect_with(self.options(timeout)))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))??,
        )
    }

    async fn status(&self, timeout: Duration) -> anyhow::Result<pb::GetStatusResponse> {
        let call = async {
            let client = self.connect(timeout).await?;
            let status = client
                .admin()
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(mehr_sdk::Error::from)?
                .into_inner();
            anyhow::Ok(status)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
    }
}

fn load(path: &Path) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the inventory {}", path.display()))?;
    let inventory: Inventory = toml::from_str(&text)
        .with_context(|| format!("the inventory {} is not valid", path.display()))?;
    if inventory.node.is_empty() {
        anyhow::bail!("the inventory {} lists no [[node]]", path.display());
    }
    Ok(inventory)
}

/// Runs `mehr fleet …`.
pub(super) async fn run(args: FleetArgs, out: &Output) -> anyhow::Result<()> {
    let inventory = load(&args.inventory)?;
    let timeout = args
        .timeout
        .unwrap_or(Duration::from_secs(inventory.timeout_secs));
    match args.command {
        FleetCommand::Status => status(&inventory.node, timeout, out).await,
        FleetCommand::Exec { args } => exec(&inventory.node, timeout, &args, out).await,
        FleetCommand::Roll { wait } => roll(&inventory.node, timeout, wait, out).await,
    }
}

fn health_text(status: &pb::GetStatusResponse) -> String {
    let down: Vec<String> = status
        .services
        .iter()
        .filter(|s| !s.serving)
        .map(|s| {
            let name = s.service.trim_start_matches("mehr.v1.");
            if name.is_empty() {
                "node".into()
            } else {
                name.to_string()
            }
        })
        .collect();
    if down.is_empty() {
        "serving".into()
    } else {
        format!("not serving: {}", down.join(","))
    }
}

fn status_json(status: &pb::GetStatusResponse) -> Value {
    json!({
        "node_id": hex::encode(&status.identity_hash),
        "version": status.version,
        "uptime_seconds": status.uptime_seconds,
        "peers": status.peers,
        "free_balance_umhr": status.free_balance_umhr,
        "storage_used_bytes": status.storage_used_bytes,
        "storage_available_bytes": status.storage_available_bytes,
        "draining": status.draining,
        "services": status.services.iter().map(|s| json!({
            "service": s.service, "serving": s.serving, "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}

async fn status(nodes: &[InventoryNode], timeout: Duration, out: &Output) -> anyhow::Result<()> {
    let answers = futures::future::join_all(nodes.iter().map(|node| node.status(timeout))).await;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut unreachable = 0;
    for (node, answer) in nodes.iter().zip(answers) {
        match answer {
            Ok(status) => {
                rows.push(vec![
                    node.name.clone(),
                    status.version.clone(),
                    output::duration(status.uptime_seconds),
                    status.peers.to_string(),
                    status.free_balance_umhr.to_string(),
                    format!(
                        "{}/{}",
                        bytes_text(status.storage_used_bytes),
                        bytes_text(status.storage_available_bytes)
                    ),
                    if status.draining {
                        format!("drained; {}", health_text(&status))
                    } else {
                        health_text(&status)
                    },
                ]);
                let mut value = status_json(&status);
                value["name"] = json!(node.name);
                value["reachable"] = json!(true);
                json_rows.push(value);
            }
            Err(error) => {
                unreachable += 1;
                let reason = format!("{error:#}");
                rows.push(vec![
                    node.name.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("UNREACHABLE: {reason}"),
                ]);
                json_rows.push(json!({ "name": node.name, "reachable": false, "error": reason }));
            }
        }
    }
    out.table(
        &[
            "NAME",
            "VERSION",
            "UPTIME",
            "PEERS",
            "BALANCE (μMHR)",
            "STORAGE",
            "HEALTH",
        ],
        &rows,
        Value::Array(json_rows),
    );
    if unreachable > 0 && !out.json {
        eprintln!("{unreachable} of {} node(s) unreachable", nodes.len());
    }
    Ok(())
}

fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

async fn exec(
    nodes: &[InventoryNode],
    timeout: Duration,
    args: &[String],
    out: &Output,
) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("cannot find the mehr binary to run")?;
    let runs = nodes.iter().map(|node| {
        let mut command = tokio::process::Command::new(&me);
        command
            .arg("--endpoint")
            .arg(&node.endpoint)
            .arg("--json")
            .env_remove("MEHR_TOKEN")
            .env_remove("MEHR_TOKEN_FILE")
            .env_remove("MEHR_DATA_DIR")
            .kill_on_drop(true);
        // The token goes by file, never on the command line (where `ps` shows it).
        if let Some(file) = &node.token_file {
            command.env("MEHR_TOKEN_FILE", file);
        }
        if let Some(ca) = &node.ca_cert {
            command.arg("--ca-cert").arg(ca);
        }
        command.args(args);
        async move {
            match tokio::time::timeout(timeout, command.output()).await {
                Err(_) => Err(format!("no answer within {timeout:?}")),
                Ok(Err(e)) => Err(format!("cannot run mehr: {e}")),
                Ok(Ok(done)) if done.status.success() => {
                    let text = String::from_utf8_lossy(&done.stdout);
                    Ok(serde_json::from_str::<Value>(text.trim())
                        .unwrap_or_else(|_| Value::String(text.trim().to_string())))
                }
                Ok(Ok(done)) => Err(String::from_utf8_lossy(&done.stderr).trim().to_string()),
            }
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut merged = Map::new();
    let mut failed = 0;
    for (node, result) in nodes.iter().zip(results) {
        let value = match result {
            Ok(value) => json!({ "ok": true, "output": value }),
            Err(error) => {
                failed += 1;
                json!({ "ok": false, "error": error })
            }
        };
        if !out.json {
            match (&value["ok"], &value["output"]) {
                (Value::Bool(true), output) => println!(
                    "== {}\n{}",
                    node.name,
                    serde_json::to_string_pretty(output).unwrap_or_default()
                ),
                _ => println!(
                    "== {}\nERROR: {}",
                    node.name,
                    value["error"].as_str().unwrap_or("")
                ),
            }
        }
        merged.insert(node.name.clone(), value);
    }
    if out.json {
        println!("{}", Value::Object(merged));
    }
    if failed > 0 {
        anyhow::bail!("the command failed on {failed} of {} node(s)", nodes.len());
    }
    Ok(())
}

async fn roll(
    nodes: &[InventoryNode],
    timeout: Duration,
    wait: Duration,
    out: &Output,
) -> anyhow::Result<()> {
    let mut done = Vec::new();
    for node in nodes {
        let before = node
            .status(timeout)
            .await
            .with_context(|| format!("{}: not reachable before its restart", node.name))?;
        let client = node.connect(timeout).await?;
        let mut admin = client.admin();
        admin
            .drain(pb::DrainRequest {})
            .await
            .map_err(mehr_sdk::Error::from)
            .with_context(|| format!("{}: drain failed", node.name))?;
        admin
            .shutdown(pb::ShutdownRequest {
                reason: "mehr fleet roll".into(),
            })
            .await
            .map_err(mehr_sdk::Error::from)
            .with_context(|| format!("{}: shutdown failed", node.name))?;
        drop(admin);
        drop(client);
        let started = Instant::now();
        let ready = loop {
            if started.elapsed() > wait {
                anyhow::bail!(
                    "{}: not back and ready within {wait:?}; the roll stops here (done: {})",
                    node.name,
                    done.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Back means a new process: the old one stays drained (and NOT_SERVING) until it
            // exits, and a drain does not outlive the process.
            if let Ok(status) = node.status(timeout).await {
                let ready = status
                    .services
                    .iter()
                    .any(|s| s.service == "readiness" && s.serving);
                if ready && !status.draining && status.identity_hash == before.identity_hash {
                    break status;
                }
            }
        };
        if !out.json {
            println!(
                "{}: restarted and ready in {:.1} s (version {})",
                node.name,
                started.elapsed().as_secs_f64(),
                ready.version
            );
        }
        done.push(node.name.clone());
    }
    out.line(
        &format!("rolled {} node(s)", done.len()),
        json!({ "rolled": done }),
    );
    Ok(())
}
