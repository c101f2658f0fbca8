"""Where things are: byte windows around hits, chunks of long texts, byte offsets as character
offsets, and offsets in folded text moved back into the text as written."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

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


def chunks(text: str) -> Iterator[tuple[int, int, int]]:
    """``(first line, start, end)`` of the chunks of ``text``: all of it when short, else
    pieces cut after a newline, so no line (a record) and no number is cut in two."""
    if len(text) <= _CHUNK_CHARS:
        yield 0, 0, len(text)
        return
    start, line, size = 0, 0, min(_FIRST_CHUNK_CHARS, _CHUNK_CHARS)
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
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
