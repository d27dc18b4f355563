//! `mehr.v1.MessagingService`: app destinations, encrypted messages, replies over links.

use std::{pin::Pin, time::Duration};

use futures::Stream;
use mehr_proto::v1::{self as pb, messaging_service_server::MessagingService};
use mehr_transport::hashes::LinkId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    deadline::CallDeadline,
    status::invalid_field,
    transport::{destination, route_to_proto},
};
use crate::transport::{MessageVia, RoutePolicy, SendMethod, TransportHandle};

/// Default wait for a send.
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The MessagingService implementation.
#[derive(Clone)]
pub struct MessagingApi {
    transport: TransportHandle,
    max_message_bytes: usize,
}

impl MessagingApi {
    /// Serves messaging over `transport`, for messages of at most `max_message_bytes`.
    pub fn new(transport: TransportHandle, max_message_bytes: usize) -> Self {
        MessagingApi {
            transport,
            max_message_bytes,
        }
    }

    /// The largest request the service must decode: a whole message plus its envelope, so
    /// an oversized message is refused by the transport with a clear error rather than by
    /// the gRPC decoder.
    pub fn max_request_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_add(64 * 1024)
            .max(4 << 20)
    }
}

type ListenStream = Pin<Box<dyn Stream<Item = Result<pb::ListenResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MessagingService for MessagingApi {
    type ListenStream = ListenStream;

    async fn listen(
        &self,
        request: Request<pb::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        let request = request.into_inner();
        let mut listener = self
            .transport
            .listen(&request.name, request.announce)
            .await?;
        let (tx, rx) = mpsc::channel(64);
        let first = pb::ListenResponse {
            kind: Some(pb::listen_response::Kind::Listening(pb::Listening {
                destination: listener.destination.0.to_vec().into(),
            })),
        };
        // The listener (and with it the registration) lives as long as this task: it ends
        // when the client goes away or the transport stops.
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    message = listener.messages.recv() => {
                        let Some(message) = message else { return };
                        let (link_id, interface_id) = match message.via {
                            MessageVia::Link(link) => (Some(link.0.to_vec().into()), None),
                            MessageVia::Packet => (None, message.interface),
                        };
                        let response = pb::ListenResponse {
                            kind: Some(pb::listen_response::Kind::Message(pb::InboundMessage {
                                payload: message.payload.into(),
                                link_id,
                                interface_id,
                            })),
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        // A wait for a proof that would outlast the call ends early and answers
        // `delivered: false` (or no path) instead of a CANCELLED call.
        let timeout = CallDeadline::cap(
            &request,
            match request.get_ref().timeout_ms {
                0 => DEFAULT_SEND_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            },
        );
        let request = request.into_inner();
        let destination = destination("destination", &request.destination)?;
        let policy = route_policy(request.policy)?;
        let report = self
            .transport
            .send_with(destination, request.payload.to_vec(), policy, timeout)
            .await?;
        Ok(Response::new(pb::SendResponse {
            method: match report.method {
                SendMethod::Packet => pb::SendMethod::Packet,
                SendMethod::Link => pb::SendMethod::Link,
            } as i32,
            delivered: report.delivered,
            rtt_ms: report.rtt.map(|rtt| rtt.as_millis() as u64),
            packet_hash: report.packet_hash.map(|h| h.0.to_vec().into()),
            route: report.route.as_ref().map(route_to_proto),
        }))
    }

    async fn reply(
        &self,
        request: Request<pb::ReplyRequest>,
    ) -> Result<Response<pb::ReplyResponse>, Status> {
        let request = request.into_inner();
        let link = LinkId::from_slice(&request.link_id).ok_or_else(|| {
            invalid_field(
                "link_id",
                format!("link_id must be 16 bytes, not {}", request.link_id.len()),
            )
        })?;
        let hash = self.transport.reply(link, request.payload.to_vec()).await?;
        Ok(Response::new(pb::ReplyResponse {
            packet_hash: hash.0.to_vec().into(),
        }))
    }
}

/// The policy a request names; an enum value this build does not know is refused rather
/// than silently sent the default way.
fn route_policy(value: i32) -> Result<RoutePolicy, Status> {
    match pb::RoutePolicy::try_from(value) {
        Ok(pb::RoutePolicy::Unspecified) => Ok(RoutePolicy::Shortest),
        Ok(pb::RoutePolicy::Cheapest) => Ok(RoutePolicy::Cheapest),
        Ok(pb::RoutePolicy::Fastest) => Ok(RoutePolicy::Fastest),
        Ok(pb::RoutePolicy::Balanced) => Ok(RoutePolicy::Balanced),
        Err(_) => Err(invalid_field(
            "policy",
            format!(
                "policy {value} is not a RoutePolicy (0 = default, 1 = cheapest, 2 = fastest, 3 = balanced)"
            ),
        )),
    }
}
