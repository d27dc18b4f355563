"""The pure-Python example runs against a real daemon (its Ctrl-C path is in test_serving)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_hello_service_demo(daemon, client):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEHR_")}
    env["MEHR_DATA_DIR"] = str(daemon.data_dir)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "hello_service.py"), "--demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"serving greet, word-stats, countdown on node {client.info().node_id}"
    assert lines[1] == "Hello, Ada!"
    assert lines[2] == "{'words': 4, 'characters': 19, 'longest': 'quick'}"
    assert lines[3] == "countdown: 3 2 1"
    assert lines[4] == "stopped; still offered: []"
