//! `mehr deploy`, `mehr undeploy`, `mehr functions` and `mehr invoke`.

use std::{
    io::{IsTerminal, Read, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context;
use futures::StreamExt;
use mehr_sdk::{Client, InvokeOptions, Placement, market::Tier, proto as pb};
use serde_json::{Value, json};

use super::output::Output;

/// `mehr deploy` arguments.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The module: a WebAssembly binary, or WAT text (converted before upload).
    pub file: PathBuf,
    /// Name the module: its functions become NAME/EXPORT instead of MODULE_ID/EXPORT.
    #[arg(long)]
    pub name: Option<String>,
}

/// `mehr undeploy` arguments.
#[derive(Debug, clap::Args)]
pub struct UndeployArgs {
    /// The module's name, or its id in hex.
    pub module: String,
}

/// `mehr invoke` arguments.
#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function id (`mehr functions` lists them).
    pub function: String,
    /// Read the input from FILE instead of stdin (no input when stdin is a terminal).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write the output to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print partial output as the function produces it.
    #[arg(long)]
    pub stream: bool,
    /// How long the call may take, e.g. `500ms` or `2m` (default: the function's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// WASM only: the most fuel the call may burn (default: the node's limit).
    #[arg(long)]
    pub max_fuel: Option<u64>,
    /// Run it on other nodes even when this node offers the function.
    #[arg(long, conflicts_with = "local")]
    pub mesh: bool,
    /// Run it on this node only (never on the mesh).
    #[arg(long)]
    pub local: bool,
    /// Calls on the mesh: reputation, optimistic:N (audit 1 call in N) or redundant:K.
    #[arg(long, value_parser = super::market::parse_tier)]
    pub tier: Option<Tier>,
    /// Calls on the mesh: the most to pay one provider, μMHR.
    #[arg(long, value_name = "UMHR")]
    pub max_price: Option<u64>,
}

/// The word for a function kind, as the CLI prints it.
pub(super) fn kind_name(kind: i32) -> &'static str {
    match pb::FunctionKind::try_from(kind) {
        Ok(pb::FunctionKind::Wasm) => "wasm",
        Ok(pb::FunctionKind::Served) => "served",
        _ => "unknown",
    }
}

/// `mehr deploy FILE [--name N]`.
pub(super) async fn deploy(client: &Client, out: &Output, args: DeployArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let wasm = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        let text = String::from_utf8(bytes).with_context(|| {
            format!(
                "{} is neither a WebAssembly binary nor WAT text",
                args.file.display()
            )
        })?;
        mehr_compute::wat_to_wasm(&text)
            .with_context(|| format!("cannot convert {}", args.file.display()))?
    };
    let deployed = client.deploy_module(wasm, args.name.as_deref()).await?;
    let module_id = hex::encode(&deployed.module_id);
    out.record(
        &[
            ("module id", module_id.clone()),
            (
                "name",
                if deployed.name.is_empty() {
                    "(none)".to_string()
                } else {
                    deployed.name.clone()
                },
            ),
            (
                "status",
                if deployed.created {
                    "deployed"
                } else {
                    "already deployed"
                }
                .to_string(),
            ),
            ("functions", deployed.function_ids.join("\n")),
        ],
        json!({
            "module_id": module_id,
            "name": deployed.name,
            "created": deployed.created,
            "function_ids": deployed.function_ids,
        }),
    );
    Ok(())
}

/// `mehr undeploy MODULE`.
pub(super) async fn undeploy(
    client: &Client,
    out: &Output,
    args: UndeployArgs,
) -> anyhow::Result<()> {
    let removed = client.remove_module(&args.module).await?;
    let module_id = hex::encode(&removed.module_id);
    out.record(
        &[
            ("removed", module_id.clone()),
            ("functions", removed.function_ids.join("\n")),
        ],
        json!({ "module_id": module_id, "function_ids": removed.function_ids }),
    );
    Ok(())
}

fn price_text(price: Option<&pb::FunctionPrice>) -> (String, Value) {
    use pb::function_price::Kind;
    match price.and_then(|p| p.kind) {
        Some(Kind::PerInvocationUmhr(umhr)) => (
            format!("{umhr} μMHR/call"),
            json!({ "per_invocation_umhr": umhr }),
        ),
        Some(Kind::PerMillionFuelUmhr(umhr)) => (
            format!("{umhr} μMHR/Mfuel"),
            json!({ "per_million_fuel_umhr": umhr }),
        ),
        None => ("-".to_string(), Value::Null),
    }
}

/// `mehr functions`.
pub(super) async fn functions(client: &Client, out: &Output) -> anyhow::Result<()> {
    let functions = client.list_functions().await?;
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.function_id.clone(),
                kind_name(f.kind).to_string(),
                price_text(f.price.as_ref()).0,
                format!("{}/{}", f.in_flight, f.max_concurrency),
                f.queued.to_string(),
                f.description.clone(),
            ]
        })
        .collect();
    let json_functions: Vec<Value> = functions
        .iter()
        .map(|f| {
            json!({
                "function_id": f.function_id,
                "function_hash": hex::encode(&f.function_hash),
                "kind": kind_name(f.kind),
                "description": f.description,
                "price": price_text(f.price.as_ref()).1,
                "max_concurrency": f.max_concurrency,
                "max_input_bytes": f.max_input_bytes,
                "in_flight": f.in_flight,
                "queued": f.queued,
                "module_id": (!f.module_id.is_empty()).then(|| hex::encode(&f.module_id)),
                "available_since_unix_ms": f.available_since_unix_ms,
            })
        })
        .collect();
    out.table(
        &[
            "FUNCTION",
            "KIND",
            "PRICE",
            "RUNNING",
            "QUEUED",
            "DESCRIPTION",
        ],
        &rows,
        json!({ "functions": json_functions }),
    );
    Ok(())
}

fn read_input(args: &InvokeArgs) -> anyhow::Result<Vec<u8>> {
    match &args.input {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read input {}", path.display()))
        }
        None if std::io::stdin().is_terminal() => Ok(Vec::new()),
        None => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read input from stdin")?;
            Ok(input)
        }
    }
}

fn metering_json(metering: Option<&pb::InvocationMetering>) -> Value {
    match metering {
        Some(m) => json!({
            "kind": if m.kind == pb::FunctionKind::Unspecified as i32 { "mesh" } else { kind_name(m.kind) },
            "provider_node_id": hex::encode(&m.provider_node_id),
            "fuel_used": m.fuel_used,
            "duration_us": m.duration_us,
        }),
        None => Value::Null,
    }
}

/// How a call on the mesh went, as JSON (`null` for local calls).
fn remote_json(remote: Option<&pb::RemoteCall>) -> Value {
    match remote {
        Some(r) => json!({
            "output_hash": hex::encode(&r.output_hash),
            "audited": r.audited,
            "escalated": r.escalated,
            "charged_umhr": r.charged_umhr,
            "providers": super::market::providers_json(&r.providers),
        }),
        None => Value::Null,
    }
}

/// Output bytes in JSON: as text when they are UTF-8, and always as hex.
fn output_json(bytes: &[u8]) -> (Value, String) {
    (
        std::str::from_utf8(bytes).map_or(Value::Null, |s| Value::String(s.to_string())),
        hex::encode(bytes),
    )
}

/// Where output bytes go: a file, or stdout (raw bytes for people, JSON lines otherwise).
struct Sink {
    file: Option<(PathBuf, std::fs::File)>,
}

impl Sink {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Sink> {
        let file = path
            .map(|path| {
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))
                    .map(|file| (path.clone(), file))
            })
            .transpose()?;
        Ok(Sink { file })
    }

    /// Writes raw bytes to the file, or to stdout in human mode; returns whether they were
    /// written (JSON mode prints them inside its records instead).
    fn write(&mut self, out: &Output, bytes: &[u8]) -> anyhow::Result<bool> {
        if let Some((path, file)) = &mut self.file {
            file.write_all(bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(true);
        }
        if out.json {
            return Ok(false);
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes).context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
        Ok(true)
    }

    fn path(&self) -> Option<String> {
        self.file.as_ref().map(|(p, _)| p.display().to_string())
    }
}

/// `mehr invoke FUNCTION [--input FILE] [-o FILE] [--stream]`.
pub(super) async fn invoke(client: &Client, out: &Output, args: InvokeArgs) -> anyhow::Result<()> {
    let input = read_input(&args)?;
    let placement = match (args.mesh, args.local) {
        (true, _) => Placement::Mesh,
        (_, true) => Placement::Local,
        _ => Placement::Auto,
    };
    let options = InvokeOptions {
        deadline: args.deadline,
        max_fuel: args.max_fuel,
        placement,
        tier: args.tier,
        max_price_umhr: args.max_price,
    };
    let mut sink = Sink::open(args.output.as_ref())?;
    if args.stream {
        let mut stream = client.invoke_stream(&args.function, input, options).await?;
        let mut total = 0usize;
        while let Some(message) = stream.next().await {
            let message = message?;
            total += message.output.len();
            let written = sink.write(out, &message.output)?;
            if out.json {
                let (text, hex) = output_json(&message.output);
                let mut record = json!({ "done": message.done, "bytes": message.output.len() });
                if !written {
                    record["output_text"] = text;
                    record["output_hex"] = Value::String(hex);
                }
                if message.done {
                    record["metering"] = metering_json(message.metering.as_ref());
                    record["remote"] = remote_json(message.remote.as_ref());
                    record["output_file"] = json!(sink.path());
                }
                println!("{record}");
            }
            if message.done {
                report_file(out, &sink, total, message.metering.as_ref());
                return Ok(());
            }
        }
        anyhow::bail!("the output stream ended before the function finished");
    }
    let response = client.invoke_with(&args.function, input, options).await?;
    let written = sink.write(out, &response.output)?;
    if out.json {
        let (text, hex) = output_json(&response.output);
        let mut record = json!({
            "function_id": args.function,
            "bytes": response.output.len(),
            "metering": metering_json(response.metering.as_ref()),
            "remote": remote_json(response.remote.as_ref()),
            "output_file": sink.path(),
        });
        if !written {
            record["output_text"] = text;
            record["output_hex"] = Value::String(hex);
        }
        println!("{record}");
    }
    report_file(
        out,
        &sink,
        response.output.len(),
        response.metering.as_ref(),
    );
    Ok(())
}

/// With `-o FILE` in human mode, says what was written (stdout is free for it).
fn report_file(out: &Output, sink: &Sink, bytes: usize, metering: Option<&pb::InvocationMetering>) {
    if out.json {
        return;
    }
    if let Some(path) = sink.path() {
        let detail = metering.map_or(String::new(), |m| {
            let fuel = if m.fuel_used > 0 {
                format!(", {} fuel", m.fuel_used)
            } else {
                String::new()
            };
            let place = if m.kind == pb::FunctionKind::Unspecified as i32 {
                format!(" on node {}", hex::encode(&m.provider_node_id))
            } else {
                String::new()
            };
            format!(" in {} µs{fuel}{place}", m.duration_us)
        });
        println!("wrote {bytes} bytes to {path}{detail}");
    }
}
