"""What a legacy xls (BIFF8, and WPS .et) carries besides the cell values calamine reads:
comments (the text of ``TXO`` records), defined names (``NAME``), formula text (``FORMULA``: a
literal such as ``="110105..."`` may have no cached value), and every other stream of the
compound file (document properties in ``\\x05SummaryInformation``, custom streams a tool
added), whose readable runs are text.

The compound file is read with olefile; BIFF records are walked by their lengths. Strings are
read as runs (single-byte and UTF-16LE), not decoded token by token: a string a record holds is
found wherever it sits. Runs in the workbook stream are read only inside those three record
types, so a cell's value is not read a second time with another line grouping."""

from __future__ import annotations

import io
import re
import struct

import olefile  # type: ignore[import-untyped]

from dlp_addon.errors import ExtractError
from dlp_addon.extract.text import text_runs

_WORKBOOK = ("Workbook", "Book")
_FORMULA, _NAME, _TXO, _CONTINUE = 0x0006, 0x0018, 0x01B6, 0x003C
# UTF-16LE: ASCII, CJK (U+3000-U+9FFF, full-width forms) and line breaks, four or more.
_UTF16_RUN = re.compile(rb"(?:[\x20-\x7e\t\r\n]\x00|[\x00-\xff][\x30\x4e-\x9f\xff]){4,}")
_MAX_STREAMS = 256


def extras(data: bytes) -> str:
    """Comments, defined names and formula text of the workbook stream, and the readable runs
    of every other stream, a line each (formulas a sheet row a line)."""
    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
        streams = ole.listdir(streams=True, storages=False)
        if len(streams) > _MAX_STREAMS:
            raise ExtractError("too_many_entries")
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


def runs(raw: bytes) -> list[str]:
    """Readable single-byte (UTF-8) and UTF-16LE runs of binary data, either alignment."""
    out = [text_runs(raw)]
    for start in (0, 1):
        for m in _UTF16_RUN.finditer(raw, start):
            if (m.start() - start) % 2 == 0:
                out.append(m.group().decode("utf-16-le", "replace"))
    return out


def _records(stream: bytes) -> list[str]:
    rows: dict[tuple[int, int], list[str]] = {}  # (substream, row) -> formula strings
    lines: list[str] = []
    substream, pos, previous = 0, 0, 0
    while pos + 4 <= len(stream):
        rtype, size = struct.unpack_from("<HH", stream, pos)
        body = stream[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if rtype == 0x0809:  # BOF: a new substream (globals, then each sheet)
            substream += 1
        elif rtype == _FORMULA and len(body) > 22:
            (row,) = struct.unpack_from("<H", body)
            rows.setdefault((substream, row), []).extend(runs(body[22:]))
        elif rtype == _NAME and len(body) > 14:
            lines.append(" ".join(runs(body[14:])))
        elif rtype == _CONTINUE and previous == _TXO and body:
            text = body[1:]  # the first byte says whether the characters are 8 or 16 bits
            encoding = "utf-16-le" if body[0] & 1 else "latin-1"
            lines.append(text.decode(encoding, "replace"))
        if rtype != _CONTINUE:
            previous = rtype
    lines.extend("\t".join(values) for values in rows.values())
    return lines
