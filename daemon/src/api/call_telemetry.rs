//! Per-call telemetry, the outermost layer of every listener: the `rpc_server_call_duration_seconds`
//! histogram (its `_count` is the calls, by method and code) when the metrics endpoint is on,
//! and one SERVER span per call, continuing the caller's W3C `traceparent`, when traces are
//! exported.
//!
//! The code is read where gRPC puts it: in the response headers of a trailers-only answer
//! (every error tonic returns before a body), otherwise in the trailers at the end of the body,
//! so a streamed call is timed to its last message, not to its first headers. A call whose body
//! is dropped before its end (the client went away) counts as CANCELLED.
//!
//! Outermost, so that calls refused by load shedding or by the bearer check are counted too.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};
use prost::Message;
use tower::{Layer, Service};

use crate::telemetry;

/// Bounds of the latency histogram, in seconds: OpenTelemetry's RPC semantic conventions
/// (5 ms to 10 s).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The method label of a path this server does not serve: unknown paths must not make new
/// series (a scanner would otherwise grow the registry without bound).
const OTHER_METHOD: &str = "_OTHER";

/// Labels of one series of the call histogram (OpenTelemetry's RPC names, dots as
/// underscores).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    rpc_system_name: &'static str,
    rpc_method: &'static str,
    rpc_status_code: &'static str,
}

type CallHistogram = Family<CallLabels, Histogram, fn() -> Histogram>;

/// The API's call counts and latencies, shared by every listener and read by the metrics
/// endpoint.
#[derive(Clone)]
pub struct ApiCallMetrics {
    calls: CallHistogram,
}

impl Default for ApiCallMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(DURATION_BUCKETS)
        }
        ApiCallMetrics {
            calls: Family::new_with_constructor(histogram),
        }
    }
}

impl ApiCallMetrics {
    /// Adds the histogram to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "rpc_server_call_duration",
            "Duration of API calls, to the last message of a stream, by method and gRPC code",
            Unit::Seconds,
            self.calls.clone(),
        );
    }

    fn record(&self, method: &'static str, code: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                rpc_system_name: "grpc",
                rpc_method: method,
                rpc_status_code: code,
            })
            .observe(seconds);
    }
}

/// Every method this server serves, as `package.Service/Method` (read once from the
/// descriptors the reflection service serves).
fn known_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods = HashSet::new();
        for encoded in [
            mehr_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = service.name.unwrap_or_default();
                    for method in service.method {
                        methods.insert(format!(
                            "{package}.{service_name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        for version in ["v1", "v1alpha"] {
            methods.insert(format!(
                "grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
            ));
        }
        methods
    })
}

/// The method label of `path` (`/pkg.Service/Method`): the method, or `_OTHER`.
fn method_label(path: &str) -> &'static str {
    let name = path.strip_prefix('/').unwrap_or(path);
    known_methods()
        .get(name)
        .map_or(OTHER_METHOD, String::as_str)
}

/// The name of a gRPC status code, as OpenTelemetry's `rpc.status_code` writes it.
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Codes that mean this server failed (OpenTelemetry's gRPC conventions); the others are the
/// caller's answer and leave the span's status unset.
fn is_server_error(code: &str) -> bool {
    matches!(
        code,
        "UNKNOWN"
            | "DEADLINE_EXCEEDED"
            | "UNIMPLEMENTED"
            | "INTERNAL"
            | "UNAVAILABLE"
            | "DATA_LOSS"
    )
}

/// Adds [`CallTelemetry`] to a service.
#[derive(Clone, Default)]
pub(super) struct CallTelemetryLayer {
    metrics: Option<ApiCallMetrics>,
}

impl CallTelemetryLayer {
    /// Records into `metrics` when given (the metrics endpoint is on).
    pub(super) fn new(metrics: Option<ApiCallMetrics>) -> Self {
        CallTelemetryLayer { metrics }
    }
}

impl<S> Layer<S> for CallTelemetryLayer {
    type Service = CallTelemetry<S>;

    fn layer(&self, inner: S) -> CallTelemetry<S> {
        CallTelemetry {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Times, counts and traces each call (see the module doc).
#[derive(Clone)]
pub(super) struct CallTelemetry<S> {
    inner: S,
    metrics: Option<ApiCallMetrics>,
}

/// One call being measured: finished once, with its code, when the answer is complete.
struct CallRecord {
    method: &'static str,
    started: Instant,
    metrics: Option<ApiCallMetrics>,
    span: tracing::Span,
}

impl CallRecord {
    fn finish(self, code: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.record(self.method, code, self.started.elapsed().as_secs_f64());
        }
        if !self.span.is_disabled() {
            self.span.record("rpc.status_code", code);
            if is_server_error(code) {
                self.span.record("otel.status_code", "ERROR");
                self.span.record("error.type", code);
            }
        }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for CallTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let exporting = telemetry::exporting();
        if self.metrics.is_none() && !exporting {
            let call = self.inner.call(request);
            return Box::pin(async move {
                let response = call.await?;
                Ok(response.map(|body| MeteredBody { body, record: None }))
            });
        }
        let method = method_label(request.uri().path());
        // Sampling is decided before the span is made: an unsampled call costs no more than
        // one with tracing off.
        let sampling = if exporting {
            telemetry::call_sampling(request.headers())
        } else {
            telemetry::CallSampling::Skip
        };
        let caller_traces = matches!(sampling, telemetry::CallSampling::Caller(_));
        let span = match sampling {
            telemetry::CallSampling::Skip => tracing::Span::none(),
            telemetry::CallSampling::Root | telemetry::CallSampling::Caller(_) => {
                let span = tracing::info_span!(
                    "rpc",
                    otel.name = method,
                    otel.kind = "server",
                    rpc.system.name = "grpc",
                    rpc.method = method,
                    rpc.status_code = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                );
                if let telemetry::CallSampling::Caller(parent) = sampling {
                    telemetry::continue_caller(&span, parent);
                }
                span
            }
        };
        let record = CallRecord {
            method,
            started: Instant::now(),
            metrics: self.metrics.clone(),
            span: span.clone(),
        };
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let call = tracing::Instrument::instrument(call, span);
        Box::pin(async move {
            let response = if caller_traces {
                telemetry::with_caller_trace(call).await
            } else {
                call.await
            };
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    record.finish("UNKNOWN");
                    return Err(e);
                }
            };
            // A trailers-only answer (every error before a body) has its code in the headers.
            let record = match response.headers().get("grpc-status") {
                Some(code) => {
                    record.finish(code_name(code.as_bytes()));
                    None
                }
                None => Some(record),
            };
            Ok(response.map(|body| MeteredBody { body, record }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that finishes its call's record at the trailers (or at its end).
    pub(super) struct MeteredBody<B> {
        #[pin]
        body: B,
        record: Option<CallRecord>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its end: the client went away (or the server aborted the call).
            if let Some(record) = this.project().record.take() {
                record.finish("CANCELLED");
            }
        }
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if this.record.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        let code = trailers
                            .get("grpc-status")
                            .map_or("UNKNOWN", |code| code_name(code.as_bytes()));
                        if let Some(record) = this.record.take() {
                            record.finish(code);
                        }
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    if let Some(record) = this.record.take() {
                        record.finish("UNKNOWN");
                    }
                }
                Poll::Ready(None) => {
                    if let Some(record) = this.record.take() {
                        record.finish("UNKNOWN");
                    }
                }
                Poll::Pending => {}
            }
        }
        polled
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

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/mehr.v1.NodeService/GetInfo"),
            "mehr.v1.NodeService/GetInfo"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/mehr.v1.NodeService/Nope"), OTHER_METHOD);
        assert_eq!(method_label("/wp-login.php"), OTHER_METHOD);
    }

    #[test]
    fn codes_are_named_and_server_errors_told_apart() {
        assert_eq!(code_name(b"5"), "NOT_FOUND");
        assert_eq!(code_name(b"99"), "UNKNOWN");
        assert!(!is_server_error("NOT_FOUND"));
        assert!(is_server_error("INTERNAL"));
    }
}
