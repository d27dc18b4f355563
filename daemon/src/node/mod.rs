//! The node: starts its parts in order (data dir, identity, store, transport, compute, storage,
//! market, API), and stops them in reverse on shutdown.
//!
//! This is the one place that knows every part: it hands each part the others it needs behind
//! the contracts of `crate::seams` (the market gets the compute part as `LocalFunctions`, the
//! object store as `StorageRoom`, the ledger as `Payments`; storage gets the ledger as a
//! `PeerPayer`) and keeps the glue that belongs to no part (`relay_price`).

mod metrics;
mod relay_price;

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        self, AdminApi, AdminParts, ApiCallMetrics, ApiError, ComputeApi, Listeners, MarketApi,
        NodeApi, NodeFacts, RunningApi, Services, StorageApi, control::ApiControl,
        health::HealthInputs, tokens::TokenRegistry,
    },
    compute::{self, Compute},
    config::Config,
    data_dir::{DataDir, DataDirError, STORE_DIR},
    events::{EventBus, EventKind},
    identity::{IdentityError, NodeIdentity},
    ledger::{ChannelPayer, ChannelPayments},
    market::{Market, MarketParts, OfferSettings},
    storage::{
        ObjectStore, StorageError, StorageLimits,
        remote::{RemoteParts, RemoteSettings, RemoteStorage},
    },
    store::{META, Store, StoreError},
};

/// Store key under which the data dir's identity hash is recorded on first start.
const IDENTITY_HASH_KEY: &str = "identity_hash";

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory is unusable or in use.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The identity could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The API could not be served.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The mesh transport could not start (an interface failed to open, typically).
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// The compute part could not start.
    #[error(transparent)]
    Compute(#[from] compute::StartError),
    /// The ledger part could not start.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Remote storage could not start.
    #[error("remote storage: {0}")]
    RemoteStorage(#[from] crate::storage::remote::RemoteError),
    /// The marketplace could not start.
    #[error("marketplace: {0}")]
    Market(#[from] crate::market::MarketError),
    /// The metrics endpoint could not be bound.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// `metrics.listen`.
        address: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The minted API tokens could not be read.
    #[error("API tokens: {0}")]
    Tokens(#[from] crate::api::tokens::TokenError),
}

/// A running node.
pub struct Node {
    facts: Arc<NodeFacts>,
    metrics_address: Option<std::net::SocketAddr>,
    events: Arc<EventBus>,
    store: Store,
    api: RunningApi,
    control: Arc<ApiControl>,
    transport_task: tokio::task::JoinHandle<()>,
    ledger_task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    grace: Duration,
    // Dropped last: the lock outlives everything that writes into the directory.
    _data_dir: DataDir,
}

impl Node {
    /// Starts a node with `config`.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        let data_dir = DataDir::open(&config.data_dir)?;
        let identity = NodeIdentity::load_or_create(data_dir.path())?;
        let store = Store::open(&data_dir.path().join(STORE_DIR))?;
        check_identity(&store, &identity, &data_dir)?;
        let token = data_dir.api_token()?;
        let tokens = TokenRegistry::open(data_dir.path(), &token)?;
        let control = ApiControl::new(
            Duration::from_secs(config.api.request_timeout_secs),
            config.api.max_concurrent_requests,
        );
        control.set_max_streams(config.api.max_concurrent_streams);

        let listeners = Listeners::bind(
            &config.api,
            &data_dir.path().join(mehr_sdk::layout::SOCKET_FILE),
        )?;
        if let Some(address) = listeners.health_address() {
            tracing::info!(%address, "serving grpc.health.v1 alone, in plaintext, without a token");
        }
        let tls = if listeners.needs_tls() {
            let material = api::tls::load_or_generate(data_dir.path(), &config.api.tls_extra_names)
                .map_err(ApiError::from)?;
            tracing::info!(cert = %material.cert_path.display(), "API TLS certificate (give it to clients as their CA)");
            Some(material)
        } else {
            None
        };

        let mut facts = NodeFacts::new(
            &identity,
            config.participation,
            data_dir.path().to_path_buf(),
        );
        facts.endpoints = listeners.endpoints().to_vec();
        let facts = Arc::new(facts);
        let events = Arc::new(EventBus::default());
        let shutdown = CancellationToken::new();
        let (transport, transport_task) = crate::transport::start(
            identity.keys().clone(),
            config.transport.clone(),
            config.interfaces.clone(),
            events.clone(),
            shutdown.child_token(),
        )
        .await?;
        // The market says which relays it pays under agreements; the ledger declines their
        // lottery tickets for this node's own packets.
        let (relay_cover, relay_covered) = tokio::sync::watch::channel(Default::default());
        // The market replaces these with its persisted offer when it starts; without a market
        // the configuration's terms hold.
        let (storage_terms, storage_offer) =
            tokio::sync::watch::channel(OfferSettings::from_config(&config).storage_terms());
        // Drops by the parts, by reason, for GetStats.
        // One registry for the parts' drops and the API's refused streams.
        let part_drops = control.drops();
        let (ledger, ledger_task) = crate::ledger::start(crate::ledger::LedgerStart {
            store: store.clone(),
            identity: identity.keys().clone(),
            config: config.ledger.clone(),
            price_per_byte: config.transport.cost_per_byte,
            charge_relays: config.participation != crate::config::Participation::L0,
            transport: transport.clone(),
            events: events.clone(),
            relay_cover: relay_covered,
            drops: part_drops.clone(),
            stop: shutdown.child_token(),
        })
        .await?;
        let compute = Compute::start(
            &config.compute,
            store.clone(),
            events.clone(),
            data_dir.path(),
            shutdown.child_token(),
        )
        .await?;
        let limits = StorageLimits {
            available_bytes: config.storage.available_bytes,
            max_object_size: config.storage.max_object_size,
        };
        let (objects, _) = ObjectStore::open(store.clone(), limits, events.clone())?;
        let health_inputs = HealthInputs {
            control: control.clone(),
            objects: objects.clone(),
            market_enabled: config.market.enabled,
            transport_task: transport_task.abort_handle(),
            ledger_task: ledger_task.abort_handle(),
        };
        let admin = AdminApi::new(AdminParts {
            tokens: tokens.clone(),
            control: control.clone(),
            facts: facts.clone(),
            transport: transport.clone(),
            ledger: ledger.clone(),
            health: health_inputs,
            config: toml::Table::try_from(&config).expect("the config always serializes"),
        });
        let remote = RemoteStorage::start(RemoteParts {
            identity: identity.keys().clone(),
            transport: transport.clone(),
            objects: objects.clone(),
            store: store.clone(),
            settings: RemoteSettings::from_config(&config.storage),
            events: events.clone(),
            shutdown: shutdown.child_token(),
            terms: storage_offer,
            drops: part_drops.clone(),
            payer: Some(Arc::new(ChannelPayer::new(
                ledger.clone(),
                config.ledger.channel_deposit_umhr,
            ))),
        })
        .await?;
        let market = if config.market.enabled {
            Some(
                Market::start(MarketParts {
                    identity: &identity,
                    config: &config,
                    transport: transport.clone(),
                    functions: Arc::new(compute.clone()),
                    storage_room: Arc::new(objects.clone()),
                    store: store.clone(),
                    events: events.clone(),
                    payments: Arc::new(ChannelPayments::start(
                        ledger.clone(),
                        store.clone(),
                        config.ledger.channel_deposit_umhr,
                        shutdown.child_token(),
                    )?),
                    relay_cover,
                    storage_terms,
                    shutdown: shutdown.child_token(),
                    drops: part_drops.clone(),
                    drain: control.drain(),
                })
                .await?,
            )
        } else {
            None
        };

        if let Some(market) = &market {
            tokio::spawn(relay_price::follow(
                market.relay_price(),
                config.transport.cost_per_byte,
                transport.clone(),
                ledger.clone(),
                shutdown.child_token(),
            ));
        }

        // The metrics endpoint reads every part at scrape time; the API's call histogram is
        // the one instrument recorded as calls happen, and only when the endpoint is on.
        // (Config::load validated the address.)
        let metrics_listen = config.metrics.listen_addr().ok().flatten();
        let call_metrics = metrics_listen.map(|_| ApiCallMetrics::default());
        let metrics_sources = match (&call_metrics, metrics_listen) {
            (Some(api_calls), Some(_)) => Some(metrics::MetricsSources {
                transport: transport.clone(),
                ledger: ledger.clone(),
                market: market.clone(),
                objects: objects.clone(),
                remote: remote.clone(),
                compute: compute.clone(),
                api_calls: api_calls.clone(),
            }),
            _ => None,
        };

        let services = Services {
            node: NodeApi::new(facts.clone(), events.clone()),
            transport: crate::api::transport::TransportApi::new(transport.clone())
                .with_part_drops(part_drops.clone()),
            messaging: crate::api::messaging::MessagingApi::new(
                transport.clone(),
                config.transport.max_message_bytes,
            ),
            storage: StorageApi::new(
                objects,
                remote,
                market.clone(),
                Duration::from_secs(config.api.request_timeout_secs),
            ),
            compute: ComputeApi::new(
                compute,
                market.clone(),
                facts.identity_hash,
                Duration::from_secs(config.api.request_timeout_secs),
            ),
            ledger: crate::api::ledger::LedgerApi::new(ledger),
            market: MarketApi::new(market, events.clone()),
            admin,
        };
        let api = api::serve(
            listeners,
            services,
            tokens,
            control.clone(),
            tls,
            call_metrics,
            shutdown.clone(),
        )
        .await?;
        let metrics_address = match (metrics_listen, metrics_sources) {
            (Some(address), Some(sources)) => {
                let bound = metrics::serve(address, sources, shutdown.child_token())
                    .await
                    .map_err(|source| NodeError::Metrics { address, source })?;
                tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
                Some(bound)
            }
            _ => None,
        };
        let endpoints: Vec<&str> = facts.endpoints.iter().map(|e| e.address.as_str()).collect();
        tracing::info!(node = %hex::encode(facts.identity_hash), ?endpoints, "node started");

        Ok(Node {
            facts,
            metrics_address,
            events,
            store,
            api,
            control,
            transport_task,
            ledger_task,
            shutdown,
            grace: Duration::from_secs(config.api.shutdown_grace_secs),
            _data_dir: data_dir,
        })
    }

    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics_address
    }

    /// What the node reports about itself.
    pub fn facts(&self) -> &NodeFacts {
        &self.facts
    }

    /// Completes when an operator asked for a shutdown over the API (AdminService.Shutdown);
    /// yields their reason.
    pub async fn shutdown_requested(&self) -> String {
        self.control.shutdown_requested().await
    }

    /// Stops gracefully: tells subscribers, turns health to NOT_SERVING, lets in-flight
    /// requests finish (at most the configured grace period), flushes the store, releases the
    /// data dir.
    pub async fn shutdown(self, reason: &str) -> Result<(), NodeError> {
        tracing::info!(reason, "shutting down");
        self.events.publish(EventKind::ShuttingDown {
            reason: reason.to_string(),
        });
        self.api.set_not_serving().await;
        self.shutdown.cancel();
        self.api.drain(self.grace).await;
        let _ = self.ledger_task.await;
        let _ = self.transport_task.await;
        self.store.flush()?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Records the identity hash on first start; afterwards refuses an identity file that does not
/// match it (a damaged or replaced key file).
fn check_identity(
    store: &Store,
    identity: &NodeIdentity,
    data_dir: &DataDir,
) -> Result<(), NodeError> {
    match store.get(META, &IDENTITY_HASH_KEY.to_string())? {
        Some(recorded) => {
            let recorded: [u8; 16] =
                recorded
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt {
                        table: META.name(),
                        source: crate::store::CodecError::new("identity hash", "expected 16 bytes"),
                    })?;
            identity.check_recorded(data_dir.path(), &recorded)?;
        }
        None => store.put(
            META,
            &IDENTITY_HASH_KEY.to_string(),
            &identity.hash().to_vec(),
        )?,
    }
    Ok(())
}
