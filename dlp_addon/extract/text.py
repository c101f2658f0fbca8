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

    def add(text: str | None) -> None:
        if text is not None and _looks_like_text(text) and text not in readings:
            readings.append(text)

    bom = bom_charset(data)
    if bom is not None:
        add(_strict(data, bom))
    if charset and _known(charset):
        add(data.decode(charset, "replace"))
    rest = data[_bom_length(data) :]
    plain = _strict(rest, "utf-8")
    add(plain if plain is not None else _strict(rest, "gb18030"))
    wide = _utf16_order(data) if bom is None else None
    if wide is not None:
        add(_strict(data, wide))
    return readings


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
    if pairs < 4 or len(data) % 2:
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
