"""What one request or message carried, counted the way the law and the rules count it.

- Distinct identifiers per detector, by keyed hash: the same ID pasted twice is one ID.
- Records (条): a line of text, a table row or a JSON object holding at least one personal
  identifier. Records are distinct by the identifiers they hold, so a table pasted twice is
  still one table's worth of records.
- Every count can be limited to findings of a minimum confidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from dlp_addon.detect.definitions import LEVEL, DetectorSet
from dlp_addon.detect.scanner import Finding
from dlp_addon.edm.match import NO_MATCH, EdmMatch
from dlp_addon.extract.message import Attachment

SAMPLES_PER_DETECTOR = 3


class Countable(Protocol):
    @property
    def detector(self) -> str | None: ...
    @property
    def min_distinct(self) -> int: ...
    @property
    def legal_category(self) -> str | None: ...
    @property
    def min_records(self) -> int: ...
    @property
    def min_confidence(self) -> str: ...
    @property
    def attachment(self) -> str | None: ...
    @property
    def edm_records(self) -> int: ...


class Tally:
    """Counts over the findings of one request or message."""

    def __init__(
        self,
        findings: Iterable[Finding],
        detectors: DetectorSet,
        attachments: Iterable[Attachment] = (),
        edm: EdmMatch = NO_MATCH,
    ) -> None:
        self._attachments = list(attachments)
        self.edm_records = edm.records  # rows of the customer table
        # detector -> legal category of the records it makes (None: it makes none)
        category = {
            d.id: d.legal_category if d.kind != "words" else None for d in detectors.detectors
        }
        # detector -> key -> (best confidence level, masked value)
        self._best: dict[str, dict[str, tuple[int, str]]] = {}
        # record -> {(key, legal category, level)}
        rows: dict[tuple[str, int], set[tuple[str, str, int]]] = {}
        best, levels = self._best, LEVEL
        for detector, key, masked, location, line, confidence, *_ in findings:
            level = levels[confidence]
            seen = best.get(detector)
            if seen is None:
                seen = best[detector] = {}
            had = seen.get(key)
            if had is None or had[0] < level:
                seen[key] = (level, masked)
            cat = category[detector]
            if cat is not None:
                row = rows.get((location, line))
                if row is None:
                    rows[(location, line)] = {(key, cat, level)}
                else:
                    row.add((key, cat, level))
        self._rows = list(rows.values())
        self._row_locations = [location for location, _ in rows]
        # floor -> per record: (location, its keys at that floor or above, their categories)
        self._at_floor: dict[int, list[tuple[str, frozenset[str], frozenset[str]]]] = {}

    def distinct(self, detector: str, min_confidence: str = "medium") -> int:
        floor = LEVEL[min_confidence]
        return sum(1 for level, _ in self._best.get(detector, {}).values() if level >= floor)

    def _records_at(self, floor: int) -> list[tuple[str, frozenset[str], frozenset[str]]]:
        """Each record's keys and categories at ``floor`` or above (records with none left
        out), computed once a floor: the rules and the files ask for the same few floors."""
        out = self._at_floor.get(floor)
        if out is None:
            out = []
            for location, row in zip(self._row_locations, self._rows, strict=True):
                if all(level >= floor for _, _, level in row):
                    keys = frozenset(k for k, _, _ in row)
                    cats = frozenset(c for _, c, _ in row)
                else:
                    keys = frozenset(k for k, _, level in row if level >= floor)
                    cats = frozenset(c for _, c, level in row if level >= floor)
                if keys:
                    out.append((location, keys, cats))
            self._at_floor[floor] = out
        return out

    def records(
        self,
        legal_category: str | None = None,
        min_confidence: str = "medium",
        within: tuple[str, ...] | None = None,
    ) -> int:
        """Distinct records holding a personal identifier (of ``legal_category``), only in
        parts whose location starts with one of ``within`` when it is given."""
        rows = self._records_at(LEVEL[min_confidence])
        if within is None and legal_category is None:
            return len({keys for _, keys, _ in rows})
        return len(
            {
                keys
                for location, keys, cats in rows
                if (within is None or location.startswith(within))
                and (legal_category is None or legal_category in cats)
            }
        )

    def files(self) -> tuple[dict[str, object], ...]:
        """Every attachment as the audit shows it: what it is and how many records it holds."""
        return tuple(
            {
                "kind": a.kind,
                "sheets": a.sheets,
                "rows": a.rows,
                "columns": a.columns,
                "records": self.records(within=(a.location,)),
            }
            for a in self._attachments
        )

    def attachments(self, group: str) -> list[Attachment]:
        return [a for a in self._attachments if group in ("any", a.group)]

    def satisfies(self, cond: Countable) -> bool:
        within = None
        if cond.attachment is not None:
            files = self.attachments(cond.attachment)
            if not files:
                return False
            within = tuple(a.location for a in files)
        if cond.edm_records:  # in the whole request, once any attachment asked for is there
            return self.edm_records >= cond.edm_records
        if cond.detector is not None and cond.min_distinct:
            return self.distinct(cond.detector, cond.min_confidence) >= cond.min_distinct
        if not cond.min_records:
            return True  # an attachment alone
        records = self.records(cond.legal_category, cond.min_confidence, within)
        return records >= cond.min_records

    def counts(self, min_confidence: str = "medium") -> dict[str, int]:
        """Distinct identifiers per detector (those with any at this confidence)."""
        out = {det: self.distinct(det, min_confidence) for det in self._best}
        return {det: n for det, n in out.items() if n}

    def samples(self, min_confidence: str = "medium") -> dict[str, list[str]]:
        floor = LEVEL[min_confidence]
        out: dict[str, list[str]] = {}
        for det, keys in self._best.items():
            masked = [m for level, m in keys.values() if level >= floor]
            if masked:
                out[det] = masked[:SAMPLES_PER_DETECTOR]
        return out
