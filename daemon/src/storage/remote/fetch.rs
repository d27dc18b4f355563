//! Reading shards back from providers, stripe window by stripe window, for Get and repair.
//!
//! Before a shard is used, its chunk-hash list is fetched and checked against the shard root
//! (`VerifiedChunkHashes`, 32 bytes per 4 KiB chunk); every chunk fetched afterwards is checked
//! against its entry. A provider that cannot be reached, refuses, or sends a chunk that does not
//! match is dropped and the next candidate shard takes its place, so the read goes on as long
//! as `k` shards answer correctly.
//!
//! A provider that is gone does not fail fast: the node asks the mesh for a path to it and
//! waits `storage.remote_timeout_secs` for an answer. So the hash lists are asked of `k`
//! candidates at once, and every [`HEDGE_AFTER`] that they are not all in, one more candidate
//! is asked as well; the first `k` to answer are read. A read with dead providers among the
//! first candidates then costs seconds rather than a timeout per dead provider.

use std::{collections::VecDeque, time::Duration};

use futures::{StreamExt, future::join_all, stream::FuturesUnordered};
use mehr_storage::{
    CHUNK_SIZE, ChunkHash, ErasureManifest, ShardInfo, Stripe, VerifiedChunkHashes, chunk_count,
    chunk_len,
};
use mehr_transport::hashes::IdentityHash;

use super::{
    RemoteError, RemoteStorage,
    wire::{MAX_CHUNKS_PER_MESSAGE, MAX_HASHES_PER_MESSAGE, Request},
};

/// How long the hash lists asked for may all be outstanding before one more candidate is
/// asked: long against a loopback or LAN round trip, short against the provider timeout.
const HEDGE_AFTER: Duration = Duration::from_secs(2);

/// Shard bytes fetched per shard and window (whole stripes, at least one).
const WINDOW_BYTES: u64 = 1 << 20;

/// A shard being read.
struct ActiveShard {
    info: ShardInfo,
    provider: IdentityHash,
    hashes: VerifiedChunkHashes,
}

/// Pieces of `k` shards for a run of stripes.
pub(super) struct Window {
    /// The stripes, in order.
    pub(super) stripes: Vec<Stripe>,
    /// Shard byte offset of the first stripe.
    start: u64,
    /// For each shard used: its index and its bytes over the window.
    shards: Vec<(u8, Vec<u8>)>,
}

impl Window {
    /// The pieces of `stripe` (one of [`Window::stripes`]).
    pub(super) fn pieces(&self, stripe: &Stripe) -> Vec<(u8, &[u8])> {
        let from = usize::try_from(stripe.shard_offset - self.start).unwrap_or(usize::MAX);
        self.shards
            .iter()
            .filter_map(|(index, bytes)| {
                bytes
                    .get(from..from.saturating_add(stripe.piece_len))
                    .map(|piece| (*index, piece))
            })
            .collect()
    }
}

/// Gathers the pieces of `k` shards, replacing shards that fail with other candidates.
pub(super) struct Gatherer<'a> {
    remote: &'a RemoteStorage,
    manifest: &'a ErasureManifest,
    candidates: VecDeque<(ShardInfo, IdentityHash)>,
    active: Vec<ActiveShard>,
    next_stripe: u64,
    /// What went wrong with each shard dropped: (shard index, provider, why).
    pub(super) failures: Vec<(u8, IdentityHash, String)>,
}

impl<'a> Gatherer<'a> {
    /// Reads from `candidates` (shard, provider), in order of preference.
    pub(super) fn new(
        remote: &'a RemoteStorage,
        manifest: &'a ErasureManifest,
        candidates: Vec<(ShardInfo, IdentityHash)>,
    ) -> Self {
        Gatherer {
            remote,
            manifest,
            candidates: candidates.into(),
            active: Vec::new(),
            next_stripe: 0,
            failures: Vec::new(),
        }
    }

    fn not_enough(&self) -> RemoteError {
        let detail = if self.failures.is_empty() {
            "no other shard is placed".to_string()
        } else {
            self.failures
                .iter()
                .map(|(shard, provider, why)| format!("shard {shard} on {provider}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        RemoteError::NotEnoughShards {
            id: self.manifest.object(),
            available: self.active.len(),
            needed: usize::from(self.manifest.params().data_shards()),
            detail,
        }
    }

    /// Activates candidates until `k` shards are active, asking the missing number at once
    /// and one more every [`HEDGE_AFTER`]. Candidates still being asked when `k` answered go
    /// back to the end of the queue, for a shard that fails later in the read.
    async fn fill(&mut self) -> Result<(), RemoteError> {
        let k = usize::from(self.manifest.params().data_shards());
        let remote = self.remote;
        let ask = |info: ShardInfo, provider: IdentityHash| async move {
            (info, provider, remote.fetch_hashes(provider, &info).await)
        };
        let mut asking = FuturesUnordered::new();
        let mut unanswered = Vec::new();
        let start = tokio::time::Instant::now() + HEDGE_AFTER;
        let mut hedge = tokio::time::interval_at(start, HEDGE_AFTER);
        loop {
            while self.active.len() + asking.len() < k {
                let Some((info, provider)) = self.candidates.pop_front() else {
                    break;
                };
                unanswered.push((info, provider));
                asking.push(ask(info, provider));
            }
            if self.active.len() >= k {
                self.candidates.extend(unanswered);
                return Ok(());
            }
            if asking.is_empty() {
                return Err(self.not_enough());
            }
            tokio::select! {
                Some((info, provider, answer)) = asking.next() => {
                    unanswered.retain(|(i, _)| i.index != info.index);
                    match answer {
                        Ok(hashes) => self.active.push(ActiveShard {
                            info,
                            provider,
                            hashes,
                        }),
                        Err(e) => self.failures.push((info.index, provider, e.to_string())),
                    }
                }
                _ = hedge.tick() => {
                    if let Some((info, provider)) = self.candidates.pop_front() {
                        unanswered.push((info, provider));
                        asking.push(ask(info, provider));
                    }
                }
            }
        }
    }

    /// The next run of stripes with the pieces of `k` shards; `None` after the last stripe.
    pub(super) async fn next_window(&mut self) -> Result<Option<Window>, RemoteError> {
        let Some(first) = self.manifest.stripe(self.next_stripe) else {
            return Ok(None);
        };
        let mut stripes = vec![first];
        let mut end = first.shard_offset + first.piece_len as u64;
        while end - first.shard_offset < WINDOW_BYTES {
            let Some(stripe) = self
                .manifest
                .stripe(self.next_stripe + stripes.len() as u64)
            else {
                break;
            };
            end = stripe.shard_offset + stripe.piece_len as u64;
            stripes.push(stripe);
        }
        loop {
            self.fill().await?;
            let reads = self.active.iter().map(|shard| {
                self.remote.fetch_bytes(
                    shard.provider,
                    &shard.info,
                    &shard.hashes,
                    first.shard_offset,
                    end,
                )
            });
            let results = join_all(reads).await;
            let mut shards = Vec::with_capacity(results.len());
            let mut failed = Vec::new();
            for (position, result) in results.into_iter().enumerate() {
                match result {
                    Ok(bytes) => shards.push((self.active[position].info.index, bytes)),
                    Err(e) => failed.push((position, e.to_string())),
                }
            }
            if failed.is_empty() {
                self.next_stripe += stripes.len() as u64;
                return Ok(Some(Window {
                    stripes,
                    start: first.shard_offset,
                    shards,
                }));
            }
            for (position, why) in failed.into_iter().rev() {
                let shard = self.active.remove(position);
                tracing::warn!(shard = shard.info.index, provider = %shard.provider, error = %why, "dropping a shard from the read");
                self.failures.push((shard.info.index, shard.provider, why));
            }
        }
    }
}

impl RemoteStorage {
    /// The chunk-hash list of shard `info` from `provider`, checked against the shard root.
    async fn fetch_hashes(
        &self,
        provider: IdentityHash,
        info: &ShardInfo,
    ) -> Result<VerifiedChunkHashes, RemoteError> {
        let total = chunk_count(info.length);
        let mut hashes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let bad = |detail: String| RemoteError::BadData {
            provider,
            shard: info.index,
            detail,
        };
        // An empty shard has no hash to fetch, but the provider must still hold it.
        loop {
            let first = hashes.len() as u64;
            let count = (total - first).min(MAX_HASHES_PER_MESSAGE.into()) as u32;
            let bytes = self
                .request(
                    provider,
                    &Request::FetchHashes {
                        root: info.root,
                        first,
                        count,
                    },
                )
                .await?;
            if bytes.len() != count as usize * 32 {
                return Err(bad(format!(
                    "{} bytes of hashes for {count} chunks",
                    bytes.len()
                )));
            }
            for hash in bytes.chunks_exact(32) {
                let mut array = [0u8; 32];
                array.copy_from_slice(hash);
                hashes.push(ChunkHash::from_bytes(array));
            }
            if hashes.len() as u64 >= total {
                break;
            }
        }
        VerifiedChunkHashes::new(&info.root, info.length, hashes)
            .map_err(|e| bad(format!("the chunk hashes do not match the root: {e}")))
    }

    /// Bytes `start .. end` of shard `info` from `provider`, every chunk checked.
    async fn fetch_bytes(
        &self,
        provider: IdentityHash,
        info: &ShardInfo,
        hashes: &VerifiedChunkHashes,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, RemoteError> {
        let chunk = CHUNK_SIZE as u64;
        let first_chunk = start / chunk;
        let end_chunk = end.div_ceil(chunk).min(chunk_count(info.length));
        let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        let mut index = first_chunk;
        while index < end_chunk {
            let count = (end_chunk - index).min(MAX_CHUNKS_PER_MESSAGE.into()) as u16;
            let data = self
                .request(
                    provider,
                    &Request::Fetch {
                        root: info.root,
                        first: index,
                        count,
                    },
                )
                .await?;
            let mut offset = 0usize;
            for i in index..index + u64::from(count) {
                let len = chunk_len(info.length, i).unwrap_or(0);
                let piece = data
                    .get(offset..offset + len)
                    .ok_or_else(|| RemoteError::BadData {
                        provider,
                        shard: info.index,
                        detail: format!("chunk {i} is missing from the answer"),
                    })?;
                hashes
                    .verify_chunk(i, piece)
                    .map_err(|e| RemoteError::BadData {
                        provider,
                        shard: info.index,
                        detail: format!("chunk {i}: {e}"),
                    })?;
                bytes.extend_from_slice(piece);
                offset += len;
            }
            index += u64::from(count);
        }
        let skip = usize::try_from(start - first_chunk * chunk).unwrap_or(0);
        let want = usize::try_from(end - start).unwrap_or(0);
        bytes
            .get(skip..skip + want)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| RemoteError::BadData {
                provider,
                shard: info.index,
                detail: format!("the shard is shorter than {end} bytes"),
            })
    }
}
