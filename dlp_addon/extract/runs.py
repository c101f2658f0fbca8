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


def _chars(cls: str) -> bytes:
    return bytes(b for b in range(128) if re.fullmatch(f"[{cls}]", chr(b)))


@dataclass(frozen=True)
class _Kind:
    pattern: re.Pattern[bytes]
    stretch: bytes  # translate table: what a match can be made of
    core: bytes  # translate table: what it needs ``least`` of
    least: int
    in_a_row: bool  # the core characters stand in one row (else anywhere in the stretch)

    def runs(self, data: bytes) -> Iterator[str]:
        stretch = data.translate(self.stretch)
        core = data.translate(self.core) if self.core != self.stretch else stretch
        need = b"s" * self.least
        at = 0
        while (hit := (core if self.in_a_row else stretch).find(need, at)) >= 0:
            start = stretch.rfind(b".", 0, hit) + 1
            end = stretch.find(b".", hit)
            end = len(data) if end < 0 else end
            at = end
            if self.in_a_row or core.count(b"s", start, end) >= self.least:
                for run in self.pattern.findall(data, start, min(end + 1, len(data))):
                    yield run.decode("ascii")


def _kind(pattern: re.Pattern[str], stretch: str, core: str, least: int, row: bool) -> _Kind:
    return _Kind(
        re.compile(pattern.pattern.encode()),
        _table(_chars(stretch)),
        _table(_chars(core)),
        least,
        row,
    )


class EncodedRuns:
    """``findall`` of the base64, hex and base32 run patterns, fast on long texts."""

    def __init__(
        self, base64: re.Pattern[str], hex_: re.Pattern[str], base32: re.Pattern[str]
    ) -> None:
        self._plain = (base64, hex_, base32)
        self._kinds = (
            _kind(base64, "A-Za-z0-9+/_=-", "A-Za-z0-9+/_-", 24, True),
            _kind(hex_, "0-9A-Fa-fxX:\\\\ ", "0-9A-Fa-f", 16, False),
            _kind(base32, "A-Z2-7=", "A-Z2-7", 16, True),
        )

    def findall(self, text: str) -> tuple[list[str], list[str], list[str]]:
        """The runs of each pattern in ``text``, as ``pattern.findall(text)`` gives them."""
        if len(text) < _SHORT:
            b64, hx, b32 = (p.findall(text) for p in self._plain)
            return b64, hx, b32
        data = text.encode("utf-8", "surrogatepass")
        b64, hx, b32 = (list(kind.runs(data)) for kind in self._kinds)
        return b64, hx, b32
