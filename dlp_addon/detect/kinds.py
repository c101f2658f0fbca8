"""What a detector is, one dataclass per kind, told apart by ``kind`` (a tagged union).

- :class:`NumericDetector` (``numeric``): numbers such as ID, mobile and card numbers, found as
  candidates of digit runs (``candidates``) and full-matched against ``numeric``.
- :class:`RegexDetector` (``regex``): anything else with a shape, run where its ``prefilter``
  or keyword occurred; ``record_scope`` ones only on lines already holding an identifier.
- :class:`WordsDetector` (``words``): keyword dictionaries matched in the keyword pass.

``definitions`` builds them from YAML; everything else only reads them. The confidence levels
and what a context word raises each to are declared here, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Validator = Callable[[str], str | None]
Confidence = Literal["low", "medium", "high"]
CONFIDENCE: tuple[str, str, str] = ("low", "medium", "high")
LEVEL = {name: i for i, name in enumerate(CONFIDENCE)}  # rank: a minimum confidence compares
RAISED: dict[str, Confidence] = {"low": "medium", "medium": "high", "high": "high"}
# How a numeric detector may be grouped when written (see NumericDetector.groupings).
Groupings = Literal["any"] | tuple[tuple[int, ...], ...] | None


@dataclass(frozen=True)
class Sample:
    """One of a detector's own examples, and where it is written (for a failing one)."""

    text: str
    match: bool  # True: the detector must find it; False: it must not
    where: str  # dotted path, e.g. custom_detectors.0.samples.match.1
    at: str  # file:line


@dataclass(frozen=True, kw_only=True)
class _Common:
    """What every kind has: names, legal category, base confidence, validator, mask, words."""

    id: str
    name_zh: str
    name_en: str
    category: str
    legal_category: str | None  # None: not personal data (a company's code)
    confidence: Confidence  # low | medium: context words raise it one level
    validate: Validator = field(repr=False)
    mask_keep: tuple[int, int] | None  # None: shown as is (keywords)
    keywords: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    samples_match: tuple[str, ...] = field(default=(), repr=False)
    samples_no_match: tuple[str, ...] = field(default=(), repr=False)
    samples: tuple[Sample, ...] = field(default=(), repr=False, compare=False)

    @property
    def personal(self) -> bool:
        return self.legal_category is not None

    # Questions a policy asks of any detector; the kind that has the answer overrides them.
    @property
    def record_scope(self) -> bool:
        return False

    @property
    def words(self) -> tuple[str, ...]:
        return ()

    @property
    def words_file(self) -> Path | None:
        return None

    def mask(self, value: str) -> str:
        """``value`` with its middle starred: ``110105********123X``, ``138****8000``."""
        if self.mask_keep is None:
            return value
        start, end = self.mask_keep
        if len(value) <= start + end:
            return "*" * len(value)
        return value[:start] + "*" * (len(value) - start - end) + value[len(value) - end :]


@dataclass(frozen=True, kw_only=True)
class NumericDetector(_Common):
    """A number written in digit groups; its keywords gate nothing (context words still count)."""

    kind: Literal["numeric"] = "numeric"
    lengths: frozenset[int]
    numeric: re.Pattern[bytes] = field(repr=False)  # full-matched against each candidate
    # How a written number of several digit groups may be grouped: None, only single-separator
    # joins, any grouping; "any": also across loose separators (tabs, commas, 、, runs of
    # spaces, a line break); a tuple of shapes (group lengths, e.g. (3, 4, 4)): those at base
    # confidence, loose ones too; other groupings low, or, across loose separators, not at all.
    groupings: Groupings = None


@dataclass(frozen=True, kw_only=True)
class RegexDetector(_Common):
    """A regex over the text: stdlib ``re`` (shipped, trusted) or ``regex`` with a timeout."""

    kind: Literal["regex"] = "regex"
    pattern: re.Pattern[str] | Any = field(repr=False)  # Any: a regex.Pattern[str]
    prefilter: str | None = None  # hyperscan/re expression gating it
    record_scope: bool = False  # a field where the base has a property


@dataclass(frozen=True, kw_only=True)
class WordsDetector(_Common):
    """A keyword dictionary, inline or from a file (watched for changes like the policy)."""

    kind: Literal["words"] = "words"
    words: tuple[str, ...] = ()
    words_file: Path | None = None


Detector = NumericDetector | RegexDetector | WordsDetector
