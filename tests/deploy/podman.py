"""Small helpers around the podman CLI for the deployment tests."""

import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def configure() -> None:
    """Sets CONTAINERS_CONF as deploy/container/podman-env.sh decides for this host."""
    script = f'. "{ROOT}/deploy/container/podman-env.sh" && podman_env && echo "${{CONTAINERS_CONF:-}}"'
    conf = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True)
    if conf.stdout.strip():
        os.environ["CONTAINERS_CONF"] = conf.stdout.strip()


def podman(*args, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `podman ARGS`, capturing its output; raises with that output when it fails."""
    done = subprocess.run(
        ["podman", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, check, timeout: float = 60, every: float = 0.5):
    """Calls `check` until it returns a true value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - kept for the failure message
            last_error = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error}")
