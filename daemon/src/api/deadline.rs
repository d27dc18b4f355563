//! The per-call deadline: `api.request_timeout_secs`, or the client's `grpc-timeout` when it is
//! shorter, as tonic's `Server::timeout` applies it — except that calls whose duration grows
//! with the data they carry ([`UNTIMED_METHODS`]) only get the client's deadline; their handlers
//! cancel them when they go idle instead.
//!
//! The deadline covers the call until its response starts, so server streams are exempt once
//! they started, while a client stream (an upload) is covered until its last message.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::HeaderMap;
use tower::{Layer, Service};

use super::{
    control::ApiControl,
    status::{Reason, failure},
};

/// When the call must have answered, for handlers whose own waits should end before it (so
/// they can answer with what they have rather than be cancelled). Put into the request's
/// extensions by [`Deadline`] when the call has a deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallDeadline(Instant);

impl CallDeadline {
    /// Time kept back from a deadline for the handler to answer.
    const ANSWER_MARGIN: Duration = Duration::from_millis(250);

    /// The call's deadline, read from a tonic request.
    pub(super) fn of<T>(request: &tonic::Request<T>) -> Option<CallDeadline> {
        request.extensions().get::<CallDeadline>().copied()
    }

    /// How long is left until the deadline, less the time to answer.
    pub(super) fn remaining(self) -> Duration {
        self.0
            .saturating_duration_since(Instant::now())
            .saturating_sub(Self::ANSWER_MARGIN)
    }

    /// `wait`, shortened to end before the deadline of `request`'s call if it has one: a
    /// handler whose wait ends first answers with what it has (a result, or a clear error)
    /// instead of having the whole call CANCELLED.
    pub(super) fn cap<T>(request: &tonic::Request<T>, wait: Duration) -> Duration {
        match CallDeadline::of(request) {
            Some(deadline) => wait.min(deadline.remaining()),
            None => wait,
        }
    }
}

/// Methods without the server's deadline: their duration grows with the bytes they move.
/// PutObject is cancelled when its stream goes idle; ReplicateObject's every request to a
/// provider is bounded by `storage.remote_timeout_secs`.
pub(super) const UNTIMED_METHODS: &[&str] = &[
    "/mehr.v1.StorageService/PutObject",
    "/mehr.v1.StorageService/ReplicateObject",
];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds [`Deadline`] to a service.
#[derive(Clone)]
pub(super) struct DeadlineLayer {
    control: Arc<ApiControl>,
}

impl DeadlineLayer {
    /// The server's deadline is `control`'s request timeout, read at the start of each call
    /// (it can change while the node runs).
    pub(super) fn new(control: Arc<ApiControl>) -> Self {
        DeadlineLayer { control }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            control: self.control.clone(),
        }
    }
}

/// Answers a call DEADLINE_EXCEEDED (reason CALL_DEADLINE_EXCEEDED) when its deadline passes.
/// It answers itself rather than failing with tonic's `TimeoutExpired`, which tonic turns into
/// CANCELLED.
#[derive(Clone)]
pub(super) struct Deadline<S> {
    inner: S,
    control: Arc<ApiControl>,
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let client = client_deadline(request.headers());
        let server = (!UNTIMED_METHODS.contains(&request.uri().path()))
            .then(|| self.control.request_timeout());
        let deadline = match (client, server) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(deadline) = deadline {
            request
                .extensions_mut()
                .insert(CallDeadline(Instant::now() + deadline));
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            match deadline {
                None => response.await.map_err(Into::into),
                Some(deadline) => match tokio::time::timeout(deadline, response).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Ok(failure(
                        Reason::CallDeadlineExceeded,
                        format!(
                            "the call did not finish within its deadline of {:.3} s \
                             (api.request_timeout_secs, or the client's deadline when shorter)",
                            deadline.as_secs_f64()
                        ),
                    )
                    .into_http()),
                },
            }
        })
    }
}

/// The `grpc-timeout` header: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`). A header
/// that does not parse is ignored, as tonic does.
fn client_deadline(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..unit_at)?, value.get(unit_at..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        client_deadline(&headers)
    }

    #[test]
    fn grpc_timeout_header_parses_every_unit_and_refuses_the_rest() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", "é"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(client_deadline(&HeaderMap::new()), None);
    }

    /// The gRPC status a response carries in its headers (a trailers-only answer).
    fn status_of(response: &http::Response<tonic::body::Body>) -> tonic::Status {
        tonic::Status::from_header_map(response.headers()).expect("a grpc-status header")
    }

    #[tokio::test]
    async fn untimed_methods_only_get_the_client_deadline() {
        use tonic_types::StatusExt;

        let slow = tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, BoxError>(http::Response::new(tonic::body::Body::empty()))
        });
        let mut service =
            DeadlineLayer::new(ApiControl::new(Duration::from_millis(20), 8)).layer(slow);
        let timed = http::Request::builder()
            .uri("/mehr.v1.NodeService/GetInfo")
            .body(())
            .unwrap();
        let status = status_of(&service.call(timed).await.unwrap());
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "CALL_DEADLINE_EXCEEDED"
        );

        let untimed = http::Request::builder()
            .uri(UNTIMED_METHODS[0])
            .body(())
            .unwrap();
        let answered = service.call(untimed).await.unwrap();
        assert!(answered.headers().get("grpc-status").is_none());

        let client_limited = http::Request::builder()
            .uri(UNTIMED_METHODS[0])
            .header("grpc-timeout", "10m")
            .body(())
            .unwrap();
        let status = status_of(&service.call(client_limited).await.unwrap());
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }
}
