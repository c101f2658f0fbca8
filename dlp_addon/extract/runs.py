"""Base64, hex and base32 runs of a long text, found at the speed of a byte scan.

The runs' regexes (in ``encoded_runs.py``) cost ~100 ms a MB when run over a whole sheet or CSV.
Every match lies inside a stretch of the characters such a run is made of and holds a minimum
of its core characters (24 of base64's alphabet in a row, 16 hex digits, 16 of base32's in a
row). Those stretches are found in the UTF-8 bytes with ``bytes.translate`` and ``bytes.find``,
and the same regexes, compiled for bytes, run only there: with ``pos`` (their lookbehind still
sees the byte before) and ``endpos`` one past the stretch (their lookahead sees the byte
after), so they match exactly what they match in the whole text. The runs are ASCII, so bytes
and text agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SHORT = 1 << 16  # below this many characters the plain regex is as fast


def _table(members: bytes) -> bytes:
    """A ``bytes.translate`` table: ``members`` to ``s``, every other byte to ``.``."""
    return bytes(ord("s") if b in members else ord(".") for b in range(256))


def _bytes(pattern: re.Pattern[str]) -> re.Pattern[bytes]:
    return re.compile(pattern.pattern.encode())


def _chars(cls: str) -> bytes:
    return bytes(b for b in range(128) if re.fullmatch(f"[{cls}]", chr(b)))


@dataclass(frozen=True)
class _InARow:
    """Runs of ``pattern``: ``least`` or more of the ``core`` characters in a row, then up to
    ``padding`` ``=`` (base64, base32). A run starts where a row of them starts; the padding
    and the lookahead come within ``padding + 1`` bytes of the row's end."""

    pattern: re.Pattern[bytes]
    core: bytes  # translate table
    least: int
    padding: int

    def runs(self, data: bytes) -> Iterator[str]:
        core = data.translate(self.core)
        need = b"s" * self.least
        at = 0
        while (hit := core.find(need, at)) >= 0:
            start = core.rfind(b".", 0, hit) + 1
            end = core.find(b".", hit)
            end = len(data) if end < 0 else end
            at = end
            for run in self.pattern.findall(data, start, min(end + self.padding + 1, len(data))):
                yield run.decode("ascii")


@dataclass(frozen=True)
class _Spread:
    """Runs of ``pattern`` that hold ``least`` of the ``core`` characters anywhere in a stretch
    of ``stretch`` characters (hex: pairs of digits with ``:``, spaces or ``\\x`` between)."""

    pattern: re.Pattern[bytes]
    stretch: bytes  # translate table: what a match can be made of
    core: bytes  # translate table: what it needs ``least`` of
    least: int

    def runs(self, data: bytes) -> Iterator[str]:
        stretch = data.translate(self.stretch)
        need = b"s" * self.least
        at = 0
        while (hit := stretch.find(need, at)) >= 0:
            start = stretch.rfind(b".", 0, hit) + 1
            end = stretch.find(b".", hit)
            end = len(data) if end < 0 else end
            at = end
            if data[start:end].translate(self.core).count(b"s") >= self.least:
                for run in self.pattern.findall(data, start, min(end + 1, len(data))):
                    yield run.decode("ascii")


class EncodedRuns:
    """``findall`` of the base64, hex and base32 run patterns, fast on long texts."""

    def __init__(
        self, base64: re.Pattern[str], hex_: re.Pattern[str], base32: re.Pattern[str]
    ) -> None:
        self._plain = (base64, hex_, base32)
        self._kinds = (
            _InARow(_bytes(base64), _table(_chars("A-Za-z0-9+/_-")), 24, 2),
            _Spread(
                _bytes(hex_), _table(_chars("0-9A-Fa-fxX:\\\\ ")), _table(_chars("0-9A-Fa-f")), 16
            ),
            _InARow(_bytes(base32), _table(_chars("A-Z2-7")), 16, 6),
        )

    def findall(self, text: str) -> tuple[list[str], list[str], list[str]]:
        """The runs of each pattern in ``text``, as ``pattern.findall(text)`` gives them."""
        if len(text) < _SHORT:
            b64, hx, b32 = (p.findall(text) for p in self._plain)
            return b64, hx, b32
        return self.findall_bytes(text.encode("utf-8", "surrogatepass"))

    def findall_bytes(self, data: bytes) -> tuple[list[str], list[str], list[str]]:
        """:meth:`findall` of a text's UTF-8 bytes."""
        return tuple(list(kind.runs(data)) for kind in self._kinds)  # type: ignore[return-value]
