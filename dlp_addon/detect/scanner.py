"""Run every detector over a text in one pass and return validated, counted findings.

Over the UTF-8 bytes, three passes at C speed: whether the text needs folding (full-width
digits, zero-width characters), every keyword (gates, context words, dictionaries) and regex
prefilter in one hyperscan scan, and every number token with the candidates worth checking
(``numbers.find``: lengths, first digits and checksum families of the numeric detectors).
Without the compiled parts (``engine="python"``) the same facts come from ``re``,
pyahocorasick and the pure-Python twin in ``numbers``. Only then does Python work, per
checked candidate and per gated detector, never per character.

Findings carry a keyed hash of the canonical value, never the value (the HMAC key is the
scanner's), its masked form, the line it sits on (a record) and a confidence: the detector's
base (``medium``, or ``low`` for weak shapes and numbers glued to ASCII letters such as
``SF1234...``), one level higher when one of its context words lies within the window.
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, cast

import ahocorasick

from dlp_addon.detect.definitions import CONFIDENCE, Detector, DetectorSet
from dlp_addon.detect.normalize import needs_folding, needs_folding_utf8, normalize
from dlp_addon.detect.numbers import Plan, find, find_python

hyperscan: Any
try:
    import hyperscan
except ImportError:  # pragma: no cover - the wheel exists for every platform we ship on
    hyperscan = None

logger = logging.getLogger(__name__)

_MIN_REGEX_TIMEOUT = 0.001
# Context windows are counted in characters; Chinese text is three UTF-8 bytes a character.
_BYTES_PER_CHAR = 3
_RAISED = dict(zip(CONFIDENCE, (*CONFIDENCE[1:], CONFIDENCE[-1]), strict=True))


class Finding(NamedTuple):
    """A validated identifier. ``key`` is an HMAC of the canonical value: what "distinct"
    counts, safe to store; ``masked`` is what people see. The raw value is not kept.
    (A NamedTuple: made thousands of times per large message, at a third of a dataclass's cost.)"""

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
    words: list[tuple[int, int]]  # (word index, byte offset of its start)
    # detector index -> byte spans where its prefilter occurred (None: anywhere, scan it all)
    gates: dict[int, list[tuple[int, int]] | None]


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
    _WORD0, _GATE0 = 0, 1_000_000

    def __init__(self, words: list[str], gates: dict[int, str]) -> None:
        exprs: list[bytes] = []
        flags: list[int] = []
        ids: list[int] = []
        for i, word in enumerate(words):
            exprs.append(re.escape(word.encode()))
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_CASELESS)
            ids.append(self._WORD0 + i)
        for d_idx, expr in gates.items():
            exprs.append(expr.encode())
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8)
            ids.append(self._GATE0 + d_idx)
        self._db: Any = None
        if exprs:
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
        words: list[tuple[int, int]] = []
        gates: dict[int, list[tuple[int, int]] | None] = {}
        if self._db is None:
            return _Hits(words, gates)

        def on_match(id_: int, start: int, end: int, flags: int, ctx: object) -> None:
            if id_ >= self._GATE0:
                spans = gates.setdefault(id_ - self._GATE0, [])
                if spans is not None:
                    spans.append((start, end))
            else:
                words.append((id_, start))

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch_for_thread())
        return _Hits(words, gates)


class _PythonPrefilter:
    """The same facts without hyperscan: ``re`` for numbers and gates, pyahocorasick for words."""

    def __init__(self, words: list[str], gates: dict[int, str]) -> None:
        self._gates = {d: re.compile(expr) for d, expr in gates.items()}
        self._automaton: Any = None
        if words:
            automaton = ahocorasick.Automaton()
            for i, word in enumerate(words):
                automaton.add_word(word, (i, len(word)))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, data: bytes, text: str) -> _Hits:
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
        return _Hits(words, gates)


class Scanner:
    """Compiled detectors plus the prefilter; immutable and safe to share between threads."""

    def __init__(self, detectors: DetectorSet, hmac_key: bytes, *, engine: str = "auto") -> None:
        self.detectors = detectors.detectors
        self.window = detectors.context_window * _BYTES_PER_CHAR
        self._key = hmac_key
        self._words = _Words(self.detectors)
        self._numeric = [d for d in self.detectors if d.kind == "numeric"]
        self._plan = Plan.for_detectors(self._numeric)
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
        prefilter = _HyperscanPrefilter if use_hs else _PythonPrefilter
        self._pre: _HyperscanPrefilter | _PythonPrefilter = prefilter(self._words.words, gates)
        self._find = find if use_hs else find_python
        self._needs_folding = needs_folding_utf8 if use_hs else lambda _, t: needs_folding(t)

    def key(self, detector: str, value: str) -> str:
        """The keyed hash that stands for ``value`` wherever a value would be stored."""
        return hmac.digest(self._key, f"{detector}:{value}".encode(), "sha256").hex()[:24]

    def scan(
        self, text: str, location: str, deadline: float | None = None, first_line: int = 0
    ) -> list[Finding]:
        """Findings in ``text`` (whose first line is line ``first_line`` of its part); raises
        ``TimeoutError`` once ``deadline`` (monotonic) passes."""
        if not text:
            return []
        data = text.encode("utf-8", "replace")
        if self._needs_folding(data, text):
            text = normalize(text)
            data = text.encode("utf-8", "replace")
        hits = self._pre.scan(data, text)
        found: list[tuple[Detector, str, int, str]] = []  # detector, value, byte offset, base
        self._numbers(data, found)
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
        for near in context_at.values():
            near.sort()
        findings = []
        record_lines: set[int] = set()  # lines holding a personal identifier
        line, counted_to = first_line, 0
        for det, value, pos, base in found:
            line += data.count(b"\n", counted_to, pos)
            counted_to = pos
            findings.append(self._finding(det, value, pos, base, location, line, context_at))
            if det.id in self._personal:
                record_lines.add(line)
        scoped = [
            d for d in self._record_scoped if not d.keywords or self._index[d.id] in keyword_at
        ]
        if scoped and record_lines:
            findings += self._in_records(text, record_lines, scoped, location, deadline, first_line)
        return findings

    def scan_all(
        self, parts: Iterable[tuple[str, str]], deadline: float | None = None
    ) -> list[Finding]:
        """Findings of every ``(location, text)`` part. A long part (a big sheet) is scanned in
        chunks of whole lines, the deadline checked between them; when it passes,
        :class:`ScanTimeout` carries what was found so far."""
        found: list[Finding] = []
        for location, text in parts:
            for first_line, chunk in _chunks(text):
                try:
                    found.extend(self.scan(chunk, location, deadline, first_line))
                except TimeoutError as e:
                    raise ScanTimeout(found) from e
                if deadline is not None and time.monotonic() > deadline:
                    raise ScanTimeout(found)
        return found

    # -- stages ----------------------------------------------------------------------------

    def _numbers(self, data: bytes, found: list[tuple[Detector, str, int, str]]) -> None:
        by_length = self._by_length
        valid: list[tuple[Detector, str, int, int, str]] = []
        token = -1
        for token_start, start, end, digits, glued in self._find(data, self._plan):
            if token_start != token:
                _outermost(valid, found)
                valid, token = [], token_start
            for det in by_length.get(len(digits), ()):
                if det.numeric.fullmatch(digits) is not None:
                    value = det.validate(digits.decode("ascii"))
                    if value is not None:
                        valid.append((det, value, start, end, "low" if glued else det.confidence))
        _outermost(valid, found)

    def _regex_matches(
        self,
        det: Detector,
        text: str,
        offset: int,
        found: list[tuple[Detector, str, int, str]],
        deadline: float | None,
    ) -> None:
        """Matches of ``det`` in ``text``, which starts at byte ``offset`` of the scanned data."""
        char_at, byte_at = 0, offset
        for m in _finditer(det, text, deadline):
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
        if near:
            lo = bisect.bisect_left(near, pos - self.window)
            if lo < len(near) and near[lo] <= pos + self.window:
                base = _RAISED[base]
        return Finding(det.id, self.key(det.id, value), det.mask(value), location, line, base)

    def _in_records(
        self,
        text: str,
        record_lines: set[int],
        scoped: list[Detector],
        location: str,
        deadline: float | None,
        first_line: int = 0,
    ) -> list[Finding]:
        """Names, addresses: searched only on lines that already hold a personal identifier,
        all such lines at once (joined), a match never crossing from one line to the next."""
        lines = sorted(record_lines)
        every = text.split("\n")
        texts = [every[line - first_line] for line in lines]
        starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
        joined = "\n".join(texts)
        out: list[Finding] = []
        for det in scoped:
            for m in _finditer(det, joined, deadline):
                i = bisect.bisect_right(starts, m.start()) - 1
                if m.end() > starts[i] + len(texts[i]):
                    continue
                value = det.validate(m.group())
                if value is not None:
                    key = self.key(det.id, value)
                    out.append(
                        Finding(det.id, key, det.mask(value), location, lines[i], det.confidence)
                    )
        return out


_CHUNK_CHARS = 1 << 20  # a part longer than this is scanned a chunk of whole lines at a time


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """``(first line, chunk)`` of ``text``: all of it when short, else pieces cut after a
    newline, so no line (a record) and no number is cut in two."""
    if len(text) <= _CHUNK_CHARS:
        yield 0, text
        return
    start, line = 0, 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK_CHARS)
        end = len(text) if end < 0 else end + 1
        chunk = text[start:end]
        yield line, chunk
        line += chunk.count("\n")
        start = end


class ScanTimeout(TimeoutError):
    """The deadline passed; ``partial`` holds the findings of what was scanned before."""

    def __init__(self, partial: list[Finding]) -> None:
        super().__init__("scan deadline passed")
        self.partial = partial


def _finditer(det: Detector, text: str, deadline: float | None) -> Iterator[Any]:
    """Matches of a regex detector: ``regex`` with the deadline as timeout, or stdlib ``re``
    for the shipped detectors it can run (see ``definitions.build_detector``)."""
    if isinstance(det.pattern, re.Pattern):
        return det.pattern.finditer(text)
    timeout = None if deadline is None else max(_MIN_REGEX_TIMEOUT, deadline - time.monotonic())
    return cast(Iterator[Any], det.pattern.finditer(text, timeout=timeout))


def _outermost(
    valid: list[tuple[Detector, str, int, int, str]],
    found: list[tuple[Detector, str, int, str]],
) -> None:
    """A number inside a longer one of the same kind (in one token) is part of it, not another."""
    if len(valid) == 1:
        det, value, pos, _, base = valid[0]
        found.append((det, value, pos, base))
        return
    for det, value, pos, end, base in valid:
        if not any(
            d is det and p <= pos and end <= e and (p, e) != (pos, end) for d, _, p, e, _ in valid
        ):
            found.append((det, value, pos, base))
