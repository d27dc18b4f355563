//! Cancellation: `AbortSignal`s become a [`CancelToken`] the async methods select on.

use std::future::Future;

use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use crate::failure::{Failure, Result};

/// A native cancellation token; `lib/` cancels it from an `AbortSignal`'s `abort` event.
#[napi]
#[derive(Default)]
pub struct CancelToken {
    token: CancellationToken,
}

#[napi]
impl CancelToken {
    /// A token not yet cancelled.
    #[napi(constructor)]
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Cancels every operation that was given this token.
    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

impl CancelToken {
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// The token of an optional [`CancelToken`] (one never cancelled when absent).
pub(crate) fn token_of(cancel: Option<&CancelToken>) -> CancellationToken {
    cancel.map(CancelToken::token).unwrap_or_default()
}

/// Runs `work` until it ends or `token` is cancelled; a cancelled call drops `work` (and with
/// it the gRPC call, which the daemon then sees as cancelled).
pub(crate) async fn until_cancelled<T>(
    token: CancellationToken,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        result = work => result,
        _ = token.cancelled() => Err(Failure::aborted().into()),
    }
}
