"""Base64, hex and base32 runs of a long text, found at the speed of a byte scan.

The runs' regexes (in ``encoded_runs.py``) cost ~100 ms a MB when run over a whole sheet or CSV.
Every match lies inside a window of the UTF-8 bytes: base64 in a row of 24 or more of its
alphabet (then up to two ``=``), base32 in a row of 16 or more of ``A-Z2-7`` (then up to six
``=``), hex in a stretch of hex digits, ``x``, ``:``, ``\\`` and spaces holding 16 or more
digits. The windows are found in one pass in C (``_runscan``) or, when it is not built, with
``bytes.translate`` and ``bytes.find`` (:func:`windows_py`, its tested twin); the same regexes,
compiled for bytes, run only there: with ``pos`` (their lookbehind still sees the byte before)
and ``endpos`` past the padding and one byte more (their lookahead sees the byte after), so
they match exactly what they match in the whole text. The runs are ASCII, so bytes and text
agree.
"""

from __future__ import annotations

import re

try:
    from dlp_addon.extract import _runscan
except ImportError:  # pragma: no cover - scripts/setup builds it; the twin keeps us correct
    _runscan = None  # type: ignore[assignment]

_SHORT = 1 << 16  # below this many characters the plain regex is as fast

Windows = list[tuple[int, int]]


def _table(cls: str) -> bytes:
    """A ``bytes.translate`` table: the ASCII bytes of the regex class ``cls`` to ``s``, every
    other byte to ``.``."""
    return bytes(
        ord("s") if b < 128 and re.fullmatch(f"[{cls}]", chr(b)) else ord(".") for b in range(256)
    )


_BASE64 = _table("A-Za-z0-9+/_-")
_BASE32 = _table("A-Z2-7")
_HEX_STRETCH = _table("0-9A-Fa-fxX:\\\\ ")
_HEX_DIGIT = _table("0-9A-Fa-f")


def _rows(marked: bytes, least: int) -> Windows:
    """``(start, end)`` of each maximal row of ``s`` at least ``least`` long in ``marked``."""
    out = []
    need = b"s" * least
    at = 0
    while (hit := marked.find(need, at)) >= 0:
        start = marked.rfind(b".", 0, hit) + 1
        end = marked.find(b".", hit)
        end = len(marked) if end < 0 else end
        out.append((start, end))
        at = end
    return out


def windows_py(data: bytes) -> tuple[Windows, Windows, Windows]:
    """The base64, hex and base32 windows of ``data`` (see the module); ``_runscan.windows``
    gives the same at C speed."""
    hx = [
        (start, end)
        for start, end in _rows(data.translate(_HEX_STRETCH), 16)
        if data[start:end].translate(_HEX_DIGIT).count(b"s") >= 16
    ]
    return _rows(data.translate(_BASE64), 24), hx, _rows(data.translate(_BASE32), 16)


windows = windows_py if _runscan is None else _runscan.windows


def _bytes(pattern: re.Pattern[str]) -> re.Pattern[bytes]:
    return re.compile(pattern.pattern.encode())


class EncodedRuns:
    """``findall`` of the base64, hex and base32 run patterns, fast on long texts."""

    def __init__(
        self, base64: re.Pattern[str], hex_: re.Pattern[str], base32: re.Pattern[str]
    ) -> None:
        self._plain = (base64, hex_, base32)
        # Each pattern for bytes, with how far past its window it may read (padding, lookahead).
        self._fast = ((_bytes(base64), 3), (_bytes(hex_), 1), (_bytes(base32), 7))

    def findall(self, text: str) -> tuple[list[str], list[str], list[str]]:
        """The runs of each pattern in ``text``, as ``pattern.findall(text)`` gives them."""
        if len(text) < _SHORT:
            b64, hx, b32 = (p.findall(text) for p in self._plain)
            return b64, hx, b32
        return self.findall_bytes(text.encode("utf-8", "surrogatepass"))

    def findall_bytes(self, data: bytes) -> tuple[list[str], list[str], list[str]]:
        """:meth:`findall` of a text's UTF-8 bytes."""
        b64, hx, b32 = (
            [
                run.decode("ascii")
                for start, end in found
                for run in pattern.findall(data, start, min(end + past, len(data)))
            ]
            for found, (pattern, past) in zip(windows(data), self._fast, strict=True)
        )
        return b64, hx, b32
