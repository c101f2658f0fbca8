"""The policy's ``inspection.ocr`` section: reading text in pictures (docs/policy.md, "OCR").

The schema checks each value's type and range; this fills in the defaults.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dlp_addon.extract.limits import OcrLimits

_FIELDS = frozenset(f.name for f in fields(OcrLimits))


def ocr_limits(inspection: dict[str, Any], usable: bool) -> OcrLimits:
    """``inspection.ocr`` as limits (the defaults for what it leaves out); ``usable``: the
    schema accepted the ``inspection`` section (else its problems are reported already)."""
    raw = inspection.get("ocr", {})
    if not usable or not isinstance(raw, dict):
        return OcrLimits()
    return OcrLimits(**{k: v for k, v in raw.items() if k in _FIELDS})
