//! Answers a call that load shedding refused (the node is at `api.max_concurrent_requests`)
//! with RESOURCE_EXHAUSTED, reason OVERLOADED and a `RetryInfo`, instead of tonic's plain
//! status without details.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower::{Layer, Service, load_shed::error::Overloaded};

use super::status::{Reason, failure};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds [`OverloadAnswer`] around a load-shedding service.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct OverloadAnswerLayer;

impl<S> Layer<S> for OverloadAnswerLayer {
    type Service = OverloadAnswer<S>;

    fn layer(&self, inner: S) -> OverloadAnswer<S> {
        OverloadAnswer { inner }
    }
}

/// Turns the load shedder's `Overloaded` error into an OVERLOADED answer.
#[derive(Debug, Clone)]
pub(super) struct OverloadAnswer<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for OverloadAnswer<S>
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
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await.map_err(Into::into) {
                Err(error) if error.is::<Overloaded>() => Ok(failure(
                    Reason::Overloaded,
                    "the node is at api.max_concurrent_requests; retry after the delay given",
                )
                .into_http()),
                other => other,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;
    use tower::ServiceExt;

    /// A service that is never ready, as one behind an exhausted concurrency limit.
    #[derive(Clone)]
    struct Saturated;

    impl Service<http::Request<()>> for Saturated {
        type Response = http::Response<tonic::body::Body>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Pending
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            unreachable!("never ready")
        }
    }

    #[tokio::test]
    async fn a_shed_call_is_answered_overloaded_with_a_retry_delay() {
        let service = OverloadAnswerLayer.layer(tower::load_shed::LoadShed::new(Saturated));
        let response = service
            .oneshot(http::Request::new(()))
            .await
            .expect("an answer, not an error");
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "OVERLOADED");
        assert!(details.retry_info().unwrap().retry_delay.is_some());
    }
}
