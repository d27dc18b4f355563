//! The client: one connection to one daemon, with typed methods per service.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use mehr_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient, node_service_client::NodeServiceClient,
};
use tonic::{
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{ConnectOptions, Error, Target};

/// Adds `authorization: Bearer <token>` to every call when a token is known, and the caller's
/// W3C `traceparent` when it is inside a trace ([`crate::trace`]).
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(traceparent) = crate::trace::current() {
            request.metadata_mut().insert("traceparent", traceparent);
        }
        Ok(request)
    }
}

/// The channel type of every raw client this SDK hands out.
pub type AuthedChannel = InterceptedService<Channel, BearerToken>;

/// A stream of items from a server-streaming call.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Error>> + Send>>;

/// A connection to a Mehr daemon. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    pub(crate) channel: AuthedChannel,
    target: Target,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the local daemon, using `MEHR_*` variables where set (see
    /// [`ConnectOptions::from_env`]) and the default data dir otherwise.
    pub async fn connect() -> Result<Client, Error> {
        Client::connect_with(ConnectOptions::from_env()).await
    }

    /// Connects as `options` say.
    pub async fn connect_with(options: ConnectOptions) -> Result<Client, Error> {
        let (channel, token, target) = options.open().await?;
        let header = token
            .map(|token| {
                AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    Error::Credentials {
                        path: "token".into(),
                        reason: "the token has characters that cannot go in a header".into(),
                    }
                })
            })
            .transpose()?;
        Ok(Client {
            channel: InterceptedService::new(channel, BearerToken(header)),
            target,
        })
    }

    /// Where this client is connected.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The authenticated channel, for the raw clients of every service.
    pub(crate) fn channel(&self) -> AuthedChannel {
        self.channel.clone()
    }

    /// The raw `NodeService` client.
    pub fn node(&self) -> NodeServiceClient<AuthedChannel> {
        NodeServiceClient::new(self.channel.clone())
    }

    /// The raw `AdminService` client (tokens, status, configuration, drain, shutdown).
    pub fn admin(&self) -> AdminServiceClient<AuthedChannel> {
        AdminServiceClient::new(self.channel.clone())
    }

    /// The node's identity, version, participation level and endpoints.
    pub async fn info(&self) -> Result<pb::GetInfoResponse, Error> {
        Ok(self
            .node()
            .get_info(pb::GetInfoRequest {})
            .await?
            .into_inner())
    }

    /// Follows the node's events until the daemon shuts down or the stream is dropped.
    pub async fn watch_events(&self) -> Result<EventStream<pb::NodeEvent>, Error> {
        let stream = self
            .node()
            .watch_events(pb::WatchEventsRequest {})
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|item| async move {
            match item {
                Ok(response) => response.event.map(Ok),
                Err(status) => Some(Err(Error::from(status))),
            }
        })))
    }
}
