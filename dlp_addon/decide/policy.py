"""The admin's policy: loaded with a safe YAML loader, checked against
``patterns/policy.schema.json`` and then for meaning (detector names, host globs, duplicate
names). Every problem is reported as ``file:line: message``; a policy with any problem is
refused whole."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dlp_addon.decide.budget import CumulativeBudget, window_seconds
from dlp_addon.decide.hosts import HostMatcher, glob_problem
from dlp_addon.decide.ocr_settings import ocr_limits
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.definitions import (
    DEFAULT_DETECTORS,
    Detector,
    DetectorSet,
    build_detector,
    load_detectors,
)
from dlp_addon.detect.definitions import SCHEMA as DETECTOR_SCHEMA
from dlp_addon.detect.samples import sample_problems
from dlp_addon.detect.scanner import Scanner
from dlp_addon.edm.config import load_edm
from dlp_addon.edm.match import Matcher
from dlp_addon.errors import PolicyError
from dlp_addon.extract.limits import Limits
from dlp_addon.shipped import PATTERNS_DIR
from dlp_addon.sourcefile import (
    SchemaCheck,
    SourceDoc,
    entries,
    load_schema,
    load_yaml,
    schema_check,
)

DEFAULT_POLICY = PATTERNS_DIR / "policy.yaml"
_SCHEMA = PATTERNS_DIR / "policy.schema.json"
DEFAULT_CONTACT = "信息安全部 / the information security team"


@dataclass(frozen=True)
class Destination:
    """An allowed platform: a name (used in rules, audit and metrics) and its host globs."""

    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Condition:
    """``min_distinct`` identifiers of one detector, or ``min_records`` records (lines, rows,
    JSON objects) holding a personal identifier, optionally of one legal category; only
    findings of ``min_confidence`` or more count."""

    detector: str | None = None
    min_distinct: int = 0
    legal_category: str | None = None
    min_records: int = 0
    min_confidence: str = "medium"
    attachment: str | None = None  # spreadsheet | archive | document | any
    edm_records: int = 0  # rows of the customer table (exact data match)


@dataclass(frozen=True)
class Rule:
    """Block or log when every condition holds, for the listed destinations and channels."""

    name: str
    action: str
    when: tuple[Condition, ...]
    description_zh: str
    description_en: str
    destinations: frozenset[str] | None = None
    channels: frozenset[str] | None = None

    def applies_to(self, destination: str, channel: str) -> bool:
        return (self.destinations is None or destination in self.destinations) and (
            self.channels is None or channel in self.channels
        )

    def holds(self, tally: Tally) -> bool:
        return all(tally.satisfies(c) for c in self.when)


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
class Policy:
    """A complete, checked policy. Immutable: a reload builds a new one."""

    source: Path
    version: str
    mode: str
    refuse_unlisted: bool
    contact: str
    on_error: str
    on_unscannable: str
    timeout_seconds: float
    limits: Limits
    destinations: tuple[Destination, ...]
    rules: tuple[Rule, ...]
    detectors: DetectorSet = field(repr=False)
    scanner: Scanner = field(repr=False)
    hosts: HostMatcher = field(repr=False)

    exemptions: tuple[Exemption, ...] = ()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> users
    networks: tuple[Network, ...] = ()  # most specific first
    budgets: tuple[CumulativeBudget, ...] = ()
    on_budget_error: str = "block"
    # The scanner's key: inspection worker processes rebuild the scanner with it.
    hmac_key: bytes = field(default=b"", repr=False)
    # The engine asked for ("auto" or "python"): inspection workers build theirs the same way.
    engine: str = "auto"
    # Stop scanning a long upload once a block rule holds (decide/early.py, docs/policy.md).
    early_verdict: bool = True
    edm: Matcher | None = field(default=None, repr=False)  # the customer table, if any

    def requester(self, user: str | None, path: str, client: str | None = None) -> Requester:
        """Who sent it: the proxy login ``user``; else the user the address map gives
        ``client``; else the client address. Groups: the policy's ``groups`` that list the
        user, plus those of every ``networks`` entry the address falls in."""
        source = "proxyauth" if user else "none"
        net_groups: set[str] = set()
        for net in self._networks_of(client):
            net_groups |= net.groups
            if user is None and net.user is not None:
                user, source = net.user, "network"
        if user is None and client:
            user, source = client, "address"
        groups = frozenset(g for g, users in self.groups.items() if user in users)
        return Requester(user, groups | net_groups, path.split("?", 1)[0], source)

    def _networks_of(self, client: str | None) -> list[Network]:
        if not client or not self.networks:
            return []
        try:
            addr = ipaddress.ip_address(client)
        except ValueError:
            return []
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return [n for n in self.networks if addr in n.network]

    def exempt_rules(self, who: Requester, destination: str, now: dt.datetime) -> set[str] | None:
        """Rules ``who`` is exempt from here and now: ``None`` for none, all names otherwise."""
        out: set[str] = set()
        for ex in self.exemptions:
            if ex.covers(who, destination, now):
                out |= set(ex.rules) if ex.rules is not None else {r.name for r in self.rules}
        return out or None

    @property
    def enforcing(self) -> bool:
        return self.mode == "enforce"

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file this policy was built from: a change to any of them is a new policy."""
        words = {d.words_file for d in self.detectors.detectors if d.words_file is not None}
        edm = (self.edm.path,) if self.edm is not None else ()
        return (self.source, self.detectors.source, *sorted(words), *edm)

    def destination_for(self, host: str) -> str | None:
        """Name of the destination listing ``host``, or ``None`` when it is not allowed."""
        return self.hosts.match(host)


_LIMIT_KEYS = frozenset(f.name for f in fields(Limits)) - {"ocr"}

# One key per process unless the admin provides one: hashes then differ across restarts.
_PROCESS_KEY = secrets.token_bytes(32)


def _schema() -> dict[str, Any]:
    """The policy schema, with the detector definition it shares with detectors.yaml."""
    schema = load_schema(_SCHEMA)
    schema["$defs"] = load_schema(DETECTOR_SCHEMA)["$defs"]
    return schema


def load_policy(
    path: Path = DEFAULT_POLICY, *, hmac_key: bytes | None = None, engine: str = "auto"
) -> Policy:
    """Load, check and compile ``path``; raise ``PolicyError`` listing every problem.

    Problems are reported all at once: the schema's, then the checks for meaning of every
    part the schema did not refuse, and every detector's own samples run through the scanner
    (a detector that gets its own samples wrong is broken), in file order.

    ``hmac_key`` keys the hashes that stand for identifiers (distinct counting, audit); a
    random per-process key is used when none is given. ``engine``: the scanner's (see
    :class:`~dlp_addon.detect.scanner.Scanner`); ``scanner.engine`` says what runs."""
    doc = load_yaml(path)
    check = schema_check(doc, _schema())
    problems = list(check.problems)
    data = doc.data
    if not isinstance(data, dict) or not check.whole(["detectors"]):
        raise PolicyError(problems)  # no mapping, or not the detector file it means
    det_path = (path.parent / data["detectors"]) if "detectors" in data else DEFAULT_DETECTORS
    try:
        detectors = load_detectors(det_path)
    except PolicyError as e:
        if "detectors" in data:
            problems.append(
                doc.at(["detectors"], f"detector file '{data['detectors']}' is invalid")
            )
        problems.extend(e.problems)
        raise PolicyError(_in_file_order(doc, problems)) from e
    # Custom detectors that are defined but refused: a rule naming one is not "unknown".
    unchecked: set[str] = set()
    custom: list[Detector] = []
    for i, raw in entries(data, "custom_detectors"):
        where_d: list[str | int] = ["custom_detectors", i]
        if not check.usable(where_d):
            if isinstance(raw.get("id"), str):
                unchecked.add(raw["id"])
            continue
        if raw["id"] in detectors.by_id() or any(c.id == raw["id"] for c in custom):
            problems.append(doc.at([*where_d, "id"], f"duplicate detector id '{raw['id']}'"))
            continue
        det = build_detector(doc, where_d, raw, detectors.legal_categories, problems)
        if det is not None:
            custom.append(det)
        else:
            unchecked.add(raw["id"])
    if custom:
        detectors = detectors.with_custom(tuple(custom), hashlib.sha256(doc.raw).hexdigest())

    destinations: list[Destination] = []
    host_entries: list[tuple[str, str]] = []
    seen_hosts: dict[str, str] = {}
    names: set[str] = set()
    for i, raw in entries(data, "destinations"):
        if not check.usable(["destinations", i]):
            continue
        if raw["name"] in names:
            problems.append(
                doc.at(["destinations", i, "name"], f"duplicate destination '{raw['name']}'")
            )
        names.add(raw["name"])
        for j, glob in enumerate(raw["hosts"]):
            why = glob_problem(glob)
            if why:
                problems.append(doc.at(["destinations", i, "hosts", j], why))
                continue
            key = glob.strip().lower().rstrip(".")
            if key in seen_hosts and seen_hosts[key] != raw["name"]:
                problems.append(
                    doc.at(
                        ["destinations", i, "hosts", j],
                        f"host '{glob}' is already listed under '{seen_hosts[key]}'",
                    )
                )
            seen_hosts[key] = raw["name"]
            host_entries.append((glob, raw["name"]))
        destinations.append(Destination(raw["name"], tuple(raw["hosts"])))
    known = Known(
        destinations=_names(data, "destinations", check),
        groups=_group_names(data, check),
        detectors_unchecked=frozenset(unchecked),
    )

    rules: list[Rule] = []
    rule_names: set[str] = set()
    for i, raw in entries(data, "rules"):
        where: list[str | int] = ["rules", i]
        name = raw.get("name")
        if isinstance(name, str):
            if name in rule_names and check.usable([*where, "name"]):
                problems.append(doc.at([*where, "name"], f"duplicate rule name '{name}'"))
            rule_names.add(name)
        conditions: list[Condition] = []
        for j, cond in entries(raw, "when"):
            if check.usable([*where, "when", j]):
                made = _condition(doc, [*where, "when", j], cond, detectors, known, problems)
                if made is not None:
                    conditions.append(made)
        if check.usable([*where, "destinations"]):
            for j, dest in enumerate(raw.get("destinations", [])):
                known.check(doc, [*where, "destinations", j], "destination", dest, problems)
        if not check.usable(where):
            continue
        desc = raw.get("description", {})
        rules.append(
            Rule(
                name=raw["name"],
                action=raw["action"],
                when=tuple(conditions),
                description_zh=desc.get("zh", raw["name"]),
                description_en=desc.get("en", raw["name"]),
                destinations=frozenset(raw["destinations"]) if "destinations" in raw else None,
                channels=frozenset(raw["channels"]) if "channels" in raw else None,
            )
        )
    budgets = _budgets(doc, data, check, rule_names, detectors, known, problems)
    budget_names = _names(data, "budgets", check)
    rules_known = None if budget_names is None else rule_names | budget_names
    exemptions = _exemptions(doc, data, check, rules_known, known, problems)
    networks = _networks(doc, data, check, known, problems)

    key = _PROCESS_KEY if hmac_key is None else hmac_key
    scanner = Scanner(detectors, key, engine=engine)
    problems.extend(sample_problems(scanner))
    inspection = data.get("inspection", {})
    ocr = ocr_limits(inspection, check.usable(["inspection"]))
    edm = load_edm(doc, data, check, key, problems)
    if problems:
        raise PolicyError(_in_file_order(doc, problems))

    digest = hashlib.sha256(doc.raw + b"\0" + detectors.sha256.encode()).hexdigest()
    return Policy(
        source=path,
        version=digest[:12],
        mode=data.get("mode", "enforce"),
        refuse_unlisted=data.get("egress", {}).get("refuse_unlisted", True),
        contact=data.get("contact", DEFAULT_CONTACT),
        on_error=inspection.get("on_error", "block"),
        on_unscannable=inspection.get("on_unscannable", "block"),
        timeout_seconds=float(inspection.get("timeout_seconds", 5)),
        limits=Limits(**{k: v for k, v in inspection.items() if k in _LIMIT_KEYS}, ocr=ocr),
        destinations=tuple(destinations),
        rules=tuple(rules),
        detectors=detectors,
        scanner=scanner,
        hosts=HostMatcher(host_entries),
        exemptions=exemptions,
        groups={g: frozenset(users) for g, users in data.get("groups", {}).items()},
        networks=networks,
        budgets=budgets,
        on_budget_error=inspection.get("on_budget_error", "block"),
        early_verdict=bool(inspection.get("early_verdict", True)),
        hmac_key=key,
        engine=engine,
        edm=edm,
    )


@dataclass(frozen=True)
class Known:
    """Names a policy defines, for checking references to them. ``None``: the schema refused
    that section, so references to it cannot be checked (and are not reported)."""

    destinations: set[str] | None
    groups: set[str] | None
    detectors_unchecked: frozenset[str]  # defined, but refused: not reported as unknown

    def check(
        self,
        doc: SourceDoc,
        where: list[str | int],
        what: str,
        name: object,
        problems: list[str],
    ) -> None:
        """Report ``name`` at ``where`` when it is no known ``what`` (destination or group)."""
        names = self.destinations if what == "destination" else self.groups
        if names is not None and name not in names:
            problems.append(doc.at(where, f"unknown {what} '{name}'"))


def _names(data: dict[str, Any], key: str, check: SchemaCheck) -> set[str] | None:
    """Every name listed under ``key`` (including entries refused for other reasons), or
    ``None`` when the list itself was refused."""
    if not check.whole([key]) or not isinstance(data.get(key, []), list):
        return None
    return {raw["name"] for _, raw in entries(data, key) if isinstance(raw.get("name"), str)}


def _group_names(data: dict[str, Any], check: SchemaCheck) -> set[str] | None:
    groups = data.get("groups", {})
    return set(groups) if check.whole(["groups"]) and isinstance(groups, dict) else None


def _in_file_order(doc: SourceDoc, problems: list[str]) -> list[str]:
    """The policy file's problems by line (schema and meaning interleaved, as an admin reads
    the file), then those of other files in the order found."""
    prefix = f"{doc.path}:"

    def line(problem: str) -> float:
        if not problem.startswith(prefix):
            return float("inf")
        number = problem[len(prefix) :].split(":", 1)[0]
        return int(number) if number.isdigit() else float("inf")

    return sorted(problems, key=line)


def _condition(
    doc: SourceDoc,
    where: list[str | int],
    cond: dict[str, Any],
    detectors: DetectorSet,
    known_names: Known,
    problems: list[str],
) -> Condition | None:
    """A checked condition: one count (``min_distinct``, ``min_records`` or ``threshold``)."""
    known = detectors.by_id()
    counts = [k for k in ("min_distinct", "min_records", "threshold", "edm_records") if k in cond]
    if len(counts) > 1 or (not counts and "attachment" not in cond):
        problems.append(
            doc.at(
                where,
                "give one of min_distinct, min_records, threshold, edm_records (or an attachment)",
            )
        )
        return None
    detector = cond.get("detector")
    if detector in known_names.detectors_unchecked:
        return None
    if detector is not None and detector not in known:
        problems.append(
            doc.at(
                [*where, "detector"],
                f"unknown detector '{detector}' (known: {', '.join(sorted(known))})",
            )
        )
        return None
    if "min_distinct" in cond and detector is None:
        problems.append(doc.at(where, "min_distinct needs a detector"))
        return None
    category = cond.get("legal_category")
    legal = detectors.legal_categories
    if category is not None and category not in legal:
        problems.append(
            doc.at(
                [*where, "legal_category"],
                f"unknown legal category '{category}' (known: {', '.join(sorted(legal))})",
            )
        )
        return None
    min_records = cond.get("min_records", 0)
    if "threshold" in cond:
        if category is None:
            problems.append(doc.at([*where, "threshold"], "threshold needs a legal_category"))
            return None
        tier = legal[category]
        min_records = tier.serious if cond["threshold"] == "serious" else tier.insider_serious
    return Condition(
        detector=detector,
        min_distinct=cond.get("min_distinct", 0),
        legal_category=category,
        min_records=min_records,
        min_confidence=cond.get("min_confidence", "medium"),
        attachment=cond.get("attachment"),
        edm_records=cond.get("edm_records", 0),
    )


def _exemptions(
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


def _networks(
    doc: SourceDoc, data: dict[str, Any], check: SchemaCheck, known: Known, problems: list[str]
) -> tuple[Network, ...]:
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


def _budgets(
    doc: SourceDoc,
    data: dict[str, Any],
    check: SchemaCheck,
    rule_names: set[str],
    detectors: DetectorSet,
    names: Known,
    problems: list[str],
) -> tuple[CumulativeBudget, ...]:
    out: list[CumulativeBudget] = []
    seen: set[str] = set()
    legal = detectors.legal_categories
    known = detectors.by_id()
    for i, raw in entries(data, "budgets"):
        where: list[str | int] = ["budgets", i]
        if not check.usable(where):
            continue
        bad = len(problems)
        name = raw["name"]
        if name in seen or name in rule_names:
            problems.append(doc.at([*where, "name"], f"duplicate rule or budget name '{name}'"))
        seen.add(name)
        window = window_seconds(raw["window"])
        if window is None:
            problems.append(doc.at([*where, "window"], "window is N followed by m, h or d"))
        category = raw.get("legal_category")
        if category is not None and category not in legal:
            problems.append(
                doc.at(
                    [*where, "legal_category"],
                    f"unknown legal category '{category}' (known: {', '.join(sorted(legal))})",
                )
            )
        for j, det in enumerate(raw.get("detectors", [])):
            if det in names.detectors_unchecked:
                continue
            if det not in known or known[det].legal_category is None:
                problems.append(
                    doc.at([*where, "detectors", j], f"'{det}' is not a personal data detector")
                )
        for key, what in (("destinations", "destination"), ("groups", "group")):
            for j, n in enumerate(raw.get(key, [])):
                names.check(doc, [*where, key, j], what, n, problems)
        if ("limit" in raw) == ("threshold" in raw):
            problems.append(doc.at(where, "give one of limit, threshold"))
        elif "threshold" in raw and category is None:
            problems.append(doc.at([*where, "threshold"], "threshold needs a legal_category"))
        if len(problems) > bad or window is None:
            continue
        if raw.get("counts") == "edm_records" and {
            "threshold",
            "legal_category",
            "detectors",
        } & set(raw):
            problems.append(doc.at(where, "a budget of edm_records counts rows, not categories"))
            continue
        if "threshold" in raw and category is not None:  # (checked above)
            tier = legal[category]
            reach = tier.serious if raw["threshold"] == "serious" else tier.insider_serious
            limit = reach - 1  # stay below the count at which the law calls it serious
        else:
            limit = raw["limit"]
        desc = raw.get("description", {})
        out.append(
            CumulativeBudget(
                name=name,
                action=raw.get("action", "block"),
                limit=limit,
                window=window,
                per=raw.get("per", "user"),
                legal_category=category,
                detectors=frozenset(raw["detectors"]) if "detectors" in raw else None,
                min_confidence=raw.get("min_confidence", "medium"),
                destinations=frozenset(raw["destinations"]) if "destinations" in raw else None,
                per_destination=raw.get("per_destination", False),
                groups=frozenset(raw["groups"]) if "groups" in raw else None,
                description_zh=desc.get("zh", ""),
                description_en=desc.get("en", ""),
                counts=raw.get("counts", "identifiers"),
            )
        )
    return tuple(out)
