//! `TransportService` and `MessagingService` calls: interfaces, paths, neighbours, announces,
//! and encrypted messages across the mesh.

use std::time::Duration;

use futures::StreamExt;
use mehr_proto::v1::{
    self as pb, messaging_service_client::MessagingServiceClient,
    transport_service_client::TransportServiceClient,
};

use crate::{AuthedChannel, Client, Error, EventStream};

/// A stream of messages for a listened destination, with the destination it listens on.
pub struct Listening {
    /// The destination hash (16 bytes) senders use.
    pub destination: Vec<u8>,
    /// The messages, until the stream is dropped or the daemon stops.
    pub messages: EventStream<pb::InboundMessage>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("destination", &hex::encode(&self.destination))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The raw `TransportService` client.
    pub fn transport(&self) -> TransportServiceClient<AuthedChannel> {
        TransportServiceClient::new(self.channel())
    }

    /// The raw `MessagingService` client.
    pub fn messaging(&self) -> MessagingServiceClient<AuthedChannel> {
        MessagingServiceClient::new(self.channel())
    }

    /// Every interface with its counters (all pages).
    pub async fn interfaces(&self) -> Result<Vec<pb::Interface>, Error> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .transport()
                .list_interfaces(pb::ListInterfacesRequest {
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            all.extend(page.interfaces);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Starts an interface; returns its id.
    pub async fn add_interface(&self, spec: pb::InterfaceSpec) -> Result<u32, Error> {
        let request = pb::CreateInterfaceRequest { spec: Some(spec) };
        Ok(self
            .transport()
            .create_interface(request)
            .await?
            .into_inner()
            .interface_id)
    }

    /// Stops an interface.
    pub async fn remove_interface(&self, interface_id: u32) -> Result<(), Error> {
        self.transport()
            .delete_interface(pb::DeleteInterfaceRequest { interface_id })
            .await?;
        Ok(())
    }

    /// The path table (all pages); `mehr_only` keeps paths to Mehr nodes.
    pub async fn paths(&self, mehr_only: bool) -> Result<Vec<pb::Path>, Error> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListPathsRequest {
                page_size: 1000,
                page_token,
                mehr_only,
            };
            let page = self.transport().list_paths(request).await?.into_inner();
            all.extend(page.paths);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Mehr nodes one hop away (all pages).
    pub async fn neighbours(&self) -> Result<Vec<pb::Neighbour>, Error> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListNeighboursRequest {
                page_size: 1000,
                page_token,
            };
            let page = self
                .transport()
                .list_neighbours(request)
                .await?
                .into_inner();
            all.extend(page.neighbours);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// The path to `destination`, asking the network if needed, waiting at most `timeout`.
    pub async fn request_path(
        &self,
        destination: &[u8],
        timeout: Duration,
    ) -> Result<pb::Path, Error> {
        let request = pb::RequestPathRequest {
            destination: destination.to_vec().into(),
            timeout_ms: millis(timeout),
        };
        let response = self.transport().request_path(request).await?.into_inner();
        response
            .path
            .ok_or_else(|| Error::from(tonic::Status::internal("the daemon sent no path")))
    }

    /// Announces the node now; returns how many destinations were announced.
    pub async fn announce(&self) -> Result<u32, Error> {
        Ok(self
            .transport()
            .announce(pb::AnnounceRequest {})
            .await?
            .into_inner()
            .announced)
    }

    /// Router counters and table sizes.
    pub async fn transport_stats(&self) -> Result<pb::GetStatsResponse, Error> {
        Ok(self
            .transport()
            .get_stats(pb::GetStatsRequest {})
            .await?
            .into_inner())
    }

    /// Listens on the app destination `name` (dotted, e.g. `chat.room`); with `announce`, the
    /// destination is announced so others can find it.
    pub async fn listen(&self, name: &str, announce: bool) -> Result<Listening, Error> {
        let request = pb::ListenRequest {
            name: name.to_string(),
            announce,
        };
        let mut stream = self.messaging().listen(request).await?.into_inner();
        let destination = match stream.message().await?.and_then(|r| r.kind) {
            Some(pb::listen_response::Kind::Listening(listening)) => listening.destination.to_vec(),
            _ => {
                return Err(Error::from(tonic::Status::internal(
                    "the daemon did not confirm the listener",
                )));
            }
        };
        let messages = stream.filter_map(|item| async move {
            match item {
                Ok(pb::ListenResponse {
                    kind: Some(pb::listen_response::Kind::Message(message)),
                }) => Some(Ok(message)),
                Ok(_) => None,
                Err(status) => Some(Err(Error::from(status))),
            }
        });
        Ok(Listening {
            destination,
            messages: Box::pin(messages),
        })
    }

    /// Sends `payload` encrypted to `destination` and waits (at most `timeout`) for the proof
    /// of delivery.
    pub async fn send(
        &self,
        destination: &[u8],
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<pb::SendResponse, Error> {
        self.send_with(destination, payload, pb::RoutePolicy::Unspecified, timeout)
            .await
    }

    /// Like [`Client::send`], leaving by the known path `policy` prefers (cheapest,
    /// fastest, balanced); the response's `route` says which it took.
    pub async fn send_with(
        &self,
        destination: &[u8],
        payload: Vec<u8>,
        policy: pb::RoutePolicy,
        timeout: Duration,
    ) -> Result<pb::SendResponse, Error> {
        let request = pb::SendRequest {
            destination: destination.to_vec().into(),
            payload: payload.into(),
            timeout_ms: millis(timeout),
            policy: policy as i32,
        };
        Ok(self.messaging().send(request).await?.into_inner())
    }

    /// Sends one packet back over an inbound link.
    pub async fn reply(&self, link_id: &[u8], payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        let request = pb::ReplyRequest {
            link_id: link_id.to_vec().into(),
            payload: payload.into(),
        };
        Ok(self
            .messaging()
            .reply(request)
            .await?
            .into_inner()
            .packet_hash
            .to_vec())
    }
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}
