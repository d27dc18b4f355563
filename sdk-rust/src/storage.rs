//! The node's local object store (`mehr.v1.StorageService`).
//!
//! ```no_run
//! # async fn demo(client: mehr_sdk::Client) -> Result<(), mehr_sdk::Error> {
//! use mehr_sdk::storage::{ByteRange, PutOptions};
//! let stored = client.put_bytes(b"hello".to_vec(), PutOptions::named("greeting")).await?;
//! assert_eq!(stored.object.id, mehr_sdk::storage::ObjectId::for_bytes(b"hello"));
//! let file = tokio::fs::File::open("video.mp4").await.map_err(|e| mehr_sdk::Error::Io {
//!     context: "video.mp4".into(),
//!     source: e,
//! })?;
//! let video = client.put(file, PutOptions::default()).await?;
//! let head = client.get_bytes(&video.object.id, ByteRange::new(0, 4096)).await?;
//! # Ok(()) }
//! ```

use std::{fmt, io, sync::Arc};

use futures::{Stream, StreamExt, TryStreamExt, stream};
pub use mehr_proto::v1::storage_service_client::StorageServiceClient;
use mehr_proto::v1::{self as pb, put_object_request::Part};
pub use mehr_storage::ObjectId;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};
use tonic::codegen::Bytes;

use crate::{AuthedChannel, Client, Error, EventStream};

/// Bytes per Put message: large enough to keep per-message costs small, well under the 4 MiB
/// message limit.
const PUT_MESSAGE_BYTES: usize = 256 << 10;
/// Put messages queued ahead of the connection.
const PUT_QUEUE: usize = 4;

/// A stored object, as the node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object id: the root of the object's Merkle commitment
    /// ([`ObjectId::for_bytes`] computes it locally).
    pub id: ObjectId,
    /// Size in bytes.
    pub length: u64,
    /// Number of 4 KiB chunks.
    pub chunk_count: u64,
    /// When the node stored it, milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// The label given when it was stored.
    pub name: Option<String>,
}

impl TryFrom<pb::ObjectInfo> for ObjectInfo {
    type Error = Error;

    fn try_from(info: pb::ObjectInfo) -> Result<Self, Error> {
        let id = <[u8; 32]>::try_from(info.id.as_ref()).map_err(|_| {
            Error::InvalidResponse(format!(
                "an object id has 32 bytes, the daemon sent {}",
                info.id.len()
            ))
        })?;
        Ok(ObjectInfo {
            id: ObjectId::from_bytes(id),
            length: info.length,
            chunk_count: info.chunk_count,
            created_at_unix_ms: info.created_at_unix_ms,
            name: Some(info.name).filter(|name| !name.is_empty()),
        })
    }
}

fn object_of(info: Option<pb::ObjectInfo>) -> Result<ObjectInfo, Error> {
    info.ok_or_else(|| Error::InvalidResponse("the answer has no object".into()))?
        .try_into()
}

/// The result of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The stored object.
    pub object: ObjectInfo,
    /// True when the node already had these bytes: nothing new was stored, and `object` is the
    /// existing object (with its original name).
    pub already_stored: bool,
}

/// Called with the number of bytes sent so far.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// How to store an object.
#[derive(Clone, Default)]
pub struct PutOptions {
    /// A label for people (at most 256 bytes).
    pub name: Option<String>,
    /// The size, when known: the node refuses an object over its limits before any byte is
    /// sent, and fails the put if the data has another length.
    pub expected_size: Option<u64>,
    /// Progress reports, after each message handed to the connection.
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutOptions")
            .field("name", &self.name)
            .field("expected_size", &self.expected_size)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl PutOptions {
    /// Options with a name.
    pub fn named(name: impl Into<String>) -> Self {
        PutOptions {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Announces the size.
    pub fn with_expected_size(mut self, size: u64) -> Self {
        self.expected_size = Some(size);
        self
    }

    /// Reports progress to `progress` (bytes sent so far).
    pub fn with_progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

/// Which bytes of an object to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteRange {
    /// The first byte.
    pub offset: u64,
    /// How many bytes; `None` for everything from `offset` on.
    pub length: Option<u64>,
}

impl ByteRange {
    /// The whole object.
    pub fn all() -> Self {
        ByteRange::default()
    }

    /// `length` bytes from `offset`.
    pub fn new(offset: u64, length: u64) -> Self {
        ByteRange {
            offset,
            length: Some(length),
        }
    }

    /// Everything from `offset` to the end.
    pub fn from_offset(offset: u64) -> Self {
        ByteRange {
            offset,
            length: None,
        }
    }
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Oldest first.
    #[default]
    Created,
    /// By object id.
    Id,
}

/// Which objects a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListScope {
    /// The objects stored on the node.
    #[default]
    Local,
    /// The objects the node placed on providers (held locally or not), always by id.
    Placed,
}

/// Which page of the object list to get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Which objects.
    pub scope: ListScope,
    /// Objects per page (the node's default, 100, when 0; at most 1000).
    pub page_size: u32,
    /// The previous page's `next_page_token`; empty for the first page.
    pub page_token: String,
    /// The order (placed objects are always listed by id).
    pub order: ListOrder,
}

/// One page of the object list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    /// The objects.
    pub objects: Vec<ObjectInfo>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The bytes of a get, in order. The node checks every chunk against the object id before
/// sending it; damaged data ends the stream with an error whose code is `DATA_LOSS`.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// What the put feeder hands the request stream. The stream ends only on `End`, after the
/// protocol's end message: if the feeder fails (the data source broke), the stream stays open
/// while the call is dropped, so the node sees a cancelled call, and never the end message it
/// needs to commit.
enum Feed {
    Message(pb::PutObjectRequest),
    End,
}

impl Client {
    /// The raw `StorageService` client.
    pub fn storage(&self) -> StorageServiceClient<AuthedChannel> {
        StorageServiceClient::new(self.channel.clone())
    }

    /// Stores everything `reader` yields as one object; returns once it is durable on the node.
    pub async fn put<R>(&self, reader: R, options: PutOptions) -> Result<PutOutcome, Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let chunks = stream::try_unfold(reader, |mut reader| async move {
            let mut buffer = Vec::with_capacity(PUT_MESSAGE_BYTES);
            while buffer.len() < PUT_MESSAGE_BYTES {
                let read = (&mut reader)
                    .take((PUT_MESSAGE_BYTES - buffer.len()) as u64)
                    .read_to_end(&mut buffer)
                    .await?;
                if read == 0 {
                    break;
                }
            }
            Ok::<_, io::Error>((!buffer.is_empty()).then(|| (Bytes::from(buffer), reader)))
        });
        self.put_stream(chunks, options).await
    }

    /// Stores the concatenation of the byte chunks `data` yields (of any sizes) as one object.
    /// An error from `data` cancels the put: nothing is stored.
    pub async fn put_stream<S>(&self, data: S, options: PutOptions) -> Result<PutOutcome, Error>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        let (feed, queue) = mpsc::channel(PUT_QUEUE);
        let requests = stream::unfold(queue, |mut queue| async move {
            match queue.recv().await {
                Some(Feed::Message(message)) => Some((message, queue)),
                Some(Feed::End) => None,
                None => futures::future::pending().await,
            }
        });
        let mut storage = self.storage();
        let call = storage.put_object(requests);
        let metadata = pb::PutObjectRequest {
            part: Some(Part::Metadata(pb::PutMetadata {
                name: options.name.unwrap_or_default(),
                expected_size: options.expected_size,
            })),
        };
        let progress = options.progress;
        let send = async move {
            feed.send(Feed::Message(metadata)).await.ok();
            let mut sent = 0u64;
            let mut data = std::pin::pin!(data);
            while let Some(piece) = data.next().await {
                let piece = piece.map_err(|source| Error::Io {
                    context: "reading the data to store".into(),
                    source,
                })?;
                // Split pieces larger than a message; `slice` shares the buffer.
                let mut rest = piece;
                while !rest.is_empty() {
                    let part = rest.split_to(rest.len().min(PUT_MESSAGE_BYTES));
                    sent += part.len() as u64;
                    let message = pb::PutObjectRequest {
                        part: Some(Part::Data(part)),
                    };
                    if feed.send(Feed::Message(message)).await.is_err() {
                        // The call has ended; its result says why.
                        return Ok(feed);
                    }
                    if let Some(progress) = &progress {
                        progress(sent);
                    }
                }
            }
            // The end message commits the object; a stream that stops without it stores nothing.
            let end = pb::PutObjectRequest {
                part: Some(Part::End(pb::PutEnd { length: sent })),
            };
            if feed.send(Feed::Message(end)).await.is_ok() {
                feed.send(Feed::End).await.ok();
            }
            Ok(feed)
        };
        let mut call = std::pin::pin!(call);
        let mut send = std::pin::pin!(send);
        let response = tokio::select! {
            // The node answered before the data was all sent: an error (a limit, a bad name).
            response = &mut call => response,
            fed = &mut send => match fed {
                Ok(_feed) => call.await,
                // Returning drops the call (the node sees it cancelled) before the feed.
                Err(e) => return Err(e),
            },
        };
        let response = response?.into_inner();
        Ok(PutOutcome {
            object: object_of(response.object)?,
            already_stored: response.already_stored,
        })
    }

    /// Stores `data` as one object (its size is announced to the node first).
    pub async fn put_bytes(
        &self,
        data: impl Into<Bytes>,
        mut options: PutOptions,
    ) -> Result<PutOutcome, Error> {
        let data = data.into();
        options.expected_size.get_or_insert(data.len() as u64);
        self.put_stream(stream::iter([Ok(data)]), options).await
    }

    /// Streams `range` of object `id`.
    pub async fn get(&self, id: &ObjectId, range: ByteRange) -> Result<ByteStream, Error> {
        let stream = self
            .storage()
            .get_object(pb::GetObjectRequest {
                id: Bytes::copy_from_slice(id.as_bytes()),
                offset: range.offset,
                length: range.length,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.map(|item| {
            item.map(|message| message.data).map_err(Error::from)
        })))
    }

    /// Writes `range` of object `id` to `writer`; returns the number of bytes written.
    pub async fn get_to<W>(
        &self,
        id: &ObjectId,
        range: ByteRange,
        writer: &mut W,
    ) -> Result<u64, Error>
    where
        W: AsyncWrite + Unpin,
    {
        let mut stream = self.get(id, range).await?;
        let mut written = 0u64;
        let io = |source| Error::Io {
            context: "writing the object's bytes".into(),
            source,
        };
        while let Some(data) = stream.try_next().await? {
            writer.write_all(&data).await.map_err(io)?;
            written += data.len() as u64;
        }
        writer.flush().await.map_err(io)?;
        Ok(written)
    }

    /// `range` of object `id`, in memory.
    pub async fn get_bytes(&self, id: &ObjectId, range: ByteRange) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.get_to(id, range, &mut out).await?;
        Ok(out)
    }

    /// Describes object `id`.
    pub async fn stat(&self, id: &ObjectId) -> Result<ObjectInfo, Error> {
        let response = self
            .storage()
            .stat_object(pb::StatObjectRequest {
                id: Bytes::copy_from_slice(id.as_bytes()),
            })
            .await?
            .into_inner();
        object_of(response.object)
    }

    /// One page of the stored objects.
    pub async fn list(&self, options: ListOptions) -> Result<ObjectPage, Error> {
        let (scope, order) = match (options.scope, options.order) {
            (ListScope::Placed, _) => (pb::ListScope::Placed, pb::ListOrder::Id),
            (ListScope::Local, ListOrder::Created) => {
                (pb::ListScope::Local, pb::ListOrder::Created)
            }
            (ListScope::Local, ListOrder::Id) => (pb::ListScope::Local, pb::ListOrder::Id),
        };
        let response = self
            .storage()
            .list_objects(pb::ListObjectsRequest {
                page_size: options.page_size,
                page_token: options.page_token,
                order: order as i32,
                scope: scope as i32,
            })
            .await?
            .into_inner();
        Ok(ObjectPage {
            objects: response
                .objects
                .into_iter()
                .map(ObjectInfo::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: Some(response.next_page_token).filter(|t| !t.is_empty()),
        })
    }

    /// Every stored object, fetching pages as the stream is read.
    pub fn list_all(&self, order: ListOrder) -> EventStream<ObjectInfo> {
        self.list_every(ListScope::Local, order)
    }

    /// Every object placed on providers, by id, fetching pages as the stream is read.
    pub fn list_all_placed(&self) -> EventStream<ObjectInfo> {
        self.list_every(ListScope::Placed, ListOrder::Id)
    }

    fn list_every(&self, scope: ListScope, order: ListOrder) -> EventStream<ObjectInfo> {
        let client = self.clone();
        let pages = stream::try_unfold(Some(String::new()), move |token| {
            let client = client.clone();
            async move {
                let Some(page_token) = token else {
                    return Ok(None);
                };
                let page = client
                    .list(ListOptions {
                        scope,
                        page_size: 0,
                        page_token,
                        order,
                    })
                    .await?;
                let objects = stream::iter(page.objects.into_iter().map(Ok));
                Ok::<_, Error>(Some((objects, page.next_page_token)))
            }
        });
        Box::pin(pages.try_flatten())
    }

    /// Removes object `id`; returns what it was.
    pub async fn delete(&self, id: &ObjectId) -> Result<ObjectInfo, Error> {
        let response = self
            .storage()
            .delete_object(pb::DeleteObjectRequest {
                id: Bytes::copy_from_slice(id.as_bytes()),
            })
            .await?
            .into_inner();
        object_of(response.object)
    }
}

/// A node id (16 bytes), as providers are named.
pub type NodeId = [u8; 16];

fn node_id_of(bytes: &[u8], what: &str) -> Result<NodeId, Error> {
    <[u8; 16]>::try_from(bytes).map_err(|_| {
        Error::InvalidResponse(format!(
            "{what}: a node id has 16 bytes, the daemon sent {}",
            bytes.len()
        ))
    })
}

/// What a replication asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicateOptions {
    /// Providers: the first `k + m` get a shard each, the rest are spares for repair.
    pub providers: Vec<NodeId>,
    /// `k` (data shards); `None` for the node's `storage.data_shards`.
    pub data_shards: Option<u8>,
    /// `m` (parity shards); `None` for the node's `storage.parity_shards`.
    pub parity_shards: Option<u8>,
    /// Agreement duration in seconds; `None` for `storage.agreement_duration_secs`.
    pub duration_secs: Option<u64>,
    /// The price agreed with the providers, μMHR per byte per day.
    pub price_per_byte_day_umhr: u64,
    /// Idempotency key (1–64 bytes; empty: none): a retry with the same key answers with the
    /// placement the first call made instead of failing because the object is placed.
    pub request_id: Vec<u8>,
}

impl ReplicateOptions {
    /// On `providers`, with the node's default code and duration.
    pub fn on(providers: impl IntoIterator<Item = NodeId>) -> Self {
        ReplicateOptions {
            providers: providers.into_iter().collect(),
            ..Default::default()
        }
    }

    /// With `k` data and `m` parity shards.
    pub fn with_code(mut self, data_shards: u8, parity_shards: u8) -> Self {
        self.data_shards = Some(data_shards);
        self.parity_shards = Some(parity_shards);
        self
    }

    /// With an idempotency key (see [`ReplicateOptions::request_id`]).
    pub fn with_request_id(mut self, request_id: impl Into<Vec<u8>>) -> Self {
        self.request_id = request_id.into();
        self
    }
}

/// A shard's health as its challenges say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardHealth {
    /// The last challenge passed, or none was sent yet.
    Healthy,
    /// The last challenges failed, fewer than three in a row.
    Suspect,
    /// Three failures in a row: being repaired onto a spare.
    Lost,
}

impl ShardHealth {
    fn from_proto(value: i32) -> Result<Self, Error> {
        match pb::ShardHealth::try_from(value) {
            Ok(pb::ShardHealth::Healthy) => Ok(ShardHealth::Healthy),
            Ok(pb::ShardHealth::Suspect) => Ok(ShardHealth::Suspect),
            Ok(pb::ShardHealth::Lost) => Ok(ShardHealth::Lost),
            _ => Err(Error::InvalidResponse(format!(
                "unknown shard health {value}"
            ))),
        }
    }
}

impl fmt::Display for ShardHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShardHealth::Healthy => "healthy",
            ShardHealth::Suspect => "suspect",
            ShardHealth::Lost => "lost",
        })
    }
}

/// One shard of a placed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlacement {
    /// Shard index: `0..k` data, `k..k+m` parity.
    pub index: u8,
    /// The shard's object id.
    pub root: ObjectId,
    /// Its length.
    pub length: u64,
    /// The provider holding it.
    pub provider: NodeId,
    /// Its health.
    pub health: ShardHealth,
    /// Failed challenges since the last pass.
    pub consecutive_failures: u32,
    /// When it was last challenged (ms since the Unix epoch); `None` for never.
    pub last_challenge_at_unix_ms: Option<u64>,
    /// Challenges passed.
    pub challenges_passed: u64,
    /// Challenges failed.
    pub challenges_failed: u64,
    /// What verified storage has earned the provider, μMHR.
    pub owed_umhr: u64,
    /// Of it, what has been paid through the ledger's channel with the provider.
    pub paid_umhr: u64,
    /// Why the last challenge failed.
    pub last_error: Option<String>,
}

/// Where an object's shards are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `k`.
    pub data_shards: u8,
    /// `m`.
    pub parity_shards: u8,
    /// When the agreement ends, seconds since the Unix epoch.
    pub expires_at_unix_s: u64,
    /// The agreed price, μMHR per byte per day.
    pub price_per_byte_day_umhr: u64,
    /// Every shard in index order.
    pub shards: Vec<ShardPlacement>,
    /// Providers left for repairs.
    pub spare_providers: Vec<NodeId>,
}

impl TryFrom<pb::RemotePlacement> for Placement {
    type Error = Error;

    fn try_from(placement: pb::RemotePlacement) -> Result<Self, Error> {
        let small = |value: u32, what: &str| {
            u8::try_from(value)
                .map_err(|_| Error::InvalidResponse(format!("{what} {value} is over 255")))
        };
        let shards = placement
            .shards
            .into_iter()
            .map(|shard| {
                let root = <[u8; 32]>::try_from(shard.root.as_ref()).map_err(|_| {
                    Error::InvalidResponse(format!(
                        "a shard root has 32 bytes, the daemon sent {}",
                        shard.root.len()
                    ))
                })?;
                Ok(ShardPlacement {
                    index: small(shard.index, "shard index")?,
                    root: ObjectId::from_bytes(root),
                    length: shard.length,
                    provider: node_id_of(&shard.provider, "shard provider")?,
                    health: ShardHealth::from_proto(shard.health)?,
                    consecutive_failures: shard.consecutive_failures,
                    last_challenge_at_unix_ms: Some(shard.last_challenge_at_unix_ms)
                        .filter(|t| *t > 0),
                    challenges_passed: shard.challenges_passed,
                    challenges_failed: shard.challenges_failed,
                    owed_umhr: shard.owed_umhr,
                    paid_umhr: shard.paid_umhr,
                    last_error: Some(shard.last_error).filter(|e| !e.is_empty()),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Placement {
            data_shards: small(placement.data_shards, "data shards")?,
            parity_shards: small(placement.parity_shards, "parity shards")?,
            expires_at_unix_s: placement.expires_at_unix_s,
            price_per_byte_day_umhr: placement.price_per_byte_day_umhr,
            shards,
            spare_providers: placement
                .spare_providers
                .iter()
                .map(|p| node_id_of(p, "spare provider"))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An object with where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    /// The object.
    pub object: ObjectInfo,
    /// Whether its bytes are on the node itself.
    pub held_locally: bool,
    /// Where it is placed on providers, if it is.
    pub placement: Option<Placement>,
}

/// The outcome of challenging one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeResult {
    /// Shard index.
    pub index: u8,
    /// The provider challenged.
    pub provider: NodeId,
    /// Whether a valid proof came back.
    pub passed: bool,
    /// Why it failed.
    pub detail: Option<String>,
    /// The shard's health after the challenge.
    pub health: ShardHealth,
}

impl Client {
    /// Describes object `id` with its placement on providers (see [`Client::stat`] for the
    /// object alone).
    pub async fn status(&self, id: &ObjectId) -> Result<ObjectStatus, Error> {
        let response = self
            .storage()
            .stat_object(pb::StatObjectRequest {
                id: Bytes::copy_from_slice(id.as_bytes()),
            })
            .await?
            .into_inner();
        Ok(ObjectStatus {
            object: object_of(response.object)?,
            held_locally: response.held_locally,
            placement: response.placement.map(Placement::try_from).transpose()?,
        })
    }

    /// Places the locally stored object `id` on providers, erasure coded; returns the
    /// placement once every shard is stored.
    pub async fn replicate(
        &self,
        id: &ObjectId,
        options: ReplicateOptions,
    ) -> Result<Placement, Error> {
        let response = self
            .storage()
            .replicate_object(pb::ReplicateObjectRequest {
                id: Bytes::copy_from_slice(id.as_bytes()),
                providers: options
                    .providers
                    .iter()
                    .map(|p| Bytes::copy_from_slice(p))
                    .collect(),
                data_shards: options.data_shards.map_or(0, u32::from),
                parity_shards: options.parity_shards.map_or(0, u32::from),
                duration_secs: options.duration_secs.unwrap_or(0),
                price_per_byte_day_umhr: options.price_per_byte_day_umhr,
                request_id: options.request_id.into(),
            })
            .await?
            .into_inner();
        response
            .placement
            .ok_or_else(|| Error::InvalidResponse("the answer has no placement".into()))?
            .try_into()
    }

    /// Challenges every shard of placed object `id` now. Each provider gets until the API's
    /// deadline to answer (see [`Client::challenge_within`]).
    pub async fn challenge(&self, id: &ObjectId) -> Result<Vec<ChallengeResult>, Error> {
        self.challenge_request(id, None).await
    }

    /// Challenges every shard of placed object `id`, waiting at most about `wait` for the
    /// providers. A provider still silent then is reported as not passed, but — as the wait
    /// is shorter than the node's `storage.remote_timeout_secs` — not counted against its
    /// health; the node's periodic challenges give it the full time.
    pub async fn challenge_within(
        &self,
        id: &ObjectId,
        wait: std::time::Duration,
    ) -> Result<Vec<ChallengeResult>, Error> {
        self.challenge_request(id, Some(wait)).await
    }

    async fn challenge_request(
        &self,
        id: &ObjectId,
        wait: Option<std::time::Duration>,
    ) -> Result<Vec<ChallengeResult>, Error> {
        let mut request = tonic::Request::new(pb::ChallengeObjectRequest {
            id: Bytes::copy_from_slice(id.as_bytes()),
        });
        if let Some(wait) = wait {
            request.set_timeout(wait);
        }
        let response = self.storage().challenge_object(request).await?.into_inner();
        response
            .results
            .into_iter()
            .map(|r| {
                Ok(ChallengeResult {
                    index: u8::try_from(r.index).map_err(|_| {
                        Error::InvalidResponse(format!("shard index {} is over 255", r.index))
                    })?,
                    provider: node_id_of(&r.provider, "challenged provider")?,
                    passed: r.passed,
                    detail: Some(r.detail).filter(|d| !d.is_empty()),
                    health: ShardHealth::from_proto(r.health)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_info_checks_the_id_the_daemon_sent() {
        let info = pb::ObjectInfo {
            id: Bytes::from(vec![7; 32]),
            length: 5,
            chunk_count: 1,
            created_at_unix_ms: 9,
            name: String::new(),
        };
        let converted = ObjectInfo::try_from(info.clone()).unwrap();
        assert_eq!(converted.id, ObjectId::from_bytes([7; 32]));
        assert_eq!(converted.name, None, "an empty name is no name");
        let short = pb::ObjectInfo {
            id: Bytes::from(vec![7; 31]),
            ..info
        };
        let err = ObjectInfo::try_from(short).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected answer from the daemon: an object id has 32 bytes, the daemon sent 31"
        );
    }

    #[test]
    fn byte_ranges_say_what_they_cover() {
        assert_eq!(
            ByteRange::all(),
            ByteRange {
                offset: 0,
                length: None
            }
        );
        assert_eq!(
            ByteRange::new(4096, 10),
            ByteRange {
                offset: 4096,
                length: Some(10)
            }
        );
        assert_eq!(ByteRange::from_offset(3).length, None);
    }
}
