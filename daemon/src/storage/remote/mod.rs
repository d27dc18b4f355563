//! Remote storage (MHR-Store, the mesh part): objects erasure-coded into `k + m` shards, each
//! shard stored as an ordinary object on a distinct provider, challenged with storage proofs,
//! and repaired onto a spare provider when one is lost.
//!
//! One [`RemoteStorage`] plays both roles. As a **consumer** it places objects
//! ([`RemoteStorage::replicate`]), reads them back from any `k` shards
//! ([`RemoteStorage::read`]), challenges every shard ([`RemoteStorage::challenge`], and
//! periodically), and repairs lost shards. As a **provider** it answers the requests of other
//! nodes (`provider`), storing their shards in the local [`ObjectStore`] with
//! [`ObjectStore::begin_chunk_set`]. The messages and their signed envelope are in [`wire`].
//!
//! Providers are named by the caller for now; discovery through the marketplace, agreements and
//! payment will be glued on later. What verified storage earns each provider is counted in the
//! consumer's records ([`records::Placement::owed_umhr`]).

mod consumer;
mod error;
mod fetch;
mod freshness;
mod provider;
pub mod records;
pub mod wire;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use consumer::{
    ChallengeResult, PlacementView, ReplicateOptions, ShardHealth, ShardHealthCounts, ShardView,
};
pub use error::RemoteError;
use mehr_storage::{ErasureParams, FailureTracker, ObjectId};
use mehr_transport::{
    hashes::IdentityHash,
    identity::{Identity, PrivateIdentity},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::{Reply, Request, kinds};

use super::ObjectStore;
use crate::{
    events::EventBus,
    seams::{payments::PeerPayer, storage::StorageOffer},
    store::Store,
    transport::{ControlMessage, TransportHandle, mehr_node_destination},
};

/// How long a node waits for a path to an unknown sender before refusing its message.
const KEY_LOOKUP: Duration = Duration::from_secs(5);

/// How often (at most; more often when challenges are) a provider drops the shards whose
/// agreement ended.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// Remote-storage settings (config section `[storage]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSettings {
    /// How long one request to a provider may take, delivery and answer together.
    pub request_timeout: Duration,
    /// Time between two rounds of challenges of every placed shard; `None`: no periodic
    /// challenges.
    pub challenge_interval: Option<Duration>,
    /// The code used when a request does not name one.
    pub default_params: ErasureParams,
    /// Agreement duration when a request does not name one, seconds.
    pub default_duration_secs: u64,
    /// The longest this node holds a shard for a consumer, seconds.
    pub max_hold_secs: u64,
    /// Bytes of shards held for all consumers together (`storage.provider_bytes`, capped at
    /// `storage.available_bytes`).
    pub provider_bytes: u64,
    /// Bytes of shards one consumer may keep here (`storage.max_bytes_per_consumer`).
    pub max_bytes_per_consumer: u64,
}

impl RemoteSettings {
    /// The settings the `[storage]` section makes.
    pub fn from_config(storage: &crate::config::StorageConfig) -> Self {
        let default_params = mehr_storage::ErasureParams::new(
            storage.data_shards,
            storage.parity_shards,
            mehr_storage::DEFAULT_PIECE_SIZE,
        )
        // `validate` checked them; the crate's default is the documented fallback.
        .unwrap_or_default();
        RemoteSettings {
            request_timeout: Duration::from_secs(storage.remote_timeout_secs.max(1)),
            challenge_interval: (storage.challenge_interval_secs > 0)
                .then(|| Duration::from_secs(storage.challenge_interval_secs)),
            default_params,
            default_duration_secs: storage.agreement_duration_secs,
            max_hold_secs: storage.max_hold_secs,
            provider_bytes: storage.provider_bytes.min(storage.available_bytes),
            max_bytes_per_consumer: storage.max_bytes_per_consumer,
        }
    }
}

/// What the remote part needs to start.
pub struct RemoteParts {
    /// The node's keys (signs every message).
    pub identity: PrivateIdentity,
    /// The transport.
    pub transport: TransportHandle,
    /// The local object store (shards held for others, objects to replicate).
    pub objects: ObjectStore,
    /// The database (placements, held shards).
    pub store: Store,
    /// Settings.
    pub settings: RemoteSettings,
    /// Where placement, loss and repair of shards are published.
    pub events: Arc<EventBus>,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
    /// Pays providers what verified storage earned them; `None` keeps it owed.
    pub payer: Option<Arc<dyn PeerPayer>>,
    /// The terms this node stores shards for others on (offers below them are refused).
    pub terms: StorageOffer,
    /// Drops by reason, shared with the node's other parts (GetStats).
    pub drops: crate::seams::drops::PartDrops,
}

/// The remote-storage part. Cheap to clone.
#[derive(Clone)]
pub struct RemoteStorage {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RemoteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStorage")
            .field("node", &self.shared.me)
            .finish_non_exhaustive()
    }
}

struct Shared {
    me: IdentityHash,
    identity: PrivateIdentity,
    transport: TransportHandle,
    objects: ObjectStore,
    store: Store,
    settings: RemoteSettings,
    events: Arc<EventBus>,
    shutdown: CancellationToken,
    /// Requests waiting for their reply, by (provider, request id).
    pending: Mutex<HashMap<(IdentityHash, u64), oneshot::Sender<Reply>>>,
    next_request: AtomicU64,
    /// Keys of nodes heard from, checked against their node ids.
    keys: Mutex<HashMap<IdentityHash, Identity>>,
    /// Consecutive challenge failures per (object, shard index), seeded from the records.
    health: Mutex<FailureTracker<(ObjectId, u8)>>,
    /// Shard challenges that passed and failed (counted where the tracker records them).
    challenges_passed: AtomicU64,
    challenges_failed: AtomicU64,
    /// Serialises read-modify-write of consumer records (challenges, repairs, deletes).
    records: tokio::sync::Mutex<()>,
    /// Shards being repaired now (a repair outlasting a challenge round is not started twice).
    repairing: Mutex<std::collections::HashSet<(ObjectId, u8)>>,
    /// Shards whose earnings are being paid: a later challenge round leaves them to it.
    paying: Mutex<std::collections::HashSet<(ObjectId, u8)>>,
    /// Objects being replicated, each with the lock its replications take in turn: a second
    /// call (a retry racing the first) waits, then finds the object placed, instead of
    /// uploading the same shards to the same providers at the same time.
    replicating: Mutex<HashMap<ObjectId, Arc<tokio::sync::Mutex<()>>>>,
    /// Provider side: chunk-set uploads in progress.
    uploads: Mutex<provider::Uploads>,
    /// Pays what passed challenges earned; `None` keeps it owed.
    payer: Option<Arc<dyn PeerPayer>>,
    /// The terms this node stores shards for others on.
    terms: StorageOffer,
    /// Provider side: bytes held for each consumer (the provider pool).
    pool: Mutex<provider::Pool>,
    /// Requests handled at once; the receive loops wait for a permit, so the bounded
    /// channels in front of them fill and the transport drops (and counts) the excess.
    handlers: Arc<tokio::sync::Semaphore>,
    /// Drops by reason (GetStats).
    drops: crate::seams::drops::PartDrops,
    /// Provider side: request ids seen inside the freshness window, per consumer.
    seen_requests: Mutex<freshness::SeenRequests>,
}

/// Storage requests handled at once, all kinds together.
const MAX_CONCURRENT_HANDLERS: usize = 32;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RemoteStorage {
    /// The erasure code a Replicate uses for what it does not name.
    pub fn default_params(&self) -> mehr_storage::ErasureParams {
        self.shared.settings.default_params
    }

    /// Registers the storage control messages and starts the periodic challenges.
    pub async fn start(parts: RemoteParts) -> Result<RemoteStorage, RemoteError> {
        let me = parts.identity.hash();
        let remote = RemoteStorage {
            shared: Arc::new(Shared {
                me,
                identity: parts.identity,
                transport: parts.transport.clone(),
                objects: parts.objects,
                store: parts.store,
                settings: parts.settings,
                events: parts.events,
                shutdown: parts.shutdown,
                pending: Mutex::new(HashMap::new()),
                // Ids carry the clock (see `freshness`), which also keeps the ids of a
                // restarted node apart from its earlier ones.
                next_request: AtomicU64::new(0),
                keys: Mutex::new(HashMap::new()),
                health: Mutex::new(FailureTracker::new()),
                challenges_passed: AtomicU64::new(0),
                challenges_failed: AtomicU64::new(0),
                records: tokio::sync::Mutex::new(()),
                repairing: Mutex::new(std::collections::HashSet::new()),
                paying: Mutex::new(std::collections::HashSet::new()),
                replicating: Mutex::new(HashMap::new()),
                uploads: Mutex::new(provider::Uploads::default()),
                payer: parts.payer,
                terms: parts.terms,
                pool: Mutex::new(provider::Pool::default()),
                handlers: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDLERS)),
                drops: parts.drops,
                seen_requests: Mutex::new(freshness::SeenRequests::default()),
            }),
        };
        remote.seed_health()?;
        remote.seed_pool()?;
        for kind in kinds::REQUESTS.into_iter().chain([kinds::REPLY]) {
            let messages = parts.transport.control_messages(kind).await?;
            tokio::spawn(remote.clone().receive(messages));
        }
        let sweep = remote
            .shared
            .settings
            .challenge_interval
            .map_or(EXPIRY_SWEEP, |interval| interval.min(EXPIRY_SWEEP));
        tokio::spawn(remote.clone().expiry_loop(sweep));
        if let Some(interval) = remote.shared.settings.challenge_interval {
            tokio::spawn(remote.clone().challenge_loop(interval));
        }
        Ok(remote)
    }

    /// This node's id.
    pub fn node_id(&self) -> IdentityHash {
        self.shared.me
    }

    async fn receive(self, mut messages: mpsc::Receiver<ControlMessage>) {
        loop {
            let message = tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let Ok(permit) = self.shared.handlers.clone().acquire_owned().await else {
                return;
            };
            let remote = self.clone();
            tokio::spawn(async move {
                remote.on_message(message.kind, message.body).await;
                drop(permit);
            });
        }
    }

    async fn on_message(self, kind: u8, body: Vec<u8>) {
        let envelope = match wire::open(&body) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::debug!(kind, error = %e, "malformed storage message");
                return;
            }
        };
        let sender = envelope.sender;
        let verified = match self.identity_of(sender).await {
            Some(identity) => envelope
                .verify(kind, &self.shared.me, &identity)
                .map_err(|e| e.to_string()),
            None => Err(format!("no announce of node {sender} was heard")),
        };
        if kind == kinds::REPLY {
            match verified.and_then(|()| Reply::decode(envelope.payload).map_err(|e| e.to_string()))
            {
                Ok(reply) => self.on_reply(sender, envelope.request_id, reply),
                Err(e) => tracing::debug!(%sender, error = %e, "storage reply dropped"),
            }
            return;
        }
        if verified.is_ok() {
            let fresh = lock(&self.shared.seen_requests).admit(
                sender,
                envelope.request_id,
                crate::events::unix_ms_now(),
            );
            if let Err(stale) = fresh {
                // No answer: the first copy of a request is answered, and an answer to a copy
                // could reach the consumer before it.
                tracing::debug!(%sender, kind, ?stale, "storage request not fresh");
                self.shared.drops.count(stale.reason());
                return;
            }
        }
        let reply = match verified {
            Ok(()) => match Request::decode(kind, envelope.payload) {
                Ok(request) => self.serve(sender, request).await,
                Err(e) => Reply::Error(wire::ErrorCode::BadRequest, e.to_string()),
            },
            Err(e) => {
                tracing::debug!(%sender, kind, error = %e, "storage request not authenticated");
                Reply::Error(wire::ErrorCode::Unauthenticated, e)
            }
        };
        let request_id = envelope.request_id;
        self.send_reply(sender, request_id, reply);
    }

    fn on_reply(&self, provider: IdentityHash, request_id: u64, reply: Reply) {
        let waiter = lock(&self.shared.pending).remove(&(provider, request_id));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(reply);
            }
            None => tracing::debug!(%provider, request_id, "storage reply to no pending request"),
        }
    }

    fn send_reply(&self, consumer: IdentityHash, request_id: u64, reply: Reply) {
        let body = self.seal(kinds::REPLY, consumer, request_id, &reply.encode());
        // Sent once, and not proved (storage kinds are not acknowledged): a lost reply makes
        // the consumer's request time out, and it decides whether to ask again.
        let posted = self.shared.transport.post_control(
            consumer,
            kinds::REPLY,
            &body,
            self.shared.settings.request_timeout,
        );
        if !posted {
            tracing::debug!(%consumer, request_id, "storage reply dropped: the transport queue is full");
        }
    }

    fn seal(&self, kind: u8, to: IdentityHash, request_id: u64, payload: &[u8]) -> Vec<u8> {
        wire::seal(kind, &to, &self.shared.me, request_id, payload, |digest| {
            self.shared.identity.sign(digest)
        })
    }

    /// Sends `request` to `provider` and waits for its answer, at most
    /// `storage.remote_timeout_secs`.
    async fn request(
        &self,
        provider: IdentityHash,
        request: &Request,
    ) -> Result<Vec<u8>, RemoteError> {
        self.request_within(provider, request, self.shared.settings.request_timeout)
            .await
    }

    /// Sends `request` to `provider` and waits at most `timeout` for its answer.
    async fn request_within(
        &self,
        provider: IdentityHash,
        request: &Request,
        timeout: Duration,
    ) -> Result<Vec<u8>, RemoteError> {
        let now = crate::events::unix_ms_now();
        let previous = self
            .shared
            .next_request
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |previous| {
                Some(freshness::next_request_id(previous, now))
            })
            .unwrap_or_default();
        let request_id = freshness::next_request_id(previous, now);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert((provider, request_id), tx);
        // Removes the waiter however this call ends.
        let _pending = PendingGuard {
            shared: &self.shared,
            key: (provider, request_id),
        };
        let kind = request.kind();
        let body = self.seal(kind, provider, request_id, &request.encode());
        let unreachable = |detail: String| RemoteError::Unreachable { provider, detail };
        // The answer is the acknowledgement: single-packet control messages are not proved by
        // the receiving node, so waiting for a proof would only add its timeout. A send that
        // fails outright (no path, link refused) ends the wait early.
        let transport = self.shared.transport.clone();
        let sending = async move {
            match transport.send_control(provider, kind, &body, timeout).await {
                Err(e) => e,
                Ok(_) => std::future::pending().await,
            }
        };
        let answer = tokio::time::timeout(timeout, async {
            tokio::select! {
                reply = rx => reply.map_err(|_| unreachable("the node is stopping".into())),
                failed = sending => Err(unreachable(failed.to_string())),
            }
        })
        .await;
        match answer {
            Ok(Ok(Reply::Ok(bytes))) => Ok(bytes),
            Ok(Ok(Reply::Error(code, reason))) => Err(RemoteError::Provider {
                provider,
                code,
                reason,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RemoteError::NoAnswer {
                provider,
                waited: timeout,
            }),
        }
    }

    /// The identity of `node`: cached, from its announce, or after asking for its path.
    async fn identity_of(&self, node: IdentityHash) -> Option<Identity> {
        if let Some(identity) = lock(&self.shared.keys).get(&node) {
            return Some(identity.clone());
        }
        let transport = &self.shared.transport;
        let mut public = transport.identity_of(node).await.ok().flatten();
        if public.is_none() {
            let _ = transport
                .request_path(mehr_node_destination(&node), KEY_LOOKUP)
                .await;
            public = transport.identity_of(node).await.ok().flatten();
        }
        let identity = Identity::from_public_key(&public?).ok()?;
        if identity.hash() != node {
            return None;
        }
        lock(&self.shared.keys).insert(node, identity.clone());
        Some(identity)
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    key: (IdentityHash, u64),
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(&self.key);
    }
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, RemoteError> + Send + 'static,
) -> Result<T, RemoteError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(RemoteError::Cancelled),
    }
}

#[cfg(test)]
mod tests;
