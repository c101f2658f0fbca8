"""The checking of a policy's other sections, each problem with its line: ``custom_detectors``,
``destinations`` (the allow-list), ``budgets``, and ``inspection`` (limits, timeouts, error
actions)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any

from dlp_addon.decide.budget import CumulativeBudget, window_seconds
from dlp_addon.decide.hosts import HostMatcher, glob_problem
from dlp_addon.decide.known import Known
from dlp_addon.decide.ocr_settings import ocr_limits
from dlp_addon.detect.definitions import Detector, DetectorSet, build_detector
from dlp_addon.extract.limits import Limits
from dlp_addon.sourcefile import SchemaCheck, SourceDoc, entries


@dataclass(frozen=True)
class Destination:
    """An allowed platform: a name (used in rules, audit and metrics) and its host globs."""

    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Inspection:
    """The ``inspection`` section: how long, how much, and what to do when it fails."""

    on_error: str
    on_unscannable: str
    timeout_seconds: float
    limits: Limits
    on_budget_error: str
    early_verdict: bool


_LIMIT_KEYS = frozenset(f.name for f in fields(Limits)) - {"ocr"}


def read_inspection(data: dict[str, Any], check: SchemaCheck) -> Inspection:
    inspection = data.get("inspection", {})
    ocr = ocr_limits(inspection, check.usable(["inspection"]))
    return Inspection(
        on_error=inspection.get("on_error", "block"),
        on_unscannable=inspection.get("on_unscannable", "block"),
        timeout_seconds=float(inspection.get("timeout_seconds", 5)),
        limits=Limits(**{k: v for k, v in inspection.items() if k in _LIMIT_KEYS}, ocr=ocr),
        on_budget_error=inspection.get("on_budget_error", "block"),
        early_verdict=bool(inspection.get("early_verdict", True)),
    )


def read_custom_detectors(
    doc: SourceDoc,
    data: dict[str, Any],
    check: SchemaCheck,
    detectors: DetectorSet,
    problems: list[str],
) -> tuple[DetectorSet, frozenset[str]]:
    """The shipped detectors plus the policy's own; and the ids of those defined but refused
    (a rule naming one is not "unknown")."""
    unchecked: set[str] = set()
    custom: list[Detector] = []
    for i, raw in entries(data, "custom_detectors"):
        where: list[str | int] = ["custom_detectors", i]
        if not check.usable(where):
            if isinstance(raw.get("id"), str):
                unchecked.add(raw["id"])
            continue
        if raw["id"] in detectors.by_id() or any(c.id == raw["id"] for c in custom):
            problems.append(doc.at([*where, "id"], f"duplicate detector id '{raw['id']}'"))
            continue
        det = build_detector(doc, where, raw, detectors.legal_categories, problems)
        if det is not None:
            custom.append(det)
        else:
            unchecked.add(raw["id"])
    if custom:
        detectors = detectors.with_custom(tuple(custom), hashlib.sha256(doc.raw).hexdigest())
    return detectors, frozenset(unchecked)


def read_destinations(
    doc: SourceDoc, data: dict[str, Any], check: SchemaCheck, problems: list[str]
) -> tuple[tuple[Destination, ...], HostMatcher]:
    """The allowed destinations, and the matcher from a host to the one listing it."""
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
    return tuple(destinations), HostMatcher(host_entries)


def read_budgets(
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
