use super::*;
use proptest::prelude::*;

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed).rotate_left(7) as u8)
        .collect()
}

/// Encodes `bytes` in uneven pieces; returns the manifest and each shard's bytes, checking that
/// the emitted chunks of every shard arrive in order.
fn encode(bytes: &[u8], params: ErasureParams) -> (ErasureManifest, Vec<Vec<u8>>) {
    let mut shards = vec![Vec::new(); params.total_shards()];
    let mut next_index = vec![0u64; params.total_shards()];
    let mut keep = |c: ShardChunk<'_>| {
        let s = usize::from(c.shard);
        assert_eq!(c.chunk.index, next_index[s]);
        next_index[s] += 1;
        shards[s].extend_from_slice(c.chunk.bytes);
        Ok::<(), ErasureError>(())
    };
    let mut encoder = ErasureEncoder::new(params).expect("valid params");
    let mut rest = bytes;
    let mut step = 1;
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(step.min(rest.len()));
        encoder.update(head, &mut keep).expect("encodes");
        rest = tail;
        step = step * 3 + 1;
    }
    let manifest = encoder.finish(&mut keep).expect("encodes");
    (manifest, shards)
}

fn decode_with(
    manifest: &ErasureManifest,
    shards: &[Vec<u8>],
    use_shards: &[u8],
) -> Result<Vec<u8>, ErasureError> {
    let mut decoder = ErasureDecoder::new(manifest.clone())?;
    let mut out = Vec::new();
    while let Some(stripe) = decoder.next_stripe() {
        let start = stripe.shard_offset as usize;
        let pieces: Vec<(u8, &[u8])> = use_shards
            .iter()
            .map(|&i| (i, &shards[usize::from(i)][start..start + stripe.piece_len]))
            .collect();
        out.extend_from_slice(decoder.decode_stripe(&pieces)?);
    }
    decoder.finish()?;
    Ok(out)
}

fn subsets(n: u8, k: usize) -> Vec<Vec<u8>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn every_k_subset_reconstructs() {
    let codes = [(4u8, 2u8, 256u32), (2, 1, 64), (3, 3, 4096), (1, 2, 128)];
    for (k, m, piece) in codes {
        let params = ErasureParams::new(k, m, piece).expect("valid");
        let stripe = usize::from(k) * piece as usize;
        for len in [0, 1, 100, stripe - 1, stripe, stripe + 1, 3 * stripe + 77] {
            let original = data(len, len as u32 + u32::from(k));
            let (manifest, shards) = encode(&original, params);
            assert_eq!(manifest.object(), ObjectId::for_bytes(&original));
            assert_eq!(manifest.length(), len as u64);
            for (i, shard) in shards.iter().enumerate() {
                assert_eq!(shard.len() as u64, params.shard_len(len as u64));
                assert_eq!(manifest.shards()[i].root, ObjectId::for_bytes(shard));
                assert_eq!(manifest.shards()[i].length, shard.len() as u64);
            }
            for subset in subsets(k + m, k.into()) {
                let decoded = decode_with(&manifest, &shards, &subset)
                    .unwrap_or_else(|e| panic!("k={k} m={m} len={len} {subset:?}: {e}"));
                assert_eq!(decoded, original, "k={k} m={m} len={len} {subset:?}");
            }
        }
    }
}

#[test]
fn data_shards_hold_the_object_in_order() {
    let params = ErasureParams::new(2, 1, 64).expect("valid");
    let original = data(300, 1);
    let (_, shards) = encode(&original, params);
    // Stripe 0: bytes 0..64 | 64..128; stripe 1: 128..192 | 192..256; stripe 2 (44 bytes):
    // pieces of 64, the first holding all 44 bytes, the rest zero padding.
    assert_eq!(&shards[0][..64], &original[..64]);
    assert_eq!(&shards[1][..64], &original[64..128]);
    assert_eq!(&shards[0][64..128], &original[128..192]);
    assert_eq!(&shards[1][64..128], &original[192..256]);
    assert_eq!(&shards[0][128..172], &original[256..300]);
    assert_eq!(&shards[0][172..], &[0u8; 20][..]);
    assert_eq!(&shards[1][128..], &[0u8; 64][..]);
    assert_eq!(shards[0].len(), 192);
}

#[test]
fn small_objects_pay_little_padding() {
    let params = ErasureParams::default();
    assert_eq!(params.shard_len(0), 0);
    assert_eq!(params.shard_len(1), 64);
    assert_eq!(params.shard_len(1000), 256);
    assert_eq!(params.shard_len(4 * 65536), 65536);
    assert_eq!(params.shard_len(4 * 65536 + 1), 65536 + 64);
    assert_eq!(params.stripe_count(4 * 65536 + 1), 2);
    assert_eq!(params.stripe(4 * 65536 + 1, 2), None);
    let last = params.stripe(4 * 65536 + 1, 1).expect("exists");
    assert_eq!(
        (
            last.shard_offset,
            last.piece_len,
            last.object_offset,
            last.data_len
        ),
        (65536, 64, 4 * 65536, 1)
    );
}

#[test]
fn empty_object_codes_to_empty_shards() {
    let (manifest, shards) = encode(&[], ErasureParams::default());
    assert!(shards.iter().all(Vec::is_empty));
    assert_eq!(manifest.stripe_count(), 0);
    assert_eq!(decode_with(&manifest, &shards, &[]), Ok(Vec::new()));
}

#[test]
fn decoding_errors_are_specific() {
    let params = ErasureParams::new(4, 2, 128).expect("valid");
    let original = data(2000, 9);
    let (manifest, shards) = encode(&original, params);
    let piece = |i: usize| &shards[i][..128];
    let mut decoder = ErasureDecoder::new(manifest.clone()).expect("valid");
    assert_eq!(
        decoder.decode_stripe(&[(0, piece(0)), (1, piece(1)), (5, piece(5))]),
        Err(ErasureError::NotEnoughShards { needed: 4, got: 3 })
    );
    assert_eq!(
        decoder.decode_stripe(&[(0, piece(0)), (0, piece(0))]),
        Err(ErasureError::DuplicateShard { index: 0 })
    );
    assert_eq!(
        decoder.decode_stripe(&[(6, piece(0))]),
        Err(ErasureError::UnknownShard { index: 6, total: 6 })
    );
    assert_eq!(
        decoder.decode_stripe(&[(2, &piece(2)[..127])]),
        Err(ErasureError::PieceLength {
            shard: 2,
            expected: 128,
            got: 127
        })
    );
    decoder
        .decode_stripe(&[(0, piece(0)), (2, piece(2)), (4, piece(4)), (5, piece(5))])
        .expect("a valid stripe after errors");
    assert!(matches!(
        decoder.finish(),
        Err(ErasureError::StripesRemaining { .. })
    ));
    assert!(matches!(
        decode_with(&manifest, &shards, &[0, 1, 2, 3]).map(|_| ()),
        Ok(())
    ));
    let mut decoder = ErasureDecoder::new(manifest.clone()).expect("valid");
    while decoder.next_stripe().is_some() {
        let s = decoder.next_stripe().expect("exists");
        let o = s.shard_offset as usize;
        let pieces: Vec<(u8, &[u8])> = (0..4)
            .map(|i| (i, &shards[usize::from(i)][o..o + s.piece_len]))
            .collect();
        decoder.decode_stripe(&pieces).expect("decodes");
    }
    assert!(matches!(
        decoder.decode_stripe(&[]),
        Err(ErasureError::NoStripeLeft { .. })
    ));
}

#[test]
fn a_corrupt_shard_is_detected_by_its_root_and_by_the_object_id() {
    let params = ErasureParams::new(4, 2, 256).expect("valid");
    let original = data(5000, 4);
    let (manifest, mut shards) = encode(&original, params);
    shards[4][10] ^= 0x40;
    assert_ne!(ObjectId::for_bytes(&shards[4]), manifest.shards()[4].root);
    assert!(matches!(
        decode_with(&manifest, &shards, &[0, 1, 2, 4]),
        Err(ErasureError::ObjectMismatch { .. })
    ));
    // Leaving the corrupt shard out still works.
    assert_eq!(decode_with(&manifest, &shards, &[0, 1, 2, 5]), Ok(original));
}

fn rebuild(
    manifest: &ErasureManifest,
    shards: &[Vec<u8>],
    target: u8,
    from: &[u8],
) -> Result<(ShardInfo, Vec<u8>), ErasureError> {
    let mut rebuilder = ShardRebuilder::new(manifest.clone(), target)?;
    let mut out = Vec::new();
    while let Some(stripe) = rebuilder.next_stripe() {
        let o = stripe.shard_offset as usize;
        let pieces: Vec<(u8, &[u8])> = from
            .iter()
            .map(|&i| (i, &shards[usize::from(i)][o..o + stripe.piece_len]))
            .collect();
        rebuilder.rebuild_stripe(&pieces, |c| {
            out.extend_from_slice(c.bytes);
            Ok::<(), ErasureError>(())
        })?;
    }
    let info = rebuilder.finish(|c| {
        out.extend_from_slice(c.bytes);
        Ok::<(), ErasureError>(())
    })?;
    Ok((info, out))
}

#[test]
fn any_shard_can_be_rebuilt_from_any_k_others() {
    let params = ErasureParams::new(4, 2, 128).expect("valid");
    let original = data(3000, 5);
    let (manifest, shards) = encode(&original, params);
    for target in 0u8..6 {
        for from in subsets(6, 4).into_iter().filter(|s| !s.contains(&target)) {
            let (info, bytes) = rebuild(&manifest, &shards, target, &from).expect("rebuilds");
            assert_eq!(info, manifest.shards()[usize::from(target)]);
            assert_eq!(bytes, shards[usize::from(target)]);
        }
    }
    let mut corrupt = shards.clone();
    corrupt[0][0] ^= 1;
    assert!(matches!(
        rebuild(&manifest, &corrupt, 5, &[0, 1, 2, 3]),
        Err(ErasureError::ShardMismatch { index: 5, .. })
    ));
    assert!(matches!(
        ShardRebuilder::new(manifest, 6),
        Err(ErasureError::UnknownShard { index: 6, total: 6 })
    ));
}

#[test]
fn params_are_validated() {
    assert!(ErasureParams::new(0, 2, 64).is_err());
    assert!(ErasureParams::new(4, 0, 64).is_err());
    assert!(ErasureParams::new(60, 5, 64).is_err());
    assert!(ErasureParams::new(32, 32, 64).is_ok());
    assert_eq!(
        ErasureParams::new(4, 2, 100),
        Err(ErasureError::PieceSize {
            got: 100,
            max: MAX_PIECE_SIZE
        })
    );
    assert!(ErasureParams::new(4, 2, 0).is_err());
    assert!(ErasureParams::new(4, 2, MAX_PIECE_SIZE + 64).is_err());
    assert_eq!(ErasureParams::default().piece_size(), 65536);
    let table = [
        (0, 2, 1),
        (1_000_000, 2, 1),
        (1_000_001, 4, 2),
        (100_000_000, 4, 2),
        (100_000_001, 8, 4),
    ];
    for (len, k, m) in table {
        let p = ErasureParams::for_object_size(len);
        assert_eq!((p.data_shards(), p.parity_shards()), (k, m), "len {len}");
    }
}

#[test]
fn manifest_round_trips_and_its_id_covers_every_field() {
    let (manifest, _) = encode(
        &data(10_000, 2),
        ErasureParams::new(4, 2, 1024).expect("valid"),
    );
    let bytes = manifest.encode();
    assert_eq!(bytes.len(), 48 + 6 * ShardInfo::ENCODED_LEN);
    assert_eq!(ErasureManifest::decode(&bytes), Ok(manifest.clone()));
    let id = manifest.id();
    let (other, _) = encode(
        &data(10_000, 3),
        ErasureParams::new(4, 2, 1024).expect("valid"),
    );
    assert_ne!(other.id(), id);
    for info in manifest.shards() {
        assert_eq!(ShardInfo::decode(&info.encode()), Ok(*info));
    }
}

#[test]
fn malformed_manifests_are_rejected() {
    let (manifest, _) = encode(
        &data(10_000, 2),
        ErasureParams::new(4, 2, 1024).expect("valid"),
    );
    let bytes = manifest.encode();
    for cut in 0..bytes.len() {
        assert!(ErasureManifest::decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        ErasureManifest::decode(&trailing),
        Err(DecodeError::TrailingBytes { .. })
    ));

    let tamper = |offset: usize, value: u8| {
        let mut b = bytes.clone();
        b[offset] = value;
        ErasureManifest::decode(&b)
    };
    assert!(matches!(
        tamper(0, 2),
        Err(DecodeError::OutOfRange {
            field: "manifest version",
            ..
        })
    ));
    assert!(matches!(
        tamper(41, 0),
        Err(DecodeError::OutOfRange {
            field: "data shards",
            ..
        })
    ));
    assert!(matches!(
        tamper(42, 63),
        Err(DecodeError::OutOfRange {
            field: "parity shards",
            ..
        })
    ));
    assert!(matches!(
        tamper(43, 1),
        Err(DecodeError::OutOfRange {
            field: "piece size",
            ..
        })
    ));
    assert!(matches!(
        tamper(47, 5),
        Err(DecodeError::Inconsistent {
            field: "shard count",
            ..
        })
    ));
    let shard1 = 48 + ShardInfo::ENCODED_LEN;
    assert!(matches!(
        tamper(shard1, 2),
        Err(DecodeError::Inconsistent {
            field: "shard index",
            ..
        })
    ));
    assert!(matches!(
        tamper(shard1 + 1, 3),
        Err(DecodeError::Inconsistent { .. })
    ));
    assert!(matches!(
        tamper(shard1 + 36, 0),
        Err(DecodeError::Inconsistent {
            field: "shard length",
            ..
        })
    ));
    // The object length drives the expected shard length.
    assert!(matches!(
        tamper(34, 0xff),
        Err(DecodeError::Inconsistent {
            field: "shard length",
            ..
        })
    ));

    assert!(matches!(
        ShardInfo::decode(&[6, 4, 2]),
        Err(DecodeError::OutOfRange {
            field: "shard index",
            ..
        })
    ));
}

proptest! {
    #[test]
    fn manifest_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = ErasureManifest::decode(&bytes) {
            prop_assert_eq!(m.encode(), bytes.clone());
        }
        let _ = ShardInfo::decode(&bytes);
    }

    #[test]
    fn round_trip_for_random_lengths_and_losses(
        len in 0usize..6000, k in 1u8..6, m in 1u8..4, piece_units in 1u32..20, seed in any::<u32>(), drop_mask in any::<u16>(),
    ) {
        let params = ErasureParams::new(k, m, piece_units * 64).expect("valid");
        let original = data(len, seed);
        let (manifest, shards) = encode(&original, params);
        prop_assert_eq!(ErasureManifest::decode(&manifest.encode()), Ok(manifest.clone()));
        // Keep k shards chosen by the mask, filling up from the lowest indices.
        let total = k + m;
        let mut keep: Vec<u8> = (0..total).filter(|i| drop_mask & (1 << i) == 0).take(k.into()).collect();
        for i in 0..total {
            if keep.len() < usize::from(k) && !keep.contains(&i) {
                keep.push(i);
            }
        }
        prop_assert_eq!(decode_with(&manifest, &shards, &keep), Ok(original));
    }
}
