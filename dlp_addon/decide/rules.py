"""A policy's content rules (block or log when every condition holds) and the checking of its
``rules`` section, each problem with its line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlp_addon.decide.known import Known
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.definitions import DetectorSet
from dlp_addon.sourcefile import SchemaCheck, SourceDoc, entries


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


def read_rules(
    doc: SourceDoc,
    data: dict[str, Any],
    check: SchemaCheck,
    detectors: DetectorSet,
    known: Known,
    problems: list[str],
) -> tuple[tuple[Rule, ...], set[str]]:
    """The checked rules, and every rule name given (also of rules refused for another
    reason: a budget or exemption naming one is not "unknown")."""
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
    return tuple(rules), rule_names


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
