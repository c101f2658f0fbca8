"""Run every detector over a text and return validated, counted findings.

Two passes over the UTF-8 bytes at C speed. First hyperscan finds every keyword (gates,
context words, dictionaries) and the prefilters of the regex detectors that still need one.
Then the C pass (``_numscan.findings``, laid out by ``numbers.compile_findings``) checks that
the text needs no folding (full-width digits, zero-width characters: else it is folded and
both passes run again), finds every number token and every run of ASCII letters and digits,
and checks them against the numeric and whole-token detectors: patterns as DFAs, validators'
C twins, keyed hash, mask, line, character offsets, context and keyword gates, all in C.
Python then runs the other regex detectors where their keyword or prefilter occurred, and
names and addresses on the record lines. Without the C module (``engine="python"``, or the
module not built: ``Scanner.engine`` says which runs) the same facts come from ``re``,
pyahocorasick, the pure-Python twin in ``numbers`` and the validators; the two are tested
equal.

Findings carry a keyed hash of the canonical value, never the value (the HMAC key is the
scanner's), its masked form, the line it sits on (a record), a confidence (the detector's
base, ``medium`` or ``low`` for weak shapes and numbers glued to ASCII letters such as
``SF1234...``, one level higher when one of its context words lies within the window) and
where it is in the text as written (``start``, ``end``).
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

from dlp_addon.detect.checkpoint import checkpoint
from dlp_addon.detect.definitions import CONFIDENCE, Detector, DetectorSet
from dlp_addon.detect.normalize import (
    DIGIT_HINTS,
    DROPPED,
    NUMERALS,
    RUN_SEPARATORS,
    TRIGGER_BITMAP,
    fold_digits,
    needs_folding,
    normalize,
)
from dlp_addon.detect.numbers import (
    TOKEN_SYMBOLS,
    Candidate,
    FindingsLayout,
    Machine,
    Plan,
    accepted_lengths,
    compile_findings,
    dfa,
    find_python,
    grouping_level,
    token_body,
)
from dlp_addon.detect.validators import TOKEN_TWINS, gb11643, id_shaped

try:
    from dlp_addon.detect import _numscan
except ImportError:  # pragma: no cover - scripts/setup builds it
    _numscan = None  # type: ignore[assignment]

hyperscan: Any
try:
    import hyperscan
except ImportError:  # pragma: no cover - the wheel exists for every platform we ship on
    hyperscan = None

logger = logging.getLogger(__name__)

_MIN_REGEX_TIMEOUT = 0.001
_TABLE_LINES = 3  # low-confidence IDs on this many lines of a part are a table of records
# The base of a number grouped as its detector does not list (139.00 1288.00 as a mobile): low,
# and no context word raises it.
_SHAPE_LOW = "low, by its grouping"
# Context windows are counted in characters; Chinese text is three UTF-8 bytes a character.
_BYTES_PER_CHAR = 3
_RAISED = dict(zip(CONFIDENCE, (*CONFIDENCE[1:], CONFIDENCE[-1]), strict=True))


class Finding(NamedTuple):
    """A validated identifier. ``key`` is an HMAC of the canonical value: what "distinct"
    counts, safe to store; ``masked`` is what people see. The raw value is not kept.
    ``start``/``end``: where it is in the scanned text, in characters of the text as given
    (before folding), for masking it in place (:func:`dlp_addon.detect.redact.redact`).
    (A NamedTuple: made thousands of times per large message, at a third of a dataclass's cost.)"""

    detector: str
    key: str
    masked: str
    location: str
    line: int
    confidence: str
    start: int = -1
    end: int = -1

    @property
    def record(self) -> tuple[str, int]:
        return (self.location, self.line)


class _Hits(NamedTuple):
    words: list[tuple[int, int]]  # (word index, byte offset of its start)
    # detector index -> byte spans where its prefilter occurred (None: anywhere, scan it all)
    gates: dict[int, list[tuple[int, int]] | None]
    digit_hint: bool = False  # numerals or letters for digits may stand in a number here


# A finding before it becomes a Finding: byte offset, detector, keyed hash, masked, base,
# byte offset of its end.
_Found = tuple[int, Detector, str, str, str, int]

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


class _HyperscanPrefilter:
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
        self._hint_bits = _hint_bitmaps() if _numscan is not None and not ascii_numerals else None
        for expr in DIGIT_HINTS if self._hint_bits is None else ():
            exprs.append(expr.encode())
            flags.append(hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SINGLEMATCH)
            ids.append(self._HINT)
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
        lengths = self._lengths
        hint: list[bool] = []
        if self._db is None:
            return _Hits(words, gates)

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
            return _Hits(words, gates, _numscan.digit_hint(data, *self._hint_bits))
        return _Hits(words, gates, bool(hint))


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


class _PythonPrefilter:
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
        return _Hits(words, gates, self._hint.search(text) is not None)


class Scanner:
    """Compiled detectors plus the prefilter; immutable and safe to share between threads."""

    def __init__(self, detectors: DetectorSet, hmac_key: bytes, *, engine: str = "auto") -> None:
        self.detectors = detectors.detectors
        self.window = detectors.context_window * _BYTES_PER_CHAR
        self._key = hmac_key
        self._words = _Words(self.detectors)
        self._numeric = [d for d in self.detectors if d.kind == "numeric"]
        self._loose = any(d.groupings is not None for d in self._numeric)
        # The resident ID detector: reversible edits of an ID are its findings (see _edits).
        self._edit_det = next(
            (d for d in self._numeric if d.validate is gb11643 and 18 in d.lengths), None
        )
        self._corroborating = frozenset(
            d.id for d in self.detectors if d.personal and d.kind != "words"
        )
        self._plan = Plan.for_detectors(self._numeric)
        self._by_length: dict[int, list[Detector]] = {}
        for det in self._numeric:
            for n in det.lengths:
                self._by_length.setdefault(n, []).append(det)
        self._regex = [
            (i, d) for i, d in enumerate(self.detectors) if d.kind == "regex" and not d.record_scope
        ]
        use_hs = engine == "hyperscan" or (engine == "auto" and hyperscan is not None)
        # Regex detectors that only match whole runs of letters and digits: checked in C.
        tokens = _token_detectors(self._regex) if use_hs else []
        if tokens:
            in_c = {id(det) for det, _ in tokens}
            self._regex = [(i, d) for i, d in self._regex if id(d) not in in_c]
        self._record_scoped = [d for d in self.detectors if d.record_scope]
        self._record_gates = {
            d.id: re.compile("|".join(map(re.escape, d.keywords)), re.IGNORECASE)
            for d in self._record_scoped
            if d.keywords
        }
        self._index = {d.id: i for i, d in enumerate(self.detectors)}
        self._personal = frozenset(
            d.id for d in self.detectors if d.personal and not d.record_scope and d.kind != "words"
        )
        gates = {i: d.prefilter for i, d in enumerate(self.detectors) if d.prefilter}
        prefilter = _HyperscanPrefilter if use_hs else _PythonPrefilter
        self._pre: _HyperscanPrefilter | _PythonPrefilter = prefilter(self._words.words, gates)
        # The compiled path: numbers found, validated, hashed and masked in C, with the fold
        # check in the same pass. Without it (engine="python"), the pure-Python twin.
        layout = FindingsLayout(Finding, CONFIDENCE, self.window, self._personal)
        self._compiled = (
            compile_findings(self._numeric, tokens, self._plan, hmac_key, TRIGGER_BITMAP, layout)
            if use_hs
            else None
        )
        # What really runs, for the start-up log, the info metric and tests: "hyperscan+c" (the
        # fast engine), "hyperscan+python" (the C pass missing: its pure-Python twin, several
        # times slower) or "python" (asked for, or no hyperscan).
        self.engine = "hyperscan+c" if self._compiled is not None else "hyperscan+python"
        if not use_hs:
            self.engine = "python"
        if self._compiled is None:  # no C module: the token detectors stay regexes
            self._regex += [(self._index[d.id], d) for d, _ in tokens]
            self._regex.sort(key=lambda item: item[0])
        self._c_dets = [*self._numeric, *(d for d, _ in tokens)]
        # (detector index, keyword-gated) of each detector of the C pass, in its order; as in
        # the Python path, keywords gate regex detectors only (a numeric one ignores them)
        self._c_index = [
            (self._index[d.id], bool(d.keywords) and d.kind == "regex") for d in self._c_dets
        ]
        # What _near hands the C pass when no word occurred, and where each detector's words go
        # (the C pass only reads these lists, so the empty ones may be shared).
        self._near_none: list[list[int] | None] = []
        self._context_slot: dict[int, int] = {}
        self._gate_slot: dict[int, int] = {}
        for d_idx, gated in self._c_index:
            self._context_slot[d_idx] = len(self._near_none)
            self._near_none.append(None)
            if gated:
                self._gate_slot[d_idx] = len(self._near_none)
            self._near_none.append([] if gated else None)

    def key(self, detector: str, value: str) -> str:
        """The keyed hash that stands for ``value`` wherever a value would be stored."""
        return hmac.digest(self._key, f"{detector}:{value}".encode(), "sha256").hex()[:24]

    def scan(
        self,
        text: str,
        location: str,
        deadline: float | None = None,
        first_line: int = 0,
        first_char: int = 0,
    ) -> list[Finding]:
        """Findings in ``text``, whose first line and character are ``first_line`` and
        ``first_char`` of its part; raises ``TimeoutError`` once ``deadline`` (monotonic)
        passes."""
        if not text:
            return []
        original = text
        folded = False  # fold_digits has run
        if self._compiled is None and needs_folding(text):  # the pure-Python twin folds first
            text, folded = fold_digits(normalize(text)), True
        while True:  # at most three times: folded text has nothing left to fold
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates (JSON "\ud800"): dropped by folding
                text, folded = fold_digits(normalize(text)), True
                data = text.encode("utf-8", "replace")
            hits = self._pre.scan(data, text)
            if hits.digit_hint and not folded:  # 一三八..., l38OO...: digits, then again
                folded = True
                again = fold_digits(normalize(text))  # as the pure-Python twin folds
                if again != text:
                    text = again
                    continue
            context_at, keyword_at, found = self._keywords(hits)
            records: dict[int, tuple[int, int, int]] = {}
            if self._compiled is None:  # without the C pass: the reference for it
                findings: list[Finding] = []
                edits = self._edit_det is not None
                self._validate(find_python(data, self._plan, self._loose, edits), found)
                break
            near = self._near(context_at, keyword_at)
            result = _numscan.findings(data, self._compiled, location, first_line, near, first_char)
            if result is not None:
                findings, c_records, pending = result
                records = {line: (start, end, chars) for line, start, end, chars in c_records}
                if pending:
                    numeric = self._numeric
                    self._validate(
                        [
                            Candidate(t, s, e, digits, g, tuple(shape), loose)
                            for t, s, e, digits, g, _, shape, loose in pending
                        ],
                        found,
                        only=[numeric[item[5]] for item in pending],
                    )
                break
            text, folded = fold_digits(normalize(text)), True  # full-width digits...: fold, again
        self._regexes(data, text, hits, keyword_at, found, deadline)
        if found:
            self._assemble(
                found, data, context_at, location, (first_line, first_char), findings, records
            )
        if self._record_scoped and records:
            findings += self._in_records(data, records, location, deadline)
        if self._edit_det is not None:
            findings = self._corroborated(findings)
        if len(text) == len(original):  # folding dropped nothing: the offsets hold as they are
            return findings
        return _unfolded(original, findings, first_char)

    # -- stages ----------------------------------------------------------------------------

    def _keywords(
        self, hits: _Hits
    ) -> tuple[dict[int, list[int]], dict[int, list[int]], list[_Found]]:
        """Context words and keywords by detector (sorted byte offsets), and the dictionary
        detectors' findings."""
        context_at: dict[int, list[int]] = {}
        keyword_at: dict[int, list[int]] = {}
        found: list[_Found] = []
        for word, pos in hits.words:
            for role, d_idx in self._words.owners[word]:
                if role == "gate":
                    keyword_at.setdefault(d_idx, []).append(pos)
                elif role == "context":
                    context_at.setdefault(d_idx, []).append(pos)
                else:
                    det = self.detectors[d_idx]
                    value = self._words.words[word]
                    key, masked = self.key(det.id, value), det.mask(value)
                    found.append((pos, det, key, masked, det.confidence, pos + len(value.encode())))
        for positions in (*context_at.values(), *keyword_at.values()):
            positions.sort()
        return context_at, keyword_at, found

    def _near(
        self, context_at: dict[int, list[int]], keyword_at: dict[int, list[int]]
    ) -> list[list[int] | None]:
        """For each detector of the C pass: its context words' offsets, its keywords' (or
        ``None`` when it is not keyword-gated)."""
        near = self._near_none.copy()
        for slots, positions_by in (
            (self._context_slot, context_at),
            (self._gate_slot, keyword_at),
        ):
            for d_idx, positions in positions_by.items():
                slot = slots.get(d_idx)
                if slot is not None:
                    near[slot] = positions
        return near

    def _regexes(
        self,
        data: bytes,
        text: str,
        hits: _Hits,
        keyword_at: dict[int, list[int]],
        found: list[_Found],
        deadline: float | None,
    ) -> None:
        """The regex detectors, each where its keyword or prefilter occurred."""
        for d_idx, det in self._regex:
            if d_idx in keyword_at:  # only matches within the window of a keyword count
                near = keyword_at[d_idx]
                spans = [(max(0, p - self.window), p + self.window) for p in near]
                hits_here: list[_Found] = []
                for start, end in _windows(data, spans):
                    window = data[start:end].decode("utf-8", "replace")
                    self._regex_matches(det, window, start, hits_here, deadline)
                found.extend(h for h in hits_here if _within(near, h[0], self.window))
            elif det.keywords:
                continue
            elif not det.prefilter:
                self._regex_matches(det, text, 0, found, deadline)
            elif d_idx in hits.gates:
                gate_spans = hits.gates[d_idx]
                if gate_spans is None:
                    self._regex_matches(det, text, 0, found, deadline)
                else:
                    for start, end in _windows(data, gate_spans):
                        window = data[start:end].decode("utf-8", "replace")
                        self._regex_matches(det, window, start, found, deadline)

    def _assemble(
        self,
        found: list[_Found],
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
        chars = {e: first_char + c for e, c in zip(edges, _char_offsets(data, edges), strict=True)}
        line, counted_to = first_line, 0
        reach, index, raised, personal = self.window, self._index, _RAISED, self._personal
        new_records: dict[int, tuple[int, int]] = {}
        for pos, det, key, masked, base, end in found:
            line += data.count(b"\n", counted_to, pos)
            counted_to = pos
            context = context_at.get(index[det.id])
            if base is _SHAPE_LOW:  # not how such a number is written: no word raises it
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
            line_char = dict(zip(starts, _char_offsets(data, starts), strict=True))
            for number, (start, eol) in new_records.items():
                records[number] = (start, eol, first_char + line_char[start])

    def scan_all(
        self, parts: Iterable[tuple[str, str]], deadline: float | None = None
    ) -> list[Finding]:
        """Findings of every ``(location, text)`` part. A long part (a big sheet) is scanned in
        chunks of whole lines, the deadline checked before each; when it has passed,
        :class:`ScanTimeout` carries what was found so far (a fully scanned input never
        raises). Each chunk is scanned with a margin of the context window on either side,
        so a context word or keyword across a chunk's edge still counts; what is found in a
        margin is left to the chunk it belongs to."""
        found: list[Finding] = []
        margin = self.window  # characters: at least the window's bytes
        for location, text in parts:
            for first_line, start, end in _chunks(text):
                if deadline is not None and time.monotonic() > deadline:
                    raise ScanTimeout(found)
                if start == 0 and end == len(text):
                    window, window_first, last_line, lo = text, first_line, -1, 0
                else:
                    lo, hi = max(0, start - margin), min(len(text), end + margin)
                    window = text[lo:hi]
                    window_first = first_line - text.count("\n", lo, start)
                    last_line = first_line + text.count("\n", start, end - 1)
                try:
                    here = self.scan(window, location, deadline, window_first, lo)
                except TimeoutError as e:
                    raise ScanTimeout(found) from e
                if last_line >= 0:
                    here = [f for f in here if first_line <= f.line <= last_line]
                found.extend(here)
                if end < len(text):  # more of this part to come: the early verdict may stop it
                    checkpoint(found)
        return found

    def _validate(
        self,
        candidates: Iterable[Candidate],
        found: list[_Found],
        only: list[Detector] | None = None,
    ) -> None:
        """Candidates checked by each detector's groupings, pattern and validator in Python
        (``only``: the detector each candidate is for), a number inside a longer one of the
        same detector in the same token dropped."""
        by_length = self._by_length
        valid: list[tuple[Detector, str, int, int, str]] = []
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
                    base = _SHAPE_LOW if level == "low" else "low" if glued else det.confidence
                    valid.append((det, value, start, end, base))
        self._outermost(valid, found)

    def _corroborated(self, findings: list[Finding]) -> list[Finding]:
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
        self, valid: list[tuple[Detector, str, int, int, str]], found: list[_Found]
    ) -> None:
        """A number inside a longer one of the same detector (in one token) is part of it,
        not another: sorted by start and longest first, a number whose end some earlier one
        of its detector reaches is inside it."""
        reach: dict[int, int] = {}
        for det, value, pos, end, base in sorted(valid, key=_outermost_order):
            if reach.get(id(det), -1) >= end:
                continue
            reach[id(det)] = end
            found.append((pos, det, self.key(det.id, value), det.mask(value), base, end))

    def _regex_matches(
        self,
        det: Detector,
        text: str,
        offset: int,
        found: list[_Found],
        deadline: float | None,
    ) -> None:
        """Matches of ``det`` in ``text``, which starts at byte ``offset`` of the scanned data."""
        char_at, byte_at = 0, offset
        for m in _finditer(det, text, deadline):
            value = det.validate(m.group())
            if value is not None:
                byte_at += len(text[char_at : m.start()].encode("utf-8", "replace"))
                char_at = m.start()
                end = byte_at + len(m.group().encode("utf-8", "replace"))
                key, masked = self.key(det.id, value), det.mask(value)
                found.append((byte_at, det, key, masked, det.confidence, end))

    def _in_records(
        self,
        data: bytes,
        records: dict[int, tuple[int, int, int]],
        location: str,
        deadline: float | None,
    ) -> list[Finding]:
        """Names, addresses: searched only on lines that already hold a personal identifier
        (and, for a detector with keywords, one of its keywords), all such lines at once
        (joined), a match never crossing from one line to the next."""
        numbers = sorted(records)
        joined_all = b"\n".join([data[records[n][0] : records[n][1]] for n in numbers]).decode(
            "utf-8", "replace"
        )
        texts = joined_all.split("\n")  # a record line holds no newline: one text a line
        line_starts = list(itertools.accumulate([len(t) + 1 for t in texts], initial=0))
        out: list[Finding] = []
        for det in self._record_scoped:
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
            for m in _finditer(det, joined, deadline):
                i = bisect.bisect_right(starts, m.start()) - 1
                if m.end() >= starts[i + 1]:  # past the end of its line
                    continue
                value = det.validate(m.group())
                if value is not None:
                    number = here[i]
                    at = records[number][2] + m.start() - starts[i]
                    key, masked = self.key(det.id, value), det.mask(value)
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


_CHUNK_CHARS = 1 << 20  # a part longer than this is scanned a chunk of whole lines at a time
# ... its first chunk this long, each next one twice as long up to _CHUNK_CHARS: a deadline or an
# early verdict (decide/early.py) can stop a big sheet after its first thousand rows.
_FIRST_CHUNK_CHARS = 1 << 16


def _chunks(text: str) -> Iterator[tuple[int, int, int]]:
    """``(first line, start, end)`` of the chunks of ``text``: all of it when short, else
    pieces cut after a newline, so no line (a record) and no number is cut in two."""
    if len(text) <= _CHUNK_CHARS:
        yield 0, 0, len(text)
        return
    start, line, size = 0, 0, min(_FIRST_CHUNK_CHARS, _CHUNK_CHARS)
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield line, start, end
        size = min(2 * size, _CHUNK_CHARS)
        line += text.count("\n", start, end)
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


def _token_detectors(regexes: list[tuple[int, Detector]]) -> list[tuple[Detector, Machine]]:
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
            or (det.mask_keep is not None and max(det.mask_keep) > 64)
        ):
            continue
        out.append((det, machine))
    return out


def _char_offsets(data: bytes, positions: list[int]) -> list[int]:
    """Ascending byte offsets of UTF-8 ``data`` as character offsets."""
    if _numscan is not None:
        return _numscan.char_offsets(data, positions)
    out, chars, at = [], 0, 0
    for pos in positions:
        chars += len(data[at:pos].decode("utf-8", "replace"))
        out.append(chars)
        at = pos
    return out


def _unfolded(original: str, findings: list[Finding], base: int) -> list[Finding]:
    """``findings`` of the folded ``original`` (whose first character is ``base`` of its part)
    with their offsets moved back into ``original``: folding maps one character to one,
    except the invisible ones it drops."""
    drops = [m.start() for m in DROPPED.finditer(original)]
    if not drops:
        return findings
    at = [o - k for k, o in enumerate(drops)]  # where each dropped one was, in the folded text
    return [
        f._replace(
            start=f.start + bisect.bisect_right(at, f.start - base),
            end=f.end + bisect.bisect_left(at, f.end - base),
        )
        for f in findings
    ]


def _outermost_order(item: tuple[Detector, str, int, int, str]) -> tuple[int, int]:
    return (item[2], -item[3])


def _first(item: _Found) -> int:
    return item[0]
