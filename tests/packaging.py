"""The package as an operator gets it: a wheel built from the sources alone, installed (not
editable) into a fresh venv outside the checkout, with the interpreters scripts/setup may pick.

Dependencies come from a wheelhouse kept in ``~/.cache/dlp-proxy-tests`` (one per Python
version and dependency list, filled once from PyPI through pip's own cache); every install
then runs ``--no-index --find-links`` against it, so a test takes seconds, not minutes, and
installs exactly what PyPI would give. Nothing is built or written inside the checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlp-proxy-tests"
# What scripts/setup's find_python looks at, newest first.
MINORS = ("3.14", "3.13", "3.12")
PIP_TIMEOUT = 600


def _version_of(python: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def find_interpreter(minor: str) -> Path | None:
    """Python ``minor`` where scripts/setup looks: ``python3.X`` on PATH (a pyenv shim that
    does not run counts as absent), else ``$PYENV_ROOT/versions/3.X.*`` (newest first)."""
    on_path = shutil.which(f"python{minor}")
    if on_path and _version_of(Path(on_path)) == minor:
        return Path(on_path)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(
        root.glob(f"{minor}.*/bin/python3"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parts[-3].split(".")],
        reverse=True,
    )
    for candidate in found:
        if _version_of(candidate) == minor:
            return candidate
    return None


def run(cmd: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise with its output's tail (build logs hold no identifiers)."""
    done = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n"
            + (done.stdout + done.stderr)[-4000:]
        )
    return done


def head_commit() -> str:
    return run(["git", "rev-parse", "HEAD"], cwd=REPO).stdout.strip()


def copy_sources(dest: Path) -> Path:
    """What a source distribution holds, copied from the checkout (no build outputs)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "dlp_addon",
        dest / "dlp_addon",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "_commit.txt"),
    )
    return dest


def build_wheel(python: Path, workdir: Path) -> Path:
    """The wheel, C pass included, built by ``python`` from a copy of the sources."""
    src = copy_sources(workdir / "src")
    out = workdir / "wheels"
    env = dict(os.environ, DLP_COMMIT=head_commit())
    run([python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, src], env=env)
    (wheel,) = out.glob("dlp_proxy-*.whl")
    return wheel


def wheelhouse(python: Path, wheel: Path) -> Path:
    """Wheels of every dependency of ``wheel`` for ``python``, built once and kept."""
    deps = (REPO / "pyproject.toml").read_bytes().split(b"[project.optional-dependencies]")[0]
    tag = f"{_version_of(python)}-{hashlib.sha256(deps).hexdigest()[:12]}"
    house = CACHE / f"wheelhouse-{tag}"
    if (house / ".complete").exists():
        return house
    partial = CACHE / f"wheelhouse-{tag}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run([python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", partial, wheel])
    for own in partial.glob("dlp_proxy-*.whl"):
        own.unlink()
    (partial / ".complete").write_text("ok\n")
    shutil.rmtree(house, ignore_errors=True)
    partial.rename(house)
    return house


@dataclass(frozen=True)
class Installed:
    """A venv holding the wheel, outside the checkout."""

    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def run(self, *args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv from ``/``: nothing of the checkout is on its path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return run([*args], cwd="/", env=env, **kwargs)


def install(python: Path, workdir: Path) -> Installed:
    """Build the wheel with ``python`` and install it into a fresh venv in ``workdir``."""
    if REPO in workdir.resolve().parents:
        raise AssertionError(f"{workdir} is inside the checkout")
    wheel = build_wheel(python, workdir)
    house = wheelhouse(python, wheel)
    venv = workdir / "venv"
    run([python, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", house, wheel])  # fmt: skip
    return Installed(venv, wheel)


def default_python() -> Path:
    """The interpreter running the tests (the one scripts/setup chose)."""
    return Path(sys.executable)
