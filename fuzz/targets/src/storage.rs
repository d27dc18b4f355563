//! Targets for `mehr-storage`: storage challenges and proofs, Merkle paths, erasure manifests
//! and shard descriptions, erasure decoding from pieces other nodes supply, and the
//! remote-storage control messages between a consumer and a provider.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use mehr_storage::remote;
use mehr_storage::{
    Challenge, ErasureDecoder, ErasureEncoder, ErasureError, ErasureManifest, ErasureParams,
    MerklePath, ObjectId, SEGMENT_SIZE, ShardInfo, StorageProof, verify_proof,
};
use mehr_transport::PrivateIdentity;

/// Challenges, storage proofs and Merkle paths: exact round trips; a challenge selects a
/// segment inside any object; a proof nobody computed does not verify. The first byte picks
/// the decoder, eight bytes of object length follow.
pub fn storage_proof(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some((length, body)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let length = u64::from_le_bytes(*length);
    match kind % 3 {
        0 => {
            let Ok(challenge) = Challenge::decode(body) else {
                return;
            };
            assert_eq!(challenge.encode(), body);
            match challenge.select(length) {
                Ok(selection) => {
                    assert!(length > 0);
                    assert!(usize::from(selection.segment) < mehr_storage::SEGMENTS_PER_CHUNK);
                    let segment = selection.chunk * mehr_storage::SEGMENTS_PER_CHUNK as u64
                        + u64::from(selection.segment);
                    assert!(
                        segment < length.div_ceil(SEGMENT_SIZE as u64),
                        "the selected segment lies inside the object"
                    );
                    assert_eq!(
                        challenge.select(length),
                        Ok(selection),
                        "selection is a function"
                    );
                }
                Err(_) => assert_eq!(length, 0),
            }
        }
        1 => {
            let Ok(proof) = StorageProof::decode(body) else {
                return;
            };
            assert_eq!(proof.encode(), body);
            assert_eq!(proof.encoded_len(), body.len());
            assert!((1..=SEGMENT_SIZE).contains(&proof.segment().len()));
            let object = ObjectId::from_bytes(*blake3::hash(body).as_bytes());
            let challenge = Challenge {
                object,
                nonce: [7; 32],
            };
            assert!(
                verify_proof(&object, length, &challenge, &proof).is_err(),
                "a proof nobody computed does not verify"
            );
        }
        _ => {
            let Ok(path) = MerklePath::decode(body) else {
                return;
            };
            assert_eq!(path.encode(), body);
            assert!(path.siblings().len() <= MerklePath::MAX_LEN);
            assert_eq!(
                MerklePath::from_siblings(path.siblings().to_vec()).as_ref(),
                Some(&path)
            );
        }
    }
}

/// Erasure manifests and shard descriptions: exact round trips and a stripe layout that
/// covers the object exactly.
pub fn erasure_manifest(data: &[u8]) {
    if let Ok(info) = ShardInfo::decode(data) {
        assert_eq!(info.encode(), data);
        assert!(info.index < info.data_shards + info.parity_shards);
    }
    let Ok(manifest) = ErasureManifest::decode(data) else {
        return;
    };
    assert_eq!(
        manifest.encode(),
        data,
        "a manifest re-encodes to its input"
    );
    assert_eq!(
        manifest.id(),
        ErasureManifest::decode(&manifest.encode())
            .expect("again")
            .id()
    );
    let params = manifest.params();
    assert_eq!(manifest.shards().len(), params.total_shards());
    let length = manifest.length();
    let count = manifest.stripe_count();
    assert_eq!(count == 0, length == 0);
    assert!(manifest.stripe(count).is_none());
    if count > 0 {
        let first = manifest.stripe(0).expect("the first stripe");
        assert_eq!(first.object_offset, 0);
        assert_eq!(first.shard_offset, 0);
        let last = manifest.stripe(count - 1).expect("the last stripe");
        assert_eq!(
            last.object_offset + last.data_len as u64,
            length,
            "the stripes end where the object ends"
        );
        assert_eq!(
            last.shard_offset + last.piece_len as u64,
            params.shard_len(length),
            "the pieces end where the shards end"
        );
        assert!(last.data_len <= last.piece_len * usize::from(params.data_shards()));
        assert_eq!(last.piece_len % SEGMENT_SIZE, 0);
    }
}

/// Erasure decoding from pieces that peers supply. The input chooses a small code and an
/// object; the object is encoded for real, then each stripe is decoded from pieces the input
/// picks, drops, duplicates, truncates or replaces. Whatever arrives, decoding never panics,
/// k intact pieces give back the stripe, and the decoder never finishes on a wrong object.
pub fn erasure_pieces(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(params) = small_params(&mut u) else {
        return;
    };
    let Ok(length) = u.int_in_range(1..=4_096usize) else {
        return;
    };
    let object: Vec<u8> = (0..length)
        .map(|i| (i as u8).wrapping_mul(31) ^ (length as u8))
        .collect();
    let encoded = encoded(params, &object);
    let (manifest, shards) = (&encoded.0, &encoded.1);
    let k = usize::from(params.data_shards());
    let Ok(mut decoder) = ErasureDecoder::new(manifest.clone()) else {
        panic!("a decoder for a manifest we built");
    };
    let mut wrong = false;
    while let Some(stripe) = decoder.next_stripe() {
        let start = stripe.shard_offset as usize;
        let intact: Vec<&[u8]> = shards
            .iter()
            .map(|s| &s[start..start + stripe.piece_len])
            .collect();
        let mut pieces: Vec<(u8, Vec<u8>)> = Vec::new();
        let Ok(count) = u.int_in_range(0..=intact.len() + 1) else {
            return;
        };
        for _ in 0..count {
            let (Ok(index), Ok(how)) = (u.int_in_range(0..=intact.len()), u.int_in_range(0..=5u8))
            else {
                return;
            };
            let piece = match (how, intact.get(index)) {
                (0..=2, Some(p)) => p.to_vec(),
                (3, Some(p)) => {
                    let mut p = p.to_vec();
                    if let (Ok(at), Ok(flip)) = (u.choose_index(p.len()), u.int_in_range(1..=255u8))
                    {
                        p[at] ^= flip;
                    }
                    p
                }
                (4, Some(p)) => p[..p.len() / 2].to_vec(),
                _ => {
                    let Ok(len) = u.int_in_range(0..=stripe.piece_len) else {
                        return;
                    };
                    let Ok(bytes) = u.bytes(len.min(u.len())) else {
                        return;
                    };
                    bytes.to_vec()
                }
            };
            pieces.push((index as u8, piece));
        }
        let all_intact = pieces
            .iter()
            .all(|(i, p)| intact.get(usize::from(*i)) == Some(&&p[..]));
        let distinct: std::collections::BTreeSet<u8> = pieces.iter().map(|(i, _)| *i).collect();
        let well_formed = all_intact && distinct.len() == pieces.len() && distinct.len() >= k;
        let borrowed: Vec<(u8, &[u8])> = pieces.iter().map(|(i, p)| (*i, &p[..])).collect();
        let expected = &object[stripe.object_offset as usize..][..stripe.data_len];
        match decoder.decode_stripe(&borrowed) {
            Ok(bytes) => {
                if bytes != expected {
                    assert!(!all_intact, "intact pieces give back the stripe");
                    wrong = true;
                }
            }
            Err(e) => {
                assert!(!well_formed, "k distinct intact pieces were refused: {e}");
                return;
            }
        }
    }
    match decoder.finish() {
        Ok(id) => assert!(!wrong, "the decoder finished on a wrong object {id}"),
        Err(e) => assert!(wrong, "a correctly decoded object is refused: {e}"),
    }
}

/// Codes with k + m ≤ 8 and pieces of 64 to 512 bytes, so one input costs little.
fn small_params(u: &mut Unstructured<'_>) -> arbitrary::Result<ErasureParams> {
    let k = u.int_in_range(1..=5u8)?;
    let m = u.int_in_range(1..=8 - k)?;
    let piece = u.int_in_range(1..=8u32)? * SEGMENT_SIZE as u32;
    ErasureParams::new(k, m, piece).map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// [`encode`] of the object made from `length`, remembered: the object depends only on its
/// parameters and length, so inputs that share them share one encoding and each input pays
/// for decoding only (the property under test). At most [`ENCODINGS_REMEMBERED`] are kept.
fn encoded(params: ErasureParams, object: &[u8]) -> Encoded {
    thread_local! {
        static ENCODINGS: RefCell<HashMap<(ErasureParams, usize), Encoded>> =
            RefCell::new(HashMap::new());
    }
    ENCODINGS.with(|encodings| {
        let mut encodings = encodings.borrow_mut();
        if encodings.len() >= ENCODINGS_REMEMBERED {
            encodings.clear();
        }
        Rc::clone(
            encodings
                .entry((params, object.len()))
                .or_insert_with(|| Rc::new(encode(params, object))),
        )
    })
}

/// A manifest and its shards' bytes, shared between the inputs that encode the same object.
type Encoded = Rc<(ErasureManifest, Vec<Vec<u8>>)>;

/// Encodings [`encoded`] keeps (each at most a few tens of kilobytes).
const ENCODINGS_REMEMBERED: usize = 256;

/// The manifest and every shard's bytes.
fn encode(params: ErasureParams, object: &[u8]) -> (ErasureManifest, Vec<Vec<u8>>) {
    let mut encoder = ErasureEncoder::new(params).expect("valid parameters");
    let mut shards = vec![Vec::new(); params.total_shards()];
    let mut collect = |c: mehr_storage::ShardChunk<'_>| {
        shards[usize::from(c.shard)].extend_from_slice(c.chunk.bytes);
        Ok::<(), ErasureError>(())
    };
    encoder.update(object, &mut collect).expect("encoding");
    let manifest = encoder.finish(&mut collect).expect("encoding");
    (manifest, shards)
}

/// The remote-storage control messages (`mehr_storage::remote`): the signed envelope, the
/// requests a provider receives and the replies a consumer reads. Input: the message type
/// byte, then the control message body. Checks: an envelope is exactly what sealing its
/// fields gives; it verifies only when the key that sealed it is the fixed consumer's (and
/// then re-sealing with that key gives the same bytes); a request or reply re-encodes to its
/// payload; every count and length is within its limit.
pub fn storage_remote(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    // The same bytes as a bare payload, whatever the envelope says.
    check_remote_payload(kind, body);
    let Ok(envelope) = remote::open(body) else {
        return;
    };
    let keys = remote_keys();
    let signature: [u8; 64] = body[body.len() - 64..]
        .try_into()
        .expect("an opened envelope ends in a signature");
    let provider = keys.provider.hash();
    let resealed = remote::seal(
        kind,
        &provider,
        &envelope.sender,
        envelope.request_id,
        envelope.payload,
        |_| signature,
    );
    assert_eq!(resealed, body, "an envelope is the seal of its fields");
    if envelope
        .verify(kind, &provider, keys.consumer.public())
        .is_ok()
    {
        let ours = remote::seal(
            kind,
            &provider,
            &envelope.sender,
            envelope.request_id,
            envelope.payload,
            |digest| keys.consumer.sign(digest),
        );
        assert_eq!(ours, body, "only the consumer's own seal verifies");
    }
    assert!(
        envelope
            .verify(kind, &keys.consumer.hash(), keys.consumer.public())
            .is_err(),
        "a message sealed for the provider does not verify for another recipient"
    );
    check_remote_payload(kind, envelope.payload);
}

fn check_remote_payload(kind: u8, payload: &[u8]) {
    if let Ok(request) = remote::Request::decode(kind, payload) {
        assert_eq!(request.kind(), kind);
        assert_eq!(
            request.encode(),
            payload,
            "a request re-encodes to its payload"
        );
        match &request {
            remote::Request::Chunks { count, bytes, .. } => {
                assert!(*count <= remote::MAX_CHUNKS_PER_MESSAGE);
                assert!(bytes.len() <= usize::from(*count) * mehr_storage::CHUNK_SIZE);
            }
            remote::Request::Fetch { count, .. } => {
                assert!(*count <= remote::MAX_CHUNKS_PER_MESSAGE);
            }
            remote::Request::FetchHashes { count, .. } => {
                assert!(*count <= remote::MAX_HASHES_PER_MESSAGE);
            }
            remote::Request::Offer { .. }
            | remote::Request::Challenge(_)
            | remote::Request::Delete { .. } => {}
        }
    }
    if let Ok(reply) = remote::Reply::decode(payload) {
        assert_eq!(reply.encode(), payload, "a reply re-encodes to its payload");
        if let remote::Reply::Error(_, reason) = &reply {
            assert!(reason.len() <= remote::MAX_REASON);
        }
    }
}

pub(crate) struct RemoteKeys {
    pub(crate) consumer: PrivateIdentity,
    pub(crate) provider: PrivateIdentity,
}

/// The consumer that seals the seed messages and the provider they are sealed for.
pub(crate) fn remote_keys() -> &'static RemoteKeys {
    static KEYS: OnceLock<RemoteKeys> = OnceLock::new();
    KEYS.get_or_init(|| RemoteKeys {
        consumer: PrivateIdentity::from_private_key(&[0x71; 64]),
        provider: PrivateIdentity::from_private_key(&[0x72; 64]),
    })
}
