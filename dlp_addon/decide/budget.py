"""Cumulative budgets: how many distinct identifiers one person (or group) may send out over a
sliding window, against drip exfiltration that no per-message rule sees.

Pure logic, no I/O: which counters a message charges (:func:`charges`); what the store's answer
means for the verdict is ``verdict.py``'s (:func:`~dlp_addon.decide.verdict.with_budgets`).
The store (``dlp_addon.state``) keeps,
per counter, the keyed hash of each identifier and when it was last sent; it never sees a raw
value.

Counting, as the law counts (法释〔2017〕10号 adds up everything one person handed over):

- the unit is a distinct identifier, by the keyed hash the scanner already computed
  (``Finding.key``): the same ID sent twice, in one message or in two, counts once;
- only personal identifiers count: detectors with a legal category, not keyword lists, and not
  the record-scoped ones (names, addresses) unless a budget names them, since they qualify a
  record rather than identify a person;
- a budget trips on a message that brings *new* identifiers and would take the count past its
  ``limit``; a message that only repeats identifiers already counted never trips it;
- only what actually left counts: a message blocked (by a rule or by a budget) adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dlp_addon.detect.definitions import CONFIDENCE, DetectorSet
from dlp_addon.detect.scanner import Finding

_LEVEL = {name: i for i, name in enumerate(CONFIDENCE)}
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
ALL_DESTINATIONS = "*"
RULE_BUDGET_ERROR = "budget-unavailable"


def window_seconds(text: str) -> int | None:
    """``"24h"`` -> 86400; ``None`` if ``text`` is not ``N`` followed by m, h or d."""
    m = _WINDOW.match(text)
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None


def window_words(seconds: int) -> tuple[str, str]:
    """A window in plain words, Chinese and English: ``("30 天", "30 days")``."""
    for size, zh, en in ((86400, "天", "day"), (3600, "小时", "hour"), (60, "分钟", "minute")):
        if seconds % size == 0 and (size != 86400 or seconds >= 2 * size):  # 24 hours, 2 days
            n = seconds // size
            return f"{n} {zh}", f"{n} {en}{'s' if n != 1 else ''}"
    return f"{seconds} 秒", f"{seconds} seconds"


@dataclass(frozen=True)
class CumulativeBudget:
    """At most ``limit`` distinct identifiers per user (or group) within ``window`` seconds."""

    name: str
    action: str  # block | log
    limit: int
    window: int  # seconds
    per: str = "user"  # user | group
    legal_category: str | None = None  # None: every personal category
    detectors: frozenset[str] | None = None  # None: every personal identifier detector
    min_confidence: str = "medium"
    destinations: frozenset[str] | None = None  # None: traffic to every destination
    per_destination: bool = False  # a separate count per destination instead of one in all
    groups: frozenset[str] | None = None  # only members of (per: group: only) these groups
    description_zh: str = ""
    description_en: str = ""
    counts: str = "identifiers"  # or edm_records: rows of the customer table

    def counts_detector(self, detector: str, detectors: DetectorSet) -> bool:
        det = detectors.by_id().get(detector)
        if det is None or det.legal_category is None or det.kind == "words":
            return False
        if self.detectors is not None:
            return detector in self.detectors
        if det.record_scope:
            return False
        return self.legal_category is None or det.legal_category == self.legal_category

    def subjects(self, user: str | None, groups: frozenset[str]) -> list[str]:
        """Whose counters a message from ``user`` in ``groups`` charges."""
        if self.per == "group":
            chosen = groups if self.groups is None else groups & self.groups
            return [f"group:{g}" for g in sorted(chosen)]
        if user is None or (self.groups is not None and not groups & self.groups):
            return []
        return [f"user:{user}"]


@dataclass(frozen=True)
class Charge:
    """What one message adds to one counter: the keyed hashes of its identifiers."""

    budget: str
    subject: str  # user:NAME or group:NAME
    scope: str  # a destination name, or * for all destinations together
    window: int
    limit: int
    blocking: bool  # a trip stops the message (block action, enforced policy)
    keys: frozenset[str]

    @property
    def counter(self) -> str:
        """The store's name for the counter: ``budget|scope|subject``."""
        return f"{self.budget}|{self.scope}|{self.subject}"


def parse_counter(counter: str) -> tuple[str, str, str]:
    """``(budget, scope, subject)`` of a store counter name."""
    budget, scope, subject = counter.split("|", 2)
    return budget, scope, subject


@dataclass(frozen=True)
class Outcome:
    """The store's answer for one charge: the count before and with this message."""

    charge: Charge
    before: int
    after: int

    @property
    def tripped(self) -> bool:
        return self.after > self.before and self.after > self.charge.limit


def charges(
    budgets: Iterable[CumulativeBudget],
    detectors: DetectorSet,
    findings: Iterable[Finding],
    *,
    user: str | None,
    groups: frozenset[str],
    destination: str,
    enforcing: bool,
    exempt: set[str] | None = None,
    edm_keys: Iterable[str] = (),
) -> list[Charge]:
    """Every counter this message charges, with the identifiers it adds to each."""
    found = list(findings)
    out: list[Charge] = []
    for b in budgets:
        if exempt and b.name in exempt:
            continue
        if b.destinations is not None and destination not in b.destinations:
            continue
        floor = _LEVEL[b.min_confidence]
        keys = frozenset(
            f.key
            for f in found
            if _LEVEL[f.confidence] >= floor and b.counts_detector(f.detector, detectors)
        )
        if b.counts == "edm_records":
            keys = frozenset(edm_keys)
        if not keys:
            continue
        scope = destination if b.per_destination else ALL_DESTINATIONS
        for subject in b.subjects(user, groups):
            out.append(
                Charge(
                    budget=b.name,
                    subject=subject,
                    scope=scope,
                    window=b.window,
                    limit=b.limit,
                    blocking=enforcing and b.action == "block",
                    keys=keys,
                )
            )
    return out


def trip_description(budget: CumulativeBudget, outcome: Outcome) -> tuple[str, str]:
    """What the employee reads: the budget in plain words, with its numbers (no data)."""
    zh_w, en_w = window_words(budget.window)
    who_zh, who_en = ("您所在的组", "your group") if budget.per == "group" else ("您", "you")
    measure, unit_zh, unit_en = (
        ("条", "本公司客户记录", "records of our customers")
        if budget.counts == "edm_records"
        else ("个", "不同的号码", "different personal identifiers")
    )
    zh = (
        f"{who_zh}在 {zh_w}内发送的个人信息已达到上限（{budget.limit} {measure}{unit_zh}；"
        f"加上本次将达 {outcome.after} {measure}）"
    )
    en = (
        f"{who_en[0].upper() + who_en[1:]} reached the limit of {budget.limit} {unit_en} "
        f"within {en_w} (with this message: {outcome.after})"
    )
    if budget.description_zh:
        zh = f"{budget.description_zh}：{zh}"
    if budget.description_en:
        en = f"{budget.description_en}: {en}"
    return zh, en


def outcome_summary(budget: CumulativeBudget, outcome: Outcome) -> dict[str, Any]:
    """The audit's view of a budget decision: numbers and names only."""
    return {
        "name": budget.name,
        "action": budget.action,
        "subject": outcome.charge.subject,
        "scope": outcome.charge.scope,
        "window_seconds": budget.window,
        "limit": budget.limit,
        "count_before": outcome.before,
        "count_with_message": outcome.after,
        "tripped": outcome.tripped,
    }
