//! `NativeClient`: one connection to one daemon, and its node, transport, messaging, ledger
//! and market calls. Every method is async (a Promise) and runs on napi's tokio runtime.

use std::{path::PathBuf, time::Duration};

use mehr_sdk::{Client, ConnectOptions, market::Discover, proto as pb};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::{
    cancel::{CancelToken, Scope},
    failure::{Result, invalid, sdk},
    streams::{MessageStream, NodeEventStream},
    values::{
        Interface, Neighbour, NodeInfo, PathEntry, ProviderOffer, SendResult, hex_bytes, whole,
    },
};

/// How to reach a daemon; every field is optional (see `connect()` in the README).
#[napi(object)]
pub struct ConnectOptionsJs {
    /// `unix:/path`, `http://host:port`, `https://host:port` or `host:port`.
    pub endpoint: Option<String>,
    /// The daemon's data dir (socket, token and certificate are found there).
    pub data_dir: Option<String>,
    /// The bearer token for TCP endpoints.
    pub token: Option<String>,
    /// PEM file of the CA that signed the daemon's certificate.
    pub ca_cert: Option<String>,
    /// The name to check the daemon's certificate against.
    pub tls_domain: Option<String>,
    /// How long to wait for the connection, ms (default 5000).
    pub connect_timeout_ms: Option<u32>,
}

/// A listener on an app destination: its destination hash and its messages.
#[napi]
pub struct Listener {
    destination: String,
    messages: Option<MessageStream>,
}

#[napi]
impl Listener {
    /// The destination hash (hex) senders use.
    #[napi(getter)]
    pub fn destination(&self) -> String {
        self.destination.clone()
    }

    /// The stream of messages; may be taken once.
    #[napi]
    pub fn take_messages(&mut self) -> Result<MessageStream> {
        self.messages
            .take()
            .ok_or_else(|| invalid("the messages of this listener were already taken"))
    }
}

/// The outcome of a discovery.
#[napi(object)]
pub struct Discovery {
    pub offers: Vec<ProviderOffer>,
    pub rings_searched: u32,
    pub answers_received: u32,
}

/// What to discover.
#[napi(object)]
pub struct DiscoverQuery {
    /// A function id: find its providers.
    pub function: Option<String>,
    /// `storage`, `compute`, `relay`, `function`, … when not looking for one function.
    pub kind: Option<String>,
    pub max_price_umhr: Option<f64>,
    /// How many providers to find.
    pub want: Option<u32>,
    /// Search rings up to this one (0: the node's default).
    pub max_ring: Option<u32>,
    /// Storage providers with at least this much free.
    pub min_storage_bytes: Option<f64>,
    /// Relays with at least this bandwidth.
    pub min_bandwidth_bps: Option<f64>,
    pub timeout_ms: Option<u32>,
}

/// A connection to a Mehr daemon.
#[napi]
pub struct NativeClient {
    pub(crate) client: Client,
}

/// How a message is routed: the path Reticulum's rules keep when unset.
#[napi(string_enum)]
pub enum RoutePolicyJs {
    #[napi(value = "cheapest")]
    Cheapest,
    #[napi(value = "fastest")]
    Fastest,
    #[napi(value = "balanced")]
    Balanced,
}

pub(crate) fn millis(ms: Option<u32>, default: u64) -> Duration {
    Duration::from_millis(ms.map_or(default, u64::from))
}

/// Connects as `options` say; with no options, exactly as the Rust SDK and the CLI discover
/// the local daemon (`MEHR_*` variables, then the default data dir's socket).
#[napi]
pub async fn connect(options: Option<ConnectOptionsJs>) -> Result<NativeClient> {
    let mut connect = ConnectOptions::from_env();
    if let Some(o) = options {
        if o.endpoint.is_some() {
            connect.endpoint = o.endpoint;
        }
        if let Some(dir) = o.data_dir {
            connect.data_dir = Some(PathBuf::from(dir));
        }
        if o.token.is_some() {
            connect.token = o.token;
        }
        if let Some(ca) = o.ca_cert {
            connect.ca_cert = Some(PathBuf::from(ca));
        }
        if o.tls_domain.is_some() {
            connect.tls_domain = o.tls_domain;
        }
        connect.connect_timeout = o
            .connect_timeout_ms
            .map(|ms| Duration::from_millis(ms.into()));
    }
    let client = sdk(Client::connect_with(connect).await)?;
    Ok(NativeClient { client })
}

#[napi]
impl NativeClient {
    /// Where this client is connected (`unix:/…` or `http://…`).
    #[napi(getter)]
    pub fn target(&self) -> String {
        self.client.target().to_string()
    }

    /// The node's identity, version and state.
    #[napi]
    pub async fn info(&self, cancel: Option<&CancelToken>) -> Result<NodeInfo> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(NodeInfo::from(sdk(client.info().await)?)) })
            .await
    }

    /// Follows the node's events.
    #[napi]
    pub async fn events(&self, cancel: Option<&CancelToken>) -> Result<NodeEventStream> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(NodeEventStream::new(sdk(client.watch_events().await)?)) })
            .await
    }

    /// Every interface with its counters.
    #[napi]
    pub async fn interfaces(&self, cancel: Option<&CancelToken>) -> Result<Vec<Interface>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.interfaces().await)?
                    .into_iter()
                    .map(Interface::from)
                    .collect())
            })
            .await
    }

    /// The path table; `mehrOnly` keeps paths to Mehr nodes.
    #[napi]
    pub async fn paths(
        &self,
        mehr_only: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<PathEntry>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.paths(mehr_only).await)?
                    .into_iter()
                    .map(PathEntry::from)
                    .collect())
            })
            .await
    }

    /// Mehr nodes one hop away.
    #[napi]
    pub async fn neighbours(&self, cancel: Option<&CancelToken>) -> Result<Vec<Neighbour>> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.neighbours().await)?
                    .into_iter()
                    .map(Neighbour::from)
                    .collect())
            })
            .await
    }

    /// Announces the node now; returns how many destinations were announced.
    #[napi]
    pub async fn announce(&self, cancel: Option<&CancelToken>) -> Result<u32> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { sdk(client.announce().await) })
            .await
    }

    /// Listens on the app destination `name` (dotted, e.g. `chat.room`).
    #[napi]
    pub async fn listen(
        &self,
        name: String,
        announce: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<Listener> {
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let listening = sdk(client.listen(&name, announce).await)?;
                Ok(Listener {
                    destination: hex::encode(&listening.destination),
                    messages: Some(MessageStream::new(listening.messages)),
                })
            })
            .await
    }

    /// Sends `payload` encrypted to `destination` (hex); waits for the proof of delivery.
    /// `policy` picks the route among those known (default: the one Reticulum's rules keep).
    #[napi]
    pub async fn send(
        &self,
        destination: String,
        payload: Buffer,
        timeout_ms: Option<u32>,
        policy: Option<RoutePolicyJs>,
        cancel: Option<&CancelToken>,
    ) -> Result<SendResult> {
        let destination = hex_bytes(&destination, "destination")?;
        let payload = payload.to_vec();
        let client = self.client.clone();
        let timeout = millis(timeout_ms, 10_000);
        let policy = match policy {
            None => pb::RoutePolicy::Unspecified,
            Some(RoutePolicyJs::Cheapest) => pb::RoutePolicy::Cheapest,
            Some(RoutePolicyJs::Fastest) => pb::RoutePolicy::Fastest,
            Some(RoutePolicyJs::Balanced) => pb::RoutePolicy::Balanced,
        };
        Scope::of(cancel)
            .run(async move {
                let sent = sdk(client
                    .send_with(&destination, payload, policy, timeout)
                    .await)?;
                Ok(SendResult::from(sent))
            })
            .await
    }

    /// Sends one packet back over an inbound link (hex id); returns the packet hash (hex).
    #[napi]
    pub async fn reply(
        &self,
        link_id: String,
        payload: Buffer,
        cancel: Option<&CancelToken>,
    ) -> Result<String> {
        let link = hex_bytes(&link_id, "linkId")?;
        let payload = payload.to_vec();
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(hex::encode(sdk(client.reply(&link, payload).await)?)) })
            .await
    }

    /// Finds providers of a function or a capability kind.
    #[napi]
    pub async fn discover(
        &self,
        query: DiscoverQuery,
        cancel: Option<&CancelToken>,
    ) -> Result<Discovery> {
        let mut what = match (&query.function, &query.kind) {
            (Some(function), _) => Discover::function(function.clone()),
            (None, Some(kind)) => {
                let name = format!("CAPABILITY_KIND_{}", kind.to_uppercase());
                let kind = pb::CapabilityKind::from_str_name(&name)
                    .ok_or_else(|| invalid(format!("unknown capability kind `{kind}`")))?;
                Discover::kind(kind)
            }
            (None, None) => return Err(invalid("discover needs a `function` or a `kind`")),
        };
        if let Some(price) = query.max_price_umhr {
            what = what.max_price(whole(price, "maxPriceUmhr")?);
        }
        if let Some(want) = query.want {
            what = what.want(want);
        }
        if let Some(ring) = query.max_ring {
            what = what.max_ring(ring);
        }
        if let Some(bytes) = query.min_storage_bytes {
            what = what.min_storage_bytes(whole(bytes, "minStorageBytes")?);
        }
        if let Some(bps) = query.min_bandwidth_bps {
            what = what.min_bandwidth_bps(whole(bps, "minBandwidthBps")?);
        }
        if let Some(ms) = query.timeout_ms {
            what = what.timeout(Duration::from_millis(ms.into()));
        }
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let found = sdk(client.discover(what).await)?;
                Ok(Discovery {
                    offers: found.offers.into_iter().map(ProviderOffer::from).collect(),
                    rings_searched: found.rings_searched,
                    answers_received: found.answers_received,
                })
            })
            .await
    }
}
