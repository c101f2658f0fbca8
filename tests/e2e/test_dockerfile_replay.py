"""deploy/compose/Dockerfile's build, replayed without Docker: each stage gets its own root in a
temporary directory, COPY copies from the repository (minus .dockerignore) or from the earlier
stage, RUN runs the same commands with the container's paths moved under that root and
``python`` being the interpreter the tests run with. apt-get is not run (the packages it names
must already be installed here) nor are the user-management commands. Dependencies come from
the local wheelhouse (``--no-index --find-links``) instead of PyPI. Then the installed
``dlp-proxy --version`` must report the C pass built."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging import REPO, build_wheel, default_python, head_commit, run, wheelhouse

pytestmark = pytest.mark.e2e

DOCKERFILE = REPO / "deploy" / "compose" / "Dockerfile"
SKIPPED = ("groupadd", "useradd", "install -d -o")  # the image's user: not this host's business


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.removeprefix("**/"))
        or fnmatch.fnmatch(Path(rel).name, p.removeprefix("**/"))
        for p in patterns
    )  # fmt: skip


def test_dockerfile_build_steps_replayed_give_the_compiled_engine(tmp_path: Path) -> None:
    dockerignore = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]  # fmt: skip
    python = default_python()
    shim = tmp_path / "shim"  # `python` in a RUN line: the base image's interpreter
    shim.mkdir()
    (shim / "python").symlink_to(python)
    house = wheelhouse(python, build_wheel(python, tmp_path / "deps"))
    roots: dict[str, Path] = {}
    root = workdir = tmp_path
    env: dict[str, str] = {}
    ran_apt: list[str] = []

    def at(path: str) -> Path:
        return root / path.lstrip("/") if path.startswith("/") else workdir / path

    def moved(command: str) -> str:
        # Container paths -> under this stage's root; `python` -> the shim
        return re.sub(
            r"(?<![\w.])(/(?:src|wheels|opt|var/lib)\b)", lambda m: f"{root}{m.group(1)}", command
        )

    for word, args in instructions(DOCKERFILE.read_text("utf-8")):
        if word == "FROM":
            name = args.split(" AS ")[-1] if " AS " in args else f"stage{len(roots)}"
            root = workdir = tmp_path / name
            root.mkdir()
            roots[name] = root
            env = {}
        elif word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
        elif word == "ARG":
            env["DLP_COMMIT"] = head_commit()  # what docker build --build-arg would pass
        elif word == "WORKDIR":
            workdir = at(args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            parts = args.split()
            source_root = REPO
            if parts[0].startswith("--from="):
                source_root = roots[parts.pop(0).removeprefix("--from=")]
            *sources, dest = parts
            for src in sources:
                origin = source_root / src.lstrip("/")
                target = at(dest)
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        at(dest),
                        ignore=lambda d, names, base=source_root: [
                            n for n in names
                            if ignored(os.path.relpath(Path(d) / n, base), dockerignore)
                        ],
                        dirs_exist_ok=True,
                    )  # fmt: skip
                else:
                    target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else None
                    shutil.copy2(origin, target / origin.name if dest.endswith("/") else target)
        elif word == "RUN":
            for command in args.split(" && "):
                if command.startswith("apt-get install"):
                    ran_apt += [p for p in command.split()[2:] if not p.startswith("-")]
                    continue
                if command.startswith(("apt-get", "rm -rf /var/lib/apt")) or command.startswith(
                    SKIPPED
                ):
                    continue
                if "pip install" in command:  # the local mirror of PyPI
                    command = command.replace(
                        "pip install", f"pip install --no-index --find-links {house}"
                    )
                path = env.get("PATH", "$PATH").replace("$PATH", f"{shim}:{os.environ['PATH']}")
                run_env = {**os.environ, **env, "PATH": moved(path)}
                run_env.pop("PIP_NO_CACHE_DIR", None)
                run_env.pop("VIRTUAL_ENV", None)
                run(["bash", "-c", moved(command)], cwd=workdir, env=run_env)

    # The build stage asked for what the C pass needs, and this host has it.
    assert {"gcc", "libssl-dev"} <= set(ran_apt)
    for package in ran_apt:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
        assert "install ok installed" in status, package
    final = root
    venv = final / "opt" / "dlp-proxy" / ".venv"
    assert not (final / "wheels").exists()  # removed after installing
    version = run([venv / "bin" / "dlp-proxy", "--version"], cwd="/").stdout
    assert "C pass: built" in version and "scan engine: compiled" in version
    assert f"commit: {head_commit()}" in version
    where = run(
        [venv / "bin" / "python", "-c", "import dlp_addon; print(dlp_addon.__file__)"], cwd="/"
    )
    assert venv in Path(where.stdout.strip()).parents  # installed, not the checkout's
