"""Run every detector over a text in one pass and return validated, counted findings.

One prefilter pass over the UTF-8 bytes finds, at once, where numbers of seven or more digits
start, every keyword (gates, context words, dictionaries), which regex detectors' prefilters
occurred, and whether the text needs folding (full-width digits, zero-width characters). With
hyperscan installed that pass is a single hyperscan scan; without it, the same facts come from
``re`` and pyahocorasick. Only then does Python work, per number and per gated detector, never
per character.

Findings carry a keyed hash of the canonical value, never the value (the HMAC key is the
scanner's), its masked form, the line it sits on (a record) and a confidence: the detector's
base (``medium``, or ``low`` for weak shapes and numbers glued to ASCII letters such as
``SF1234...``), one level higher when one of its context words lies within the window.
"""

from __future__ import annotations

import bisect
import hmac
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import ahocorasick

from dlp_addon.detect.definitions import CONFIDENCE, Detector, DetectorSet
from dlp_addon.detect.normalize import TRIGGERS, needs_folding, normalize
from dlp_addon.detect.numbers import TOKEN, TOKEN_START, candidates, spread

hyperscan: Any
try:
    import hyperscan
except ImportError:  # pragma: no cover - the wheel exists for every platform we ship on
    hyperscan = None

logger = logging.getLogger(__name__)

_MIN_REGEX_TIMEOUT = 0.001
_DIGITS = frozenset(b"0123456789")
_ASCII_LETTER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Context windows are counted in characters; Chinese text is three UTF-8 bytes a character.
_BYTES_PER_CHAR = 3


@dataclass(frozen=True, slots=True)
class Finding:
    """A validated identifier. ``key`` is an HMAC of the canonical value: what "distinct"
    counts, safe to store; ``masked`` is what people see. The raw value is not kept."""

    detector: str
    key: str
    masked: str
    location: str
    line: int
    confidence: str

    @property
    def record(self) -> tuple[str, int]:
        return (self.location, self.line)


class _Hits(NamedTuple):
    starts: list[int]  # byte offsets where an identifier-shaped number may start
    words: list[tuple[int, int]]  # (word index, byte offset of its start)
    # detector index -> byte spans where its prefilter occurred (None: anywhere, scan it all)
    gates: dict[int, list[tuple[int, int]] | None]
    needs_folding: bool


_WINDOW_MARGIN = 256  # bytes around a prefilter hit that the full regex looks at


def _windows(data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merged byte windows around prefilter hits, cut on UTF-8 character boundaries."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        lo, hi = max(0, start - _WINDOW_MARGIN), min(len(data), end + _WINDOW_MARGIN)
        while lo > 0 and 0x80 <= data[lo] < 0xC0:
            lo -= 1
        while hi < len(data) and 0x80 <= data[hi] < 0xC0:
            hi += 1
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _within(sorted_positions: list[int], pos: int, window: int) -> bool:
    i = bisect.bisect_left(sorted_positions, pos - window)
    return i < len(sorted_positions) and sorted_positions[i] <= pos + window


class _Words:
    """Every keyword of every detector, once, with the roles it plays for whom."""

    def __init__(self, detectors: tuple[Detector, ...]) -> None:
        index: dict[str, int] = {}
        self.owners: list[list[tuple[str, int]]] = []
        for d_idx, det in enumerate(detectors):
            for role, words in (
                ("gate", det.keywords),
                ("context", det.context),
                ("dict", det.words),
            ):
                for word in words:
                    if word not in index:
                        index[word] = len(index)
                        self.owners.append([])
                    self.owners[index[word]].append((role, d_idx))
        self.words = list(index)


class _HyperscanPrefilter:
    _TOKEN, _FOLD, _WORD0 = 0, 1, 1000
    _GATE0 = 1_000_000

    def __init__(self, words: list[str], gates: dict[int, str], shapes: list[str]) -> None:
        # Numbers: one expression per numeric detector, its candidate pattern spread to allow
        # separators, bounded by non-digits: only identifier-shaped numbers call back.
        exprs: list[bytes] = [f"(?:^|[^0-9]){shape}(?:[^0-9]|$)".encode() for shape in shapes]
        flags = [hyperscan.HS_FLAG_SOM_LEFTMOST] * len(exprs)
        ids = [self._TOKEN] * len(exprs)
        exprs.append(("[" + "".join(f"\\x{{{ord(c):x}}}" for c in TRIGGERS) + "]").encode())
        flags.append(hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8)
        ids.append(self._FOLD)
        for i, word in enumerate(words):
            exprs.append(re.escape(word.encode()))
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_CASELESS)
            ids.append(self._WORD0 + i)
        for d_idx, expr in gates.items():
            exprs.append(expr.encode())
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8)
            ids.append(self._GATE0 + d_idx)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
        self._scratch = hyperscan.Scratch(self._db)
        import threading

        self._local = threading.local()

    def _scratch_for_thread(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._scratch.clone()
        return scratch

    def scan(self, data: bytes, text: str) -> _Hits:
        starts: list[int] = []
        words: list[tuple[int, int]] = []
        gates: dict[int, list[tuple[int, int]] | None] = {}
        fold = False

        def on_match(id_: int, start: int, end: int, flags: int, ctx: object) -> None:
            nonlocal fold
            if id_ == 0:
                while data[start] not in _DIGITS:  # the boundary, maybe a separator
                    start += 1
                starts.append(start)
            elif id_ >= self._GATE0:
                spans = gates.setdefault(id_ - self._GATE0, [])
                if spans is not None:
                    spans.append((start, end))
            elif id_ >= self._WORD0:
                words.append((id_ - self._WORD0, start))
            else:
                fold = True

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch_for_thread())
        return _Hits(starts, words, gates, fold)


class _PythonPrefilter:
    """The same facts without hyperscan: ``re`` for numbers and gates, pyahocorasick for words."""

    def __init__(self, words: list[str], gates: dict[int, str], shapes: list[str]) -> None:
        self._gates = {d: re.compile(expr) for d, expr in gates.items()}
        self._automaton: Any = None
        if words:
            automaton = ahocorasick.Automaton()
            for i, word in enumerate(words):
                automaton.add_word(word, (i, len(word)))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, data: bytes, text: str) -> _Hits:
        starts = [m.start() for m in TOKEN_START.finditer(data)]
        words: list[tuple[int, int]] = []
        if self._automaton is not None:
            lowered = text.lower()
            hits = sorted(
                (end - length + 1, i) for end, (i, length) in self._automaton.iter(lowered)
            )
            byte_pos, char_pos = 0, 0
            for char_start, i in hits:
                byte_pos += len(lowered[char_pos:char_start].encode("utf-8", "replace"))
                char_pos = char_start
                words.append((i, byte_pos))
        gates: dict[int, list[tuple[int, int]] | None] = {
            d: None for d, rx in self._gates.items() if rx.search(text)
        }
        return _Hits(starts, words, gates, needs_folding(text))


class Scanner:
    """Compiled detectors plus the prefilter; immutable and safe to share between threads."""

    def __init__(self, detectors: DetectorSet, hmac_key: bytes, *, engine: str = "auto") -> None:
        self.detectors = detectors.detectors
        self.window = detectors.context_window * _BYTES_PER_CHAR
        self._key = hmac_key
        self._words = _Words(self.detectors)
        self._numeric = [d for d in self.detectors if d.kind == "numeric"]
        self._lengths = frozenset(n for d in self._numeric for n in d.lengths)
        self._by_length: dict[int, list[Detector]] = {}
        for det in self._numeric:
            for n in det.lengths:
                self._by_length.setdefault(n, []).append(det)
        self._regex = [
            (i, d) for i, d in enumerate(self.detectors) if d.kind == "regex" and not d.record_scope
        ]
        self._record_scoped = [d for d in self.detectors if d.record_scope]
        self._index = {d.id: i for i, d in enumerate(self.detectors)}
        self._personal = frozenset(
            d.id for d in self.detectors if d.personal and not d.record_scope and d.kind != "words"
        )
        gates = {i: d.prefilter for i, d in enumerate(self.detectors) if d.prefilter}
        use_hs = engine == "hyperscan" or (engine == "auto" and hyperscan is not None)
        self.engine = "hyperscan" if use_hs else "python"
        shapes = [spread(d.numeric.pattern.decode()) for d in self._numeric]
        prefilter = _HyperscanPrefilter if use_hs else _PythonPrefilter
        self._pre: _HyperscanPrefilter | _PythonPrefilter = prefilter(
            self._words.words, gates, shapes
        )

    def key(self, detector: str, value: str) -> str:
        """The keyed hash that stands for ``value`` wherever a value would be stored."""
        return hmac.digest(self._key, f"{detector}:{value}".encode(), "sha256").hex()[:24]

    def scan(self, text: str, location: str, deadline: float | None = None) -> list[Finding]:
        """Findings in ``text``; raises ``TimeoutError`` once ``deadline`` (monotonic) passes."""
        if not text:
            return []
        data = text.encode("utf-8", "replace")
        hits = self._pre.scan(data, text)
        if hits.needs_folding:
            text = normalize(text)
            data = text.encode("utf-8", "replace")
            hits = self._pre.scan(data, text)
        found: list[tuple[Detector, str, int, str]] = []  # detector, value, byte offset, base
        self._numbers(data, hits.starts, found)
        gates = dict(hits.gates)
        context_at: dict[int, list[int]] = {}
        keyword_at: dict[int, list[int]] = {}
        for word, pos in hits.words:
            for role, d_idx in self._words.owners[word]:
                if role == "gate":
                    keyword_at.setdefault(d_idx, []).append(pos)
                elif role == "context":
                    context_at.setdefault(d_idx, []).append(pos)
                else:
                    det = self.detectors[d_idx]
                    found.append((det, self._words.words[word], pos, det.confidence))
        for d_idx, det in self._regex:
            if d_idx in keyword_at:  # only matches within the window of a keyword count
                near = sorted(keyword_at[d_idx])
                spans = [(max(0, p - self.window), p + self.window) for p in near]
                hits_here: list[tuple[Detector, str, int, str]] = []
                for start, end in _windows(data, spans):
                    window = data[start:end].decode("utf-8", "replace")
                    self._regex_matches(det, window, start, hits_here, deadline)
                found.extend(h for h in hits_here if _within(near, h[2], self.window))
            elif det.keywords:
                continue
            elif not det.prefilter:
                self._regex_matches(det, text, 0, found, deadline)
            elif d_idx in gates:
                gate_spans = gates[d_idx]
                if gate_spans is None:
                    self._regex_matches(det, text, 0, found, deadline)
                else:
                    for start, end in _windows(data, gate_spans):
                        window = data[start:end].decode("utf-8", "replace")
                        self._regex_matches(det, window, start, found, deadline)
        if not found:
            return []
        found.sort(key=lambda item: item[2])
        findings = []
        line, counted_to = 0, 0
        for det, value, pos, base in found:
            line += data.count(b"\n", counted_to, pos)
            counted_to = pos
            findings.append(self._finding(det, value, pos, base, location, line, context_at))
        scoped = [
            d for d in self._record_scoped if not d.keywords or self._index[d.id] in keyword_at
        ]
        if scoped:
            findings += self._in_records(data, findings, scoped, location, deadline)
        return findings

    def scan_all(
        self, parts: Iterable[tuple[str, str]], deadline: float | None = None
    ) -> list[Finding]:
        """Findings of every ``(location, text)`` part."""
        found: list[Finding] = []
        for location, text in parts:
            found.extend(self.scan(text, location, deadline))
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
        return found

    # -- stages ----------------------------------------------------------------------------

    def _numbers(
        self, data: bytes, starts: list[int], found: list[tuple[Detector, str, int, str]]
    ) -> None:
        done_until = -1
        by_length = self._by_length
        # The prefilter reports by end offset: a number may be reported after one inside it.
        for start in sorted(set(starts)):
            if start < done_until:
                continue
            token = TOKEN.match(data, start)
            if token is None:
                continue
            end = done_until = token.end()
            glued = (start > 0 and data[start - 1] in _ASCII_LETTER) or (
                end < len(data) and data[end] in _ASCII_LETTER
            )
            digits = token.group()
            base = "low" if glued else None
            if digits.isalnum():  # one group, the common case: one candidate at most
                for det in by_length.get(len(digits), ()):
                    if det.numeric.fullmatch(digits) is not None:
                        value = det.validate(digits.decode("ascii"))
                        if value is not None:
                            found.append((det, value, start, base or det.confidence))
                continue
            valid = []
            for cand in candidates(digits, start, self._lengths):
                for det in by_length[len(cand.digits)]:
                    if det.numeric.fullmatch(cand.digits) is not None:
                        value = det.validate(cand.digits.decode("ascii"))
                        if value is not None:
                            valid.append((det, value, cand.start, cand.end))
            # A number inside a longer one of the same kind is part of it, not another.
            for det, value, pos, end in valid:
                if not any(
                    d is det and p <= pos and end <= e and (p, e) != (pos, end)
                    for d, _, p, e in valid
                ):
                    found.append((det, value, pos, base or det.confidence))

    def _regex_matches(
        self,
        det: Detector,
        text: str,
        offset: int,
        found: list[tuple[Detector, str, int, str]],
        deadline: float | None,
    ) -> None:
        """Matches of ``det`` in ``text``, which starts at byte ``offset`` of the scanned data."""
        timeout = None if deadline is None else max(_MIN_REGEX_TIMEOUT, deadline - time.monotonic())
        char_at, byte_at = 0, offset
        for m in det.pattern.finditer(text, timeout=timeout):
            value = det.validate(m.group())
            if value is not None:
                byte_at += len(text[char_at : m.start()].encode("utf-8", "replace"))
                char_at = m.start()
                found.append((det, value, byte_at, det.confidence))

    def _finding(
        self,
        det: Detector,
        value: str,
        pos: int,
        base: str,
        location: str,
        line: int,
        context_at: dict[int, list[int]],
    ) -> Finding:
        near = context_at.get(self._index[det.id])
        level = CONFIDENCE.index(base)
        if near:
            near.sort()
            lo = bisect.bisect_left(near, pos - self.window)
            if lo < len(near) and near[lo] <= pos + self.window:
                level = min(level + 1, len(CONFIDENCE) - 1)
        return Finding(
            detector=det.id,
            key=self.key(det.id, value),
            masked=det.mask(value),
            location=location,
            line=line,
            confidence=CONFIDENCE[level],
        )

    def _in_records(
        self,
        data: bytes,
        findings: list[Finding],
        scoped: list[Detector],
        location: str,
        deadline: float | None,
    ) -> list[Finding]:
        """Names, addresses: searched only on lines that already hold a personal identifier."""
        wanted = {f.line for f in findings if f.detector in self._personal}
        if not wanted:
            return []
        out: list[Finding] = []
        for line, raw in enumerate(data.split(b"\n")):
            if line not in wanted:
                continue
            text = raw.decode("utf-8", "replace")
            for det in scoped:
                hits: list[tuple[Detector, str, int, str]] = []
                self._regex_matches(det, text, 0, hits, deadline)
                out.extend(
                    Finding(d.id, self.key(d.id, v), d.mask(v), location, line, base)
                    for d, v, _, base in hits
                )
        return out
