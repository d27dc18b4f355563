//! The provider's side driven directly (no mesh): who may do what with a shard, what a
//! consumer's checks reject.

use std::sync::Arc;

use mehr_storage::{
    CHUNK_SIZE, Challenge, ErasureParams, ObjectId, ProofError, StorageProof, verify_proof,
};
use mehr_transport::{hashes::IdentityHash, identity::PrivateIdentity};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use tokio_util::sync::CancellationToken;

use super::{
    RemoteParts, RemoteSettings, RemoteStorage,
    wire::{ErrorCode, Reply, Request},
};
use crate::{
    events::EventBus,
    seams::storage::StorageTerms,
    storage::{ObjectStore, StorageLimits},
    store::Store,
};

struct Provider {
    _dir: tempfile::TempDir,
    remote: RemoteStorage,
    objects: ObjectStore,
    stop: CancellationToken,
    /// The storage terms the market would publish.
    terms: tokio::sync::watch::Sender<StorageTerms>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn provider(available_bytes: u64) -> Provider {
    provider_with(available_bytes, available_bytes, available_bytes).await
}

/// A provider whose pool for other nodes' shards and per-consumer quota are set apart.
async fn provider_with(
    available_bytes: u64,
    provider_bytes: u64,
    max_bytes_per_consumer: u64,
) -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let events = Arc::new(EventBus::default());
    let limits = StorageLimits {
        available_bytes,
        max_object_size: available_bytes,
    };
    let (objects, _) = ObjectStore::open(store.clone(), limits, events.clone()).unwrap();
    let identity = PrivateIdentity::generate(&mut rand::rngs::OsRng);
    let stop = CancellationToken::new();
    let (transport, _) = crate::transport::start(
        identity.clone(),
        crate::transport::TransportConfig::default(),
        Vec::new(),
        events,
        stop.clone(),
    )
    .await
    .unwrap();
    let (terms, terms_rx) = tokio::sync::watch::channel(StorageTerms {
        offered: true,
        price_per_byte_day_umhr: 0,
    });
    let remote = RemoteStorage::start(RemoteParts {
        identity,
        transport,
        objects: objects.clone(),
        store,
        settings: RemoteSettings {
            request_timeout: std::time::Duration::from_secs(1),
            challenge_interval: None,
            default_params: ErasureParams::default(),
            default_duration_secs: 3600,
            max_hold_secs: MAX_HOLD_SECS,
            provider_bytes,
            max_bytes_per_consumer,
        },
        events: Arc::new(EventBus::default()),
        shutdown: stop.clone(),
        payer: None,
        terms: terms_rx,
        drops: Default::default(),
    })
    .await
    .unwrap();
    Provider {
        _dir: dir,
        remote,
        objects,
        stop,
        terms,
    }
}

fn shard(len: usize) -> (ObjectId, Vec<u8>) {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(len as u64).fill_bytes(&mut data);
    (ObjectId::for_bytes(&data), data)
}

fn node(byte: u8) -> IdentityHash {
    IdentityHash([byte; 16])
}

/// How long the test providers hold shards at most.
const MAX_HOLD_SECS: u64 = 86_400;

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An offer of a shard for an hour at 1 μMHR per byte-day.
fn offer(root: ObjectId, length: usize) -> Request {
    Request::Offer {
        root,
        length: length as u64,
        expires_unix_s: now_unix_s() + 3600,
        price_per_byte_day_umhr: 1,
    }
}

fn chunks(root: ObjectId, data: &[u8], first: u64, count: u16) -> Request {
    let start = first as usize * CHUNK_SIZE;
    let end = (start + usize::from(count) * CHUNK_SIZE).min(data.len());
    Request::Chunks {
        root,
        first,
        count,
        bytes: data[start..end].to_vec(),
    }
}

fn ok(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Ok(bytes) => bytes,
        Reply::Error(code, reason) => panic!("{code:?}: {reason}"),
    }
}

fn refused(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Error(code, _) => code,
        Reply::Ok(_) => panic!("the request was accepted"),
    }
}

async fn store(provider: &Provider, consumer: IdentityHash, root: ObjectId, data: &[u8]) {
    assert_eq!(
        ok(provider
            .remote
            .serve(consumer, offer(root, data.len()))
            .await),
        [0]
    );
    let count = data.len().div_ceil(CHUNK_SIZE) as u16;
    // Out of order, the last batch first.
    let missing = ok(provider
        .remote
        .serve(consumer, chunks(root, data, 2, count - 2))
        .await);
    assert_eq!(missing, 2u64.to_le_bytes());
    let missing = ok(provider
        .remote
        .serve(consumer, chunks(root, data, 0, 2))
        .await);
    assert_eq!(missing, 0u64.to_le_bytes());
}

#[tokio::test]
async fn only_the_consumer_that_stored_a_shard_may_read_prove_or_delete_it() {
    let provider = provider(1 << 20).await;
    let (root, data) = shard(5 * CHUNK_SIZE + 100);
    let (owner, stranger) = (node(1), node(2));
    store(&provider, owner, root, &data).await;
    assert_eq!(
        provider.objects.stat(&root).unwrap().length,
        data.len() as u64
    );

    let challenge = Challenge::random(root, &mut rand::rngs::OsRng);
    for request in [
        Request::Challenge(challenge),
        Request::Fetch {
            root,
            first: 0,
            count: 1,
        },
        Request::FetchHashes {
            root,
            first: 0,
            count: 6,
        },
        Request::Delete { root },
    ] {
        assert_eq!(
            refused(provider.remote.serve(stranger, request.clone()).await),
            ErrorCode::NotHeld,
            "{request:?}"
        );
    }

    let proof = ok(provider
        .remote
        .serve(owner, Request::Challenge(challenge))
        .await);
    let proof = StorageProof::decode(&proof).unwrap();
    verify_proof(&root, data.len() as u64, &challenge, &proof).unwrap();
    let fetched = ok(provider
        .remote
        .serve(
            owner,
            Request::Fetch {
                root,
                first: 5,
                count: 4,
            },
        )
        .await);
    assert_eq!(fetched, data[5 * CHUNK_SIZE..]);
    let hashes = ok(provider
        .remote
        .serve(
            owner,
            Request::FetchHashes {
                root,
                first: 0,
                count: 100,
            },
        )
        .await);
    assert_eq!(hashes.len(), 6 * 32);

    ok(provider.remote.serve(owner, Request::Delete { root }).await);
    assert!(!provider.objects.contains(&root).unwrap());
}

#[tokio::test]
async fn forged_proofs_are_rejected() {
    let provider = provider(1 << 20).await;
    let (root, data) = shard(40 * CHUNK_SIZE);
    store(&provider, node(1), root, &data).await;
    let asked = Challenge::random(root, &mut rand::rngs::OsRng);
    // A provider answering another challenge (a segment of its choosing) is caught...
    let mut other = asked;
    other.nonce[0] ^= 1;
    if other.select(data.len() as u64).unwrap() == asked.select(data.len() as u64).unwrap() {
        other.nonce[1] ^= 1;
    }
    let proof = ok(provider
        .remote
        .serve(node(1), Request::Challenge(other))
        .await);
    let proof = StorageProof::decode(&proof).unwrap();
    assert!(matches!(
        verify_proof(&root, data.len() as u64, &asked, &proof),
        Err(ProofError::WrongSegment { .. })
    ));
    // ...and so is a right position with wrong bytes.
    let proof = ok(provider
        .remote
        .serve(node(1), Request::Challenge(asked))
        .await);
    let mut forged = proof.clone();
    let flip = 12; // the first segment byte, after the indices
    forged[flip] ^= 0xff;
    let forged = StorageProof::decode(&forged).unwrap();
    assert!(verify_proof(&root, data.len() as u64, &asked, &forged).is_err());
}

#[tokio::test]
async fn chunks_that_do_not_match_the_root_are_never_committed() {
    let provider = provider(1 << 20).await;
    let (root, data) = shard(3 * CHUNK_SIZE);
    let consumer = node(1);
    ok(provider
        .remote
        .serve(consumer, offer(root, data.len()))
        .await);
    let mut bad = data.clone();
    bad[100] ^= 1;
    let reply = provider
        .remote
        .serve(consumer, chunks(root, &bad, 0, 3))
        .await;
    assert_eq!(refused(reply), ErrorCode::BadRequest);
    assert!(!provider.objects.contains(&root).unwrap());
    assert_eq!(provider.objects.usage().reserved_bytes, 0);
    // The failed upload is gone: chunks now need a new offer.
    let reply = provider
        .remote
        .serve(consumer, chunks(root, &data, 0, 3))
        .await;
    assert_eq!(refused(reply), ErrorCode::NotHeld);
    // A chunk of the wrong length is refused as well.
    ok(provider
        .remote
        .serve(consumer, offer(root, data.len()))
        .await);
    let reply = provider
        .remote
        .serve(
            consumer,
            Request::Chunks {
                root,
                first: 0,
                count: 1,
                bytes: vec![0; 10],
            },
        )
        .await;
    assert_eq!(refused(reply), ErrorCode::BadRequest);
}

#[tokio::test]
async fn offers_over_the_space_left_are_refused() {
    let provider = provider(10_000).await;
    let (root, data) = shard(20_000);
    let reply = provider
        .remote
        .serve(node(1), offer(root, data.len()))
        .await;
    assert_eq!(refused(reply), ErrorCode::Refused);
}

#[tokio::test]
async fn expired_shards_are_dropped() {
    let provider = provider(1 << 20).await;
    let (root, data) = shard(2 * CHUNK_SIZE);
    let consumer = node(1);
    // An hour from now: a time already past would race the provider's own expiry sweep.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let request = Request::Offer {
        root,
        length: data.len() as u64,
        expires_unix_s: expires,
        price_per_byte_day_umhr: 0,
    };
    ok(provider.remote.serve(consumer, request).await);
    ok(provider
        .remote
        .serve(consumer, chunks(root, &data, 0, 2))
        .await);
    assert_eq!(provider.remote.expire_held(expires - 1).await.unwrap(), 0);
    assert!(provider.objects.contains(&root).unwrap());
    assert_eq!(provider.remote.expire_held(expires + 1).await.unwrap(), 1);
    assert!(!provider.objects.contains(&root).unwrap());
}

#[tokio::test]
async fn offers_off_the_advertised_terms_are_refused_and_reserve_nothing() {
    let provider = provider(1 << 20).await;
    let (root, data) = shard(2 * CHUNK_SIZE);
    let at = |expires_unix_s, price_per_byte_day_umhr| Request::Offer {
        root,
        length: data.len() as u64,
        expires_unix_s,
        price_per_byte_day_umhr,
    };
    let now = now_unix_s();

    // Kept for good, or already over.
    let forever = provider.remote.serve(node(1), at(u64::MAX, 1)).await;
    assert_eq!(refused(forever), ErrorCode::Refused);
    let past = provider.remote.serve(node(1), at(now - 1, 1)).await;
    assert_eq!(refused(past), ErrorCode::BadRequest);

    // Below the advertised price.
    provider.terms.send_replace(StorageTerms {
        offered: true,
        price_per_byte_day_umhr: 5,
    });
    let cheap = provider.remote.serve(node(1), at(now + 3600, 4)).await;
    assert_eq!(refused(cheap), ErrorCode::Refused);

    // Storage not offered at all (market.offer_storage = false, or UpdateOffer).
    provider.terms.send_replace(StorageTerms {
        offered: false,
        price_per_byte_day_umhr: 5,
    });
    let unoffered = provider.remote.serve(node(1), at(now + 3600, 5)).await;
    assert_eq!(refused(unoffered), ErrorCode::Refused);

    let usage = provider.objects.usage();
    assert_eq!((usage.used_bytes, usage.reserved_bytes), (0, 0));

    // On the terms, within the longest hold: accepted.
    provider.terms.send_replace(StorageTerms {
        offered: true,
        price_per_byte_day_umhr: 5,
    });
    ok(provider
        .remote
        .serve(node(1), at(now + MAX_HOLD_SECS - 60, 5))
        .await);
    // Room is reserved as the bytes arrive, not for the declared length at once.
    assert_eq!(provider.objects.usage().reserved_bytes, 0);
    assert_eq!(
        provider.remote.shared.drops.get("storage.offer_off_terms"),
        4
    );
}

#[tokio::test]
async fn consumers_fill_only_the_provider_pool_within_their_quota_and_local_puts_keep_the_rest() {
    // 1 MiB in all, 256 KiB for other nodes' shards, 100 KiB per consumer.
    let provider = provider_with(1 << 20, 256 << 10, 100 << 10).await;
    let drops = provider.remote.shared.drops.clone();
    let shard_of = |seed: usize| shard(20 * CHUNK_SIZE + seed);
    let (a, b, c, d, f) = (node(1), node(2), node(3), node(4), node(6));
    let (root_a, data_a) = shard_of(1);
    store(&provider, a, root_a, &data_a).await;

    // Consumer a is at 80 KiB of its 100: another 40 KiB is over its quota.
    let (root, data) = shard(10 * CHUNK_SIZE);
    assert_eq!(
        refused(provider.remote.serve(a, offer(root, data.len())).await),
        ErrorCode::Refused
    );
    assert_eq!(drops.get("storage.consumer_quota"), 1);

    // Two more consumers bring the pool to 240 KiB; a fourth finds it full.
    for (consumer, seed) in [(b, 2), (c, 3)] {
        let (root, data) = shard_of(seed);
        store(&provider, consumer, root, &data).await;
    }
    let (root_d, data_d) = shard_of(4);
    assert_eq!(
        refused(provider.remote.serve(d, offer(root_d, data_d.len())).await),
        ErrorCode::Refused
    );
    assert_eq!(drops.get("storage.provider_pool_full"), 1);

    // A delete frees a's share; an accepted offer holds no room until its bytes arrive.
    ok(provider
        .remote
        .serve(a, Request::Delete { root: root_a })
        .await);
    let (root_f, data_f) = shard_of(6);
    assert_eq!(
        ok(provider.remote.serve(f, offer(root_f, data_f.len())).await),
        [0]
    );
    assert_eq!(provider.objects.usage().reserved_bytes, 0);
    ok(provider
        .remote
        .serve(f, chunks(root_f, &data_f, 0, 2))
        .await);
    assert_eq!(
        provider.objects.usage().reserved_bytes,
        2 * CHUNK_SIZE as u64
    );

    // The operator's own Put of everything outside the pool still fits.
    let local = vec![7u8; (1 << 20) - (256 << 10)];
    let mut upload = provider
        .objects
        .begin_upload(crate::storage::UploadOptions {
            name: "mine".into(),
            expected_size: Some(local.len() as u64),
        })
        .unwrap();
    upload.write(&local).unwrap();
    upload.finish(1).unwrap();
}
