"""The OCI image (deploy/container/Containerfile) built with podman and run as a user would:
the node starts as a non-root user, answers gRPC health through the published port (TLS, as the
API is off the container's loopback), takes the bearer token, keeps its identity in the volume
across a restart and a new container, and stops cleanly on SIGTERM."""

import json
import os
import socket
import subprocess
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from podman import free_port, podman, wait_until

DATA_DIR = "/var/lib/mehr"


def health_status(port: int, cert: bytes, service: str = "") -> str:
    """gRPC health of `service`, checked over TLS with the node's own certificate as the CA."""
    credentials = grpc.ssl_channel_credentials(root_certificates=cert)
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def node_info(container: str) -> dict:
    """`mehr --json info` run inside the container (Unix socket, MEHR_DATA_DIR from the image)."""
    return json.loads(podman("exec", container, "mehr", "--json", "info").stdout)


@pytest.fixture
def volume():
    name = f"mehr-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def start(image: str, volume: str, api_port: int, mesh_port: int) -> str:
    name = f"mehr-test-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "-d", "--name", name,
        "-v", f"{volume}:{DATA_DIR}",
        "-p", f"127.0.0.1:{api_port}:7440",
        "-p", f"127.0.0.1:{mesh_port}:4242",
        image,
    )
    wait_until(f"{name} to serve on its socket", lambda: node_info(name), timeout=60)
    return name


def test_image_metadata(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert DATA_DIR in config["Volumes"]
    assert set(config["ExposedPorts"]) == {"4242/tcp", "4243/udp", "7440/tcp"}
    assert config["StopSignal"] == "SIGTERM"
    # Docker format keeps HEALTHCHECK (build-image.sh builds with --format docker).
    assert inspected["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/mehr", "info"]
    assert config["Entrypoint"] == ["/usr/local/bin/mehrd"]


def test_container_serves_and_keeps_its_identity(image, binaries, volume, tmp_path):
    api_port, mesh_port = free_port(), free_port()
    name = start(image, volume, api_port, mesh_port)
    second = None
    try:
        info = node_info(name)
        node_id = info["node_id"]
        assert info["data_dir"] == DATA_DIR
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("top", name, "user").stdout.split()[1] == "mehr"

        # Health through the published port: TLS with the node's certificate, no token.
        cert = podman("exec", name, "cat", f"{DATA_DIR}/tls/cert.pem").stdout.encode()
        for service in ("", "mehr.v1.NodeService"):
            status = wait_until(
                f"health of {service!r} via port {api_port}",
                lambda s=service: health_status(api_port, cert, s),
                timeout=30,
            )
            assert status == "SERVING"

        # The API beyond health needs the bearer token from the volume.
        cert_file = tmp_path / "cert.pem"
        cert_file.write_bytes(cert)
        token = podman("exec", name, "cat", f"{DATA_DIR}/api.token").stdout.strip()
        endpoint = ["--endpoint", f"https://127.0.0.1:{api_port}", "--ca-cert", cert_file]
        mehr = binaries / "mehr"
        refused = subprocess.run(
            [mehr, *endpoint, "--json", "info"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "MEHR_TOKEN": "0" * 64},
        )
        assert refused.returncode != 0 and "token" in refused.stderr.lower(), refused
        remote = subprocess.run(
            [mehr, *endpoint, "--json", "info"],
            capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "MEHR_TOKEN": token},
        )
        assert json.loads(remote.stdout)["node_id"] == node_id

        # The mesh port is published too.
        with socket.create_connection(("127.0.0.1", mesh_port), timeout=5):
            pass

        assert podman("healthcheck", "run", name, check=False).returncode == 0

        # SIGTERM (podman stop) drains and flushes: exit status 0 and the daemon's last word.
        podman("stop", "-t", "30", name)
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0
        assert "stopped cleanly" in podman("logs", name).stderr

        # Same container restarted, then a new container on the same volume: same node.
        podman("start", name)
        assert wait_until("restart", lambda: node_info(name))["node_id"] == node_id
        podman("rm", "-f", "-t", "30", name)
        second = start(image, volume, free_port(), free_port())
        assert node_info(second)["node_id"] == node_id
    finally:
        for container in (name, second):
            if container:
                podman("rm", "-f", "-t", "5", container, check=False)
