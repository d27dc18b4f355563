"""The set-up's decisions (deploy/lib/detect.sh, deploy/setup.sh), fed the library lists of the
project's fresh machine image and of a prepared one (tests/setup/fixtures, captured with
`ldconfig -p` and `ls -1d /usr/lib/llvm-14/lib/*` before and after `apt-get install libclang-dev`).

The fresh image ships libclang-cpp.so.14, the C++ interface library bindgen cannot load; a check
that matched any "libclang" took it for libclang and made the README's first command fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DETECT = ROOT / "deploy" / "lib" / "detect.sh"
FIXTURES = Path(__file__).parent / "fixtures"


def listed(text: str) -> bool:
    run = subprocess.run(
        ["bash", "-c", f'. "{DETECT}"; libclang_listed'], input=text, text=True, check=False
    )
    assert run.returncode in (0, 1), run
    return run.returncode == 0


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_fresh_image_has_no_libclang_bindgen_can_load() -> None:
    assert "libclang-cpp.so.14" in fixture("ldconfig-p.fresh-image.txt")
    assert not listed(fixture("ldconfig-p.fresh-image.txt"))
    assert not listed(fixture("llvm-lib.fresh-image.txt"))


def test_the_prepared_image_has_libclang() -> None:
    assert listed(fixture("ldconfig-p.prepared.txt"))
    assert listed(fixture("llvm-lib.prepared.txt"))


@pytest.mark.parametrize(
    "name,loadable",
    [
        ("/usr/lib/llvm-14/lib/libclang.so", True),
        ("/usr/lib/llvm-14/lib/libclang.so.1", True),
        ("/usr/lib/llvm-14/lib/libclang-14.0.6.so", True),
        ("\tlibclang-14.so.13 (libc6,x86-64) => /lib/x86_64-linux-gnu/libclang-14.so.13", True),
        ("\tlibclang-cpp.so.14 (libc6,x86-64) => /lib/x86_64-linux-gnu/libclang-cpp.so.14", False),
        ("/usr/lib/llvm-14/lib/libclang-cpp.so", False),
        ("/usr/lib/llvm-14/lib/libclangBasic.a", False),
        ("/usr/lib/llvm-14/lib/libclang.a", False),
        ("/usr/lib/x86_64-linux-gnu/libclang-rt.so", False),
    ],
)
def test_names_are_judged_the_way_clang_sys_searches(name: str, loadable: bool) -> None:
    assert listed(name + "\n") is loadable


class FakeMachine:
    """deploy/setup.sh run against a machine described by the fixtures: `ldconfig` and `apt-get`
    are stand-ins on PATH, the LLVM tree lives under MEHR_SETUP_SYSROOT, and an install of
    libclang-dev turns the fresh lists into the prepared ones (unless `installs` is off)."""

    def __init__(self, tmp: Path, image: str, installs: bool = True) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.bin = tmp / "bin"
        self.sysroot = tmp / "sysroot"
        for d in (self.state, self.bin, self.sysroot):
            d.mkdir()
        shutil.copy(FIXTURES / f"ldconfig-p.{image}.txt", self.state / "ldconfig.txt")
        self._lay_out_llvm(image)
        (self.state / "apt.log").touch()
        self._script("ldconfig", 'cat "$FAKE_STATE/ldconfig.txt"')
        self._script(
            "apt-get",
            'echo "$*" >> "$FAKE_STATE/apt.log"\n'
            'case " $* " in *" install "*libclang-dev*)\n'
            '  [ "$FAKE_INSTALLS" = 1 ] || exit 0\n'
            '  cp "$FAKE_FIXTURES/ldconfig-p.prepared.txt" "$FAKE_STATE/ldconfig.txt"\n'
            '  while read -r f; do mkdir -p "$FAKE_SYSROOT$(dirname "$f")"; touch "$FAKE_SYSROOT$f"; done'
            ' < "$FAKE_FIXTURES/llvm-lib.prepared.txt";;\nesac',
        )
        self._script("sudo", 'exec "$@"')
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_STATE": str(self.state),
            "FAKE_FIXTURES": str(FIXTURES),
            "FAKE_SYSROOT": str(self.sysroot),
            "FAKE_INSTALLS": "1" if installs else "0",
            "MEHR_SETUP_SYSROOT": str(self.sysroot),
            "MEHR_CACHE": str(tmp / "cache"),
        }
        self.env.pop("LIBCLANG_PATH", None)

    def _lay_out_llvm(self, image: str) -> None:
        for line in fixture(f"llvm-lib.{image}.txt").split():
            path = self.sysroot / line.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def _script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)

    def setup(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "deploy" / "setup.sh"), "build"],
            env=self.env, text=True, capture_output=True, timeout=120, check=False,
        )

    def apt_calls(self) -> list[str]:
        return (self.state / "apt.log").read_text().splitlines()


def test_setup_installs_libclang_on_the_fresh_image(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path, "fresh-image")
    run = machine.setup()
    assert run.returncode == 0, run.stderr
    installs = [c for c in machine.apt_calls() if " install " in f" {c} "]
    assert len(installs) == 1 and "libclang-dev" in installs[0].split(), machine.apt_calls()


def test_setup_leaves_a_prepared_machine_alone(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path, "prepared")
    run = machine.setup()
    assert run.returncode == 0, run.stderr
    assert not any("libclang" in c for c in machine.apt_calls()), machine.apt_calls()


def test_setup_stops_at_once_when_the_install_gives_no_libclang(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path, "fresh-image", installs=False)
    run = machine.setup()
    assert run.returncode == 1
    assert "no libclang that bindgen can load" in run.stderr
