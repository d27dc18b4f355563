"""Fixtures of the deployment tests: the release binaries, podman, the locally made images."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import podman  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def require(tool: str) -> str:
    """The path of `tool`; skips the test when it is missing, or fails under MEHR_DEPLOY_STRICT=1
    (tests/run.sh sets it: there deploy/setup.sh has installed every tool)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (deploy/setup.sh deploy installs it)"
        if os.environ.get("MEHR_DEPLOY_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def binaries(tmp_path_factory) -> Path:
    """A directory with stripped copies of the release mehrd and mehr (MEHRD_BIN names mehrd;
    mehr is next to it)."""
    mehrd = Path(os.environ.get("MEHRD_BIN", ROOT / "target/release/mehrd"))
    mehr = mehrd.with_name("mehr")
    for binary in (mehrd, mehr):
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: build with cargo build --release, or set MEHRD_BIN")
    strip = require("strip")
    out = tmp_path_factory.mktemp("bin")
    for binary in (mehrd, mehr):
        subprocess.run([strip, "-o", out / binary.name, binary], check=True)
    return out


@pytest.fixture(scope="session")
def podman_ready() -> None:
    """podman with the settings this host needs (deploy/container/podman-env.sh)."""
    require("podman")
    podman.configure()


@pytest.fixture(scope="session")
def base_image(podman_ready) -> str:
    """localhost/mehr-base:bookworm, made by make-base.sh (debootstrap) when missing."""
    require("debootstrap")
    subprocess.run([ROOT / "deploy/container/make-base.sh", "base"], check=True)
    return "localhost/mehr-base:bookworm"


@pytest.fixture(scope="session")
def image(base_image, binaries) -> str:
    """The mehrd image, built by build-image.sh from the release binaries (the Containerfile's
    prebuilt path; the compiling builder stage is the manual check in docs/OPERATIONS.md)."""
    tag = "localhost/mehrd:test"
    subprocess.run(
        [ROOT / "deploy/container/build-image.sh", "--prebuilt", binaries, tag],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    yield tag
    podman.podman("rmi", "-f", tag, check=False)
