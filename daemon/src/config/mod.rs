//! Daemon configuration: embedded defaults, then a TOML file, then `MEHR_*` environment
//! variables, then command-line flags — each layer overrides the one before.
//!
//! The layers are merged as TOML value trees before the result is deserialized once, so every
//! layer is checked by the same schema: an unknown key in the file is an error that names the
//! key. Environment variables are shared with every other program a user runs, so an unknown
//! `MEHR_*` variable is only reported (see [`ConfigReport::ignored_env`]), never fatal.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub mod interfaces;

/// Default TCP address of the gRPC API.
pub const DEFAULT_API_LISTEN: &str = mehr_sdk::layout::DEFAULT_TCP_ENDPOINT;

/// `MEHR_*` variables that are not settings: the config file's path (read by the flag parser)
/// and what clients (`mehr`, the SDKs) read. Skipped silently so one shell can set them all.
const NON_SETTING_ENV_VARS: &[&str] = &[
    "MEHR_CONFIG",
    "MEHR_ENDPOINT",
    "MEHR_TOKEN",
    "MEHR_TOKEN_FILE",
    "MEHR_INVENTORY",
    "MEHR_CA_CERT",
    "MEHR_TLS_DOMAIN",
];

/// The whole daemon configuration, as `mehrd --print-config` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the identity, store, API token and TLS material live.
    pub data_dir: PathBuf,
    /// How much of the protocol this node runs.
    pub participation: Participation,
    /// The gRPC API.
    pub api: ApiConfig,
    /// Logging.
    pub log: LogConfig,
    /// The mesh transport.
    pub transport: TransportConfig,
    /// Mesh interfaces (`[[interfaces]]` tables); replaces the defaults when given.
    pub interfaces: Vec<interfaces::InterfaceSpec>,
    /// Running functions: the WASM sandbox and functions served by SDK processes.
    pub compute: ComputeConfig,
    /// The local object store.
    pub storage: StorageConfig,
    /// Economics: genesis allocation, payment channels, relay lottery, ledger gossip.
    pub ledger: LedgerConfig,
    /// The capability marketplace: what this node offers, gossip, agreements, verification.
    pub market: MarketConfig,
    /// The Prometheus `/metrics` endpoint (off unless `listen` is set).
    pub metrics: MetricsConfig,
    /// OpenTelemetry trace export (off unless `otlp_endpoint` is set).
    pub telemetry: TelemetryConfig,
}

/// `[metrics]`: an HTTP listener serving the node's counters in Prometheus text format at
/// `/metrics`. Off by default; it carries no secrets but tells how busy the node is, so bind it
/// to loopback or a monitoring network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` on, e.g. `127.0.0.1:9464`; empty (the default) turns
    /// the endpoint off.
    pub listen: String,
}

impl MetricsConfig {
    /// The address to serve on, or `None` when the endpoint is off.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("metrics.listen", &self.listen)
    }
}

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP/gRPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; empty (the default) exports
    /// nothing and installs no OpenTelemetry layer at all.
    pub otlp_endpoint: String,
    /// The share (0.0 to 1.0) of traces this node starts that are recorded: API calls without
    /// a caller's `traceparent`, and mesh work outside a recorded call. A caller's or a peer's
    /// sampled trace is always continued, and one marked not sampled never recorded. Unsampled
    /// work makes no span at all, so a low share keeps tracing cheap under heavy load.
    pub sample_ratio: f64,
}

/// The default `telemetry.sample_ratio`: one trace in ten that the node starts itself. Enough
/// to see how calls behave under load at under 5 % of the throughput (BENCHMARKS.md,
/// "Telemetry overhead"); callers that send a sampled `traceparent` are always traced.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

impl TelemetryConfig {
    /// The collector's endpoint, or `None` when tracing export is off.
    pub fn endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.trim()).filter(|e| !e.is_empty())
    }
}

/// The economics part (`[ledger]`): payment channels, the relay lottery and the CRDT ledger.
///
/// The relay price is `transport.cost_per_byte`, the fee the node advertises in its announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The network's disclosed genesis allocation (`[[ledger.genesis]]` tables with `node`,
    /// 32 hex characters, and `amount_umhr`). Every node of a network must list the same
    /// allocation: it is the ledger's epoch-0 snapshot.
    pub genesis: Vec<GenesisAllocation>,
    /// Deposit, in μMHR, this node offers when it opens a channel on demand: a relay to a
    /// neighbour that sent it a paid packet without a channel (and asks the same of it), a
    /// consumer to a marketplace or storage provider it owes, near or far (or the charge, if
    /// larger).
    pub channel_deposit_umhr: u64,
    /// The largest deposit, in μMHR, this node commits when a peer's channel proposal asks it
    /// for one; larger requests are refused.
    pub max_requested_deposit_umhr: u64,
    /// Length of a gossip round in milliseconds; settlement timeouts (120 rounds) and dispute
    /// windows (2880 rounds) are counted in rounds.
    pub round_millis: u64,
    /// How often an unanswered channel proposal is sent again, in milliseconds.
    pub retry_millis: u64,
    /// How long a channel open waits for the peer's answer, in milliseconds.
    pub open_timeout_millis: u64,
    /// How often a relay reconsiders its win probability (one lottery period), in seconds.
    pub lottery_period_secs: u64,
    /// How often the node tells its neighbours a digest of its ledger, in seconds.
    pub gossip_interval_secs: u64,
    /// How often open channels whose state moved are checkpointed into the ledger, in seconds.
    pub checkpoint_interval_secs: u64,
    /// Length of a ledger epoch in seconds: the next epoch (compaction of the settlement
    /// records into a snapshot, escrow release, minting) is proposed this long after the
    /// previous one was adopted. Every node of a network must use the same value (the
    /// emission tail counts epochs per year from it).
    pub epoch_secs: u64,
    /// Forwarded-packet reports queued for the lottery; more are dropped (and counted), so
    /// relaying never waits for the ledger.
    pub relay_report_queue: usize,
}

/// One account of the genesis allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAllocation {
    /// The node id (identity hash), 32 hex characters.
    pub node: mehr_ledger::NodeId,
    /// Its allocation in μMHR.
    pub amount_umhr: u64,
}

impl LedgerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("round_millis", self.round_millis),
            ("retry_millis", self.retry_millis),
            ("open_timeout_millis", self.open_timeout_millis),
            ("lottery_period_secs", self.lottery_period_secs),
            ("gossip_interval_secs", self.gossip_interval_secs),
            ("checkpoint_interval_secs", self.checkpoint_interval_secs),
            ("epoch_secs", self.epoch_secs),
            ("relay_report_queue", self.relay_report_queue as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "ledger.{key} must be above zero"
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for allocation in &self.genesis {
            if !seen.insert(allocation.node) {
                return Err(ConfigError::Invalid(format!(
                    "ledger.genesis lists node {} twice",
                    allocation.node
                )));
            }
        }
        let total: u128 = self.genesis.iter().map(|a| u128::from(a.amount_umhr)).sum();
        if total > u128::from(u64::MAX) {
            return Err(ConfigError::Invalid(
                "ledger.genesis allocates more than 2^64 μMHR in total".into(),
            ));
        }
        Ok(())
    }
}

/// Participation level (seed 002): L0 relays only, L1 adds the economics, L2 is everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Participation {
    /// Transport only.
    L0,
    /// Transport, path costs, relay lottery, payment channels.
    L1,
    /// The full stack.
    L2,
}

/// Where and how the gRPC API is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve on a Unix socket (`<data_dir>/mehrd.sock`, owner-only).
    pub unix_socket: bool,
    /// TCP addresses to serve on. Loopback addresses are plaintext with a bearer token;
    /// any other address is served with TLS only.
    pub listen: Vec<SocketAddr>,
    /// TLS on TCP listeners: `auto` (TLS off loopback only), `always`, or `never` (refused
    /// when a listener is off loopback).
    pub tls: TlsMode,
    /// Extra DNS names and IP addresses for the self-signed certificate; the certificate is
    /// regenerated when this list changes.
    pub tls_extra_names: Vec<String>,
    /// Per-request timeout for unary calls, in seconds.
    pub request_timeout_secs: u64,
    /// Requests served at once across all connections; more are refused (load shedding).
    pub max_concurrent_requests: usize,
    /// Server-streaming calls (WatchEvents, Listen, Serve, GetObject, …) open at once across
    /// all connections; more are refused with RESOURCE_EXHAUSTED (STREAMS_EXHAUSTED).
    pub max_concurrent_streams: usize,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
    /// `host:port` of a plaintext listener that serves `grpc.health.v1` and nothing else,
    /// without a token: what Kubernetes' `grpc:` probes and load balancers can call (they
    /// speak neither TLS nor bearer tokens). Empty (the default) turns it off. It tells only
    /// whether the node and its parts serve, never anything secret.
    pub health_listen: String,
}

impl ApiConfig {
    /// The health listener's address, or `None` when it is off.
    pub fn health_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen("api.health_listen", &self.health_listen)
    }
}

/// Parses an optional `host:port` setting: empty means off.
fn parse_listen(setting: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    value.trim().parse().map(Some).map_err(|e| {
        ConfigError::Invalid(format!(
            "{setting} `{value}` is not a host:port address: {e}"
        ))
    })
}

/// When TCP listeners use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS for listeners off loopback, plaintext on loopback.
    Auto,
    /// TLS for every TCP listener.
    Always,
    /// Never TLS; the daemon refuses to listen off loopback.
    Never,
}

/// The capability marketplace (`[market]`): what the node advertises and at which prices, how
/// often it gossips, and how agreements are negotiated and verified. Prices are in μMHR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// Take part in the marketplace at all (advertise, discover, form agreements).
    pub enabled: bool,
    /// Advertise the mesh interfaces as a relay capability (at `transport.cost_per_byte`).
    pub offer_relay: bool,
    /// Advertise free space of the object store as a storage capability.
    pub offer_storage: bool,
    /// Advertise compute: WASM and the functions registered on this node.
    pub offer_compute: bool,
    /// Price of storage, μMHR per byte per day.
    pub storage_price_per_byte_day_umhr: u64,
    /// The storage medium advertised: `volatile`, `flash`, `ssd` or `hdd`.
    pub storage_class: String,
    /// The CPU class advertised: `micro`, `low`, `medium`, `high`, or `auto` (from the number
    /// of CPU cores: 1 low, 2–7 medium, 8 or more high).
    pub cpu_class: String,
    /// When the node is up: `always_on`, `solar` or `intermittent`.
    pub availability: String,
    /// Whether the node's interfaces reach the Internet (the gateway capability).
    pub internet_gateway: bool,
    /// Lifetime of the node's advert at its receivers, in seconds (1–86400).
    pub advert_ttl_secs: u32,
    /// Length of a gossip round in milliseconds: adverts and summaries go out to neighbours
    /// once per round, within each link's 2 % budget.
    pub gossip_round_ms: u64,
    /// Milliseconds between presence beacons to neighbours on links of 10 kbit/s or more.
    pub beacon_interval_ms: u64,
    /// How long a discovery waits for the answers of one ring before it widens, milliseconds.
    pub pull_timeout_ms: u64,
    /// Milliseconds between heartbeat pings on an active agreement this node consumes.
    pub heartbeat_interval_ms: u64,
    /// Consecutive unanswered pings that end an agreement and stop its payment.
    pub heartbeat_max_misses: u32,
    /// Duration of the agreements this node proposes for verified calls, in seconds.
    pub agreement_duration_secs: u32,
    /// Seconds a consumer has to countersign this node's offers (1–300).
    pub offer_validity_secs: u32,
    /// Agreements this node provides at once; further requests are rejected as busy.
    pub max_active_agreements: u32,
    /// Resell the functions of neighbours that this node lacks, under its own agreements
    /// (capability chains); they are advertised at the neighbour's price plus the markup.
    pub resell: bool,
    /// Resale markup in percent of the upstream price (raised to the 2 % burn's break-even).
    pub resale_markup_percent: u32,
    /// Seconds a provider caught returning a wrong result is not chosen for compute.
    pub exclusion_secs: u64,
    /// Bytes delivered through a relay under a relay agreement that are billed at once
    /// (PROTOCOL.md pays relaying per 1 MB chunk); fewer are billed after 10 s.
    pub relay_charge_bytes: u64,
    /// Unpaid dues, μMHR, a consumer may run up with this node as provider: charges for
    /// service delivered that its payment channel has not paid yet. Past it, jobs from that
    /// consumer are refused ("payment overdue") until it pays; 0 serves only consumers who
    /// owe nothing.
    pub consumer_credit_umhr: u64,
}

impl MarketConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("advert_ttl_secs", u64::from(self.advert_ttl_secs)),
            ("gossip_round_ms", self.gossip_round_ms),
            ("beacon_interval_ms", self.beacon_interval_ms),
            ("pull_timeout_ms", self.pull_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_max_misses", u64::from(self.heartbeat_max_misses)),
            (
                "agreement_duration_secs",
                u64::from(self.agreement_duration_secs),
            ),
            ("offer_validity_secs", u64::from(self.offer_validity_secs)),
            ("relay_charge_bytes", self.relay_charge_bytes),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "market.{key} must be above zero"
            )));
        }
        let ranges = [
            ("advert_ttl_secs", u64::from(self.advert_ttl_secs), 86_400),
            (
                "offer_validity_secs",
                u64::from(self.offer_validity_secs),
                300,
            ),
        ];
        for (key, value, max) in ranges {
            if value > max {
                return Err(ConfigError::Invalid(format!(
                    "market.{key} is {value}, at most {max}"
                )));
            }
        }
        let choices: [(&str, &str, &[&str]); 3] = [
            (
                "storage_class",
                &self.storage_class,
                &["volatile", "flash", "ssd", "hdd"],
            ),
            (
                "cpu_class",
                &self.cpu_class,
                &["auto", "micro", "low", "medium", "high"],
            ),
            (
                "availability",
                &self.availability,
                &["always_on", "solar", "intermittent"],
            ),
        ];
        for (key, value, allowed) in choices {
            if !allowed.contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "market.{key} is `{value}`, expected one of {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The local object store's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Bytes of object data the node stores in total (what it will advertise to the network).
    /// A Put that would go over it fails with RESOURCE_EXHAUSTED.
    pub available_bytes: u64,
    /// The largest object a Put may store, in bytes.
    pub max_object_size: u64,
    /// Seconds between two rounds of challenges of every shard this node placed on
    /// providers; 0 turns periodic challenges off.
    pub challenge_interval_secs: u64,
    /// Seconds one request to a storage provider (or its answer) may take.
    pub remote_timeout_secs: u64,
    /// Data shards (`k`) of a replication that does not name them.
    pub data_shards: u8,
    /// Parity shards (`m`) of a replication that does not name them.
    pub parity_shards: u8,
    /// Agreement duration of a replication that does not name one, seconds.
    pub agreement_duration_secs: u64,
    /// The longest a consumer may ask this node to hold a shard, seconds: an offer that
    /// expires later is refused (no one locks space here for good).
    pub max_hold_secs: u64,
    /// Bytes of shards this node holds for other nodes, all consumers together (at most
    /// `available_bytes`): the provider pool. Set it below `available_bytes` so the
    /// operator's own Puts keep the rest whatever remote consumers store.
    pub provider_bytes: u64,
    /// Bytes of shards one consumer may keep here (held and being received together).
    pub max_bytes_per_consumer: u64,
}

impl StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.remote_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "storage.remote_timeout_secs must be above zero".into(),
            ));
        }
        if self.max_hold_secs == 0 {
            return Err(ConfigError::Invalid(
                "storage.max_hold_secs must be above zero".into(),
            ));
        }
        mehr_storage::ErasureParams::new(
            self.data_shards,
            self.parity_shards,
            mehr_storage::DEFAULT_PIECE_SIZE,
        )
        .map_err(|e| {
            ConfigError::Invalid(format!("storage.data_shards / storage.parity_shards: {e}"))
        })?;
        Ok(())
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `mehrd=debug,tonic=info`, …
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The compute part: limits of the WASM sandbox and of functions served by SDK processes.
///
/// The WASM limits are both the default of every call and the most a call may use: a request
/// may only lower them. Their defaults are the protocol's Light tier; the Full tier is
/// `wasm_fuel = 10000000000`, `wasm_memory_mib = 256`, `wasm_deadline_ms = 30000`,
/// `wasm_max_input_bytes = wasm_max_output_bytes = 16777216`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeConfig {
    /// Largest WASM module accepted by DeployModule, in bytes.
    pub max_module_bytes: u32,
    /// Keep compiled modules in `<data_dir>/compute-cache` so restarts load instead of
    /// recompiling.
    pub compile_cache: bool,
    /// Fuel a WASM call may burn (1 fuel ≈ 1 executed instruction).
    pub wasm_fuel: u64,
    /// Linear memory a WASM call may use, in MiB.
    pub wasm_memory_mib: u32,
    /// Wall-clock time a WASM call may run, in milliseconds.
    pub wasm_deadline_ms: u64,
    /// Largest input of a WASM call, in bytes.
    pub wasm_max_input_bytes: u32,
    /// Largest output of a WASM call, in bytes.
    pub wasm_max_output_bytes: u32,
    /// WASM calls that run at once, node-wide (each holds a sandbox slot); more wait in a queue.
    pub wasm_max_concurrent_calls: u32,
    /// Price of WASM calls advertised by this node, in μMHR per million fuel.
    pub wasm_price_per_million_fuel_umhr: u64,
    /// Deadline of a call to a served function when the caller names none, in milliseconds.
    pub served_default_deadline_ms: u64,
    /// Longest deadline a call to a served function may have, in milliseconds.
    pub served_max_deadline_ms: u64,
    /// Largest input a served function may accept, in bytes (the ceiling for registrations).
    pub served_max_input_bytes: u32,
    /// Largest total output of one call to a served function, in bytes.
    pub served_max_output_bytes: u32,
    /// Calls that may wait for a free slot, per served function and for the WASM sandbox as a
    /// whole; a call beyond that fails at once with RESOURCE_EXHAUSTED.
    pub max_queued_invocations: u32,
}

impl ComputeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_module_bytes", u64::from(self.max_module_bytes)),
            ("wasm_fuel", self.wasm_fuel),
            ("wasm_memory_mib", u64::from(self.wasm_memory_mib)),
            ("wasm_deadline_ms", self.wasm_deadline_ms),
            (
                "wasm_max_concurrent_calls",
                u64::from(self.wasm_max_concurrent_calls),
            ),
            (
                "served_default_deadline_ms",
                self.served_default_deadline_ms,
            ),
            ("served_max_deadline_ms", self.served_max_deadline_ms),
            (
                "served_max_input_bytes",
                u64::from(self.served_max_input_bytes),
            ),
            (
                "served_max_output_bytes",
                u64::from(self.served_max_output_bytes),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!(
                "compute.{key} must be above zero"
            )));
        }
        // A 32-bit WASM memory holds at most 4 GiB.
        if self.wasm_memory_mib > 4096 {
            return Err(ConfigError::Invalid(format!(
                "compute.wasm_memory_mib is {}, a WASM memory holds at most 4096 MiB",
                self.wasm_memory_mib
            )));
        }
        // Deadlines become instants; a day is far beyond any call and far from overflow.
        const DAY_MS: u64 = 24 * 60 * 60 * 1000;
        for (key, value) in [
            ("wasm_deadline_ms", self.wasm_deadline_ms),
            ("served_max_deadline_ms", self.served_max_deadline_ms),
        ] {
            if value > DAY_MS {
                return Err(ConfigError::Invalid(format!(
                    "compute.{key} is {value}, at most {DAY_MS} (one day)"
                )));
            }
        }
        // Each sandbox slot reserves about 4 GiB of address space.
        if self.wasm_max_concurrent_calls > 1024 {
            return Err(ConfigError::Invalid(format!(
                "compute.wasm_max_concurrent_calls is {}, at most 1024",
                self.wasm_max_concurrent_calls
            )));
        }
        if self.served_default_deadline_ms > self.served_max_deadline_ms {
            return Err(ConfigError::Invalid(format!(
                "compute.served_default_deadline_ms ({}) is above compute.served_max_deadline_ms ({})",
                self.served_default_deadline_ms, self.served_max_deadline_ms
            )));
        }
        Ok(())
    }
}

/// Settings given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--api-listen` (may repeat).
    pub api_listen: Vec<SocketAddr>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

/// Things noticed while loading that are worth logging once logging is up.
#[derive(Debug, Clone, Default)]
pub struct ConfigReport {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// `MEHR_*` environment variables that match no setting.
    pub ignored_env: Vec<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or does not fit the schema.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, including the offending key.
        message: String,
    },
    /// An environment variable has a value of the wrong type.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The merged configuration is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The embedded defaults: data under the user's data directory, API on the Unix socket and
    /// on loopback TCP.
    pub fn defaults() -> Self {
        Config {
            data_dir: mehr_sdk::layout::default_data_dir(),
            participation: Participation::L2,
            api: ApiConfig {
                unix_socket: true,
                listen: vec![DEFAULT_API_LISTEN.parse().expect("constant address parses")],
                tls: TlsMode::Auto,
                tls_extra_names: Vec::new(),
                request_timeout_secs: 30,
                max_concurrent_requests: 512,
                // The same as `api::control::DEFAULT_MAX_STREAMS` (config sits below the API).
                max_concurrent_streams: 256,
                shutdown_grace_secs: 4,
                health_listen: String::new(),
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
            },
            transport: TransportConfig::default(),
            interfaces: interfaces::default_interfaces(),
            compute: ComputeConfig {
                max_module_bytes: 8 * 1024 * 1024,
                compile_cache: true,
                wasm_fuel: 100_000_000,
                wasm_memory_mib: 16,
                wasm_deadline_ms: 5_000,
                wasm_max_input_bytes: 1024 * 1024,
                wasm_max_output_bytes: 1024 * 1024,
                wasm_max_concurrent_calls: 64,
                wasm_price_per_million_fuel_umhr: 1,
                served_default_deadline_ms: 30_000,
                served_max_deadline_ms: 600_000,
                served_max_input_bytes: 16 * 1024 * 1024,
                served_max_output_bytes: 16 * 1024 * 1024,
                max_queued_invocations: 64,
            },
            storage: StorageConfig {
                available_bytes: 10 << 30,
                max_object_size: 4 << 30,
                challenge_interval_secs: 3600,
                remote_timeout_secs: 60,
                data_shards: 4,
                parity_shards: 2,
                agreement_duration_secs: 30 * 86_400,
                max_hold_secs: 365 * 86_400,
                provider_bytes: 2 << 30,
                max_bytes_per_consumer: 256 << 20,
            },
            ledger: LedgerConfig {
                genesis: Vec::new(),
                channel_deposit_umhr: 1_000_000,
                max_requested_deposit_umhr: 1_000_000,
                round_millis: 60_000,
                retry_millis: 2_000,
                open_timeout_millis: 30_000,
                lottery_period_secs: 300,
                gossip_interval_secs: 30,
                checkpoint_interval_secs: 600,
                epoch_secs: 600,
                relay_report_queue: 8_192,
            },
            market: MarketConfig {
                enabled: true,
                offer_relay: true,
                offer_storage: true,
                offer_compute: true,
                storage_price_per_byte_day_umhr: 0,
                storage_class: "ssd".into(),
                cpu_class: "auto".into(),
                availability: "always_on".into(),
                internet_gateway: false,
                advert_ttl_secs: 5_400,
                gossip_round_ms: 60_000,
                beacon_interval_ms: 10_000,
                pull_timeout_ms: 5_000,
                heartbeat_interval_ms: 60_000,
                heartbeat_max_misses: 3,
                agreement_duration_secs: 3_600,
                offer_validity_secs: 30,
                max_active_agreements: 1_024,
                resell: false,
                resale_markup_percent: 5,
                exclusion_secs: 86_400,
                relay_charge_bytes: 1_000_000,
                consumer_credit_umhr: 100_000,
            },
            metrics: MetricsConfig {
                listen: String::new(),
            },
            telemetry: TelemetryConfig {
                otlp_endpoint: String::new(),
                sample_ratio: DEFAULT_SAMPLE_RATIO,
            },
        }
    }

    /// Loads the configuration: defaults, then `file` (if given), then the `MEHR_*` variables in
    /// `env`, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &FlagOverrides,
    ) -> Result<(Config, ConfigReport), ConfigError> {
        let mut report = ConfigReport::default();
        let mut tree = toml::Value::try_from(Config::defaults())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let layer: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            // Check the file on its own first so the error names the file's key, not a merge.
            check_schema(&tree, &layer).map_err(|message| ConfigError::File {
                path: path.to_path_buf(),
                message,
            })?;
            merge(&mut tree, layer);
            report.file = Some(path.to_path_buf());
        }

        for (var, value) in env {
            let Some(name) = var.strip_prefix("MEHR_") else {
                continue;
            };
            if NON_SETTING_ENV_VARS.contains(&var.as_str()) {
                continue;
            }
            match env_key_path(&tree, name) {
                Some(path) => {
                    let parsed = parse_env_value(&tree, &path, &value).map_err(|message| {
                        ConfigError::Env {
                            var: var.clone(),
                            message,
                        }
                    })?;
                    set_path(&mut tree, &path, parsed);
                }
                None => report.ignored_env.push(var),
            }
        }

        let mut config: Config = tree
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        if let Some(dir) = &flags.data_dir {
            config.data_dir = dir.clone();
        }
        if !flags.api_listen.is_empty() {
            config.api.listen = flags.api_listen.clone();
        }
        if let Some(level) = &flags.log_level {
            config.log.level = level.clone();
        }
        if let Some(format) = flags.log_format {
            config.log.format = format;
        }
        config.validate()?;
        Ok((config, report))
    }

    /// Checks rules that the schema alone cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.api.unix_socket && self.api.listen.is_empty() {
            return Err(ConfigError::Invalid(
                "the API has no endpoint: enable api.unix_socket or give api.listen".into(),
            ));
        }
        if self.api.tls == TlsMode::Never
            && let Some(addr) = self.api.listen.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(ConfigError::Invalid(format!(
                "api.listen has {addr}, which is off loopback, but api.tls is \"never\": \
                 the API is only served off loopback with TLS"
            )));
        }
        for spec in &self.interfaces {
            spec.kind()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.api.request_timeout_secs == 0
            || self.api.max_concurrent_requests == 0
            || self.api.max_concurrent_streams == 0
        {
            return Err(ConfigError::Invalid(
                "api.request_timeout_secs, api.max_concurrent_requests and \
                 api.max_concurrent_streams must be above zero"
                    .into(),
            ));
        }
        self.metrics.listen_addr()?;
        self.api.health_listen_addr()?;
        if let Some(endpoint) = self.telemetry.endpoint()
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "telemetry.otlp_endpoint `{endpoint}` must be an http:// or https:// URL"
            )));
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "telemetry.sample_ratio {} must be between 0.0 and 1.0",
                self.telemetry.sample_ratio
            )));
        }
        self.compute.validate()?;
        self.storage.validate()?;
        self.ledger.validate()?;
        self.market.validate()?;
        Ok(())
    }

    /// The path of the API's Unix socket.
    pub fn unix_socket_path(&self) -> PathBuf {
        self.data_dir.join(mehr_sdk::layout::SOCKET_FILE)
    }

    /// Renders the configuration as TOML (what `--print-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config always serializes")
    }
}

/// Finds the first key of `layer` that the defaults do not have, or a table given where a
/// value is expected (and the reverse).
fn check_schema(defaults: &toml::Value, layer: &toml::Value) -> Result<(), String> {
    fn walk(defaults: &toml::Value, layer: &toml::Value, prefix: &str) -> Result<(), String> {
        let (toml::Value::Table(known), toml::Value::Table(given)) = (defaults, layer) else {
            return Ok(());
        };
        for (key, value) in given {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match known.get(key) {
                None => return Err(format!("unknown key `{path}`")),
                Some(known_value @ toml::Value::Table(_)) => {
                    if !value.is_table() {
                        return Err(format!("`{path}` must be a table"));
                    }
                    walk(known_value, value, &path)?;
                }
                Some(_) if value.is_table() => return Err(format!("`{path}` must not be a table")),
                // The one array of tables: check each entry so the error names it.
                Some(toml::Value::Array(_)) if path == "interfaces" => {
                    let entries = value
                        .as_array()
                        .ok_or_else(|| format!("`{path}` must be an array of tables"))?;
                    for (i, entry) in entries.iter().enumerate() {
                        let spec: interfaces::InterfaceSpec =
                            entry.clone().try_into().map_err(|e: toml::de::Error| {
                                format!("`interfaces[{i}]`: {}", e.message())
                            })?;
                        spec.kind()
                            .map_err(|e| format!("`interfaces[{i}]`: {}", e.message))?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
    walk(defaults, layer, "")
}

/// Overlays `layer` onto `base`, table by table.
fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_table() && value.is_table() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

/// Maps `LOG_LEVEL` to `["log", "level"]` and `DATA_DIR` to `["data_dir"]`: the first word
/// names a section when one exists with that name, the rest is the key.
fn env_key_path(tree: &toml::Value, name: &str) -> Option<Vec<String>> {
    let lower = name.to_ascii_lowercase();
    let table = tree.as_table()?;
    if table.get(&lower).is_some_and(|v| !v.is_table()) {
        return Some(vec![lower]);
    }
    let (section, key) = lower.split_once('_')?;
    let section_table = table.get(section)?.as_table()?;
    section_table.get(key).filter(|v| !v.is_table())?;
    Some(vec![section.to_string(), key.to_string()])
}

/// Parses an environment value with the type of the default at `path`: strings stay strings,
/// everything else (numbers, booleans, lists) is read as a TOML value, and a list also accepts
/// comma-separated items.
fn parse_env_value(tree: &toml::Value, path: &[String], raw: &str) -> Result<toml::Value, String> {
    let mut current = tree;
    for key in path {
        current = current
            .get(key)
            .ok_or_else(|| format!("no setting {}", path.join(".")))?;
    }
    match current {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_string())),
        toml::Value::Array(_) if !raw.trim_start().starts_with('[') => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )),
        _ => {
            let doc: toml::Table = toml::from_str(&format!("v = {raw}"))
                .map_err(|_| format!("`{raw}` is not a valid value for {}", path.join(".")))?;
            doc.get("v")
                .cloned()
                .ok_or_else(|| format!("empty value for {}", path.join(".")))
        }
    }
}

fn set_path(tree: &mut toml::Value, path: &[String], value: toml::Value) {
    let mut current = tree;
    for key in &path[..path.len() - 1] {
        current = current
            .get_mut(key)
            .expect("env_key_path only returns existing paths");
    }
    if let Some(table) = current.as_table_mut() {
        table.insert(path[path.len() - 1].clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: FlagOverrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mehrd.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|_| path.as_path()), env, &flags).map(|(c, _)| c)
    }

    #[test]
    fn defaults_are_loopback_and_unix_socket() {
        let config = load(None, &[], FlagOverrides::default()).unwrap();
        assert!(config.api.unix_socket);
        assert_eq!(config.api.listen, vec![DEFAULT_API_LISTEN.parse().unwrap()]);
        assert!(config.data_dir.ends_with("mehr"));
    }

    #[test]
    fn layers_override_in_order() {
        let file = "data_dir = \"/from/file\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n";
        let env = [("MEHR_LOG_LEVEL", "warn"), ("MEHR_DATA_DIR", "/from/env")];
        let config = load(Some(file), &env, FlagOverrides::default()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.log.level, "warn");
        assert_eq!(
            config.log.format,
            LogFormat::Json,
            "the file's value stays where env is silent"
        );

        let flags = FlagOverrides {
            data_dir: Some("/from/flag".into()),
            ..Default::default()
        };
        let config = load(Some(file), &env, flags).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let err = load(
            Some("[api]\nlisten_on = []\n"),
            &[],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown key `api.listen_on`"),
            "{err}"
        );
        let err = load(Some("colour = 1\n"), &[], FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown key `colour`"), "{err}");
    }

    #[test]
    fn env_values_are_typed() {
        let env = [
            ("MEHR_API_LISTEN", "127.0.0.1:1, 127.0.0.1:2"),
            ("MEHR_API_UNIX_SOCKET", "false"),
        ];
        let config = load(None, &env, FlagOverrides::default()).unwrap();
        assert_eq!(config.api.listen.len(), 2);
        assert!(!config.api.unix_socket);
        let err = load(
            None,
            &[("MEHR_API_REQUEST_TIMEOUT_SECS", "soon")],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("MEHR_API_REQUEST_TIMEOUT_SECS"),
            "{err}"
        );
    }

    #[test]
    fn unknown_env_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("MEHR_NO_SUCH_THING".to_string(), "1".to_string()),
            ("MEHR_TOKEN".into(), "x".into()),
        ];
        let flags = FlagOverrides {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let (_, report) = Config::load(None, env, &flags).unwrap();
        assert_eq!(report.ignored_env, vec!["MEHR_NO_SUCH_THING".to_string()]);
    }

    #[test]
    fn off_loopback_without_tls_is_refused() {
        let file = "[api]\nlisten = [\"0.0.0.0:7440\"]\ntls = \"never\"\n";
        let err = load(Some(file), &[], FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("off loopback"), "{err}");
    }

    #[test]
    fn interface_tables_are_checked_with_their_index() {
        let file = "[[interfaces]]\ntype = \"tcp_server\"\nlisten_port = 4242\n\n[[interfaces]]\ntype = \"udp\"\nlisten_prot = 1\n";
        let err = load(Some(file), &[], FlagOverrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("`interfaces[1]`") && err.to_string().contains("listen_prot"),
            "{err}"
        );
        let file = "[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"h\"\n";
        let err = load(Some(file), &[], FlagOverrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("`target_port` is required"),
            "{err}"
        );
        let config = load(None, &[("MEHR_INTERFACES", "[]")], FlagOverrides::default()).unwrap();
        assert!(
            config.interfaces.is_empty(),
            "an empty list turns the default interfaces off"
        );
    }

    #[test]
    fn compute_settings_are_checked() {
        let err = load(
            Some("[compute]\nwasm_fuel = 0\n"),
            &[],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("compute.wasm_fuel must be above zero"),
            "{err}"
        );
        let err = load(
            None,
            &[("MEHR_COMPUTE_SERVED_DEFAULT_DEADLINE_MS", "700000")],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("served_max_deadline_ms"), "{err}");
        let err = load(
            None,
            &[("MEHR_COMPUTE_WASM_DEADLINE_MS", "86400001")],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("one day"), "{err}");
        let config = load(
            None,
            &[("MEHR_COMPUTE_MAX_QUEUED_INVOCATIONS", "3")],
            FlagOverrides::default(),
        )
        .unwrap();
        assert_eq!(config.compute.max_queued_invocations, 3);
    }

    #[test]
    fn storage_limits_come_from_file_and_env() {
        let file = "[storage]\navailable_bytes = 1000\nmax_object_size = 10\n";
        let env = [("MEHR_STORAGE_MAX_OBJECT_SIZE", "20")];
        let config = load(Some(file), &env, FlagOverrides::default()).unwrap();
        assert_eq!(config.storage.available_bytes, 1000);
        assert_eq!(config.storage.max_object_size, 20);
    }

    #[test]
    fn market_settings_are_checked() {
        let config = load(
            Some("[market]\ngossip_round_ms = 1000\nresell = true\n"),
            &[("MEHR_MARKET_HEARTBEAT_MAX_MISSES", "5")],
            FlagOverrides::default(),
        )
        .unwrap();
        assert_eq!(config.market.gossip_round_ms, 1000);
        assert!(config.market.resell);
        assert_eq!(config.market.heartbeat_max_misses, 5);
        let err = load(
            Some("[market]\nheartbeat_interval_ms = 0\n"),
            &[],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("market.heartbeat_interval_ms must be above zero"),
            "{err}"
        );
        let err = load(
            Some("[market]\ncpu_class = \"huge\"\n"),
            &[],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("market.cpu_class is `huge`"),
            "{err}"
        );
        let err = load(
            Some("[market]\noffer_validity_secs = 301\n"),
            &[],
            FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 300"), "{err}");
    }

    #[test]
    fn printed_config_loads_back_identically() {
        let config = load(None, &[], FlagOverrides::default()).unwrap();
        let reloaded = load(Some(&config.to_toml()), &[], FlagOverrides::default()).unwrap();
        assert_eq!(config, reloaded);
    }
}

/// Transport settings (`[transport]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// Forward packets and rebroadcast announces for others (Reticulum's `enable_transport`).
    pub enabled: bool,
    /// Seconds between the node's periodic announces.
    pub announce_interval_secs: u64,
    /// This node's relay fee in μMHR per byte, advertised in its path costs.
    pub cost_per_byte: f64,
    /// Largest message accepted or sent over a link, in bytes.
    pub max_message_bytes: usize,
    /// Bounds on what remote peers can make the transport spend (`[transport.limits]`).
    #[serde(default)]
    pub limits: TransportLimits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            enabled: true,
            announce_interval_secs: 1800,
            cost_per_byte: 0.0,
            max_message_bytes: 16 << 20,
            limits: TransportLimits::default(),
        }
    }
}

/// Bounds on what remote peers can make the transport spend (`[transport.limits]`; see
/// docs/PROTOCOL.md §Limits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportLimits {
    /// Inbound announces one interface may have verified per second, per class (refreshes
    /// of the paths it carries; everything else). 0 disables the limit.
    pub announces_per_second: f64,
    /// Announces an interface may send in a burst, per class, before the rate applies.
    pub announce_burst: u32,
    /// Inbound TCP connections held at once, over all TCP server interfaces.
    pub max_inbound_tcp: usize,
    /// Inbound TCP connections held at once from one IP address.
    pub max_inbound_tcp_per_ip: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            announces_per_second: 20.0,
            announce_burst: 200,
            max_inbound_tcp: 256,
            max_inbound_tcp_per_ip: 8,
        }
    }
}
