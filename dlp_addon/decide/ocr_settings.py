"""The policy's ``inspection.ocr`` section: reading text in pictures (docs/policy.md, "OCR").

The schema checks each value's type and range; this adds what needs two values: OCR runs
inside the request's own deadline, so its time must leave some for the rest of the request.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dlp_addon.extract.limits import OcrLimits
from dlp_addon.sourcefile import SourceDoc

_FIELDS = frozenset(f.name for f in fields(OcrLimits))


def ocr_limits(
    doc: SourceDoc, inspection: dict[str, Any], usable: bool, problems: list[str]
) -> OcrLimits:
    """``inspection.ocr`` as limits (the defaults for what it leaves out); ``usable``: the
    schema accepted the ``inspection`` section (else its problems are reported already)."""
    raw = inspection.get("ocr", {})
    if not usable or not isinstance(raw, dict):
        return OcrLimits()
    limits = OcrLimits(**{k: v for k, v in raw.items() if k in _FIELDS})
    timeout = float(inspection.get("timeout_seconds", 5))
    if limits.enabled and float(limits.timeout_seconds) >= timeout:
        problems.append(
            doc.at(
                ["inspection", "ocr", "timeout_seconds"],
                f"OCR time ({limits.timeout_seconds} s) must be less than the request's "
                f"inspection.timeout_seconds ({timeout:g} s): it is spent inside it",
            )
        )
    return limits
