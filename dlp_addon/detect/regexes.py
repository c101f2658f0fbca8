"""The regex detectors: each run only where its keyword or prefilter occurred, and the
record-scoped ones (names, addresses) only on lines already holding a personal identifier.

A regex detector written ``(?<![0-9A-Za-z])BODY(?![0-9A-Za-z])`` whose body is a DFA goes to
the C pass instead (:func:`token_detectors`). Shipped regexes run on stdlib ``re``; an
admin's on ``regex`` with the inspection deadline as its timeout (:func:`finditer`).
"""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from dlp_addon.detect.dfa import TOKEN_SYMBOLS, Machine, accepted_lengths, dfa, token_body
from dlp_addon.detect.findings import Finding, Found
from dlp_addon.detect.keywords import Hits
from dlp_addon.detect.kinds import RegexDetector
from dlp_addon.detect.native import maskable
from dlp_addon.detect.offsets import windows, within
from dlp_addon.detect.validators import TOKEN_TWINS

_MIN_REGEX_TIMEOUT = 0.001


class RegexStage:
    """The regex detectors of one scanner, by where they may match."""

    def __init__(
        self,
        regexes: list[tuple[int, RegexDetector]],
        record_scoped: list[RegexDetector],
        window: int,
        key: Callable[[str, str], str],
    ) -> None:
        self.regexes = regexes  # (detector index, detector), not record-scoped
        self.record_scoped = record_scoped
        self._record_gates = {
            d.id: re.compile("|".join(map(re.escape, d.keywords)), re.IGNORECASE)
            for d in record_scoped
            if d.keywords
        }
        self._window = window
        self._key = key

    def run(
        self,
        data: bytes,
        text: str,
        hits: Hits,
        keyword_at: dict[int, list[int]],
        found: list[Found],
        deadline: float | None,
    ) -> None:
        """The regex detectors, each where its keyword or prefilter occurred."""
        for d_idx, det in self.regexes:
            if d_idx in keyword_at:  # only matches within the window of a keyword count
                near = keyword_at[d_idx]
                spans = [(max(0, p - self._window), p + self._window) for p in near]
                hits_here: list[Found] = []
                for start, end in windows(data, spans):
                    window = data[start:end].decode("utf-8", "replace")
                    self._matches(det, window, start, hits_here, deadline)
                found.extend(h for h in hits_here if within(near, h[0], self._window))
            elif det.keywords:
                continue
            elif not det.prefilter:
                self._matches(det, text, 0, found, deadline)
            elif d_idx in hits.gates:
                gate_spans = hits.gates[d_idx]
                if gate_spans is None:
                    self._matches(det, text, 0, found, deadline)
                else:
                    for start, end in windows(data, gate_spans):
                        window = data[start:end].decode("utf-8", "replace")
                        self._matches(det, window, start, found, deadline)

    def _matches(
        self,
        det: RegexDetector,
        text: str,
        offset: int,
        found: list[Found],
        deadline: float | None,
    ) -> None:
        """Matches of ``det`` in ``text``, which starts at byte ``offset`` of the scanned data."""
        char_at, byte_at = 0, offset
        for m in finditer(det, text, deadline):
            value = det.validate(m.group())
            if value is not None:
                byte_at += len(text[char_at : m.start()].encode("utf-8", "replace"))
                char_at = m.start()
                end = byte_at + len(m.group().encode("utf-8", "replace"))
                key, masked = self._key(det.id, value), det.mask(value)
                found.append((byte_at, det, key, masked, det.confidence, end))

    def in_records(
        self,
        data: bytes,
        records: dict[int, tuple[int, int, int]],
        location: str,
        deadline: float | None,
    ) -> list[Finding]:
        """Names, addresses: searched only on lines that already hold a personal identifier
        (``records``: line -> its start and end in bytes, its start in characters; and, for a
        detector with keywords, one of its keywords), all such lines at once (joined), a match
        never crossing from one line to the next."""
        numbers = sorted(records)
        joined_all = b"\n".join([data[records[n][0] : records[n][1]] for n in numbers]).decode(
            "utf-8", "replace"
        )
        texts = joined_all.split("\n")  # a record line holds no newline: one text a line
        line_starts = list(itertools.accumulate([len(t) + 1 for t in texts], initial=0))
        out: list[Finding] = []
        for det in self.record_scoped:
            here, starts, joined = numbers, line_starts, joined_all
            gate = self._record_gates.get(det.id)
            if gate is not None:  # only lines holding one of its keywords
                if gate.search(joined_all) is None:
                    continue
                hit = sorted(
                    {
                        bisect.bisect_right(line_starts, m.start()) - 1
                        for m in gate.finditer(joined_all)
                    }
                )
                if len(hit) < len(numbers):
                    here = [numbers[i] for i in hit]
                    joined = "\n".join([texts[i] for i in hit])
                    starts = list(itertools.accumulate([len(texts[i]) + 1 for i in hit], initial=0))
            for m in finditer(det, joined, deadline):
                i = bisect.bisect_right(starts, m.start()) - 1
                if m.end() >= starts[i + 1]:  # past the end of its line
                    continue
                value = det.validate(m.group())
                if value is not None:
                    number = here[i]
                    at = records[number][2] + m.start() - starts[i]
                    key, masked = self._key(det.id, value), det.mask(value)
                    out.append(
                        Finding(
                            det.id,
                            key,
                            masked,
                            location,
                            number,
                            det.confidence,
                            at,
                            at + len(m.group()),
                        )
                    )
        return out


def finditer(det: RegexDetector, text: str, deadline: float | None) -> Iterator[Any]:
    """Matches of a regex detector: ``regex`` with the deadline as timeout, or stdlib ``re``
    for the shipped detectors it can run (see ``definitions.build_detector``)."""
    if isinstance(det.pattern, re.Pattern):
        return det.pattern.finditer(text)
    timeout = None if deadline is None else max(_MIN_REGEX_TIMEOUT, deadline - time.monotonic())
    return cast(Iterator[Any], det.pattern.finditer(text, timeout=timeout))


def token_detectors(
    regexes: list[tuple[int, RegexDetector]],
) -> list[tuple[RegexDetector, Machine]]:
    """The regex detectors the C pass checks as whole runs of letters and digits: written
    ``(?<![0-9A-Za-z])BODY(?![0-9A-Za-z])``, BODY a DFA of at most 64 characters, no
    prefilter, a validator with a C twin and a mask C can apply."""
    out = []
    for _, det in regexes:
        body = token_body(det.pattern.pattern)
        machine = dfa(body, TOKEN_SYMBOLS) if body is not None else None
        if (
            machine is None
            or det.prefilter
            or det.validate not in TOKEN_TWINS
            or accepted_lengths(machine) is None
            or not maskable(det)
        ):
            continue
        out.append((det, machine))
    return out
