//! `mehrd`: runs a Mehr node until SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use mehrd::{
    config::{Config, FlagOverrides, LogFormat},
    node::Node,
};
use tokio::signal::unix::{SignalKind, signal};

/// Run a Mehr node. With no arguments it starts on embedded defaults.
#[derive(Debug, Parser)]
#[command(name = "mehrd", version, about = "Mehr node daemon")]
struct Args {
    /// Data directory (identity, store, API token, TLS material).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML config file; `MEHR_*` variables and flags override it.
    #[arg(long, env = "MEHR_CONFIG")]
    config: Option<PathBuf>,
    /// TCP address for the API (repeatable); replaces `api.listen`.
    #[arg(long = "api-listen", value_name = "ADDR")]
    api_listen: Vec<SocketAddr>,
    /// Log filter: error, warn, info, debug, trace, or a `tracing` directive list.
    #[arg(long)]
    log_level: Option<String>,
    /// Log line format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Run something else than a node.
    #[command(subcommand)]
    command: Option<Sub>,
}

/// What else `mehrd` runs.
#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Start a local mesh of N daemons (separate processes and data dirs, connected over
    /// loopback TCP, with varied prices and capabilities) until Ctrl-C.
    Devnet {
        /// How many nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Where their data dirs, configs and logs go (default: <temp>/mehr-devnet).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Node i serves its API on BASE+i and its mesh on BASE+100+i.
        #[arg(long, default_value_t = 7500)]
        base_port: u16,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Sub::Devnet {
        nodes,
        dir,
        base_port,
    }) = args.command
    {
        return devnet(nodes, dir, base_port);
    }
    let flags = FlagOverrides {
        data_dir: args.data_dir,
        api_listen: args.api_listen,
        log_level: args.log_level,
        log_format: args.log_format,
    };
    let (config, report) = match Config::load(args.config.as_deref(), std::env::vars(), &flags) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("mehrd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mehrd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's gRPC channel is made on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        match mehrd::telemetry::init(&config.log, &config.telemetry) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("mehrd: {e}");
                return ExitCode::from(2);
            }
        }
    };
    if let Some(file) = &report.file {
        tracing::info!(file = %file.display(), "config file loaded");
    }
    for var in &report.ignored_env {
        tracing::warn!(var, "ignoring environment variable: it matches no setting");
    }
    if let Some(endpoint) = config.telemetry.endpoint() {
        tracing::info!(endpoint, "exporting traces over OTLP");
    }
    let code = match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mehrd: {e}");
            ExitCode::FAILURE
        }
    };
    // After the API drained: the spans of the last calls are sent before the process ends.
    telemetry.shutdown();
    code
}

/// `mehrd devnet`.
fn devnet(nodes: usize, dir: Option<PathBuf>, base_port: u16) -> ExitCode {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("mehr-devnet"));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mehrd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mehrd::devnet::run(nodes, &dir, base_port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mehrd devnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let node = Node::start(config).await?;
    print_banner(&node);
    let reason = tokio::select! {
        _ = terminate.recv() => "SIGTERM".to_string(),
        _ = interrupt.recv() => "SIGINT".to_string(),
        reason = node.shutdown_requested() => format!("admin request: {reason}"),
    };
    node.shutdown(&reason).await?;
    Ok(())
}

/// Tells the operator, on stdout, who the node is and how to talk to it.
fn print_banner(node: &Node) {
    let facts = node.facts();
    let data_dir = facts.data_dir.display();
    println!(
        "mehrd {} — node {}",
        env!("CARGO_PKG_VERSION"),
        hex::encode(facts.identity_hash)
    );
    println!("  data dir  {data_dir}");
    for endpoint in &facts.endpoints {
        if endpoint.requires_token {
            let scheme = if endpoint.tls { "https" } else { "http" };
            println!(
                "  api       {scheme}://{}  (bearer token in {data_dir}/api.token)",
                endpoint.address
            );
        } else {
            println!("  api       unix:{}  (owner only)", endpoint.address);
        }
    }
    println!("  try       mehr --data-dir {data_dir} info");
    if let Some(tcp) = facts.endpoints.iter().find(|e| !e.tls && e.requires_token) {
        println!("            grpcurl -plaintext {} list", tcp.address);
    }
}
