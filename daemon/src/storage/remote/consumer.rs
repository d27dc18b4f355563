//! The consumer's side: placing an object on providers, reading it back, challenging the
//! shards, repairing lost ones, and deleting the placement.

use std::{collections::HashSet, ops::ControlFlow, sync::Arc, time::Duration};

use futures::future::join_all;
use mehr_storage::{
    Challenge, ChallengeOutcome, ErasureDecoder, ErasureEncoder, ErasureError, ErasureManifest,
    ErasureParams, Health, ManifestId, ObjectId, ShardInfo, ShardRebuilder, StorageProof,
    verify_proof,
};
use mehr_transport::hashes::IdentityHash;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    RemoteError, RemoteStorage, Shared, blocking,
    fetch::Gatherer,
    lock,
    records::{Placement, REMOTE_OBJECTS, RemoteRecord},
    wire::{MAX_CHUNKS_PER_MESSAGE, Request},
};
use crate::{
    events::{EventKind, unix_ms_now},
    storage::{Listing, ObjectInfo, ObjectPage, StorageError, page},
};

/// Shard chunk batches queued per shard while replicating.
const SHARD_QUEUE: usize = 2;
const MS_PER_DAY: u128 = 86_400_000;

/// What to replicate and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicateOptions {
    /// The providers: the first `k + m` get one shard each, the rest are spares for repair.
    pub providers: Vec<IdentityHash>,
    /// `k`, or the configured default.
    pub data_shards: Option<u8>,
    /// `m`, or the configured default.
    pub parity_shards: Option<u8>,
    /// Agreement duration in seconds, or the configured default.
    pub duration_secs: Option<u64>,
    /// The price agreed with the providers, μMHR per byte per day.
    pub price_per_byte_day_umhr: u64,
    /// The caller's idempotency key (empty: none): a repeated call with it answers with the
    /// placement the first one made.
    pub request_id: Vec<u8>,
}

/// Shards by health and challenges by result, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardHealthCounts {
    /// Shards whose last challenge passed (or that were not challenged yet).
    pub healthy: u64,
    /// Shards that failed their last challenges, fewer than three in a row.
    pub suspect: u64,
    /// Shards lost (three failures in a row), to be repaired.
    pub lost: u64,
    /// Challenges that passed since the node started.
    pub challenges_passed: u64,
    /// Challenges that failed since the node started.
    pub challenges_failed: u64,
}

/// A shard's health as its challenges say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardHealth {
    /// The last challenge passed, or none was sent yet.
    Healthy,
    /// The last challenges failed, fewer than three in a row.
    Suspect,
    /// Three failures in a row: to be repaired onto a spare.
    Lost,
}

impl From<Health> for ShardHealth {
    fn from(health: Health) -> Self {
        match health {
            Health::Healthy => ShardHealth::Healthy,
            Health::Suspect { .. } => ShardHealth::Suspect,
            Health::Lost => ShardHealth::Lost,
        }
    }
}

/// One shard of a placed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    /// Its place in the code.
    pub info: ShardInfo,
    /// Its provider and challenge record.
    pub placement: Placement,
    /// Its health.
    pub health: ShardHealth,
}

/// Where an object is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementView {
    /// The object as the manifest describes it.
    pub info: ObjectInfo,
    /// The manifest's id.
    pub manifest_id: ManifestId,
    /// `k`.
    pub data_shards: u8,
    /// `m`.
    pub parity_shards: u8,
    /// When the agreement ends, seconds since the Unix epoch.
    pub expires_unix_s: u64,
    /// The agreed price.
    pub price_per_byte_day_umhr: u64,
    /// Every shard, in index order.
    pub shards: Vec<ShardView>,
    /// Providers left for repairs.
    pub spares: Vec<IdentityHash>,
}

/// The outcome of challenging one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeResult {
    /// The shard index.
    pub shard: u8,
    /// Its provider.
    pub provider: IdentityHash,
    /// Whether a valid proof came back.
    pub passed: bool,
    /// Why it failed; empty on a pass.
    pub detail: String,
    /// The shard's health after this challenge.
    pub health: ShardHealth,
}

fn decode_manifest(id: ObjectId, record: &RemoteRecord) -> Result<ErasureManifest, RemoteError> {
    ErasureManifest::decode(&record.manifest).map_err(|e| RemoteError::Corrupt {
        id,
        detail: format!("manifest: {e}"),
    })
}

/// What `owed` grows by for storing `bytes` from `from_ms` to `to_ms` at `price` per byte-day.
fn accrued(bytes: u64, price: u64, from_ms: u64, to_ms: u64) -> u64 {
    let elapsed = u128::from(to_ms.saturating_sub(from_ms));
    let owed = u128::from(bytes) * u128::from(price) * elapsed / MS_PER_DAY;
    u64::try_from(owed).unwrap_or(u64::MAX)
}

impl RemoteStorage {
    /// Pays each `(shard, provider, amount)` of object `id` through the channel with the
    /// provider, however many hops away; what was paid moves from `owed` to `paid` in one
    /// write, what was not (a provider whose announce was not heard, a refused open, an empty
    /// channel) stays owed for the next round. The caller marked the shards in `paying`.
    async fn pay_dues(&self, id: ObjectId, dues: Vec<(u8, [u8; 16], u64)>) {
        let Some(payer) = self.shared.payer.clone() else {
            return;
        };
        let shards: Vec<u8> = dues.iter().map(|(shard, ..)| *shard).collect();
        let mut paid = Vec::with_capacity(dues.len());
        for (shard, provider, amount) in dues {
            let to = mehr_ledger::NodeId(provider);
            match payer.pay(to, amount).await {
                Ok(()) => paid.push((shard, provider, amount)),
                Err(e) => tracing::info!(object = %id, provider = %to, amount_umhr = amount,
                    error = %e, "storage earnings stay owed: not paid through a channel"),
            }
        }
        if let Err(e) = self.record_payments(id, &paid).await {
            tracing::error!(object = %id, error = %e, "cannot record storage payments");
        }
        let mut paying = lock(&self.shared.paying);
        for shard in shards {
            paying.remove(&(id, shard));
        }
    }

    /// Moves each `(shard, provider, amount)` paid from `owed` to `paid` of object `id`.
    async fn record_payments(
        &self,
        id: ObjectId,
        paid: &[(u8, [u8; 16], u64)],
    ) -> Result<(), RemoteError> {
        if paid.is_empty() {
            return Ok(());
        }
        let _records = self.shared.records.lock().await;
        let Some(mut record) = self.load(&id)? else {
            return Ok(()); // deleted meanwhile
        };
        for &(shard, provider, amount) in paid {
            // A repair may have moved the shard meanwhile, resetting what is owed with it.
            if let Some(p) = record
                .placements
                .get_mut(usize::from(shard))
                .filter(|p| p.provider == provider)
            {
                p.owed_umhr = p.owed_umhr.saturating_sub(amount);
                p.paid_umhr = p.paid_umhr.saturating_add(amount);
            }
        }
        self.save(&id, &record)
    }

    fn load(&self, id: &ObjectId) -> Result<Option<RemoteRecord>, RemoteError> {
        Ok(self.shared.store.get(REMOTE_OBJECTS, id.as_bytes())?)
    }

    fn save(&self, id: &ObjectId, record: &RemoteRecord) -> Result<(), RemoteError> {
        Ok(self
            .shared
            .store
            .put(REMOTE_OBJECTS, id.as_bytes(), record)?)
    }

    /// Loads the consecutive failure counts of every placed shard into the tracker.
    pub(super) fn seed_health(&self) -> Result<(), RemoteError> {
        let mut health = lock(&self.shared.health);
        for item in self.shared.store.scan_from(REMOTE_OBJECTS, &[]) {
            let (id, record) = item?;
            let id = ObjectId::from_bytes(id);
            for (index, placement) in (0u8..).zip(&record.placements) {
                for _ in 0..placement.consecutive_failures {
                    health.record((id, index), ChallengeOutcome::Failed);
                }
            }
        }
        Ok(())
    }

    /// True when object `id` is placed on providers.
    pub fn is_placed(&self, id: &ObjectId) -> Result<bool, RemoteError> {
        Ok(self.load(id)?.is_some())
    }

    /// Shards of this node's placed objects by health, and the challenges counted so far (for
    /// the metrics endpoint; reads every placement record).
    pub fn shard_health(&self) -> ShardHealthCounts {
        let mut counts = ShardHealthCounts {
            challenges_passed: self
                .shared
                .challenges_passed
                .load(std::sync::atomic::Ordering::Relaxed),
            challenges_failed: self
                .shared
                .challenges_failed
                .load(std::sync::atomic::Ordering::Relaxed),
            ..ShardHealthCounts::default()
        };
        let health = lock(&self.shared.health);
        for (id, record) in self
            .shared
            .store
            .scan_prefix(REMOTE_OBJECTS, &[])
            .filter_map(Result::ok)
        {
            let id = ObjectId::from_bytes(id);
            for index in 0..record.placements.len() {
                let index = u8::try_from(index).unwrap_or(u8::MAX);
                match ShardHealth::from(health.health(&(id, index))) {
                    ShardHealth::Healthy => counts.healthy += 1,
                    ShardHealth::Suspect => counts.suspect += 1,
                    ShardHealth::Lost => counts.lost += 1,
                }
            }
        }
        counts
    }

    /// The placement of object `id` when a call with `request_id` made it; `None` when the
    /// object is not placed; ALREADY_EXISTS when it was placed otherwise (another key, or
    /// none).
    pub fn placed_by_request(
        &self,
        id: &ObjectId,
        request_id: &[u8],
    ) -> Result<Option<PlacementView>, RemoteError> {
        match self.load(id)? {
            None => Ok(None),
            Some(record) if !request_id.is_empty() && record.request_id == request_id => {
                self.placement(id).map(Some)
            }
            Some(_) => Err(RemoteError::AlreadyPlaced(*id)),
        }
    }

    /// Where object `id` is placed and how its shards are doing.
    pub fn placement(&self, id: &ObjectId) -> Result<PlacementView, RemoteError> {
        let record = self.load(id)?.ok_or(RemoteError::NotPlaced(*id))?;
        let manifest = decode_manifest(*id, &record)?;
        let health = lock(&self.shared.health);
        let shards = manifest
            .shards()
            .iter()
            .zip(&record.placements)
            .map(|(info, placement)| ShardView {
                info: *info,
                placement: placement.clone(),
                health: health.health(&(*id, info.index)).into(),
            })
            .collect();
        let params = manifest.params();
        Ok(PlacementView {
            info: placed_info(*id, &manifest, &record),
            manifest_id: manifest.id(),
            data_shards: params.data_shards(),
            parity_shards: params.parity_shards(),
            expires_unix_s: record.expires_unix_s,
            price_per_byte_day_umhr: record.price_per_byte_day_umhr,
            shards,
            spares: record.spares.iter().map(|s| IdentityHash(*s)).collect(),
        })
    }

    /// One page of the objects placed on providers, by id (see [`crate::storage::page`]).
    pub fn list_placed(
        &self,
        page_token: &str,
        page_size: usize,
    ) -> Result<ObjectPage, RemoteError> {
        let describe = |id: [u8; 32], record: RemoteRecord| {
            let id = ObjectId::from_bytes(id);
            let manifest =
                ErasureManifest::decode(&record.manifest).map_err(|e| StorageError::Corrupt {
                    id,
                    detail: format!("placement manifest: {e}"),
                })?;
            Ok(placed_info(id, &manifest, &record))
        };
        Ok(page(
            &self.shared.store,
            REMOTE_OBJECTS,
            Listing::Placed,
            page_token,
            page_size,
            describe,
        )?)
    }

    /// Erasure-codes the locally stored object `id` and stores one shard on each provider;
    /// the placement is recorded only once every shard is committed. A provider that refuses
    /// its shard is replaced by a spare when one is left.
    pub async fn replicate(
        &self,
        id: ObjectId,
        options: ReplicateOptions,
    ) -> Result<PlacementView, RemoteError> {
        let span = crate::telemetry::trace_span(|| {
            tracing::info_span!(
                "storage.replicate",
                otel.kind = "internal",
                mehr.object = %id,
                otel.status_code = tracing::field::Empty,
            )
        });
        let placed = self
            .replicate_shards(id, options)
            .instrument(span.clone())
            .await;
        if placed.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        placed
    }

    async fn replicate_shards(
        &self,
        id: ObjectId,
        options: ReplicateOptions,
    ) -> Result<PlacementView, RemoteError> {
        let _turn = ReplicationTurn::take(&self.shared, id).await;
        let settings = self.shared.settings;
        let defaults = settings.default_params;
        let params = ErasureParams::new(
            options.data_shards.unwrap_or(defaults.data_shards()),
            options.parity_shards.unwrap_or(defaults.parity_shards()),
            defaults.piece_size(),
        )?;
        let total = params.total_shards();
        let mut providers = Vec::new();
        for provider in &options.providers {
            if *provider == self.shared.me {
                return Err(RemoteError::SelfProvider(provider.to_string()));
            }
            if !providers.contains(provider) {
                providers.push(*provider);
            }
        }
        if providers.is_empty() {
            return Err(RemoteError::NoProviders { needed: total });
        }
        if providers.len() < total {
            return Err(RemoteError::TooFewProviders {
                needed: total,
                got: providers.len(),
            });
        }
        if let Some(placed) = self.placed_by_request(&id, &options.request_id)? {
            return Ok(placed);
        }
        let info = self.shared.objects.stat(&id)?;
        let expires_unix_s = unix_ms_now() / 1000
            + options
                .duration_secs
                .unwrap_or(settings.default_duration_secs);

        // First pass: the shard roots (providers need them before the bytes).
        let objects = self.shared.objects.clone();
        let manifest = blocking(move || {
            let mut encoder = ErasureEncoder::new(params)?;
            let mut failed = None;
            objects.open_read(&id, 0, None)?.for_each(|bytes| {
                match encoder.update(bytes, |_| Ok::<(), ErasureError>(())) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            Ok(encoder.finish(|_| Ok::<(), ErasureError>(()))?)
        })
        .await?;

        // Each shard to a provider that accepts it.
        let mut spares: Vec<IdentityHash> = providers.split_off(total);
        let mut accepted: Vec<(IdentityHash, bool)> = Vec::with_capacity(total);
        let offers = manifest
            .shards()
            .iter()
            .zip(&providers)
            .map(|(shard, provider)| {
                self.offer(
                    *provider,
                    shard,
                    expires_unix_s,
                    options.price_per_byte_day_umhr,
                )
            });
        let answers = join_all(offers).await;
        let mut failure = None;
        for (shard, (provider, answer)) in
            manifest.shards().iter().zip(providers.iter().zip(answers))
        {
            let mut answer = answer.map(|held| (*provider, held));
            while let Err(e) = &answer {
                tracing::info!(%provider, shard = shard.index, error = %e, "provider refused a shard");
                let Some(spare) = (!spares.is_empty()).then(|| spares.remove(0)) else {
                    break;
                };
                answer = self
                    .offer(
                        spare,
                        shard,
                        expires_unix_s,
                        options.price_per_byte_day_umhr,
                    )
                    .await
                    .map(|held| (spare, held));
            }
            match answer {
                Ok(placed) => accepted.push(placed),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let result = match failure {
            Some(e) => Err(e),
            None => self.send_shards(id, params, &manifest, &accepted).await,
        };
        if let Err(e) = result {
            // Nothing is recorded; what the providers received goes away.
            for (provider, _) in accepted {
                for shard in manifest.shards() {
                    let remote = self.clone();
                    let root = shard.root;
                    tokio::spawn(async move {
                        let _ = remote.request(provider, &Request::Delete { root }).await;
                    });
                }
            }
            return Err(e);
        }

        let now = unix_ms_now();
        let record = RemoteRecord {
            manifest: manifest.encode(),
            name: info.name,
            created_unix_ms: now,
            expires_unix_s,
            price_per_byte_day_umhr: options.price_per_byte_day_umhr,
            placements: accepted
                .iter()
                .map(|(provider, _)| Placement::new(provider.0, now))
                .collect(),
            spares: spares.iter().map(|s| s.0).collect(),
            request_id: options.request_id.clone(),
        };
        {
            let _records = self.shared.records.lock().await;
            // A concurrent call placed it meanwhile: the first one's placement stands (the
            // shards sent here have the same roots, so nothing is deleted).
            if let Some(placed) = self.placed_by_request(&id, &options.request_id)? {
                return Ok(placed);
            }
            self.save(&id, &record)?;
        }
        tracing::info!(object = %id, shards = total, "object placed on providers");
        self.shared.events.publish(EventKind::ObjectPlaced {
            id,
            shards: u8::try_from(total).unwrap_or(u8::MAX),
        });
        self.placement(&id)
    }

    /// Offers `shard` to `provider`; true when it holds the shard already.
    async fn offer(
        &self,
        provider: IdentityHash,
        shard: &ShardInfo,
        expires_unix_s: u64,
        price_per_byte_day_umhr: u64,
    ) -> Result<bool, RemoteError> {
        let answer = self
            .request(
                provider,
                &Request::Offer {
                    root: shard.root,
                    length: shard.length,
                    expires_unix_s,
                    price_per_byte_day_umhr,
                },
            )
            .await?;
        Ok(answer.first() == Some(&1))
    }

    /// Second pass: encodes the object again and streams every shard's chunks to its provider.
    async fn send_shards(
        &self,
        id: ObjectId,
        params: ErasureParams,
        manifest: &ErasureManifest,
        placed: &[(IdentityHash, bool)],
    ) -> Result<(), RemoteError> {
        let mut senders = Vec::with_capacity(placed.len());
        let mut tasks = Vec::new();
        for (shard, (provider, held)) in manifest.shards().iter().zip(placed) {
            if *held {
                senders.push(None);
                continue;
            }
            let (tx, rx) = mpsc::channel::<(u64, u16, Vec<u8>)>(SHARD_QUEUE);
            senders.push(Some(tx));
            tasks.push(self.stream_shard(*provider, *shard, rx));
        }
        let objects = self.shared.objects.clone();
        let encode = blocking(move || {
            let mut encoder = ErasureEncoder::new(params)?;
            let mut batches: Vec<ChunkBatch> =
                (0..senders.len()).map(|_| ChunkBatch::default()).collect();
            let mut stopped = false;
            let mut emit = |shard: u8, index: u64, bytes: &[u8]| -> Result<(), ErasureError> {
                let slot = usize::from(shard);
                if let (Some(Some(sender)), Some(batch)) =
                    (senders.get(slot), batches.get_mut(slot))
                {
                    batch.push(index, bytes);
                    if batch.count >= MAX_CHUNKS_PER_MESSAGE && !stopped {
                        stopped |= sender.blocking_send(batch.take()).is_err();
                    }
                }
                Ok(())
            };
            let mut failed = None;
            objects.open_read(&id, 0, None)?.for_each(|bytes| {
                match encoder.update(bytes, |c| emit(c.shard, c.chunk.index, c.chunk.bytes)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            encoder.finish(|c| emit(c.shard, c.chunk.index, c.chunk.bytes))?;
            for (sender, batch) in senders.iter().zip(batches.iter_mut()) {
                if let Some(sender) = sender
                    && batch.count > 0
                {
                    let _ = sender.blocking_send(batch.take());
                }
            }
            Ok(())
        });
        let (encoded, streamed) = tokio::join!(encode, join_all(tasks));
        for result in streamed {
            result?;
        }
        encoded
    }

    /// Sends the chunk batches of one shard, in order, to its provider; the last answer must
    /// say the shard is complete.
    async fn stream_shard(
        &self,
        provider: IdentityHash,
        shard: ShardInfo,
        mut batches: mpsc::Receiver<(u64, u16, Vec<u8>)>,
    ) -> Result<(), RemoteError> {
        let mut missing = None;
        while let Some((first, count, bytes)) = batches.recv().await {
            missing = Some(
                self.send_chunks(provider, shard.root, first, count, bytes)
                    .await?,
            );
        }
        // An empty shard has no chunk: one empty batch makes the provider commit it.
        let missing = match missing {
            Some(missing) => missing,
            None => {
                self.send_chunks(provider, shard.root, 0, 0, Vec::new())
                    .await?
            }
        };
        if missing != 0 {
            return Err(RemoteError::BadData {
                provider,
                shard: shard.index,
                detail: format!("{missing} chunks still missing after the last batch"),
            });
        }
        Ok(())
    }

    async fn send_chunks(
        &self,
        provider: IdentityHash,
        root: ObjectId,
        first: u64,
        count: u16,
        bytes: Vec<u8>,
    ) -> Result<u64, RemoteError> {
        let answer = self
            .request(
                provider,
                &Request::Chunks {
                    root,
                    first,
                    count,
                    bytes,
                },
            )
            .await?;
        let missing: [u8; 8] =
            answer
                .as_slice()
                .try_into()
                .map_err(|_| RemoteError::Unreachable {
                    provider,
                    detail: format!("a chunks answer of {} bytes (expected 8)", answer.len()),
                })?;
        Ok(u64::from_le_bytes(missing))
    }

    /// Reads bytes `offset .. offset + length` (to the end when `None`) of placed object `id`
    /// from any `k` of its shards into `sink`, one window of stripes (a few MiB) per message,
    /// every chunk checked against its shard root and the whole object against its id.
    /// Fails with [`RemoteError::Cancelled`] when the receiver goes away.
    pub async fn read(
        &self,
        id: ObjectId,
        offset: u64,
        length: Option<u64>,
        sink: mpsc::Sender<Vec<u8>>,
    ) -> Result<(), RemoteError> {
        let record = self.load(&id)?.ok_or(RemoteError::NotPlaced(id))?;
        let manifest = decode_manifest(id, &record)?;
        let end = match length {
            Some(length) => offset.saturating_add(length),
            None => manifest.length(),
        };
        if offset > manifest.length() || end > manifest.length() {
            return Err(RemoteError::Storage(
                crate::storage::StorageError::RangeOutOfBounds {
                    id,
                    offset,
                    length: end.saturating_sub(offset),
                    object_length: manifest.length(),
                },
            ));
        }
        let candidates = self.candidates(&id, &manifest, &record, None);
        let mut gatherer = Gatherer::new(self, &manifest, candidates);
        let mut decoder = ErasureDecoder::new(manifest.clone())?;
        while let Some(window) = gatherer.next_window().await? {
            let mut window_end = 0;
            let mut out = Vec::new();
            for stripe in &window.stripes {
                let bytes = decoder.decode_stripe(&window.pieces(stripe))?;
                let stripe_end = stripe.object_offset + stripe.data_len as u64;
                window_end = stripe_end;
                let (from, to) = (offset.max(stripe.object_offset), end.min(stripe_end));
                if from < to {
                    let part = bytes
                        .get(
                            (from - stripe.object_offset) as usize
                                ..(to - stripe.object_offset) as usize,
                        )
                        .unwrap_or_default();
                    out.extend_from_slice(part);
                }
            }
            if !out.is_empty() && sink.send(out).await.is_err() {
                return Err(RemoteError::Cancelled);
            }
            if end < manifest.length() && window_end >= end {
                // A range ending early: every piece was checked against its shard root.
                return Ok(());
            }
        }
        decoder.finish()?;
        Ok(())
    }

    /// The shards to read from, healthy ones first, data shards before parity, without
    /// `exclude`.
    fn candidates(
        &self,
        id: &ObjectId,
        manifest: &ErasureManifest,
        record: &RemoteRecord,
        exclude: Option<u8>,
    ) -> Vec<(ShardInfo, IdentityHash)> {
        let health = lock(&self.shared.health);
        let mut candidates: Vec<_> = manifest
            .shards()
            .iter()
            .zip(&record.placements)
            .filter(|(info, _)| Some(info.index) != exclude)
            .map(|(info, placement)| {
                let rank = match health.health(&(*id, info.index)) {
                    Health::Healthy => 0,
                    Health::Suspect { .. } => 1,
                    Health::Lost => 2,
                };
                (rank, *info, IdentityHash(placement.provider))
            })
            .collect();
        candidates.sort_by_key(|(rank, info, _)| (*rank, info.index));
        candidates
            .into_iter()
            .map(|(_, info, provider)| (info, provider))
            .collect()
    }

    /// Challenges every shard of object `id` now, records the outcomes, pays what healthy
    /// shards earned (in the background) and starts repairs of shards found lost.
    ///
    /// Each provider gets `storage.remote_timeout_secs` to answer, or `wait` when that is
    /// shorter (the caller's deadline). A provider that stays silent only because `wait` cut
    /// its time short is reported as not passed but not counted as a failure: a caller in a
    /// hurry must not get healthy shards declared lost and repaired.
    pub async fn challenge(
        &self,
        id: ObjectId,
        wait: Option<Duration>,
    ) -> Result<Vec<ChallengeResult>, RemoteError> {
        let span = crate::telemetry::trace_span(|| {
            tracing::info_span!(
                "storage.challenge",
                otel.kind = "internal",
                mehr.object = %id,
                mehr.failed = tracing::field::Empty,
            )
        });
        let results = self
            .challenge_shards(id, wait)
            .instrument(span.clone())
            .await;
        if let Ok(results) = &results {
            span.record("mehr.failed", results.iter().filter(|r| !r.passed).count());
        }
        results
    }

    async fn challenge_shards(
        &self,
        id: ObjectId,
        wait: Option<Duration>,
    ) -> Result<Vec<ChallengeResult>, RemoteError> {
        let record = self.load(&id)?.ok_or(RemoteError::NotPlaced(id))?;
        let manifest = decode_manifest(id, &record)?;
        let full_wait = self.shared.settings.request_timeout;
        let wait = wait.map_or(full_wait, |wait| wait.min(full_wait));
        let checks = manifest
            .shards()
            .iter()
            .zip(&record.placements)
            .map(|(info, placement)| {
                let provider = IdentityHash(placement.provider);
                async move {
                    let outcome = self.challenge_shard(provider, info, wait).await;
                    (*info, provider, outcome)
                }
            });
        let outcomes = join_all(checks).await;

        let now = unix_ms_now();
        let mut results = Vec::with_capacity(outcomes.len());
        let mut lost = Vec::new();
        let dues: Vec<(u8, [u8; 16], u64)>;
        {
            let _records = self.shared.records.lock().await;
            // Reloaded under the lock: a repair may have moved a shard meanwhile.
            let Some(mut record) = self.load(&id)? else {
                return Err(RemoteError::NotPlaced(id));
            };
            let mut health = lock(&self.shared.health);
            for (info, provider, outcome) in outcomes {
                let Some(placement) = record.placements.get_mut(usize::from(info.index)) else {
                    continue;
                };
                if placement.provider != provider.0 {
                    continue;
                }
                let passed = outcome.is_ok();
                if wait < full_wait && matches!(outcome, Err(RemoteError::NoAnswer { .. })) {
                    let detail = format!(
                        "{} (the call's deadline cut the wait short of \
                         storage.remote_timeout_secs; not counted as a failure)",
                        outcome.err().map(|e| e.to_string()).unwrap_or_default()
                    );
                    results.push(ChallengeResult {
                        shard: info.index,
                        provider,
                        passed,
                        detail,
                        health: health.health(&(id, info.index)).into(),
                    });
                    continue;
                }
                placement.last_challenge_unix_ms = now;
                if passed {
                    &self.shared.challenges_passed
                } else {
                    &self.shared.challenges_failed
                }
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let state = health.record(
                    (id, info.index),
                    if passed {
                        ChallengeOutcome::Passed
                    } else {
                        ChallengeOutcome::Failed
                    },
                );
                let detail = match outcome {
                    Ok(()) => {
                        placement.passed += 1;
                        placement.owed_umhr = placement.owed_umhr.saturating_add(accrued(
                            info.length,
                            record.price_per_byte_day_umhr,
                            placement.accounted_until_unix_ms,
                            now,
                        ));
                        placement.accounted_until_unix_ms = now;
                        placement.last_error.clear();
                        String::new()
                    }
                    Err(e) => {
                        placement.failed += 1;
                        placement.last_error = e.to_string();
                        e.to_string()
                    }
                };
                let was_lost = placement.consecutive_failures >= mehr_storage::FAILURES_BEFORE_LOST;
                placement.consecutive_failures = match state {
                    Health::Healthy => 0,
                    Health::Suspect {
                        consecutive_failures,
                    } => consecutive_failures,
                    Health::Lost => mehr_storage::FAILURES_BEFORE_LOST,
                };
                if state == Health::Lost {
                    if !was_lost {
                        self.shared.events.publish(EventKind::ShardLost {
                            object: id,
                            shard: info.index,
                            provider: provider.0,
                        });
                    }
                    lost.push(info.index);
                }
                results.push(ChallengeResult {
                    shard: info.index,
                    provider,
                    passed,
                    detail,
                    health: state.into(),
                });
            }
            drop(health);
            // What healthy shards earned is paid unless a payment for the shard is still under
            // way, so that overlapping challenge rounds never pay the same amount twice.
            dues = match self.shared.payer {
                Some(_) => {
                    let mut paying = lock(&self.shared.paying);
                    (0u8..)
                        .zip(&record.placements)
                        .filter(|(_, p)| p.owed_umhr > 0 && p.consecutive_failures == 0)
                        .filter(|(shard, _)| paying.insert((id, *shard)))
                        .map(|(shard, p)| (shard, p.provider, p.owed_umhr))
                        .collect()
                }
                None => Vec::new(),
            };
            self.save(&id, &record)?;
        }
        if !dues.is_empty() {
            // Paying waits on each provider's channel update; the challenge's answer does not.
            let remote = self.clone();
            tokio::spawn(async move { remote.pay_dues(id, dues).await });
        }
        for shard in lost {
            if !lock(&self.shared.repairing).insert((id, shard)) {
                continue;
            }
            let remote = self.clone();
            tokio::spawn(async move {
                match remote.repair(id, shard).await {
                    Ok(provider) => {
                        tracing::info!(object = %id, shard, %provider, "shard repaired")
                    }
                    Err(e) => {
                        tracing::warn!(object = %id, shard, error = %e, "shard repair failed")
                    }
                }
                lock(&remote.shared.repairing).remove(&(id, shard));
            });
        }
        Ok(results)
    }

    async fn challenge_shard(
        &self,
        provider: IdentityHash,
        info: &ShardInfo,
        wait: Duration,
    ) -> Result<(), RemoteError> {
        let bad = |detail: String| RemoteError::BadData {
            provider,
            shard: info.index,
            detail,
        };
        if info.length == 0 {
            // Nothing can be selected in an empty shard; asking for its (empty) hash list
            // still checks that the provider holds it.
            let request = Request::FetchHashes {
                root: info.root,
                first: 0,
                count: 0,
            };
            return self
                .request_within(provider, &request, wait)
                .await
                .map(drop);
        }
        let challenge = Challenge::random(info.root, &mut rand::rngs::OsRng);
        let answer = self
            .request_within(provider, &Request::Challenge(challenge), wait)
            .await?;
        let proof =
            StorageProof::decode(&answer).map_err(|e| bad(format!("malformed proof: {e}")))?;
        verify_proof(&info.root, info.length, &challenge, &proof)
            .map_err(|e| bad(format!("the proof does not verify: {e}")))
    }

    /// Rebuilds shard `shard` of object `id` from `k` others onto a spare provider and moves
    /// the placement there; returns the new provider.
    pub async fn repair(&self, id: ObjectId, shard: u8) -> Result<IdentityHash, RemoteError> {
        let record = self.load(&id)?.ok_or(RemoteError::NotPlaced(id))?;
        let manifest = decode_manifest(id, &record)?;
        let info = *manifest
            .shards()
            .get(usize::from(shard))
            .ok_or(RemoteError::Code(ErasureError::UnknownShard {
                index: shard,
                total: manifest.shards().len(),
            }))?;
        let old = record
            .placements
            .get(usize::from(shard))
            .map(|p| IdentityHash(p.provider))
            .ok_or_else(|| RemoteError::Corrupt {
                id,
                detail: format!("no placement for shard {shard}"),
            })?;
        let in_use: HashSet<[u8; 16]> = record.placements.iter().map(|p| p.provider).collect();
        let mut last_error = None;
        let mut chosen = None;
        for spare in record.spares.iter().filter(|s| !in_use.contains(*s)) {
            let spare = IdentityHash(*spare);
            match self.rebuild_onto(id, &manifest, &record, info, spare).await {
                Ok(()) => {
                    chosen = Some(spare);
                    break;
                }
                Err(e) => {
                    tracing::warn!(object = %id, shard, %spare, error = %e, "repair onto a spare failed");
                    last_error = Some(e);
                }
            }
        }
        let Some(spare) = chosen else {
            return Err(last_error.unwrap_or(RemoteError::NoSpare { id, shard }));
        };
        {
            let _records = self.shared.records.lock().await;
            let mut record = self.load(&id)?.ok_or(RemoteError::NotPlaced(id))?;
            if let Some(placement) = record.placements.get_mut(usize::from(shard)) {
                *placement = Placement::new(spare.0, unix_ms_now());
            }
            record.spares.retain(|s| *s != spare.0);
            self.save(&id, &record)?;
            lock(&self.shared.health).forget(&(id, shard));
        }
        self.shared.events.publish(EventKind::ShardRepaired {
            object: id,
            shard,
            provider: spare.0,
        });
        // The old provider keeps nothing it is not paid for (it may well be gone).
        let remote = self.clone();
        tokio::spawn(async move {
            let _ = remote
                .request(old, &Request::Delete { root: info.root })
                .await;
        });
        Ok(spare)
    }

    async fn rebuild_onto(
        &self,
        id: ObjectId,
        manifest: &ErasureManifest,
        record: &RemoteRecord,
        info: ShardInfo,
        spare: IdentityHash,
    ) -> Result<(), RemoteError> {
        let held = self
            .offer(
                spare,
                &info,
                record.expires_unix_s,
                record.price_per_byte_day_umhr,
            )
            .await?;
        if held {
            return Ok(());
        }
        let candidates = self.candidates(&id, manifest, record, Some(info.index));
        let mut gatherer = Gatherer::new(self, manifest, candidates);
        let mut rebuilder = ShardRebuilder::new(manifest.clone(), info.index)?;
        let mut batch = ChunkBatch::default();
        let mut missing = None;
        while let Some(window) = gatherer.next_window().await? {
            let mut ready = Vec::new();
            for stripe in &window.stripes {
                rebuilder.rebuild_stripe(&window.pieces(stripe), |chunk| {
                    batch.push(chunk.index, chunk.bytes);
                    if batch.count >= MAX_CHUNKS_PER_MESSAGE {
                        ready.push(batch.take());
                    }
                    Ok::<(), ErasureError>(())
                })?;
            }
            for (first, count, bytes) in ready {
                missing = Some(
                    self.send_chunks(spare, info.root, first, count, bytes)
                        .await?,
                );
            }
        }
        rebuilder.finish(|chunk| {
            batch.push(chunk.index, chunk.bytes);
            Ok::<(), ErasureError>(())
        })?;
        if batch.count > 0 || missing.is_none() {
            let (first, count, bytes) = batch.take();
            missing = Some(
                self.send_chunks(spare, info.root, first, count, bytes)
                    .await?,
            );
        }
        match missing {
            Some(0) => Ok(()),
            other => Err(RemoteError::BadData {
                provider: spare,
                shard: info.index,
                detail: format!(
                    "{} chunks still missing after the last batch",
                    other.unwrap_or_default()
                ),
            }),
        }
    }

    /// Drops the placement of object `id`: every provider is asked to delete its shard (those
    /// that cannot be reached keep it until their agreement ends) and the record goes.
    pub async fn delete(&self, id: ObjectId) -> Result<PlacementView, RemoteError> {
        let view = self.placement(&id)?;
        {
            let _records = self.shared.records.lock().await;
            let mut batch = self.shared.store.batch();
            batch.delete(REMOTE_OBJECTS, id.as_bytes());
            self.shared.store.commit(batch)?;
            let mut health = lock(&self.shared.health);
            for shard in &view.shards {
                health.forget(&(id, shard.info.index));
            }
        }
        let deletes = view.shards.iter().map(|shard| {
            let provider = IdentityHash(shard.placement.provider);
            let root = shard.info.root;
            async move {
                if let Err(e) = self.request(provider, &Request::Delete { root }).await {
                    tracing::info!(object = %id, %provider, error = %e, "a provider did not delete its shard");
                }
            }
        });
        join_all(deletes).await;
        Ok(view)
    }

    /// Challenges every placed object every `interval`.
    pub(super) async fn challenge_loop(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let ids: Vec<ObjectId> = self
                .shared
                .store
                .scan_from(REMOTE_OBJECTS, &[])
                .filter_map(|item| item.ok().map(|(id, _)| ObjectId::from_bytes(id)))
                .collect();
            for id in ids {
                if self.shared.shutdown.is_cancelled() {
                    return;
                }
                match self.challenge(id, None).await {
                    Ok(results) => {
                        let failed = results.iter().filter(|r| !r.passed).count();
                        if failed > 0 {
                            tracing::info!(object = %id, failed, "challenges failed");
                        }
                    }
                    Err(e) => tracing::warn!(object = %id, error = %e, "cannot challenge"),
                }
            }
        }
    }
}

/// Consecutive chunks of one shard waiting to be sent.
#[derive(Default)]
struct ChunkBatch {
    first: u64,
    count: u16,
    bytes: Vec<u8>,
}

impl ChunkBatch {
    fn push(&mut self, index: u64, bytes: &[u8]) {
        if self.count == 0 {
            self.first = index;
        }
        self.count += 1;
        self.bytes.extend_from_slice(bytes);
    }

    fn take(&mut self) -> (u64, u16, Vec<u8>) {
        let taken = (self.first, self.count, std::mem::take(&mut self.bytes));
        self.count = 0;
        taken
    }
}

/// A placed object as its manifest and record describe it.
fn placed_info(id: ObjectId, manifest: &ErasureManifest, record: &RemoteRecord) -> ObjectInfo {
    ObjectInfo {
        id,
        length: manifest.length(),
        chunk_count: mehr_storage::chunk_count(manifest.length()),
        created_unix_ms: record.created_unix_ms,
        name: record.name.clone(),
    }
}

/// This call's turn to replicate an object: held for the whole replication, so calls for one
/// object run one after another (see `Shared::replicating`). The object's entry goes when the
/// last call waiting for it is done.
struct ReplicationTurn {
    shared: Arc<Shared>,
    id: ObjectId,
    gate: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ReplicationTurn {
    async fn take(shared: &Arc<Shared>, id: ObjectId) -> Self {
        let gate = lock(&shared.replicating).entry(id).or_default().clone();
        let guard = gate.clone().lock_owned().await;
        ReplicationTurn {
            shared: shared.clone(),
            id,
            gate,
            guard: Some(guard),
        }
    }
}

impl Drop for ReplicationTurn {
    fn drop(&mut self) {
        self.guard = None;
        let mut replicating = lock(&self.shared.replicating);
        // Held by the map and by this turn alone: nobody else waits.
        if Arc::strong_count(&self.gate) == 2 {
            replicating.remove(&self.id);
        }
    }
}
