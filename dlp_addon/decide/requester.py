"""Who sent a request: the proxy login, else the policy's address map (``networks``), else the
client address; their ``groups``; and the ``exemptions`` that cover them. With the checking of
those two sections, each problem with its line."""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dlp_addon.decide.known import Known
from dlp_addon.sourcefile import SchemaCheck, SourceDoc, entries


@dataclass(frozen=True)
class Requester:
    """Who sent a request and where to: what exemptions and budgets are matched against.

    ``source`` says where ``user`` came from: ``proxyauth`` (the proxy login), ``network``
    (the policy's address map), ``address`` (the client address itself) or ``none``."""

    user: str | None = None
    groups: frozenset[str] = frozenset()
    path: str = "/"
    source: str = "none"


@dataclass(frozen=True)
class Network:
    """Who is behind a range of client addresses, for clients that do not log in."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    user: str | None
    groups: frozenset[str]


@dataclass(frozen=True)
class Exemption:
    """Who or what is exempt from which rules, and until when (a time-bounded exception)."""

    reason: str
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()  # fnmatch globs on the URL path
    destinations: frozenset[str] | None = None
    rules: frozenset[str] | None = None  # None: every content rule
    expires: dt.datetime | None = None

    def covers(self, ctx: Requester, destination: str, now: dt.datetime) -> bool:
        if self.expires is not None and now >= self.expires:
            return False
        if self.destinations is not None and destination not in self.destinations:
            return False
        who = bool(self.users or self.groups)
        if who and not (ctx.user in self.users or self.groups & ctx.groups):
            return False
        if self.paths and not any(fnmatch.fnmatchcase(ctx.path, p) for p in self.paths):
            return False
        return who or bool(self.paths) or self.destinations is not None


def identify(
    groups: Mapping[str, frozenset[str]],
    networks: tuple[Network, ...],
    user: str | None,
    path: str,
    client: str | None = None,
) -> Requester:
    """Who sent it: the proxy login ``user``; else the user the address map gives
    ``client``; else the client address. Groups: the ``groups`` that list the user, plus
    those of every ``networks`` entry (most specific first) the address falls in."""
    source = "proxyauth" if user else "none"
    net_groups: set[str] = set()
    for net in _networks_of(networks, client):
        net_groups |= net.groups
        if user is None and net.user is not None:
            user, source = net.user, "network"
    if user is None and client:
        user, source = client, "address"
    found = frozenset(g for g, users in groups.items() if user in users)
    return Requester(user, found | net_groups, path.split("?", 1)[0], source)


def _networks_of(networks: tuple[Network, ...], client: str | None) -> list[Network]:
    if not client or not networks:
        return []
    try:
        addr = ipaddress.ip_address(client)
    except ValueError:
        return []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return [n for n in networks if addr in n.network]


def exempt_from(
    exemptions: tuple[Exemption, ...],
    every_rule: frozenset[str],
    who: Requester,
    destination: str,
    now: dt.datetime,
) -> set[str] | None:
    """Rules ``who`` is exempt from here and now: ``None`` for none, all names otherwise
    (``every_rule`` for an exemption that names no rules)."""
    out: set[str] = set()
    for ex in exemptions:
        if ex.covers(who, destination, now):
            out |= set(ex.rules) if ex.rules is not None else set(every_rule)
    return out or None


def read_exemptions(
    doc: SourceDoc,
    data: dict[str, Any],
    check: SchemaCheck,
    rules: set[str] | None,
    known: Known,
    problems: list[str],
) -> tuple[Exemption, ...]:
    out: list[Exemption] = []
    for i, raw in entries(data, "exemptions"):
        where: list[str | int] = ["exemptions", i]
        if not check.usable(where):
            continue
        for key, what in (("destinations", "destination"), ("groups", "group")):
            for j, name in enumerate(raw.get(key, [])):
                known.check(doc, [*where, key, j], what, name, problems)
        for j, name in enumerate(raw.get("rules", [])):
            if rules is not None and name not in rules:
                problems.append(doc.at([*where, "rules", j], f"unknown rule '{name}'"))
        expires = None
        if "expires" in raw:
            try:
                expires = dt.datetime.fromisoformat(str(raw["expires"]))
            except ValueError:
                problems.append(doc.at([*where, "expires"], "expires must be an ISO 8601 time"))
                continue
            if expires.tzinfo is None:
                problems.append(
                    doc.at([*where, "expires"], "expires needs a time zone, e.g. +08:00")
                )
                continue
        if not (
            raw.get("users") or raw.get("groups") or raw.get("paths") or raw.get("destinations")
        ):
            problems.append(
                doc.at(where, "an exemption names users, groups, paths or destinations")
            )
            continue
        out.append(
            Exemption(
                reason=raw["reason"],
                users=frozenset(raw.get("users", [])),
                groups=frozenset(raw.get("groups", [])),
                paths=tuple(raw.get("paths", [])),
                destinations=frozenset(raw["destinations"]) if "destinations" in raw else None,
                rules=frozenset(raw["rules"]) if "rules" in raw else None,
                expires=expires,
            )
        )
    return tuple(out)


def read_networks(
    doc: SourceDoc, data: dict[str, Any], check: SchemaCheck, known: Known, problems: list[str]
) -> tuple[Network, ...]:
    """The address map, most specific range first."""
    out: list[Network] = []
    for i, raw in entries(data, "networks"):
        where: list[str | int] = ["networks", i]
        if not check.usable(where):
            continue
        try:
            net = ipaddress.ip_network(raw["cidr"], strict=False)
        except ValueError:
            problems.append(doc.at([*where, "cidr"], f"'{raw['cidr']}' is not an address range"))
            continue
        for j, g in enumerate(raw.get("groups", [])):
            known.check(doc, [*where, "groups", j], "group", g, problems)
        if not (raw.get("user") or raw.get("groups")):
            problems.append(doc.at(where, "a network entry names a user or groups"))
            continue
        out.append(Network(net, raw.get("user"), frozenset(raw.get("groups", []))))
    out.sort(key=lambda n: n.network.prefixlen, reverse=True)
    return tuple(out)
