"""Run every detector over a text in one pass and return validated findings.

One Aho-Corasick pass over all keywords (pyahocorasick) decides which keyword-gated regexes run
and where context words sit; regexes then run on the normalised text and every match is
validated. A match's confidence is ``high`` when one of its detector's context words lies within
the context window, ``medium`` otherwise.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick

from dlp_addon.detect.definitions import Detector, DetectorSet
from dlp_addon.detect.normalize import normalize

_MIN_REGEX_TIMEOUT = 0.001


@dataclass(frozen=True, slots=True)
class Finding:
    """A validated identifier. ``value`` is canonical and raw: it never leaves the scanner's
    callers unmasked (its repr is hidden so logs and test failures show ``masked`` only)."""

    detector: str
    value: str = field(repr=False)
    masked: str
    location: str
    start: int
    confidence: str


class Scanner:
    """Compiled detectors plus the keyword automaton; immutable and safe to share."""

    def __init__(self, detectors: DetectorSet) -> None:
        self.detectors = detectors.detectors
        self.window = detectors.context_window
        self._automaton: ahocorasick.Automaton | None = None
        owners: dict[str, list[tuple[str, int]]] = {}
        for idx, det in enumerate(self.detectors):
            for word in det.keywords:
                owners.setdefault(word, []).append(("gate", idx))
            for word in det.context:
                owners.setdefault(word, []).append(("context", idx))
        if owners:
            automaton = ahocorasick.Automaton()
            for word, owned in owners.items():
                automaton.add_word(word, (len(word), tuple(owned)))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, text: str, location: str, deadline: float | None = None) -> list[Finding]:
        """Findings in ``text``; raises ``TimeoutError`` once ``deadline`` (monotonic) passes."""
        if not text:
            return []
        norm = normalize(text)
        gates: set[int] = set()
        context_at: dict[int, list[int]] = {}
        if self._automaton is not None:
            for end, (length, owned) in self._automaton.iter(norm.lower()):
                for kind, idx in owned:
                    if kind == "gate":
                        gates.add(idx)
                    else:
                        context_at.setdefault(idx, []).append(end - length + 1)
        findings: list[Finding] = []
        for idx, det in enumerate(self.detectors):
            if det.keywords and idx not in gates:
                continue
            findings.extend(
                self._run(det, norm, location, deadline, sorted(context_at.get(idx, ())))
            )
        return findings

    def scan_all(
        self, parts: Iterable[tuple[str, str]], deadline: float | None = None
    ) -> list[Finding]:
        """Findings of every ``(location, text)`` part."""
        found: list[Finding] = []
        for location, text in parts:
            found.extend(self.scan(text, location, deadline))
        return found

    def _run(
        self,
        det: Detector,
        text: str,
        location: str,
        deadline: float | None,
        context_positions: list[int],
    ) -> list[Finding]:
        timeout = None
        if deadline is not None:
            timeout = max(_MIN_REGEX_TIMEOUT, deadline - time.monotonic())
        out: list[Finding] = []
        for match in det.pattern.finditer(text, timeout=timeout):
            value = det.validate(match.group())
            if value is None:
                continue
            start, end = match.span()
            lo = bisect.bisect_left(context_positions, start - self.window)
            near = lo < len(context_positions) and context_positions[lo] <= end + self.window
            out.append(
                Finding(
                    detector=det.id,
                    value=value,
                    masked=det.mask(value),
                    location=location,
                    start=start,
                    confidence="high" if near else "medium",
                )
            )
        return out
