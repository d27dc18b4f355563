//! Remote storage over loopback TCP with real daemons: a consumer and four providers (a 2 + 1
//! code and one spare). Times the replication of one object, its reconstruction from providers
//! after the local copy is dropped, and the repair of one lost shard onto the spare (from the
//! challenge that marks it lost to the placement naming the spare).
//!
//! `cargo bench -p mehrd --bench storage_remote` (MEHR_BENCH_MB sets the object size, default 100).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mehr_sdk::{
    Client, ConnectOptions,
    storage::{ByteRange, NodeId, PutOptions, ReplicateOptions},
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

const PROVIDERS: usize = 4;

fn main() {
    let megabytes: usize = std::env::var("MEHR_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let size = megabytes << 20;
    let mut data = vec![0u8; size];
    StdRng::seed_from_u64(11).fill_bytes(&mut data);

    let temp = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let storage = "[api]\nlisten = []\n[storage]\nchallenge_interval_secs = 0\n\
                   remote_timeout_secs = 120\navailable_bytes = 68719476736\n\
                   max_object_size = 68719476736\n";
    let consumer_dir = temp.path().join("consumer");
    let _consumer = Daemon::start(
        temp.path(),
        "consumer",
        &format!(
            "{storage}[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"
        ),
    );
    let provider_dirs: Vec<PathBuf> = (0..PROVIDERS)
        .map(|i| temp.path().join(format!("provider{i}")))
        .collect();
    let _providers: Vec<Daemon> = (0..PROVIDERS)
        .map(|i| {
            Daemon::start(
                temp.path(),
                &format!("provider{i}"),
                &format!(
                    "{storage}[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {port}\n"
                ),
            )
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (replicate, get, repair) = runtime.block_on(async {
        let consumer = connect(&consumer_dir).await;
        let mut providers = Vec::new();
        let mut ids: Vec<NodeId> = Vec::new();
        for dir in &provider_dirs {
            let client = connect(dir).await;
            let info = client.info().await.expect("info");
            let id = <[u8; 16]>::try_from(&info.identity_hash[..]).expect("node id");
            wait_neighbour(&consumer, id).await;
            providers.push(client);
            ids.push(id);
        }
        let id = consumer
            .put_bytes(data.clone(), PutOptions::named("bench"))
            .await
            .expect("put")
            .object
            .id;

        let start = Instant::now();
        let placement = consumer
            .replicate(&id, ReplicateOptions::on(ids.clone()).with_code(2, 1))
            .await
            .expect("replicate");
        let replicate = start.elapsed();

        consumer.delete(&id).await.expect("delete the local copy");
        let start = Instant::now();
        let back = consumer
            .get_bytes(&id, ByteRange::all())
            .await
            .expect("get");
        let get = start.elapsed();
        assert!(back == data, "the object read back differs");

        // Shard 0 vanishes at its provider; three failed challenges mark it lost and start
        // the repair onto the spare.
        let lost = &placement.shards[0];
        providers[0]
            .delete(&lost.root)
            .await
            .expect("drop the shard");
        for _ in 0..2 {
            consumer.challenge(&id).await.expect("challenge");
        }
        consumer.challenge(&id).await.expect("challenge");
        let start = Instant::now();
        loop {
            let status = consumer.status(&id).await.expect("status");
            if status.placement.expect("placement").shards[0].provider == ids[3] {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "repair did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let repair = start.elapsed();
        (replicate, get, repair)
    });

    let rate = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!(
        "remote storage over loopback TCP, {megabytes} MiB object, 2 data + 1 parity shards \
         ({} MiB per shard), one run",
        megabytes.div_ceil(2)
    );
    println!();
    println!("| operation | time | object MiB/s |");
    println!("|---|---:|---:|");
    for (name, time) in [
        ("replicate (encode, send 3 shards)", replicate),
        ("get from providers (2 shards, verified, decoded)", get),
        (
            "repair one lost shard onto the spare (fetch 2, rebuild 1, send 1)",
            repair,
        ),
    ] {
        println!(
            "| {name} | {:.2} s | {:.0} |",
            time.as_secs_f64(),
            rate(time)
        );
    }
}

async fn wait_neighbour(consumer: &Client, id: NodeId) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let neighbours = consumer.neighbours().await.expect("neighbours");
        if neighbours.iter().any(|n| n.node_id[..] == id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "provider never became a neighbour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(data_dir: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let options = ConnectOptions {
            data_dir: Some(data_dir.to_path_buf()),
            ..Default::default()
        };
        if let Ok(client) = Client::connect_with(options).await
            && client.info().await.is_ok()
        {
            return client;
        }
        assert!(Instant::now() < deadline, "mehrd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Daemon(Option<Child>);

impl Daemon {
    fn start(root: &Path, name: &str, config: &str) -> Daemon {
        let config_path = root.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_mehrd"))
            .arg("--data-dir")
            .arg(root.join(name))
            .arg("--config")
            .arg(&config_path)
            .env("MEHR_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn mehrd");
        Daemon(Some(child))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}
