//! The provider's side: storing shards for consumers, proving, serving and dropping them.
//!
//! A shard is an ordinary object in the local store, written with
//! [`ObjectStore::begin_chunk_set`] (checked against its root before it commits). Each consumer
//! that stored it has a [`HeldShard`] record; only those consumers may challenge, fetch or
//! delete it, so a stranger can neither read nor remove another node's shards.

use std::{
    collections::HashMap,
    ops::ControlFlow,
    sync::{Arc, Mutex},
    time::Instant,
};

use mehr_storage::{CHUNK_SIZE, ObjectId, chunk_count, chunk_len};
use mehr_transport::hashes::IdentityHash;

use super::{
    RemoteError, RemoteStorage, blocking, lock,
    records::{HELD_SHARDS, HeldShard, held_key},
    wire::{ErrorCode, Reply, Request},
};
use crate::{
    events::unix_ms_now,
    storage::{ChunkSetUpload, ObjectStore, StorageError},
};

/// Uploads in progress at most, all consumers together.
const MAX_UPLOADS: usize = 64;
/// Upload slots open to consumers that hold no shard here yet: the other half is kept for
/// consumers with a history on this node.
const MAX_NEW_CONSUMER_UPLOADS: usize = MAX_UPLOADS / 2;
/// Uploads in progress at most for one consumer.
const MAX_UPLOADS_PER_CONSUMER: usize = 8;
/// An upload that received nothing for this long is dropped when room is needed.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(600);
/// Prefix of the name of objects stored as shards for other nodes.
pub(super) const SHARD_NAME_PREFIX: &str = "shard held for ";

/// A shard being received.
struct InProgress {
    length: u64,
    /// Bytes received so far, charged to the pool and the consumer's quota as they arrive.
    received: u64,
    expires_unix_s: u64,
    price_per_byte_day_umhr: u64,
    last_activity: Instant,
    /// `None` while a message is being written into it.
    upload: Arc<Mutex<Option<ChunkSetUpload>>>,
}

/// Uploads in progress by (consumer, shard root).
#[derive(Default)]
pub(super) struct Uploads {
    by_key: HashMap<(IdentityHash, ObjectId), InProgress>,
}

impl Uploads {
    /// Bytes received by uploads in progress: all, and `consumer`'s.
    fn received(&self, consumer: IdentityHash) -> (u64, u64) {
        self.by_key
            .iter()
            .fold((0, 0), |(all, mine), ((who, _), upload)| {
                let own = if *who == consumer { upload.received } else { 0 };
                (all + upload.received, mine + own)
            })
    }
}

/// Bytes of committed shards held for other nodes (every holder record counts its length).
#[derive(Default)]
pub(super) struct Pool {
    held: u64,
    by_consumer: HashMap<IdentityHash, u64>,
}

impl Pool {
    fn add(&mut self, consumer: IdentityHash, length: u64) {
        self.held = self.held.saturating_add(length);
        *self.by_consumer.entry(consumer).or_default() += length;
    }

    fn remove(&mut self, consumer: IdentityHash, length: u64) {
        self.held = self.held.saturating_sub(length);
        if let Some(mine) = self.by_consumer.get_mut(&consumer) {
            *mine = mine.saturating_sub(length);
            if *mine == 0 {
                self.by_consumer.remove(&consumer);
            }
        }
    }
}

/// Why the pool refused bytes.
enum PoolRefusal {
    PoolFull,
    Quota,
}

fn refuse(code: ErrorCode, reason: impl std::fmt::Display) -> Reply {
    Reply::Error(code, reason.to_string())
}

fn storage_reply(error: &StorageError) -> Reply {
    let code = match error {
        StorageError::NotFound { .. } => ErrorCode::NotHeld,
        StorageError::ObjectTooLarge { .. } | StorageError::OutOfSpace { .. } => ErrorCode::Refused,
        StorageError::ChunkIndexOutOfRange { .. }
        | StorageError::ChunkLength { .. }
        | StorageError::RangeOutOfBounds { .. }
        | StorageError::ContentMismatch { .. }
        | StorageError::EmptyObject { .. }
        | StorageError::NameTooLong { .. } => ErrorCode::BadRequest,
        _ => ErrorCode::Failed,
    };
    refuse(code, error)
}

fn remote_reply(error: RemoteError) -> Reply {
    match error {
        RemoteError::Storage(e) => storage_reply(&e),
        RemoteError::Provider { code, reason, .. } => Reply::Error(code, reason),
        other => refuse(ErrorCode::Failed, other),
    }
}

impl RemoteStorage {
    /// Answers one authenticated request of `consumer`.
    pub(super) async fn serve(&self, consumer: IdentityHash, request: Request) -> Reply {
        let result = match request {
            Request::Offer {
                root,
                length,
                expires_unix_s,
                price_per_byte_day_umhr,
            } => {
                self.on_offer(
                    consumer,
                    root,
                    length,
                    expires_unix_s,
                    price_per_byte_day_umhr,
                )
                .await
            }
            Request::Chunks {
                root,
                first,
                count,
                bytes,
            } => self.on_chunks(consumer, root, first, count, bytes).await,
            Request::Challenge(challenge) => match self.held(consumer, challenge.object).await {
                Ok(()) => {
                    let objects = self.shared.objects.clone();
                    blocking(move || Ok(objects.prove(&challenge)?.encode())).await
                }
                Err(reply) => return reply,
            },
            Request::Fetch { root, first, count } => match self.held(consumer, root).await {
                Ok(()) => {
                    let objects = self.shared.objects.clone();
                    blocking(move || read_chunks(&objects, root, first, count)).await
                }
                Err(reply) => return reply,
            },
            Request::FetchHashes { root, first, count } => match self.held(consumer, root).await {
                Ok(()) => {
                    let objects = self.shared.objects.clone();
                    blocking(move || {
                        let hashes = objects.chunk_hashes(&root, first, count.into())?;
                        Ok(hashes.iter().flat_map(|h| *h.as_bytes()).collect())
                    })
                    .await
                }
                Err(reply) => return reply,
            },
            Request::Delete { root } => self.on_delete(consumer, root).await,
        };
        match result {
            Ok(bytes) => Reply::Ok(bytes),
            Err(e) => remote_reply(e),
        }
    }

    /// Ok when `consumer` stored shard `root` here.
    async fn held(&self, consumer: IdentityHash, root: ObjectId) -> Result<(), Reply> {
        let store = self.shared.store.clone();
        let key = held_key(root.as_bytes(), &consumer.0);
        match blocking(move || Ok(store.get(HELD_SHARDS, &key)?)).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(refuse(
                ErrorCode::NotHeld,
                format!("shard {root} is not held for node {consumer}"),
            )),
            Err(e) => Err(remote_reply(e)),
        }
    }

    async fn on_offer(
        &self,
        consumer: IdentityHash,
        root: ObjectId,
        length: u64,
        expires_unix_s: u64,
        price_per_byte_day_umhr: u64,
    ) -> Result<Vec<u8>, RemoteError> {
        if let Err(e) = self.admit_offer(
            expires_unix_s,
            price_per_byte_day_umhr,
            unix_ms_now() / 1000,
        ) {
            self.shared.drops.count("storage.offer_off_terms");
            return Err(e);
        }
        {
            let uploads = lock(&self.shared.uploads);
            self.check_pool(&uploads, consumer, length)?;
        }
        let objects = self.shared.objects.clone();
        let store = self.shared.store.clone();
        let name = format!("{SHARD_NAME_PREFIX}{consumer}");
        let held = HeldShard {
            length,
            expires_unix_s,
            price_per_byte_day_umhr,
            stored_unix_ms: unix_ms_now(),
        };
        let upload = blocking(move || {
            if objects.contains(&root)? {
                // The bytes are here already (another consumer's shard, or ours): only the
                // holder record is new.
                let stored = objects.stat(&root)?;
                if stored.length != length {
                    return Err(StorageError::ContentMismatch { expected: root }.into());
                }
                let key = held_key(root.as_bytes(), &consumer.0);
                let new = store.get(HELD_SHARDS, &key)?.is_none();
                store.put(HELD_SHARDS, &key, &held)?;
                return Ok(Err(new));
            }
            Ok(Ok(objects.begin_chunk_set(root, length, &name)?))
        })
        .await?;
        let upload = match upload {
            Ok(upload) => upload,
            Err(new_holder) => {
                if new_holder {
                    lock(&self.shared.pool).add(consumer, length);
                }
                return Ok(vec![1]);
            }
        };
        let mut uploads = lock(&self.shared.uploads);
        let now = Instant::now();
        uploads
            .by_key
            .retain(|_, u| now.duration_since(u.last_activity) < UPLOAD_IDLE);
        if !uploads.by_key.contains_key(&(consumer, root)) {
            let has_history = lock(&self.shared.pool).by_consumer.contains_key(&consumer);
            let mine = uploads
                .by_key
                .keys()
                .filter(|(c, _)| *c == consumer)
                .count();
            let newcomers = uploads
                .by_key
                .keys()
                .filter(|(c, _)| !lock(&self.shared.pool).by_consumer.contains_key(c))
                .count();
            let refusal = if uploads.by_key.len() >= MAX_UPLOADS {
                Some((
                    "storage.uploads_full",
                    format!("{MAX_UPLOADS} uploads are in progress; try later"),
                ))
            } else if mine >= MAX_UPLOADS_PER_CONSUMER {
                Some((
                    "storage.consumer_uploads",
                    format!(
                        "{MAX_UPLOADS_PER_CONSUMER} uploads of yours are in progress; finish one first"
                    ),
                ))
            } else if !has_history && newcomers >= MAX_NEW_CONSUMER_UPLOADS {
                Some((
                    "storage.new_consumer_uploads",
                    format!(
                        "{MAX_NEW_CONSUMER_UPLOADS} uploads of consumers new to this node are in progress; try later"
                    ),
                ))
            } else {
                None
            };
            if let Some((reason, message)) = refusal {
                self.shared.drops.count(reason);
                return Err(RemoteError::Provider {
                    provider: self.shared.me,
                    code: ErrorCode::Refused,
                    reason: message,
                });
            }
        }
        // A repeated offer restarts the upload (dropping the old one removes its chunks).
        uploads.by_key.insert(
            (consumer, root),
            InProgress {
                length,
                received: 0,
                expires_unix_s,
                price_per_byte_day_umhr,
                last_activity: now,
                upload: Arc::new(Mutex::new(Some(upload))),
            },
        );
        Ok(vec![0])
    }

    /// Refuses an offer this node did not advertise: storage not offered, a price below the
    /// advertised one, an expiry already past or beyond `storage.max_hold_secs`.
    fn admit_offer(
        &self,
        expires_unix_s: u64,
        price_per_byte_day_umhr: u64,
        now_unix_s: u64,
    ) -> Result<(), RemoteError> {
        let terms = *self.shared.terms.borrow();
        let max_hold_secs = self.shared.settings.max_hold_secs;
        let refusal = if !terms.offered {
            Some((
                ErrorCode::Refused,
                "this node does not offer storage (market.offer_storage = false)".to_string(),
            ))
        } else if price_per_byte_day_umhr < terms.price_per_byte_day_umhr {
            Some((
                ErrorCode::Refused,
                format!(
                    "the offered {price_per_byte_day_umhr} μMHR per byte-day is below this \
                     node's price of {} μMHR per byte-day",
                    terms.price_per_byte_day_umhr
                ),
            ))
        } else if expires_unix_s <= now_unix_s {
            Some((
                ErrorCode::BadRequest,
                format!("the shard's expiry ({expires_unix_s}) has passed"),
            ))
        } else if expires_unix_s - now_unix_s > max_hold_secs {
            Some((
                ErrorCode::Refused,
                format!(
                    "the shard would be held {} s; this node holds shards for at most {max_hold_secs} s \
                     (storage.max_hold_secs)",
                    expires_unix_s - now_unix_s
                ),
            ))
        } else {
            None
        };
        match refusal {
            Some((code, reason)) => Err(RemoteError::Provider {
                provider: self.shared.me,
                code,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Refuses `more` bytes from `consumer` when the provider pool or the consumer's quota
    /// has no room for them (held shards and bytes received by uploads in progress count).
    fn check_pool(
        &self,
        uploads: &Uploads,
        consumer: IdentityHash,
        more: u64,
    ) -> Result<(), RemoteError> {
        let (receiving, receiving_mine) = uploads.received(consumer);
        let refusal = {
            let pool = lock(&self.shared.pool);
            let mine = pool.by_consumer.get(&consumer).copied().unwrap_or(0);
            let settings = &self.shared.settings;
            if pool.held + receiving + more > settings.provider_bytes {
                Some(PoolRefusal::PoolFull)
            } else if mine + receiving_mine + more > settings.max_bytes_per_consumer {
                Some(PoolRefusal::Quota)
            } else {
                None
            }
        };
        let settings = &self.shared.settings;
        let (reason, message) = match refusal {
            None => return Ok(()),
            Some(PoolRefusal::PoolFull) => (
                "storage.provider_pool_full",
                format!(
                    "this node holds at most {} bytes of shards for others (storage.provider_bytes) and has no room for {more} more",
                    settings.provider_bytes
                ),
            ),
            Some(PoolRefusal::Quota) => (
                "storage.consumer_quota",
                format!(
                    "this node holds at most {} bytes of shards per consumer (storage.max_bytes_per_consumer) and has no room for {more} more of yours",
                    settings.max_bytes_per_consumer
                ),
            ),
        };
        self.shared.drops.count(reason);
        Err(RemoteError::Provider {
            provider: self.shared.me,
            code: ErrorCode::Refused,
            reason: message,
        })
    }

    /// Sums the lengths of the shards held for each consumer, once at start.
    pub(super) fn seed_pool(&self) -> Result<(), RemoteError> {
        let mut pool = lock(&self.shared.pool);
        for item in self.shared.store.scan_from(HELD_SHARDS, &[]) {
            let (key, held) = item?;
            if let Ok(consumer) = <[u8; 16]>::try_from(&key[key.len().min(32)..]) {
                pool.add(IdentityHash(consumer), held.length);
            }
        }
        Ok(())
    }

    async fn on_chunks(
        &self,
        consumer: IdentityHash,
        root: ObjectId,
        first: u64,
        count: u16,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        let in_progress = {
            let mut uploads = lock(&self.shared.uploads);
            if uploads.by_key.contains_key(&(consumer, root)) {
                // The bytes are charged as they arrive (a resent chunk is charged again,
                // which only errs on the safe side until the upload ends).
                self.check_pool(&uploads, consumer, bytes.len() as u64)?;
            }
            uploads.by_key.get_mut(&(consumer, root)).map(|u| {
                u.last_activity = Instant::now();
                u.received = u.received.saturating_add(bytes.len() as u64);
                (
                    u.upload.clone(),
                    HeldShard {
                        length: u.length,
                        expires_unix_s: u.expires_unix_s,
                        price_per_byte_day_umhr: u.price_per_byte_day_umhr,
                        stored_unix_ms: 0,
                    },
                )
            })
        };
        let Some((slot, mut held)) = in_progress else {
            // Chunks after the commit (a resent last batch) are answered as complete.
            if self.held(consumer, root).await.is_ok() {
                return Ok(0u64.to_le_bytes().to_vec());
            }
            return Err(RemoteError::Provider {
                provider: self.shared.me,
                code: ErrorCode::NotHeld,
                reason: format!("no upload of shard {root} is in progress; offer it first"),
            });
        };
        let store = self.shared.store.clone();
        let outcome = blocking(move || {
            let mut guard = lock(&slot);
            let Some(upload) = guard.as_mut() else {
                return Err(RemoteError::Provider {
                    provider: consumer,
                    code: ErrorCode::BadRequest,
                    reason: "the upload is finished or busy".into(),
                });
            };
            let mut offset = 0usize;
            for index in first..first.saturating_add(count.into()) {
                let len =
                    chunk_len(held.length, index).ok_or(StorageError::ChunkIndexOutOfRange {
                        id: root,
                        index,
                        chunk_count: chunk_count(held.length),
                    })?;
                let chunk = bytes
                    .get(offset..offset + len)
                    .ok_or(StorageError::ChunkLength {
                        index,
                        expected: len,
                        got: bytes.len().saturating_sub(offset),
                    })?;
                upload.put_chunk(index, chunk)?;
                offset += len;
            }
            if offset != bytes.len() {
                return Err(StorageError::ChunkLength {
                    index: first,
                    expected: offset,
                    got: bytes.len(),
                }
                .into());
            }
            let missing = upload.missing();
            if missing == 0
                && let Some(upload) = guard.take()
            {
                let now = unix_ms_now();
                upload.finish(now)?;
                held.stored_unix_ms = now;
                store.put(HELD_SHARDS, &held_key(root.as_bytes(), &consumer.0), &held)?;
            }
            Ok(missing)
        })
        .await;
        if matches!(outcome, Ok(0)) {
            lock(&self.shared.pool).add(consumer, held.length);
        }
        if matches!(outcome, Ok(0) | Err(_)) {
            // Finished, or failed: a failed upload is dropped (its chunks removed) and must be
            // offered again.
            lock(&self.shared.uploads).by_key.remove(&(consumer, root));
        }
        outcome.map(|missing| missing.to_le_bytes().to_vec())
    }

    async fn on_delete(
        &self,
        consumer: IdentityHash,
        root: ObjectId,
    ) -> Result<Vec<u8>, RemoteError> {
        lock(&self.shared.uploads).by_key.remove(&(consumer, root));
        let objects = self.shared.objects.clone();
        let store = self.shared.store.clone();
        let pool_length = blocking(move || {
            let key = held_key(root.as_bytes(), &consumer.0);
            let Some(held) = store.get(HELD_SHARDS, &key)? else {
                return Err(StorageError::NotFound { id: root }.into());
            };
            let mut batch = store.batch();
            batch.delete(HELD_SHARDS, &key);
            store.commit(batch)?;
            let others = store
                .scan_prefix(HELD_SHARDS, root.as_bytes())
                .next()
                .is_some();
            // The object goes with its last holder, unless it was this node's own object.
            if !others
                && let Ok(info) = objects.stat(&root)
                && info.name.starts_with(SHARD_NAME_PREFIX)
            {
                objects.delete(&root)?;
            }
            Ok(held.length)
        })
        .await?;
        lock(&self.shared.pool).remove(consumer, pool_length);
        Ok(Vec::new())
    }
}

impl RemoteStorage {
    /// Drops every shard whose agreement ended before `now_unix_s`, as if its consumer had
    /// deleted it; returns how many holder records went.
    pub(super) async fn expire_held(&self, now_unix_s: u64) -> Result<usize, RemoteError> {
        let store = self.shared.store.clone();
        let expired = blocking(move || {
            let mut expired = Vec::new();
            for item in store.scan_from(HELD_SHARDS, &[]) {
                let (key, held) = item?;
                if held.expires_unix_s < now_unix_s
                    && let (Ok(root), Ok(consumer)) = (
                        <[u8; 32]>::try_from(&key[..key.len().min(32)]),
                        <[u8; 16]>::try_from(&key[key.len().min(32)..]),
                    )
                {
                    expired.push((ObjectId::from_bytes(root), IdentityHash(consumer)));
                }
            }
            Ok(expired)
        })
        .await?;
        for (root, consumer) in &expired {
            self.on_delete(*consumer, *root).await?;
            tracing::info!(shard = %root, %consumer, "storage agreement ended; shard dropped");
        }
        Ok(expired.len())
    }

    /// Drops shards whose agreement ended, every `interval`.
    pub(super) async fn expiry_loop(self, interval: std::time::Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(e) = self.expire_held(unix_ms_now() / 1000).await {
                tracing::warn!(error = %e, "cannot drop expired shards");
            }
        }
    }
}

/// Chunks `first .. first + count` of a held shard, verified by the local store.
fn read_chunks(
    objects: &ObjectStore,
    root: ObjectId,
    first: u64,
    count: u16,
) -> Result<Vec<u8>, RemoteError> {
    let info = objects.stat(&root)?;
    let offset = first.saturating_mul(CHUNK_SIZE as u64);
    let length = (u64::from(count) * CHUNK_SIZE as u64).min(info.length.saturating_sub(offset));
    let read = objects.open_read(&root, offset, Some(length))?;
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    read.for_each(|part| {
        out.extend_from_slice(part);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}
