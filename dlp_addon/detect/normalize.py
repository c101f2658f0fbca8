"""Fold text to the form detectors match: ASCII digits, no invisible characters, plain dashes.

One translation table turns full-width digits and letters (``１３８``, ``Ｘ``), every other
script's decimal digits (mathematical bold, Arabic-Indic, ...), odd spaces and the dash family
into ASCII, and drops the invisible characters people slip between digits (every format
character, variation selectors). ``TRIGGERS`` lists
every character that makes a difference, so a scanner can tell in its single pass whether a
text needs folding at all; common Chinese full-width punctuation (，？！：) is not among them.
"""

from __future__ import annotations

import re
import unicodedata

# Where Unicode keeps decimal digits and invisible characters beyond ASCII: the BMP, plane 1
# (mathematical, Adlam, Brahmi, ... digits) and plane 14 (tags, variation selectors).
_PLANES = (range(0x80, 0x20000), range(0xE0000, 0xE1000))
# Invisible characters people slip between digits: every format character (category Cf:
# zero-width space and joiners, direction marks, invisible operators, soft hyphen, tags, ...),
# the variation selectors and the combining grapheme joiner.
_DROP = "".join(
    chr(cp)
    for r in _PLANES
    for cp in r
    if unicodedata.category(chr(cp)) == "Cf"
    or 0xFE00 <= cp <= 0xFE0F
    or 0xE0100 <= cp <= 0xE01EF
    or cp in (0x034F, 0x180B, 0x180C, 0x180D, 0x180F)
)
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"
_SPACES = (
    "\u00a0\u3000\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
)
# Full-width digits, letters, "+", "-", "." and "/".
_FULLWIDTH = (
    "".join(chr(cp) for cp in range(0xFF10, 0xFF1A))
    + "\uff0b\uff0d\uff0e\uff0f"
    + "".join(chr(cp) for cp in [*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)])
)
_TABLE: dict[int, str | None] = {ord(c): chr(ord(c) - 0xFEE0) for c in _FULLWIDTH}
_TABLE |= {ord(c): None for c in _DROP}
_TABLE |= {ord(c): "-" for c in _DASHES}
_TABLE |= {ord(c): " " for c in _SPACES}

_TABLE |= {
    cp: str(unicodedata.decimal(chr(cp)))
    for r in _PLANES
    for cp in r
    if cp not in _TABLE and unicodedata.category(chr(cp)) == "Nd"
}
TRIGGERS = "".join(sorted(map(chr, _TABLE)))

# What normalize drops (every other change is one character for one).
DROPPED = re.compile("[" + re.escape(_DROP) + "]")  # a bitmap class: fast

# stdlib re keeps a large set of BMP characters as a bitmap: ~100x faster here than the regex
# module. Characters beyond the BMP (plane 1 digits, tags) it tests one by one (~0.4 ms a 2 KB
# text), so they are looked for only in a text that holds such a character at all.
_NEEDS = re.compile("[" + re.escape("".join(c for c in TRIGGERS if ord(c) < 0x10000)) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_NEEDS_ASTRAL = re.compile("[" + re.escape("".join(c for c in TRIGGERS if ord(c) >= 0x10000)) + "]")


# The same set as a bitmap over code points, for the C pass over the UTF-8 bytes.
_BITMAP = bytearray((max(_TABLE) + 8) // 8)
for _cp in _TABLE:
    _BITMAP[_cp // 8] |= 1 << (_cp % 8)
TRIGGER_BITMAP = bytes(_BITMAP)


def needs_folding(text: str) -> bool:
    """True when ``normalize`` would change something a detector sees."""
    if text.isascii():
        return False
    if _NEEDS.search(text) is not None:
        return True
    return _ASTRAL.search(text) is not None and _NEEDS_ASTRAL.search(text) is not None


def normalize(text: str) -> str:
    """Return ``text`` folded for matching; offsets may shift, meaning does not."""
    if not needs_folding(text):
        return text
    return text.translate(_TABLE)
