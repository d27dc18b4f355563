//! Logging and tracing: `tracing` to stderr, as text or JSON lines, filtered by the configured
//! level (a `tracing` filter such as `info` or `mehrd=debug,tower=warn`; `RUST_LOG` is not read
//! so that the config layers stay the one source); and, when `[telemetry] otlp_endpoint` is
//! set, the node's spans exported over OTLP/gRPC (docs/OPERATIONS.md, "Traces").
//!
//! Colour escapes are written only when stderr is a terminal and `NO_COLOR` is unset: a log
//! file or the journal would otherwise keep them as noise.
//!
//! With no endpoint nothing of OpenTelemetry is installed: the spans that exist only for the
//! trace (one per API call, one per piece of mesh work) are not even created
//! ([`exporting`] gates them), so tracing costs nothing when it is off.
//!
//! With an endpoint, sampling is decided before a span is made (head sampling): a trace this
//! node starts is recorded with the probability `telemetry.sample_ratio`, a caller's or peer's
//! trace as its `sampled` flag says. An unsampled call makes no span at all: an OpenTelemetry
//! span that is created and then dropped by the SDK's sampler would still cost most of what a
//! recorded one does (the `tracing` span, its attributes, the OpenTelemetry builder).

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use opentelemetry::{
    Context, KeyValue,
    trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
    },
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Whether spans are exported (set once by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// A trace this node starts is recorded when a random `u64` is below this (`u64::MAX`: every
/// one); set by [`init`] from `telemetry.sample_ratio`.
static SAMPLE_BELOW: AtomicU64 = AtomicU64::new(u64::MAX);

/// How long an export to the collector may take before it is given up (the batch is dropped,
/// the node goes on).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed telemetry; [`Telemetry::shutdown`] flushes the spans still queued.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter. Blocks (up to the export timeout):
    /// call it off the async runtime's workers, after the API has drained.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown_with_timeout(EXPORT_TIMEOUT)
        {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: the log output, and the OTLP trace exporter when
/// `telemetry.otlp_endpoint` is set. With an endpoint this must run inside a Tokio runtime
/// (the gRPC exporter's channel is made on it). Fails when the filter does not parse or the
/// exporter cannot be built.
pub fn init(config: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| format!("invalid log level `{}`: {e}", config.level))?;
    let logs = match config.format {
        LogFormat::Text => fmt::layer()
            .with_ansi(wants_colour())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (traces, tracer_provider) = match telemetry.endpoint() {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint)?;
            // The trace has its own filter: the log level must not decide which spans an
            // operator's collector sees, and only this crate's spans (API calls, mesh work)
            // are part of the trace, not every library's.
            // No context activation: parents are found through the `tracing` span tree, and
            // nothing here reads OpenTelemetry's thread-local current context, so attaching it
            // on every poll of every instrumented future would be work for nobody.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("mehrd"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(Targets::new().with_target("mehrd", tracing::Level::INFO));
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            SAMPLE_BELOW.store(sample_threshold(telemetry.sample_ratio), Ordering::Relaxed);
            EXPORTING.store(true, Ordering::Relaxed);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(Telemetry { tracer_provider })
}

/// The tracer provider: a batch exporter over OTLP/gRPC (on its own thread). The SDK samples
/// every span it is given: the decision was taken before the span was made
/// ([`starts_trace`], [`continues`]).
fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
    // `Resource::builder` also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, so a
    // deployment can add its own attributes (Kubernetes: the pod name).
    let resource = Resource::builder()
        .with_service_name("mehrd")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

/// Whether spans are exported. Code that makes a span only for the trace checks this first, so
/// that a node without a collector does no work for it.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// `u64` threshold of a sampling ratio (clamped to 0.0..=1.0).
fn sample_threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio > 0.0 {
        // 2^64 * ratio; below 1.0 it fits (the cast saturates anyway).
        (ratio * 18_446_744_073_709_551_616.0) as u64
    } else {
        0
    }
}

/// Whether a trace this node starts itself is recorded (`telemetry.sample_ratio`).
pub fn starts_trace() -> bool {
    match SAMPLE_BELOW.load(Ordering::Relaxed) {
        u64::MAX => true,
        0 => false,
        below => rand::random::<u64>() < below,
    }
}

/// Whether `span` is recorded in a sampled trace.
fn is_sampled(span: &tracing::Span) -> bool {
    !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// `make()` when spans are exported and this work is recorded, else a disabled span: spans
/// that exist only for the trace cost nothing without a collector, or when not sampled. Work
/// under a recorded span is recorded; work outside one starts a trace, sampled by
/// `telemetry.sample_ratio`.
pub fn trace_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() && (is_sampled(&tracing::Span::current()) || starts_trace()) {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Like [`trace_span`] for work a peer asked for: when the peer's message carries a sampled
/// trace position the span continues it; otherwise the span starts a trace of its own, sampled
/// by `telemetry.sample_ratio`.
pub fn continues(
    remote: Option<&TraceContext>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    match remote {
        Some(remote) if remote.flags & 1 == 1 => {
            let span = make();
            adopt_remote_trace(remote, &span);
            span
        }
        Some(_) => tracing::Span::none(),
        None if starts_trace() => make(),
        None => tracing::Span::none(),
    }
}

/// Colour on a terminal, unless the user opted out (<https://no-color.org>).
fn wants_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How an API call is traced, from its caller's metadata.
pub enum CallSampling {
    /// Not recorded: make no span.
    Skip,
    /// Recorded, as a trace of its own.
    Root,
    /// Recorded, continuing the caller's sampled trace.
    Caller(Context),
}

/// Decides how a call with these `headers` is traced: a valid W3C `traceparent` decides by its
/// `sampled` flag, a call without one starts a trace sampled by `telemetry.sample_ratio`. Only
/// meaningful when [`exporting`].
pub fn call_sampling(headers: &http::HeaderMap) -> CallSampling {
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        });
        let caller = parent.span().span_context().clone();
        if caller.is_valid() {
            return if caller.is_sampled() {
                CallSampling::Caller(parent)
            } else {
                CallSampling::Skip
            };
        }
    }
    if starts_trace() {
        CallSampling::Root
    } else {
        CallSampling::Skip
    }
}

/// Makes `span` a child of the caller's span (from [`CallSampling::Caller`]).
pub fn continue_caller(span: &tracing::Span, parent: Context) {
    let _ = span.set_parent(parent);
}

/// Reads propagation fields (`traceparent`, `tracestate`) from HTTP/2 headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// A trace position carried inside a mesh message: its 25-byte layout is part of the market's
/// job wire (`mehr_market::control`); this module makes one from a span and continues one.
pub use mehr_market::control::TraceContext;

/// The position of `span` in its trace, when it is in a sampled one.
fn trace_context_of(span: &tracing::Span) -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled()).then(|| TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
    })
}

/// Makes `span` a child of the remote position `trace`. A peer's `sampled` flag is followed
/// ([`continues`]) only on a node that exports traces, and costs one span per job the node
/// accepted anyway.
pub fn adopt_remote_trace(trace: &TraceContext, span: &tracing::Span) {
    let remote = SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.span_id),
        TraceFlags::new(trace.flags),
        true,
        TraceState::default(),
    );
    if remote.is_valid() {
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

tokio::task_local! {
    /// Set while an API call whose caller sent a `traceparent` runs: the caller opted in to
    /// have its trace carried on into the mesh.
    static CALLER_TRACES: ();
}

/// Runs `call` as one whose caller opted in to carry its trace into the mesh.
pub async fn with_caller_trace<F: Future>(call: F) -> F::Output {
    CALLER_TRACES.scope((), call).await
}

/// The trace position to put into a mesh message sent from `span`: only when the API call
/// that caused it came with a caller's `traceparent` (the opt-in) and the trace is sampled.
pub fn for_mesh(span: &tracing::Span) -> Option<TraceContext> {
    if !exporting() || CALLER_TRACES.try_with(|_| ()).is_err() {
        return None;
    }
    trace_context_of(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_in_25_bytes() {
        let context = TraceContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            flags: 1,
        };
        let bytes = context.to_bytes();
        assert_eq!(bytes.len(), 25);
        assert_eq!(TraceContext::from_bytes(&bytes), context);
    }

    #[test]
    fn sample_ratios_become_thresholds() {
        assert_eq!(sample_threshold(1.0), u64::MAX);
        assert_eq!(sample_threshold(0.0), 0);
        assert_eq!(sample_threshold(0.5), 1 << 63);
        assert_eq!(sample_threshold(-1.0), 0);
    }

    #[tokio::test]
    async fn nothing_is_carried_into_the_mesh_without_an_exporter() {
        let span = tracing::info_span!("call");
        assert_eq!(with_caller_trace(async { for_mesh(&span) }).await, None);
    }
}
