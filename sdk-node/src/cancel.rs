//! The scope of one call: an `AbortSignal` becomes a [`CancelToken`] the async methods select
//! on, and the caller's trace position (a W3C `traceparent`, read by lib/ from
//! `@opentelemetry/api` when it is installed) travels with it, so that the daemon's span of the
//! call joins the caller's trace.

use std::future::Future;

use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use crate::failure::{Failure, Result};

/// A native call scope: cancelled from an `AbortSignal`'s `abort` event, and carrying the
/// caller's `traceparent` when it is inside a trace.
#[napi]
#[derive(Default)]
pub struct CancelToken {
    token: CancellationToken,
    traceparent: Option<String>,
}

#[napi]
impl CancelToken {
    /// A token not yet cancelled; `traceparent` (`00-<trace>-<span>-<flags>`) is sent with
    /// every call given this token (a value that is not one is ignored).
    #[napi(constructor)]
    pub fn new(traceparent: Option<String>) -> Self {
        CancelToken {
            token: CancellationToken::new(),
            traceparent,
        }
    }

    /// Cancels every operation that was given this token.
    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

/// What a call runs under: its cancellation and its trace position.
#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) token: CancellationToken,
    traceparent: Option<String>,
}

impl Scope {
    /// The scope of an optional [`CancelToken`] (never cancelled, no trace, when absent).
    pub(crate) fn of(cancel: Option<&CancelToken>) -> Self {
        cancel.map_or_else(Scope::default, |c| Scope {
            token: c.token.clone(),
            traceparent: c.traceparent.clone(),
        })
    }

    /// Runs `work` carrying the trace position, without cancellation (for work that is
    /// cancelled its own way, like a put's task).
    pub(crate) async fn traced<F: Future>(self, work: F) -> F::Output {
        mehr_sdk::trace::with_traceparent(self.traceparent.as_deref(), work).await
    }

    /// Runs `work` carrying the trace position, until it ends or the scope is cancelled; a
    /// cancelled call drops `work` (and with it the gRPC call, which the daemon then sees as
    /// cancelled).
    pub(crate) async fn run<T>(self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let traced = mehr_sdk::trace::with_traceparent(self.traceparent.as_deref(), work);
        until_cancelled(self.token, traced).await
    }
}

/// Runs `work` until it ends or `token` is cancelled.
pub(crate) async fn until_cancelled<T>(
    token: CancellationToken,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        result = work => result,
        _ = token.cancelled() => Err(Failure::aborted().into()),
    }
}
