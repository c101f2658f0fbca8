"""Workbooks (xlsx, xlsm, xls and WPS .et, ods) read with python-calamine, every sheet including
hidden ones. Each row becomes one line of text, cells separated by tabs: a row is a record.
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
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from typing import Any, cast

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook, SheetVisibleEnum

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget

_HEADER = 8  # cells above a column's numbers that may be its header
_SAMPLE = 64  # rows looked at to tell which columns hold more than text
_EXACT = 2**53  # integers up to this are exact as floats


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
class Preview:
    """A long workbook's first rows (at least ``PREVIEW_CHARS`` of its text, whole rows, the
    text's exact beginning) and its whole shape, sent before the rest of the text is built:
    the early verdict may need no more (see ``files.py``)."""

    text: str
    sheets: int
    hidden_sheets: int
    rows: int
    columns: int


PREVIEW_CHARS = 1 << 16  # the scanner's first chunk


def _cell(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e20 else repr(value)
    if isinstance(value, dt.date | dt.datetime | dt.time | dt.timedelta):
        return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)
    return "" if value is None else str(value)


def _float_texts(values: list[float]) -> list[str]:
    """Floats as :func:`_cell` writes them, a C-level pass at a time (``repr`` is the cost:
    ~0.3 µs a value)."""
    whole = list(map(float.is_integer, values))
    if all(whole) and min(values, default=0.0) > -1e20 and max(values, default=0.0) < 1e20:
        return list(map(str, map(int, values)))  # counts, or mobiles stored as numbers
    texts = list(map(float.__repr__, values))
    for i in compress(range(len(values)), whole):
        if abs(values[i]) < 1e20:
            texts[i] = str(int(values[i]))
    return texts


def _floats(values: list[float]) -> list[str]:
    """A run of floats as :func:`_cell` writes them; where values repeat (prices), each
    distinct one is written once (equal floats give the same text: 0.0 and -0.0 are ``0``).
    Where most are distinct, looking them up would cost more than it saves."""
    text: dict[float, Any] = dict.fromkeys(values)
    if len(text) > len(values) // 2:
        return _float_texts(values)
    distinct = list(text)
    text.update(zip(distinct, _float_texts(distinct), strict=True))
    return list(map(text.__getitem__, values))


def _column(column: list[object]) -> list[str]:
    """A column's cells as :func:`_cell` writes them. Text stays as it is; numbers under a few
    cells of text (a header) are written in bulk (:func:`_floats`; an xls mixes integers and
    floats in a column: integers that are exact as floats are written as those are); in a
    column of text and numbers, integers are written in place and each distinct float once."""
    head = next((i for i, v in enumerate(column[:_HEADER]) if type(v) is not str), None)
    if head is not None:
        numbers = cast("list[float]", column[head:])
        types = set(map(type, numbers))
        exact = types == {int, float} and min(numbers) >= -_EXACT and max(numbers) <= _EXACT
        if types == {float} or exact:
            texts = _floats(list(map(float, numbers)) if exact else numbers)
            return [*cast("list[str]", column[:head]), *texts]
        if head:
            types.add(str)  # the cells above
    else:
        types = set(map(type, column))
    if types <= {str}:
        return column  # type: ignore[return-value]
    if types <= {str, int, bool}:
        return list(map(str, column))  # str(True) is "True", as _cell writes it
    if types <= {str, float, int}:
        floats = [v for v in column if type(v) is float]
        text: dict[object, str] = dict(zip(floats, _floats(floats), strict=True))
        return [v if type(v) is str else str(v) if type(v) is int else text[v] for v in column]
    return list(map(_cell, column))


def _as_text(rows: list[list[Any]], j: int) -> None:
    """Column ``j`` of ``rows`` written as text, in place."""
    column = list(map(itemgetter(j), rows))
    text = _column(column)
    if text is not column:
        for row, cell in zip(rows, text, strict=True):
            row[j] = cell


def _text(rows: list[list[Any]]) -> str:
    """The rows as lines of tab-separated cells. Only the columns that hold something other
    than text are written, a column at a time and into ``rows`` itself (which it consumes),
    so text costs no work in Python and the sheet is not copied into columns. Which columns
    those are is told by a sample of rows; a cell the sample missed fails the join, and then
    every column is looked at."""
    if not rows:
        return ""
    width = len(rows[0])
    if len(set(map(len, rows))) != 1:
        return "\n".join("\t".join(_cell(v) for v in row) for row in rows)
    sample = rows[:: max(1, len(rows) // _SAMPLE)] + rows[1:2] + rows[-1:]
    guessed = {j for row in sample for j, v in enumerate(row) if type(v) is not str}
    for j in sorted(guessed):
        _as_text(rows, j)
    try:
        return "\n".join(map("\t".join, rows))
    except TypeError:  # a column the sample took for text is not all text
        for j in range(width):
            if j not in guessed:
                _as_text(rows, j)
        return "\n".join(map("\t".join, rows))


def _head(sheet: CalamineSheet, chars: int) -> tuple[str, bool]:
    """The text of the sheet's first rows, enough for ``chars`` characters (whole rows), and
    whether that is all of them. Only those rows become objects: the preview goes before
    the whole sheet's cells are made (~80 ms for 100,000 rows)."""
    n = 64
    while True:
        rows = sheet.to_python(skip_empty_area=False, nrows=n)
        whole = len(rows) < n
        text = _text(rows)
        if len(text) >= chars or whole:
            return text, whole
        n = max(2 * n, n * chars * 5 // (4 * max(len(text), 1)))  # a quarter more than needed


def read(
    data: bytes,
    budget: Budget,
    preview: Callable[[Preview], None] | None = None,
    hold: list[object] | None = None,
) -> Sheets:
    """Every sheet's rows as text; ``ExtractError`` when the workbook cannot be read. Every
    sheet is parsed before any text is built, so that ``preview`` (called once, when the text
    reaches ``PREVIEW_CHARS``) knows the whole shape. ``hold`` is given the workbook, its
    sheets and the last one's cells instead of freeing them: a caller that exits without
    freeing (the sandboxed child) answers ~30 ms sooner for a 100,000-row sheet."""
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        metadata = book.sheets_metadata
        parsed = []
        for meta in metadata:
            sheet = book.get_sheet_by_name(meta.name)
            budget.spend_cells(sheet.height * max(sheet.width, 1))
            parsed.append(sheet)
        rows = sum(sheet.height for sheet in parsed)
        columns = max((sheet.width for sheet in parsed), default=0)
        hidden = sum(1 for m in metadata if m.visible != SheetVisibleEnum.Visible)
        texts: list[str] = []
        chars = 0
        values: list[list[Any]] = []
        for sheet in parsed:
            text = None
            if preview is not None:
                need = PREVIEW_CHARS - chars - len(texts)  # the newlines between sheets count
                head, whole = _head(sheet, need)
                if len(head) >= need:
                    preview(Preview("\n".join([*texts, head]), len(parsed), hidden, rows, columns))
                    preview = None
                text = head if whole else None
            if text is None:
                values = sheet.to_python(skip_empty_area=False)
                text = _text(values)
            texts.append(text)
            chars += len(text)
        if hold is not None:
            hold += [book, parsed, values]
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
    text = "\n".join(texts)
    budget.spend(len(text))
    names = "\n".join(m.name for m in metadata)
    budget.spend(len(names))
    return Sheets(text, len(metadata), hidden, rows, columns, names)
