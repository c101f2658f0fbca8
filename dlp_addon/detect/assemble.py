"""Findings assembly: validated candidates and regex matches become :class:`Finding` objects.

Candidates found in Python (the pure-Python twin, or those the C pass left pending) are
checked by each detector's groupings, pattern and validator, a number inside a longer one of
the same detector dropped (:meth:`Assembler.validate`); then each finding gets its line, its
confidence raised by a context word within the window, its character offsets, and the lines
it makes records (:meth:`Assembler.assemble`). Low-confidence resident IDs are raised where
records are clearly present (:meth:`Assembler.corroborated`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from dlp_addon.detect.candidates import Candidate, grouping_level
from dlp_addon.detect.findings import Finding, Found
from dlp_addon.detect.kinds import RAISED, Detector, NumericDetector
from dlp_addon.detect.offsets import char_offsets
from dlp_addon.detect.validators import id_shaped

_TABLE_LINES = 3  # low-confidence IDs on this many lines of a part are a table of records
# The base of a number grouped as its detector does not list (139.00 1288.00 as a mobile): low,
# and no context word raises it.
SHAPE_LOW = "low, by its grouping"


class Assembler:
    """What assembling findings needs to know of a scanner's detectors."""

    def __init__(
        self,
        detectors: tuple[Detector, ...],
        numeric: list[NumericDetector],
        edit_det: NumericDetector | None,
        personal: frozenset[str],
        window: int,
        key: Callable[[str, str], str],
    ) -> None:
        self._index = {d.id: i for i, d in enumerate(detectors)}
        self._by_length: dict[int, list[NumericDetector]] = {}
        for det in numeric:
            for n in det.lengths:
                self._by_length.setdefault(n, []).append(det)
        self._edit_det = edit_det  # the resident ID detector: reversible edits are its findings
        self._corroborating = frozenset(d.id for d in detectors if d.personal and d.kind != "words")
        self._personal = personal  # detectors whose findings make their line a record
        self._window = window
        self._key = key

    def assemble(
        self,
        found: list[Found],
        data: bytes,
        context_at: dict[int, list[int]],
        location: str,
        first: tuple[int, int],
        out: list[Finding],
        records: dict[int, tuple[int, int, int]],
    ) -> None:
        """Findings found in Python: line, context, offsets, and the record lines they make
        (``records``: line -> its start and end in bytes, its start in characters).
        ``first``: the text's first line and character in its part."""
        first_line, first_char = first
        found.sort(key=_first)
        edges = sorted({x for item in found for x in (item[0], item[5])})
        chars = {e: first_char + c for e, c in zip(edges, char_offsets(data, edges), strict=True)}
        line, counted_to = first_line, 0
        reach, index, raised, personal = self._window, self._index, RAISED, self._personal
        new_records: dict[int, tuple[int, int]] = {}
        for pos, det, key, masked, base, end in found:
            line += data.count(b"\n", counted_to, pos)
            counted_to = pos
            context = context_at.get(index[det.id])
            if base is SHAPE_LOW:  # not how such a number is written: no word raises it
                base, context = "low", None
            if context:
                lo = bisect.bisect_left(context, pos - reach)
                if lo < len(context) and context[lo] <= pos + reach:
                    base = raised[base]
            out.append(Finding(det.id, key, masked, location, line, base, chars[pos], chars[end]))
            if det.id in personal and line not in records and line not in new_records:
                eol = data.find(b"\n", pos)
                new_records[line] = (data.rfind(b"\n", 0, pos) + 1, len(data) if eol < 0 else eol)
        if new_records:
            starts = sorted(start for start, _ in new_records.values())
            line_char = dict(zip(starts, char_offsets(data, starts), strict=True))
            for number, (start, eol) in new_records.items():
                records[number] = (start, eol, first_char + line_char[start])

    def validate(
        self,
        candidates: Iterable[Candidate],
        found: list[Found],
        only: list[NumericDetector] | None = None,
    ) -> None:
        """Candidates checked by each detector's groupings, pattern and validator in Python
        (``only``: the detector each candidate is for), a number inside a longer one of the
        same detector in the same token dropped."""
        by_length = self._by_length
        valid: list[tuple[NumericDetector, str, int, int, str]] = []
        token = -1
        for i, (token_start, start, end, digits, glued, shape, loose, edit, unless) in enumerate(
            candidates
        ):
            if token_start != token:
                self._outermost(valid, found)
                valid, token = [], token_start
            if edit:  # a reversible edit of a resident ID: that detector's, low (_corroborated)
                det = self._edit_det
                assert det is not None
                if unless and id_shaped(unless.decode("ascii")):
                    continue
                if det.numeric.fullmatch(digits) is not None:
                    value = det.validate(digits.decode("ascii"))
                    if value is not None:
                        valid.append((det, value, start, end, "low"))
                continue
            for det in by_length.get(len(digits), ()):
                if only is not None and det is not only[i]:
                    continue
                level = grouping_level(det.groupings, shape, loose)
                if level is None or det.numeric.fullmatch(digits) is None:
                    continue
                value = det.validate(digits.decode("ascii"))
                if value is not None:
                    base = SHAPE_LOW if level == "low" else "low" if glued else det.confidence
                    valid.append((det, value, start, end, base))
        self._outermost(valid, found)

    def corroborated(self, findings: list[Finding]) -> list[Finding]:
        """Low-confidence resident IDs (an edit, or glued to a letter) raised to medium where
        records are clearly present: another personal identifier of medium or more on the
        same line (a mobile, a name, an address), or such IDs on three lines or more."""
        assert self._edit_det is not None
        ident = self._edit_det.id
        low_lines = {f.line for f in findings if f.detector == ident and f.confidence == "low"}
        if not low_lines:
            return findings
        if len(low_lines) >= _TABLE_LINES:
            strong = low_lines
        else:
            strong = {
                f.line
                for f in findings
                if f.line in low_lines
                and f.confidence != "low"
                and f.detector in self._corroborating
            }
            if not strong:
                return findings
        return [
            f._replace(confidence="medium")
            if f.detector == ident and f.confidence == "low" and f.line in strong
            else f
            for f in findings
        ]

    def _outermost(
        self, valid: list[tuple[NumericDetector, str, int, int, str]], found: list[Found]
    ) -> None:
        """A number inside a longer one of the same detector (in one token) is part of it,
        not another: sorted by start and longest first, a number whose end some earlier one
        of its detector reaches is inside it."""
        reach: dict[int, int] = {}
        for det, value, pos, end, base in sorted(valid, key=_outermost_order):
            if reach.get(id(det), -1) >= end:
                continue
            reach[id(det)] = end
            found.append((pos, det, self._key(det.id, value), det.mask(value), base, end))


def _outermost_order(item: tuple[NumericDetector, str, int, int, str]) -> tuple[int, int]:
    return (item[2], -item[3])


def _first(item: Found) -> int:
    return item[0]
