"""A lazy extraction read to its end, and its parts compared by what they are and hold."""

from __future__ import annotations

import collections

from dlp_addon.extract.extraction import Extraction


def whole(extraction: Extraction) -> Extraction:
    """``extraction`` with everything it left for later read (``Extraction.rest``)."""
    while extraction.rest is not None:
        extraction = extraction.rest()
    return extraction


def texts(extraction: Extraction) -> collections.Counter[tuple[str, str]]:
    """Parts by what they are (location less its serial number) and their text."""
    return collections.Counter((loc.rsplit("#", 1)[0], text) for loc, text in extraction.parts)
