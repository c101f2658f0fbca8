"""The admin's policy: loaded with a safe YAML loader, checked against
``patterns/policy.schema.json`` and then for meaning (detector names, host globs, duplicate
names). Every problem is reported as ``file:line: message``; a policy with any problem is
refused whole.

A ``Policy`` is plain, picklable data: detectors as data, the key, settings. What is compiled
from it (the scanner) is its engine, built once per process from that data
(:func:`dlp_addon.detect.engine.engine_for`): an inspection process is sent the policy as it is.
Each section is checked by the module of its job: ``rules`` (content rules), ``requester`` (the
address map, groups, exemptions), ``policy_sections`` (custom detectors, destinations, budgets,
inspection settings), ``edm.config`` (the customer table)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlp_addon.decide.budget import CumulativeBudget
from dlp_addon.decide.hosts import HostMatcher
from dlp_addon.decide.known import Known, group_names, in_file_order, names_in
from dlp_addon.decide.policy_sections import (
    Destination,
    read_budgets,
    read_custom_detectors,
    read_destinations,
    read_inspection,
)
from dlp_addon.decide.requester import (
    Exemption,
    Network,
    Requester,
    exempt_from,
    identify,
    read_exemptions,
    read_networks,
)
from dlp_addon.decide.rules import Condition, Rule, read_rules
from dlp_addon.detect.definitions import DEFAULT_DETECTORS, DetectorSet, load_detectors
from dlp_addon.detect.definitions import SCHEMA as DETECTOR_SCHEMA
from dlp_addon.detect.engine import build_engine
from dlp_addon.detect.samples import sample_problems
from dlp_addon.edm.config import load_edm
from dlp_addon.edm.match import Matcher
from dlp_addon.errors import PolicyError
from dlp_addon.extract.limits import Limits
from dlp_addon.shipped import PATTERNS_DIR
from dlp_addon.sourcefile import load_schema, load_yaml, schema_check

__all__ = [
    "DEFAULT_CONTACT",
    "DEFAULT_POLICY",
    "Condition",
    "Destination",
    "Exemption",
    "Known",
    "Network",
    "Policy",
    "Requester",
    "Rule",
    "load_policy",
]

DEFAULT_POLICY = PATTERNS_DIR / "policy.yaml"
_SCHEMA = PATTERNS_DIR / "policy.schema.json"
DEFAULT_CONTACT = "信息安全部 / the information security team"


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
    hosts: HostMatcher = field(repr=False)

    exemptions: tuple[Exemption, ...] = ()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> users
    networks: tuple[Network, ...] = ()  # most specific first
    budgets: tuple[CumulativeBudget, ...] = ()
    on_budget_error: str = "block"
    # The scanner's key: every process builds its engine with it, so keyed hashes match.
    hmac_key: bytes = field(default=b"", repr=False)
    # The engine asked for ("auto" or "python"); ``engine_for(policy).name`` says what runs.
    engine: str = "auto"
    # Stop scanning a long upload once a block rule holds (decide/early.py, docs/policy.md).
    early_verdict: bool = True
    edm: Matcher | None = field(default=None, repr=False)  # the customer table, if any

    def requester(self, user: str | None, path: str, client: str | None = None) -> Requester:
        """Who sent it: the proxy login ``user``; else the user the address map gives
        ``client``; else the client address. Groups: the policy's ``groups`` that list the
        user, plus those of every ``networks`` entry the address falls in."""
        return identify(self.groups, self.networks, user, path, client)

    def exempt_rules(self, who: Requester, destination: str, now: dt.datetime) -> set[str] | None:
        """Rules ``who`` is exempt from here and now: ``None`` for none, all names otherwise."""
        if not self.exemptions:
            return None
        every = frozenset(r.name for r in self.rules)
        return exempt_from(self.exemptions, every, who, destination, now)

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
    (a detector that gets its own samples wrong is broken), in file order. That scanner is
    the engine this process then inspects with (``engine_for(policy)``).

    ``hmac_key`` keys the hashes that stand for identifiers (distinct counting, audit); a
    random per-process key is used when none is given. ``engine``: the scanner's (see
    :class:`~dlp_addon.detect.scanner.Scanner`); ``engine_for(policy).name`` says what runs."""
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
        raise PolicyError(in_file_order(doc, problems)) from e
    detectors, unchecked = read_custom_detectors(doc, data, check, detectors, problems)
    destinations, hosts = read_destinations(doc, data, check, problems)
    known = Known(
        destinations=names_in(data, "destinations", check),
        groups=group_names(data, check),
        detectors_unchecked=unchecked,
    )
    rules, rule_names = read_rules(doc, data, check, detectors, known, problems)
    budgets = read_budgets(doc, data, check, rule_names, detectors, known, problems)
    budget_names = names_in(data, "budgets", check)
    rules_known = None if budget_names is None else rule_names | budget_names
    exemptions = read_exemptions(doc, data, check, rules_known, known, problems)
    networks = read_networks(doc, data, check, known, problems)

    key = _PROCESS_KEY if hmac_key is None else hmac_key
    problems.extend(sample_problems(build_engine(detectors, key, engine).scanner))
    edm = load_edm(doc, data, check, key, problems)
    if problems:
        raise PolicyError(in_file_order(doc, problems))

    inspection = read_inspection(data, check)
    digest = hashlib.sha256(doc.raw + b"\0" + detectors.sha256.encode()).hexdigest()
    return Policy(
        source=path,
        version=digest[:12],
        mode=data.get("mode", "enforce"),
        refuse_unlisted=data.get("egress", {}).get("refuse_unlisted", True),
        contact=data.get("contact", DEFAULT_CONTACT),
        on_error=inspection.on_error,
        on_unscannable=inspection.on_unscannable,
        timeout_seconds=inspection.timeout_seconds,
        limits=inspection.limits,
        destinations=destinations,
        rules=rules,
        detectors=detectors,
        hosts=hosts,
        exemptions=exemptions,
        groups={g: frozenset(users) for g, users in data.get("groups", {}).items()},
        networks=networks,
        budgets=budgets,
        on_budget_error=inspection.on_budget_error,
        early_verdict=inspection.early_verdict,
        hmac_key=key,
        engine=engine,
        edm=edm,
    )
