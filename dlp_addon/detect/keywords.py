"""The keyword pass: one scan over the UTF-8 bytes finds every keyword (gates, context words,
dictionaries), the prefilters of the regex detectors that need one, and whether numerals or
letters may stand for digits somewhere (then the text is folded and scanned again).

hyperscan does it at C speed (:class:`HyperscanPrefilter`, with ``_numscan.digit_hint`` for the
digit question when the C pass is built); without it, ``re`` and pyahocorasick give the same
facts (:class:`PythonPrefilter`). :func:`keyword_positions` sorts the hits by detector and role.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import ahocorasick

from dlp_addon.detect.findings import Found
from dlp_addon.detect.kinds import Detector
from dlp_addon.detect.native import numscan
from dlp_addon.detect.normalize import DIGIT_HINTS, NUMERALS, RUN_SEPARATORS

hyperscan: Any
try:
    import hyperscan
except ImportError:  # pragma: no cover - the wheel exists for every platform we ship on
    hyperscan = None


class Hits(NamedTuple):
    words: list[tuple[int, int]]  # (word index, byte offset of its start)
    # detector index -> byte spans where its prefilter occurred (None: anywhere, scan it all)
    gates: dict[int, list[tuple[int, int]] | None]
    digit_hint: bool = False  # numerals or letters for digits may stand in a number here


class Words:
    """Every keyword of every detector, once, with the roles it plays for whom. A record-scoped
    detector's keywords are not here: they are looked for in its record lines themselves."""

    def __init__(self, detectors: tuple[Detector, ...]) -> None:
        index: dict[str, int] = {}
        self.owners: list[list[tuple[str, int]]] = []
        for d_idx, det in enumerate(detectors):
            for role, words in (
                ("gate", () if det.record_scope else det.keywords),
                ("context", det.context),
                ("dict", det.words),
            ):
                for word in words:
                    if word not in index:
                        index[word] = len(index)
                        self.owners.append([])
                    self.owners[index[word]].append((role, d_idx))
        self.words = list(index)


class HyperscanPrefilter:
    _WORD0, _GATE0, _HINT = 0, 1_000_000, 2_000_000

    def __init__(self, words: list[str], gates: dict[int, str]) -> None:
        exprs: list[bytes] = []
        flags: list[int] = []
        ids: list[int] = []
        self._lengths = [len(word.encode()) for word in words]  # caseless: same in any case
        for i, word in enumerate(words):
            exprs.append(re.escape(word.encode()))
            flags.append(hyperscan.HS_FLAG_CASELESS)  # start = end - length: no SOM needed
            ids.append(self._WORD0 + i)
        for d_idx, expr in gates.items():
            exprs.append(expr.encode())
            flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8)
            ids.append(self._GATE0 + d_idx)
        # The digit hints cost hyperscan ~3.5 ms a MB of digit-heavy text (every digit may
        # start one); the C module answers the same question in one pass over the bytes.
        ascii_numerals = any(c.isascii() for c in NUMERALS)  # the C pass skips ASCII past them
        self._hint_bits = _hint_bitmaps() if numscan is not None and not ascii_numerals else None
        for expr in DIGIT_HINTS if self._hint_bits is None else ():
            exprs.append(expr.encode())
            flags.append(hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SINGLEMATCH)
            ids.append(self._HINT)
        self._db: Any = None
        if exprs:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
            self._scratch = hyperscan.Scratch(self._db)

        self._local = threading.local()

    def _scratch_for_thread(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._scratch.clone()
        return scratch

    def scan(self, data: bytes, text: str) -> Hits:
        words: list[tuple[int, int]] = []
        gates: dict[int, list[tuple[int, int]] | None] = {}
        lengths = self._lengths
        hint: list[bool] = []
        if self._db is None:
            return Hits(words, gates)

        def on_match(id_: int, start: int, end: int, flags: int, ctx: object) -> None:
            if id_ == self._HINT:
                hint.append(True)
            elif id_ >= self._GATE0:
                spans = gates.setdefault(id_ - self._GATE0, [])
                if spans is not None:
                    spans.append((start, end))
            else:
                words.append((id_, end - lengths[id_]))

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch_for_thread())
        if self._hint_bits is not None:
            return Hits(words, gates, numscan.digit_hint(data, *self._hint_bits))
        return Hits(words, gates, bool(hint))


def _hint_bitmaps() -> tuple[bytes, bytes, bytes]:
    """The numerals and the run separators of ``DIGIT_HINTS`` as bitmaps over code points, and
    the first two UTF-8 bytes of each numeral, for ``_numscan.digit_hint``."""
    separator = re.compile(f"[{RUN_SEPARATORS}]")
    members = [c for c in map(chr, range(128)) if separator.fullmatch(c)]
    members += [c for c in RUN_SEPARATORS if ord(c) >= 128]  # the class names these as is
    prefixes = (c.encode()[:2] for c in NUMERALS)
    return (
        _bitmap(map(ord, NUMERALS)),
        _bitmap(map(ord, members)),
        _bitmap(b[0] << 8 | b[1] for b in prefixes),
    )


def _bitmap(code_points: Iterable[int]) -> bytes:
    points = list(code_points)
    bits = bytearray(max(points, default=0) // 8 + 1)
    for cp in points:
        bits[cp // 8] |= 1 << (cp % 8)
    return bytes(bits)


class PythonPrefilter:
    """The same facts without hyperscan: ``re`` for numbers and gates, pyahocorasick for words."""

    def __init__(self, words: list[str], gates: dict[int, str]) -> None:
        self._gates = {d: re.compile(expr) for d, expr in gates.items()}
        self._hint = re.compile("|".join(DIGIT_HINTS))
        self._automaton: Any = None
        if words:
            automaton = ahocorasick.Automaton()
            for i, word in enumerate(words):
                automaton.add_word(word, (i, len(word)))
            automaton.make_automaton()
            self._automaton = automaton

    def scan(self, data: bytes, text: str) -> Hits:
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
        return Hits(words, gates, self._hint.search(text) is not None)


def keyword_positions(
    hits: Hits,
    words: Words,
    detectors: tuple[Detector, ...],
    key: Callable[[str, str], str],
) -> tuple[dict[int, list[int]], dict[int, list[int]], list[Found]]:
    """Context words and keywords by detector (sorted byte offsets), and the dictionary
    detectors' findings (``key``: the scanner's keyed hash)."""
    context_at: dict[int, list[int]] = {}
    keyword_at: dict[int, list[int]] = {}
    found: list[Found] = []
    for word, pos in hits.words:
        for role, d_idx in words.owners[word]:
            if role == "gate":
                keyword_at.setdefault(d_idx, []).append(pos)
            elif role == "context":
                context_at.setdefault(d_idx, []).append(pos)
            else:
                det = detectors[d_idx]
                value = words.words[word]
                found.append(
                    (
                        pos,
                        det,
                        key(det.id, value),
                        det.mask(value),
                        det.confidence,
                        pos + len(value.encode()),
                    )
                )
    for positions in (*context_at.values(), *keyword_at.values()):
        positions.sort()
    return context_at, keyword_at, found
