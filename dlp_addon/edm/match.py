"""Exact data match in one message: which rows of the customer table it carries.

A primary element (a resident ID or mobile the scanner found, by its keyed hash; a policy number
in the admin's declared format, hashed here) is looked up in the index. A row it belongs to is
a record of that customer when at least ``min_corroborating`` of the row's other fields occur
within ``proximity`` characters of the element: another primary value of the same row (looked
up the same way), or a corroborating value (its hash compared with every substring of the
row's length in the normalised text around the element). Records are counted by row: a
customer's row pasted twice, or found by its ID and by its policy number, is one record.

Only hashes are compared; the text is read where it lies and nothing is kept.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import regex

from dlp_addon.detect.scanner import Finding
from dlp_addon.edm.fields import (
    SCANNER_DETECTOR,
    SEARCHED,
    WORD,
    Keys,
    finding_key,
    fold,
    policy_canonical,
    policy_finder,
    primary_hash,
    stored_hash,
)
from dlp_addon.edm.index import Header

_DEADLINE_EVERY = 64  # primary hits between looks at the clock
_MIN_REGEX_TIMEOUT = 0.001


class Table(Protocol):
    """What matching needs of an index (:class:`EdmIndex`, or a worker's broken stand-in)."""

    def rows_of(self, key: int) -> list[int]: ...
    def row(self, rowid: int) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class EdmMatch:
    """Rows of the customer table one message carries: a count, and a keyed hash per record
    (what budgets count; stable across re-indexing with the same key)."""

    records: int = 0
    keys: tuple[str, ...] = ()


NO_MATCH = EdmMatch()


@dataclass(frozen=True)
class Settings:
    """The policy's ``edm:`` section, checked against the index."""

    primary: frozenset[str]
    corroborating: frozenset[str]
    proximity: int
    min_corroborating: int


class Matcher:
    """Settings, an index and the hash functions: everything one message's match needs."""

    def __init__(
        self, settings: Settings, header: Header, table: Table, hmac_key: bytes, path: Path
    ) -> None:
        self.settings = settings
        self.path = path  # one of the policy's files: a new index reloads the policy
        self.header = header
        self.table = table
        self._hmac_key = hmac_key
        keys = Keys(hmac_key)
        wanted = settings.primary | settings.corroborating
        # Kinds the index has keys for: found in text and looked up.
        self._looked_up = frozenset(header.primary) & wanted
        # Stored kinds compared by the hash of a found value (not substrings).
        self._slots = {k: i for i, k in enumerate(header.stored)}
        self._lengths = {k: len(header.stored) + i for i, k in enumerate(header.searched)}
        self._detectors = {det: kind for kind, det in SCANNER_DETECTOR.items() if kind in wanted}
        self._policy_hash: Callable[[str], int] | None = None
        self._finder: Any = None
        self._policy_format: Any = None
        if header.policy_format and "policy" in wanted:
            self._finder = regex.compile(policy_finder(header.policy_format), regex.IGNORECASE)
            self._policy_format = regex.compile(header.policy_format, regex.IGNORECASE)
            self._policy_hash = primary_hash(keys, "policy")
        self._stored_hash = {
            k: stored_hash(keys, k) for k in header.stored if k in settings.corroborating
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (Matcher, (self.settings, self.header, self.table, self._hmac_key, self.path))

    def match(
        self,
        parts: Iterable[tuple[str, str]],
        findings: Sequence[Finding],
        deadline: float | None = None,
    ) -> EdmMatch:
        """The records of the table in ``parts``, given the scanner's ``findings`` of them."""
        by_location: dict[str, list[Finding]] = {}
        for f in findings:
            if f.detector in self._detectors and f.start >= 0:
                by_location.setdefault(f.location, []).append(f)
        rows: set[int] = set()
        keys: list[str] = []
        for location, text in parts:
            found = self._candidates(text, by_location.get(location, ()), deadline)
            if found:
                self._part(text, found, rows, keys, deadline)
        return EdmMatch(len(rows), tuple(keys)) if rows else NO_MATCH

    def _candidates(
        self, text: str, findings: Iterable[Finding], deadline: float | None
    ) -> list[tuple[int, int, str, int]]:
        out = [(f.start, f.end, self._detectors[f.detector], finding_key(f.key)) for f in findings]
        if self._finder is not None and self._policy_hash is not None:
            timeout = None
            if deadline is not None:
                timeout = max(_MIN_REGEX_TIMEOUT, deadline - time.monotonic())
            for m in self._finder.finditer(fold(text), timeout=timeout):
                value = policy_canonical(self._policy_format, m.group())
                if value:
                    out.append((m.start(), m.end(), "policy", self._policy_hash(value)))
        out.sort()
        return out

    def _part(
        self,
        text: str,
        cands: list[tuple[int, int, str, int]],
        rows: set[int],
        keys: list[str],
        deadline: float | None,
    ) -> None:
        table, s = self.table, self.settings
        looked_up: dict[int, frozenset[int]] = {}
        for i, (_, _, kind, h) in enumerate(cands):
            if kind in self._looked_up:
                found = table.rows_of(h)
                if found:
                    looked_up[i] = frozenset(found)
        starts = [c[0] for c in cands]
        cleaned = _Cleaned(text)
        hashes: dict[tuple[str, str], int] = {}  # substring hashes, shared by nearby windows
        for n, (i, candidates) in enumerate(looked_up.items()):
            start, end, kind, h = cands[i]
            if kind not in s.primary:
                continue
            if deadline is not None and n % _DEADLINE_EVERY == 0 and time.monotonic() > deadline:
                raise TimeoutError("EDM match deadline passed")
            lo, hi = max(0, start - s.proximity), end + s.proximity
            near = range(bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi))
            window: list[str] = []  # the normalised text around, made when first needed
            for row in sorted(candidates):
                if row in rows:
                    break  # this element's customer is already counted
                got = self._corroborated(
                    row,
                    kind,
                    i,
                    near,
                    cands,
                    looked_up,
                    cleaned,
                    (lo, start, end, hi),
                    window,
                    hashes,
                )
                if got >= s.min_corroborating:
                    rows.add(row)
                    keys.append(self._record_key(h, row))
                    break

    def _record_key(self, primary: int, row: int) -> str:
        """What budgets count for a record: the primary value's hash and the row's stored
        hashes, the same after a re-index (unlike the row's position)."""
        stored = self.table.row(row)
        return f"edm:{primary:016x}{stored[0] if self.header.stored else 0:08x}"

    def _corroborated(
        self,
        row: int,
        kind: str,
        i: int,
        near: range,
        cands: list[tuple[int, int, str, int]],
        looked_up: dict[int, frozenset[int]],
        cleaned: _Cleaned,
        span: tuple[int, int, int, int],
        window: list[str],
        hashes: dict[tuple[str, str], int],
    ) -> int:
        """How many distinct other fields of ``row`` occur near candidate ``i``."""
        s = self.settings
        stored = self.table.row(row)
        seen: set[str] = set()
        for j in near:
            other = cands[j][2]
            if j == i or other == kind or other in seen or other not in s.corroborating:
                continue
            if row in looked_up.get(j, ()) or (
                other in self._slots
                and other in self._stored_hash
                and ((cands[j][3] >> 32) or 1) == stored[self._slots[other]]
            ):
                seen.add(other)
        if len(seen) >= s.min_corroborating:
            return len(seen)
        for other in SEARCHED:
            if other not in self._lengths or other not in self._stored_hash:
                continue
            target, length = stored[self._slots[other]], stored[self._lengths[other]]
            if not target:
                continue
            if not window:  # normalised text before and after the element
                lo, start, end, hi = span
                window += (cleaned.between(lo, start), cleaned.between(end, hi))
            if _occurs(window, length, target, other, self._stored_hash[other], hashes):
                seen.add(other)
                if len(seen) >= s.min_corroborating:
                    break
        return len(seen)


class _Cleaned:
    """A part's text as corroborating values are compared (:func:`fields.clean`), made once,
    with where each original character landed."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._made = False

    def _make(self) -> None:
        pieces: list[str] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._at: list[int] = []
        n = 0
        for m in WORD.finditer(fold(self._text)):
            self._starts.append(m.start())
            self._ends.append(m.end())
            self._at.append(n)
            pieces.append(m.group())
            n += m.end() - m.start()
        self._clean = "".join(pieces).casefold()
        self._made = True

    def _position(self, offset: int) -> int:
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return 0
        return self._at[i] + min(offset, self._ends[i]) - self._starts[i]

    def between(self, start: int, end: int) -> str:
        """The cleaned text of ``text[start:end]``."""
        if not self._made:
            self._make()
        return self._clean[self._position(start) : self._position(end)]


def _occurs(
    window: list[str],
    length: int,
    target: int,
    kind: str,
    hasher: Callable[[str], int],
    memo: dict[tuple[str, str], int],
) -> bool:
    """Some substring of ``length`` characters before or after the element hashes to
    ``target``. Nearest first: a customer's name is usually right next to their number."""
    before, after = window
    for d in range(max(len(before), len(after)) - length + 1):
        for piece in (after[d : d + length], before[len(before) - length - d : len(before) - d]):
            if len(piece) != length:
                continue
            got = memo.get((kind, piece))
            if got is None:
                got = memo[(kind, piece)] = hasher(piece)
            if got == target:
                return True
    return False
