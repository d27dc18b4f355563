//! Warm-call latency, cold deploy time, and multi-threaded throughput of the sandbox.
//!
//! Run with `cargo bench -p mehr-compute --bench sandbox`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use mehr_compute::{Runtime, RuntimeConfig, Tier, wat_to_wasm};

const ECHO: &str = include_str!("../tests/wasm/echo.wat");

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime starts"))
}

/// A module made unique by a trailing custom section, so each deploy really compiles.
fn unique_echo(echo: &[u8], seed: u64) -> Vec<u8> {
    let mut module = echo.to_vec();
    let name = b"seed";
    let payload_len = 1 + name.len() + 8;
    module.push(0); // custom section id
    module.push(payload_len as u8); // fits in one LEB128 byte
    module.push(name.len() as u8);
    module.extend_from_slice(name);
    module.extend_from_slice(&seed.to_le_bytes());
    module
}

fn warm_call(c: &mut Criterion) {
    let runtime = runtime();
    let echo = runtime
        .deploy(&wat_to_wasm(ECHO).expect("echo parses"))
        .expect("echo deploys");
    let input = [0x5a_u8; 64];
    let limits = Tier::Light.limits();
    c.bench_function("warm_call/echo_64B", |b| {
        b.iter(|| {
            let output = runtime
                .invoke(&echo, "echo", black_box(&input), &limits)
                .expect("echo succeeds");
            black_box(output)
        })
    });
}

fn cold_deploy(c: &mut Criterion) {
    let runtime = runtime();
    let echo = wat_to_wasm(ECHO).expect("echo parses");
    let mut seed = 0u64;
    let mut group = c.benchmark_group("deploy");
    group.sample_size(30);
    group.bench_function("cold_compile/echo", |b| {
        b.iter(|| {
            seed += 1;
            let id = runtime
                .deploy(&unique_echo(&echo, seed))
                .expect("echo deploys");
            runtime.remove(&id);
        })
    });
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let runtime = runtime();
    let echo = runtime
        .deploy(&wat_to_wasm(ECHO).expect("echo parses"))
        .expect("echo deploys");
    let limits = Tier::Light.limits();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1, 2, 4, 8, 16];
    thread_counts.retain(|&n| n <= cores.max(2));

    let mut group = c.benchmark_group("throughput/echo_64B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for threads in thread_counts {
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                // Each measured iteration is one call; the calls are split over `threads` threads and
                // the wall time of the whole batch is reported, so time per element is the
                // reciprocal of aggregate throughput.
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    let started = Instant::now();
                    std::thread::scope(|scope| {
                        for _ in 0..threads {
                            scope.spawn(|| {
                                let input = [0x5a_u8; 64];
                                for _ in 0..per_thread {
                                    black_box(
                                        runtime
                                            .invoke(&echo, "echo", &input, &limits)
                                            .expect("echo succeeds"),
                                    );
                                }
                            });
                        }
                    });
                    started.elapsed()
                })
            },
        );
    }
    group.finish();
}

// criterion's macro generates an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(
        benches,
        super::warm_call,
        super::cold_deploy,
        super::throughput
    );
}
criterion_main!(group::benches);
