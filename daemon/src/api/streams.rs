//! A node-wide bound on server-streaming calls (WatchEvents, Listen, Serve, GetObject,
//! InvokeStream, WatchAgreements).
//!
//! The concurrency limit's permit is released when a call's response headers are ready, so a
//! streaming call holds none for as long as it streams: without this layer a client could
//! open streams until memory ran out (each holds a subscription, a task and buffers). Every
//! such call takes one of `api.max_concurrent_streams` permits and holds it in its response
//! body until the stream ends or the client goes away; a call that finds none is answered at
//! once with RESOURCE_EXHAUSTED, reason STREAMS_EXHAUSTED, and counted as
//! `api.streams_exhausted` in the drop counters (GetStats.part_drops).

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use http_body::{Body, Frame};
use prost::Message as _;
use tokio::sync::OwnedSemaphorePermit;
use tower::{Layer, Service};

use super::control::ApiControl;
use super::status::{Reason, failure};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The drop counter of a refused stream.
pub(super) const STREAMS_EXHAUSTED: &str = "api.streams_exhausted";

/// The paths (`/package.Service/Method`) of every server-streaming method in the API, read
/// once from the compiled descriptor set, so a new streaming method is bounded without a list
/// to keep up to date.
fn streaming_paths() -> &'static HashSet<String> {
    static PATHS: OnceLock<HashSet<String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let Ok(set) = prost_types::FileDescriptorSet::decode(mehr_proto::FILE_DESCRIPTOR_SET)
        else {
            return HashSet::new();
        };
        set.file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_string();
                file.service.iter().flat_map(move |service| {
                    let package = package.clone();
                    service
                        .method
                        .iter()
                        .filter(|m| m.server_streaming())
                        .map(move |m| format!("/{package}.{}/{}", service.name(), m.name()))
                })
            })
            .collect()
    })
}

/// Adds [`StreamLimit`] around a service.
#[derive(Clone)]
pub(super) struct StreamLimitLayer {
    control: Arc<ApiControl>,
}

impl StreamLimitLayer {
    /// Draws permits from `control`'s stream semaphore.
    pub(super) fn new(control: Arc<ApiControl>) -> Self {
        Self { control }
    }
}

impl<S> Layer<S> for StreamLimitLayer {
    type Service = StreamLimit<S>;

    fn layer(&self, inner: S) -> StreamLimit<S> {
        StreamLimit {
            inner,
            control: self.control.clone(),
        }
    }
}

/// Holds a stream permit for the life of each server-streaming response.
#[derive(Clone)]
pub(super) struct StreamLimit<S> {
    inner: S,
    control: Arc<ApiControl>,
}

impl<S, B> Service<http::Request<B>> for StreamLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !streaming_paths().contains(request.uri().path()) {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        }
        let Some(permit) = self.control.try_stream_permit() else {
            self.control.drops().count(STREAMS_EXHAUSTED);
            return Box::pin(async move {
                Ok(failure(
                    Reason::StreamsExhausted,
                    "the node is at api.max_concurrent_streams; retry after the delay given",
                )
                .into_http())
            });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            Ok(response.map(|body| tonic::body::Body::new(PermitBody { body, permit })))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its stream permit until it is dropped.
    struct PermitBody<B> {
        #[pin]
        body: B,
        permit: OwnedSemaphorePermit,
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{convert::Infallible, time::Duration};
    use tonic_types::StatusExt;
    use tower::ServiceExt;

    fn call(path: &str) -> http::Request<tonic::body::Body> {
        http::Request::builder()
            .uri(format!("http://node{path}"))
            .body(tonic::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn every_server_streaming_method_is_bounded_and_unary_ones_are_not() {
        let paths = streaming_paths();
        for path in [
            "/mehr.v1.NodeService/WatchEvents",
            "/mehr.v1.MessagingService/Listen",
            "/mehr.v1.ComputeService/Serve",
            "/mehr.v1.ComputeService/InvokeStream",
            "/mehr.v1.StorageService/GetObject",
            "/mehr.v1.MarketService/WatchAgreements",
        ] {
            assert!(paths.contains(path), "{path} missing from {paths:?}");
        }
        assert!(!paths.contains("/mehr.v1.NodeService/GetNodeInfo"));
        assert!(!paths.contains("/mehr.v1.StorageService/PutObject"));
    }

    #[tokio::test]
    async fn streams_past_the_bound_are_refused_and_counted_until_one_ends() {
        let control = ApiControl::new(Duration::from_secs(30), 8);
        control.set_max_streams(2);
        // A body with data still to send, as a stream's is (an empty body ends at once and
        // tonic drops it, permit and all).
        let service = StreamLimitLayer::new(control.clone()).layer(tower::service_fn(
            |_: http::Request<tonic::body::Body>| async {
                Ok::<_, Infallible>(http::Response::new(tonic::body::Body::new(
                    axum::body::Body::from("an event"),
                )))
            },
        ));
        let watch = "/mehr.v1.NodeService/WatchEvents";
        let first = service.clone().oneshot(call(watch)).await.unwrap();
        let second = service.clone().oneshot(call(watch)).await.unwrap();
        assert_eq!(control.streams_in_flight(), 2);
        // Unary calls are not streams.
        service
            .clone()
            .oneshot(call("/mehr.v1.NodeService/GetNodeInfo"))
            .await
            .unwrap();
        let refused = service.clone().oneshot(call(watch)).await.unwrap();
        let status = tonic::Status::from_header_map(refused.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "STREAMS_EXHAUSTED"
        );
        assert_eq!(control.drops().get(STREAMS_EXHAUSTED), 1);
        drop(first);
        assert_eq!(control.streams_in_flight(), 1);
        let third = service.clone().oneshot(call(watch)).await.unwrap();
        assert!(tonic::Status::from_header_map(third.headers()).is_none());
        drop((second, third));
        assert_eq!(control.streams_in_flight(), 0);
    }
}
