//! `mehr`, the operator's command line: one subcommand per task, `--json` everywhere, a
//! one-line cause and a non-zero exit code on failure.

mod admin;
mod compute;
mod fleet;
mod ledger;
mod market;
mod node;
mod output;
mod store;
mod transport;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mehr_sdk::{Client, ConnectOptions};

pub use self::{
    admin::{ConfigCommand, TokenCommand},
    fleet::{FleetArgs, FleetCommand},
    output::Output,
    store::StoreCommand,
};

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
    /// File holding the bearer token for TCP endpoints (default: api.token in the data dir;
    /// the token itself may come from `MEHR_TOKEN`). There is no flag for the token itself:
    /// a command line is visible to every user through `ps`.
    #[arg(long, global = true, env = "MEHR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
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
    /// List mesh interfaces with their counters, or add/remove one.
    Interfaces {
        /// Add or remove (lists when absent).
        #[command(subcommand)]
        action: Option<transport::InterfacesAction>,
    },
    /// List known paths, or request one.
    Paths {
        /// Only paths to Mehr nodes.
        #[arg(long)]
        mehr: bool,
        /// Request a path (lists when absent).
        #[command(subcommand)]
        action: Option<transport::PathsAction>,
    },
    /// List Mehr nodes one hop away.
    Neighbours,
    /// Announce this node now.
    Announce,
    /// Show router counters: packets, drops by reason, table sizes.
    Stats,
    /// Send an encrypted message to a destination.
    Send(transport::SendArgs),
    /// Reply over an inbound link (one packet).
    Reply(transport::ReplyArgs),
    /// Listen on an app destination and print the messages that arrive.
    Listen(transport::ListenArgs),
    /// Deploy a WebAssembly module (a .wasm binary or WAT text) and offer its functions.
    Deploy(compute::DeployArgs),
    /// Remove a deployed module; its functions are no longer offered.
    Undeploy(compute::UndeployArgs),
    /// List the functions this node offers: WASM exports and functions served by SDK processes.
    Functions,
    /// Call a function. Input comes from --input FILE or stdin; output goes to stdout or -o FILE.
    Invoke(compute::InvokeArgs),
    /// Store and fetch objects in the node's local object store.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Show this node's balance: in the ledger, escrowed, free, and in channels.
    Balance,
    /// List this node's payment channels with their latest co-signed state.
    Channels,
    /// Open, pay through, or settle a payment channel with another Mehr node.
    Channel {
        /// What to do.
        #[command(subcommand)]
        command: ledger::ChannelCommand,
    },
    /// Mark peers trusted (relayed free, never charged), or list them.
    Trust {
        /// What to do.
        #[command(subcommand)]
        command: ledger::TrustCommand,
    },
    /// Summarise the CRDT settlement ledger this node holds.
    Ledger,
    /// Check a relay lottery ticket.
    Ticket {
        /// What to do.
        #[command(subcommand)]
        command: ledger::TicketCommand,
    },
    /// Show this node's signed advert (what it offers, at which prices), or change it.
    Offer {
        /// Change the offer (shows it when absent).
        #[command(subcommand)]
        action: Option<market::OfferAction>,
    },
    /// Find providers of a capability: nearest rings first, ranked by price, path cost,
    /// reputation and load.
    Discover(market::DiscoverArgs),
    /// List the agreements this node is a side of, show one, or follow changes.
    Agreements(market::AgreementsArgs),
    /// Propose, accept or cancel an agreement, or run a function on providers per tier.
    Agree {
        /// What to do.
        #[command(subcommand)]
        action: market::AgreeAction,
    },
    /// Show the reputation of the peers this node dealt with.
    Reputation {
        /// Only this node (hex id).
        node: Option<String>,
    },
    /// Show the marketplace's counters: adverts taken and refused, gossip per link.
    MarketStats,
    /// Mint, list and revoke API tokens with scopes (admin, readonly, invoke, pay).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show the effective configuration (secrets redacted), or change live settings.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Stop taking new work (invoke and pay calls); running calls finish.
    Drain {
        /// Take new work again.
        #[arg(long)]
        resume: bool,
    },
    /// Shut the node down gracefully (its supervisor restarts it).
    Shutdown {
        /// Why (logged by the node).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Act on many nodes at once, from an inventory file.
    Fleet(FleetArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = Output { json: cli.json };
    let command = match cli.command {
        // The fleet reaches its nodes from the inventory, not this node's options.
        Command::Fleet(args) => return fleet::run(args, &output).await,
        command => command,
    };
    let defaults = ConnectOptions::from_env();
    let options = ConnectOptions {
        endpoint: cli.endpoint,
        data_dir: cli.data_dir,
        // A file named here wins over MEHR_TOKEN.
        token: if cli.token_file.is_some() {
            None
        } else {
            defaults.token.clone()
        },
        token_file: cli.token_file,
        ca_cert: cli.ca_cert,
        ..defaults
    };
    let client = Client::connect_with(options).await?;
    match command {
        Command::Info => node::info(&client, &output).await,
        Command::Events => node::events(&client, &output).await,
        Command::Interfaces { action } => transport::interfaces(&client, &output, action).await,
        Command::Paths { mehr, action } => transport::paths(&client, &output, mehr, action).await,
        Command::Neighbours => transport::neighbours(&client, &output).await,
        Command::Announce => transport::announce(&client, &output).await,
        Command::Stats => transport::stats(&client, &output).await,
        Command::Send(args) => transport::send(&client, &output, args).await,
        Command::Reply(args) => transport::reply(&client, &output, args).await,
        Command::Listen(args) => transport::listen(&client, &output, args).await,
        Command::Deploy(args) => compute::deploy(&client, &output, args).await,
        Command::Undeploy(args) => compute::undeploy(&client, &output, args).await,
        Command::Functions => compute::functions(&client, &output).await,
        Command::Invoke(args) => compute::invoke(&client, &output, args).await,
        Command::Store { command } => store::run(&client, &output, command).await,
        Command::Balance => ledger::balance(&client, &output).await,
        Command::Channels => ledger::channels(&client, &output).await,
        Command::Channel { command } => ledger::channel(&client, &output, command).await,
        Command::Trust { command } => ledger::trust(&client, &output, command).await,
        Command::Ledger => ledger::ledger(&client, &output).await,
        Command::Ticket { command } => ledger::ticket(&client, &output, command).await,
        Command::Offer { action } => market::offer(&client, &output, action).await,
        Command::Discover(args) => market::discover(&client, &output, args).await,
        Command::Agreements(args) => market::agreements(&client, &output, args).await,
        Command::Agree { action } => market::agree(&client, &output, action).await,
        Command::Reputation { node } => market::reputation(&client, &output, node).await,
        Command::MarketStats => market::stats(&client, &output).await,
        Command::Token { command } => admin::token(&client, &output, command).await,
        Command::Config { command } => admin::config(&client, &output, command).await,
        Command::Drain { resume } => admin::drain(&client, &output, resume).await,
        Command::Shutdown { reason } => admin::shutdown(&client, &output, reason).await,
        Command::Fleet(_) => unreachable!("handled before connecting"),
    }
}
