//! Remote storage with real daemons over loopback TCP: a consumer places erasure-coded objects
//! on providers, drops its local copy and reads them back; challenges, a provider that loses
//! its shard and is repaired around, providers killed, and the error cases.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, free_port};
use futures::StreamExt;
use mehr_sdk::{
    Client, proto as pb,
    storage::{
        ByteRange, ListOptions, ListOrder, ListScope, NodeId, ObjectId, PutOptions,
        ReplicateOptions, ShardHealth,
    },
};
use nix::sys::signal::Signal;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Short timers: challenges every second.
const STORAGE: &str = "[storage]\nchallenge_interval_secs = 1\nremote_timeout_secs = 30\n";

fn consumer_config(port: u16, challenges: bool) -> String {
    let storage = if challenges {
        STORAGE.to_string()
    } else {
        "[storage]\nchallenge_interval_secs = 0\nremote_timeout_secs = 30\n".to_string()
    };
    format!(
        "{storage}[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"
    )
}

fn provider_config(port: u16) -> String {
    format!(
        "{STORAGE}[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {port}\n"
    )
}

/// A consumer with `providers` providers connected to it.
struct Mesh {
    consumer: TestDaemon,
    providers: Vec<TestDaemon>,
}

impl Mesh {
    fn start(providers: usize, challenges: bool) -> Mesh {
        let port = free_port();
        let consumer = TestDaemon::start_with_config(&consumer_config(port, challenges));
        let providers = (0..providers)
            .map(|_| TestDaemon::start_with_config(&provider_config(port)))
            .collect();
        Mesh {
            consumer,
            providers,
        }
    }
}

async fn node_id(client: &Client) -> NodeId {
    let info = client.info().await.unwrap();
    <[u8; 16]>::try_from(&info.identity_hash[..]).unwrap()
}

/// Waits until the consumer and every provider see each other as neighbours; returns the
/// providers' ids.
async fn connect(consumer: &Client, providers: &[Client]) -> Vec<NodeId> {
    let consumer_id = node_id(consumer).await;
    let mut ids = Vec::new();
    for provider in providers {
        let id = node_id(provider).await;
        eventually(
            "the provider as the consumer's neighbour",
            Duration::from_secs(30),
            || async {
                consumer
                    .neighbours()
                    .await
                    .unwrap()
                    .into_iter()
                    .any(|n| n.node_id[..] == id)
                    .then_some(())
            },
        )
        .await;
        eventually(
            "the consumer as the provider's neighbour",
            Duration::from_secs(30),
            || async {
                provider
                    .neighbours()
                    .await
                    .unwrap()
                    .into_iter()
                    .any(|n| n.node_id[..] == consumer_id)
                    .then_some(())
            },
        )
        .await;
        ids.push(id);
    }
    ids
}

async fn clients(mesh: &Mesh) -> (Client, Vec<Client>) {
    let consumer = mesh.consumer.client().await.unwrap();
    let mut providers = Vec::new();
    for provider in &mesh.providers {
        providers.push(provider.client().await.unwrap());
    }
    (consumer, providers)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

async fn put(client: &Client, bytes: &[u8]) -> ObjectId {
    client
        .put_bytes(bytes.to_vec(), PutOptions::named("payload"))
        .await
        .unwrap()
        .object
        .id
}

#[test]
fn objects_of_every_edge_size_round_trip_through_providers() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let mut placed = Vec::new();
        for (len, seed) in [
            (0usize, 0u8),
            (1, 1),
            (4095, 2),
            (4096, 3),
            (4097, 4),
            (300_000, 5),
        ] {
            let bytes = pattern(len, seed);
            let id = put(&consumer, &bytes).await;
            let placement = consumer
                .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
                .await
                .unwrap_or_else(|e| panic!("replicating {len} bytes: {e}"));
            assert_eq!((placement.data_shards, placement.parity_shards), (2, 1));
            assert_eq!(placement.shards.len(), 3);
            let holders: Vec<NodeId> = placement.shards.iter().map(|s| s.provider).collect();
            assert_eq!(holders, ids, "one shard per provider, in order");

            // Each provider holds its shard as an ordinary object.
            for (shard, provider) in placement.shards.iter().zip(&providers) {
                let held = provider.stat(&shard.root).await.unwrap();
                assert_eq!(held.length, shard.length);
            }

            consumer.delete(&id).await.unwrap();
            let status = consumer.status(&id).await.unwrap();
            assert!(!status.held_locally);
            assert_eq!(status.object.length, len as u64);
            assert!(status.placement.is_some());
            let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
            assert_eq!(back.len(), len, "length of the {len}-byte object");
            assert!(back == bytes, "bytes of the {len}-byte object");
            if len > 5000 {
                let part = consumer
                    .get_bytes(&id, ByteRange::new(4000, 1000))
                    .await
                    .unwrap();
                assert_eq!(part, bytes[4000..5000]);
            }
            placed.push(id);
        }

        // Only placed now: `ls` lists none, `ls --placed` lists them all, by id, page by page.
        let local: Vec<_> = consumer.list_all(ListOrder::Created).collect().await;
        assert!(local.is_empty(), "{local:?}");
        placed.sort();
        let first = consumer
            .list(ListOptions {
                scope: ListScope::Placed,
                page_size: 4,
                ..ListOptions::default()
            })
            .await
            .unwrap();
        let rest = consumer
            .list(ListOptions {
                scope: ListScope::Placed,
                page_token: first.next_page_token.clone().unwrap(),
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert_eq!((first.objects.len(), rest.next_page_token), (4, None));
        let listed: Vec<ObjectId> = first
            .objects
            .iter()
            .chain(&rest.objects)
            .map(|o| o.id)
            .collect();
        assert_eq!(listed, placed);
        let zero = first
            .objects
            .iter()
            .chain(&rest.objects)
            .find(|o| o.length == 0)
            .unwrap();
        assert_eq!(
            (zero.name.as_deref(), zero.chunk_count),
            (Some("payload"), 0)
        );
        // A page token of one listing is refused by another, and placed objects have no
        // creation order.
        let error = consumer
            .list(ListOptions {
                page_token: first.next_page_token.unwrap(),
                ..ListOptions::default()
            })
            .await
            .unwrap_err();
        assert_eq!(error.reason(), Some("PAGE_TOKEN_MISMATCH"), "{error}");
        let refused = consumer
            .storage()
            .list_objects(pb::ListObjectsRequest {
                order: pb::ListOrder::Created as i32,
                scope: pb::ListScope::Placed as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("by id"), "{refused:?}");
    });
    let cli = mesh.consumer.cli(&["--json", "store", "ls", "--placed"]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let lines = String::from_utf8(cli.stdout).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
}

#[test]
fn challenges_pass_and_payment_follows_verified_storage() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(200_000, 9);
        let id = put(&consumer, &bytes).await;
        let mut options = ReplicateOptions::on(ids.clone()).with_code(2, 1);
        options.price_per_byte_day_umhr = 1_000_000;
        consumer.replicate(&id, options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let results = consumer.challenge(&id).await.unwrap();
        assert_eq!(results.len(), 3);
        for result in &results {
            assert!(result.passed, "shard {}: {:?}", result.index, result.detail);
            assert_eq!(result.health, ShardHealth::Healthy);
        }
        let placement = consumer.status(&id).await.unwrap().placement.unwrap();
        for shard in &placement.shards {
            assert_eq!(shard.challenges_passed, 1);
            assert!(shard.last_challenge_at_unix_ms.is_some());
            assert!(
                shard.owed_umhr > 0,
                "a passed challenge accrues what is owed"
            );
        }

        // Through the CLI as well.
        let out = mesh.consumer.cli(&["store", "challenge", &id.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.matches("passed").count(), 3, "{text}");
        let out = mesh
            .consumer
            .cli(&["store", "stat", &id.to_string(), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(stat["placement"]["shards"].as_array().unwrap().len(), 3);
        assert_eq!(stat["placement"]["shards"][0]["challenges_passed"], 2);
    });
}

#[test]
fn a_provider_that_loses_its_shard_is_repaired_around() {
    let mut mesh = Mesh::start(4, true);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(300_000, 7);
        let id = put(&consumer, &bytes).await;
        // Three holders and one spare.
        let placement = consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
            .await
            .unwrap();
        assert_eq!(placement.spare_providers, vec![ids[3]]);
        let lost = &placement.shards[0];
        let mut events = consumer.watch_events().await.unwrap();
        // The provider throws the shard away behind the consumer's back.
        providers[0].delete(&lost.root).await.unwrap();

        let repaired = eventually(
            "the shard to move to the spare",
            Duration::from_secs(120),
            || async {
                let placement = consumer.status(&id).await.unwrap().placement.unwrap();
                (placement.shards[0].provider == ids[3]).then_some(placement)
            },
        )
        .await;
        assert!(repaired.spare_providers.is_empty());
        // Subscribers heard the loss, then the repair.
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("the shard events")
                .unwrap()
                .unwrap();
            match event.kind {
                Some(pb::node_event::Kind::ShardLost(e)) => {
                    assert_eq!((e.shard, &e.provider[..]), (0, &ids[0][..]));
                    heard.push("lost");
                }
                Some(pb::node_event::Kind::ShardRepaired(e)) => {
                    assert_eq!((e.shard, &e.provider[..]), (0, &ids[3][..]));
                    heard.push("repaired");
                }
                _ => {}
            }
        }
        assert_eq!(heard, ["lost", "repaired"]);
        // The spare holds the rebuilt shard, with the root the manifest names.
        let held = providers[3].stat(&lost.root).await.unwrap();
        assert_eq!(held.length, lost.length);

        // Reading needs shard 0 or the others; drop one of the original holders too.
        consumer.delete(&id).await.unwrap();
        mesh.providers[1].stop_with(Signal::SIGKILL, Duration::from_secs(10));
        let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
        assert!(back == bytes);
    });
}

#[test]
fn an_object_reads_with_two_providers_killed() {
    let mut mesh = Mesh::start(4, false);
    let runtime = runtime();
    let (id, bytes) = runtime.block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(500_000, 3);
        let id = put(&consumer, &bytes).await;
        consumer
            .replicate(&id, ReplicateOptions::on(ids).with_code(2, 2))
            .await
            .unwrap();
        consumer.delete(&id).await.unwrap();
        (id, bytes)
    });
    for victim in mesh.providers.iter_mut().take(2) {
        victim.stop_with(Signal::SIGKILL, Duration::from_secs(10));
    }
    runtime.block_on(async {
        let consumer = mesh.consumer.client().await.unwrap();
        let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
        assert!(back == bytes);
        // A challenge now reports the two dead providers, within the wait it was given.
        let results = consumer
            .challenge_within(&id, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(results.iter().filter(|r| !r.passed).count(), 2);
    });
}

/// Flips a byte of every stored chunk in the store of a stopped daemon: its disk went bad.
fn corrupt_every_chunk(data_dir: &std::path::Path) {
    let path = data_dir.join("store");
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &families).unwrap();
    let chunks = db.cf_handle("storage_chunks").unwrap();
    let stored: Vec<_> = db
        .iterator_cf(chunks, rocksdb::IteratorMode::Start)
        .map(Result::unwrap)
        .collect();
    assert!(!stored.is_empty(), "the provider holds chunks");
    for (key, value) in stored {
        let mut value = value.to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        db.put_cf(chunks, key, value).unwrap();
    }
    db.flush().unwrap();
}

/// A provider whose disk corrupted its shard sends no bad byte: the object reads from the
/// others, and a challenge fails the provider with the damage named.
#[test]
fn a_provider_with_corrupted_chunks_is_caught_and_read_around() {
    let mut mesh = Mesh::start(3, false);
    let runtime = runtime();
    let (id, bytes, victim_id) = runtime.block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(200_000, 7);
        let id = put(&consumer, &bytes).await;
        consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
            .await
            .unwrap();
        consumer.delete(&id).await.unwrap();
        (id, bytes, ids[0])
    });
    // Provider 0 (shard 0, read first) restarts on a damaged store.
    let data_dir = mesh.providers[0].data_dir.clone();
    mesh.providers[0].stop_with(Signal::SIGTERM, Duration::from_secs(20));
    corrupt_every_chunk(&data_dir);
    let config = data_dir.parent().unwrap().join("mehrd.toml");
    let restarted = TestDaemon::start_in(&data_dir, &["--config", config.to_str().unwrap()]);
    runtime.block_on(async {
        let consumer = mesh.consumer.client().await.unwrap();
        let victim = restarted.client().await.unwrap();
        connect(&consumer, std::slice::from_ref(&victim)).await;
        let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
        assert!(back == bytes, "read around the damaged shard");
        let results = consumer.challenge(&id).await.unwrap();
        for result in &results {
            if result.provider == victim_id {
                assert!(!result.passed, "{result:?}");
                let detail = result.detail.clone().unwrap_or_default();
                assert!(
                    detail.contains("corrupt") || detail.contains("damaged"),
                    "{detail}"
                );
            } else {
                assert!(result.passed, "{result:?}");
            }
        }
    });
}

/// A Challenge in a hurry reports a provider that does not answer in time, but does not count
/// the silence against it: only a full `storage.remote_timeout_secs` of silence does.
#[test]
fn a_hurried_challenge_reports_a_frozen_provider_without_condemning_it() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let id = put(&consumer, &pattern(100_000, 5)).await;
        consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
            .await
            .unwrap();
        let frozen = ids[0];
        mesh.providers[0].signal(Signal::SIGSTOP);
        let results = consumer
            .challenge_within(&id, Duration::from_secs(3))
            .await
            .unwrap();
        mesh.providers[0].signal(Signal::SIGCONT);
        for result in &results {
            let detail = result.detail.clone().unwrap_or_default();
            if result.provider == frozen {
                assert!(!result.passed, "{result:?}");
                assert!(detail.contains("not counted"), "{detail}");
                assert_eq!(result.health, ShardHealth::Healthy);
            } else {
                assert!(result.passed, "{result:?}");
            }
        }
        let placement = consumer.status(&id).await.unwrap().placement.unwrap();
        for shard in &placement.shards {
            assert_eq!(shard.challenges_failed, 0, "{shard:?}");
            assert_eq!(shard.consecutive_failures, 0, "{shard:?}");
        }
        // Thawed, it answers a challenge that gives it the full time.
        let results = consumer.challenge(&id).await.unwrap();
        assert!(results.iter().all(|r| r.passed), "{results:?}");
    });
}

/// A Replicate that names no providers finds them through the marketplace: the consumer's
/// neighbours advertise storage, discovery answers, and each gets a shard.
#[test]
fn providers_are_found_through_the_marketplace_when_none_are_given() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let mut ids = connect(&consumer, &providers).await;
        let bytes = pattern(100_000, 9);
        let id = put(&consumer, &bytes).await;
        let options = ReplicateOptions {
            data_shards: Some(2),
            parity_shards: Some(1),
            ..ReplicateOptions::default()
        };
        let placement = eventually("three providers found", Duration::from_secs(60), || async {
            consumer.replicate(&id, options.clone()).await.ok()
        })
        .await;
        let mut holders: Vec<NodeId> = placement.shards.iter().map(|s| s.provider).collect();
        holders.sort();
        ids.sort();
        assert_eq!(holders, ids, "one shard on each discovered provider");
        consumer.delete(&id).await.unwrap();
        let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
        assert!(back == bytes);
    });
}

#[test]
fn bad_requests_are_refused_with_clear_errors() {
    let mesh = Mesh::start(2, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let id = put(&consumer, b"some bytes").await;

        let error = consumer
            .replicate(&id, ReplicateOptions::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::InvalidArgument), "{error}");
        assert!(error.to_string().contains("providers"), "{error}");

        let error = consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::InvalidArgument), "{error}");
        assert!(
            error.to_string().contains("3 distinct providers"),
            "{error}"
        );

        let me = node_id(&consumer).await;
        let error = consumer
            .replicate(&id, ReplicateOptions::on([me, ids[0]]).with_code(1, 1))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::InvalidArgument), "{error}");

        let unknown = ObjectId::for_bytes(b"never stored");
        let error = consumer
            .replicate(&unknown, ReplicateOptions::on(ids.clone()).with_code(1, 1))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");
        let error = consumer.challenge(&unknown).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");

        // A placed object cannot be placed twice.
        consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(1, 1))
            .await
            .unwrap();
        let error = consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(1, 1))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::AlreadyExists), "{error}");

        // Deleting the local copy keeps the placement; deleting again drops the placement and
        // the providers' shards.
        let roots: Vec<ObjectId> = consumer
            .status(&id)
            .await
            .unwrap()
            .placement
            .unwrap()
            .shards
            .iter()
            .map(|s| s.root)
            .collect();
        consumer.delete(&id).await.unwrap();
        consumer.delete(&id).await.unwrap();
        let error = consumer.status(&id).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");
        for (root, provider) in roots.iter().zip(&providers) {
            let error = provider.stat(root).await.unwrap_err();
            assert_eq!(error.code(), Some(tonic::Code::NotFound), "{error}");
        }

        // The CLI says which field is wrong.
        let out = mesh
            .consumer
            .cli(&["store", "replicate", &id.to_string(), "--provider", "zz"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("node id"));
    });
}

#[test]
fn a_hundred_megabyte_object_round_trips_through_providers() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(100 << 20, 11);
        let id = put(&consumer, &bytes).await;
        consumer
            .replicate(&id, ReplicateOptions::on(ids).with_code(2, 1))
            .await
            .unwrap();
        consumer.delete(&id).await.unwrap();
        let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
        assert_eq!(back.len(), bytes.len());
        assert!(back == bytes);
    });
}

#[test]
fn a_consumer_killed_during_replication_lists_no_partial_placement() {
    let mut mesh = Mesh::start(2, false);
    let runtime = runtime();
    let config = mesh.consumer.data_dir.parent().unwrap().join("mehrd.toml");
    let (id, bytes) = runtime.block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let bytes = pattern(40 << 20, 13);
        let id = put(&consumer, &bytes).await;
        let replicating = consumer.clone();
        tokio::spawn(async move {
            let _ = replicating
                .replicate(&id, ReplicateOptions::on(ids).with_code(1, 1))
                .await;
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        (id, bytes)
    });
    mesh.consumer
        .stop_with(Signal::SIGKILL, Duration::from_secs(10));
    let restarted = TestDaemon::start_in(
        &mesh.consumer.data_dir,
        &["--config", config.to_str().unwrap()],
    );
    runtime.block_on(async {
        let consumer = restarted.client().await.unwrap();
        let status = consumer.status(&id).await.unwrap();
        assert!(status.held_locally);
        match status.placement {
            // The kill came after the commit: the placement is whole and reads back.
            Some(placement) => {
                assert_eq!(placement.shards.len(), 2);
                consumer.delete(&id).await.unwrap();
                let (_, providers) = clients(&mesh).await;
                connect(&consumer, &providers).await;
                let back = consumer.get_bytes(&id, ByteRange::all()).await.unwrap();
                assert!(back == bytes);
            }
            // Before it: nothing is placed, and whatever a provider lists is whole (a shard
            // that completed before the kill), never a partial one.
            None => {
                let (_, providers) = clients(&mesh).await;
                for provider in &providers {
                    let page = provider.list(Default::default()).await.unwrap();
                    for object in page.objects {
                        let held = provider
                            .get_bytes(&object.id, ByteRange::all())
                            .await
                            .unwrap();
                        assert_eq!(held.len() as u64, object.length);
                    }
                }
            }
        }
    });
}

#[test]
fn providers_drop_shards_when_the_agreement_ends() {
    let mesh = Mesh::start(2, true);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let id = put(&consumer, &pattern(10_000, 21)).await;
        let mut options = ReplicateOptions::on(ids).with_code(1, 1);
        options.duration_secs = Some(1);
        let placement = consumer.replicate(&id, options).await.unwrap();
        for (shard, provider) in placement.shards.iter().zip(&providers) {
            eventually(
                "the expired shard to go",
                Duration::from_secs(30),
                || async {
                    let error = provider.stat(&shard.root).await.err()?;
                    (error.code() == Some(tonic::Code::NotFound)).then_some(())
                },
            )
            .await;
        }
    });
}

/// ReplicateObject's `request_id`: a retry with the key answers with the first placement (even
/// when it races the first call), a call without it or with another key finds the object
/// placed, and an oversized key is refused.
#[test]
fn a_replication_retried_with_its_request_id_answers_with_the_first_placement() {
    let mesh = Mesh::start(3, false);
    runtime().block_on(async {
        let (consumer, providers) = clients(&mesh).await;
        let ids = connect(&consumer, &providers).await;
        let id = put(&consumer, &pattern(50_000, 3)).await;
        let options = ReplicateOptions::on(ids.clone()).with_code(2, 1);
        let first = consumer
            .replicate(&id, options.clone().with_request_id("place-1"))
            .await
            .unwrap();
        // The retry names other providers' order and code: the first call's placement stands.
        let mut reversed = ids.clone();
        reversed.reverse();
        let retried = consumer
            .replicate(
                &id,
                ReplicateOptions::on(reversed)
                    .with_code(1, 2)
                    .with_request_id("place-1"),
            )
            .await
            .unwrap();
        assert_eq!(retried, first);
        for other in [options.clone(), options.clone().with_request_id("place-2")] {
            let placed = consumer.replicate(&id, other).await.unwrap_err();
            assert_eq!(placed.code(), Some(tonic::Code::AlreadyExists), "{placed}");
        }
        let oversized = consumer
            .replicate(&id, options.clone().with_request_id(vec![7u8; 65]))
            .await
            .unwrap_err();
        assert_eq!(
            oversized.code(),
            Some(tonic::Code::InvalidArgument),
            "{oversized}"
        );
        assert!(oversized.to_string().contains("request_id"), "{oversized}");

        // Two calls with one key at once (a retry sent while the first still runs): both
        // answer with the one placement recorded.
        let other = put(&consumer, &pattern(40_000, 4)).await;
        let keyed = options.clone().with_request_id("place-3");
        let (a, b) = futures::future::join(
            consumer.replicate(&other, keyed.clone()),
            consumer.replicate(&other, keyed),
        )
        .await;
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(
            consumer
                .status(&other)
                .await
                .unwrap()
                .placement
                .unwrap()
                .shards
                .len(),
            3
        );
    });
}
