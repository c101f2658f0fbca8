"""Bytes -> text: every plausible reading (the BOM's, the declared charset's, UTF-8 else
GB18030, UTF-16 without a BOM); the readable runs of a binary frame; and whether unknown
bytes are opaque (compressed or encrypted).

A two-byte prefix must not blind the proxy: a body declared UTF-8 that starts with ``FF FE``
is read as UTF-16 (what its BOM says) *and* as UTF-8 (what the server that trusts the header
reads), so whichever the receiving site reads, the proxy has read it too."""

from __future__ import annotations

import codecs
import math
import re
from collections import Counter

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_OPAQUE_MIN_BYTES = 256
_OPAQUE_ENTROPY_BITS = 7.2
_TEXT_RUN = re.compile(
    rb"(?:[\x20-\x7e\t\r\n]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
    rb"|[\xf0-\xf4][\x80-\xbf]{3}){4,}"
)


def bom_charset(data: bytes) -> str | None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def decode_text(data: bytes, charset: str | None = None) -> str | None:
    """The first reading of ``data`` as text (see :func:`decode_readings`), else ``None``."""
    readings = decode_readings(data, charset)
    return readings[0] if readings else None


def decode_readings(data: bytes, charset: str | None = None) -> list[str]:
    """Every plausible reading of ``data`` as text, most likely first: what its BOM says;
    what the declared ``charset`` gives (undecodable bytes replaced, as a server that trusts
    the header reads them); UTF-8, else GB18030, of the bytes after any BOM; UTF-16 when
    every other byte is NUL (a CSV saved as Unicode text, without a BOM). Empty: not text."""
    readings: list[str] = []

    def add(text: str | None, lenient: bool = False) -> None:
        if text is not None:
            text = text.removeprefix("\ufeff")  # the same reading with its BOM or without
            if lenient and not _plausible(text):
                return  # random bytes behind a BOM or a header are no text: opaque
            if _looks_like_text(text) and text not in readings:
                readings.append(text)

    bom = bom_charset(data)
    if bom is not None:  # as a BOM-sniffing server reads it; a lone surrogate kept
        add(_strict(data, bom), lenient=False)
        add(_lenient(data, bom), lenient=True)
    if charset and _known(charset):
        add(data.decode(charset, "replace"), lenient=True)
    rest = data[_bom_length(data) :]
    plain = _strict(rest, "utf-8")
    add(plain if plain is not None else _strict(rest, "gb18030"))
    wide = _utf16_order(data) if bom is None else None
    if wide is not None:  # a trailing odd byte (a newline added by a tool) is left out
        add(_strict(data[: len(data) - len(data) % 2], wide))
    return readings


# What text is made of: ASCII, CJK (punctuation, kana, ideographs), Hangul, full-width forms,
# Latin-1 and general punctuation. Random bytes read leniently are mostly none of these.
_TEXTUAL = re.compile(
    "[\t\n\r\x20-\x7e\u00a0-\u024f\u2000-\u206f\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]"
)
_PLAUSIBLE = 0.8


def _plausible(text: str) -> bool:
    """Most of its first characters are ones text is made of (a lenient reading of random
    bytes is replacement characters, private-use and unassigned code points)."""
    head = text[:4096]
    if not head:
        return True
    bad = head.count("\ufffd")
    return bad * 20 < len(head) and len(_TEXTUAL.findall(head)) >= _PLAUSIBLE * len(head)


def _lenient(data: bytes, name: str) -> str:
    """``data`` in ``name``, a lone surrogate kept (the scanner drops it), any other
    undecodable byte replaced."""
    try:
        return data.decode(name, "surrogatepass")
    except UnicodeDecodeError:
        return data.decode(name, "replace")


def _known(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True


def _strict(data: bytes, name: str) -> str | None:
    try:
        return data.decode(name)
    except (LookupError, UnicodeDecodeError):
        return None


def _bom_length(data: bytes) -> int:
    for bom, _ in _BOMS:
        if data.startswith(bom):
            return len(bom)
    return 0


_WIDE_SAMPLE = 4096
_WIDE_NULS = 0.3  # of the sampled pairs with a NUL on one side: ASCII-heavy UTF-16


def _utf16_order(data: bytes) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` when NULs stand on one side of the byte pairs (text of
    ASCII digits and letters in UTF-16 without a BOM), else ``None``."""
    sample = data[: _WIDE_SAMPLE - _WIDE_SAMPLE % 2]
    pairs = len(sample) // 2
    if pairs < 4:
        return None
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if odd >= _WIDE_NULS * pairs and even < odd / 4:
        return "utf-16-le"
    if even >= _WIDE_NULS * pairs and odd < even / 4:
        return "utf-16-be"
    return None


# C0 controls other than tab, line feed, form feed and carriage return.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f]")


def _looks_like_text(text: str) -> bool:
    if not text:
        return True
    head = text[:4096]
    return len(_CONTROL.findall(head)) * 100 <= len(head)


def is_opaque(data: bytes) -> bool:
    """Compressed or encrypted-looking bytes (high entropy) that no parser here can read."""
    return len(data) >= _OPAQUE_MIN_BYTES and _entropy(data) > _OPAQUE_ENTROPY_BITS


def text_runs(data: bytes) -> str:
    """Readable UTF-8 runs of a binary frame (protobuf chat frames carry their text this way)."""
    return "\n".join(m.group().decode("utf-8", "replace") for m in _TEXT_RUN.finditer(data))


def _entropy(data: bytes) -> float:
    sample = data[: 64 * 1024]
    n = len(sample)
    return -sum(c / n * math.log2(c / n) for c in Counter(sample).values())
