//! `mehr.v1.StorageService`: the local object store over gRPC.
//!
//! The store's calls block (RocksDB, hashing), so they run on the blocking pool. A PutObject hands
//! its data to one blocking task through a short queue, so receiving the next message overlaps
//! hashing and writing the last one, and a slow disk slows the client down (HTTP/2 flow
//! control) instead of filling memory. A GetObject works the other way round: a blocking task reads
//! and verifies chunks into a short queue that the response stream drains.

use std::{ops::ControlFlow, pin::Pin, time::Duration};

use futures::Stream;
use mehr_proto::v1::{
    self as pb, put_object_request::Part, storage_service_server::StorageService,
};
use prost::bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    deadline::CallDeadline,
    paging::{Filters, PageRequest},
    status::{Reason, cancelled, failure, internal, invalid_field},
};
use crate::{
    events::unix_ms_now,
    market::{DiscoverRequest, Market},
    storage::{
        ListOrder, ObjectId, ObjectInfo, ObjectStore, StorageError, StoredObject, Upload,
        UploadOptions,
        remote::{PlacementView, RemoteStorage, ReplicateOptions, ShardHealth},
    },
};
use mehr_market::{CapabilityKind, discovery::Filter};
use mehr_transport::hashes::IdentityHash;

/// Put messages queued for the writer: with messages of up to 4 MiB, at most 16 MiB in flight.
const PUT_QUEUE: usize = 4;
/// Bytes per Get message.
const GET_MESSAGE_BYTES: usize = 256 << 10;
/// Get messages read ahead of the client.
const GET_QUEUE: usize = 4;

/// The StorageService implementation.
#[derive(Clone)]
pub struct StorageApi {
    objects: ObjectStore,
    remote: RemoteStorage,
    /// Finds providers for a Replicate that names none; `None` when the market is off.
    market: Option<Market>,
    idle_timeout: Duration,
}

/// Spare providers a discovery for a Replicate looks for beyond k + m (for repair).
const DISCOVERED_SPARES: usize = 2;
/// Longest a discovery of storage providers may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

impl StorageApi {
    /// Serves `objects`. A Put that sends nothing for `idle_timeout` is cancelled (Put has no
    /// overall deadline: its duration grows with its size).
    pub fn new(
        objects: ObjectStore,
        remote: RemoteStorage,
        market: Option<Market>,
        idle_timeout: Duration,
    ) -> Self {
        StorageApi {
            objects,
            remote,
            market,
            idle_timeout,
        }
    }

    /// Storage providers found by the marketplace for a Replicate that names none: the
    /// nearest that offer storage at `max_price` or less (0: any price), `total` of them and
    /// a few spares, nearest ring first.
    async fn discover_providers(
        &self,
        total: usize,
        max_price: u64,
    ) -> Result<Vec<IdentityHash>, Status> {
        let market = self.market.as_ref().ok_or_else(|| {
            invalid_field(
                "providers",
                "providers: none given, and the marketplace that would find them is disabled \
                 (market.enabled = false)",
            )
        })?;
        let mut filter = Filter::kind(CapabilityKind::Storage);
        filter.max_price = (max_price > 0).then_some(max_price);
        let found = market
            .discover(DiscoverRequest {
                filter,
                want: total + DISCOVERED_SPARES,
                max_ring: mehr_market::params::MAX_RING,
                timeout: DISCOVERY_TIMEOUT,
            })
            .await?;
        let me = market.node_id();
        Ok(found
            .offers
            .iter()
            .map(|f| f.offer.node_id)
            .filter(|node| *node != me)
            .map(|node| IdentityHash(node.0))
            .collect())
    }

    /// The placement of `id`, or `None` when it is not placed on providers.
    async fn placement(&self, id: ObjectId) -> Result<Option<PlacementView>, Status> {
        let remote = self.remote.clone();
        tokio::task::spawn_blocking(move || match remote.placement(&id) {
            Ok(view) => Ok(Some(view)),
            Err(crate::storage::remote::RemoteError::NotPlaced(_)) => Ok(None),
            Err(e) => Err(Status::from(e)),
        })
        .await
        .map_err(|e| internal("a storage task", e))?
    }

    /// Streams placed object `id` from its providers.
    async fn remote_get(
        &self,
        id: ObjectId,
        request: pb::GetObjectRequest,
    ) -> Result<Response<GetStream>, Status> {
        let Some(view) = self.placement(id).await? else {
            return Err(StorageError::NotFound { id }.into());
        };
        let object_length = view.info.length;
        let want = request
            .length
            .unwrap_or(object_length.saturating_sub(request.offset));
        if request.offset > object_length || request.offset.saturating_add(want) > object_length {
            return Err(StorageError::RangeOutOfBounds {
                id,
                offset: request.offset,
                length: want,
                object_length,
            }
            .into());
        }
        let (parts, mut received) = mpsc::channel::<Vec<u8>>(2);
        let (messages, queue) = mpsc::channel(GET_QUEUE);
        let remote = self.remote.clone();
        let reader =
            tokio::spawn(async move { remote.read(id, request.offset, Some(want), parts).await });
        tokio::spawn(async move {
            while let Some(part) = received.recv().await {
                for piece in part.chunks(GET_MESSAGE_BYTES) {
                    let message = pb::GetObjectResponse {
                        data: Bytes::copy_from_slice(piece),
                    };
                    if messages.send(Ok(message)).await.is_err() {
                        // The client is gone; dropping `received` stops the reader.
                        return;
                    }
                }
            }
            let status = match reader.await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => Status::from(e),
                Err(e) => internal("a remote read task", e),
            };
            let _ = messages.send(Err(status)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(queue))))
    }

    async fn next_put_message(
        &self,
        stream: &mut Streaming<pb::PutObjectRequest>,
    ) -> Result<Option<Part>, Status> {
        match tokio::time::timeout(self.idle_timeout, stream.message()).await {
            Err(_) => Err(failure(
                Reason::UploadIdle,
                format!(
                    "the PutObject stream sent nothing for {} s (api.request_timeout_secs)",
                    self.idle_timeout.as_secs()
                ),
            )),
            Ok(Ok(Some(pb::PutObjectRequest { part: Some(part) }))) => Ok(Some(part)),
            Ok(Ok(Some(pb::PutObjectRequest { part: None }))) => Err(invalid_field(
                "part",
                "a PutObject message carries neither metadata nor data",
            )),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(status)) => Err(status),
        }
    }
}

/// What the Put handler tells the writer task.
enum PutCommand {
    Data(Bytes),
    /// The client's end message, with the number of data bytes it sent.
    Finish {
        length: u64,
    },
}

/// Feeds `upload` from `commands`; `None` when the queue closed without `Finish` (the call
/// failed or was cancelled). Dropping the upload then removes what it wrote.
fn write_upload(
    mut upload: Upload,
    mut commands: mpsc::Receiver<PutCommand>,
) -> Option<Result<StoredObject, Status>> {
    while let Some(command) = commands.blocking_recv() {
        match command {
            PutCommand::Data(data) => {
                if let Err(e) = upload.write(&data) {
                    return Some(Err(e.into()));
                }
            }
            PutCommand::Finish { length } if length != upload.received() => {
                return Some(Err(invalid_field(
                    "end.length",
                    format!(
                        "end.length is {length}, but the stream carried {} data bytes",
                        upload.received()
                    ),
                )));
            }
            PutCommand::Finish { .. } => {
                return Some(upload.finish(unix_ms_now()).map_err(Status::from));
            }
        }
    }
    None
}

fn parse_id(bytes: &[u8]) -> Result<ObjectId, Status> {
    <[u8; 32]>::try_from(bytes)
        .map(ObjectId::from_bytes)
        .map_err(|_| {
            invalid_field(
                "id",
                format!("id: an object id has 32 bytes, got {}", bytes.len()),
            )
        })
}

fn info_to_proto(info: &ObjectInfo) -> pb::ObjectInfo {
    pb::ObjectInfo {
        id: Bytes::copy_from_slice(info.id.as_bytes()),
        length: info.length,
        chunk_count: info.chunk_count,
        created_at_unix_ms: info.created_unix_ms,
        name: info.name.clone(),
    }
}

fn health_to_proto(health: ShardHealth) -> pb::ShardHealth {
    match health {
        ShardHealth::Healthy => pb::ShardHealth::Healthy,
        ShardHealth::Suspect => pb::ShardHealth::Suspect,
        ShardHealth::Lost => pb::ShardHealth::Lost,
    }
}

fn placement_to_proto(view: &PlacementView) -> pb::RemotePlacement {
    pb::RemotePlacement {
        manifest_id: Bytes::copy_from_slice(view.manifest_id.as_bytes()),
        data_shards: view.data_shards.into(),
        parity_shards: view.parity_shards.into(),
        expires_at_unix_s: view.expires_unix_s,
        price_per_byte_day_umhr: view.price_per_byte_day_umhr,
        shards: view
            .shards
            .iter()
            .map(|shard| pb::ShardPlacement {
                index: shard.info.index.into(),
                root: Bytes::copy_from_slice(shard.info.root.as_bytes()),
                length: shard.info.length,
                provider: Bytes::copy_from_slice(&shard.placement.provider),
                health: health_to_proto(shard.health) as i32,
                consecutive_failures: shard.placement.consecutive_failures,
                last_challenge_at_unix_ms: shard.placement.last_challenge_unix_ms,
                challenges_passed: shard.placement.passed,
                challenges_failed: shard.placement.failed,
                owed_umhr: shard.placement.owed_umhr,
                paid_umhr: shard.placement.paid_umhr,
                last_error: shard.placement.last_error.clone(),
            })
            .collect(),
        spare_providers: view
            .spares
            .iter()
            .map(|s| Bytes::copy_from_slice(&s.0))
            .collect(),
    }
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static, E: Send + 'static>(
    call: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Status>
where
    Status: From<E>,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| internal("a storage task", e))?
        .map_err(Status::from)
}

type GetStream = Pin<Box<dyn Stream<Item = Result<pb::GetObjectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl StorageService for StorageApi {
    async fn put_object(
        &self,
        request: Request<Streaming<pb::PutObjectRequest>>,
    ) -> Result<Response<pb::PutObjectResponse>, Status> {
        let mut stream = request.into_inner();
        let metadata = match self.next_put_message(&mut stream).await? {
            Some(Part::Metadata(metadata)) => metadata,
            Some(Part::Data(_) | Part::End(_)) => {
                return Err(invalid_field(
                    "metadata",
                    "the first PutObject message must carry the metadata",
                ));
            }
            None => {
                return Err(invalid_field(
                    "metadata",
                    "the PutObject stream ended before its metadata",
                ));
            }
        };
        let options = UploadOptions {
            name: metadata.name,
            expected_size: metadata.expected_size,
        };
        let upload = self.objects.begin_upload(options)?;
        let (commands, queue) = mpsc::channel(PUT_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_upload(upload, queue));

        let failure = loop {
            let command = match self.next_put_message(&mut stream).await {
                Ok(Some(Part::Data(data))) => PutCommand::Data(data),
                Ok(Some(Part::End(end))) => PutCommand::Finish { length: end.length },
                Ok(Some(Part::Metadata(_))) => {
                    break Some(invalid_field(
                        "metadata",
                        "only the first PutObject message may carry metadata",
                    ));
                }
                // tonic reports a client's cancellation as the end of its stream, so only the
                // end message commits.
                Ok(None) => {
                    break Some(invalid_field(
                        "end",
                        "the PutObject stream ended without its end message; nothing was stored",
                    ));
                }
                Err(status) => break Some(status),
            };
            let last = matches!(command, PutCommand::Finish { .. });
            // A send fails when the writer stopped on an error; it reports it below.
            if commands.send(command).await.is_err() || last {
                break None;
            }
        };
        drop(commands);
        // Waiting for the writer also waits for the clean-up of a failed upload, so a client
        // that sees the error never sees its leftovers.
        let written = writer.await.map_err(|e| internal("a storage task", e))?;
        if let Some(status) = failure {
            return Err(status);
        }
        let stored = written.ok_or_else(|| cancelled("the PutObject was cancelled"))??;
        Ok(Response::new(pb::PutObjectResponse {
            object: Some(info_to_proto(&stored.info)),
            already_stored: stored.already_stored,
        }))
    }

    type GetObjectStream = GetStream;

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<Self::GetObjectStream>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let objects = self.objects.clone();
        if !blocking(move || objects.contains(&id)).await? {
            return self.remote_get(id, request).await;
        }
        let objects = self.objects.clone();
        let (opened_tx, opened) = oneshot::channel();
        let (messages, queue) = mpsc::channel(GET_QUEUE);
        tokio::task::spawn_blocking(move || {
            let read = match objects.open_read(&id, request.offset, request.length) {
                Ok(read) => {
                    let _ = opened_tx.send(Ok(()));
                    read
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let mut buffer = Vec::with_capacity(GET_MESSAGE_BYTES);
            let result = read.for_each(|part| {
                buffer.extend_from_slice(part);
                if buffer.len() < GET_MESSAGE_BYTES {
                    return ControlFlow::Continue(());
                }
                let data = std::mem::replace(&mut buffer, Vec::with_capacity(GET_MESSAGE_BYTES));
                // A failed send means the client has gone: stop reading.
                match messages.blocking_send(Ok(pb::GetObjectResponse { data: data.into() })) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            });
            // Bytes already verified go out before an error that ends the stream.
            if !buffer.is_empty() {
                let _ = messages.blocking_send(Ok(pb::GetObjectResponse {
                    data: buffer.into(),
                }));
            }
            if let Err(e) = result {
                let _ = messages.blocking_send(Err(Status::from(e)));
            }
        });
        opened
            .await
            .map_err(|_| internal("a storage read task", "it ended before opening the object"))??;
        Ok(Response::new(Box::pin(ReceiverStream::new(queue))))
    }

    async fn stat_object(
        &self,
        request: Request<pb::StatObjectRequest>,
    ) -> Result<Response<pb::StatObjectResponse>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        let objects = self.objects.clone();
        let local = match blocking(move || objects.stat(&id)).await {
            Ok(info) => Some(info),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(status),
        };
        let placement = self.placement(id).await?;
        let info = match (&local, &placement) {
            (Some(info), _) => info.clone(),
            (None, Some(view)) => view.info.clone(),
            (None, None) => return Err(StorageError::NotFound { id }.into()),
        };
        Ok(Response::new(pb::StatObjectResponse {
            object: Some(info_to_proto(&info)),
            held_locally: local.is_some(),
            placement: placement.as_ref().map(placement_to_proto),
        }))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let request = request.into_inner();
        let order = pb::ListOrder::try_from(request.order).map_err(|_| {
            invalid_field("order", format!("order: unknown value {}", request.order))
        })?;
        let scope = pb::ListScope::try_from(request.scope).map_err(|_| {
            invalid_field("scope", format!("scope: unknown value {}", request.scope))
        })?;
        let placed = match scope {
            pb::ListScope::Unspecified | pb::ListScope::Local => false,
            pb::ListScope::Placed if order == pb::ListOrder::Created => {
                return Err(invalid_field(
                    "order",
                    "order: placed objects are listed by id only (order ID or unspecified)",
                ));
            }
            pb::ListScope::Placed => true,
        };
        let order = match order {
            pb::ListOrder::Id => ListOrder::Id,
            _ if placed => ListOrder::Id,
            pb::ListOrder::Unspecified | pb::ListOrder::Created => ListOrder::Created,
        };
        // Bound to the listing as served (unspecified values resolved), so a default and the
        // value it stands for share tokens.
        let filters = Filters::new("ListObjects")
            .field("scope", if placed { "placed" } else { "local" })
            .field(
                "order",
                match order {
                    ListOrder::Id => "id",
                    ListOrder::Created => "created",
                },
            );
        let paging = PageRequest::parse(filters, request.page_size, &request.page_token)?;
        // The store pages itself; its position travels inside this API's token.
        let (after, size) = (paging.after_text()?, paging.size);
        let page = if placed {
            let remote = self.remote.clone();
            blocking(move || remote.list_placed(&after, size)).await?
        } else {
            let objects = self.objects.clone();
            blocking(move || objects.list(order, &after, size)).await?
        };
        Ok(Response::new(pb::ListObjectsResponse {
            objects: page.objects.iter().map(info_to_proto).collect(),
            next_page_token: page
                .next_page_token
                .map(|position| paging.token(position.as_bytes()))
                .unwrap_or_default(),
        }))
    }

    async fn delete_object(
        &self,
        request: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::DeleteObjectResponse>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        let objects = self.objects.clone();
        let info = match blocking(move || objects.delete(&id)).await {
            Ok(info) => info,
            Err(status) if status.code() == tonic::Code::NotFound => {
                if self.placement(id).await?.is_none() {
                    return Err(status);
                }
                self.remote.delete(id).await?.info
            }
            Err(status) => return Err(status),
        };
        Ok(Response::new(pb::DeleteObjectResponse {
            object: Some(info_to_proto(&info)),
        }))
    }

    async fn replicate_object(
        &self,
        request: Request<pb::ReplicateObjectRequest>,
    ) -> Result<Response<pb::ReplicateObjectResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let request_id = super::request_id::parse(&request.request_id)?
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        // A retry of a call that placed the object answers at once, before any discovery.
        if let Some(view) = self.remote.placed_by_request(&id, &request_id)? {
            return Ok(Response::new(pb::ReplicateObjectResponse {
                object: Some(info_to_proto(&view.info)),
                placement: Some(placement_to_proto(&view)),
            }));
        }
        let mut providers = Vec::with_capacity(request.providers.len());
        for (i, provider) in request.providers.iter().enumerate() {
            let bytes = <[u8; 16]>::try_from(provider.as_ref()).map_err(|_| {
                invalid_field(
                    &format!("providers[{i}]"),
                    format!(
                        "providers[{i}]: a node id has 16 bytes, got {}",
                        provider.len()
                    ),
                )
            })?;
            providers.push(IdentityHash(bytes));
        }
        if providers.is_empty() {
            let defaults = self.remote.default_params();
            let or_default = |asked: u32, default: u8| match asked {
                0 => usize::from(default),
                n => n as usize,
            };
            let total = or_default(request.data_shards, defaults.data_shards())
                + or_default(request.parity_shards, defaults.parity_shards());
            providers = self
                .discover_providers(total, request.price_per_byte_day_umhr)
                .await?;
        }
        let shards = |field: &str, value: u32| -> Result<Option<u8>, Status> {
            match value {
                0 => Ok(None),
                1..=63 => Ok(Some(value as u8)),
                _ => Err(invalid_field(
                    field,
                    format!("{field}: {value} is out of range 1..=63"),
                )),
            }
        };
        let options = ReplicateOptions {
            providers,
            data_shards: shards("data_shards", request.data_shards)?,
            parity_shards: shards("parity_shards", request.parity_shards)?,
            duration_secs: (request.duration_secs > 0).then_some(request.duration_secs),
            price_per_byte_day_umhr: request.price_per_byte_day_umhr,
            request_id,
        };
        let view = self.remote.replicate(id, options).await?;
        Ok(Response::new(pb::ReplicateObjectResponse {
            object: Some(info_to_proto(&view.info)),
            placement: Some(placement_to_proto(&view)),
        }))
    }

    async fn challenge_object(
        &self,
        request: Request<pb::ChallengeObjectRequest>,
    ) -> Result<Response<pb::ChallengeObjectResponse>, Status> {
        // Providers that stay silent are reported, not left to turn the whole call into a
        // CANCELLED one when the call's deadline is shorter than theirs.
        let wait = CallDeadline::of(&request).map(CallDeadline::remaining);
        let id = parse_id(&request.into_inner().id)?;
        let results = self.remote.challenge(id, wait).await?;
        Ok(Response::new(pb::ChallengeObjectResponse {
            results: results
                .into_iter()
                .map(|r| pb::ShardChallengeResult {
                    index: r.shard.into(),
                    provider: Bytes::copy_from_slice(&r.provider.0),
                    passed: r.passed,
                    detail: r.detail,
                    health: health_to_proto(r.health) as i32,
                })
                .collect(),
        }))
    }
}
