"""Connecting: zero-argument discovery of the local daemon, explicit endpoints, tokens, TLS,
and the errors when something is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mehr
from conftest import Daemon


def test_zero_arguments_find_the_local_daemon(mehrd_bin, workdir):
    # The default data dir is $XDG_DATA_HOME/mehr, as for the CLI: start the daemon there and
    # connect with no arguments and no MEHR_* variables.
    xdg = workdir / "xdg"
    daemon = Daemon(mehrd_bin, xdg / "mehr")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEHR_")}
        env["XDG_DATA_HOME"] = str(xdg)
        script = "import mehr; c = mehr.connect(); print(c.target); print(c.info().data_dir)"
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        target, data_dir = out.stdout.split()
        assert target == f"unix:{xdg / 'mehr' / 'mehrd.sock'}"
        assert Path(data_dir) == (xdg / "mehr").resolve()
    finally:
        daemon.stop()


def test_environment_variables_pick_the_daemon(daemon):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEHR_")}
    env.update(MEHR_ENDPOINT=daemon.address, MEHR_TOKEN=daemon.token)
    script = "import mehr; c = mehr.connect(); print(c.target, c.info().node_id)"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    target, node_id = out.stdout.split()
    assert target == f"http://{daemon.address}"
    assert node_id == daemon.client().info().node_id


def test_node_info_describes_the_node(client, daemon):
    info = client.info()
    assert len(info.node_id) == 32 and int(info.node_id, 16) >= 0
    assert isinstance(info.ed25519_public_key, bytes) and len(info.ed25519_public_key) == 32
    assert isinstance(info.x25519_public_key, bytes) and len(info.x25519_public_key) == 32
    assert info.participation_level == "l2_full"
    assert Path(info.data_dir) == daemon.data_dir.resolve()
    kinds = {(e.kind, e.address, e.requires_token) for e in info.api_endpoints}
    assert ("tcp", daemon.address, True) in kinds
    assert any(kind == "unix" for kind, _, _ in kinds)
    assert info.version and info.started_at_unix_ms > 0
    assert "NodeInfo(node_id=" in repr(info)


def test_tcp_with_an_explicit_token(daemon):
    client = mehr.connect(daemon.address, token=daemon.token)
    assert client.target == f"http://{daemon.address}"
    assert client.info().node_id == daemon.client().info().node_id


def test_tcp_finds_the_token_in_the_data_dir(daemon):
    client = mehr.connect(f"http://{daemon.address}", data_dir=daemon.data_dir)
    assert len(client.info().node_id) == 32


def test_a_wrong_token_is_unauthenticated(daemon):
    client = mehr.connect(daemon.address, token="00" * 32)
    with pytest.raises(mehr.Unauthenticated) as raised:
        client.info()
    assert raised.value.code is mehr.StatusCode.UNAUTHENTICATED
    assert "token" in raised.value.message


def test_tcp_without_any_token_names_the_missing_file(daemon, workdir):
    with pytest.raises(mehr.Unauthenticated) as raised:
        mehr.connect(daemon.address, data_dir=workdir / "elsewhere")
    assert str(workdir / "elsewhere" / "api.token") in raised.value.message


def test_no_daemon_is_unavailable_with_a_hint(workdir):
    with pytest.raises(mehr.Unavailable) as raised:
        mehr.connect(data_dir=workdir / "nothing")
    assert "is mehrd running" in raised.value.message
    assert isinstance(raised.value, ConnectionError)


def test_a_malformed_endpoint_is_an_invalid_argument():
    with pytest.raises(mehr.InvalidArgument, match="ftp://x:1"):
        mehr.connect("ftp://x:1")
    with pytest.raises(mehr.InvalidArgument):
        mehr.connect("127.0.0.1:7440", connect_timeout=-1)


def test_tls_with_the_nodes_certificate(mehrd_bin, workdir):
    daemon = Daemon(mehrd_bin, workdir / "tls", env={"MEHR_API_TLS": "always"})
    try:
        cert = daemon.data_dir / "tls" / "cert.pem"
        client = mehr.connect(f"https://{daemon.address}", token=daemon.token, ca_cert=cert)
        info = client.info()
        assert any(e.tls and e.address == daemon.address for e in info.api_endpoints)
        # Plaintext against a TLS listener fails as a connection problem, not a hang.
        with pytest.raises(mehr.MehrError):
            mehr.connect(daemon.address, token=daemon.token, connect_timeout=2).info()
    finally:
        daemon.stop()


def test_async_connect_and_info(daemon):
    import asyncio

    async def main():
        client = await mehr.connect_async(data_dir=daemon.data_dir)
        assert client.target.startswith("unix:")
        return (await client.info()).node_id

    assert asyncio.run(main()) == daemon.client().info().node_id
