"""A plain reference scanner: no prefilter, no DFA, every rule of docs/spec written out once.

It is the oracle the fast path (the C pass, its Python twin and ``scanner.py``) is tested
against, so it shares none of their number code: it keeps only the fold table of
``normalize()``, the detectors' own patterns and validators, and the scanner's keyed hash.
Everything else is written here from the contract (issue 16, renderings S1-S3), slow and
obvious on purpose:

- folding (S2): lone surrogates dropped, ``normalize()``, then numeral runs (Han, capital and
  every non-Nd single-digit form ``unicodedata`` knows) and digit runs with the letters
  ``O o l I`` folded by their own regexes and tables;
- numbers (S1): one regex for a token over an explicit separator grammar, every slice of
  adjacent groups a candidate, the detector's ``groupings`` and the glued rule checked on it;
- edits (S3): plain regexes over whole runs of ASCII letters and digits;
- confidence: base, context words within the window (UTF-8 bytes), corroboration.

:meth:`ReferenceScanner.scan` gives every ``(detector, keyed hash)``; :meth:`counted` the ones
at confidence medium or above (what budgets count).

Choices where the contract is silent or reads two ways (each also noted where it is made):

- An X after a separator ends a token of at least 17 digits only (an ID's; ``13800138000 x 2``
  is a mobile and a quantity), and it belongs to the last group: no candidate ends just
  before it (``370202，19910607842_x`` holds no mobile).
- A number inside a longer one of the same detector in the same token is dropped among the
  findings, after the groupings rule (a loose, unlisted join is no finding, so it hides
  nothing); an edit inside or on an ID the pass found is part of it.
- Digit runs with letters: any run of whole groups bounded by non-alphanumerics folds when it
  holds at least 3 ASCII digits and 7 digits-or-letters (``l38OOl38OOO``). Numeral runs
  fold first.
- A reversed run is read backwards only when it is not shaped like an ID as it stands
  (province and birth date where an ID has them): a mistyped ID is not reversed.
- A number grouped as its detector does not list is ``low`` and no context word raises it.
- Edits read whole runs of ASCII letters and digits, not S1 tokens; ``old_15`` a whole
  15-digit run that cn_resident_id_15's pattern and validator accept.
- Edit findings are personal findings like any other: their line is a record (names).
- Corroboration is one pass over the confidences after context raises.
- Context words and keywords are matched caseless for ASCII letters only; the window is
  measured in UTF-8 bytes of the folded text, from the finding's start to the word's start.
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import re
import sys
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

from dlp_addon.detect.definitions import Detector, DetectorSet
from dlp_addon.detect.normalize import normalize
from dlp_addon.detect.scanner import Scanner
from dlp_addon.detect.validators import PROVINCES
from tests.synth import gb11643_check_char

Found = set[tuple[str, str]]  # (detector, keyed hash)
LEVELS = ("low", "medium", "high")
SHAPE_LOW = "low (grouping)"
ID, ID_15 = "cn_resident_id", "cn_resident_id_15"  # the edits (S3) are theirs only

# -- S1: separators ------------------------------------------------------------------------------
STRICT = frozenset(" -./")
# A loose separator: 1 to 3 of these, at most one of them a line break, not a strict one.
LOOSE_CHARS = " \t-./,;_|\u3001\uff0c\uff1b\r"  # and "\n"
_C = "[" + "".join(re.escape(c) for c in LOOSE_CHARS) + "]"
SEP = f"(?:{_C}{{1,3}}|\\n{_C}{{0,2}}|{_C}\\n{_C}?|{_C}{{2}}\\n)"
# A token: digit groups joined by separators, an X directly after the last group, or after
# one more separator when no ASCII letter or digit follows the X. (The separator runs between
# digits are whole: a run of 4 or two line breaks cannot match, so the token ends there.)
TOKEN = re.compile(rf"(?<![0-9])[0-9]+(?:{SEP}[0-9]+)*(?:[Xx]|{SEP}[Xx](?![0-9A-Za-z]))?")
_ELEMENT = re.compile(r"[0-9]+[Xx]?|[Xx]")  # a group (its X when glued to it), or a lone X

# What ``Detector.groupings`` holds for the shipped detectors, for a Detector without the
# field (the contract in patterns/detectors.yaml). The field, when it exists, decides.
SPEC_GROUPINGS: dict[str, object] = {
    ID: "any",
    "cn_mobile": ("3-4-4", "2-3-4-4", "4-3-4-4", "2-11", "4-11"),
}
_NO_FIELD = object()

# -- S2: digits written other ways ---------------------------------------------------------------
HAN_NUMERALS = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0}
CAPITAL_NUMERALS = {c: i for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")} | {
    "貳": 2,
    "參": 3,
    "陸": 6,
}
# Every single-digit form that is not an Nd digit (normalize() folds those): circled,
# parenthesised, with a full stop, dingbats, superscripts, subscripts, Ethiopic, ...
DIGIT_FORMS = {
    chr(cp): d
    for cp in range(sys.maxunicode + 1)
    if not 0xD800 <= cp <= 0xDFFF
    and (d := unicodedata.digit(chr(cp), None)) is not None
    and unicodedata.category(chr(cp)) != "Nd"
}
NUMERALS = HAN_NUMERALS | CAPITAL_NUMERALS | DIGIT_FORMS
_NUMERAL_TABLE = str.maketrans({c: str(d) for c, d in NUMERALS.items()})
_N = "[0-9" + "".join(re.escape(c) for c in NUMERALS) + "]"
NUMERAL_RUN = re.compile(f"{_N}(?:{SEP}?{_N})*")
# A digit run's group: letters O o l I and ASCII digits, at least one digit; a run is its
# groups joined by single strict separators (possessive: always the whole run).
_LETTER_GROUP = "[OolI]*+[0-9][0-9OolI]*+"
LETTER_RUN = re.compile(rf"(?<![0-9OolI]){_LETTER_GROUP}(?:[ \-./]{_LETTER_GROUP})*+")
_LETTER_GROUPS = re.compile(r"[^ \-./]+")  # the groups of a chain
_LETTER_TABLE = str.maketrans("OolI", "0011")
SURROGATES = re.compile("[\ud800-\udfff]")

# -- S3: edits over whole runs of ASCII letters and digits ---------------------------------------
PREFIXED = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{19}(?![0-9A-Za-z])")
NO_CHECK = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}(?![0-9A-Za-z])")
REVERSED = re.compile(r"(?<![0-9A-Za-z])[0-9Xx][0-9]{17}(?![0-9A-Za-z])")
OLD_15 = re.compile(r"(?<![0-9A-Za-z])[0-9]{15}(?![0-9A-Za-z])")


def _id_shaped(run: str) -> bool:
    """A province and a real birth date where an ID has them (a mistyped ID, not a reversed
    one)."""
    if not run[:14].isdigit():
        return False
    try:
        born = datetime.date(int(run[6:10]), int(run[10:12]), int(run[12:14]))
    except ValueError:
        return False
    return int(run[:2]) in PROVINCES and born.year >= 1880 and born <= datetime.date.today()


def _alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def fold(text: str) -> str:
    """The text the detectors read: S2 on top of ``normalize()``, one character for one
    (except the dropped ones). Numeral runs first, so a digit run may count digits they gave."""
    text = normalize(SURROGATES.sub("", text))
    text = NUMERAL_RUN.sub(_fold_numerals, text)
    out: list[str] = []
    last = 0
    for m in LETTER_RUN.finditer(text):
        start, end = _bounded(text, m)
        digits = sum(c in "0123456789" for c in text[start:end])
        letters = sum(c in "OolI" for c in text[start:end])
        if letters and digits >= 3 and digits + letters >= 7:
            out += [text[last:start], text[start:end].translate(_LETTER_TABLE)]
            last = end
    return "".join(out) + text[last:]


def _bounded(text: str, m: re.Match[str]) -> tuple[int, int]:
    """The part of a chain of groups that is a digit run: the chain less a first group glued
    to an ASCII letter or digit before it and a last group (with its X) glued to one after.
    Choice (the spec says "bounded by characters that are not ASCII letters or digits"):
    every run of whole groups so bounded folds, and the longest holds all the others; a
    group inside the chain always has a separator on each side."""
    spans = [
        (m.start() + g.start(), m.start() + g.end()) for g in _LETTER_GROUPS.finditer(m.group())
    ]
    groups, ends = [a for a, _ in spans], [b for _, b in spans]
    first, last = 0, len(groups) - 1
    if groups[0] > 0 and _alnum(text[groups[0] - 1]):
        first = 1
    after = ends[-1] + (1 if ends[-1] < len(text) and text[ends[-1]] in "Xx" else 0)
    if after < len(text) and _alnum(text[after]):
        last -= 1
    if first > last:
        return m.start(), m.start()
    return groups[first], ends[last]


def _fold_numerals(m: re.Match[str]) -> str:
    run = m.group()
    numerals = [c for c in run if c in NUMERALS or c in "0123456789"]
    if len(numerals) >= 7 and any(c in NUMERALS for c in numerals):
        return run.translate(_NUMERAL_TABLE)
    return run


def groupings_of(det: Detector) -> str | frozenset[str] | None:
    """``None`` (strict joins only), ``"any"``, or the allowed shapes as ``"3-4-4"``."""
    raw = getattr(det, "groupings", _NO_FIELD)
    if raw is _NO_FIELD:
        raw = SPEC_GROUPINGS.get(det.id)
    if raw is None:
        return None
    if raw == "any":
        return "any"
    assert isinstance(raw, Iterable)
    return frozenset(s if isinstance(s, str) else "-".join(map(str, s)) for s in raw)


def base_level(
    det: Detector, groupings: str | frozenset[str] | None, shape: str, loose: bool, glued: bool
) -> str | None:
    """A candidate's base confidence for ``det`` (S1), or ``None``: not a finding at all."""
    if groupings is None:
        if loose:
            return None
        level = det.confidence
    elif groupings == "any" or "-" not in shape or shape in groupings:
        level = det.confidence
    elif loose:
        return None
    else:
        return SHAPE_LOW  # low, and no context word raises it
    return "low" if glued else level


class RefFinding(NamedTuple):
    detector: str
    key: str
    line: int  # where it starts
    at: int  # UTF-8 byte offset of its start in the folded text
    confidence: str
    how: str  # "number", "prefixed", "no_check", "old_15", "reversed", "regex", ...


class _Raw(NamedTuple):
    det: Detector
    value: str
    start: int  # character offsets in the folded text
    end: int
    base: str
    how: str


class _Candidate(NamedTuple):
    start: int
    end: int
    chars: str  # digits (and X)
    shape: str  # group lengths joined with "-"
    loose: bool
    glued: bool


def candidates(text: str, m: re.Match[str]) -> list[_Candidate]:
    """Every slice of adjacent groups of token ``m``. Choice: an X belongs to the last group
    (spec: "The X belongs to the last group"), also after a separator, so no slice ends just
    before it."""
    elems = [
        (m.start() + e.start(), m.start() + e.end(), e.group())
        for e in _ELEMENT.finditer(m.group())
    ]
    digits = sum(c.isdigit() for _, _, g in elems for c in g)
    if digits < 7:
        return []
    if digits < 17 and elems[-1][2] in ("X", "x"):  # a separated X follows an ID's digits only
        elems.pop()
    seps = [text[elems[k][1] : elems[k + 1][0]] for k in range(len(elems) - 1)]
    strict = [s in STRICT for s in seps]  # one character, one of " -./"
    run = list(itertools.accumulate((0 if s else 1 for s in strict), initial=0))
    run_start = {r: elems[k][0] for k, r in reversed(list(enumerate(run)))}
    run_end = {r: elems[k][1] for k, r in enumerate(run)}
    lone_x = elems[-1][2] in ("X", "x")
    out = []
    for i in range(len(elems) - (1 if lone_x else 0)):
        for j in range(i, len(elems)):
            if lone_x and j == len(elems) - 2:
                continue
            chars = "".join(g for _, _, g in elems[i : j + 1])
            if len(chars) > 64:
                break
            before, after = run_start[run[i]] - 1, run_end[run[j]]
            glued = (before >= 0 and _letter(text[before])) or (
                after < len(text) and _letter(text[after])
            )
            out.append(
                _Candidate(
                    elems[i][0],
                    elems[j][1],
                    chars,
                    "-".join(str(len(g)) for _, _, g in elems[i : j + 1]),
                    not all(strict[i:j]),
                    glued,
                )
            )
    return out


class ReferenceScanner:
    def __init__(self, detectors: DetectorSet, key: bytes) -> None:
        self.detectors = detectors.detectors
        self.by_id = {d.id: d for d in self.detectors}
        self._hash = Scanner(detectors, key, engine="python").key  # same keyed hash
        self._window = detectors.context_window * 3  # in UTF-8 bytes, as the scanner counts
        self._groupings = {d.id: groupings_of(d) for d in self.detectors if d.kind == "numeric"}
        # Findings that make their line a record, and that corroborate an ID there.
        self._personal = {
            d.id for d in self.detectors if d.personal and d.kind != "words" and not d.record_scope
        }

    def key(self, detector: str, value: str) -> str:
        return self._hash(detector, value)

    def scan(self, text: str) -> Found:
        """Every ``(detector, keyed hash)`` found, whatever its confidence."""
        return {(f.detector, f.key) for f in self.findings(text)}

    def counted(self, text: str) -> Found:
        """``(detector, keyed hash)`` of the findings at confidence medium or above."""
        return {(f.detector, f.key) for f in self.findings(text) if f.confidence != "low"}

    def findings(self, text: str) -> list[RefFinding]:
        text = fold(text)
        byte_at = list(
            itertools.accumulate(
                (1 if c < "\x80" else 2 if c < "\u0800" else 3 if c < "\U00010000" else 4)
                for c in text
            )
        )
        byte_at.insert(0, 0)
        newlines = [i for i, c in enumerate(text) if c == "\n"]

        def line_of(pos: int) -> int:
            return bisect.bisect_left(newlines, pos)

        lowered = "".join(c.lower() if c.isascii() else c for c in text)  # caseless for ASCII

        def occurrences(words: Iterable[str]) -> list[int]:
            """Byte offsets where one of ``words`` starts (overlapping ones too)."""
            out = []
            for word in words:
                i = lowered.find(word)
                while i >= 0:
                    out.append(byte_at[i])
                    i = lowered.find(word, i + 1)
            return out

        def near(positions: list[int], at: int) -> bool:
            return any(abs(p - at) <= self._window for p in positions)

        raw = self._numbers(text)
        raw += self._edits(text, raw)
        for det in self.detectors:
            if det.kind == "regex" and not det.record_scope:
                gates = occurrences(det.keywords)
                if det.keywords and not gates:
                    continue
                for m in det.pattern.finditer(text):
                    value = det.validate(m.group())
                    if value is not None and (not det.keywords or near(gates, byte_at[m.start()])):
                        raw.append(_Raw(det, value, m.start(), m.end(), det.confidence, "regex"))
            elif det.kind == "words":
                for word in det.words:
                    i = lowered.find(word)
                    while i >= 0:
                        raw.append(_Raw(det, word, i, i + len(word), det.confidence, "words"))
                        i = lowered.find(word, i + 1)

        # One level up when a context word of the detector lies within the window.
        context = {d.id: occurrences(d.context) for d in self.detectors if d.context}
        found = []
        for r in raw:
            level, at = r.base, byte_at[r.start]
            if level == SHAPE_LOW:
                level = "low"
            elif near(context.get(r.det.id, []), at):
                level = LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]
            key = self._hash(r.det.id, r.value)
            found.append(RefFinding(r.det.id, key, line_of(r.start), at, level, r.how))

        # Names and addresses: only on lines holding a personal identifier (any confidence).
        lines = text.split("\n")
        starts = [0, *(i + 1 for i in newlines)]
        for line_no in sorted({f.line for f in found if f.detector in self._personal}):
            line = lines[line_no]
            for det in self.detectors:
                if not det.record_scope:
                    continue
                if det.keywords and not any(k in line.lower() for k in det.keywords):
                    continue
                for m in det.pattern.finditer(line):
                    value = det.validate(m.group())
                    if value is not None:
                        at = byte_at[starts[line_no] + m.start()]
                        key = self._hash(det.id, value)
                        found.append(RefFinding(det.id, key, line_no, at, det.confidence, "record"))
        return self._corroborated(found)

    def _numbers(self, text: str) -> list[_Raw]:
        """S1: each token's candidates for each numeric detector, a number inside a longer one
        of the same detector in the same token dropped (among the findings, so after the
        groupings rule: a join that is no finding hides nothing)."""
        out: list[_Raw] = []
        numeric = [d for d in self.detectors if d.kind == "numeric"]
        for m in TOKEN.finditer(text):
            cands = candidates(text, m)
            for det in numeric:
                groupings = self._groupings[det.id]
                valid: list[tuple[_Candidate, str, str]] = []
                for c in cands:
                    if len(c.chars) not in det.lengths or not det.numeric.fullmatch(
                        c.chars.encode()
                    ):
                        continue
                    value = det.validate(c.chars)
                    level = base_level(det, groupings, c.shape, c.loose, c.glued)
                    if value is not None and level is not None:
                        valid.append((c, value, level))
                for c, value, level in valid:
                    inside = any(
                        o.start <= c.start
                        and c.end <= o.end
                        and (o.start, o.end) != (c.start, c.end)
                        for o, _, _ in valid
                    )
                    if not inside:
                        out.append(_Raw(det, value, c.start, c.end, level, "number"))
        return out

    def _edits(self, text: str, numbers: list[_Raw]) -> list[_Raw]:
        """S3: reversible edits of an 18-character ID over whole runs, each ``low``.

        Choice: an edit inside (or on) a number the pass found as an ID is part of it, as a
        number inside a longer one is (``...0021.3``: the 17-digit run is no second, low ID
        that would count a line of low IDs)."""
        det, det_15 = self.by_id.get(ID), self.by_id.get(ID_15)
        if det is None:
            return []
        tried: list[tuple[str, str, int, int]] = []  # (how, 18 characters, start, end)
        for m in PREFIXED.finditer(text):
            tried.append(("prefixed", m.group()[1:], m.start() + 1, m.end()))
        for m in NO_CHECK.finditer(text):
            first17 = m.group()
            tried.append(("no_check", first17 + gb11643_check_char(first17), *m.span()))
        for m in REVERSED.finditer(text):
            if not _id_shaped(m.group()):
                tried.append(("reversed", m.group()[::-1], *m.span()))
        for m in OLD_15.finditer(text):  # a 15-digit ID as cn_resident_id_15 reads it
            old = m.group()
            if (
                det_15 is not None
                and det_15.numeric.fullmatch(old.encode())
                and det_15.validate(old)
            ):
                first17 = old[:6] + "19" + old[6:]
                tried.append(("old_15", first17 + gb11643_check_char(first17), *m.span()))
        ids = [(r.start, r.end) for r in numbers if r.det.id == ID]
        out = []
        for how, chars, start, end in tried:
            value = det.validate(chars)
            if value is not None and not any(s <= start and end <= e for s, e in ids):
                out.append(_Raw(det, value, start, end, "low", how))
        return out

    def _corroborated(self, found: list[RefFinding]) -> list[RefFinding]:
        """A ``low`` ID is raised to ``medium`` when another personal finding at medium or
        above shares its line, or low IDs stand on three lines or more (one pass, on the
        confidences after context raises)."""
        personal = self._personal | {d.id for d in self.detectors if d.record_scope and d.personal}
        low_id_lines = {f.line for f in found if f.detector == ID and f.confidence == "low"}
        out = []
        for i, f in enumerate(found):
            if f.detector == ID and f.confidence == "low":
                beside = any(
                    j != i and g.line == f.line and g.detector in personal and g.confidence != "low"
                    for j, g in enumerate(found)
                )
                if beside or len(low_id_lines) >= 3:
                    f = f._replace(confidence="medium")
            out.append(f)
        return out
