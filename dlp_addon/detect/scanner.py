"""Run every detector over a text and return validated, counted findings.

Two passes over the UTF-8 bytes at C speed. First the keyword pass (``keywords``: hyperscan)
finds every keyword (gates, context words, dictionaries) and the prefilters of the regex
detectors that still need one. Then the C pass (``_numscan.findings``, laid out by
``native.compile_findings``) checks that the text needs no folding (full-width digits,
zero-width characters: else it is folded and both passes run again), finds every number token
and every run of ASCII letters and digits, and checks them against the numeric and
whole-token detectors: patterns as DFAs, validators' C twins, keyed hash, mask, line,
character offsets, context and keyword gates, all in C. Python then runs the other regex
detectors where their keyword or prefilter occurred, and names and addresses on the record
lines (``regexes``), and assembles what it found (``assemble``). Without the C module
(``engine="python"``, or the module not built: ``Scanner.engine`` says which runs) the same
facts come from ``re``, pyahocorasick, the pure-Python twin in ``candidates`` and ``plan``
and the validators; the two are tested equal. Long texts are scanned in chunks of whole lines
(``offsets.chunks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from dlp_addon.detect.assemble import Assembler
from dlp_addon.detect.candidates import Candidate, find_python
from dlp_addon.detect.checkpoint import checkpoint
from dlp_addon.detect.definitions import DetectorSet
from dlp_addon.detect.findings import Finding, ScanTimeout, keyed_hash
from dlp_addon.detect.keywords import (
    HyperscanPrefilter,
    PythonPrefilter,
    Words,
    hyperscan,
    keyword_positions,
)
from dlp_addon.detect.kinds import CONFIDENCE, NumericDetector, RegexDetector
from dlp_addon.detect.native import FindingsLayout, compile_findings, numscan
from dlp_addon.detect.normalize import TRIGGER_BITMAP, fold_digits, needs_folding, normalize
from dlp_addon.detect.offsets import Arriving, chunks, unfolded
from dlp_addon.detect.plan import Plan
from dlp_addon.detect.regexes import RegexStage, token_detectors
from dlp_addon.detect.validators import gb11643

__all__ = ["Finding", "ScanTimeout", "Scanner"]

logger = logging.getLogger(__name__)

# Context windows are counted in characters; Chinese text is three UTF-8 bytes a character.
_BYTES_PER_CHAR = 3


class Scanner:
    """Compiled detectors plus the prefilter; immutable and safe to share between threads."""

    def __init__(self, detectors: DetectorSet, hmac_key: bytes, *, engine: str = "auto") -> None:
        self.detectors = detectors.detectors
        self.window = detectors.context_window * _BYTES_PER_CHAR
        self._key = hmac_key
        self._words = Words(self.detectors)
        self._numeric = [d for d in self.detectors if isinstance(d, NumericDetector)]
        self._loose = any(d.groupings is not None for d in self._numeric)
        # The resident ID detector: reversible edits of an ID are its findings (see candidates).
        self._edit_det = next(
            (d for d in self._numeric if d.validate is gb11643 and 18 in d.lengths), None
        )
        self._plan = Plan.for_detectors(self._numeric)
        regex = [
            (i, d)
            for i, d in enumerate(self.detectors)
            if isinstance(d, RegexDetector) and not d.record_scope
        ]
        use_hs = engine == "hyperscan" or (engine == "auto" and hyperscan is not None)
        # Regex detectors that only match whole runs of letters and digits: checked in C.
        tokens = token_detectors(regex) if use_hs else []
        self._index = {d.id: i for i, d in enumerate(self.detectors)}
        self._personal = frozenset(
            d.id for d in self.detectors if d.personal and not d.record_scope and d.kind != "words"
        )
        gates = {
            i: d.prefilter
            for i, d in enumerate(self.detectors)
            if isinstance(d, RegexDetector) and d.prefilter
        }
        prefilter = HyperscanPrefilter if use_hs else PythonPrefilter
        self._pre: HyperscanPrefilter | PythonPrefilter = prefilter(self._words.words, gates)
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
        if self._compiled is not None:  # the token detectors run in C, not as regexes
            in_c = {id(det) for det, _ in tokens}
            regex = [(i, d) for i, d in regex if id(d) not in in_c]
        else:
            tokens = []
        record_scoped = [
            d for d in self.detectors if isinstance(d, RegexDetector) and d.record_scope
        ]
        self._regexes = RegexStage(regex, record_scoped, self.window, self.key)
        self._assembler = Assembler(
            self.detectors, self._numeric, self._edit_det, self._personal, self.window, self.key
        )
        self._c_dets: list[NumericDetector | RegexDetector] = [
            *self._numeric,
            *(d for d, _ in tokens),
        ]
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
        return keyed_hash(self._key, detector, value)

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
            context_at, keyword_at, found = keyword_positions(
                hits, self._words, self.detectors, self.key
            )
            records: dict[int, tuple[int, int, int]] = {}
            if self._compiled is None:  # without the C pass: the reference for it
                findings: list[Finding] = []
                edits = self._edit_det is not None
                self._assembler.validate(find_python(data, self._plan, self._loose, edits), found)
                break
            near = self._near(context_at, keyword_at)
            result = numscan.findings(data, self._compiled, location, first_line, near, first_char)
            if result is not None:
                findings, c_records, pending = result
                records = {line: (start, end, chars) for line, start, end, chars in c_records}
                if pending:
                    numeric = self._numeric
                    self._assembler.validate(
                        [
                            Candidate(t, s, e, digits, g, tuple(shape), loose)
                            for t, s, e, digits, g, _, shape, loose in pending
                        ],
                        found,
                        only=[numeric[item[5]] for item in pending],
                    )
                break
            text, folded = fold_digits(normalize(text)), True  # full-width digits...: fold, again
        self._regexes.run(data, text, hits, keyword_at, found, deadline)
        if found:
            self._assembler.assemble(
                found, data, context_at, location, (first_line, first_char), findings, records
            )
        if self._regexes.record_scoped and records:
            findings += self._regexes.in_records(data, records, location, deadline)
        if self._edit_det is not None:
            findings = self._assembler.corroborated(findings)
        if len(text) == len(original):  # folding dropped nothing: the offsets hold as they are
            return findings
        return unfolded(original, findings, first_char)

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
        for location, text in parts:
            self._scan_part(location, Arriving((text,)), deadline, found)
        return found

    def scan_arriving(
        self, location: str, pieces: Iterable[str], deadline: float | None = None
    ) -> tuple[str, list[Finding]]:
        """The whole text of a part that comes a piece at a time (a workbook's rows as its
        reader builds them), and what :meth:`scan_all` finds in it: each chunk is scanned as
        soon as the text reaches past its margin, while the rest is still on its way."""
        text = Arriving(pieces)
        found: list[Finding] = []
        self._scan_part(location, text, deadline, found)
        return text.whole(), found

    def _scan_part(
        self, location: str, text: Arriving, deadline: float | None, found: list[Finding]
    ) -> None:
        """One part's findings added to ``found`` (all so far: the checkpoint's, and the
        timeout's), a chunk at a time (see :meth:`scan_all`). A text that stops coming in
        time (its reader's deadline) is a timeout of the scan too: what was found may decide."""
        margin = self.window  # characters: at least the window's bytes
        try:
            for first_line, start, end in chunks(text):
                if deadline is not None and time.monotonic() > deadline:
                    raise ScanTimeout(found)
                text.reach(end + margin - 1)  # the margin after the chunk, if the text has it
                if start == 0 and end == text.length:
                    window, window_first, last_line, lo = text.whole(), first_line, -1, 0
                else:
                    lo, hi = max(0, start - margin), min(text.length, end + margin)
                    window = text.span(lo, hi)
                    window_first = first_line - text.count("\n", lo, start)
                    last_line = first_line + text.count("\n", start, end - 1)
                here = self.scan(window, location, deadline, window_first, lo)
                if last_line >= 0:
                    here = [f for f in here if first_line <= f.line <= last_line]
                found.extend(here)
                if text.reach(end):  # more of this part to come: the early verdict may stop it
                    checkpoint(found)
        except ScanTimeout:
            raise
        except TimeoutError as e:
            raise ScanTimeout(found) from e
