//! Server streams as pull iterators: `next()` resolves with the next item, or `null` at the
//! end. `lib/` wraps each in an `AsyncIterable`; pulling gives backpressure for free, and
//! `close()` (called when a `for await` loop breaks) drops the gRPC stream.

use std::sync::Arc;

use futures::StreamExt;
use mehr_sdk::{EventStream, proto as pb};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio::sync::Mutex;

use crate::{
    cancel::until_cancelled,
    failure::{Result, sdk},
    values::{Agreement, InboundMessage, NodeEvent},
};

/// A stream shared between `next()` and `close()`; `None` once closed.
pub(crate) type Shared<T> = Arc<Mutex<Option<EventStream<T>>>>;

pub(crate) async fn pull<T, U>(
    stream: Shared<T>,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Option<U>>
where
    U: From<T>,
{
    until_cancelled(cancel, async move {
        let mut guard = stream.lock().await;
        let Some(inner) = guard.as_mut() else {
            return Ok(None);
        };
        match inner.next().await {
            Some(item) => sdk(item).map(|item| Some(U::from(item))),
            None => {
                *guard = None;
                Ok(None)
            }
        }
    })
    .await
}

/// Defines a pull stream class over an `EventStream` of one message type.
macro_rules! pull_stream {
    ($(#[$doc:meta])* $name:ident, $item:ty, $js:ty) => {
        $(#[$doc])*
        #[napi]
        pub struct $name {
            stream: $crate::streams::Shared<$item>,
        }

        impl $name {
            pub(crate) fn new(stream: mehr_sdk::EventStream<$item>) -> Self {
                $name { stream: std::sync::Arc::new(tokio::sync::Mutex::new(Some(stream))) }
            }
        }

        #[napi]
        impl $name {
            /// The next item, or `null` once the stream has ended or was closed.
            #[napi]
            pub async fn next(&self, cancel: Option<&$crate::cancel::CancelToken>) -> Result<Option<$js>> {
                $crate::streams::pull::<$item, $js>(self.stream.clone(), $crate::cancel::Scope::of(cancel).token).await
            }

            /// Ends the stream (the daemon sees the call cancelled).
            #[napi]
            pub async fn close(&self) -> Result<()> {
                self.stream.lock().await.take();
                Ok(())
            }
        }
    };
}
pub(crate) use pull_stream;

pull_stream!(
    /// The node's events.
    NodeEventStream,
    pb::NodeEvent,
    NodeEvent
);
pull_stream!(
    /// Messages arriving on a listened app destination.
    MessageStream,
    pb::InboundMessage,
    InboundMessage
);
pull_stream!(
    /// Agreement changes.
    AgreementStream,
    pb::WatchAgreementsResponse,
    AgreementChange
);
pull_stream!(
    /// The bytes of a get, in chunks as the node sends them.
    ByteStream,
    prost::bytes::Bytes,
    Chunk
);

/// One changed agreement.
#[napi(object)]
pub struct AgreementChange {
    pub agreement: Option<Agreement>,
    pub at_unix_ms: f64,
}

impl From<pb::WatchAgreementsResponse> for AgreementChange {
    fn from(change: pb::WatchAgreementsResponse) -> Self {
        AgreementChange {
            agreement: change.agreement.map(Agreement::from),
            at_unix_ms: change.at_unix_ms as f64,
        }
    }
}

/// One chunk of an object's bytes.
#[napi(object)]
pub struct Chunk {
    pub data: Buffer,
}

impl From<prost::bytes::Bytes> for Chunk {
    fn from(bytes: prost::bytes::Bytes) -> Self {
        Chunk {
            data: Vec::from(bytes).into(),
        }
    }
}
