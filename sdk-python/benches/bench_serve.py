"""Calls/s and latency of a trivial Python-served function: through one local mehrd (the SDK
serving it, the SDK calling it) against a plain grpcio server doing the same work, side by
side in one run.

    MEHRD_BIN=target/release/mehrd python sdk-python/benches/bench_serve.py [--calls 3000]

Both servers are separate Python processes running the same handler (echo the input) with
the same number of worker threads; both are reached over Unix sockets. The Mehr path has two
hops (caller -> daemon -> serving process), grpcio one. Rows:
  sequential  one caller thread, one call at a time: latency p50/p99
  parallel    N caller threads: throughput (and the latency each call saw)
  mesh hop    the same function called through a second daemon linked to the first over
              loopback TCP (placement "mesh": a signed job out, a signed result back)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Callable, List, Optional, Tuple

FUNCTION = "bench.echo"
GRPC_METHOD = "/bench.Echo/Echo"


def echo(data: bytes) -> bytes:
    return data


# --- servers (run as child processes) -------------------------------------------------------


def serve_mehr(data_dir: str, workers: int) -> None:
    import mehr

    client = mehr.connect(data_dir=data_dir)
    with client.serve(mehr.function(FUNCTION, max_concurrency=workers)(echo)) as serving:
        print("ready", flush=True)
        try:
            serving.wait()
        except KeyboardInterrupt:
            pass


def serve_grpc(address: str, workers: int) -> None:
    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: echo(request))}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1)


# --- measurement ---------------------------------------------------------------------------


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_threads(call: Callable[[], None], calls: int, threads: int) -> Tuple[float, List[float]]:
    """Makes `calls` calls from `threads` threads; returns (elapsed seconds, latencies in ms)."""
    per_thread = calls // threads
    latencies: List[List[float]] = [[] for _ in range(threads)]
    start_line = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        mine = latencies[index]
        start_line.wait()
        for _ in range(per_thread):
            t0 = time.perf_counter()
            call()
            mine.append((time.perf_counter() - t0) * 1000)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start_line.wait()
    t0 = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - t0
    return elapsed, [x for per in latencies for x in per]


def run_async(client, payload: bytes, calls: int, concurrency: int) -> Tuple[float, List[float]]:
    async def main() -> Tuple[float, List[float]]:
        latencies: List[float] = []
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                t0 = time.perf_counter()
                await client.invoke(FUNCTION, payload)
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        return time.perf_counter() - t0, latencies

    return asyncio.run(main())


def row(name: str, mode: str, elapsed: float, latencies: List[float]) -> str:
    return (
        f"| {name:<26} | {mode:<14} | {len(latencies) / elapsed:>9,.0f} | "
        f"{statistics.median(latencies):>8.3f} | {percentile(latencies, 99):>8.3f} |"
    )


def wait_ready(process: subprocess.Popen, what: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{what} did not start: {line!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(binary: str, data_dir: Path, interface: Optional[str] = None) -> subprocess.Popen:
    """Starts mehrd; `interface` is one `[[interfaces]]` table (none: no mesh interfaces)."""
    port = free_port()
    env = {**os.environ, "MEHR_LOG_LEVEL": "warn"}
    args = [binary, "--data-dir", str(data_dir), "--api-listen", f"127.0.0.1:{port}"]
    if interface is None:
        env["MEHR_INTERFACES"] = "[]"
    else:
        config = data_dir.parent / f"{data_dir.name}.toml"
        config.write_text(f"[market]\ngossip_round_ms = 500\npull_timeout_ms = 1500\n\n{interface}")
        args += ["--config", str(config)]
    process = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (data_dir / "mehrd.sock").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("mehrd did not start")
        time.sleep(0.05)
    return process


def stop(process: Optional[subprocess.Popen]) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="calls per row")
    parser.add_argument("--threads", type=int, default=16, help="caller threads in the parallel rows")
    parser.add_argument("--workers", type=int, default=16, help="server worker threads / max_concurrency")
    parser.add_argument("--payload", type=int, default=64, help="input bytes")
    parser.add_argument("--serve-mehr", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_mehr:
        return serve_mehr(args.serve_mehr, args.workers)
    if args.serve_grpc:
        return serve_grpc(args.serve_grpc, args.workers)

    import grpc

    import mehr

    binary = os.environ.get("MEHRD_BIN") or shutil.which("mehrd")
    if not binary:
        sys.exit("set MEHRD_BIN to the mehrd binary")
    payload = os.urandom(args.payload)
    tmp = Path(tempfile.mkdtemp(prefix="mehr-bench-"))
    daemon = caller = mehr_server = grpc_server = None
    me = [sys.executable, os.path.abspath(__file__), "--workers", str(args.workers)]
    mesh_port = free_port()
    try:
        daemon = start_daemon(
            binary,
            tmp / "node",
            f'[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = {mesh_port}\n',
        )
        caller = start_daemon(
            binary,
            tmp / "caller",
            f'[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = {mesh_port}\n',
        )
        mehr_server = subprocess.Popen(
            [*me, "--serve-mehr", str(tmp / "node")], stdout=subprocess.PIPE, text=True
        )
        wait_ready(mehr_server, "the Mehr server")
        grpc_address = f"unix:{tmp / 'grpc.sock'}"
        grpc_server = subprocess.Popen([*me, "--serve-grpc", grpc_address], stdout=subprocess.PIPE, text=True)
        wait_ready(grpc_server, "the grpcio server")

        client = mehr.connect(data_dir=tmp / "node")
        channel = grpc.insecure_channel(grpc_address)
        stub = channel.unary_unary(GRPC_METHOD)

        def mehr_call() -> None:
            if client.invoke(FUNCTION, payload).output != payload:
                raise AssertionError("wrong echo")

        def grpc_call() -> None:
            if stub(payload, timeout=30) != payload:
                raise AssertionError("wrong echo")

        for call in (mehr_call, grpc_call):  # warm up connections, threads and caches
            run_threads(call, 200, 4)

        print(f"{args.calls} calls per row, {args.payload}-byte echo, {args.workers} server workers, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, mehr {mehr.__version__}, "
              f"grpcio {grpc.__version__}")
        print("| path                       | callers        |   calls/s |  p50 ms  |  p99 ms  |")
        print("|----------------------------|----------------|----------:|---------:|---------:|")
        for name, call in (("mehr SDK (via mehrd)", mehr_call), ("grpcio (direct)", grpc_call)):
            print(row(name, "sequential", *run_threads(call, args.calls, 1)), flush=True)
        for name, call in (("mehr SDK (via mehrd)", mehr_call), ("grpcio (direct)", grpc_call)):
            print(row(name, f"{args.threads} threads", *run_threads(call, args.calls, args.threads)), flush=True)

        async def async_client():
            return await mehr.connect_async(data_dir=tmp / "node")

        aclient = asyncio.run(async_client())
        print(row("mehr AsyncClient (mehrd)", f"{args.threads} in flight", *run_async(aclient, payload, args.calls, args.threads)))

        remote = mehr.connect(data_dir=tmp / "caller")

        def hop_call() -> None:
            if remote.invoke(FUNCTION, payload, placement="mesh").output != payload:
                raise AssertionError("wrong echo")

        deadline = time.monotonic() + 60
        while True:  # the first call discovers the provider and forms the agreement
            try:
                hop_call()
                break
            except mehr.NotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        hop_calls = max(100, args.calls // 5)
        print(row("mehr SDK, one mesh hop", "sequential", *run_threads(hop_call, hop_calls, 1)), flush=True)
        print(row("mehr SDK, one mesh hop", f"{args.threads} threads", *run_threads(hop_call, hop_calls, args.threads)), flush=True)
        channel.close()
    finally:
        stop(mehr_server)
        stop(grpc_server)
        stop(caller)
        stop(daemon)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
