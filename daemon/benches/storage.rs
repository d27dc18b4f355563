//! Put and Get throughput through a real local daemon (Unix socket), beside the hashing the
//! same bytes need: raw `blake3::hash`, and the object commitment (`ObjectId::for_bytes`, 4 KiB
//! chunks of 64-byte segments) that every Put computes and every Get re-checks.
//!
//! `cargo bench -p mehrd --bench storage` (MEHR_BENCH_MB sets the object size, default 256).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use mehr_sdk::{
    Client, ConnectOptions,
    storage::{ByteRange, ObjectId, PutOptions},
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

const RUNS: usize = 3;

fn main() {
    let megabytes: usize = std::env::var("MEHR_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = megabytes << 20;
    let mut data = vec![0u8; size];
    StdRng::seed_from_u64(7).fill_bytes(&mut data);
    let data = prost::bytes::Bytes::from(data);

    let blake3 = best_of(|| {
        std::hint::black_box(blake3::hash(&data));
    });
    let mut id = ObjectId::from_bytes([0; 32]);
    let commitment = best_of(|| id = ObjectId::for_bytes(&data));

    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("node");
    let config = temp.path().join("mehrd.toml");
    std::fs::write(
        &config,
        "[api]\nlisten = []\n[storage]\navailable_bytes = 68719476736\nmax_object_size = 68719476736\n",
    )
    .expect("config");
    let mut daemon = Daemon::start(&data_dir, &config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (put, get) = runtime.block_on(async {
        let client = connect(&data_dir).await;
        let put = best_of_async(
            || async {
                let stored = client
                    .put_bytes(data.clone(), PutOptions::default())
                    .await
                    .expect("put");
                assert_eq!(stored.object.id, id);
                assert!(!stored.already_stored);
                stored.object.id
            },
            |id| {
                let client = client.clone();
                async move {
                    client.delete(&id).await.expect("delete");
                }
            },
        )
        .await;
        client
            .put_bytes(data.clone(), PutOptions::default())
            .await
            .expect("put");
        let get = best_of_async(
            || async {
                let mut stream = client.get(&id, ByteRange::all()).await.expect("get");
                let mut received = 0;
                while let Some(bytes) = stream.next().await {
                    received += bytes.expect("get data").len();
                }
                assert_eq!(received, size);
            },
            |()| async {},
        )
        .await;
        (put, get)
    });
    daemon.stop();

    let rate = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!("storage through a local mehrd (Unix socket), {megabytes} MiB object, best of {RUNS}");
    println!();
    println!("| operation | MiB/s | vs blake3::hash | vs ObjectId::for_bytes |");
    println!("|---|---:|---:|---:|");
    for (name, time) in [
        ("blake3::hash (raw)", blake3),
        ("ObjectId::for_bytes (commitment)", commitment),
        ("Put (SDK put_bytes, durable)", put),
        ("Get (SDK get, verified)", get),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} |",
            rate(time),
            blake3.as_secs_f64() / time.as_secs_f64(),
            commitment.as_secs_f64() / time.as_secs_f64()
        );
    }
}

fn best_of(mut run: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .expect("RUNS > 0")
}

/// Best time of `run`; `after` undoes a run's effect, untimed.
async fn best_of_async<T, F, A>(
    mut run: impl FnMut() -> F,
    mut after: impl FnMut(T) -> A,
) -> Duration
where
    F: Future<Output = T>,
    A: Future<Output = ()>,
{
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = run().await;
        best = best.min(start.elapsed());
        after(out).await;
    }
    best
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
    fn start(data_dir: &Path, config: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_mehrd"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .env("MEHR_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn mehrd");
        Daemon(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
