//! `mehr`, the operator's command line: one subcommand per task, `--json` everywhere, a
//! one-line cause and a non-zero exit code on failure.

mod node;
mod output;
mod store;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mehr_sdk::{Client, ConnectOptions};

pub use self::{output::Output, store::StoreCommand};

/// Talk to a running mehrd.
#[derive(Debug, Parser)]
#[command(name = "mehr", version, about = "Operate a Mehr node (mehrd)")]
pub struct Cli {
    /// The node's data dir: where the socket, token and certificate are found.
    #[arg(long, global = true, env = "MEHR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the node's API is: unix:/path, http://host:port or https://host:port
    /// (default: the Unix socket in the data dir).
    #[arg(long, global = true, env = "MEHR_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Bearer token for TCP endpoints (default: api.token in the data dir).
    #[arg(long, global = true, env = "MEHR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for https endpoints (default: tls/cert.pem in the data dir).
    #[arg(long, global = true, env = "MEHR_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print machine-readable JSON instead of aligned text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the node's identity, version, uptime and API endpoints.
    Info,
    /// Follow the node's events until it stops (Ctrl-C to quit).
    Events,
    /// Store and fetch objects in the node's local object store.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: StoreCommand,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = Output { json: cli.json };
    let options = ConnectOptions {
        endpoint: cli.endpoint,
        data_dir: cli.data_dir,
        token: cli.token,
        ca_cert: cli.ca_cert,
        ..ConnectOptions::from_env()
    };
    let client = Client::connect_with(options).await?;
    match cli.command {
        Command::Info => node::info(&client, &output).await,
        Command::Events => node::events(&client, &output).await,
        Command::Store { command } => store::run(&client, &output, command).await,
    }
}
