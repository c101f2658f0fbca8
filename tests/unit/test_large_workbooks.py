"""Large workbooks and the decoded-bytes budget: the parts holding a workbook's cells (an ods
``content.xml``, an xlsx's sheets and shared strings) are searched a piece of rows at a time
and their cells charged once, as the cell reader's text. A 100,000-row ods and a 200,000-row
xlsx were blocked as ``too_large`` when the package reader charged the same cells a second
time, as XML; now they pass (and a customer ods is blocked for its records), while XML
bombs are still refused and what hides in the cells' parts (comments, names, formulas) is
found wherever the pieces are cut.

The files are written directly (odfpy and openpyxl take minutes for 100,000 rows), once per
module. Inspections get a generous deadline: the machine running the tests may be loaded,
and speed is measured in bench/, not here.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import random
import time
import zipfile
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.decide.policy import Policy
from dlp_addon.decide.verdict import Verdict
from dlp_addon.extract import archive, odf, ooxml
from dlp_addon.extract.limits import Budget, Limits, MiB
from dlp_addon.pipeline import inspect_http
from tests.synth import customer_records
from tests.unit.test_files_extract import upload

POLICY = load_policy()
Cell = str | int | float

_ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"
_ODS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" office:version="1.2">'
    '<office:body><office:spreadsheet><table:table table:name="Sheet1">'
)
_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
    '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{_ODS_MIME}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"


def _verdict(data: bytes, name: str, policy: Policy = POLICY) -> Verdict:
    req = upload(name, data)
    return inspect_http(policy, req, "jd", deadline=time.monotonic() + 120).verdict


# --- files --------------------------------------------------------------------------------------


_PRODUCTS = ("拉杆箱", "登机箱", "旅行背包", "收纳袋")


def catalogue(n: int, seed: int = 3) -> list[list[Cell]]:
    """A shop's product list: nothing personal (13-digit barcodes, SKUs, prices)."""
    rng = random.Random(seed)
    rows: list[list[Cell]] = [["品名", "货号", "颜色", "单价（元）", "库存", "条码"]]
    for i in range(n):
        rows.append(
            [
                f"{rng.choice(_PRODUCTS)} {rng.choice((20, 24))}寸",
                f"SKU-LX{2019 + i % 7}-{i:06d}",
                rng.choice(("黑色", "白色", "藏青色", "玫瑰金")),
                rng.randrange(19, 1999) + rng.choice((0.0, 0.5, 0.9)),
                rng.randrange(0, 500),
                f"69{rng.randrange(10**10, 10**11)}",
            ]
        )
    return rows


def customers(n: int, seed: int = 5) -> list[list[Cell]]:
    """A shop's member list: every row a customer record."""
    rng = random.Random(seed)
    rows: list[list[Cell]] = [["姓名", "身份证号", "手机号码", "住址", "会员等级", "累计消费"]]
    for r in customer_records(n, seed):
        level, spent = rng.choice(("普通会员", "银卡", "金卡")), round(rng.uniform(0, 20000), 2)
        rows.append([r["name"], r["id"], r["mobile"], r["address"], level, spent])
    return rows


def ods_cell(value: Cell, extra: str = "") -> str:
    if isinstance(value, str):
        return (
            f'<table:table-cell office:value-type="string"{extra}>'
            f"<text:p>{escape(value)}</text:p></table:table-cell>"
        )
    return (
        f'<table:table-cell office:value-type="float" office:value="{value}"{extra}>'
        f"<text:p>{value}</text:p></table:table-cell>"
    )


def ods_rows(rows: Sequence[Sequence[Cell]]) -> str:
    return "".join(
        "<table:table-row>" + "".join(map(ods_cell, row)) + "</table:table-row>" for row in rows
    )


def ods(body: str, after: str = "", level: int = 6) -> bytes:
    """An ods whose sheet holds ``body`` (rows) and whose spreadsheet ends with ``after``."""
    content = (
        _ODS_HEAD + body + "</table:table>" + after + "</office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", _ODS_MIME, compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", _MANIFEST, zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, zipfile.ZIP_DEFLATED, level)
    return buf.getvalue()


def xlsx_rows(rows: Sequence[Sequence[Cell]], shared: dict[str, int]) -> str:
    """Rows as Excel writes them: text in the shared strings, numbers in place."""
    out = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(value, str):
                index = shared.setdefault(value, len(shared))
                cells.append(f'<c r="{ref}" t="s"><v>{index}</v></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        out.append(f'<row r="{r}">{"".join(cells)}</row>')
    return "".join(out)


def xlsx(sheet: str, shared: Sequence[str] = (), level: int = 6) -> bytes:
    """An xlsx of one sheet whose ``<sheetData>`` holds ``sheet`` (rows)."""
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/'
            'officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/'
            'worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" '
            f'Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
        ),
        "xl/sharedStrings.xml": (
            f'<sst xmlns="{_MAIN}">'
            + "".join(f"<si><t>{escape(s)}</t></si>" for s in shared)
            + "</sst>"
        ),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{_MAIN}"><sheetData>{sheet}</sheetData></worksheet>'
        ),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in parts.items():
            zf.writestr(name, text, zipfile.ZIP_DEFLATED, level)
    return buf.getvalue()


def xlsx_of(rows: Sequence[Sequence[Cell]]) -> bytes:
    shared: dict[str, int] = {}
    sheet = xlsx_rows(rows, shared)
    return xlsx(sheet, list(shared))


@functools.cache
def catalogue_ods() -> bytes:
    return ods(ods_rows(catalogue(100_000)))


@functools.cache
def catalogue_xlsx() -> bytes:
    return xlsx_of(catalogue(200_000))


@functools.cache
def customers_ods() -> bytes:
    return ods(ods_rows(customers(100_000)))


# --- large benign and customer workbooks -------------------------------------------------------


def test_a_100000_row_catalogue_ods_passes() -> None:
    verdict = _verdict(catalogue_ods(), "价目表.ods")
    assert not verdict.blocks and not verdict.unscannable, verdict.reason
    assert verdict.rule == "spreadsheet-attachment" and verdict.files[0]["rows"] == 100_001


def test_a_200000_row_catalogue_xlsx_passes() -> None:
    verdict = _verdict(catalogue_xlsx(), "价目表.xlsx")
    assert not verdict.blocks and not verdict.unscannable, verdict.reason
    assert verdict.rule == "spreadsheet-attachment" and verdict.files[0]["rows"] == 200_001


def test_a_100000_row_customer_ods_is_blocked_for_its_records() -> None:
    verdict = _verdict(customers_ods(), "客户.ods")
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert not verdict.unscannable
    assert verdict.rule == "bulk-resident-id" and verdict.records >= 900


# --- bombs --------------------------------------------------------------------------------------


def _filler(n: int, seed: int = 1) -> str:
    """``n`` letters, mostly ``a``: they deflate about 9 to 1, under the ratio limit."""
    table = bytes(97 if i < 240 else 98 for i in range(256))
    return random.Random(seed).randbytes(n).translate(table).decode()


def _long_row_ods(nbytes: int) -> bytes:
    """One sheet row of ``nbytes`` of markup (an attribute no reader shows) around a few
    cells: XML that cannot be cut into rows before its end."""
    cells = "".join(
        ods_cell(i, f' table:style-name="{_filler(100_000, i)}"') for i in range(nbytes // 100_000)
    )
    return ods(f"<table:table-row>{cells}</table:table-row>", level=1)


def _long_row_xlsx(nbytes: int) -> bytes:
    cells = "".join(
        f'<c r="A1" x="{_filler(100_000, i)}"><v>{i}</v></c>' for i in range(nbytes // 100_000)
    )
    return xlsx(f'<row r="1">{cells}</row>', level=1)


_ROW = f"<table:table-row>{ods_cell('x')}</table:table-row>"
_BOMBS = {  # case: (file, name, reason)
    "ods content.xml over the ratio": (
        lambda: ods(_ROW * 300_000, level=9),
        "a.ods",
        "zip_bomb",
    ),
    "xlsx sheet over the ratio": (
        lambda: xlsx('<row r="1"><c r="A1"><v>1</v></c></row>' * 800_000, level=9),
        "a.xlsx",
        "zip_bomb",
    ),
    "xlsx shared strings over the ratio": (
        lambda: xlsx('<row r="1"><c r="A1" t="s"><v>0</v></c></row>', ["x"] * 2_000_000, 9),
        "a.xlsx",
        "zip_bomb",
    ),
    "ods row longer than the budget": (lambda: _long_row_ods(70 * MiB), "a.ods", "too_large"),
    "xlsx row longer than the budget": (lambda: _long_row_xlsx(70 * MiB), "a.xlsx", "too_large"),
}


@pytest.mark.parametrize("case", _BOMBS)
def test_bombs_in_the_cells_parts_are_refused(case: str) -> None:
    build, name, reason = _BOMBS[case]
    verdict = _verdict(build(), name)
    assert verdict.blocks and verdict.unscannable == (reason,), verdict.reason


def _markup_ods(rows: int) -> bytes:
    """``rows`` rows of one number each, every cell carrying 3,000 bytes of markup."""
    return ods(
        "".join(
            f"<table:table-row>{ods_cell(i, f' table:style-name={quoteattr(_filler(3000, i))}')}"
            "</table:table-row>"
            for i in range(rows)
        )
    )


def test_cells_xml_beyond_what_the_cells_allow_is_too_large() -> None:
    """The cells' XML may be their text plus 200 bytes of markup for each cell the limits
    allow (~1 GB with the shipped limits; scaled down here): beyond that it is refused, even
    when the cell reader would take its few cells."""
    limits = Limits(max_decoded_bytes=2 * MiB, max_cells=10_000)  # XML up to ~4.1 MB
    policy = dataclasses.replace(POLICY, limits=limits)
    small = _verdict(_markup_ods(1000), "a.ods", policy)  # 3 MB of XML
    assert not small.blocks and not small.unscannable, small.reason
    large = _verdict(_markup_ods(2000), "a.ods", policy)  # 6 MB
    assert large.blocks and large.unscannable == ("too_large",), large.reason


# --- what hides in the cells' parts, wherever they are cut ---------------------------------------

HIDDEN = customer_records(20, seed=11)


def _comment(line: str, cdata: bool = False) -> str:
    trick = "<text:p><![CDATA[</table:table-row>]]></text:p>" if cdata else ""
    return (
        "<table:table-cell><office:annotation><dc:creator>客服</dc:creator>"
        f"{trick}<text:p>{escape(line)}</text:p></office:annotation></table:table-cell>"
    )


def _formula_ods_cells(r: dict[str, str]) -> str:
    return "".join(
        f"<table:table-cell table:formula={quoteattr(f'of:="{v}"')}/>"
        for v in (r["id"], r["mobile"])
    )


def hidden_ods(rows: int) -> bytes:
    """A catalogue of ``rows`` rows with 7 customers in cell comments (one behind a row end
    in CDATA, each followed by an ``annotation-end``), 7 in formulas saved without a value,
    spread over the sheet, and 6 in named expressions after it."""
    body = catalogue(rows)
    lines = [f"{r['name']} {r['id']} {r['mobile']} {r['address']}" for r in HIDDEN]
    out = []
    for i, row in enumerate(body):
        cells = "".join(map(ods_cell, row))
        k, at = divmod(i, rows // 14 or 1)
        if at == 1 and k < 7:
            cells += _comment(lines[k], cdata=k == 3)
        elif at == 2 and k < 7:  # where a comment's range ends (not a comment of its own)
            cells += '<table:table-cell><office:annotation-end office:name="n"/></table:table-cell>'
        elif at == 1 and k < 14:
            cells += _formula_ods_cells(HIDDEN[k])
        out.append(f"<table:table-row>{cells}</table:table-row>")
    named = "".join(
        f'<table:named-expression table:name="客户{i}" '
        f"table:expression={quoteattr(f'of:="{r["id"]} {r["mobile"]}"')}/>"
        for i, r in enumerate(HIDDEN[14:])
    )
    return ods("".join(out), f"<table:named-expressions>{named}</table:named-expressions>")


def hidden_xlsx(rows: int) -> bytes:
    """A catalogue of ``rows`` rows with 20 customers in formulas saved without a value."""
    shared: dict[str, int] = {}
    sheet = xlsx_rows(catalogue(rows), shared).split("</row>")
    step = len(sheet) // 21
    for k, r in enumerate(HIDDEN):
        at = (k + 1) * step
        sheet[at] += f'<c r="G{at + 1}"><f>"{r["id"]} {r["mobile"]}"</f></c>'
    return xlsx("</row>".join(sheet), list(shared))


@pytest.mark.parametrize("kind", ["ods", "xlsx"])
def test_customers_hidden_in_a_large_sheets_parts_are_found(kind: str) -> None:
    """Every one is counted: the scan goes to the end (no early verdict)."""
    build = hidden_ods if kind == "ods" else hidden_xlsx
    whole = dataclasses.replace(POLICY, early_verdict=False)
    verdict = _verdict(build(20_000), f"价目表.{kind}", whole)  # XML of several MiB: many pieces
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.complete and verdict.counts.get("cn_resident_id") == 20


def _part(data: bytes, name: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    zf, infos = archive.open_zip(data, Limits())
    return zf, next(i for i in infos if i.filename == name)


def _sorted_lines(texts: Sequence[str]) -> list[str]:
    return sorted(line for text in texts for line in text.split("\n") if line)


_PREFIXED_SHEET = (
    "".join(f'<x:row r="{r}"><x:c r="A{r}"><x:f>"{r}号"</x:f></x:c></x:row>' for r in range(1, 60))
    + '<row r="60"><c r="A60"><f>SUM(A1:A59)</f></c><c r="B60"><f>"末行"</f></c></row>'
)


@pytest.mark.parametrize("chunk", [1, 7, 61, 509])
def test_pieces_find_what_the_whole_part_holds(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Cut into pieces of any size, a sheet's XML gives the same comments, names and formulas
    as read whole: a cut falls only after a row that no comment spans (a row end inside a
    comment's CDATA is not one)."""
    monkeypatch.setattr(archive, "_CHUNK", chunk)
    monkeypatch.setattr(archive, "_PIECE", chunk)
    for data, name, cut, search in (
        (hidden_ods(40), "content.xml", odf.rows_end, odf.content_text),
        (xlsx(_PREFIXED_SHEET), "xl/worksheets/sheet1.xml", ooxml.rows_end, ooxml.formulas),
    ):
        zf, info = _part(data, name)
        budget = Budget(Limits())
        pieces = list(archive.pieces(zf, info, budget, cut))
        assert len(pieces) > 3
        assert _sorted_lines([search(p) for p in pieces]) == _sorted_lines([search(zf.read(info))])


def test_a_large_sheet_is_held_a_piece_at_a_time_and_not_charged_as_decoded() -> None:
    zf, info = _part(catalogue_ods(), "content.xml")
    budget = Budget(Limits())
    longest = max(len(p) for p in archive.pieces(zf, info, budget, odf.rows_end))
    assert longest <= 2 * MiB  # of a 62 MB content.xml
    assert budget.decoded == 0 and budget.cell_xml == info.file_size
