//! The daemon's flows, with a map standing in for RocksDB: put, get, range read, challenge,
//! erasure placement, loss of shards, reconstruction and repair.

use std::collections::HashMap;

use mehr_storage::{
    Challenge, ChallengeOutcome, ChunkHash, ErasureDecoder, ErasureEncoder, ErasureError,
    ErasureManifest, ErasureParams, FailureTracker, Health, ObjectBuilder, ObjectId,
    ShardRebuilder, StorageProof, VerifiedChunkHashes, chunk_count, chunk_path, chunk_range, prove,
    verify_chunk, verify_proof,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Chunks keyed by (object, index), plus each object's chunk hashes and length.
#[derive(Default)]
struct Store {
    chunks: HashMap<(ObjectId, u64), Vec<u8>>,
    hashes: HashMap<ObjectId, (u64, Vec<ChunkHash>)>,
}

impl Store {
    fn put(&mut self, pieces: &[&[u8]]) -> ObjectId {
        let mut builder = ObjectBuilder::new();
        let mut staged = Vec::new();
        let mut hashes = Vec::new();
        for piece in pieces {
            builder
                .update(piece, |c| {
                    staged.push((c.index, c.bytes.to_vec()));
                    hashes.push(c.hash);
                    Ok::<_, ()>(())
                })
                .expect("infallible");
        }
        let built = builder
            .finish(|c| {
                staged.push((c.index, c.bytes.to_vec()));
                hashes.push(c.hash);
                Ok::<_, ()>(())
            })
            .expect("infallible");
        for (index, bytes) in staged {
            self.chunks.insert((built.id, index), bytes);
        }
        self.hashes.insert(built.id, (built.length, hashes));
        built.id
    }

    fn answer(&self, challenge: &Challenge) -> Vec<u8> {
        let (length, hashes) = &self.hashes[&challenge.object];
        let selection = challenge.select(*length).expect("non-empty");
        let chunk = &self.chunks[&(challenge.object, selection.chunk)];
        let path = chunk_path(hashes, selection.chunk).expect("in range");
        prove(challenge, *length, chunk, &path)
            .expect("honest")
            .encode()
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"e2e")
        .finalize_xof()
        .fill(&mut out);
    out
}

#[test]
fn put_get_range_and_challenge() {
    let mut store = Store::default();
    let original = data(1 << 20 | 1234);
    let id = store.put(&[&original[..1000], &original[1000..]]);
    let length = original.len() as u64;

    // Whole-object get: fetch the hash list once, then verify each chunk as it streams.
    let list = VerifiedChunkHashes::new(&id, length, store.hashes[&id].1.clone()).expect("valid");
    let mut got = Vec::new();
    for index in 0..chunk_count(length) {
        let chunk = &store.chunks[&(id, index)];
        list.verify_chunk(index, chunk).expect("intact");
        got.extend_from_slice(chunk);
    }
    assert_eq!(got, original);

    // Range read: each overlapping chunk arrives with its path.
    let (offset, len) = (5000u64, 9000u64);
    let mut range = Vec::new();
    for index in chunk_range(length, offset, len).expect("in bounds") {
        let chunk = &store.chunks[&(id, index)];
        let path = chunk_path(&store.hashes[&id].1, index).expect("in range");
        verify_chunk(&id, length, index, chunk, &path).expect("intact");
        range.extend_from_slice(chunk);
    }
    let skip = (offset % 4096) as usize;
    assert_eq!(&range[skip..skip + len as usize], &original[5000..14000]);

    // Audits over the wire: the consumer keeps only (id, length).
    let mut rng = StdRng::seed_from_u64(7);
    let mut tracker = FailureTracker::new();
    for _ in 0..20 {
        let challenge = Challenge::random(id, &mut rng);
        let wire = challenge.encode();
        let received = Challenge::decode(&wire).expect("valid");
        let proof = StorageProof::decode(&store.answer(&received)).expect("valid");
        // 257 chunks: the chunk path has 9 siblings, or 1 for the last chunk.
        assert!(proof.encoded_len() <= 10 + 64 + 1 + 6 * 32 + 1 + 9 * 32);
        assert_eq!(verify_proof(&id, length, &challenge, &proof), Ok(()));
        assert_eq!(
            tracker.record((id, "provider"), ChallengeOutcome::Passed),
            Health::Healthy
        );
    }

    // The provider drops a chunk: challenges that land on it can no longer be answered.
    let lost_index = 3;
    store.chunks.remove(&(id, lost_index));
    let mut failures = 0;
    for n in 0u32.. {
        let mut nonce = [0u8; 32];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        let challenge = Challenge { object: id, nonce };
        if challenge.select(length).expect("non-empty").chunk != lost_index {
            continue;
        }
        // The best the provider can do is answer with some other chunk's bytes and path.
        let (_, hashes) = &store.hashes[&id];
        let substitute = &store.chunks[&(id, 4)];
        let path = chunk_path(hashes, 4).expect("in range");
        assert!(prove(&challenge, length, substitute, &path).is_err());
        failures += 1;
        let health = tracker.record((id, "provider"), ChallengeOutcome::Failed);
        if failures == 3 {
            assert_eq!(health, Health::Lost);
            break;
        }
    }
}

#[test]
fn erasure_placement_loss_reconstruction_and_repair() {
    let original = data(3 * 256 * 1024 + 999);
    let params = ErasureParams::default();
    let mut shard_bytes = vec![Vec::new(); params.total_shards()];
    let mut encoder = ErasureEncoder::new(params).expect("valid");
    for piece in original.chunks(10_000) {
        encoder
            .update(piece, |c| {
                shard_bytes[usize::from(c.shard)].extend_from_slice(c.chunk.bytes);
                Ok::<_, ErasureError>(())
            })
            .expect("encodes");
    }
    let manifest = encoder
        .finish(|c| {
            shard_bytes[usize::from(c.shard)].extend_from_slice(c.chunk.bytes);
            Ok::<_, ErasureError>(())
        })
        .expect("encodes");
    assert_eq!(manifest.object(), ObjectId::for_bytes(&original));
    let manifest = ErasureManifest::decode(&manifest.encode()).expect("round trip");

    // Each shard goes to its own provider as an ordinary object and is challenged as one.
    let mut providers: Vec<Store> = (0..6).map(|_| Store::default()).collect();
    for (info, bytes) in manifest.shards().iter().zip(&shard_bytes) {
        let stored = providers[usize::from(info.index)].put(&[bytes]);
        assert_eq!(stored, info.root);
        let challenge = Challenge {
            object: info.root,
            nonce: [info.index; 32],
        };
        let proof = StorageProof::decode(&providers[usize::from(info.index)].answer(&challenge))
            .expect("valid");
        assert_eq!(
            verify_proof(&info.root, info.length, &challenge, &proof),
            Ok(())
        );
    }

    // Providers 1 and 4 vanish. Read each stripe's pieces from four others, verifying each
    // shard's chunks against its root as they come.
    let survivors = [0u8, 2, 3, 5];
    let lists: HashMap<u8, VerifiedChunkHashes> = survivors
        .iter()
        .map(|&i| {
            let info = manifest.shards()[usize::from(i)];
            let hashes = providers[usize::from(i)].hashes[&info.root].1.clone();
            (
                i,
                VerifiedChunkHashes::new(&info.root, info.length, hashes).expect("valid"),
            )
        })
        .collect();
    let read = |shard: u8, offset: u64, len: usize| -> Vec<u8> {
        let info = manifest.shards()[usize::from(shard)];
        let mut out = Vec::new();
        for index in chunk_range(info.length, offset, len as u64).expect("in bounds") {
            let chunk = &providers[usize::from(shard)].chunks[&(info.root, index)];
            lists[&shard].verify_chunk(index, chunk).expect("intact");
            out.extend_from_slice(chunk);
        }
        let skip = (offset % 4096) as usize;
        out[skip..skip + len].to_vec()
    };

    let mut decoder = ErasureDecoder::new(manifest.clone()).expect("valid");
    let mut rebuilder = ShardRebuilder::new(manifest.clone(), 4).expect("valid");
    let mut rebuilt = Vec::new();
    let mut restored = Vec::new();
    while let Some(stripe) = decoder.next_stripe() {
        let pieces: Vec<(u8, Vec<u8>)> = survivors
            .iter()
            .map(|&i| (i, read(i, stripe.shard_offset, stripe.piece_len)))
            .collect();
        let borrowed: Vec<(u8, &[u8])> = pieces.iter().map(|(i, p)| (*i, p.as_slice())).collect();
        restored.extend_from_slice(decoder.decode_stripe(&borrowed).expect("decodes"));
        rebuilder
            .rebuild_stripe(&borrowed, |c| {
                rebuilt.extend_from_slice(c.bytes);
                Ok::<_, ErasureError>(())
            })
            .expect("rebuilds");
    }
    assert_eq!(decoder.finish(), Ok(manifest.object()));
    assert_eq!(restored, original);
    let info = rebuilder
        .finish(|c| {
            rebuilt.extend_from_slice(c.bytes);
            Ok::<_, ErasureError>(())
        })
        .expect("matches the manifest");
    assert_eq!(info, manifest.shards()[4]);
    assert_eq!(rebuilt, shard_bytes[4]);
}
