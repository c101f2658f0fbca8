"""Detector definitions, loaded from ``patterns/detectors.yaml`` and checked before use."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from dlp_addon.detect.validators import VALIDATORS, Validator
from dlp_addon.errors import PolicyError
from dlp_addon.sourcefile import load_schema, load_yaml, schema_problems

PATTERNS_DIR = Path(__file__).resolve().parent.parent.parent / "patterns"
DEFAULT_DETECTORS = PATTERNS_DIR / "detectors.yaml"
_SCHEMA = PATTERNS_DIR / "detectors.schema.json"


@dataclass(frozen=True)
class Detector:
    """One identifier type: how to find it, validate it and show it masked."""

    id: str
    name_zh: str
    name_en: str
    category: str
    pattern: Any = field(repr=False)  # compiled ``regex`` pattern
    validate: Validator = field(repr=False)
    mask_keep: tuple[int, int]
    keywords: tuple[str, ...]
    context: tuple[str, ...]
    samples_match: tuple[str, ...] = field(repr=False)
    samples_no_match: tuple[str, ...] = field(repr=False)

    def mask(self, value: str) -> str:
        """``value`` with its middle starred: ``110105********123X``, ``138****8000``."""
        start, end = self.mask_keep
        if len(value) <= start + end:
            return "*" * len(value)
        return value[:start] + "*" * (len(value) - start - end) + value[len(value) - end :]


@dataclass(frozen=True)
class DetectorSet:
    """All detectors of one definitions file, plus the shared context window."""

    detectors: tuple[Detector, ...]
    context_window: int
    source: Path
    sha256: str

    def by_id(self) -> dict[str, Detector]:
        return {d.id: d for d in self.detectors}


def load_detectors(path: Path = DEFAULT_DETECTORS) -> DetectorSet:
    """Load and check every detector; all problems are reported together as ``PolicyError``."""
    doc = load_yaml(path)
    problems = schema_problems(doc, load_schema(_SCHEMA))
    if problems:
        raise PolicyError(problems)
    detectors: list[Detector] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc.data["detectors"]):
        where: list[str | int] = ["detectors", i]
        if raw["id"] in seen:
            problems.append(doc.at([*where, "id"], f"duplicate detector id '{raw['id']}'"))
        seen.add(raw["id"])
        validate = VALIDATORS.get(raw["validator"])
        if validate is None:
            known = ", ".join(sorted(VALIDATORS))
            problems.append(
                doc.at([*where, "validator"], f"unknown validator '{raw['validator']}' ({known})")
            )
        try:
            pattern = regex.compile(raw["regex"])
        except regex.error as e:
            problems.append(doc.at([*where, "regex"], f"invalid regex: {e}"))
            continue
        if validate is None:
            continue
        detectors.append(
            Detector(
                id=raw["id"],
                name_zh=raw["name"]["zh"],
                name_en=raw["name"]["en"],
                category=raw.get("category", "other"),
                pattern=pattern,
                validate=validate,
                mask_keep=(raw["mask"][0], raw["mask"][1]),
                keywords=tuple(k.lower() for k in raw.get("keywords", [])),
                context=tuple(k.lower() for k in raw.get("context", [])),
                samples_match=tuple(raw["samples"]["match"]),
                samples_no_match=tuple(raw["samples"]["no_match"]),
            )
        )
    if problems:
        raise PolicyError(problems)
    return DetectorSet(
        detectors=tuple(detectors),
        context_window=int(doc.data.get("context_window", 300)),
        source=path,
        sha256=hashlib.sha256(doc.raw).hexdigest(),
    )
