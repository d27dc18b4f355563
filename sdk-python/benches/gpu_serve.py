"""A sentence encoder with all-MiniLM-L6-v2's shape, served through mehrd, against the same
model called directly in one process: latency and embeddings/s at several batch sizes, and
concurrent callers with and without the SDK's dynamic batching.

Needs only PyTorch, the `mehr` wheel and a `mehrd` binary: the weights are random (the shape
is what costs time, not the values), nothing is downloaded, no Rust toolchain is needed.

    python gpu_serve.py --mehrd ./mehrd                 # CUDA when torch sees a GPU, else CPU
    python gpu_serve.py --mehrd ./mehrd --device cpu --batches 1,8 --calls 20 --layers 2
    python gpu_serve.py --mehrd ./mehrd --json out.json  # also write the figures as JSON
    python gpu_serve.py --mehrd ./mehrd --backend simulated   # no torch: see below

`--backend simulated` needs nothing but the standard library: a stand-in device whose
forward pass sleeps `--sim-ms` plus `--sim-row-us` per row (defaults: the H200 figures of
issue 23, 3.8 ms and 1.7 us) one pass at a time, as a GPU runs one model's kernels, and
returns 768 bytes per row derived from that row's input (so the split-back checks are exact).
It tests this script's logic on any machine and measures what mehrd and the batching cost
around a model of known cost; its figures are not GPU figures and are labelled as simulated.

The script checks itself and fails loudly: every output has the expected size, a call's rows
of a merged forward pass equal the same call run alone, and the batched function really
merged the concurrent callers' calls (more than one call per handler call on average).

The model: token, position and type embeddings, then 6 post-norm transformer layers (384
hidden, 12 heads, 1536 feed-forward, GELU), mean pooling and L2 normalisation: a call takes
`batch x seq` int32 token ids (bytes) and returns `batch x 384` float16 embeddings (bytes).
fp16 on CUDA, fp32 on the CPU (`--dtype` overrides).

Rows:
  direct       the handler function called in this process, one thread (and N threads)
  via mehrd    `client.invoke` through the local daemon's Unix socket to a serving process
               running the same handler (`max_concurrency` 4, the issue's set-up), 1 caller
               (and N callers in flight)
  concurrent   C callers each sending batch B at once, the function plain (max_concurrency 4)
               and batched (`mehr.Batch(max_size=C)`: the C calls become one forward pass)
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

PLAIN = "embed"
BATCHED = "embed-batched"
VOCAB = 30522


# --- the model --------------------------------------------------------------------------------

Handlers = Tuple[Callable[[bytes], bytes], Callable[[List[bytes]], List[bytes]]]


def build_model(args: argparse.Namespace) -> Handlers:
    """The two handlers of the chosen backend: one call (bytes -> bytes) and a batch of calls
    (their inputs concatenated into one forward pass, the output split back)."""
    if args.backend == "simulated":
        return build_simulated(args)
    return build_torch(args)


def build_simulated(args: argparse.Namespace) -> Handlers:
    """A stand-in device: one forward pass at a time, `sim_ms` + `sim_row_us` per row of
    sleep (which, like a GPU kernel, leaves the GIL free), rows derived from their input."""
    device = threading.Lock()
    row_in = args.seq * 4
    row_out = args.hidden * 2

    def forward(ids: bytes) -> bytes:
        if len(ids) % row_in:
            raise ValueError(f"the input is not whole rows of {args.seq} int32 token ids")
        rows = len(ids) // row_in
        with device:
            time.sleep((args.sim_ms * 1000 + args.sim_row_us * rows) / 1e6)
        return b"".join(hashlib.shake_128(ids[i : i + row_in]).digest(row_out) for i in range(0, len(ids), row_in))

    def embed_batch(inputs: List[bytes]) -> List[bytes]:
        out = forward(b"".join(inputs))
        outputs, at = [], 0
        for data in inputs:
            size = len(data) // row_in * row_out
            outputs.append(out[at : at + size])
            at += size
        return outputs

    return forward, embed_batch


def build_torch(args: argparse.Namespace) -> Handlers:
    import torch
    from torch import nn

    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding(VOCAB, args.hidden)
            self.positions = nn.Embedding(512, args.hidden)
            self.types = nn.Embedding(2, args.hidden)
            self.norm = nn.LayerNorm(args.hidden, eps=1e-12)
            layer = nn.TransformerEncoderLayer(
                d_model=args.hidden,
                nhead=args.heads,
                dim_feedforward=args.hidden * 4,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
            )
            self.layers = nn.TransformerEncoder(layer, num_layers=args.layers, enable_nested_tensor=False)

        def forward(self, ids: "torch.Tensor") -> "torch.Tensor":
            positions = torch.arange(ids.shape[1], device=ids.device)
            hidden = self.words(ids) + self.positions(positions)[None] + self.types.weight[0]
            hidden = self.layers(self.norm(hidden))
            pooled = hidden.mean(dim=1)
            return nn.functional.normalize(pooled.float(), dim=-1)

    model = Encoder().to(device=device, dtype=dtype).eval()
    seq = args.seq

    def forward(ids: "torch.Tensor") -> "torch.Tensor":
        with torch.inference_mode():
            return model(ids.to(device, non_blocking=True).long()).to(torch.float16).cpu()

    def ids_of(data: bytes) -> "torch.Tensor":
        # A view of the input's memory, no copy (torch warns that `bytes` is read-only; the
        # model only reads it).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.frombuffer(data, dtype=torch.int32).view(-1, seq)

    def embed(data: bytes) -> bytes:
        return forward(ids_of(data)).numpy().tobytes()

    def embed_batch(inputs: List[bytes]) -> List[bytes]:
        parts = [ids_of(data) for data in inputs]
        out = forward(torch.cat(parts)).numpy()
        outputs, row = [], 0
        for part in parts:
            outputs.append(out[row : row + part.shape[0]].tobytes())
            row += part.shape[0]
        return outputs

    return embed, embed_batch


def token_ids(batch: int, seq: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return array.array("i", [rng.randrange(VOCAB) for _ in range(batch * seq)]).tobytes()


def same_rows(args: argparse.Namespace, a: bytes, b: bytes) -> bool:
    """Whether two outputs hold the same embeddings (exactly for the simulated device; within
    fp16 rounding for a model, whose kernels may differ with the batch size)."""
    if args.backend == "simulated":
        return a == b
    import torch

    left = torch.frombuffer(bytearray(a), dtype=torch.float16).float()
    right = torch.frombuffer(bytearray(b), dtype=torch.float16).float()
    return left.shape == right.shape and bool(torch.allclose(left, right, atol=2e-2))


# --- the serving process ----------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Serves both functions from one model until stdin closes."""
    import mehr

    embed, embed_batch = build_model(args)
    plain = mehr.function(PLAIN, max_concurrency=args.max_concurrency)(embed)
    policy = mehr.Batch(max_size=args.concurrent, max_wait=args.max_wait_ms / 1000)
    batched = mehr.function(BATCHED, max_concurrency=1, batch=policy)(embed_batch)
    client = mehr.connect(data_dir=args.serve)
    with client.serve(plain, batched) as serving:
        print("ready", flush=True)
        for line in sys.stdin:  # one line per request for the batching counters
            print(json.dumps(serving.batch_stats()), flush=True)


# --- measuring --------------------------------------------------------------------------------


def timed(call: Callable[[], Any], calls: int, threads: int) -> Tuple[float, List[float]]:
    """Runs `call` `calls` times on `threads` threads; (elapsed seconds, latencies in ms)."""
    per_thread = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]
    latencies: List[List[float]] = [[] for _ in range(threads)]
    errors: List[BaseException] = []
    start = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        start.wait()
        try:
            for _ in range(per_thread[index]):
                t0 = time.perf_counter()
                call()
                latencies[index].append((time.perf_counter() - t0) * 1000)
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed, [x for mine in latencies for x in mine]


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
            raise RuntimeError(f"mehrd ({binary}) did not start")
        time.sleep(0.05)
    return process


def stop(process: Optional[subprocess.Popen]) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mehrd", default=os.environ.get("MEHRD_BIN") or shutil.which("mehrd"), help="the mehrd binary (default: $MEHRD_BIN, then PATH)")
    parser.add_argument("--backend", choices=["torch", "simulated"], default="torch", help="the model: torch (default) or a simulated device (no torch needed)")
    parser.add_argument("--sim-ms", type=float, default=3.8, help="simulated device: ms per forward pass")
    parser.add_argument("--sim-row-us", type=float, default=1.7, help="simulated device: us per row of a forward pass")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None, help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--batches", default="1,32,256", help="batch sizes of the direct / via-mehrd rows")
    parser.add_argument("--calls", type=int, default=200, help="calls per measured row")
    parser.add_argument("--warmup", type=int, default=20, help="calls before each row")
    parser.add_argument("--in-flight", type=int, default=4, help="callers in flight for the pipelined rows (and threads for direct)")
    parser.add_argument("--concurrent", type=int, default=8, help="concurrent callers of the batching rows")
    parser.add_argument("--concurrent-batch", type=int, default=32, help="batch size each concurrent caller sends")
    parser.add_argument("--max-concurrency", type=int, default=4, help="max_concurrency of the plain function")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="max_wait of the batched function, ms")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend == "simulated":
        args.device, args.dtype = "simulated", "bytes"
        return args
    try:
        import torch
    except ImportError:
        parser.exit(2, "gpu_serve.py: PyTorch is not installed; install it, or run --backend simulated\n")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dtype is None:
        args.dtype = "fp16" if args.device.startswith("cuda") else "fp32"
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        return serve(args)
    if not args.mehrd or not Path(args.mehrd).exists():
        sys.exit("give the mehrd binary: --mehrd PATH (or MEHRD_BIN)")
    import mehr

    batches = [int(b) for b in args.batches.split(",")]
    if args.backend == "simulated":
        gpu, framework = f"none (simulated device: {args.sim_ms:g} ms + {args.sim_row_us:g} us/row per pass)", "none"
    else:
        import torch

        gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "none"
        framework = torch.__version__
    embed, embed_batch = build_model(args)
    tmp = Path(tempfile.mkdtemp(prefix="mehr-gpu-serve-"))
    daemon = server = None
    figures: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": args.backend,
        "device": args.device,
        "gpu": gpu,
        "dtype": args.dtype,
        "torch": framework,
        "mehr": mehr.__version__,
        "cpus": os.cpu_count(),
        "model": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "seq": args.seq},
        "rows": [],
    }
    # The serving process gets the same model flags.
    forwarded = [
        f"--backend={args.backend}", f"--sim-ms={args.sim_ms}", f"--sim-row-us={args.sim_row_us}",
        *([] if args.backend == "simulated" else [f"--device={args.device}", f"--dtype={args.dtype}"]),
        f"--seq={args.seq}", f"--layers={args.layers}",
        f"--hidden={args.hidden}", f"--heads={args.heads}", f"--concurrent={args.concurrent}",
        f"--max-concurrency={args.max_concurrency}", f"--max-wait-ms={args.max_wait_ms}",
    ]
    try:
        daemon = start_daemon(args.mehrd, tmp / "node")
        server = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *forwarded, "--serve", str(tmp / "node")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdin is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the serving process did not start")
        client = mehr.connect(data_dir=tmp / "node")

        def batch_stats() -> Dict[str, Any]:
            server.stdin.write("stats\n")
            server.stdin.flush()
            return json.loads(server.stdout.readline())[BATCHED]

        print(
            f"# {figures['date']}, backend {args.backend}, device {args.device} ({gpu}), {args.dtype}, torch {framework}, "
            f"mehr {mehr.__version__}, {os.cpu_count()} CPUs; {args.layers} layers x {args.hidden} hidden, "
            f"seq {args.seq}; {args.calls} calls per row"
        )
        print(
            f"| batch | direct p50 | direct emb/s (1 / {args.in_flight} threads) | via mehrd p50 | "
            f"via mehrd emb/s (1 / {args.in_flight} callers) | best via mehrd / best direct |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        for batch in batches:
            payload = token_ids(batch, args.seq)
            expected = embed(payload)
            if len(expected) != batch * args.hidden * 2:
                raise AssertionError(f"the model returned {len(expected)} bytes for {batch} rows")
            if not same_rows(args, client.invoke(PLAIN, payload, timeout=120).output, expected):
                raise AssertionError("the served model's output differs from the direct call's")

            def direct() -> None:
                embed(payload)

            def via_mehrd() -> None:
                if len(client.invoke(PLAIN, payload, timeout=120).output) != len(expected):
                    raise AssertionError("wrong output size")

            timed(direct, args.warmup, 1)
            timed(via_mehrd, args.warmup, 1)
            rates, p50s = {}, {}
            for name, call in (("direct", direct), ("mehrd", via_mehrd)):
                for threads in (1, args.in_flight):
                    elapsed, latencies = timed(call, args.calls, threads)
                    rates[(name, threads)] = len(latencies) * batch / elapsed
                    if threads == 1:
                        p50s[name] = statistics.median(latencies)
            best_direct = max(rates[("direct", 1)], rates[("direct", args.in_flight)])
            best_mehrd = max(rates[("mehrd", 1)], rates[("mehrd", args.in_flight)])
            row = {
                "batch": batch,
                "direct_p50_ms": p50s["direct"],
                "direct_per_s": rates[("direct", 1)],
                "direct_threads_per_s": rates[("direct", args.in_flight)],
                "mehrd_p50_ms": p50s["mehrd"],
                "mehrd_per_s": rates[("mehrd", 1)],
                "mehrd_in_flight_per_s": rates[("mehrd", args.in_flight)],
                "best_ratio": best_mehrd / best_direct,
            }
            figures["rows"].append(row)
            print(
                f"| {batch} | {row['direct_p50_ms']:.2f} ms | {row['direct_per_s']:,.0f} / {row['direct_threads_per_s']:,.0f} | "
                f"{row['mehrd_p50_ms']:.2f} ms | {row['mehrd_per_s']:,.0f} / {row['mehrd_in_flight_per_s']:,.0f} | "
                f"{row['best_ratio']:.0%} |",
                flush=True,
            )

        # Concurrent callers, plain against batched.
        c, b = args.concurrent, args.concurrent_batch
        payload = token_ids(b, args.seq)
        expected_size = len(embed(payload))
        other = token_ids(b, args.seq, seed=1)
        if not same_rows(args, embed(payload), embed_batch([other, payload])[1]):
            raise AssertionError("a call's rows of a merged forward pass differ from the call alone")
        # Through the daemon too: concurrent callers with different inputs each get their own.
        mine = [token_ids(1 + i % 3, args.seq, seed=10 + i) for i in range(c)]
        with ThreadPoolExecutor(c) as pool:
            served = list(pool.map(lambda data: client.invoke(BATCHED, data, timeout=120).output, mine))
        for data, output in zip(mine, served):
            if not same_rows(args, output, embed(data)):
                raise AssertionError("a caller of the batched function got rows that are not its own")

        def caller(function_id: str) -> Callable[[], None]:
            def one() -> None:
                if len(client.invoke(function_id, payload, timeout=120).output) != expected_size:
                    raise AssertionError("wrong output size")

            return one

        before = batch_stats()
        concurrent: Dict[str, Dict[str, float]] = {}
        for name, function_id in (("plain", PLAIN), ("batched", BATCHED)):
            timed(caller(function_id), max(args.warmup, c * 2), c)
            if function_id == BATCHED:
                before = batch_stats()
            elapsed, latencies = timed(caller(function_id), args.calls, c)
            concurrent[name] = {"p50_ms": statistics.median(latencies), "per_s": len(latencies) * b / elapsed}
        after = batch_stats()
        batches_run = after["batches"] - before["batches"]
        mean_batch = (after["calls"] - before["calls"]) / batches_run if batches_run else 0.0
        if mean_batch <= 1.0:
            raise AssertionError(f"{c} concurrent callers were not merged ({mean_batch:.2f} calls per handler call)")
        gain = concurrent["batched"]["per_s"] / concurrent["plain"]["per_s"]
        figures["concurrent"] = {
            "callers": c,
            "batch": b,
            "plain": concurrent["plain"],
            "batched": concurrent["batched"],
            "calls_per_batch": mean_batch,
            "gain": gain,
            "max_wait_ms": args.max_wait_ms,
        }
        print()
        print(f"| {c} callers x batch {b} | p50 | emb/s | calls per handler call |")
        print("|---|---:|---:|---:|")
        print(f"| plain (max_concurrency {args.max_concurrency}) | {concurrent['plain']['p50_ms']:.2f} ms | {concurrent['plain']['per_s']:,.0f} | 1 |")
        print(
            f"| batched (Batch(max_size={c}, max_wait={args.max_wait_ms:g} ms)) | {concurrent['batched']['p50_ms']:.2f} ms | "
            f"{concurrent['batched']['per_s']:,.0f} | {mean_batch:.1f} |"
        )
        print(f"| **batched / plain** | | **{gain:.2f}x** | |")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        if server is not None and server.stdin is not None:
            server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        stop(server)
        stop(daemon)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
