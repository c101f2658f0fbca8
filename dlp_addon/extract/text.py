"""Bytes -> text: charset from the header or a BOM, else UTF-8, else GB18030; the readable
runs of a binary frame; and whether unknown bytes are opaque (compressed or encrypted)."""

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
    """Text of ``data`` if it is text in a charset we know, else ``None``."""
    candidates = [bom_charset(data), charset, "utf-8", "gb18030"]
    for name in candidates:
        if not name:
            continue
        try:
            codecs.lookup(name)
            text = data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
        if _looks_like_text(text):
            return text
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
