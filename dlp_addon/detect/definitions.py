"""Detector definitions, loaded from ``dlp_addon/patterns/detectors.yaml`` (or a policy's own
``custom_detectors``) and checked before use; what they become is in ``kinds``.

A detector is one of three kinds:

- ``numeric``: numbers such as ID, mobile and card numbers. They are not matched by a regex over
  the text: the scanner finds runs of digits (with single spaces, dashes, dots or slashes
  between groups) once for all numeric detectors, joins adjacent groups into candidates of the
  detector's ``lengths`` and full-matches ``pattern`` against each candidate.
- ``regex``: anything else with a shape (e-mail, licence plate, passport). The regex runs over
  the text (``regex`` module, with a timeout) only when its ``prefilter`` occurred.
- ``words``: keyword dictionaries (column headers, insurance terms), inline or from a plain text
  file with one word per line, all matched in the scanner's single keyword pass.

``scope: record`` restricts a regex detector to lines that already hold a personal identifier
(names, addresses: common words alone, personal data next to an ID).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex

from dlp_addon.detect.dfa import numeric_problem
from dlp_addon.detect.kinds import (
    CONFIDENCE,
    LEVEL,
    Detector,
    Groupings,
    NumericDetector,
    RegexDetector,
    Sample,
    WordsDetector,
)
from dlp_addon.detect.validators import VALIDATORS
from dlp_addon.errors import PolicyError
from dlp_addon.shipped import PATTERNS_DIR
from dlp_addon.sourcefile import SourceDoc, entries, load_schema, load_yaml, schema_check

DEFAULT_DETECTORS = PATTERNS_DIR / "detectors.yaml"
SCHEMA = PATTERNS_DIR / "detectors.schema.json"
__all__ = [
    "CONFIDENCE",
    "DEFAULT_DETECTORS",
    "LEVEL",
    "SCHEMA",
    "Detector",
    "DetectorSet",
    "load_detectors",
]

# Catastrophic-backtracking probes for admin-written regexes: each must finish in time.
_PROBES = ("1" * 3000, "a" * 3000, "1 " * 1500, "a1" * 1500, "-" * 3000, "中文" * 1500)
_PROBE_TIMEOUT = 0.2
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*]\)[+*{]")


@dataclass(frozen=True)
class LegalCategory:
    """A class of personal information in the 2017 judicial interpretation (法释〔2017〕10号)."""

    id: str
    name_zh: str
    name_en: str
    serious: int

    @property
    def insider_serious(self) -> int:
        """Half the threshold for data obtained through one's work (Art. 6)."""
        return self.serious // 2


@dataclass(frozen=True)
class DetectorSet:
    """All detectors of one definitions file (plus a policy's own), and shared settings."""

    detectors: tuple[Detector, ...]
    legal_categories: dict[str, LegalCategory]
    context_window: int
    source: Path
    sha256: str

    def by_id(self) -> dict[str, Detector]:
        return {d.id: d for d in self.detectors}

    def with_custom(self, custom: tuple[Detector, ...], digest: str) -> DetectorSet:
        return DetectorSet(
            detectors=self.detectors + custom,
            legal_categories=self.legal_categories,
            context_window=self.context_window,
            source=self.source,
            sha256=hashlib.sha256((self.sha256 + digest).encode()).hexdigest(),
        )


# Where Unicode puts the Han script (radicals, CJK blocks, Tangut-adjacent marks, planes 2-3).
_HAN_SPANS = ((0x2E80, 0x10000), (0x16FE0, 0x17000), (0x20000, 0x40000))


@functools.cache
def han_class() -> str:
    """``\\p{Han}`` as a character class stdlib ``re`` understands, read off the ``regex``
    module itself (so the two agree code point for code point)."""
    spans = []
    for lo, hi in _HAN_SPANS:
        block = "".join(map(chr, range(lo, hi)))
        spans += [(lo + m.start(), lo + m.end() - 1) for m in regex.finditer(r"\p{Han}+", block)]
    return "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in spans) + "]"


def for_stdlib_re(pattern: str) -> str:
    """``pattern`` with each ``\\p{Han}`` outside a character class spelled out for ``re``
    (a bitmap there: several times faster than ``regex``'s script lookup)."""
    if "\\p{Han}" not in pattern:
        return pattern
    out, i, depth = [], 0, 0
    while i < len(pattern):
        if pattern.startswith("\\p{Han}", i) and depth == 0:
            out.append(han_class())
            i += len("\\p{Han}")
            continue
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        depth += ch == "[" and depth == 0
        depth -= ch == "]" and depth == 1
        out.append(ch)
        i += 1
    return "".join(out)


def regex_problem(pattern: str) -> str | None:
    """Why an admin-written regex cannot be used: invalid, or catastrophic on probe inputs."""
    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        return f"invalid regex: {e}"
    if _NESTED_QUANTIFIER.search(pattern):
        return "regex has a nested quantifier such as (a+)+, which can backtrack catastrophically"
    for probe in _PROBES:
        try:
            compiled.search(probe + "!", timeout=_PROBE_TIMEOUT)
        except TimeoutError:
            return "regex backtracks catastrophically (a probe input took longer than 0.2 s)"
    return None


def build_detector(
    doc: SourceDoc,
    where: list[str | int],
    raw: dict[str, Any],
    legal: Collection[str],
    problems: list[str],
    *,
    trusted: bool = False,
) -> Detector | None:
    """A checked ``Detector`` from one YAML entry; problems are appended with their lines.

    ``trusted`` (the shipped definitions, reviewed with their samples): a regex that stdlib
    ``re`` can compile runs on ``re``, two to three times faster than ``regex`` with a timeout.
    An admin's regex always runs on ``regex`` with the inspection deadline as its timeout."""
    before = len(problems)
    validate = VALIDATORS.get(raw.get("validator", "none"))
    if validate is None:
        known = ", ".join(sorted(VALIDATORS))
        problems.append(
            doc.at(
                [*where, "validator"], f"unknown validator '{raw['validator']}' (known: {known})"
            )
        )
    legal_category = raw.get("legal_category", "other")
    if legal_category is not None and legal_category not in legal:
        problems.append(
            doc.at([*where, "legal_category"], f"unknown legal category '{legal_category}'")
        )
    build = _numeric if "numeric" in raw else _regex if "regex" in raw else _words

    def problem(below: list[str | int], message: str) -> None:
        problems.append(doc.at([*where, *below], message))

    specific = build(raw, problem, doc.path.parent, trusted)
    if len(problems) > before or validate is None or specific is None:
        return None
    mask = raw.get("mask")
    return specific(
        id=raw["id"],
        name_zh=raw["name"]["zh"],
        name_en=raw["name"]["en"],
        category=raw.get("category", "other"),
        legal_category=legal_category,
        confidence=raw.get("confidence", "medium"),
        validate=validate,
        mask_keep=(mask[0], mask[1]) if mask else None,
        keywords=tuple(k.lower() for k in raw.get("keywords", [])),
        context=tuple(k.lower() for k in raw.get("context", [])),
        samples_match=tuple(raw["samples"]["match"]),
        samples_no_match=tuple(raw["samples"]["no_match"]),
        samples=tuple(
            Sample(text, kind == "match", ".".join(map(str, path)), f"{doc.path}:{doc.line(path)}")
            for kind in ("match", "no_match")
            for k, text in enumerate(raw["samples"][kind])
            for path in ([*where, "samples", kind, k],)
        ),
    )


# Each kind's own fields, checked: the detector's class with them bound, or None after a
# problem (reported with its path below the detector's, and the message).
_Specific = Callable[..., Detector] | None
_Problem = Callable[[list[str | int], str], None]


def _numeric(raw: dict[str, Any], problem: _Problem, folder: Path, trusted: bool) -> _Specific:
    problems = 0
    lengths = frozenset(raw["numeric"]["lengths"])
    try:
        numeric = re.compile(raw["numeric"]["pattern"].encode())
    except re.error as e:
        problem(["numeric", "pattern"], f"invalid regex: {e}")
        problems += 1
    else:
        why = numeric_problem(raw["numeric"]["pattern"], lengths)
        if why:
            problem(["numeric"], why)
            problems += 1
    groupings, why = _groupings(raw["numeric"].get("groupings"), lengths)
    if why:
        problem(["numeric", "groupings"], why)
        problems += 1
    if problems:
        return None
    return functools.partial(NumericDetector, lengths=lengths, numeric=numeric, groupings=groupings)


def _regex(raw: dict[str, Any], problem: _Problem, folder: Path, trusted: bool) -> _Specific:
    why = regex_problem(raw["regex"])
    if why:
        problem(["regex"], why)
        return None
    pattern: Any = regex.compile(raw["regex"])
    if trusted:
        with contextlib.suppress(re.error):  # \p{L} and friends: regex only
            pattern = re.compile(for_stdlib_re(raw["regex"]))
    return functools.partial(
        RegexDetector,
        pattern=pattern,
        prefilter=raw.get("prefilter"),
        record_scope=raw.get("scope") == "record",
    )


def _words(raw: dict[str, Any], problem: _Problem, folder: Path, trusted: bool) -> _Specific:
    words = tuple(w.lower() for w in raw.get("words", []))
    words_path: Path | None = None
    if "words_file" in raw:
        path = words_path = folder / raw["words_file"]
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            problem(["words_file"], f"cannot read keyword list {path}: {type(e).__name__}")
            return None
        words += tuple(
            w.strip().lower() for w in lines if w.strip() and not w.lstrip().startswith("#")
        )
    return functools.partial(WordsDetector, words=words, words_file=words_path)


def load_detectors(path: Path = DEFAULT_DETECTORS) -> DetectorSet:
    """Load and check every detector; all problems are reported together as ``PolicyError``
    (schema problems, and the checks for meaning of every detector the schema let through)."""
    doc = load_yaml(path)
    check = schema_check(doc, load_schema(SCHEMA))
    problems = list(check.problems)
    data = doc.data
    if not isinstance(data, dict):
        raise PolicyError(problems)
    cats = data.get("legal_categories")
    cats = cats if isinstance(cats, dict) and check.whole(["legal_categories"]) else {}
    legal = {
        key: LegalCategory(key, v["name"]["zh"], v["name"]["en"], v["serious"])
        for key, v in cats.items()
        if check.usable(["legal_categories", key])
    }
    detectors: list[Detector] = []
    seen: set[str] = set()
    for i, raw in entries(data, "detectors"):
        where: list[str | int] = ["detectors", i]
        if not check.usable(where):
            continue
        if raw["id"] in seen:
            problems.append(doc.at([*where, "id"], f"duplicate detector id '{raw['id']}'"))
        seen.add(raw["id"])
        # every category named in the file counts as known, even one the schema refused
        det = build_detector(doc, where, raw, cats.keys(), problems, trusted=True)
        if det is not None:
            detectors.append(det)
    if problems:
        raise PolicyError(problems)
    return DetectorSet(
        detectors=tuple(detectors),
        legal_categories=legal,
        context_window=int(data.get("context_window", 300)),
        source=path,
        # Keyword lists are part of what the detectors are: a changed list is a new version.
        sha256=hashlib.sha256(
            doc.raw + "\n".join(w for d in detectors for w in d.words).encode()
        ).hexdigest(),
    )


def _groupings(raw: object, lengths: frozenset[int]) -> tuple[Groupings, str | None]:
    """A numeric detector's ``groupings`` (``None``, ``"any"``, or shapes such as ``3-4-4``,
    each adding up to one of its lengths), and the problem with them if any."""
    if raw is None:
        return None, None
    if raw == "any":
        return "any", None
    shapes = []
    for shape in raw if isinstance(raw, list) else []:
        parts = str(shape).split("-")
        if not all(p.isdigit() and 0 < int(p) <= 64 for p in parts) or len(parts) > 8:
            return None, f"groupings: '{shape}' is not group lengths joined by '-', e.g. 3-4-4"
        total = tuple(int(p) for p in parts)
        if sum(total) not in lengths:
            return None, f"groupings: '{shape}' adds up to {sum(total)}, not one of the lengths"
        shapes.append(total)
    return tuple(shapes), None
