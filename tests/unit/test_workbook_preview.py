"""A long workbook's first rows come ahead of the rest of its text: when they already make a
rule block, the upload is answered and the reader stopped; otherwise the whole text is read
and scanned as before, the preview dropped."""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import time

import pytest
from openpyxl import Workbook

from dlp_addon.decide import load_policy
from dlp_addon.detect import offsets
from dlp_addon.detect.findings import Finding
from dlp_addon.errors import ExtractError
from dlp_addon.extract import HttpInput, extract_http, sandbox, spreadsheet
from dlp_addon.extract.extraction import Extraction
from dlp_addon.pipeline import _sure, inspect_http
from tests.lazy_extraction import texts, whole
from tests.synth import customer_records

BOUNDARY = "----dlptestPreview"
CUSTOMERS = [
    (r["name"], r["id"], r["mobile"], r["address"]) for r in customer_records(3000, seed=31)
]
CATALOGUE = [
    (f"拉杆箱 {20 + i % 9}寸", f"SKU-LX{i:06d}", "黑色", 199.5 + i % 700) for i in range(4000)
]


def _xlsx(*sheets: list[tuple[object, ...]]) -> bytes:
    wb = Workbook(write_only=True)
    for k, rows in enumerate(sheets):
        ws = wb.create_sheet(f"表{k + 1}")
        for row in rows:
            ws.append(list(row))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _upload(data: bytes) -> HttpInput:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.xlsx"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return HttpInput(
        "POST", "/upload", {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, body
    )


@pytest.fixture(autouse=True, scope="module")
def forked_reader() -> None:
    sandbox.prefer_fork()  # as an inspection process reads workbooks


def _no_reader_at_work() -> bool:
    """Every reader still running is one waiting for a workbook (within 5 s)."""
    deadline = time.monotonic() + 5
    while {p.pid for p in multiprocessing.active_children()} - set(sandbox.idle()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_blocked_workbook_is_answered_from_its_first_rows_and_its_reader_stopped() -> None:
    data = _xlsx(CUSTOMERS)
    verdict = inspect_http(load_policy(), _upload(data), "taobao-tmall").verdict
    assert verdict.blocks and verdict.rule == "bulk-resident-id" and not verdict.complete
    assert 5 <= verdict.counts["cn_resident_id"] < len(CUSTOMERS)
    assert _no_reader_at_work()


def test_the_files_entry_gives_the_whole_shape() -> None:
    lazy = extract_http(_upload(_xlsx(CATALOGUE, CUSTOMERS)), lazy=True)
    try:
        assert lazy.rest is not None and len(lazy.previews) == 1
        (sheet,) = [a for a in lazy.attachments if a.kind == "xlsx"]
        assert (sheet.sheets, sheet.rows, sheet.columns) == (2, len(CATALOGUE) + len(CUSTOMERS), 4)
    finally:
        assert lazy.discard is not None
        lazy.discard()


@pytest.mark.parametrize(
    "sheets",
    [
        (CATALOGUE,),
        (CATALOGUE[:3], CUSTOMERS),  # a short first sheet: the preview takes the next's rows
        (CUSTOMERS[:5],),  # short: no preview at all
    ],
    ids=["one long sheet", "short sheet first", "short workbook"],
)
def test_the_rest_reads_what_an_eager_extraction_reads(
    sheets: tuple[list[tuple[object, ...]], ...],
) -> None:
    data = _xlsx(*sheets)
    eager = extract_http(_upload(data))
    lazy = extract_http(_upload(data), lazy=True)
    if len(sheets) == 1 and len(sheets[0]) < 100:
        assert lazy.rest is None and not lazy.previews
    else:
        (preview,) = lazy.previews
        (sheet_text,) = [t for loc, t in eager.parts if loc.rsplit("#", 1)[0].endswith(":xlsx")]
        text = dict(lazy.parts)[preview]
        assert sheet_text.startswith(text) and len(text) >= spreadsheet.PREVIEW_CHARS
        assert sheet_text[len(text)] == "\n"  # whole rows
    done = whole(lazy)
    assert not done.previews
    assert texts(done) == texts(eager)
    assert done.attachments == eager.attachments


def test_customers_after_a_long_benign_sheet_are_read_to_the_end() -> None:
    data = _xlsx(CATALOGUE, CUSTOMERS[:50])
    verdict = inspect_http(load_policy(), _upload(data), "taobao-tmall").verdict
    assert verdict.blocks and verdict.rule == "bulk-resident-id"
    assert verdict.counts["cn_resident_id"] == 50
    off = dataclasses.replace(load_policy(), early_verdict=False)
    same = inspect_http(off, _upload(data), "taobao-tmall").verdict
    assert same.counts == verdict.counts and same.records == verdict.records


def test_findings_near_a_previews_end_wait_for_the_whole_text() -> None:
    text = "x" * 500
    extraction = Extraction((("p#0", text), ("q#1", text)), previews=frozenset({"p#0"}))

    def at(location: str, end: int) -> Finding:
        return Finding("cn_mobile", "k", "138****0000", location, 0, "high", end - 11, end)

    found = [at("p#0", 100), at("p#0", 450), at("q#1", 500)]
    assert _sure(found, extraction, margin=100) == [found[0], found[2]]


def _sending(send: object) -> str:
    assert callable(send)
    send("first rows")
    send(sandbox.Bulk("utf-8", b"more rows"))
    return "all rows"


def _answering(send: object) -> str:
    return "all rows"


def _failing(send: object) -> str:
    assert callable(send)
    send("first rows")
    raise ExtractError("corrupt")


def test_a_reader_sends_items_ahead_of_its_answer() -> None:
    with sandbox.Pending(_sending, (), None, items=True) as pending:
        first, more = pending.items()
        assert first == "first rows" and more == ("utf-8", b"more rows")
        assert pending.result() == "all rows"
    with sandbox.Pending(_answering, (), None, items=True) as pending:
        assert list(pending.items()) == []
        assert pending.result() == "all rows"
    with sandbox.Pending(_sending, (), None, items=True) as pending:
        assert pending.result() == "all rows"  # items nobody asked for are skipped
    with sandbox.Pending(_failing, (), None, items=True) as pending:
        items = pending.items()
        assert next(items) == "first rows"
        with pytest.raises(ExtractError):
            next(items)


def test_customers_in_the_middle_stop_the_rest_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Benign rows first (past the preview), customers in the middle: the scan of the rows as
    they come blocks on the customers' first chunks, the counts marked as lower bounds, and
    the reader is stopped; with the early verdict off, every customer is counted."""
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 20_000)
    monkeypatch.setattr(offsets, "_FIRST_CHUNK_CHARS", 20_000)
    data = _xlsx(CATALOGUE, CUSTOMERS, CATALOGUE * 5)
    verdict = inspect_http(load_policy(), _upload(data), "taobao-tmall").verdict
    assert verdict.blocks and verdict.rule == "bulk-resident-id" and not verdict.complete
    assert 5 <= verdict.counts["cn_resident_id"] < len(CUSTOMERS)
    assert _no_reader_at_work()
    off = dataclasses.replace(load_policy(), early_verdict=False)
    counts = inspect_http(off, _upload(data), "taobao-tmall").verdict.counts
    assert counts["cn_resident_id"] == len(CUSTOMERS)
