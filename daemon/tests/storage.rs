//! The local object store end to end, with real daemon processes: round trips through the SDK
//! and the CLI, range reads, limits, cancelled and killed uploads, damaged chunks on disk,
//! events, and a storage proof from a stored object.

mod common;

use std::{
    io,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::TestDaemon;
use futures::{StreamExt, stream};
use mehr_sdk::{
    proto as pb,
    storage::{ByteRange, ListOptions, ListOrder, ObjectId, PutOptions},
};
use mehr_storage::{CHUNK_SIZE, Challenge, verify_proof};
use mehrd::{
    events::EventBus,
    storage::{
        ObjectStore, StorageLimits,
        records::{CHUNK_HASHES, CHUNKS, OBJECTS, ObjectKey},
    },
    store::Store,
};
use nix::sys::signal::Signal;
use rand::{RngCore, SeedableRng, rngs::StdRng};
use tonic::{Code, codegen::Bytes};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// A daemon with `config` (TOML) in a fresh data dir.
fn daemon_with(config: &str) -> (tempfile::TempDir, TestDaemon) {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("mehrd.toml");
    std::fs::write(&path, config).unwrap();
    let daemon = TestDaemon::start_in(
        &temp.path().join("node"),
        &["--config", path.to_str().unwrap()],
    );
    (temp, daemon)
}

/// (chunk records, chunk-hash records) in a stopped daemon's store.
fn chunk_records(data_dir: &Path) -> (usize, usize) {
    let store = Store::open(&data_dir.join("store")).unwrap();
    (
        store.scan_from(CHUNKS, &[]).count(),
        store.scan_from(CHUNK_HASHES, &[]).count(),
    )
}

fn code(error: &mehr_sdk::Error) -> Option<Code> {
    error.code()
}

async fn next_kind(events: &mut mehr_sdk::EventStream<pb::NodeEvent>) -> pb::node_event::Kind {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("an event, not an error")
        .kind
        .expect("a known event")
}

#[test]
fn objects_round_trip_through_the_sdk_with_independent_ids() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        for len in [0usize, 1, 4095, 4096, 4097] {
            let data = pattern(len, len as u64);
            let stored = client
                .put_bytes(data.clone(), PutOptions::named(format!("b{len}")))
                .await
                .unwrap();
            assert_eq!(stored.object.id, ObjectId::for_bytes(&data), "len {len}");
            assert_eq!(stored.object.length, len as u64);
            assert_eq!(stored.object.chunk_count, len.div_ceil(CHUNK_SIZE) as u64);
            assert_eq!(
                stored.object.name.as_deref(),
                Some(format!("b{len}").as_str())
            );
            assert!(!stored.already_stored);
            let back = client
                .get_bytes(&stored.object.id, ByteRange::all())
                .await
                .unwrap();
            assert_eq!(back, data, "len {len}");
            assert_eq!(client.stat(&stored.object.id).await.unwrap(), stored.object);
        }

        // 100 MB from an AsyncRead, with progress, and back through get_to.
        let data = pattern(100_000_000, 42);
        let id = ObjectId::for_bytes(&data);
        let progress = Arc::new(AtomicU64::new(0));
        let seen = progress.clone();
        let options = PutOptions::named("big").with_progress(move |sent| {
            assert!(sent >= seen.load(Ordering::Relaxed), "progress only grows");
            seen.store(sent, Ordering::Relaxed);
        });
        let stored = client
            .put(io::Cursor::new(data.clone()), options)
            .await
            .unwrap();
        assert_eq!(stored.object.id, id);
        assert_eq!(stored.object.chunk_count, 24_415);
        assert_eq!(progress.load(Ordering::Relaxed), 100_000_000);
        let mut back = Vec::new();
        let written = client
            .get_to(&id, ByteRange::all(), &mut back)
            .await
            .unwrap();
        assert_eq!(written, 100_000_000);
        assert!(back == data, "100 MB read back differs");

        // Range reads at chunk boundaries.
        let c = CHUNK_SIZE as u64;
        for (offset, length) in [
            (0, 1),
            (c - 1, 2),
            (c, c),
            (c - 1, c + 2),
            (5 * c + 7, 3 * c),
            (99_999_999, 1),
        ] {
            let part = client
                .get_bytes(&id, ByteRange::new(offset, length))
                .await
                .unwrap();
            assert!(
                part == data[offset as usize..(offset + length) as usize],
                "{offset}+{length}"
            );
        }
        let tail = client
            .get_bytes(&id, ByteRange::from_offset(99_999_000))
            .await
            .unwrap();
        assert_eq!(tail, &data[99_999_000..]);

        // The same bytes again are stored once; the first name stays.
        let again = client
            .put_bytes(data.clone(), PutOptions::named("again"))
            .await
            .unwrap();
        assert!(again.already_stored);
        assert_eq!(again.object, stored.object);

        let listed: Vec<_> = client
            .list_all(ListOrder::Created)
            .map(|info| info.unwrap().name.unwrap())
            .collect()
            .await;
        assert_eq!(listed, ["b0", "b1", "b4095", "b4096", "b4097", "big"]);
        let page = client
            .list(ListOptions {
                page_size: 4,
                order: ListOrder::Id,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 4);
        let rest = client
            .list(ListOptions {
                page_size: 4,
                page_token: page.next_page_token.unwrap(),
                order: ListOrder::Id,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rest.objects.len(), 2);
        assert_eq!(rest.next_page_token, None);
        let mut ids: Vec<_> = page
            .objects
            .iter()
            .chain(&rest.objects)
            .map(|o| o.id)
            .collect();
        let sorted = {
            let mut s = ids.clone();
            s.sort();
            s
        };
        assert_eq!(ids, sorted);
        ids.dedup();
        assert_eq!(ids.len(), 6);

        let removed = client.delete(&id).await.unwrap();
        assert_eq!(removed.length, 100_000_000);
        let err = client.stat(&id).await.unwrap_err();
        assert_eq!(code(&err), Some(Code::NotFound));
    });
}

#[test]
fn cli_puts_gets_lists_stats_and_removes_with_json() {
    let daemon = TestDaemon::start();
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("notes.txt");
    let data = pattern(3 * CHUNK_SIZE + 11, 5);
    std::fs::write(&input, &data).unwrap();

    let json = |args: &[&str]| -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let output = daemon.cli(&full);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let put = json(&["store", "put", input.to_str().unwrap()]);
    let id = ObjectId::for_bytes(&data).to_string();
    assert_eq!(put["id"], id);
    assert_eq!(put["length"], data.len());
    assert_eq!(put["chunk_count"], 4);
    assert_eq!(put["name"], "notes.txt");
    assert_eq!(put["already_stored"], false);

    let stat = json(&["store", "stat", &id]);
    assert_eq!(stat["id"], id);
    assert_eq!(stat["created_at_unix_ms"], put["created_at_unix_ms"]);
    let listed = json(&["store", "ls"]);
    assert_eq!(listed["id"], id);

    let out = temp.path().join("copy.txt");
    let got = json(&["store", "get", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(got["bytes"], data.len());
    assert_eq!(std::fs::read(&out).unwrap(), data);

    let ranged = daemon.cli(&["store", "get", &id, "--offset", "4095", "--length", "2"]);
    assert!(ranged.status.success());
    assert_eq!(ranged.stdout, &data[4095..4097]);

    let human = daemon.cli(&["store", "stat", &id]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains(&format!("id       {id}")), "{text}");
    assert!(text.contains("size     12.0 KiB (12299 bytes)"), "{text}");

    let removed = json(&["store", "rm", &id]);
    assert_eq!(removed["id"], id);
    let gone = daemon.cli(&["store", "stat", &id]);
    assert!(!gone.status.success());
    let stderr = String::from_utf8(gone.stderr).unwrap();
    assert_eq!(
        stderr,
        format!("mehr: NOT_FOUND: object {id} is not stored\n")
    );

    let bad = daemon.cli(&["store", "get", "xyz"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(
        stderr.starts_with("mehr: invalid object id `xyz`: an id is 64 hex characters, got 3"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn bad_requests_get_precise_codes() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        let mut raw = client.storage();
        let short = Bytes::from_static(&[1, 2, 3]);
        let err = raw
            .stat_object(pb::StatObjectRequest { id: short.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), "id: an object id has 32 bytes, got 3");
        let err = raw
            .delete_object(pb::DeleteObjectRequest { id: short.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = raw
            .get_object(pb::GetObjectRequest {
                id: short,
                offset: 0,
                length: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        let unknown = ObjectId::from_bytes([7; 32]);
        for err in [
            client.stat(&unknown).await.unwrap_err(),
            client.delete(&unknown).await.unwrap_err(),
            client.get(&unknown, ByteRange::all()).await.err().unwrap(),
        ] {
            assert_eq!(code(&err), Some(Code::NotFound), "{err}");
        }

        let id = client
            .put_bytes(vec![9; 5000], PutOptions::default())
            .await
            .unwrap()
            .object
            .id;
        let err = client
            .get(&id, ByteRange::new(4000, 1001))
            .await
            .err()
            .unwrap();
        assert_eq!(code(&err), Some(Code::OutOfRange));
        assert!(
            err.to_string()
                .contains("range 4000+1001 is outside object"),
            "{err}"
        );
        let err = client
            .get(&id, ByteRange::from_offset(5001))
            .await
            .err()
            .unwrap();
        assert_eq!(code(&err), Some(Code::OutOfRange));
        assert!(
            client
                .get_bytes(&id, ByteRange::from_offset(5000))
                .await
                .unwrap()
                .is_empty()
        );

        let err = client
            .list(ListOptions {
                page_token: "nonsense".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument));

        // Put streams that break the protocol.
        let data_first = stream::iter([pb::PutObjectRequest {
            part: Some(pb::put_object_request::Part::Data(Bytes::from_static(b"x"))),
        }]);
        let err = client.storage().put_object(data_first).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "the first PutObject message must carry the metadata"
        );
        let metadata = || pb::PutObjectRequest {
            part: Some(pb::put_object_request::Part::Metadata(
                pb::PutMetadata::default(),
            )),
        };
        let err = client
            .storage()
            .put_object(stream::iter([metadata(), metadata()]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "only the first PutObject message may carry metadata"
        );
        let data = || pb::PutObjectRequest {
            part: Some(pb::put_object_request::Part::Data(Bytes::from_static(
                b"abc",
            ))),
        };
        let end = |length| pb::PutObjectRequest {
            part: Some(pb::put_object_request::Part::End(pb::PutEnd { length })),
        };
        let err = client
            .storage()
            .put_object(stream::iter([metadata(), data()]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "the PutObject stream ended without its end message; nothing was stored"
        );
        let err = client
            .storage()
            .put_object(stream::iter([metadata(), data(), end(4)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "end.length is 4, but the stream carried 3 data bytes"
        );
        let raw = client
            .storage()
            .put_object(stream::iter([metadata(), data(), data(), end(6)]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(raw.object.unwrap().length, 6);
        let err = client
            .put_stream(
                stream::iter([Ok(Bytes::from_static(b"four"))]),
                PutOptions::default().with_expected_size(5),
            )
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument));
        assert!(
            err.to_string()
                .contains("expected_size is 5 bytes, but the upload ended after 4"),
            "{err}"
        );
        let err = client
            .put_bytes(vec![0; 10], PutOptions::named("n".repeat(300)))
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument));
        assert_eq!(
            client
                .list(ListOptions::default())
                .await
                .unwrap()
                .objects
                .len(),
            2
        );
    });
}

#[test]
fn limits_refuse_with_resource_exhausted_and_leave_nothing() {
    let (_temp, mut daemon) =
        daemon_with("[storage]\navailable_bytes = 1000000\nmax_object_size = 600000\n");
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        // Announced size: refused before any data.
        let err = client
            .put_bytes(pattern(600_001, 1), PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::ResourceExhausted));
        assert!(
            err.to_string()
                .contains("storage.max_object_size (600000 bytes)"),
            "{err}"
        );
        // Unannounced: refused as the bytes arrive.
        let data = pattern(700_000, 2);
        let pieces: Vec<_> = data
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let err = client
            .put_stream(stream::iter(pieces), PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::ResourceExhausted));
        assert!(err.to_string().contains("storage.max_object_size"), "{err}");

        client
            .put_bytes(pattern(500_000, 3), PutOptions::named("kept"))
            .await
            .unwrap();
        let data = pattern(550_000, 4);
        let pieces: Vec<_> = data
            .chunks(50_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let err = client
            .put_stream(stream::iter(pieces), PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::ResourceExhausted));
        assert!(
            err.to_string()
                .contains("storage.available_bytes (1000000 bytes: 500000 stored"),
            "{err}"
        );
        let listed = client.list(ListOptions::default()).await.unwrap().objects;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name.as_deref(), Some("kept"));
        // The space the failed uploads held is free again.
        client
            .put_bytes(pattern(500_000, 5), PutOptions::default())
            .await
            .unwrap();
    });
    daemon
        .stop_with(Signal::SIGTERM, Duration::from_secs(10))
        .unwrap();
    let chunks = 2 * 500_000usize.div_ceil(CHUNK_SIZE);
    assert_eq!(chunk_records(&daemon.data_dir), (chunks, chunks));
}

#[test]
fn uploads_cancelled_by_the_client_leave_nothing() {
    let mut daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        // The data source fails half-way: the SDK cancels the call.
        let data = pattern(3 << 20, 6);
        let mut pieces: Vec<_> = data
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        pieces.push(Err(io::Error::other("disk unplugged")));
        let err = client
            .put_stream(stream::iter(pieces), PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, mehr_sdk::Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("disk unplugged"), "{err}");

        // The client goes away mid-stream (its future is dropped, then its connection).
        let endless = stream::iter(0u64..).then(|i| async move {
            if i >= 8 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(Bytes::from(pattern(1 << 20, i)))
        });
        let second = daemon.client().await.unwrap();
        let abandoned = tokio::time::timeout(
            Duration::from_secs(2),
            second.put_stream(endless, PutOptions::default()),
        )
        .await;
        assert!(abandoned.is_err(), "the put was still running");
        drop(second);
        assert!(
            client
                .list(ListOptions::default())
                .await
                .unwrap()
                .objects
                .is_empty()
        );
    });
    // A graceful stop lets in-flight calls finish; neither upload left a chunk.
    daemon
        .stop_with(Signal::SIGTERM, Duration::from_secs(10))
        .unwrap();
    assert_eq!(chunk_records(&daemon.data_dir), (0, 0));
}

#[test]
fn kill_during_a_large_put_leaves_no_object_and_restart_removes_the_orphans() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let mut daemon = TestDaemon::start_in(&data_dir, &[]);
    let rt = runtime();
    let sent = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let client = daemon.client().await.unwrap();
        let kept = client
            .put_bytes(pattern(10_000, 1), PutOptions::named("kept"))
            .await
            .unwrap();
        assert!(!kept.already_stored);
        let counter = sent.clone();
        let big = stream::iter(0u64..1024).map(|i| Ok(Bytes::from(pattern(1 << 20, i))));
        let upload = tokio::spawn(async move {
            client
                .put_stream(
                    big,
                    PutOptions::named("big")
                        .with_progress(move |n| counter.store(n, Ordering::Relaxed)),
                )
                .await
        });
        while sent.load(Ordering::Relaxed) < 64 << 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        daemon
            .stop_with(Signal::SIGKILL, Duration::from_secs(10))
            .unwrap();
        assert!(upload.await.unwrap().is_err());
    });
    // Chunks of the interrupted upload are on disk, without an object record.
    let (chunks, hashes) = chunk_records(&data_dir);
    assert!(chunks > 3 && hashes > 3, "{chunks} {hashes}");

    let mut restarted = TestDaemon::start_in(&data_dir, &[]);
    rt.block_on(async {
        let client = restarted.client().await.unwrap();
        let names: Vec<_> = client
            .list_all(ListOrder::Created)
            .map(|o| o.unwrap().name.unwrap())
            .collect()
            .await;
        assert_eq!(names, ["kept"]);
    });
    let log = restarted.stderr();
    let removed: u64 = log
        .split("object store opened; removed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    assert_eq!(
        removed as usize,
        hashes - 3,
        "the log counts the orphaned chunks"
    );
    restarted
        .stop_with(Signal::SIGTERM, Duration::from_secs(10))
        .unwrap();
    assert_eq!(chunk_records(&data_dir), (3, 3));
}

#[test]
fn a_chunk_damaged_on_disk_is_data_loss_not_data() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let mut daemon = TestDaemon::start_in(&data_dir, &[]);
    let rt = runtime();
    let data = pattern(10 * CHUNK_SIZE, 8);
    let id = rt.block_on(async {
        let client = daemon.client().await.unwrap();
        client
            .put_bytes(data.clone(), PutOptions::default())
            .await
            .unwrap()
            .object
            .id
    });
    daemon
        .stop_with(Signal::SIGTERM, Duration::from_secs(10))
        .unwrap();
    {
        let store = Store::open(&data_dir.join("store")).unwrap();
        let upload = store.get(OBJECTS, &ObjectKey(id)).unwrap().unwrap().upload;
        let key = mehrd::storage::records::ChunkKey { upload, index: 6 };
        let mut chunk = store.get(CHUNKS, &key).unwrap().unwrap();
        chunk[1000] ^= 0x40;
        chunk[1001] ^= 0x01;
        store.put(CHUNKS, &key, &chunk).unwrap();
        store.flush().unwrap();
    }
    let daemon = TestDaemon::start_in(&data_dir, &[]);
    rt.block_on(async {
        let client = daemon.client().await.unwrap();
        let mut stream = client.get(&id, ByteRange::all()).await.unwrap();
        let mut served = Vec::new();
        let err = loop {
            match stream.next().await {
                Some(Ok(bytes)) => served.extend_from_slice(&bytes),
                Some(Err(e)) => break e,
                None => panic!("the damaged object was served in full"),
            }
        };
        assert_eq!(code(&err), Some(Code::DataLoss));
        assert!(
            err.to_string().contains("chunk 6 does not match its hash"),
            "{err}"
        );
        assert!(served.len() <= 6 * CHUNK_SIZE && served == data[..served.len()]);
        // A range that starts in the damaged chunk fails before any byte.
        let err = client
            .get(&id, ByteRange::new(6 * CHUNK_SIZE as u64 + 5, 10))
            .await
            .err()
            .unwrap();
        assert_eq!(code(&err), Some(Code::DataLoss));
        // Undamaged ranges still read.
        let head = client.get_bytes(&id, ByteRange::new(0, 100)).await.unwrap();
        assert_eq!(head, &data[..100]);
    });
    let out = temp.path().join("copy.bin");
    let output = daemon.cli(&["store", "get", &id.to_string(), "-o", out.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("mehr: DATA_LOSS: object"), "{stderr}");
    assert!(
        !out.exists()
            && std::fs::read_dir(temp.path())
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().contains("partial") })
    );
}

#[test]
fn a_stored_object_proves_itself_to_a_verifier_that_keeps_only_its_id() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let mut daemon = TestDaemon::start_in(&data_dir, &[]);
    let object = runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        let data = pattern(1 << 20, 9);
        client
            .put_bytes(data, PutOptions::default())
            .await
            .unwrap()
            .object
    });
    daemon
        .stop_with(Signal::SIGTERM, Duration::from_secs(10))
        .unwrap();

    let store = Store::open(&data_dir.join("store")).unwrap();
    let limits = StorageLimits {
        available_bytes: 1 << 30,
        max_object_size: 1 << 30,
    };
    let (objects, _) = ObjectStore::open(store, limits, Arc::new(EventBus::default())).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..16 {
        let challenge = Challenge::random(object.id, &mut rng);
        let proof = objects.prove(&challenge).unwrap();
        assert!(proof.encoded_len() <= 524);
        verify_proof(&object.id, object.length, &challenge, &proof).unwrap();
        let wrong_length = verify_proof(&object.id, object.length + 1, &challenge, &proof);
        assert!(wrong_length.is_err());
    }
}

#[test]
fn store_and_delete_are_node_events_and_storage_is_healthy() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.api))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "mehr.v1.StorageService".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            status.into_inner().status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );

        let mut events = client.watch_events().await.unwrap();
        let stored = client
            .put_bytes(b"event".to_vec(), PutOptions::named("e"))
            .await
            .unwrap();
        client
            .put_bytes(b"event".to_vec(), PutOptions::named("dup"))
            .await
            .unwrap();
        client.delete(&stored.object.id).await.unwrap();
        match next_kind(&mut events).await {
            pb::node_event::Kind::ObjectStored(e) => {
                assert_eq!(e.id.as_ref(), stored.object.id.as_bytes());
                assert_eq!((e.length, e.name.as_str()), (5, "e"));
            }
            other => panic!("{other:?}"),
        }
        // The duplicate put stored nothing and published nothing.
        match next_kind(&mut events).await {
            pb::node_event::Kind::ObjectDeleted(e) => {
                assert_eq!(e.id.as_ref(), stored.object.id.as_bytes());
                assert_eq!(e.length, 5);
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn uploads_outlast_the_call_deadline_but_not_an_idle_gap() {
    let (_temp, daemon) = daemon_with("[api]\nrequest_timeout_secs = 1\n");
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        // 2.4 s of steady data: longer than the 1 s deadline, never idle for 1 s.
        let slow = stream::iter(0u64..8).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Bytes::from(pattern(100_000, i)))
        });
        let stored = client
            .put_stream(slow, PutOptions::default())
            .await
            .unwrap();
        assert_eq!(stored.object.length, 800_000);

        let stalled = stream::iter(0u64..2).then(|i| async move {
            if i == 1 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(Bytes::from(pattern(1000, i)))
        });
        let err = client
            .put_stream(stalled, PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::DeadlineExceeded), "{err}");
        assert!(err.to_string().contains("sent nothing for 1 s"), "{err}");
        assert_eq!(
            client
                .list(ListOptions::default())
                .await
                .unwrap()
                .objects
                .len(),
            1
        );
    });
}
