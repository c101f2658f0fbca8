"""What this proxy is: its version, the commit it was built from, the scan engines it has.

``dlp-proxy --version`` prints it, the proxy logs it at start-up and exports it as metric
labels, so an operator can tell a proxy on the compiled engine (hyperscan and the C pass,
``dlp_addon/detect/_numscan.c``) from one that lost the C pass in packaging and runs its
pure-Python twin, several times slower. The commit comes from ``_commit.txt``, written into a
built package by ``setup.py``, or from git when the package runs from a checkout.
"""

from __future__ import annotations

import functools
import importlib
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dlp_addon import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Engines:
    """The compiled parts this installation has: ``hyperscan`` is the binding's version,
    ``c_pass`` says whether ``_numscan`` imports; each ``None`` when missing, with ``why``."""

    hyperscan: str | None
    c_pass: str | None
    why: tuple[str, ...] = ()

    @property
    def compiled(self) -> bool:
        """Both compiled passes present: the engine the scanner uses unless told otherwise."""
        return self.hyperscan is not None and self.c_pass is not None


@functools.cache
def engines() -> Engines:
    why: list[str] = []
    hs: str | None = None
    c_pass: str | None = None
    try:
        module = importlib.import_module("hyperscan")
        hs = str(getattr(module, "__version__", "unknown version"))
    except ImportError as e:
        why.append(f"hyperscan does not import: {e}")
    try:
        numscan = importlib.import_module("dlp_addon.detect._numscan")
        c_pass = Path(numscan.__file__ or "_numscan").name
    except ImportError as e:
        why.append(f"the C pass (dlp_addon.detect._numscan) does not import: {e}")
    return Engines(hs, c_pass, tuple(why))


@functools.cache
def commit() -> str:
    """The commit this package was built from (``+dirty`` with local changes), or
    ``unknown``: a built package reads ``_commit.txt``; a checkout asks git."""
    built = PACKAGE_DIR / "_commit.txt"
    if built.is_file():
        return built.read_text("ascii").strip() or "unknown"
    root = PACKAGE_DIR.parent
    if not ((root / "setup.py").is_file() and (root / ".git").exists()):
        return "unknown"  # installed without a record: never ask git about an unrelated repo
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def describe() -> str:
    """The ``dlp-proxy --version`` text: one fact a line."""
    e = engines()
    lines = [
        f"dlp-proxy {__version__}",
        f"commit: {commit()}",
        f"python: {platform.python_version()} ({platform.python_implementation()})",
        f"mitmproxy: {_dist_version('mitmproxy')}",
        f"hyperscan: {e.hyperscan or 'missing'}",
        f"C pass: {'built (' + e.c_pass + ')' if e.c_pass else 'missing'}",
        "scan engine: "
        + ("compiled (hyperscan + C pass)" if e.compiled else "pure Python only (slow)"),
        *e.why,
    ]
    return "\n".join(lines)
