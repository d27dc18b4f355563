"""Fixtures: real mehrd processes on temp data dirs and free ports, stopped after each test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One mehrd process."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"mehrd-{self.port}.log", "w+")
        self.process = subprocess.Popen(
            [binary, "--data-dir", str(data_dir), "--api-listen", self.address],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            # No mesh interfaces: parallel daemons would fight over the default ports.
            env={**os.environ, "MEHR_INTERFACES": "[]"},
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.time() + 30
        socket_path = self.data_dir / "mehrd.sock"
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mehrd exited early:\n{self.logs()}")
            if socket_path.exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"mehrd did not start:\n{self.logs()}")

    @property
    def token(self) -> str:
        return (self.data_dir / "api.token").read_text().strip()

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def mehrd_bin() -> str:
    binary = os.environ.get("MEHRD_BIN")
    if not binary or not Path(binary).exists():
        pytest.fail("set MEHRD_BIN to the mehrd binary (tests/run.sh does)")
    return binary


@pytest.fixture
def daemon(mehrd_bin: str):
    with tempfile.TemporaryDirectory() as tmp:
        node = Daemon(mehrd_bin, Path(tmp) / "node")
        try:
            yield node
        finally:
            node.stop()


@pytest.fixture(scope="session")
def mehr_stubs(tmp_path_factory):
    """Python stubs generated from proto/ with grpcio-tools, importable as mehr.v1.*_pb2."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "mehr" / "v1").glob("*.proto"))
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    return out
