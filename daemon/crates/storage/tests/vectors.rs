//! Test vectors for the commitment, recomputed here from the README's description with plain
//! Blake3 calls, then pinned as hex so that any change to the construction is caught.

use mehr_storage::{
    Challenge, ErasureEncoder, ErasureError, ErasureParams, ObjectBuilder, ObjectId, Selection,
    chunk_hash, chunk_path, prove,
};

fn key(context: &str) -> [u8; 32] {
    blake3::derive_key(context, b"")
}

fn h(context: &str, input: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(&key(context), input).as_bytes()
}

fn node(context: &str, left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    h(context, &block)
}

fn root(top: &[u8; 32], length: u64) -> [u8; 32] {
    let mut input = top.to_vec();
    input.extend_from_slice(&length.to_le_bytes());
    h("mehr storage v1 object root", &input)
}

/// Chunk hash of a full 4096-byte chunk: a perfect six-level tree over 64 segment leaves.
fn full_chunk(chunk: &[u8]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = chunk
        .chunks(64)
        .map(|s| h("mehr storage v1 segment", s))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| node("mehr storage v1 chunk node", &p[0], &p[1]))
            .collect();
    }
    level[0]
}

fn pattern() -> Vec<u8> {
    (0..4097u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn empty_object() {
    let expected = root(&[0u8; 32], 0);
    assert_eq!(ObjectId::for_bytes(&[]).to_bytes(), expected);
    assert_eq!(
        ObjectId::for_bytes(&[]).to_string(),
        "c5e9693899eb084f7c8c9e8475638382a3728e1c771fa6aa5ddf7b008bcfeab1"
    );
}

#[test]
fn three_byte_object() {
    let leaf = h("mehr storage v1 segment", b"abc");
    assert_eq!(chunk_hash(b"abc").map(|c| c.to_bytes()), Some(leaf));
    assert_eq!(ObjectId::for_bytes(b"abc").to_bytes(), root(&leaf, 3));
    assert_eq!(
        ObjectId::for_bytes(b"abc").to_string(),
        "ff6bb5651be01d1e904284e9171e7c72a65702dda086feb5df539c9d8bb4c7ce"
    );
}

#[test]
fn two_chunk_object() {
    let data = pattern();
    let c0 = full_chunk(&data[..4096]);
    let c1 = h("mehr storage v1 segment", &data[4096..]);
    let top = node("mehr storage v1 object node", &c0, &c1);
    assert_eq!(ObjectId::for_bytes(&data).to_bytes(), root(&top, 4097));
    assert_eq!(
        ObjectId::for_bytes(&data).to_string(),
        "2501a12e4802f97e9300ec231d947800f70a83f213ebc87e7ce9a9ce6c0ab845"
    );
}

#[test]
fn challenge_selection_and_proof_encoding() {
    let data = pattern();
    let id = ObjectId::for_bytes(&data);
    let nonce: [u8; 32] = core::array::from_fn(|i| i as u8);
    let challenge = Challenge { object: id, nonce };

    // Selection: first 8 bytes (LE) of keyed_hash(nonce, tag ‖ id ‖ length), multiply-shift onto
    // ceil(4097 / 64) = 65 segments.
    let mut input = b"mehr storage v1 challenge".to_vec();
    input.extend_from_slice(id.as_bytes());
    input.extend_from_slice(&4097u64.to_le_bytes());
    let draw = blake3::keyed_hash(&nonce, &input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&draw.as_bytes()[..8]);
    let global = ((u128::from(u64::from_le_bytes(first)) * 65) >> 64) as u64;
    let selection = challenge.select(4097).expect("non-empty");
    assert_eq!(
        selection,
        Selection {
            chunk: global / 64,
            segment: (global % 64) as u8
        }
    );
    assert_eq!(
        selection,
        Selection {
            chunk: 0,
            segment: 6
        }
    );

    let mut chunks = Vec::new();
    let mut hashes = Vec::new();
    let mut keep = |c: mehr_storage::Chunk<'_>| {
        chunks.push(c.bytes.to_vec());
        hashes.push(c.hash);
        Ok::<_, ()>(())
    };
    let mut builder = ObjectBuilder::new();
    builder.update(&data, &mut keep).expect("infallible");
    builder.finish(&mut keep).expect("infallible");
    let path = chunk_path(&hashes, 0).expect("in range");
    let proof = prove(&challenge, 4097, &chunks[0], &path).expect("honest");
    let bytes = proof.encode();
    // chunk 0, segment 6, 64 bytes = data[384..448], 6 chunk-tree siblings, 1 object sibling
    // (the last chunk's hash).
    assert_eq!(&bytes[..10], &[0, 0, 0, 0, 0, 0, 0, 0, 6, 64]);
    assert_eq!(&bytes[10..74], &data[384..448]);
    assert_eq!(bytes[74], 6);
    assert_eq!(bytes[74 + 1 + 6 * 32], 1);
    assert_eq!(
        &bytes[bytes.len() - 32..],
        &h("mehr storage v1 segment", &data[4096..])
    );
    assert_eq!(bytes.len(), 10 + 64 + 1 + 192 + 1 + 32);
    assert_eq!(
        hex::encode(&bytes[75..75 + 32]),
        "9aa6103a99f88cc05f4cab12b825839cd8edb998721c52b3d9de5a087a44f1cb"
    );
}

#[test]
fn erasure_manifest() {
    let mut encoder =
        ErasureEncoder::new(ErasureParams::new(2, 1, 64).expect("valid")).expect("valid");
    encoder
        .update(&pattern(), |_| Ok::<_, ErasureError>(()))
        .expect("encodes");
    let manifest = encoder
        .finish(|_| Ok::<_, ErasureError>(()))
        .expect("encodes");
    // 32 full stripes of 128 bytes and one of 1 byte, padded to a 64-byte piece.
    assert!(manifest.shards().iter().all(|s| s.length == 32 * 64 + 64));
    let roots: Vec<String> = manifest
        .shards()
        .iter()
        .map(|s| s.root.to_string())
        .collect();
    assert_eq!(
        roots,
        [
            "3e35d51b5b330c881186ece6aa1ff492a3ccc94e39db9325c650a3d044903706",
            "539e637c44e3ba68fde28b20020cc1b63b28c84cce24becd1188122200c9575f",
            "d07adc4c24a51b2710341919acfe27702201ddba6cfe7c546b3c2389733f38d2",
        ]
    );
    assert_eq!(
        manifest.id().to_string(),
        "795a9f0b31e8c769b041dfd121cdce6cd3922a2383c0f31760cd2ae0572b7fc8"
    );
}
