//! `mehr.v1.NodeService`: who the node is and what happens to it.

use std::{path::PathBuf, pin::Pin, sync::Arc, time::Instant};

use futures::Stream;
use mehr_proto::v1::{
    self as pb, GetInfoRequest, GetInfoResponse, WatchEventsRequest, WatchEventsResponse,
    node_service_server::NodeService,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    config::Participation,
    events::{Event, EventBus, EventKind, unix_ms_now},
    identity::NodeIdentity,
};

/// Where the API is served, as GetInfo reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Unix socket or TCP.
    pub kind: pb::ApiEndpointKind,
    /// Socket path or `host:port`.
    pub address: String,
    /// Served with TLS.
    pub tls: bool,
    /// Calls need the bearer token.
    pub requires_token: bool,
}

/// The facts GetInfo reports; fixed once the node has started.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The identity hash.
    pub identity_hash: [u8; 16],
    /// X25519 public key.
    pub x25519_public: [u8; 32],
    /// Ed25519 public key.
    pub ed25519_public: [u8; 32],
    /// Participation level.
    pub participation: Participation,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where the API is served.
    pub endpoints: Vec<Endpoint>,
    /// When the daemon started (monotonic, for uptime).
    pub started: Instant,
    /// When the daemon started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

impl NodeFacts {
    /// Facts about a node with `identity`, started now.
    pub fn new(identity: &NodeIdentity, participation: Participation, data_dir: PathBuf) -> Self {
        NodeFacts {
            identity_hash: identity.hash(),
            x25519_public: identity.x25519_public(),
            ed25519_public: identity.ed25519_public().to_bytes(),
            participation,
            data_dir,
            endpoints: Vec::new(),
            started: Instant::now(),
            started_unix_ms: unix_ms_now(),
        }
    }
}

/// The NodeService implementation.
#[derive(Clone)]
pub struct NodeApi {
    facts: Arc<NodeFacts>,
    events: Arc<EventBus>,
}

impl NodeApi {
    /// Serves `facts` and the events of `events`.
    pub fn new(facts: Arc<NodeFacts>, events: Arc<EventBus>) -> Self {
        NodeApi { facts, events }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn get_info(
        &self,
        _: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        let facts = &self.facts;
        Ok(Response::new(GetInfoResponse {
            identity_hash: facts.identity_hash.to_vec().into(),
            x25519_public_key: facts.x25519_public.to_vec().into(),
            ed25519_public_key: facts.ed25519_public.to_vec().into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            participation_level: participation_level(facts.participation) as i32,
            uptime_seconds: facts.started.elapsed().as_secs(),
            data_dir: facts.data_dir.display().to_string(),
            api_endpoints: facts
                .endpoints
                .iter()
                .map(|e| pb::ApiEndpoint {
                    kind: e.kind as i32,
                    address: e.address.clone(),
                    tls: e.tls,
                    requires_token: e.requires_token,
                })
                .collect(),
            started_at_unix_ms: facts.started_unix_ms,
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let mut events = self.events.subscribe();
        let (tx, rx) = mpsc::channel(64);
        // One small task per subscriber: it ends after forwarding `ShuttingDown` (so graceful
        // shutdown is not held up by open streams) or when the client goes away.
        tokio::spawn(async move {
            loop {
                let (event, last) = match events.recv().await {
                    Ok(event) => {
                        let last = matches!(event.kind, EventKind::ShuttingDown { .. });
                        (to_proto(&event), last)
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => (lagged(missed), false),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx
                    .send(Ok(WatchEventsResponse { event: Some(event) }))
                    .await
                    .is_err()
                    || last
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn participation_level(level: Participation) -> pb::ParticipationLevel {
    match level {
        Participation::L0 => pb::ParticipationLevel::L0Transport,
        Participation::L1 => pb::ParticipationLevel::L1Relay,
        Participation::L2 => pb::ParticipationLevel::L2Full,
    }
}

fn to_proto(event: &Event) -> pb::NodeEvent {
    use pb::node_event::Kind;
    let kind = match &event.kind {
        EventKind::ShuttingDown { reason } => Kind::ShuttingDown(pb::ShuttingDown {
            reason: reason.clone(),
        }),
        EventKind::InterfaceUp { id, name } => Kind::InterfaceUp(pb::InterfaceUp {
            interface_id: *id,
            name: name.clone(),
        }),
        EventKind::InterfaceDown { id, name, reason } => Kind::InterfaceDown(pb::InterfaceDown {
            interface_id: *id,
            name: name.clone(),
            reason: reason.clone(),
        }),
        EventKind::PathLearned {
            destination,
            hops,
            interface,
        } => Kind::PathLearned(pb::PathLearned {
            destination: destination.to_vec().into(),
            hops: u32::from(*hops),
            interface_id: *interface,
        }),
        EventKind::MessageReceived { destination, bytes } => {
            Kind::MessageReceived(pb::MessageReceived {
                destination: destination.to_vec().into(),
                size_bytes: *bytes,
            })
        }
        EventKind::FunctionRegistered { function_id, kind } => {
            Kind::FunctionRegistered(pb::FunctionRegistered {
                function_id: function_id.clone(),
                kind: super::compute::kind_to_proto(*kind) as i32,
            })
        }
        EventKind::FunctionUnregistered {
            function_id,
            kind,
            reason,
        } => Kind::FunctionUnregistered(pb::FunctionUnregistered {
            function_id: function_id.clone(),
            kind: super::compute::kind_to_proto(*kind) as i32,
            reason: reason.clone(),
        }),
        EventKind::ObjectStored { id, length, name } => Kind::ObjectStored(pb::ObjectStored {
            id: id.as_bytes().to_vec().into(),
            length: *length,
            name: name.clone(),
        }),
        EventKind::ObjectDeleted { id, length } => Kind::ObjectDeleted(pb::ObjectDeleted {
            id: id.as_bytes().to_vec().into(),
            length: *length,
        }),
        EventKind::ObjectPlaced { id, shards } => Kind::ObjectPlaced(pb::ObjectPlaced {
            id: id.as_bytes().to_vec().into(),
            shards: (*shards).into(),
        }),
        EventKind::ShardLost {
            object,
            shard,
            provider,
        } => Kind::ShardLost(pb::ShardLost {
            object_id: object.as_bytes().to_vec().into(),
            shard: (*shard).into(),
            provider: provider.to_vec().into(),
        }),
        EventKind::ShardRepaired {
            object,
            shard,
            provider,
        } => Kind::ShardRepaired(pb::ShardRepaired {
            object_id: object.as_bytes().to_vec().into(),
            shard: (*shard).into(),
            provider: provider.to_vec().into(),
        }),
        EventKind::ChannelOpened { channel, peer } => Kind::ChannelOpened(pb::ChannelOpened {
            channel_id: channel.to_vec().into(),
            peer: peer.to_vec().into(),
        }),
        EventKind::ChannelUpdated { channel, seq } => Kind::ChannelUpdated(pb::ChannelUpdated {
            channel_id: channel.to_vec().into(),
            seq: *seq,
        }),
        EventKind::SettlementRecorded { channel, seq, kind } => {
            Kind::SettlementRecorded(pb::SettlementRecorded {
                channel_id: channel.to_vec().into(),
                seq: *seq,
                kind: super::ledger::kind_to_proto(*kind) as i32,
            })
        }
        EventKind::ChannelDisputed {
            channel,
            closes_at_round,
        } => Kind::ChannelDisputed(pb::ChannelDisputed {
            channel_id: channel.to_vec().into(),
            closes_at_round: *closes_at_round,
        }),
        EventKind::TicketRedeemed {
            channel,
            relay,
            ticket,
            payout,
        } => Kind::TicketRedeemed(pb::TicketRedeemed {
            channel_id: channel.to_vec().into(),
            relay: relay.to_vec().into(),
            ticket: ticket.clone().into(),
            payout_umhr: *payout,
        }),
        EventKind::TicketWon {
            channel,
            payer,
            payout,
        } => Kind::TicketWon(pb::TicketWon {
            channel_id: channel.to_vec().into(),
            payer: payer.to_vec().into(),
            payout_umhr: *payout,
        }),
        EventKind::AgreementChanged(change) => Kind::AgreementChanged(pb::AgreementChanged {
            request_id: change.request_id.to_vec().into(),
            agreement_id: change
                .agreement_id
                .map(|id| id.0.to_vec())
                .unwrap_or_default()
                .into(),
            counterparty: change.counterparty.0.to_vec().into(),
            role: super::market::role_to_proto(change.role) as i32,
            state: super::market::state_to_proto(change.state) as i32,
            note: change.note.clone(),
        }),
        EventKind::OfferChanged { seq } => Kind::OfferChanged(pb::OfferChanged { seq: *seq }),
        EventKind::PeerExcluded {
            node_id,
            reason,
            until_unix_ms,
        } => Kind::PeerExcluded(pb::PeerExcluded {
            node_id: node_id.to_vec().into(),
            reason: reason.clone(),
            until_unix_ms: *until_unix_ms,
        }),
    };
    pb::NodeEvent {
        sequence: event.sequence,
        at_unix_ms: event.at_unix_ms,
        kind: Some(kind),
    }
}

fn lagged(missed: u64) -> pb::NodeEvent {
    pb::NodeEvent {
        sequence: 0,
        at_unix_ms: unix_ms_now(),
        kind: Some(pb::node_event::Kind::Lagged(pb::EventsLagged { missed })),
    }
}
