"""Rows of a customer export, one at a time: CSV (any encoding Python knows; Excel's Chinese
exports are often GB18030) or a workbook (xlsx, xls, ods: its first sheet, or the one named).
Each row comes with its line number in the file (its row number in a sheet), for the report of
rejected rows."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from python_calamine import CalamineError, CalamineWorkbook

from dlp_addon.edm.index import EdmError
from dlp_addon.extract.spreadsheet import _cell

WORKBOOKS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".et")


class Source:
    """A CSV file or a workbook sheet: its header row and an iterator over the rest."""

    def __init__(self, path: Path, *, encoding: str = "utf-8-sig", sheet: str | None = None):
        self.path = path
        self._rows = _workbook(path, sheet) if path.suffix.lower() in WORKBOOKS else None
        if self._rows is None:
            self._rows = _csv(path, encoding)
        first = next(self._rows, None)
        if first is None:
            raise EdmError(f"{path}: empty, no header row")
        self.header = [c.strip() for c in first[1]]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        assert self._rows is not None
        return self._rows


def _csv(path: Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    try:
        f = path.open(encoding=encoding, newline="")
    except (OSError, LookupError) as e:
        raise EdmError(f"{path}: {e}") from e
    return _csv_rows(f, path, encoding)


def _csv_rows(f: TextIO, path: Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    with f:
        reader = csv.reader(f)
        line = 1
        try:
            for row in reader:
                if row:
                    yield line, row
                line = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise EdmError(
                f"{path}: line {line} is not {encoding} (Excel's Chinese CSV exports are often "
                "GB18030: --encoding gb18030)"
            ) from e
        except csv.Error as e:
            raise EdmError(f"{path}: line {line}: {e}") from e


def _workbook(path: Path, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    try:
        book = CalamineWorkbook.from_path(str(path))
        page = book.get_sheet_by_name(sheet) if sheet else book.get_sheet_by_index(0)
    except (CalamineError, ValueError, OSError) as e:
        raise EdmError(f"{path}: cannot read the workbook ({type(e).__name__})") from e
    return _sheet_rows(page)


def _sheet_rows(page: Any) -> Iterator[tuple[int, list[str]]]:
    for n, row in enumerate(page.iter_rows(), start=1):
        cells = [_cell(v) for v in row]
        if any(cells):
            yield n, cells
