"""Detector definitions, loaded from ``dlp_addon/patterns/detectors.yaml`` (or a policy's own
``custom_detectors``) and checked before use.

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
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from dlp_addon.detect.numbers import numeric_problem
from dlp_addon.detect.validators import VALIDATORS, Validator
from dlp_addon.errors import PolicyError
from dlp_addon.shipped import PATTERNS_DIR
from dlp_addon.sourcefile import SourceDoc, entries, load_schema, load_yaml, schema_check

DEFAULT_DETECTORS = PATTERNS_DIR / "detectors.yaml"
SCHEMA = PATTERNS_DIR / "detectors.schema.json"
CONFIDENCE = ("low", "medium", "high")

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
class Sample:
    """One of a detector's own examples, and where it is written (for a failing one)."""

    text: str
    match: bool  # True: the detector must find it; False: it must not
    where: str  # dotted path, e.g. custom_detectors.0.samples.match.1
    at: str  # file:line


@dataclass(frozen=True)
class Detector:
    """One identifier type: how to find it, validate it and show it masked."""

    id: str
    name_zh: str
    name_en: str
    kind: str  # numeric | regex | words
    category: str
    legal_category: str | None  # None: not personal data (a company's code)
    confidence: str  # low | medium: context words raise it one level
    validate: Validator = field(repr=False)
    mask_keep: tuple[int, int] | None  # None: shown as is (keywords)
    lengths: frozenset[int] = frozenset()
    numeric: Any = field(default=None, repr=False)  # re.Pattern[bytes], full-matched
    # How a written number of several digit groups may be grouped (numeric only): None, only
    # single-separator joins, any grouping; "any": also across loose separators (tabs,
    # commas, 、, runs of spaces, a line break); a tuple of shapes (group lengths, e.g.
    # (3, 4, 4)): those at base confidence, loose ones too; other groupings low, or, across
    # loose separators, not at all.
    groupings: str | tuple[tuple[int, ...], ...] | None = None
    pattern: Any = field(default=None, repr=False)  # regex.Pattern[str]
    prefilter: str | None = None  # hyperscan/re expression gating a regex detector
    record_scope: bool = False
    words: tuple[str, ...] = ()
    words_file: Path | None = None  # watched for changes like the policy itself
    keywords: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    samples_match: tuple[str, ...] = field(default=(), repr=False)
    samples_no_match: tuple[str, ...] = field(default=(), repr=False)
    samples: tuple[Sample, ...] = field(default=(), repr=False, compare=False)

    @property
    def personal(self) -> bool:
        return self.legal_category is not None

    def mask(self, value: str) -> str:
        """``value`` with its middle starred: ``110105********123X``, ``138****8000``."""
        if self.mask_keep is None:
            return value
        start, end = self.mask_keep
        if len(value) <= start + end:
            return "*" * len(value)
        return value[:start] + "*" * (len(value) - start - end) + value[len(value) - end :]


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
    numeric = pattern = None
    groupings: str | tuple[tuple[int, ...], ...] | None = None
    lengths: frozenset[int] = frozenset()
    words: tuple[str, ...] = ()
    words_path: Path | None = None
    if "numeric" in raw:
        kind = "numeric"
        lengths = frozenset(raw["numeric"]["lengths"])
        try:
            numeric = re.compile(raw["numeric"]["pattern"].encode())
        except re.error as e:
            problems.append(doc.at([*where, "numeric", "pattern"], f"invalid regex: {e}"))
        else:
            why = numeric_problem(raw["numeric"]["pattern"], lengths)
            if why:
                problems.append(doc.at([*where, "numeric"], why))
        groupings = _groupings(raw["numeric"].get("groupings"), lengths)
        if isinstance(groupings, str) and groupings != "any":
            problems.append(doc.at([*where, "numeric", "groupings"], groupings))
            groupings = None
    elif "regex" in raw:
        kind = "regex"
        why = regex_problem(raw["regex"])
        if why:
            problems.append(doc.at([*where, "regex"], why))
        else:
            pattern = regex.compile(raw["regex"])
            if trusted:
                with contextlib.suppress(re.error):  # \p{L} and friends: regex only
                    pattern = re.compile(for_stdlib_re(raw["regex"]))
    else:
        kind = "words"
        words = tuple(w.lower() for w in raw.get("words", []))
        if "words_file" in raw:
            path = words_path = doc.path.parent / raw["words_file"]
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                problems.append(
                    doc.at(
                        [*where, "words_file"],
                        f"cannot read keyword list {path}: {type(e).__name__}",
                    )
                )
                lines = []
            words += tuple(
                w.strip().lower() for w in lines if w.strip() and not w.lstrip().startswith("#")
            )
    if len(problems) > before or validate is None:
        return None
    mask = raw.get("mask")
    samples = tuple(
        Sample(text, kind == "match", ".".join(map(str, path)), f"{doc.path}:{doc.line(path)}")
        for kind in ("match", "no_match")
        for k, text in enumerate(raw["samples"][kind])
        for path in ([*where, "samples", kind, k],)
    )
    return Detector(
        id=raw["id"],
        name_zh=raw["name"]["zh"],
        name_en=raw["name"]["en"],
        kind=kind,
        category=raw.get("category", "other"),
        legal_category=legal_category,
        confidence=raw.get("confidence", "medium"),
        validate=validate,
        mask_keep=(mask[0], mask[1]) if mask else None,
        lengths=lengths,
        numeric=numeric,
        groupings=groupings,
        pattern=pattern,
        prefilter=raw.get("prefilter"),
        record_scope=raw.get("scope") == "record",
        words=words,
        words_file=words_path,
        keywords=tuple(k.lower() for k in raw.get("keywords", [])),
        context=tuple(k.lower() for k in raw.get("context", [])),
        samples_match=tuple(raw["samples"]["match"]),
        samples_no_match=tuple(raw["samples"]["no_match"]),
        samples=samples,
    )


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


def _groupings(raw: object, lengths: frozenset[int]) -> str | tuple[tuple[int, ...], ...] | None:
    """A numeric detector's ``groupings``: ``None``, ``"any"``, or shapes such as ``3-4-4``
    (each adding up to one of its lengths); any other string is the problem with it."""
    if raw is None:
        return None
    if raw == "any":
        return "any"
    shapes = []
    for shape in raw if isinstance(raw, list) else []:
        parts = str(shape).split("-")
        if not all(p.isdigit() and 0 < int(p) <= 64 for p in parts) or len(parts) > 8:
            return f"groupings: '{shape}' is not group lengths joined by '-', e.g. 3-4-4"
        total = tuple(int(p) for p in parts)
        if sum(total) not in lengths:
            return f"groupings: '{shape}' adds up to {sum(total)}, not one of the lengths"
        shapes.append(total)
    return tuple(shapes)
