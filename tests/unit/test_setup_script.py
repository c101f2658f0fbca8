"""``scripts/start`` installs only what running needs; ``scripts/test`` adds the test tools.

The set-up script is run for real in a scratch copy of the checkout, in its ``--dry-run`` mode
(which prints every package its mode wants, and whether it would install it or the project);
the start and test scripts are run with a stand-in set-up that records how it was called."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "dlp_addon/detect/_numscan.c",
    "dlp_addon/extract/_biffwalk.c",
    "dlp_addon/extract/_runscan.c",
    "dlp_addon/detect/validator_table.py",
)
RUNTIME = {"gcc", "libssl-dev", "tesseract-ocr", "tesseract-ocr-chi-sim"}
TEST_ONLY = {
    "curl",
    "prometheus",
    "systemd",
    "redis-server",
    "logrotate",
    "chromium",
    "libnss3-tools",
    "fonts-wqy-zenhei",
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The set-up script and what it hashes, with a .venv whose Python is this one."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "setup", tmp_path / "scripts" / "setup")
    for name in BUILD_INPUTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


def _plan(checkout: Path, *args: str) -> tuple[set[str], str]:
    """The Debian packages a mode wants, and what it says of the project install."""
    out = subprocess.run(
        [str(checkout / "scripts" / "setup"), *args, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    packages, pip = set(), ""
    for line in out.splitlines():
        what = line.split("): ", 1)[1]
        if what.startswith("apt "):
            packages.add(what[4:].split(":")[0])
        elif what.startswith("pip install "):
            pip = what
    return packages, pip


def _stamp(checkout: Path, kind: str) -> None:
    digest = hashlib.sha256(b"".join((checkout / n).read_bytes() for n in BUILD_INPUTS))
    (checkout / ".venv" / ".dlp-installed").write_text(f"{digest.hexdigest()} {kind}\n")


def test_running_wants_no_test_tools_and_the_tests_want_them_all(checkout: Path) -> None:
    run, run_pip = _plan(checkout, "run")
    workers, workers_pip = _plan(checkout, "workers")
    tests, test_pip = _plan(checkout, "test")
    assert run == RUNTIME
    assert workers == RUNTIME | {"haproxy", "socat"}
    assert tests == RUNTIME | {"haproxy", "socat"} | TEST_ONLY
    assert run_pip.startswith("pip install -e .:") and workers_pip == run_pip
    assert test_pip.startswith("pip install -e .[test]:")
    assert _plan(checkout) == (tests, test_pip)  # no argument: everything, as before the split


def test_the_stamp_reinstalls_only_what_changed_or_what_is_missing(checkout: Path) -> None:
    assert _plan(checkout, "run")[1].endswith("would install")  # never installed
    _stamp(checkout, "run")
    assert _plan(checkout, "run")[1].endswith(": installed")
    assert _plan(checkout, "test")[1].endswith("would install")  # no test tools yet
    _stamp(checkout, "test")
    assert _plan(checkout, "run")[1].endswith(": installed")  # the test set holds the runtime
    assert _plan(checkout, "test")[1].endswith(": installed")
    for source in (
        "dlp_addon/detect/_numscan.c",
        "dlp_addon/extract/_biffwalk.c",
        "dlp_addon/extract/_runscan.c",
    ):
        _stamp(checkout, "test")
        with (checkout / source).open("a") as c:
            c.write("/* changed */\n")
        assert _plan(checkout, "run")[1].endswith("would install")
        assert _plan(checkout, "test")[1].endswith("would install")


@pytest.mark.parametrize(
    ("script", "mode", "tools"),
    [
        ("start", "run", ["dlp-proxy"]),
        ("start-workers", "workers", ["dlp-workers"]),
        ("test", "test", ["ruff", "mypy", "python"]),
    ],
)
def test_each_command_sets_up_its_own_mode(
    tmp_path: Path, script: str, mode: str, tools: list[str]
) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / script, tmp_path / "scripts" / script)
    calls = tmp_path / "calls"
    for fake in [tmp_path / "scripts" / "setup"] + [tmp_path / ".venv/bin" / t for t in tools]:
        fake.write_text(f'#!/bin/sh\necho "{fake.name} $*" >> {calls}\n')
        fake.chmod(0o755)
    env = {**os.environ, "DLP_HMAC_KEY": "k" * 32}
    subprocess.run([str(tmp_path / "scripts" / script), "2"], env=env, timeout=60, check=True)
    assert calls.read_text().splitlines()[0] == f"setup {mode}"
