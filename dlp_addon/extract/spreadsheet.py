"""Workbooks (xlsx, xlsm, xls and WPS .et, ods) read with python-calamine, every sheet including
hidden ones, in a sandboxed reader process (:class:`Workbook`, ``sandbox``), which sends the
shape first and then the text a piece of whole rows at a time (:func:`pieces`), while the proxy
scans what has come. Each row becomes one line of text, cells separated by tabs: a row is a
record.
Sheet names are text too (a line each). What an xls carries besides its cells (``biff``:
comments, defined names, formula text, document properties) is read by the caller meanwhile,
in its own process, as an xlsx's other parts are (``files.py``).

Numbers are written back as people typed them: a mobile stored as the number 13800138000 (read
as 13800138000.0, or shown as 1.38001380E10) is the text ``13800138000`` again. calamine's
XML reader does not expand entities, so entity bombs in OOXML cannot inflate.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook, SheetVisibleEnum

from dlp_addon.errors import ExtractError
from dlp_addon.extract import sandbox
from dlp_addon.extract.limits import Budget, Limits

try:
    from dlp_addon.extract import _sheettext
except ImportError:  # not built: the pure-Python twin
    _sheettext = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Sheets:
    """What a workbook holds: its text (one line a row) and its shape."""

    text: str
    sheets: int
    hidden_sheets: int
    rows: int
    columns: int
    names: str = ""  # sheet names, one a line (they are text a sender chooses)


@dataclass(frozen=True)
class Shape:
    """A workbook's shape, known once every sheet is parsed and before any text is built."""

    sheets: int
    hidden_sheets: int
    rows: int
    columns: int
    names: str  # sheet names, one a line


PREVIEW_CHARS = 1 << 16  # the scanner's first chunk: the first pieces reach it soon
PIECE_CHARS = 1 << 18  # then pieces about this long (whole rows), each sent as it is built
_FIRST_ROWS = 4096  # rows of a sheet's first piece when nothing tells their width yet


def _cell(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e20 else repr(value)
    if isinstance(value, dt.date | dt.datetime | dt.time | dt.timedelta):
        return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)
    return "" if value is None else str(value)


def _text_py(rows: list[list[Any]]) -> str:
    """The rows as lines of tab-separated cells, a cell at a time: the twin of ``_sheettext``
    (C, ~5x faster: a 100,000-row sheet of six columns in ~20-40 ms), tested equal."""
    return "\n".join("\t".join(map(_cell, row)) for row in rows)


def _text(rows: list[list[Any]]) -> str:
    """The rows as lines of tab-separated cells (``_sheettext``, or its twin when unbuilt)."""
    return _text_py(rows) if _sheettext is None else _sheettext.text(rows, _cell)


def _head(sheet: CalamineSheet, chars: int) -> tuple[str, int, bool]:
    """The text of the sheet's first rows, enough for ``chars`` characters (whole rows), how
    many rows that is, and whether they are all the sheet has. Only those rows become
    objects: a short piece goes before the whole sheet's cells are made (~50 ms for 100,000
    rows)."""
    n = 64
    while True:
        rows = sheet.to_python(skip_empty_area=False, nrows=n)
        text = _text(rows)
        if len(text) >= chars or len(rows) < n:
            return text, len(rows), len(rows) < n
        n = max(2 * n, n * chars * 5 // (4 * max(len(text), 1)))  # a quarter more than needed


def pieces(
    data: bytes | int, budget: Budget, hold: list[object] | None = None
) -> Iterator[Shape | str]:
    """A workbook's (its bytes, or a :func:`memory_file`) :class:`Shape`, then its text (one
    line a row, sheets one after another) a piece of whole rows at a time: joined, the pieces
    are the text; every piece but the first starts with the newline before its rows. The
    first pieces reach ``PREVIEW_CHARS`` as soon as they can (the early verdict may need no
    more), each next one is about ``PIECE_CHARS``: the caller scans a piece while the next is
    built. Every sheet is parsed before any text, so the shape comes first. ``ExtractError``
    when the workbook cannot be read. ``hold`` is given the workbook and the cells instead of
    freeing them: a reader frees them after its answer (~30 ms for 100,000 rows)."""
    try:
        yield from _pieces(data, budget, [] if hold is None else hold)
    except ExtractError:
        raise
    except CalamineError as e:
        message = str(e).lower()
        raise ExtractError(
            "encrypted" if "password" in message or "encrypt" in message else "corrupt"
        ) from e
    except (ValueError, TypeError, OSError) as e:
        raise ExtractError("corrupt") from e
    except BaseException as e:
        # calamine panics on some malformed files (pyo3 raises PanicException, which derives
        # from BaseException): unreadable, not a reason to crash the inspection.
        if isinstance(e, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise ExtractError("corrupt") from e


_BY_PATH = os.path.isdir("/proc/self/fd") and hasattr(os, "memfd_create")


def memory_file(data: bytes) -> int | None:
    """A memory file holding ``data`` (its descriptor: close it), or ``None`` where the system
    has none, refuses one (a system-call filter) or cannot open one by path."""
    if not _BY_PATH:
        return None
    try:
        fd = os.memfd_create("workbook", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open(source: bytes | int) -> CalamineWorkbook:
    """calamine's reading of a workbook (its bytes, or a :func:`memory_file` descriptor), by
    path where it can: from a file-like object, calamine copies the bytes once more for every
    format it tries (~30 ms and 40 MB more for a 13 MB xls). The formats are tried in the same
    order either way."""
    if isinstance(source, int):
        return CalamineWorkbook.from_path(f"/proc/self/fd/{source}")  # it opens its own
    fd = memory_file(source)
    if fd is None:
        return CalamineWorkbook.from_filelike(io.BytesIO(source))
    try:
        return _open(fd)
    finally:
        os.close(fd)


def _pieces(data: bytes | int, budget: Budget, hold: list[object]) -> Iterator[Shape | str]:
    book = _open(data)
    metadata = book.sheets_metadata
    parsed = []
    for meta in metadata:
        sheet = book.get_sheet_by_name(meta.name)
        budget.spend_cells(sheet.height * max(sheet.width, 1))
        parsed.append(sheet)
    names = "\n".join(m.name for m in metadata)
    budget.spend(len(names))
    hold += [book, parsed]
    yield Shape(
        len(metadata),
        sum(1 for m in metadata if m.visible != SheetVisibleEnum.Visible),
        sum(sheet.height for sheet in parsed),
        max((sheet.width for sheet in parsed), default=0),
        names,
    )
    first, sent = True, 0  # characters
    for sheet in parsed:
        for text in _sheet(sheet, PREVIEW_CHARS - sent - (not first), hold):
            piece = text if first else "\n" + text
            budget.spend(len(piece))
            first, sent = False, sent + len(piece)
            yield piece


def _sheet(sheet: CalamineSheet, preview: int, hold: list[object]) -> Iterator[str]:
    """A sheet's text in pieces of whole rows (joined by newlines, they are its text; an empty
    sheet is one empty piece): first ``preview`` characters' worth when that is more than
    none, then about ``PIECE_CHARS`` a piece."""
    done, step = 0, _FIRST_ROWS
    if preview > 0:
        text, done, whole = _head(sheet, preview)
        yield text
        if whole:
            return
        step = max(1, done * PIECE_CHARS // max(len(text), 1))
    rows = sheet.to_python(skip_empty_area=False)
    hold.append(rows)
    if not rows:
        yield ""
    while done < len(rows):
        text = _text(rows[done : done + step])
        yield text
        done += step
        step = max(1, step * PIECE_CHARS // max(len(text), 1))


def read(data: bytes, budget: Budget) -> Sheets:
    """Every sheet's rows as text, and the workbook's shape (:func:`pieces`, joined)."""
    items = pieces(data, budget)
    shape = next(items)
    assert isinstance(shape, Shape)
    text = "".join(cast("Iterator[str]", items))
    return Sheets(text, shape.sheets, shape.hidden_sheets, shape.rows, shape.columns, shape.names)


class Workbook:
    """A workbook read by a sandboxed reader (:func:`pieces`): :meth:`shape` first, then
    :meth:`pieces` of its text as the reader builds them, each charged to the budget. Use as a
    context manager, or :meth:`close` it: a reader whose text is not wanted is killed."""

    def __init__(self, data: bytes, limits: Limits, deadline: float | None = None) -> None:
        fd = memory_file(data)  # passed to the reader: no copy through a pipe
        try:
            args = (limits,) if fd is not None else (data, limits)
            self._pending = sandbox.Pending(_read, args, deadline, items=True, handle=fd)
        finally:
            if fd is not None:
                os.close(fd)  # the reader holds its own descriptor
        self._items = self._pending.items()

    def shape(self, budget: Budget) -> Shape:
        """The workbook's shape; its cells are charged to ``budget``."""
        shape = next(self._items, None)
        if not isinstance(shape, Shape):  # answered without one: cannot be (a bug)
            self.close()
            raise ExtractError("corrupt")
        budget.spend_cells(shape.rows * max(shape.columns, 1))
        return shape

    def pieces(self, budget: Budget) -> Iterator[str]:
        """The text after :meth:`shape`, a piece at a time as it comes (joined, the whole
        text), each charged to ``budget``."""
        for item in self._items:
            encoding, payload = item.value, item.payload
            piece: str = payload.decode(encoding, "surrogatepass")
            budget.spend(len(piece))
            yield piece
        self._pending.result()

    def close(self) -> None:
        self._pending.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_in_reader(data: bytes, budget: Budget, deadline: float | None = None) -> Sheets:
    """:func:`read` in a reader; its cells and text are charged to ``budget``."""
    with Workbook(data, budget.limits, deadline) as book:
        shape = book.shape(budget)
        text = "".join(book.pieces(budget))
    return Sheets(text, shape.sheets, shape.hidden_sheets, shape.rows, shape.columns, shape.names)


def _read(data: bytes | int, limits: Limits, send: Callable[[object], None]) -> None:
    """In a reader: the workbook's shape, then each piece of its text, sent as it is built."""
    for item in pieces(data, Budget(limits), sandbox.held):
        send(sandbox.Bulk(*_encoded(item)) if isinstance(item, str) else item)


def _encoded(text: str) -> tuple[str, bytes]:
    """``text`` as bytes in about its own width, and the codec that reads it back."""
    if text.isascii():
        return "ascii", text.encode("ascii")
    try:
        return "utf-16-le", text.encode("utf-16-le")
    except UnicodeEncodeError:  # a lone surrogate: UTF-16 would pair it with its neighbour
        return "utf-8", text.encode("utf-8", "surrogatepass")
