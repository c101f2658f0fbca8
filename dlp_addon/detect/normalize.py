"""Fold text to the form detectors match: ASCII digits, no invisible characters, plain dashes.

A translation table, used only when the text holds one of its characters, turns full-width
digits and letters (``１３８``, ``Ｘ``), odd spaces and the dash family into ASCII and drops the
zero-width characters people slip between digits. Only when other non-ASCII decimal digits
remain (mathematical bold, Arabic-Indic, ...) does the slower NFKC pass run. Pure-ASCII text is
returned as it is.
"""

from __future__ import annotations

import unicodedata

import regex

_DROP = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_SPACES = (
    "\u00a0\u3000\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
)

# Full-width digits, letters, "+" and "-". Full-width punctuation (，？！：) is everywhere in
# Chinese chat and means nothing to a detector, so it is left alone and costs nothing.
_FULLWIDTH = (
    "".join(chr(cp) for cp in range(0xFF10, 0xFF1A))
    + "\uff0b\uff0d"
    + "".join(chr(cp) for cp in [*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)])
)
_TABLE: dict[int, str | None] = {ord(c): chr(ord(c) - 0xFEE0) for c in _FULLWIDTH}
_TABLE |= {ord(c): None for c in _DROP}
_TABLE |= {ord(c): "-" for c in _DASHES}
_TABLE |= {ord(c): " " for c in _SPACES}

_OTHER_DIGITS = regex.compile(r"[^\P{Nd}0-9]")
_NEEDS_TABLE = regex.compile("[" + regex.escape("".join(map(chr, _TABLE))) + "]")


def normalize(text: str) -> str:
    """Return ``text`` folded for matching; offsets may shift, meaning does not."""
    if text.isascii():
        return text
    if _NEEDS_TABLE.search(text):
        text = text.translate(_TABLE)
    if _OTHER_DIGITS.search(text):
        text = unicodedata.normalize("NFKC", text)
    return text
