"""What an xls carries besides its cells (``biff``): the compiled record walk
(``_biffwalk.select``) equals its Python twin on any stream, well formed or not; the comments,
formulas and names are read without it too; a compound file whose header or sizes would make
olefile read far more than the file holds is refused before it is read (it runs in the
proxy's process); its text is charged to the budget, and the cells' error comes first. A long
xls whose first rows come ahead (the preview) has its other streams read with the rest of its
text, unless the first rows already block it."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.errors import ExtractError
from dlp_addon.extract import _biffwalk, biff, files, spreadsheet
from dlp_addon.extract.limits import Budget, Limits
from tests import carrier_files as C
from tests import files as F
from tests.unit.test_carrier_gaps import LINES, _blocked
from tests.unit.test_files_extract import inspect, upload

FORMULA, NAME, CONTINUE, TXO, BOF = 0x0006, 0x0018, 0x003C, 0x01B6, 0x0809
# The types the walk picks or follows, often, and others.
TYPES = st.sampled_from([FORMULA, NAME, CONTINUE, CONTINUE, TXO, TXO, BOF, 0x00FD, 0x0000, 0xFFFF])


def record(rtype: int, body: bytes, size: int | None = None) -> bytes:
    return struct.pack("<HH", rtype, len(body) if size is None else size) + body


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.tuples(TYPES, st.binary(max_size=40)), max_size=30),
    st.integers(0, 2000),
    st.binary(max_size=8),
)
def test_the_c_walk_equals_its_python_twin(
    records: list[tuple[int, bytes]], cut: int, tail: bytes
) -> None:
    """Chains of records, cut anywhere (in a header, in a body) and followed by stray bytes
    (a last header whose size runs past the end)."""
    stream = b"".join(record(t, b) for t, b in records)
    for data in (stream, stream[:cut], stream[:cut] + tail):
        assert _biffwalk.select(data) == biff._select_py(data)


MALFORMED = {
    "empty": b"",
    "a partial header": b"\x06\x00\x10",
    "a size past the end": record(FORMULA, b"\x01\x00abc", size=0xFFFF),
    "a comment's text past the end": record(TXO, bytes(18)) + record(CONTINUE, b"\x00ab", 9),
    "a BOF past the end, then nothing": record(BOF, b"", size=40) + record(FORMULA, bytes(30)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_streams_are_walked_within_their_bounds(case: str) -> None:
    data = MALFORMED[case]
    assert _biffwalk.select(data) == biff._select_py(data)


def test_the_walk_picks_formulas_names_and_comment_text_by_substream() -> None:
    stream = (
        record(BOF, bytes(16))
        + record(NAME, b"name")
        + record(CONTINUE, b"not after a comment")
        + record(BOF, bytes(16))
        + record(FORMULA, b"f")
        + record(TXO, bytes(18))
        + record(CONTINUE, b"\x00text")
        + record(CONTINUE, b"\x00runs")
        + record(0x00FD, bytes(10))
        + record(CONTINUE, b"after a cell")
        + record(NAME, b"cut", size=100)
    )
    expected = [
        (NAME, 1, b"name"),
        (FORMULA, 2, b"f"),
        (CONTINUE, 2, b"\x00text"),
        (CONTINUE, 2, b"\x00runs"),
        (NAME, 2, b"cut"),
    ]
    assert _biffwalk.select(stream) == biff._select_py(stream) == expected


def test_the_python_walk_reads_an_xls_as_the_c_walk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the compiled walk (``_biffwalk`` not built) formulas, comments and names are
    still read: the upload is blocked for the records they hold."""
    data = C.xls_with(LINES, formulas=True, comments=True, names=True)
    compiled = biff.extras(data)
    monkeypatch.setattr(biff, "_select", biff._select_py)
    assert biff.extras(data) == compiled
    _blocked(inspect(upload("价目表.xls", C.xls_with(LINES, comments=True))))


def _with(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def _looping_stream(data: bytes, size: int) -> bytes:
    """``data`` whose Workbook stream declares ``size`` bytes and whose first sector's FAT
    entry points back to itself: olefile would read that one sector until ``size``."""
    entry = data.index("Workbook".encode("utf-16-le"))
    (start,) = struct.unpack_from("<I", data, entry + 116)
    (fat,) = struct.unpack_from("<I", data, 76)
    return _with(_with(data, entry + 120, "<I", size), (fat + 1) * 512 + 4 * start, "<I", start)


def _many_fat_sectors(data: bytes, difat: int) -> bytes:
    """``data`` whose header declares a FAT ``difat`` DIFAT sectors long, each listing the real
    FAT sector 127 times and chaining to itself: olefile would concatenate 127 * ``difat``
    copies of it, one at a time."""
    (fat,) = struct.unpack_from("<I", data, 76)
    sector = len(data) // 512 - 1  # appended below
    listing = struct.pack("<128I", *([fat] * 127), sector)
    out = _with(data, 44, "<I", 109 + 127 * difat)
    out = _with(out, 68, "<II", sector, difat)
    return out + listing


CRAFTED = {
    "a stream larger than the file (a looping chain)": lambda d: _looping_stream(d, 64 << 20),
    "a FAT far larger than the file needs": lambda d: _many_fat_sectors(d, 20),
    "mini sectors of 1 byte": lambda d: _with(d, 32, "<H", 0),
    "a mini stream cutoff of 4 GiB": lambda d: _with(d, 56, "<I", 0xFFFFFFFF),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_compound_file_out_of_proportion_is_refused_before_it_is_read(case: str) -> None:
    """In the proxy's process olefile's work stays in proportion to the file: these are
    ``corrupt`` (unscannable), at a few times the file's size in memory."""
    data = CRAFTED[case](C.xls_with(LINES, comments=True))
    tracemalloc.start()
    try:
        with pytest.raises(ExtractError) as raised:
            biff.extras(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raised.value.reason == "corrupt"
    assert peak < 1 << 20


def test_an_xls_comments_count_against_the_decoding_budget() -> None:
    """The cells fit the budget, the cells and the comments do not: too large, as when the
    child charged them."""
    data = C.xls_with(LINES * 50, comments=True)
    cells = spreadsheet.read(data, Budget(Limits()))
    used = len(cells.text) + len(biff.extras(data))
    walker = files.Walker(Limits(max_decoded_bytes=used - 1))
    with pytest.raises(ExtractError) as raised:
        walker.blob("upload", data, None, file=True)
    assert raised.value.reason == "too_large"
    files.Walker(Limits(max_decoded_bytes=used)).blob("upload", data, None, file=True)


def _too_many_entries(data: bytes) -> str:
    raise ExtractError("too_many_entries")


def test_the_cells_error_comes_before_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """An xls whose cells cannot be read is ``corrupt`` whatever its other streams say; one
    whose cells are read is unscannable for its streams' reason."""
    monkeypatch.setattr(biff, "extras", _too_many_entries)
    data = C.xls_with(LINES, comments=True)
    verdict = inspect(upload("a.xls", data[:-100])).verdict
    assert verdict.blocks and verdict.reason == "unscannable:corrupt", verdict.reason
    verdict = inspect(upload("a.xls", data)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_many_entries", verdict.reason


def test_a_long_xls_comments_are_read_after_its_first_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long price list (its first rows come ahead and do not block) hides customers in
    comments: they are read with the rest of the text, and the upload is blocked; an error of
    its streams is its verdict."""
    data = C.xls_with(LINES, comments=True, products=4000)
    assert len(spreadsheet.read(data, Budget(Limits())).text) > spreadsheet.PREVIEW_CHARS
    _blocked(inspect(upload("价目表.xls", data)))
    monkeypatch.setattr(biff, "extras", _too_many_entries)
    verdict = inspect(upload("价目表.xls", data)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_many_entries", verdict.reason


def test_a_long_xls_blocked_by_its_first_rows_is_not_read_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[bytes] = []
    monkeypatch.setattr(biff, "extras", lambda data: read.append(data) or "")
    verdict = inspect(upload("客户.xls", F.xls(F.customer_rows(3000, seed=5)))).verdict
    assert verdict.blocks and verdict.rule == "bulk-resident-id" and not verdict.complete
    assert read == []
