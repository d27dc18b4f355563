"""The API guard guards: buf lint passes on proto/, buf breaking passes against the release
image, and buf breaking fails when a copy of the protos is changed in a breaking way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "proto" / "release" / "mehr-v1.binpb"


@pytest.fixture
def buf() -> str:
    binary = os.environ.get("MEHR_BUF")
    if not binary or not Path(binary).exists():
        pytest.fail("set MEHR_BUF to the buf binary (tests/run.sh does; deploy/setup.sh test installs it)")
    return binary


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of buf.yaml and the protos, to change without touching the repository."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto" / "mehr", tmp_path / "proto" / "mehr")
    return tmp_path


def run(buf: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([buf, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def breaking(buf: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(buf, cwd, "breaking", "--against", str(IMAGE), "--error-format", "json")


def rules(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The rule ids of the problems buf reported (one JSON object a line)."""
    return {json.loads(line)["type"] for line in result.stdout.splitlines() if line.strip()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_the_protos_lint_clean_and_match_the_release(buf, workspace):
    lint = run(buf, workspace, "lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    unchanged = breaking(buf, workspace)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr


def test_an_added_field_is_not_breaking(buf, workspace):
    edit(
        workspace / "proto" / "mehr" / "v1" / "storage.proto",
        "message StatObjectRequest {\n",
        "message StatObjectRequest {\n  // A field added later.\n  bool include_placement = 99;\n",
    )
    result = breaking(buf, workspace)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "old", "new", "rule"),
    [
        (
            "a renamed method",
            "rpc GetObject(GetObjectRequest)",
            "rpc FetchObject(GetObjectRequest)",
            "RPC_NO_DELETE",
        ),
        (
            "a field's type changed",
            "  // The object id (32 bytes).\n  bytes id = 1;\n}\n\n// StatObjectResponse",
            "  // The object id (32 bytes).\n  string id = 1;\n}\n\n// StatObjectResponse",
            "FIELD_SAME_TYPE",
        ),
        (
            "a field renumbered",
            "  uint32 page_size = 1;\n  // `next_page_token` of the previous page",
            "  uint32 page_size = 5;\n  // `next_page_token` of the previous page",
            "FIELD_NO_DELETE",
        ),
    ],
)
def test_a_breaking_change_fails(buf, workspace, change, old, new, rule):
    edit(workspace / "proto" / "mehr" / "v1" / "storage.proto", old, new)
    result = breaking(buf, workspace)
    assert result.returncode != 0, f"buf breaking missed {change}"
    assert rule in rules(result), result.stdout + result.stderr


def test_lint_catches_an_unconventional_name(buf, workspace):
    edit(
        workspace / "proto" / "mehr" / "v1" / "storage.proto",
        "rpc StatObject(StatObjectRequest) returns (StatObjectResponse);",
        "rpc StatObject(StatObjectRequest) returns (ObjectInfo);",
    )
    result = run(buf, workspace, "lint", "--error-format", "json")
    assert result.returncode != 0
    assert "RPC_RESPONSE_STANDARD_NAME" in rules(result), result.stdout + result.stderr
