"""What a legacy xls (BIFF8, and WPS .et) carries besides the cell values calamine reads:
comments (the text of ``TXO`` records), defined names (``NAME``), formula text (``FORMULA``: a
literal such as ``="110105..."`` may have no cached value), and every other stream of the
compound file (document properties in ``\\x05SummaryInformation``, custom streams a tool
added), whose readable runs are text.

The compound file is read with olefile; BIFF records are walked by their lengths, in C
(``_biffwalk``: a large sheet is hundreds of thousands of records) or, when it is not built, by
its pure-Python twin :func:`_select_py`. Strings are read as runs (single-byte and UTF-16LE),
not decoded token by token: a string a record holds is found wherever it sits. Runs in the
workbook stream are read only inside those three record types, so a cell's value is not read a
second time with another line grouping.

It runs in the proxy's process while the sandboxed child reads the cells (``files.py``): no
native parser, and olefile's work is kept in proportion to the file (:func:`_in_proportion`)."""

from __future__ import annotations

import io
import re
import struct

import olefile  # type: ignore[import-untyped]

from dlp_addon.errors import ExtractError
from dlp_addon.extract.text import text_runs

try:
    from dlp_addon.extract import _biffwalk
except ImportError:  # pragma: no cover - scripts/setup builds it; the twin keeps us correct
    _biffwalk = None  # type: ignore[assignment]

_WORKBOOK = ("Workbook", "Book")
_FORMULA, _NAME, _TXO, _CONTINUE, _BOF = 0x0006, 0x0018, 0x01B6, 0x003C, 0x0809
# UTF-16LE: ASCII, CJK (U+3000-U+9FFF, full-width forms) and line breaks, four or more.
_UTF16_RUN = re.compile(rb"(?:[\x20-\x7e\t\r\n]\x00|[\x00-\xff][\x30\x4e-\x9f\xff]){4,}")
_MAX_STREAMS = 256
_HEADER = struct.Struct("<HH10xI8xIII")  # sector shifts, FAT sectors, cutoff, MiniFAT sectors


def extras(data: bytes) -> str:
    """Comments, defined names and formula text of the workbook stream, and the readable runs
    of every other stream, a line each (formulas a sheet row a line)."""
    try:
        if not _in_proportion(data):
            raise ExtractError("corrupt")
        ole = olefile.OleFileIO(io.BytesIO(data))
        streams = ole.listdir(streams=True, storages=False)
        if len(streams) > _MAX_STREAMS:
            raise ExtractError("too_many_entries")
        declared = sum(ole.get_size(path) for path in streams)
        if declared > len(data) or ole.root.size > len(data):
            raise ExtractError("corrupt")
        lines: list[str] = []
        for path in streams:
            raw = ole.openstream(path).read()
            if path[-1] in _WORKBOOK:
                lines.extend(_records(raw))
            else:
                lines.extend(runs(raw))
    except ExtractError:
        raise
    except Exception as e:  # olefile raises many types on a malformed file
        raise ExtractError("corrupt") from e
    return "\n".join(line for line in lines if line.strip())


def _in_proportion(data: bytes) -> bool:
    """Whether the compound file's header keeps olefile's reading in proportion to the file.
    olefile trusts a file's counts and sizes and notes most inconsistencies without stopping
    (a sector chain that loops is read round and round up to a stream's declared size, 4 GiB
    at most), which in the proxy's process would cost its memory. Here the sizes the format
    fixes (sectors of 512 or 4096 bytes, mini sectors of 64 below 4096 bytes) and counts the
    file can hold are required; :func:`extras` then requires that the streams' declared sizes
    add up to no more than the file (in a well-formed file each stream has its own sectors).
    A FAT larger than twice what the file needs is refused too: olefile builds it by
    concatenation, in quadratic time."""
    if len(data) < 512:
        return False
    fields: tuple[int, ...] = _HEADER.unpack_from(data, 30)
    shift, mini_shift, fat_sectors, cutoff, _, mini_fat_sectors = fields
    if shift not in (9, 12) or mini_shift != 6 or cutoff != 4096:
        return False
    sectors = len(data) >> shift
    needed = sectors // ((1 << shift) // 4) + 1  # FAT sectors to map every sector
    return fat_sectors <= 2 * needed + 1 and mini_fat_sectors <= sectors


def runs(raw: bytes) -> list[str]:
    """Readable single-byte (UTF-8) and UTF-16LE runs of binary data, either alignment."""
    out = [text_runs(raw)]
    for start in (0, 1):
        for m in _UTF16_RUN.finditer(raw, start):
            if (m.start() - start) % 2 == 0:
                out.append(m.group().decode("utf-16-le", "replace"))
    return out


def _select_py(stream: bytes) -> list[tuple[int, int, bytes]]:
    """The records :func:`_records` reads, as ``(type, substream, body)``: every FORMULA and
    NAME, every CONTINUE after a TXO (the comment's text), with the count of BOF records
    before it (1 the globals, then each sheet). A body whose size runs past the end is what
    is left of the stream. The reference for ``_biffwalk.select``."""
    out: list[tuple[int, int, bytes]] = []
    substream, pos, previous = 0, 0, 0
    while pos + 4 <= len(stream):
        rtype, size = struct.unpack_from("<HH", stream, pos)
        if rtype == _BOF:
            substream += 1
        elif rtype in (_FORMULA, _NAME) or (rtype == _CONTINUE and previous == _TXO):
            out.append((rtype, substream, stream[pos + 4 : pos + 4 + size]))
        if rtype != _CONTINUE:
            previous = rtype
        pos += 4 + size
    return out


_select = _select_py if _biffwalk is None else _biffwalk.select


def _records(stream: bytes) -> list[str]:
    rows: dict[tuple[int, int], list[str]] = {}  # (substream, row) -> formula strings
    lines: list[str] = []
    for rtype, substream, body in _select(stream):
        if rtype == _FORMULA and len(body) > 22:
            (row,) = struct.unpack_from("<H", body)
            rows.setdefault((substream, row), []).extend(runs(body[22:]))
        elif rtype == _NAME and len(body) > 14:
            lines.append(" ".join(runs(body[14:])))
        elif rtype == _CONTINUE and body:
            text = body[1:]  # the first byte says whether the characters are 8 or 16 bits
            encoding = "utf-16-le" if body[0] & 1 else "latin-1"
            lines.append(text.decode(encoding, "replace"))
    lines.extend("\t".join(values) for values in rows.values())
    return lines
