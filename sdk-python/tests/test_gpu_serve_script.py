"""benches/gpu_serve.py, the GPU measurement of issue 23, run end to end on its simulated
device (no torch, no GPU): its daemon and serving process start, every row is measured, its
self-checks pass (outputs split back to the right callers, concurrent calls merged) and it
writes the figures it prints. The figures themselves are not checked: timings are for
BENCHMARKS.md, not for tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, mehrd_binary

SCRIPT = ROOT / "sdk-python" / "benches" / "gpu_serve.py"


def test_the_gpu_script_runs_and_checks_itself_on_a_simulated_device(tmp_path):
    out = tmp_path / "figures.json"
    # A small, fast stand-in: 1 ms per forward pass, 16-token rows of 32-d outputs.
    args = [
        sys.executable, str(SCRIPT), "--mehrd", mehrd_binary(), "--backend", "simulated",
        "--sim-ms", "1", "--seq", "16", "--hidden", "32", "--batches", "1,8",
        "--calls", "16", "--warmup", "2", "--in-flight", "2",
        "--concurrent", "4", "--concurrent-batch", "2", "--max-wait-ms", "5", "--json", str(out),
    ]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    assert figures["backend"] == "simulated" and figures["gpu"].startswith("none (simulated device")
    assert [row["batch"] for row in figures["rows"]] == [1, 8]
    for row in figures["rows"]:
        assert row["direct_per_s"] > 0 and row["mehrd_per_s"] > 0 and row["best_ratio"] > 0
    concurrent = figures["concurrent"]
    assert (concurrent["callers"], concurrent["batch"]) == (4, 2)
    # The script itself fails unless the four callers were merged; it reports by how much.
    assert 1 < concurrent["calls_per_batch"] <= 4
    assert "batched / plain" in run.stdout and "| 8 |" in run.stdout


def test_without_torch_the_script_says_what_to_do():
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("torch is installed: the default backend runs")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--mehrd", mehrd_binary()], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "PyTorch is not installed; install it, or run --backend simulated" in run.stderr
