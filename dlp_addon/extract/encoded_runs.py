"""Base64, hex and base32 runs of a text, and the ones worth decoding.

The runs are found by these regexes; :mod:`dlp_addon.extract.runs` finds exactly the same
runs fast in a long text (a byte scan first, the regexes only where they can match). A run is
kept when it decodes to something readable, a file we know, or compressed data: hex digests,
long digit strings and words also match the alphabets.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterator

from dlp_addon.extract.filetype import sniff
from dlp_addon.extract.runs import EncodedRuns
from dlp_addon.extract.text import decode_text

_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{24,}={0,2}")
# Hex: 16 or more digits in pairs, maybe as \x escapes or with : or a space between pairs.
_HEX_RUN = re.compile(
    r"(?<![0-9A-Za-z])(?:0[xX])?(?:(?:\\x)?[0-9A-Fa-f]{2}[: ]?){7,}(?:\\x)?[0-9A-Fa-f]{2}"
    r"(?![0-9A-Za-z])"
)
_HEX_NOISE = re.compile(r"\\x|^0[xX]|:")
_BASE32_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9+/])")
_RUNS = EncodedRuns(_BASE64_RUN, _HEX_RUN, _BASE32_RUN)  # the same, fast on long texts


def decoded(text: str) -> Iterator[tuple[str, bytes | None]]:
    """``(how, decoded bytes or None)`` of each base64, hex and base32 run of ``text``."""
    b64, hx, b32 = _RUNS.findall(text)
    for run in b64:
        yield "b64", _b64(run)
    for run in hx:
        yield "hex", _hex(run)
    for run in b32:
        yield "b32", _b32(run)


def _hex(run: str) -> bytes | None:
    """Decoded bytes of a hex run (``313130...``, ``\\x31\\x31...``, ``31:31:30``), when they
    are readable or a file, or compressed data (see ``_worth``)."""
    words = _HEX_NOISE.sub("", run).split(" ")
    try:
        if all(len(w) == 2 for w in words):  # bytes written a pair at a time: "31 31 30"
            raw = bytes.fromhex("".join(words))
        else:  # values hexed one by one and joined by spaces: their spaces kept
            raw = b" ".join(bytes.fromhex(w) for w in words)
    except ValueError:
        return None
    return raw if _worth(raw) or raw_deflate(raw) else None


def _b32(run: str) -> bytes | None:
    stripped = run.rstrip("=")
    try:
        raw = base64.b32decode(stripped + "=" * (-len(stripped) % 8))
    except (binascii.Error, ValueError):
        return None
    return raw if _worth(raw) or raw_deflate(raw) else None


def _worth(raw: bytes) -> bool:
    """Decoded bytes worth reading: text, a file we know, or zlib data (its header)."""
    if decode_text(raw, None) is not None or sniff(raw) != "binary":
        return True
    return len(raw) > 2 and raw[0] == 0x78 and (raw[0] << 8 | raw[1]) % 31 == 0


def _b64(run: str) -> bytes | None:
    """Decoded bytes of a base64 (or base64url) run that really is base64, else ``None``."""
    if len(run.rstrip("=")) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(
            run + "=" * (-len(run) % 4),
            altchars=b"-_" if ("-" in run or "_" in run) else None,
            validate=True,
        )
    except (binascii.Error, ValueError):
        return None
    # Hex digests, long digit strings and words also match the alphabet: keep only runs that
    # decode to something readable, a file we know, or compressed data (zlib, raw deflate).
    if _worth(raw) or raw_deflate(raw):
        return raw
    return None


def raw_deflate(raw: bytes) -> bool:
    """Whether ``raw`` is a complete raw deflate stream (a quick look: its first 64 KiB)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        d.decompress(raw, 1 << 16)
    except zlib.error:
        return False
    return d.eof or len(d.unconsumed_tail) > 0
