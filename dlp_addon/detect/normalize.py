"""Fold text to the form detectors match: ASCII digits, no invisible characters, plain dashes.

NFKC turns full-width digits and letters (``１３８``, ``Ｘ``) and odd spaces into ASCII; the
translation table then drops zero-width characters people slip between digits and unifies the
dash family. Pure-ASCII text skips NFKC, which keeps chat-sized messages cheap.
"""

from __future__ import annotations

import unicodedata

_DROP = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"

_TABLE = {ord(c): None for c in _DROP} | {ord(c): "-" for c in _DASHES}


def normalize(text: str) -> str:
    """Return ``text`` folded for matching; offsets may shift, meaning does not."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_TABLE)
