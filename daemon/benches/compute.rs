//! End-to-end compute figures through a real daemon over its Unix socket:
//!
//! - a warm WASM call (`echo` of 64 bytes) through the gRPC API, next to the same call on
//!   `Runtime::invoke` in-process, so the difference is the API's cost;
//! - `GetInfo`, which computes nothing, as the API's own round trip;
//! - a trivial function served by this process through the SDK (`Client::serve`), called
//!   through the daemon: the latency serving adds, and throughput with concurrent callers;
//! - the same served function called from a second daemon one mesh hop away (loopback TCP)
//!   with `placement = mesh`: discovery's answer and the agreement are reused, so each call is
//!   a signed job out and a signed result back over the transport.
//!
//! Run: `cargo bench -p mehrd --bench compute` (`MEHR_BENCH_CALLS` changes the call count).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::TestDaemon;
use mehr_compute::{Runtime, RuntimeConfig, Tier};
use mehr_sdk::{
    Client, InvokeOptions, Placement,
    serve::{Call, FunctionSpec, handler_fn},
};

const FIXTURE: &str = include_str!("../tests/wasm/fixture.wat");
const CONCURRENT_CALLERS: usize = 16;

struct Figures {
    label: String,
    p50: Duration,
    p99: Duration,
    calls_per_sec: f64,
}

fn figures(label: &str, mut latencies: Vec<Duration>, wall: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Figures {
        label: label.to_string(),
        p50: at(0.50),
        p99: at(0.99),
        calls_per_sec: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

fn print_table(rows: &[Figures]) {
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    println!(
        "{:<width$}  {:>10}  {:>10}  {:>10}",
        "benchmark", "p50", "p99", "calls/s"
    );
    for row in rows {
        println!(
            "{:<width$}  {:>10}  {:>10}  {:>10.0}",
            row.label,
            format!("{:.1} µs", row.p50.as_secs_f64() * 1e6),
            format!("{:.1} µs", row.p99.as_secs_f64() * 1e6),
            row.calls_per_sec,
        );
    }
}

fn raw_runtime(calls: usize) -> Figures {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let module = runtime
        .deploy(&mehr_compute::wat_to_wasm(FIXTURE).unwrap())
        .unwrap();
    let input = [7u8; 64];
    let limits = Tier::Light.limits();
    for _ in 0..1000 {
        runtime.invoke(&module, "echo", &input, &limits).unwrap();
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        runtime.invoke(&module, "echo", &input, &limits).unwrap();
        latencies.push(t.elapsed());
    }
    figures(
        "WASM echo, Runtime::invoke in-process",
        latencies,
        started.elapsed(),
    )
}

/// Calls `function` from `client` with `placement = mesh`, one caller.
async fn over_the_mesh(client: &Client, function: &str, calls: usize) -> Figures {
    let input = vec![7u8; 64];
    let mesh = || InvokeOptions::default().placement(Placement::Mesh);
    // The first call discovers the provider and forms the agreement; wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .invoke_with(function, input.clone(), mesh())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the provider was not found on the mesh"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let response = client
            .invoke_with(function, input.clone(), mesh())
            .await
            .unwrap();
        latencies.push(t.elapsed());
        assert_eq!(response.output.len(), 64);
    }
    figures(
        "served echo, called one mesh hop away, 1 caller",
        latencies,
        started.elapsed(),
    )
}

async fn sequential(client: &Client, function: &str, calls: usize) -> (Vec<Duration>, Duration) {
    let input = vec![7u8; 64];
    for _ in 0..calls / 10 {
        client.invoke(function, input.clone()).await.unwrap();
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let response = client.invoke(function, input.clone()).await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(response.output.len(), 64);
    }
    (latencies, started.elapsed())
}

/// A unary call that does no compute at all: the API's own round trip.
async fn baseline(client: &Client, calls: usize) -> Figures {
    for _ in 0..calls / 10 {
        client.info().await.unwrap();
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        client.info().await.unwrap();
        latencies.push(t.elapsed());
    }
    figures(
        "baseline: NodeService.GetInfo, 1 caller",
        latencies,
        started.elapsed(),
    )
}

async fn concurrent(client: &Client, function: &str, calls: usize) -> (Vec<Duration>, Duration) {
    let per_caller = calls / CONCURRENT_CALLERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_CALLERS)
        .map(|_| {
            let client = client.clone();
            let function = function.to_string();
            tokio::spawn(async move {
                let input = vec![7u8; 64];
                let mut latencies = Vec::with_capacity(per_caller);
                for _ in 0..per_caller {
                    let t = Instant::now();
                    client.invoke(&function, input.clone()).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(calls);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (latencies, started.elapsed())
}

fn main() {
    let calls: usize = std::env::var("MEHR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let mut rows = vec![raw_runtime(calls * 4)];

    let temp = tempfile::tempdir().unwrap();
    // The node under test serves on a TCP mesh interface; a second node dials it.
    let mesh_port = common::free_port();
    let config = |name: &str, interface: String| {
        let path = temp.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("[market]\ngossip_round_ms = 500\npull_timeout_ms = 1500\n\n{interface}"),
        )
        .unwrap();
        path
    };
    let server = config(
        "node",
        format!(
            "[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {mesh_port}\n"
        ),
    );
    let client_config = config(
        "caller",
        format!(
            "[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {mesh_port}\n"
        ),
    );
    let daemon = TestDaemon::start_in(
        &temp.path().join("node"),
        &["--config", server.to_str().unwrap()],
    );
    let caller = TestDaemon::start_in(
        &temp.path().join("caller"),
        &["--config", client_config.to_str().unwrap()],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = daemon.client().await.unwrap();
        client
            .deploy_module(mehr_compute::wat_to_wasm(FIXTURE).unwrap(), Some("fx"))
            .await
            .unwrap();
        rows.push(baseline(&client, calls).await);
        let (latencies, wall) = sequential(&client, "fx/echo", calls).await;
        rows.push(figures(
            "WASM echo via gRPC Invoke, 1 caller",
            latencies,
            wall,
        ));
        let (latencies, wall) = concurrent(&client, "fx/echo", calls).await;
        rows.push(figures(
            &format!("WASM echo via gRPC Invoke, {CONCURRENT_CALLERS} callers"),
            latencies,
            wall,
        ));

        let echo = handler_fn(|call: Call, _output| async move { Ok(call.input) });
        let serving = client
            .serve(vec![FunctionSpec::new("echo").max_concurrency(64)], echo)
            .await
            .unwrap();
        let (latencies, wall) = sequential(&client, "echo", calls).await;
        rows.push(figures(
            "served echo via the SDK, 1 caller",
            latencies,
            wall,
        ));
        let (latencies, wall) = concurrent(&client, "echo", calls).await;
        rows.push(figures(
            &format!("served echo via the SDK, {CONCURRENT_CALLERS} callers"),
            latencies,
            wall,
        ));
        let remote = caller.client().await.unwrap();
        rows.push(over_the_mesh(&remote, "echo", (calls / 5).max(100)).await);
        serving.stop().await.unwrap();
    });
    println!(
        "compute end to end: {calls} calls per row (in-process: {}), 64-byte input, Unix socket, {} CPUs",
        calls * 4,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_table(&rows);
}
