"""A workbook's cells become the same text whether built in C (``_sheettext``, the fast path)
or a cell at a time (its twin): numbers as people typed them, dates in ISO form, empty cells
empty, text of any width as it is."""

from __future__ import annotations

import datetime as dt
import io
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlp_addon.errors import ExtractError
from dlp_addon.extract import _sheettext, ooxml, spreadsheet, tables
from dlp_addon.extract.limits import Budget, Limits
from dlp_addon.extract.spreadsheet import _cell, _text, _text_py

# Text in every width a str can have: ASCII, Latin-1, Chinese, beyond the BMP (and lone
# surrogates, which a str may hold).
TEXT = st.text(max_size=8) | st.sampled_from(["", "é", "王伟", "𠀋", "\ud800", "a\tb", "1\n2"])
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=10**12).map(float),  # whole numbers: mobiles, IDs
    TEXT,
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


def test_the_c_writer_is_built() -> None:
    assert spreadsheet._sheettext is not None, "scripts/setup builds extract/_sheettext.c"


@given(st.lists(st.lists(CELLS, max_size=5)))
def test_rows_of_any_cells_give_the_text_cells_give(rows: list[list[object]]) -> None:
    assert _text(rows) == _text_py(rows) == _one_cell_at_a_time(rows)


@given(st.lists(FLOATS | st.sampled_from(EDGES)))
def test_floats_are_written_as_each_alone(values: list[float]) -> None:
    assert _text([[v] for v in values]) == _one_cell_at_a_time([[v] for v in values])


INTEGER_EDGES = [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**53 + 1, 10**30, -(10**30)]


@given(st.lists(st.integers() | st.sampled_from(INTEGER_EDGES) | st.booleans() | st.none()))
def test_integers_and_flags_are_written_as_str_writes_them(values: list[object]) -> None:
    assert _text([values]) == "\t".join(map(_cell, values))


@given(st.lists(st.lists(TEXT, min_size=1, max_size=3), min_size=1))
def test_text_of_every_width_is_kept_as_it_is(rows: list[list[object]]) -> None:
    """...and in the narrowest width that holds it, as any str is: the size in memory of the
    same characters put together afresh (one character may be a cached object: not compared)."""
    out, expected = _text(rows), _one_cell_at_a_time(rows)
    assert out == expected
    assert out.isascii() == expected.isascii()
    assert len(out) < 2 or sys.getsizeof(out) == sys.getsizeof(out[:1] + out[1:])


def test_a_row_may_be_empty_and_a_sheet_may_have_no_rows() -> None:
    assert _text([]) == ""
    assert _text([[]]) == ""
    assert _text([["a"], [], ["b", 1.5]]) == "a\n\nb\t1.5"


def test_a_cell_the_writer_does_not_know_is_written_by_the_fallback() -> None:
    when = dt.datetime(2024, 5, 1, 8, 30)
    assert _text([[when, dt.date(2024, 5, 1), dt.timedelta(hours=1)]]) == (
        "2024-05-01T08:30:00\t2024-05-01\t1:00:00"
    )
    with pytest.raises(TypeError):
        _sheettext.text([[object()]], lambda value: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(ZeroDivisionError):
        _sheettext.text([["a", object()]], lambda value: 1 / 0)  # type: ignore[arg-type]


def test_a_fallback_that_empties_the_rows_cannot_crash_the_writer() -> None:
    """The writer holds what it reads: rows changed under it give some text, never a crash."""
    rows: list[list[object]] = [["x" * 50, object(), "y" * 50], [object(), "z"]]

    def clear(value: object) -> str:
        for row in rows:
            row.clear()
        rows.clear()
        return "cleared"

    assert _sheettext.text(rows, clear) == "x" * 50 + "\tcleared"


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


LENGTHS = [(1,), (63,), (64,), (65,), (128,), (3, 64), (64, 64), (200, 4), (0, 5, 0), (0,)]


@pytest.mark.parametrize(("chars", "piece"), [(300, 200), (1000, 5000), (1 << 16, 1 << 18)])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_the_pieces_are_the_text_in_whole_rows_the_first_reaching_the_preview(
    monkeypatch: pytest.MonkeyPatch, chars: int, piece: int, lengths: tuple[int, ...]
) -> None:
    """Sheets of about the first 64 rows' length, empty ones among them: joined, the pieces
    are the text; each ends at a row's end; the first ones reach the preview's length as soon
    as they can, and the shape comes before them all."""
    monkeypatch.setattr(spreadsheet, "PREVIEW_CHARS", chars)
    monkeypatch.setattr(spreadsheet, "PIECE_CHARS", piece)
    sheets = {f"s{k}": [[f"r{i}", i / 4] for i in range(n)] for k, n in enumerate(lengths)}
    data = _workbook(sheets)
    shape, *pieces = spreadsheet.pieces(data, Budget(Limits()))
    whole = "\n".join(
        "\n".join(f"r{i}\t{spreadsheet._cell(i / 4)}" for i in range(n)) for n in lengths
    )
    assert isinstance(shape, spreadsheet.Shape)
    columns = 2 if sum(lengths) else 0
    assert (shape.sheets, shape.rows, shape.columns) == (len(lengths), sum(lengths), columns)
    assert all(isinstance(p, str) for p in pieces) and "".join(pieces) == whole
    at = 0
    for k, p in enumerate(pieces):
        at += len(p)
        assert whole[at : at + 1] in ("\n", "")  # whole rows
        assert k == 0 or p.startswith("\n")
    reached = next((k for k in range(len(pieces)) if len("".join(pieces[: k + 1])) >= chars), None)
    if reached is not None:  # no more rows than needed: the last piece before it is short
        assert len("".join(pieces[:reached])) < chars
    assert spreadsheet.read(data, Budget(Limits())).text == whole


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
