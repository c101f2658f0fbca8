"""Helpers shared by the tests of deploy/: what the proxy's command lines may say."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Sequence

from tests.e2e.harness import proxy_executable


@functools.cache
def known_options() -> frozenset[str]:
    """Every option ``dlp-proxy`` accepts with ``--set``, as it lists them itself."""
    out = subprocess.run(
        [str(proxy_executable()), "--options"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(re.findall(r"^([a-z_0-9]+):", out, re.M))


def set_options(args: Sequence[str]) -> dict[str, str]:
    """The ``--set name=value`` pairs of a command line."""
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")


def unknown_options(args: Sequence[str]) -> list[str]:
    """Options set on a command line that the proxy does not have (a typo is silently fatal)."""
    return sorted(set(set_options(args)) - known_options())
