//! Throughput of the streaming builder (next to raw Blake3), storage-proof generation and
//! verification for 1 MB and 1 GB objects, and erasure encode/decode.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mehr_storage::{
    CHUNK_SIZE, Challenge, ChunkHash, ChunkPathBuilder, ErasureDecoder, ErasureEncoder,
    ErasureParams, ObjectBuilder, ObjectId, ShardChunk, chunk_count, chunk_hash, chunk_path,
    object_id, prove, verify_proof,
};

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"mehr storage bench")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn build(data: &[u8]) -> (ObjectId, Vec<Vec<u8>>, Vec<ChunkHash>) {
    let mut chunks = Vec::new();
    let mut hashes = Vec::new();
    let mut keep = |c: mehr_storage::Chunk<'_>| {
        chunks.push(c.bytes.to_vec());
        hashes.push(c.hash);
        Ok::<_, Infallible>(())
    };
    let mut builder = ObjectBuilder::new();
    let _ = builder.update(data, &mut keep);
    let id = builder
        .finish(&mut keep)
        .map(|b| b.id)
        .unwrap_or_else(|never| match never {});
    (id, chunks, hashes)
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.measurement_time(Duration::from_secs(5));
    for size in [1usize << 20, 16 << 20] {
        let data = pseudo_random(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("object_builder", size),
            &data,
            |b, data| {
                b.iter(|| {
                    let mut builder = ObjectBuilder::new();
                    for piece in data.chunks(64 * 1024) {
                        let _ = builder.update(piece, |c| {
                            black_box(c.hash);
                            Ok::<_, Infallible>(())
                        });
                    }
                    builder.finish(|_| Ok::<_, Infallible>(()))
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("blake3_hash", size), &data, |b, data| {
            b.iter(|| blake3::hash(black_box(data)));
        });
    }
    group.finish();
}

fn bench_proof(c: &mut Criterion) {
    let mut group = c.benchmark_group("proof");
    group.measurement_time(Duration::from_secs(5));

    let data = pseudo_random(1 << 20);
    let (id, chunks, hashes) = build(&data);
    let challenge = Challenge {
        object: id,
        nonce: [7; 32],
    };
    let selected = challenge
        .select(data.len() as u64)
        .map(|s| s.chunk as usize)
        .unwrap_or(0);
    let length = data.len() as u64;
    group.bench_function("prove_1MiB_from_hash_list", |b| {
        b.iter(|| {
            let path = chunk_path(&hashes, selected as u64).ok()?;
            prove(&challenge, length, &chunks[selected], &path).ok()
        })
    });
    let Ok(path) = chunk_path(&hashes, selected as u64) else {
        return;
    };
    if let Ok(proof) = prove(&challenge, length, &chunks[selected], &path) {
        println!("proof size for 1 MiB: {} bytes", proof.encode().len());
        group.bench_function("verify_1MiB", |b| {
            b.iter(|| verify_proof(&id, length, &challenge, black_box(&proof)))
        });
    }

    // 1 GiB: 262144 synthetic chunk hashes; only the challenged chunk has real bytes.
    let length: u64 = 1 << 30;
    let chunk: Vec<u8> = pseudo_random(CHUNK_SIZE);
    let mut hashes: Vec<ChunkHash> = (0..chunk_count(length))
        .map(|i| ChunkHash::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let draft = Challenge {
        object: ObjectId::from_bytes([0; 32]),
        nonce: [9; 32],
    };
    // The selection depends on the object id, which depends on the hashes: fix the challenged
    // chunk's hash first by selecting with a provisional id, then search for a nonce that
    // selects that chunk under the final id.
    let target = draft.select(length).map(|s| s.chunk as usize).unwrap_or(0);
    if let Some(h) = chunk_hash(&chunk) {
        hashes[target] = h;
    }
    let Some(id) = object_id(&hashes, length) else {
        return;
    };
    let challenge = (0u32..)
        .map(|n| {
            let mut nonce = [0u8; 32];
            nonce[..4].copy_from_slice(&n.to_le_bytes());
            Challenge { object: id, nonce }
        })
        .find(|c| c.select(length).map(|s| s.chunk as usize) == Ok(target))
        .unwrap_or(draft);
    group.sample_size(20);
    group.bench_function("prove_1GiB_from_hash_list", |b| {
        b.iter(|| {
            let path = chunk_path(&hashes, target as u64).ok()?;
            prove(&challenge, length, &chunk, &path).ok()
        })
    });
    group.bench_function("prove_1GiB_streamed_hashes", |b| {
        b.iter(|| {
            let mut builder = ChunkPathBuilder::new(length, target as u64).ok()?;
            for h in &hashes {
                builder.push(h);
            }
            prove(&challenge, length, &chunk, &builder.finish().ok()?).ok()
        })
    });
    let Ok(path) = chunk_path(&hashes, target as u64) else {
        return;
    };
    if let Ok(proof) = prove(&challenge, length, &chunk, &path) {
        println!("proof size for 1 GiB: {} bytes", proof.encode().len());
        group.bench_function("verify_1GiB", |b| {
            b.iter(|| verify_proof(&id, length, &challenge, black_box(&proof)))
        });
    }
    group.finish();
}

fn bench_erasure(c: &mut Criterion) {
    let mut group = c.benchmark_group("erasure");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(10);
    let size = 16usize << 20;
    let data = pseudo_random(size);
    let params = ErasureParams::default();
    group.throughput(Throughput::Bytes(size as u64));

    group.bench_function("encode_4+2_16MiB", |b| {
        b.iter(|| {
            let mut encoder = ErasureEncoder::new(params).ok()?;
            for piece in data.chunks(64 * 1024) {
                encoder
                    .update(piece, |c: ShardChunk<'_>| {
                        black_box(c.chunk.hash);
                        Ok::<_, mehr_storage::ErasureError>(())
                    })
                    .ok()?;
            }
            encoder
                .finish(|_| Ok::<_, mehr_storage::ErasureError>(()))
                .ok()
        })
    });

    let mut shards = vec![Vec::new(); params.total_shards()];
    let mut encoder = match ErasureEncoder::new(params) {
        Ok(e) => e,
        Err(_) => return,
    };
    let mut keep = |c: ShardChunk<'_>| {
        shards[usize::from(c.shard)].extend_from_slice(c.chunk.bytes);
        Ok::<_, mehr_storage::ErasureError>(())
    };
    let manifest = match encoder
        .update(&data, &mut keep)
        .and_then(|()| encoder.finish(&mut keep))
    {
        Ok(m) => m,
        Err(_) => return,
    };
    for (label, from) in [
        ("all_data_shards", [0u8, 1, 2, 3]),
        ("two_data_shards_lost", [0, 1, 4, 5]),
    ] {
        group.bench_function(format!("decode_4+2_16MiB_{label}"), |b| {
            b.iter(|| {
                let mut decoder = ErasureDecoder::new(manifest.clone()).ok()?;
                while let Some(stripe) = decoder.next_stripe() {
                    let start = stripe.shard_offset as usize;
                    let pieces: Vec<(u8, &[u8])> = from
                        .iter()
                        .map(|&i| (i, &shards[usize::from(i)][start..start + stripe.piece_len]))
                        .collect();
                    black_box(decoder.decode_stripe(&pieces).ok()?);
                }
                decoder.finish().ok()
            })
        });
    }
    group.finish();
}

// The macro generates an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, bench_build, bench_proof, bench_erasure);
}
criterion_main!(group::benches);
