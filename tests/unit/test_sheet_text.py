"""A workbook's cells become the same text whether built a column at a time (the fast path)
or a cell at a time: numbers as people typed them, dates in ISO form, empty cells empty."""

from __future__ import annotations

import datetime as dt
import io
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlp_addon.errors import ExtractError
from dlp_addon.extract import ooxml, spreadsheet, tables
from dlp_addon.extract.limits import Budget, Limits
from dlp_addon.extract.spreadsheet import _cell, _floats, _text

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=10**12).map(float),  # whole numbers: mobiles, IDs
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.integers(),
    st.dates(),
    st.datetimes(),
    st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=9)),
)
EDGES = [0.0, -0.0, 1e20, -1e20, math.nextafter(1e20, 0), -math.nextafter(1e20, 0), 2.0**63,
         -(2.0**63), math.nextafter(2.0**63, 0), 2.0**53 + 2, 1e16, 1e-5, 5e-324, math.inf,
         -math.inf, math.nan, 0.1, 260.99, 13800138000.0]  # fmt: skip
FLOATS = st.one_of(
    st.floats(),
    st.sampled_from(EDGES),
    st.integers(-(10**22), 10**22).map(float),  # whole, in and out of the range written as such
    st.integers(0, 10**7).map(lambda cents: cents / 100),  # prices
)


def _one_cell_at_a_time(rows: list[list[object]]) -> str:
    return "\n".join("\t".join(_cell(v) for v in row) for row in rows)


def _text_of_copy(rows: list[list[object]]) -> str:
    """``_text`` writes cells as text into the rows it is given: give it a copy."""
    return _text([list(row) for row in rows])


@given(st.integers(1, 4).flatmap(lambda w: st.lists(st.lists(CELLS, min_size=w, max_size=w))))
def test_columns_give_the_text_cells_give(rows: list[list[object]]) -> None:
    assert _text_of_copy(rows) == _one_cell_at_a_time(rows)


@given(st.lists(st.lists(st.floats() | st.integers(0, 10**11).map(float), min_size=3, max_size=3)))
def test_number_columns_give_the_text_cells_give(rows: list[list[object]]) -> None:
    assert _text_of_copy(rows) == _one_cell_at_a_time(rows)


@given(st.lists(FLOATS) | st.lists(st.sampled_from(EDGES)))
def test_floats_in_bulk_are_written_as_each_alone(values: list[float]) -> None:
    """Mostly distinct and much repeated runs alike (the second: each distinct value once)."""
    assert _floats(values) == [_cell(v) for v in values]


INTEGER_EDGES = [2**53, -(2**53), 2**53 + 1, -(2**53) - 1]  # exact as floats; one beyond is not
NUMBERS = {
    "numbers": FLOATS,
    "counts": st.integers(),
    "xls": FLOATS | st.integers(-(2**60), 2**60) | st.sampled_from(INTEGER_EDGES),
}


@st.composite
def _long_column(draw: st.DrawFn, n: int) -> list[object]:
    """A column of ``n`` cells as sheets have them: text, numbers under a header (repeating
    or not; an xls mixes integers and floats), text with a number somewhere a sample of rows
    may miss, or anything at all."""
    kind = draw(st.sampled_from(["text", "numbers", "counts", "xls", "rare", "mixed"]))
    header: list[object] = draw(st.lists(st.text(max_size=3), max_size=3))
    if kind == "text":
        return draw(st.lists(st.text(max_size=3), min_size=n, max_size=n))
    if kind in ("numbers", "counts", "xls"):
        pool = draw(st.lists(NUMBERS[kind], min_size=1))
        body = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
        return (header + body)[:n]
    column: list[object] = ["x"] * n
    if kind == "rare":
        column[draw(st.integers(0, n - 1))] = draw(CELLS)
        return column
    return draw(st.lists(CELLS, min_size=n, max_size=n))


@given(
    st.tuples(st.integers(1, 400), st.integers(1, 5)).flatmap(
        lambda shape: st.lists(_long_column(shape[0]), min_size=shape[1], max_size=shape[1])
    )
)
def test_long_sheets_give_the_text_cells_give(columns: list[list[object]]) -> None:
    """Sheets long enough that only a sample of rows tells which columns hold numbers."""
    rows = [list(row) for row in zip(*columns, strict=True)]
    assert _text_of_copy(rows) == _one_cell_at_a_time(rows)


def test_a_mobile_stored_as_a_number_reads_as_typed() -> None:
    assert _text([[13800138000.0, "王伟"], [1.2e19, "x"], [-0.0, ""]]) == (
        "13800138000\t王伟\n12000000000000000000\tx\n0\t"
    )


def test_ragged_rows_keep_their_own_length() -> None:
    assert _text([["a", 1.0], ["b"]]) == "a\t1\nb"


def _workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


SHEETS: dict[str, list[list[object]]] = {
    "一": [["品名", "单价"], ["拉杆箱", 199.5]],
    "二": [["数量"], [3.0], [4.0]],
    "三": [["备注", "x"], ["无", 1e-05]],
}


def test_every_sheet_is_read_in_order() -> None:
    """Every sheet, in order, its numbers written as typed."""
    sheets = spreadsheet.read(_workbook(SHEETS), Budget(Limits()))
    assert sheets.text == "品名\t单价\n拉杆箱\t199.5\n数量\n3\n4\n备注\tx\n无\t1e-05"
    assert sheets.names == "一\n二\n三"
    assert (sheets.sheets, sheets.rows, sheets.columns) == (3, 7, 2)


@pytest.mark.parametrize("max_cells", [3, 6, 10])
def test_a_workbook_past_the_cell_limit_is_too_large(max_cells: int) -> None:
    """The limit holds whichever sheet passes it (the first, the second, the last)."""
    with pytest.raises(ExtractError) as e:
        spreadsheet.read(_workbook(SHEETS), Budget(Limits(max_cells=max_cells)))
    assert e.value.reason == "too_large"
    assert spreadsheet.read(_workbook(SHEETS), Budget(Limits(max_cells=11))).rows == 7


LENGTHS = [(1,), (63,), (64,), (65,), (128,), (3, 64), (64, 64), (200, 4)]  # rows a sheet


@pytest.mark.parametrize("chars", [300, 1000])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_a_preview_is_the_texts_beginning_in_whole_rows(
    monkeypatch: pytest.MonkeyPatch, chars: int, lengths: tuple[int, ...]
) -> None:
    """Sheets of about the preview's first 64 rows: it is cut at a row's end, and the whole
    text is what it is without a preview."""
    monkeypatch.setattr(spreadsheet, "PREVIEW_CHARS", chars)
    sheets = {f"s{k}": [[f"r{i}", i / 4] for i in range(n)] for k, n in enumerate(lengths)}
    data = _workbook(sheets)
    previews: list[spreadsheet.Preview] = []
    whole = spreadsheet.read(data, Budget(Limits()), previews.append)
    assert whole == spreadsheet.read(data, Budget(Limits()))
    assert len(previews) == (len(whole.text) >= chars)
    for preview in previews:
        assert whole.text.startswith(preview.text) and len(preview.text) >= chars
        assert whole.text[len(preview.text) : len(preview.text) + 1] in ("\n", "")
        assert (preview.sheets, preview.rows, preview.columns) == (
            whole.sheets,
            whole.rows,
            whole.columns,
        )


LINE_PIECES = st.sampled_from(
    ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "a", ","]
)


@given(st.lists(LINE_PIECES, max_size=80).map("".join))
def test_a_csv_is_told_by_its_first_twenty_lines_as_splitlines_gives_them(text: str) -> None:
    """Only the head of a long text is split to tell CSV from text: the same lines."""
    match = tables._TWENTIETH_LINE.match(text)
    head = text[: match.end()] if match else text
    assert head.splitlines()[:20] == text.splitlines()[:20]


@given(st.lists(st.sampled_from([b"<", b">", b"/", b":", b"f", b"x", b"</f>"]), max_size=16))
def test_formulas_are_looked_for_as_before(pieces: list[bytes]) -> None:
    """One pass for ``f>`` finds a formula's end tag exactly when ``</f>`` or ``:f>`` is there."""
    xml = b"".join(pieces)
    assert ooxml._has_formula(xml) == (b"</f>" in xml or b":f>" in xml)
