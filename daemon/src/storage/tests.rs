use std::{ops::ControlFlow, sync::Arc};

use mehr_storage::{CHUNK_SIZE, Challenge, ObjectId, verify_chunk, verify_proof};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng, rngs::StdRng};

use super::*;
use crate::events::{EventBus, EventKind};

const GIB: u64 = 1 << 30;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
    objects: ObjectStore,
    events: Arc<EventBus>,
}

fn fixture(limits: StorageLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = Store::open(&path).unwrap();
    let events = Arc::new(EventBus::default());
    let (objects, recovery) = ObjectStore::open(store.clone(), limits, events.clone()).unwrap();
    assert_eq!(recovery, Recovery::default());
    Fixture {
        _dir: dir,
        path,
        store,
        objects,
        events,
    }
}

fn roomy() -> Fixture {
    fixture(StorageLimits {
        available_bytes: GIB,
        max_object_size: GIB,
    })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn put(objects: &ObjectStore, data: &[u8], name: &str, now: u64) -> StoredObject {
    let mut upload = objects
        .begin_upload(UploadOptions {
            name: name.into(),
            expected_size: None,
        })
        .unwrap();
    // Uneven pieces: chunk boundaries must not depend on how bytes arrive.
    for piece in data.chunks(1000) {
        upload.write(piece).unwrap();
    }
    upload.finish(now).unwrap()
}

fn read(
    objects: &ObjectStore,
    id: &ObjectId,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>, StorageError> {
    let read = objects.open_read(id, offset, length)?;
    let mut out = Vec::new();
    read.for_each(|part| {
        out.extend_from_slice(part);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

fn chunk_records(store: &Store) -> (usize, usize) {
    (
        store.scan_from(records::CHUNKS, &[]).count(),
        store.scan_from(records::CHUNK_HASHES, &[]).count(),
    )
}

#[test]
fn objects_round_trip_with_the_independently_computed_id() {
    let f = roomy();
    for len in [0, 1, 63, 64, 4095, 4096, 4097, 3 * CHUNK_SIZE + 5] {
        let data = pattern(len, len as u64);
        let stored = put(&f.objects, &data, "x", 7);
        assert!(!stored.already_stored);
        assert_eq!(stored.info.id, ObjectId::for_bytes(&data), "len {len}");
        assert_eq!(stored.info.length, len as u64);
        assert_eq!(
            stored.info.chunk_count,
            mehr_storage::chunk_count(len as u64)
        );
        assert_eq!(stored.info.created_unix_ms, 7);
        assert_eq!(read(&f.objects, &stored.info.id, 0, None).unwrap(), data);
        assert_eq!(f.objects.stat(&stored.info.id).unwrap(), stored.info);
    }
}

#[test]
fn range_reads_at_chunk_boundaries() {
    let f = roomy();
    let data = pattern(3 * CHUNK_SIZE + 100, 1);
    let id = put(&f.objects, &data, "", 1).info.id;
    let c = CHUNK_SIZE as u64;
    for (offset, len) in [
        (0, 1),
        (c - 1, 2),
        (c, c),
        (c - 1, c + 2),
        (2 * c, c + 100),
        (3 * c + 99, 1),
        (5, 0),
        (3 * c + 100, 0),
    ] {
        let got = read(&f.objects, &id, offset, Some(len)).unwrap();
        assert_eq!(
            got,
            &data[offset as usize..(offset + len) as usize],
            "{offset}+{len}"
        );
    }
    assert_eq!(
        read(&f.objects, &id, c + 1, None).unwrap(),
        &data[c as usize + 1..]
    );
    for (offset, len) in [(0, 3 * c + 101), (3 * c + 101, 0)] {
        assert!(matches!(
            read(&f.objects, &id, offset, Some(len)),
            Err(StorageError::RangeOutOfBounds { .. })
        ));
    }
    assert!(matches!(
        read(&f.objects, &id, 3 * c + 101, None),
        Err(StorageError::RangeOutOfBounds { .. })
    ));
}

#[test]
fn long_range_reads_match_with_read_ahead() {
    let f = roomy();
    let data = pattern(300 * CHUNK_SIZE + 17, 14);
    let id = put(&f.objects, &data, "", 1).info.id;
    let c = CHUNK_SIZE as u64;
    for (offset, len) in [
        (0, 300 * c + 17),
        (100, 200 * c),
        (64 * c + 5, 70 * c),
        (c - 1, 66 * c + 2),
        (299 * c, c + 17),
    ] {
        let got = read(&f.objects, &id, offset, Some(len)).unwrap();
        assert!(
            got == data[offset as usize..(offset + len) as usize],
            "{offset}+{len}"
        );
    }
    // A reader that stops early stops the read-ahead too.
    let mut taken = 0;
    f.objects
        .open_read(&id, 0, None)
        .unwrap()
        .for_each(|part| {
            taken += part.len();
            if taken >= 10 * CHUNK_SIZE {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(taken, 10 * CHUNK_SIZE);
}

#[test]
fn identical_content_is_stored_once_and_keeps_its_first_name() {
    let f = roomy();
    let mut events = f.events.subscribe();
    let data = pattern(10_000, 2);
    let first = put(&f.objects, &data, "first", 1);
    let records_after_first = chunk_records(&f.store);
    let second = put(&f.objects, &data, "second", 2);
    assert!(second.already_stored);
    assert_eq!(second.info, first.info);
    assert_eq!(chunk_records(&f.store), records_after_first);
    assert_eq!(records_after_first, (3, 3));
    assert_eq!(f.objects.usage().used_bytes, 10_000);
    assert_eq!(f.objects.usage().objects, 1);
    // Only the first put is news.
    assert!(matches!(
        events.try_recv().unwrap().kind,
        EventKind::ObjectStored { length: 10_000, .. }
    ));
    assert!(events.try_recv().is_err());
}

#[test]
fn dropped_or_failed_uploads_leave_nothing() {
    let f = roomy();
    let mut upload = f.objects.begin_upload(UploadOptions::default()).unwrap();
    upload.write(&pattern(5 << 20, 3)).unwrap();
    // Full batches go to disk as data arrives (on the upload's writer thread), not at finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while chunk_records(&f.store).0 == 0 {
        assert!(std::time::Instant::now() < deadline, "no batch was written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(f.objects.usage().reserved_bytes, 5 << 20);
    drop(upload);
    assert_eq!(chunk_records(&f.store), (0, 0));
    assert_eq!(f.objects.usage().reserved_bytes, 0);

    let mut upload = f
        .objects
        .begin_upload(UploadOptions {
            name: String::new(),
            expected_size: Some(10),
        })
        .unwrap();
    upload.write(&[1; 9]).unwrap();
    let err = upload.finish(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected_size is 10 bytes, but the upload ended after 9"
    );
    let mut upload = f
        .objects
        .begin_upload(UploadOptions {
            name: String::new(),
            expected_size: Some(10),
        })
        .unwrap();
    let err = upload.write(&[1; 11]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected_size is 10 bytes, but the upload sent 11 or more"
    );
    drop(upload);
    assert_eq!(chunk_records(&f.store), (0, 0));
    assert_eq!(f.objects.usage().reserved_bytes, 0);
    assert!(
        f.objects
            .list(ListOrder::Id, "", 10)
            .unwrap()
            .objects
            .is_empty()
    );
}

#[test]
fn limits_refuse_oversized_objects_and_full_stores() {
    let f = fixture(StorageLimits {
        available_bytes: 10_000,
        max_object_size: 6_000,
    });
    let err = f
        .objects
        .begin_upload(UploadOptions {
            name: String::new(),
            expected_size: Some(6_001),
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("storage.max_object_size (6000 bytes)"),
        "{err}"
    );

    let mut upload = f.objects.begin_upload(UploadOptions::default()).unwrap();
    upload.write(&pattern(6_000, 4)).unwrap();
    let err = upload.write(&[0]).unwrap_err();
    assert!(matches!(
        err,
        StorageError::ObjectTooLarge {
            size: 6_001,
            limit: 6_000
        }
    ));
    drop(upload);

    put(&f.objects, &pattern(6_000, 5), "", 1);
    let mut upload = f.objects.begin_upload(UploadOptions::default()).unwrap();
    upload.write(&pattern(4_000, 6)).unwrap();
    let err = upload.write(&[0]).unwrap_err();
    assert!(
        err.to_string()
            .contains("storage.available_bytes (10000 bytes: 6000 stored, 4000 held"),
        "{err}"
    );
    drop(upload);
    assert_eq!(f.objects.usage().reserved_bytes, 0);
    assert_eq!(chunk_records(&f.store), (2, 2));
    let err = f
        .objects
        .begin_upload(UploadOptions {
            name: "n".repeat(257),
            expected_size: None,
        })
        .unwrap_err();
    assert!(matches!(err, StorageError::NameTooLong { len: 257 }));
}

#[test]
fn reopening_removes_orphaned_uploads_and_keeps_objects() {
    let f = roomy();
    let kept = put(&f.objects, &pattern(9_000, 7), "kept", 1).info;
    // What an upload had written when the process died: chunks no object record names.
    let orphan = records::UploadId(500);
    let mut batch = f.store.batch();
    for (index, chunk) in pattern(3 << 20, 8).chunks(CHUNK_SIZE).enumerate() {
        let key = records::ChunkKey {
            upload: orphan,
            index: index as u64,
        };
        batch.put(records::CHUNKS, &key, &chunk.to_vec());
        batch.put(records::CHUNK_HASHES, &key, &[0; 32]);
    }
    f.store.commit(batch).unwrap();
    let Fixture {
        _dir,
        path,
        store,
        objects,
        ..
    } = f;
    drop(objects);
    drop(store);

    let store = Store::open(&path).unwrap();
    let limits = StorageLimits {
        available_bytes: GIB,
        max_object_size: GIB,
    };
    let (objects, recovery) =
        ObjectStore::open(store.clone(), limits, Arc::new(EventBus::default())).unwrap();
    assert_eq!(
        recovery,
        Recovery {
            objects: 1,
            used_bytes: 9_000,
            orphaned_uploads: 1,
            orphaned_chunks: 768,
        }
    );
    assert_eq!(chunk_records(&store), (3, 3));
    assert_eq!(
        read(&objects, &kept.id, 0, None).unwrap(),
        pattern(9_000, 7)
    );
    // New uploads get ids above every id in the store.
    let next = put(&objects, &pattern(5, 9), "", 2).info;
    let record = store
        .get(records::OBJECTS, &records::ObjectKey(next.id))
        .unwrap()
        .unwrap();
    assert_eq!(record.upload, records::UploadId(501));
    assert_eq!(read(&objects, &next.id, 0, None).unwrap(), pattern(5, 9));
}

#[test]
fn damaged_chunks_and_hashes_are_reported_never_served() {
    // Short reads verify on one thread, long ones with a reader thread beside the verifier.
    check_damage(5, 3, 4, 2, 1);
    check_damage(200, 150, 160, 120, 100);
}

fn check_damage(chunks: usize, damaged: u64, bad_hash: u64, missing: u64, missing_hash: u64) {
    let f = roomy();
    let data = pattern(chunks * CHUNK_SIZE, 10);
    let id = put(&f.objects, &data, "", 1).info.id;
    let upload = f
        .store
        .get(records::OBJECTS, &records::ObjectKey(id))
        .unwrap()
        .unwrap()
        .upload;
    let key = |index| records::ChunkKey { upload, index };

    // A flipped byte: bytes before the chunk are served, then the read fails.
    let mut chunk = f
        .store
        .get(records::CHUNKS, &key(damaged))
        .unwrap()
        .unwrap();
    chunk[100] ^= 1;
    f.store.put(records::CHUNKS, &key(damaged), &chunk).unwrap();
    let read_all = f.objects.open_read(&id, 0, None).unwrap();
    let mut served = Vec::new();
    let err = read_all
        .for_each(|part| {
            served.extend_from_slice(part);
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(served, &data[..damaged as usize * CHUNK_SIZE]);
    assert!(
        err.to_string()
            .contains(&format!("chunk {damaged} does not match its hash")),
        "{err}"
    );
    // As the first chunk of a range it fails before any byte.
    let err = f
        .objects
        .open_read(&id, damaged * CHUNK_SIZE as u64, Some(1))
        .unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    chunk[100] ^= 1;
    f.store.put(records::CHUNKS, &key(damaged), &chunk).unwrap();
    assert_eq!(read(&f.objects, &id, 0, None).unwrap(), data);

    // A damaged hash fails the whole read up front.
    let mut hash = f
        .store
        .get(records::CHUNK_HASHES, &key(bad_hash))
        .unwrap()
        .unwrap();
    hash[0] ^= 1;
    f.store
        .put(records::CHUNK_HASHES, &key(bad_hash), &hash)
        .unwrap();
    assert!(matches!(
        f.objects.open_read(&id, 0, None),
        Err(StorageError::Corrupt { .. })
    ));
    hash[0] ^= 1;
    f.store
        .put(records::CHUNK_HASHES, &key(bad_hash), &hash)
        .unwrap();

    // So does a missing one, and a chunk that is gone ends the read.
    let mut batch = f.store.batch();
    batch.delete(records::CHUNKS, &key(missing));
    f.store.commit(batch).unwrap();
    let err = read(&f.objects, &id, 0, None).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("chunk {missing} is missing")),
        "{err}"
    );
    let mut batch = f.store.batch();
    batch.delete(records::CHUNK_HASHES, &key(missing_hash));
    f.store.commit(batch).unwrap();
    let err = f.objects.open_read(&id, 0, None).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("jump from {missing_hash} to {}", missing_hash + 1)),
        "{err}"
    );
}

#[test]
fn list_pages_in_both_orders_and_delete_removes_everything() {
    let f = roomy();
    let mut events = f.events.subscribe();
    let mut ids = Vec::new();
    for i in 0..7u64 {
        // Creation times out of id order, two in the same millisecond.
        let info = put(
            &f.objects,
            &pattern(100 + i as usize, i),
            &format!("o{i}"),
            10 - i / 2,
        )
        .info;
        ids.push(info);
    }
    for order in [ListOrder::Created, ListOrder::Id] {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = f.objects.list(order, &token, 3).unwrap();
            assert!(page.objects.len() <= 3);
            seen.extend(page.objects);
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        let mut expected = ids.clone();
        match order {
            ListOrder::Created => expected.sort_by_key(|o| (o.created_unix_ms, o.id)),
            ListOrder::Id => expected.sort_by_key(|o| o.id),
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    let token = f
        .objects
        .list(ListOrder::Id, "", 2)
        .unwrap()
        .next_page_token
        .unwrap();
    assert!(matches!(
        f.objects.list(ListOrder::Created, &token, 2),
        Err(StorageError::InvalidPageToken { .. })
    ));

    for _ in 0..7 {
        events.try_recv().unwrap();
    }
    let gone = f.objects.delete(&ids[3].id).unwrap();
    assert_eq!(gone, ids[3]);
    assert!(matches!(
        f.objects.stat(&ids[3].id),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        f.objects.delete(&ids[3].id),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        events.try_recv().unwrap().kind,
        EventKind::ObjectDeleted { length: 103, .. }
    ));
    assert_eq!(
        f.objects
            .list(ListOrder::Created, "", 100)
            .unwrap()
            .objects
            .len(),
        6
    );
    assert_eq!(chunk_records(&f.store), (6, 6));
    assert_eq!(f.objects.usage().objects, 6);
    // Stored again after deletion, the object is new.
    let again = put(&f.objects, &pattern(103, 3), "again", 50);
    assert!(!again.already_stored);
    assert_eq!(again.info.name, "again");
}

#[test]
fn chunk_sets_store_out_of_order_and_must_match_their_id() {
    let f = roomy();
    let data = pattern(3 * CHUNK_SIZE + 10, 11);
    let id = ObjectId::for_bytes(&data);
    let chunks: Vec<&[u8]> = data.chunks(CHUNK_SIZE).collect();

    let mut set = f
        .objects
        .begin_chunk_set(id, data.len() as u64, "shard")
        .unwrap();
    // Nothing is reserved before bytes arrive; each new chunk reserves its own length.
    assert_eq!(f.objects.usage().reserved_bytes, 0);
    set.put_chunk(2, chunks[2]).unwrap();
    set.put_chunk(0, chunks[0]).unwrap();
    set.put_chunk(2, chunks[2]).unwrap();
    assert_eq!(
        f.objects.usage().reserved_bytes,
        (chunks[0].len() + chunks[2].len()) as u64
    );
    assert_eq!(set.missing(), 2);
    assert_eq!(set.missing_indices().collect::<Vec<_>>(), vec![1, 3]);
    assert!(matches!(
        set.put_chunk(4, &[1]),
        Err(StorageError::ChunkIndexOutOfRange {
            index: 4,
            chunk_count: 4,
            ..
        })
    ));
    assert!(matches!(
        set.put_chunk(3, &[1; 11]),
        Err(StorageError::ChunkLength {
            index: 3,
            expected: 10,
            got: 11
        })
    ));
    let err = set.finish(1).unwrap_err();
    assert!(err.to_string().contains("2 of the 4 chunks"), "{err}");
    assert_eq!(
        chunk_records(&f.store),
        (0, 0),
        "the failed set was removed"
    );

    let mut set = f
        .objects
        .begin_chunk_set(id, data.len() as u64, "shard")
        .unwrap();
    for index in [3, 1, 0, 2] {
        set.put_chunk(index, chunks[index as usize]).unwrap();
    }
    let stored = set.finish(5).unwrap();
    assert_eq!(stored.info.id, id);
    assert_eq!(stored.info.name, "shard");
    assert_eq!(read(&f.objects, &id, 0, None).unwrap(), data);

    // Right lengths, wrong bytes.
    let other = ObjectId::for_bytes(&pattern(data.len(), 12));
    let mut set = f
        .objects
        .begin_chunk_set(other, data.len() as u64, "")
        .unwrap();
    for (index, chunk) in chunks.iter().enumerate() {
        set.put_chunk(index as u64, chunk).unwrap();
    }
    assert!(matches!(
        set.finish(6),
        Err(StorageError::ContentMismatch { .. })
    ));
    let empty = f
        .objects
        .begin_chunk_set(ObjectId::for_bytes(&[]), 0, "")
        .unwrap();
    assert!(empty.finish(7).unwrap().info.length == 0);
    assert_eq!(f.objects.usage().reserved_bytes, 0);
}

#[test]
fn stored_objects_answer_challenges_and_give_chunks_with_paths() {
    let f = roomy();
    let data = pattern(300 * CHUNK_SIZE + 17, 13);
    let id = put(&f.objects, &data, "", 1).info.id;
    let length = data.len() as u64;
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..20 {
        let challenge = Challenge::random(id, &mut rng);
        let proof = f.objects.prove(&challenge).unwrap();
        verify_proof(&id, length, &challenge, &proof).unwrap();
    }
    let chunk = f.objects.read_chunk(&id, 300).unwrap();
    assert_eq!(chunk.bytes, &data[300 * CHUNK_SIZE..]);
    verify_chunk(&id, length, 300, &chunk.bytes, &chunk.path).unwrap();
    assert!(matches!(
        f.objects.read_chunk(&id, 301),
        Err(StorageError::ChunkIndexOutOfRange { .. })
    ));
    let empty = put(&f.objects, &[], "", 2).info.id;
    assert!(matches!(
        f.objects.prove(&Challenge::random(empty, &mut rng)),
        Err(StorageError::EmptyObject { .. })
    ));
    let unknown = ObjectId::from_bytes([1; 32]);
    assert!(matches!(
        f.objects.prove(&Challenge::random(unknown, &mut rng)),
        Err(StorageError::NotFound { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_range_reads_back_exactly(len in 0usize..20_000, a in 0usize..20_001, b in 0usize..20_001) {
        let f = roomy();
        let data = pattern(len, len as u64);
        let id = put(&f.objects, &data, "", 1).info.id;
        let (start, end) = (a.min(b), a.max(b));
        let result = read(&f.objects, &id, start as u64, Some((end - start) as u64));
        if end <= len {
            prop_assert_eq!(result.unwrap(), &data[start..end]);
        } else {
            let out_of_bounds = matches!(result, Err(StorageError::RangeOutOfBounds { .. }));
            prop_assert!(out_of_bounds);
        }
    }
}

#[test]
fn chunk_hashes_are_served_in_ranges_and_verify_against_the_id() {
    let f = roomy();
    let data = pattern(10 * CHUNK_SIZE + 7, 41);
    let id = put(&f.objects, &data, "", 1).info.id;
    let all = f.objects.chunk_hashes(&id, 0, 100).unwrap();
    assert_eq!(all.len(), 11);
    mehr_storage::VerifiedChunkHashes::new(&id, data.len() as u64, all.clone()).unwrap();
    assert_eq!(f.objects.chunk_hashes(&id, 3, 4).unwrap(), all[3..7]);
    assert_eq!(f.objects.chunk_hashes(&id, 9, 10).unwrap(), all[9..]);
    assert!(f.objects.chunk_hashes(&id, 11, 0).unwrap().is_empty());
    assert!(matches!(
        f.objects.chunk_hashes(&id, 12, 1),
        Err(StorageError::ChunkIndexOutOfRange { .. })
    ));
    let unknown = ObjectId::for_bytes(b"absent");
    assert!(matches!(
        f.objects.chunk_hashes(&unknown, 0, 1),
        Err(StorageError::NotFound { .. })
    ));
}
