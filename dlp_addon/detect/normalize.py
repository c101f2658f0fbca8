"""Fold text to the form detectors match: ASCII digits, no invisible characters, plain dashes.

One translation table turns full-width digits and letters (``１３８``, ``Ｘ``), every other
script's decimal digits (mathematical bold, Arabic-Indic, ...), odd spaces and the dash family
into ASCII, and drops the invisible characters people slip between digits (every format
character, variation selectors, lone surrogates from JSON ``\\ud800`` escapes). ``TRIGGERS``
lists every character that makes a difference, so a scanner can tell in its single pass whether
a text needs folding at all; common Chinese full-width punctuation (，？！：) is not among them.

Digits written as words or signs are folded only where they stand for digits
(:func:`fold_digits`): Han and capital numerals (一三八, 壹叁捌) and other single-digit forms
(①, ⑴, ❶, ¹) inside a run of at least seven digits, and the letters O/o and l/I inside a run
of ASCII digits (``l3800l38000``). Everything here maps one character to one, except the
invisible characters dropped, so offsets found in folded text hold in the original.
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
    or 0xD800 <= cp <= 0xDFFF  # lone surrogates: never part of a number
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


# Han numerals (小写 and 大写, simplified and traditional) and every single-digit form that is
# not a decimal digit already folded above (circled, parenthesised, with a full stop, dingbat,
# superscript and subscript digits): what each stands for.
_HAN_NUMERALS = (
    "〇零",
    "一壹",
    "二贰貳",
    "三叁參叄",
    "四肆",
    "五伍",
    "六陆陸",
    "七柒",
    "八捌",
    "九玖",
)
NUMERALS: dict[str, str] = {c: str(i) for i, group in enumerate(_HAN_NUMERALS) for c in group}
NUMERALS |= {
    chr(cp): str(unicodedata.digit(chr(cp)))
    for r in _PLANES
    for cp in r
    if cp not in _TABLE
    and unicodedata.category(chr(cp)) == "No"
    and unicodedata.digit(chr(cp), -1) >= 0
}
_NUMERAL_TABLE = str.maketrans(NUMERALS)
_DIGITISH = "0-9" + re.escape("".join(NUMERALS))
# Separators a numeral run may hold between its digits (as between digit groups, candidates.py).
RUN_SEPARATORS = " \\t\\-./,;_|\\r\\n、，；"
_NUMERAL_RUN = re.compile(f"[{_DIGITISH}](?:[{RUN_SEPARATORS}]{{0,3}}[{_DIGITISH}])+")
_LETTER_GROUP = "[OolI]*[0-9][0-9OolI]*"
_LETTER_RUN = re.compile(
    f"(?<![0-9A-Za-z]){_LETTER_GROUP}(?:[ \\-./]{_LETTER_GROUP})*[Xx]?(?![0-9A-Za-z])"
)
_LETTER_TABLE = str.maketrans("OolI", "0011")
_MIN_RUN_DIGITS = 7
_MIN_TRUE_DIGITS = 3  # a letter run is a number only with some real digits in it
# What makes fold_digits worth trying (for a prefilter): a numeral at either end of four
# digits or numerals (a run of seven holding one always has such a four; 周三11点 does not),
# a letter O/o/l/I next to a digit.
_NUM = f"[{re.escape(''.join(NUMERALS))}]"
_NEXT = f"[{RUN_SEPARATORS}]{{0,3}}[{_DIGITISH}]"
DIGIT_HINTS = (
    f"{_NUM}(?:{_NEXT}){{3}}|[{_DIGITISH}](?:{_NEXT}){{2}}[{RUN_SEPARATORS}]{{0,3}}{_NUM}",
    "[0-9][OolI]|[OolI][0-9]",
)


def fold_digits(text: str) -> str:
    """``text`` with numerals inside runs of at least seven digits (一一〇一〇五…, ①③⑧…) and
    the letters O/o/l/I inside runs of at least seven ASCII digits and those letters, three of
    them digits (``l38OOl38OOO``), as ASCII digits; one character for one, everything else as
    it was."""
    pieces: list[str] = []
    at = 0
    for m in _NUMERAL_RUN.finditer(text):
        run = m.group()
        if run.isascii():
            continue
        folded = run.translate(_NUMERAL_TABLE)
        if sum(c.isdigit() and c.isascii() for c in folded) >= _MIN_RUN_DIGITS:
            pieces += [text[at : m.start()], folded]
            at = m.end()
    if pieces:
        text = "".join(pieces) + text[at:]
    if not any(c in text for c in "OolI"):
        return text
    pieces, at = [], 0
    for m in _LETTER_RUN.finditer(text):
        run = m.group()
        digits = sum(c in "0123456789" for c in run)
        letters = sum(c in "OolI" for c in run)
        if letters and digits >= _MIN_TRUE_DIGITS and digits + letters >= _MIN_RUN_DIGITS:
            pieces += [text[at : m.start()], run.translate(_LETTER_TABLE)]
            at = m.end()
    return "".join(pieces) + text[at:] if pieces else text
