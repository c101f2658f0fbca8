"""Host globs of the allow-list: ``example.com`` matches itself, ``*.example.com`` every name
below it (any depth), never ``example.com`` itself; IP literals match exactly."""

from __future__ import annotations

import ipaddress

import regex

_NAME = regex.compile(
    r"^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
)


def canonical_host(host: str) -> str:
    """Lower-case, no trailing dot, no IPv6 brackets."""
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def glob_problem(glob: str) -> str | None:
    """Why ``glob`` is not a valid host glob, or ``None``."""
    host = canonical_host(glob)
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if host != glob.strip().lower().rstrip("."):
        return f"'{glob}' is not a valid host or IP address"
    if not _NAME.match(host):
        return (
            f"'{glob}' is not a valid host glob (use example.com, or *.example.com for every "
            "name below it; '*' only as the whole first label)"
        )
    return None


class HostMatcher:
    """Maps a host to the name of the destination that lists it."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self._exact: dict[str, str] = {}
        self._below: dict[str, str] = {}
        for glob, name in entries:
            host = canonical_host(glob)
            if host.startswith("*."):
                self._below.setdefault(host[2:], name)
            else:
                self._exact.setdefault(host, name)

    def match(self, host: str) -> str | None:
        host = canonical_host(host)
        if not host:
            return None
        if host in self._exact:
            return self._exact[host]
        labels = host.split(".")
        for i in range(1, len(labels)):
            name = self._below.get(".".join(labels[i:]))
            if name is not None:
                return name
        return None
