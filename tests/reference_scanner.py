"""A plain reference scanner: no prefilter, no token logic, every detector on its own.

Numbers are found by one overlapping regex per candidate length (digits with single
separators between them, bounded by non-digits), keywords by ``str.find``, record-scoped
detectors by splitting lines. It is slow and obvious on purpose: the fast scanner must find
exactly the same identifiers.
"""

from __future__ import annotations

import regex

from dlp_addon.detect.definitions import Detector, DetectorSet
from dlp_addon.detect.normalize import normalize
from dlp_addon.detect.scanner import Scanner

Found = set[tuple[str, str]]  # (detector, keyed hash)


class ReferenceScanner:
    def __init__(self, detectors: DetectorSet, key: bytes) -> None:
        self.detectors = detectors.detectors
        self._hash = Scanner(detectors, key, engine="python").key  # same keyed hash
        self._window = detectors.context_window * 3
        lengths = {n for d in self.detectors if d.kind == "numeric" for n in d.lengths}
        self._numbers = {
            n: regex.compile(rf"(?<![0-9])(?:[0-9][ \-./]?){{{n - 1}}}[0-9Xx](?![0-9Xx])")
            for n in lengths
        }

    def _near_keyword(self, det: Detector, text: str, pos: int) -> bool:
        """A keyword-gated detector counts a match only within the context window (in UTF-8
        bytes, three to a Chinese character) of one of its keywords."""
        if not det.keywords:
            return True
        lowered = text.lower()
        at = len(text[:pos].encode())
        for word in det.keywords:
            i = lowered.find(word)
            while i >= 0:
                if abs(len(lowered[:i].encode()) - at) <= self._window:
                    return True
                i = lowered.find(word, i + 1)
        return False

    def scan(self, text: str) -> Found:
        text = normalize(text)
        found: Found = set()
        lines_with_personal: set[int] = set()

        def add(det_id: str, value: str, pos: int, personal: bool) -> None:
            found.add((det_id, self._hash(det_id, value)))
            if personal:
                lines_with_personal.add(text.count("\n", 0, pos))

        for det in self.detectors:
            if det.kind == "numeric":
                spans: list[tuple[int, int, str]] = []
                for n in det.lengths:
                    for m in self._numbers[n].finditer(text, overlapped=True):
                        compact = regex.sub(r"[ \-./]", "", m.group()).encode()
                        if det.numeric.fullmatch(compact):
                            value = det.validate(compact.decode())
                            if value is not None:
                                spans.append((m.start(), m.end(), value))
                # A number inside a longer one of the same kind is part of it.
                for start, end, value in spans:
                    if not any(
                        s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans
                    ):
                        add(det.id, value, start, det.personal)
            elif det.kind == "regex" and not det.record_scope:
                lowered = text.lower()
                if det.keywords and not any(k in lowered for k in det.keywords):
                    continue
                for m in det.pattern.finditer(text):
                    value = det.validate(m.group())
                    if value is not None and self._near_keyword(det, text, m.start()):
                        add(det.id, value, m.start(), det.personal)
            elif det.kind == "words":
                lowered = text.lower()
                for word in det.words:
                    if word in lowered:
                        add(det.id, word, 0, False)
        for line_no, line in enumerate(text.split("\n")):
            if line_no not in lines_with_personal:
                continue
            for det in self.detectors:
                if det.record_scope and (
                    not det.keywords or any(k in text.lower() for k in det.keywords)
                ):
                    for m in det.pattern.finditer(line):
                        value = det.validate(m.group())
                        if value is not None:
                            found.add((det.id, self._hash(det.id, value)))
        return found
