"""Fixtures: real mehrd processes on temp data dirs and free ports, stopped after each test.

The daemon binary comes from MEHRD_BIN (tests/run.sh sets it), else from the shared cargo
target dir.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import pytest

import mehr

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what: str, check: Callable[[], Optional[T]], timeout: float = 20.0) -> T:
    """Polls `check` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mehrd_binary() -> str:
    binary = os.environ.get("MEHRD_BIN")
    if binary and Path(binary).exists():
        return binary
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/mehr/target"))
    candidate = target / "release" / "mehrd"
    if candidate.exists():
        return str(candidate)
    pytest.fail("set MEHRD_BIN to the mehrd binary (tests/run.sh does)")


class Daemon:
    """One mehrd process on its own data dir; can be stopped and started again."""

    def __init__(self, binary: str, data_dir: Path, config: Optional[str] = None, env: Optional[dict] = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.config_file: Optional[Path] = None
        if config is not None:
            self.config_file = data_dir.parent / f"{data_dir.name}.toml"
            self.config_file.write_text(config)
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        args = [self.binary, "--data-dir", str(self.data_dir), "--api-listen", self.address]
        env = {**os.environ, "MEHR_LOG_LEVEL": "info", **self.extra_env}
        env.pop("MEHR_CONFIG", None)
        for name in ("MEHR_ENDPOINT", "MEHR_TOKEN", "MEHR_DATA_DIR", "MEHR_CA_CERT", "MEHR_TLS_DOMAIN"):
            env.pop(name, None)
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        if self.config_file is None or "interfaces" not in self.config_file.read_text():
            # No mesh interfaces: parallel daemons would fight over the default ports.
            env["MEHR_INTERFACES"] = "[]"
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mehrd exited early:\n{self.logs()}")
            if self.socket.exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"mehrd did not start:\n{self.logs()}")

    @property
    def socket(self) -> Path:
        return self.data_dir / "mehrd.sock"

    @property
    def token(self) -> str:
        return (self.data_dir / "api.token").read_text().strip()

    def client(self) -> mehr.Client:
        return mehr.connect(data_dir=self.data_dir)

    async def async_client(self) -> mehr.AsyncClient:
        return await mehr.connect_async(data_dir=self.data_dir)

    def logs(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mehrd_bin() -> str:
    return mehrd_binary()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mehr-py-") as tmp:
        yield Path(tmp)


@pytest.fixture
def daemon(mehrd_bin: str, workdir: Path) -> Iterator[Daemon]:
    node = Daemon(mehrd_bin, workdir / "node")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def client(daemon: Daemon) -> mehr.Client:
    return daemon.client()


@pytest.fixture
def linked_daemons(mehrd_bin: str, workdir: Path) -> Iterator[List[Daemon]]:
    """Two daemons connected by a TCP mesh interface (A serves, B dials it)."""
    port = free_port()
    a = Daemon(
        mehrd_bin,
        workdir / "a",
        config=f'[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = {port}\n',
    )
    b = Daemon(
        mehrd_bin,
        workdir / "b",
        config=f'[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = {port}\n',
    )
    try:
        yield [a, b]
    finally:
        b.stop()
        a.stop()


def function_ids(client: mehr.Client) -> List[str]:
    return [f.function_id for f in client.functions()]
