//! W3C trace context on calls: every call carries a `traceparent` when the caller is inside a
//! trace, so the daemon's span of the call (and, on the mesh, the provider's) joins the
//! caller's trace (docs/OPERATIONS.md, "Traces").
//!
//! The position comes from [`with_traceparent`] when the caller gives one, and otherwise, with
//! the `opentelemetry` feature, from the current `tracing` span (through
//! `tracing-opentelemetry`) or OpenTelemetry's current context.

use std::future::Future;

use tonic::metadata::AsciiMetadataValue;

tokio::task_local! {
    static TRACEPARENT: AsciiMetadataValue;
}

/// Runs `call` with every API call it makes carrying `traceparent` (a W3C trace-context header
/// value, `00-<trace id>-<span id>-<flags>`). A value that is not one is ignored, and so is
/// `None`: the calls then carry what the `opentelemetry` feature finds, or nothing.
pub async fn with_traceparent<F: Future>(traceparent: Option<&str>, call: F) -> F::Output {
    match traceparent
        .filter(|v| is_traceparent(v))
        .and_then(|v| v.parse().ok())
    {
        Some(value) => TRACEPARENT.scope(value, call).await,
        None => call.await,
    }
}

/// `00-` + 32 hex + `-` + 16 hex + `-` + 2 hex, ids not all zero.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(parts.as_slice(), [version, trace, span, flags]
        if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'))
}

/// The `traceparent` for a call made now, if the caller is inside a trace.
pub(crate) fn current() -> Option<AsciiMetadataValue> {
    TRACEPARENT
        .try_with(Clone::clone)
        .ok()
        .or_else(from_opentelemetry)
}

#[cfg(feature = "opentelemetry")]
fn from_opentelemetry() -> Option<AsciiMetadataValue> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let span_context = |context: &opentelemetry::Context| context.span().span_context().clone();
    let mut position = span_context(&tracing::Span::current().context());
    if !position.is_valid() {
        position = span_context(&opentelemetry::Context::current());
    }
    position.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            position.trace_id(),
            position.span_id(),
            position.trace_flags().to_u8()
        )
        .parse()
        .ok()
    })?
}

#[cfg(not(feature = "opentelemetry"))]
fn from_opentelemetry() -> Option<AsciiMetadataValue> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[tokio::test]
    async fn a_given_traceparent_rides_on_calls_made_inside() {
        assert!(current().is_none());
        let inside = with_traceparent(Some(VALID), async { current() }).await;
        assert_eq!(inside.unwrap(), VALID);
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert!(
                with_traceparent(Some(bad), async { current() })
                    .await
                    .is_none(),
                "{bad}"
            );
        }
    }
}

#[cfg(all(test, feature = "opentelemetry"))]
mod with_opentelemetry {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn the_current_tracing_span_is_the_traceparent() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            assert!(current().is_none(), "no span, no traceparent");
            let span = tracing::info_span!("caller");
            let _entered = span.enter();
            let position = span.context().span().span_context().clone();
            assert!(position.is_valid());
            assert_eq!(
                current().unwrap(),
                format!("00-{}-{}-01", position.trace_id(), position.span_id()).as_str()
            );
        });
    }
}
