//! Storage: puts fed chunk by chunk from JavaScript (a bounded queue, so a fast writer waits
//! for the connection instead of growing memory), gets pulled chunk by chunk, and the
//! object's listing, status, replication and challenges.

use std::{io, sync::Arc};

use mehr_sdk::storage::{
    ByteRange, ChallengeResult, ListOptions, ListOrder, ListScope, ObjectId, ObjectInfo, Placement,
    PutOptions, ReplicateOptions,
};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use prost::bytes::Bytes;
use tokio::{
    sync::{Mutex, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::{
    cancel::{CancelToken, Scope},
    client::NativeClient,
    failure::{Failure, Result, invalid, sdk},
    streams::ByteStream,
    values::{hex_bytes, number, whole},
};

/// Chunks queued between `write()` and the connection: with chunks of Node's 64 KiB stream
/// size this keeps a put's memory at a few hundred KiB whatever the object's size.
const PUT_QUEUE: usize = 8;

/// A stored object.
#[napi(object)]
pub struct StoredObject {
    /// The object id (hex of the 32-byte Merkle root).
    pub id: String,
    pub length: f64,
    pub chunk_count: f64,
    pub created_at_unix_ms: f64,
    pub name: Option<String>,
}

impl From<ObjectInfo> for StoredObject {
    fn from(o: ObjectInfo) -> Self {
        StoredObject {
            id: hex::encode(o.id.as_bytes()),
            length: number(o.length),
            chunk_count: number(o.chunk_count),
            created_at_unix_ms: number(o.created_at_unix_ms),
            name: o.name,
        }
    }
}

/// The result of a put.
#[napi(object)]
pub struct PutResult {
    pub object: StoredObject,
    /// True when the node already had these bytes.
    pub already_stored: bool,
}

/// One shard of a replicated object.
#[napi(object)]
pub struct ShardState {
    pub index: u32,
    /// The provider (node id, hex).
    pub provider: String,
    /// `healthy`, `suspect` or `lost`.
    pub health: String,
    /// The shard's own content id (hex) and size.
    pub root: String,
    pub length: f64,
    /// Failed challenges in a row (three make the shard lost).
    pub consecutive_failures: u32,
    pub last_challenge_at_unix_ms: Option<f64>,
    pub challenges_passed: f64,
    pub challenges_failed: f64,
    /// What this node owes the provider for storing it, and has paid.
    pub owed_umhr: f64,
    pub paid_umhr: f64,
    /// Why the last challenge failed, when it did.
    pub last_error: Option<String>,
}

/// Where an object's shards are.
#[napi(object)]
pub struct ReplicationState {
    pub data_shards: u32,
    pub parity_shards: u32,
    pub expires_at_unix_s: f64,
    /// The storage price agreed, μMHR per byte and day.
    pub price_per_byte_day_umhr: f64,
    pub shards: Vec<ShardState>,
    /// Providers kept in reserve for repairs (node ids, hex).
    pub spare_providers: Vec<String>,
}

impl From<Placement> for ReplicationState {
    fn from(p: Placement) -> Self {
        ReplicationState {
            data_shards: p.data_shards.into(),
            parity_shards: p.parity_shards.into(),
            expires_at_unix_s: number(p.expires_at_unix_s),
            price_per_byte_day_umhr: number(p.price_per_byte_day_umhr),
            spare_providers: p.spare_providers.iter().map(hex::encode).collect(),
            shards: p
                .shards
                .into_iter()
                .map(|s| ShardState {
                    index: s.index.into(),
                    provider: hex::encode(s.provider),
                    health: s.health.to_string(),
                    root: hex::encode(s.root.as_bytes()),
                    length: number(s.length),
                    consecutive_failures: s.consecutive_failures,
                    last_challenge_at_unix_ms: s.last_challenge_at_unix_ms.map(number),
                    challenges_passed: number(s.challenges_passed),
                    challenges_failed: number(s.challenges_failed),
                    owed_umhr: number(s.owed_umhr),
                    paid_umhr: number(s.paid_umhr),
                    last_error: s.last_error,
                })
                .collect(),
        }
    }
}

/// An object's status.
#[napi(object)]
pub struct ObjectStatus {
    pub object: StoredObject,
    pub held_locally: bool,
    /// Set once the object was replicated onto providers.
    pub replication: Option<ReplicationState>,
}

/// One page of the object list.
#[napi(object)]
pub struct ObjectPage {
    pub objects: Vec<StoredObject>,
    pub next_page_token: Option<String>,
}

/// Which page of the object list to get.
#[napi(object)]
pub struct ListQuery {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
    /// `created` (default) or `id`.
    pub order: Option<String>,
    /// List the objects this node placed on providers instead of the local ones.
    pub placed: Option<bool>,
}

/// One shard's answer to a challenge.
#[napi(object)]
pub struct Challenge {
    pub index: u32,
    pub provider: String,
    pub passed: bool,
    pub detail: Option<String>,
    pub health: String,
}

impl From<ChallengeResult> for Challenge {
    fn from(c: ChallengeResult) -> Self {
        Challenge {
            index: c.index.into(),
            provider: hex::encode(c.provider),
            passed: c.passed,
            detail: c.detail,
            health: c.health.to_string(),
        }
    }
}

fn object_id(id: &str) -> Result<ObjectId> {
    let raw = hex_bytes(id, "object id")?;
    let raw = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| {
        invalid(format!(
            "an object id has 32 bytes, `{id}` has {}",
            raw.len()
        ))
    })?;
    Ok(ObjectId::from_bytes(raw))
}

type PutTask = JoinHandle<std::result::Result<mehr_sdk::storage::PutOutcome, mehr_sdk::Error>>;

/// A put in progress: `write()` chunks, then `finish()`.
#[napi]
pub struct PutWriter {
    feed: Mutex<Option<mpsc::Sender<io::Result<Bytes>>>>,
    task: Arc<Mutex<Option<PutTask>>>,
}

impl PutWriter {
    async fn outcome(&self) -> Result<PutResult> {
        let task = self.task.lock().await.take();
        let Some(task) = task else {
            return Err(Failure::new(Code::FailedPrecondition, "the put has already ended").into());
        };
        let outcome = task
            .await
            .map_err(|e| Failure::new(Code::Internal, format!("the put task failed: {e}")))?;
        let outcome = sdk(outcome)?;
        Ok(PutResult {
            object: outcome.object.into(),
            already_stored: outcome.already_stored,
        })
    }
}

#[napi]
impl PutWriter {
    /// Queues `chunk`; resolves when there is room for the next one. Rejects with the node's
    /// error when the put has failed.
    #[napi]
    pub async fn write(&self, chunk: Buffer) -> Result<()> {
        let bytes = Bytes::from(chunk.to_vec());
        let feed = self.feed.lock().await.clone();
        let Some(feed) = feed else {
            return Err(Failure::new(Code::FailedPrecondition, "the put has already ended").into());
        };
        if feed.send(Ok(bytes)).await.is_err() {
            // The call ended early: its result says why.
            self.feed.lock().await.take();
            return self.outcome().await.map(|_| ());
        }
        Ok(())
    }

    /// Ends the data; resolves once the object is durable on the node.
    #[napi]
    pub async fn finish(&self) -> Result<PutResult> {
        self.feed.lock().await.take();
        self.outcome().await
    }

    /// Cancels the put: nothing is stored.
    #[napi]
    pub async fn abort(&self, reason: String) -> Result<()> {
        if let Some(feed) = self.feed.lock().await.take() {
            let _ = feed.send(Err(io::Error::other(reason))).await;
        }
        let _ = self.outcome().await;
        Ok(())
    }
}

#[napi]
impl NativeClient {
    /// Starts a put; feed it with `write()`.
    #[napi]
    pub async fn put_open(
        &self,
        name: Option<String>,
        expected_size: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> Result<PutWriter> {
        let mut options = PutOptions {
            name,
            ..PutOptions::default()
        };
        if let Some(size) = expected_size {
            options.expected_size = Some(whole(size, "expectedSize")?);
        }
        let (feed, queue) = mpsc::channel(PUT_QUEUE);
        let client = self.client.clone();
        // The put runs as its own task (fed by write(), cancelled by abort()), carrying the
        // caller's trace.
        let scope = Scope::of(cancel);
        let task = tokio::spawn(async move {
            scope
                .traced(client.put_stream(ReceiverStream::new(queue), options))
                .await
        });
        Ok(PutWriter {
            feed: Mutex::new(Some(feed)),
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Streams bytes of object `id` (hex) from `offset`, `length` bytes or to the end.
    #[napi]
    pub async fn get(
        &self,
        id: String,
        offset: Option<f64>,
        length: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> Result<ByteStream> {
        let id = object_id(&id)?;
        let range = ByteRange {
            offset: offset.map(|o| whole(o, "offset")).transpose()?.unwrap_or(0),
            length: length.map(|l| whole(l, "length")).transpose()?,
        };
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(ByteStream::new(sdk(client.get(&id, range).await)?)) })
            .await
    }

    /// The object's description, whether the node holds it, and its replication.
    #[napi]
    pub async fn stat(&self, id: String, cancel: Option<&CancelToken>) -> Result<ObjectStatus> {
        let id = object_id(&id)?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let status = sdk(client.status(&id).await)?;
                Ok(ObjectStatus {
                    object: status.object.into(),
                    held_locally: status.held_locally,
                    replication: status.placement.map(ReplicationState::from),
                })
            })
            .await
    }

    /// One page of the objects stored on (or placed by) the node.
    #[napi]
    pub async fn list(
        &self,
        query: Option<ListQuery>,
        cancel: Option<&CancelToken>,
    ) -> Result<ObjectPage> {
        let mut options = ListOptions::default();
        if let Some(q) = query {
            options.page_size = q.page_size.unwrap_or(0);
            options.page_token = q.page_token.unwrap_or_default();
            options.order = match q.order.as_deref() {
                None | Some("created") => ListOrder::Created,
                Some("id") => ListOrder::Id,
                Some(other) => {
                    return Err(invalid(format!("order `{other}` is not created or id")));
                }
            };
            if q.placed == Some(true) {
                options.scope = ListScope::Placed;
            }
        }
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                let page = sdk(client.list(options).await)?;
                Ok(ObjectPage {
                    objects: page.objects.into_iter().map(StoredObject::from).collect(),
                    next_page_token: page.next_page_token,
                })
            })
            .await
    }

    /// Deletes the object; returns what was deleted.
    #[napi]
    pub async fn delete(&self, id: String, cancel: Option<&CancelToken>) -> Result<StoredObject> {
        let id = object_id(&id)?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(sdk(client.delete(&id).await)?.into()) })
            .await
    }

    /// Spreads the object over `providers` (node ids, hex) with erasure coding.
    #[napi]
    pub async fn replicate(
        &self,
        id: String,
        providers: Vec<String>,
        data_shards: Option<u32>,
        parity_shards: Option<u32>,
        cancel: Option<&CancelToken>,
    ) -> Result<ReplicationState> {
        let id = object_id(&id)?;
        let providers = providers
            .iter()
            .map(|p| {
                let raw = hex_bytes(p, "provider")?;
                <[u8; 16]>::try_from(raw.as_slice()).map_err(|_| {
                    invalid(format!("a node id has 16 bytes, `{p}` has {}", raw.len()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut options = ReplicateOptions::on(providers);
        if let (Some(d), Some(p)) = (data_shards, parity_shards) {
            let small = |v: u32, what: &str| {
                u8::try_from(v).map_err(|_| invalid(format!("{what} {v} is over 255")))
            };
            options = options.with_code(small(d, "dataShards")?, small(p, "parityShards")?);
        }
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move { Ok(sdk(client.replicate(&id, options).await)?.into()) })
            .await
    }

    /// Challenges every shard of a replicated object now.
    #[napi]
    pub async fn challenge(
        &self,
        id: String,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<Challenge>> {
        let id = object_id(&id)?;
        let client = self.client.clone();
        Scope::of(cancel)
            .run(async move {
                Ok(sdk(client.challenge(&id).await)?
                    .into_iter()
                    .map(Challenge::from)
                    .collect())
            })
            .await
    }
}
