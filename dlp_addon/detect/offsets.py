"""Where things are: byte windows around hits, chunks of long texts, byte offsets as character
offsets, and offsets in folded text moved back into the text as written."""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator

from dlp_addon.detect.findings import Finding
from dlp_addon.detect.native import numscan
from dlp_addon.detect.normalize import DROPPED

_WINDOW_MARGIN = 256  # bytes around a prefilter hit that the full regex looks at


def windows(data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merged byte windows around prefilter hits, cut on UTF-8 character boundaries."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        lo, hi = max(0, start - _WINDOW_MARGIN), min(len(data), end + _WINDOW_MARGIN)
        while lo > 0 and 0x80 <= data[lo] < 0xC0:
            lo -= 1
        while hi < len(data) and 0x80 <= data[hi] < 0xC0:
            hi += 1
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def within(sorted_positions: list[int], pos: int, window: int) -> bool:
    i = bisect.bisect_left(sorted_positions, pos - window)
    return i < len(sorted_positions) and sorted_positions[i] <= pos + window


_CHUNK_CHARS = 1 << 20  # a part longer than this is scanned a chunk of whole lines at a time
# ... its first chunk this long, each next one twice as long up to _CHUNK_CHARS: a deadline or an
# early verdict (decide/early.py) can stop a big sheet after its first thousand rows.
_FIRST_CHUNK_CHARS = 1 << 16


class Arriving:
    """A text that comes a piece at a time (a workbook's rows from its reader): read by
    absolute offsets, a piece pulled only when an offset needs it. A ``str`` is one piece."""

    def __init__(self, pieces: Iterable[str]) -> None:
        self._next = iter(pieces)
        self._pieces: list[str] = []
        self._starts: list[int] = []
        self.length = 0  # so far; the whole text's once ``ended``
        self.ended = False

    def reach(self, pos: int) -> bool:
        """Whether the text goes beyond ``pos`` (pieces are pulled until it does, or ends)."""
        while self.length <= pos and not self.ended:
            piece = next(self._next, None)
            if piece is None:
                self.ended = True
            elif piece:
                self._pieces.append(piece)
                self._starts.append(self.length)
                self.length += len(piece)
        return self.length > pos

    def find(self, char: str, pos: int) -> int:
        """The offset of the first ``char`` at or after ``pos``, or -1 (then it has ended)."""
        while self.reach(pos):
            i = bisect.bisect_right(self._starts, pos) - 1
            found = self._pieces[i].find(char, pos - self._starts[i])
            if found >= 0:
                return self._starts[i] + found
            pos = self._starts[i] + len(self._pieces[i])
        return -1

    def span(self, start: int, end: int) -> str:
        """The text from ``start`` to ``end`` (both within what has come)."""
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_left(self._starts, end) - 1
        if first == last:
            piece, at = self._pieces[first], self._starts[first]
            if start == at and end == at + len(piece):
                return piece
            return piece[start - at : end - at]
        return "".join(
            self._pieces[i][max(start - self._starts[i], 0) : end - self._starts[i]]
            for i in range(first, last + 1)
        )

    def count(self, char: str, start: int, end: int) -> int:
        """How many ``char`` are between ``start`` and ``end`` (within what has come)."""
        if start >= end:
            return 0
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_left(self._starts, end) - 1
        return sum(
            self._pieces[i].count(char, max(start - self._starts[i], 0), end - self._starts[i])
            for i in range(first, last + 1)
        )

    def whole(self) -> str:
        """All of the text (every piece pulled)."""
        self.reach(sys.maxsize)
        return self._pieces[0] if len(self._pieces) == 1 else "".join(self._pieces)


def chunks(text: str | Arriving) -> Iterator[tuple[int, int, int]]:
    """``(first line, start, end)`` of the chunks of ``text``: all of it when short, else
    pieces cut after a newline, so no line (a record) and no number is cut in two. Each is
    known once the text reaches past it (an arriving text is cut as the whole one is)."""
    if isinstance(text, str):
        text = Arriving((text,))
    if not text.reach(_CHUNK_CHARS):
        yield 0, 0, text.length
        return
    start, line, size = 0, 0, min(_FIRST_CHUNK_CHARS, _CHUNK_CHARS)
    while text.reach(start):
        end = text.find("\n", start + size)
        end = text.length if end < 0 else end + 1
        yield line, start, end
        size = min(2 * size, _CHUNK_CHARS)
        line += text.count("\n", start, end)
        start = end


def char_offsets(data: bytes, positions: list[int]) -> list[int]:
    """Ascending byte offsets of UTF-8 ``data`` as character offsets."""
    if numscan is not None:
        return numscan.char_offsets(data, positions)
    out, chars, at = [], 0, 0
    for pos in positions:
        chars += len(data[at:pos].decode("utf-8", "replace"))
        out.append(chars)
        at = pos
    return out


def unfolded(original: str, findings: list[Finding], base: int) -> list[Finding]:
    """``findings`` of the folded ``original`` (whose first character is ``base`` of its part)
    with their offsets moved back into ``original``: folding maps one character to one,
    except the invisible ones it drops."""
    drops = [m.start() for m in DROPPED.finditer(original)]
    if not drops:
        return findings
    at = [o - k for k, o in enumerate(drops)]  # where each dropped one was, in the folded text
    return [
        f._replace(
            start=f.start + bisect.bisect_right(at, f.start - base),
            end=f.end + bisect.bisect_left(at, f.end - base),
        )
        for f in findings
    ]
