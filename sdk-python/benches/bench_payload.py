"""Where the time of a large call goes: an echo of N bytes served from Python through the local
mehrd (Unix socket), against the same echo called directly and against a plain grpcio server
(one hop, Unix socket), sequential calls, in one run.

    MEHRD_BIN=target/release/mehrd python sdk-python/benches/bench_payload.py [--calls 300]

The serving process stamps each call with `time.perf_counter()` (CLOCK_MONOTONIC, the same
clock in every process) when the handler starts and when it returns, so a call through the
daemon splits into:
  in    caller's invoke() -> daemon -> serving process -> handler starts
  out   handler returns -> serving process -> daemon -> caller's invoke() returns
Both include the protobuf encode/decode and HTTP/2 framing of two gRPC hops and the copies
between Rust and Python; `copy` is what one Python copy of the payload costs (`bytes(view)`),
the unit to count copies in.
"""

from __future__ import annotations

import argparse
import json
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
from typing import List, Optional, Tuple

FUNCTION = "bench.stamped-echo"
GRPC_METHOD = "/bench.Echo/Echo"
SIZES = [64, 64 * 1024, 700 * 1024, 4 * 1024 * 1024]


def serve_mehr(data_dir: str) -> None:
    """Serves the stamped echo until stdin closes, then prints the stamps as JSON."""
    import mehr

    stamps: List[Tuple[float, float]] = []

    @mehr.function(FUNCTION, max_concurrency=4)
    def echo(data: bytes) -> bytes:
        started = time.perf_counter()
        stamps.append((started, time.perf_counter()))
        return data

    client = mehr.connect(data_dir=data_dir)
    with client.serve(echo):
        print("ready", flush=True)
        # One line per request for the stamps so far; stdin closing ends serving.
        for line in sys.stdin:
            if line.strip() == "stamps":
                print(json.dumps(stamps), flush=True)
                stamps.clear()


def serve_grpc(address: str) -> None:
    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


def p50(values: List[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(binary: str, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "MEHR_LOG_LEVEL": "warn", "MEHR_INTERFACES": "[]"}
    process = subprocess.Popen(
        [binary, "--data-dir", str(data_dir), "--api-listen", f"127.0.0.1:{free_port()}"],
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
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per size")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="payload sizes in bytes")
    parser.add_argument("--serve-mehr", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_mehr:
        return serve_mehr(args.serve_mehr)
    if args.serve_grpc:
        return serve_grpc(args.serve_grpc)

    import grpc

    import mehr

    binary = os.environ.get("MEHRD_BIN") or shutil.which("mehrd")
    if not binary:
        sys.exit("set MEHRD_BIN to the mehrd binary")
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mehr-payload-"))
    daemon = server = grpc_server = None
    me = [sys.executable, os.path.abspath(__file__)]
    try:
        daemon = start_daemon(binary, tmp / "node")
        server = subprocess.Popen(
            [*me, "--serve-mehr", str(tmp / "node")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None and server.stdin is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the serving process did not start")
        grpc_address = f"unix:{tmp / 'grpc.sock'}"
        grpc_server = subprocess.Popen([*me, "--serve-grpc", grpc_address], stdout=subprocess.PIPE, text=True)
        assert grpc_server.stdout is not None
        if grpc_server.stdout.readline().strip() != "ready":
            raise RuntimeError("the grpcio server did not start")
        client = mehr.connect(data_dir=tmp / "node")
        channel = grpc.insecure_channel(
            grpc_address,
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        stub = channel.unary_unary(GRPC_METHOD)

        def echo(data: bytes) -> bytes:
            return data

        print(
            f"{args.calls} sequential calls per size, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"mehr {mehr.__version__}, grpcio {grpc.__version__}"
        )
        print("| payload | direct p50 | grpcio 1 hop p50 | mehrd p50 | in | out | mehrd MB/s each way | copy |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes:
            payload = os.urandom(size)
            for _ in range(max(10, args.calls // 10)):  # warm up buffers and connections
                client.invoke(FUNCTION, payload)
                stub(payload, timeout=30)
            server.stdin.write("stamps\n")
            server.stdin.flush()
            server.stdout.readline()

            direct, via_grpc, via_mehr, sent, returned = [], [], [], [], []
            copy = []
            view = memoryview(payload)
            for _ in range(args.calls):
                t0 = time.perf_counter()
                echo(payload)
                direct.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                bytes(view)
                copy.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                if stub(payload, timeout=30) != payload:
                    raise AssertionError("wrong grpcio echo")
                via_grpc.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                output = client.invoke(FUNCTION, payload).output
                t3 = time.perf_counter()
                if output != payload:
                    raise AssertionError("wrong mehr echo")
                via_mehr.append(t3 - t0)
                sent.append(t0)
                returned.append(t3)
            server.stdin.write("stamps\n")
            server.stdin.flush()
            stamps = json.loads(server.stdout.readline())
            inbound = [s[0] - t0 for s, t0 in zip(stamps, sent)]
            outbound = [t3 - s[1] for s, t3 in zip(stamps, returned)]
            ms = 1000
            print(
                f"| {size:,} B | {p50(direct) * ms:.3f} ms | {p50(via_grpc) * ms:.3f} ms | "
                f"{p50(via_mehr) * ms:.3f} ms | {p50(inbound) * ms:.3f} ms | {p50(outbound) * ms:.3f} ms | "
                f"{size / p50(via_mehr) / 1e6:,.0f} | {p50(copy) * ms:.3f} ms |",
                flush=True,
            )
        channel.close()
    finally:
        if server is not None and server.stdin is not None:
            server.stdin.close()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        stop(server)
        stop(grpc_server)
        stop(daemon)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
