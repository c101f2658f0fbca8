"""Workbooks (xlsx, xlsm, xls and WPS .et, ods) read with python-calamine, every sheet including
hidden ones. Each row becomes one line of text, cells separated by tabs: a row is a record.

Numbers are written back as people typed them: a mobile stored as the number 13800138000 (read
as 13800138000.0, or shown as 1.38001380E10) is the text ``13800138000`` again. calamine's
XML reader does not expand entities, so entity bombs in OOXML cannot inflate.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

from python_calamine import CalamineError, CalamineWorkbook, SheetVisibleEnum

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget


@dataclass(frozen=True)
class Sheets:
    """What a workbook holds: its text (one line a row) and its shape."""

    text: str
    sheets: int
    hidden_sheets: int
    rows: int
    columns: int


def _cell(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e20 else repr(value)
    if isinstance(value, dt.date | dt.datetime | dt.time | dt.timedelta):
        return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)
    return "" if value is None else str(value)


def read(data: bytes, budget: Budget) -> Sheets:
    """Every sheet's rows as text; ``ExtractError`` when the workbook cannot be read."""
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        metadata = book.sheets_metadata
        lines: list[str] = []
        rows = columns = 0
        for meta in metadata:
            sheet = book.get_sheet_by_name(meta.name)
            budget.spend_cells(sheet.height * max(sheet.width, 1))
            for row in sheet.to_python(skip_empty_area=False):
                lines.append("\t".join(_cell(v) for v in row))
            rows += sheet.height
            columns = max(columns, sheet.width)
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
    hidden = sum(1 for m in metadata if m.visible != SheetVisibleEnum.Visible)
    text = "\n".join(lines)
    budget.spend(len(text))
    return Sheets(text, len(metadata), hidden, rows, columns)
