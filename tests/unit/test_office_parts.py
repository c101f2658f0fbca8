"""What an Office package carries besides cell values and body text: comments, properties, sheet
and defined names, the pivot cache, formulas, headers, footers, notes, slides, custom XML and
embedded files. Each hiding place holds 20 synthetic customers and must be blocked; an ordinary
workbook, document or deck with comments and properties must pass. Packages are built here:
workbooks with openpyxl, then parts written into the zip by hand as minimal XML."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping
from xml.sax.saxutils import escape

import pytest

from dlp_addon.extract import extract_http
from dlp_addon.pipeline import Inspection, inspect_http
from tests import files as F
from tests.carrier_files import with_parts
from tests.synth import customer_records
from tests.unit.test_files_extract import POLICY, upload

RECORDS = customer_records(20, seed=17)
LINES = [f"{r['name']} {r['id']} {r['mobile']} {r['address']}" for r in RECORDS]

W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
P = 'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
S = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def inspect(data: bytes, name: str) -> Inspection:
    return inspect_http(POLICY, upload(name, data), "jd")


# --- workbooks -----------------------------------------------------------------------------------


def _workbook(configure: Callable[..., None] | None = None) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "价格"
    for row in F.price_rows(10):
        ws.append(list(row))
    if configure is not None:
        configure(wb)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _comments(wb: object) -> None:
    from openpyxl.comments import Comment

    ws = wb.active  # type: ignore[attr-defined]
    for i, line in enumerate(LINES, start=2):
        ws.cell(i, 7).comment = Comment(line, "客服")


def _sheet_names(wb: object) -> None:
    for r in RECORDS:
        wb.create_sheet(f"{r['id']} {r['mobile']}")  # type: ignore[attr-defined]


def _formulas(wb: object) -> None:
    ws = wb.create_sheet("计算")  # type: ignore[attr-defined]
    for r in RECORDS:  # openpyxl writes formulas without a cached value
        ws.append([f'="{r["name"]}"', f'="{r["id"]}"', f'="{r["mobile"]}"'])


def _defined_names(wb: object) -> None:
    from openpyxl.workbook.defined_name import DefinedName

    for i, r in enumerate(RECORDS):
        name = DefinedName(f"客户{i}", attr_text=f'"{r["id"]} {r["mobile"]}"')
        wb.defined_names[name.name] = name  # type: ignore[attr-defined]


def _description(wb: object) -> None:
    wb.properties.description = "\n".join(LINES)  # type: ignore[attr-defined]


def _threaded_comments() -> str:
    items = "".join(
        f'<threadedComment ref="G{i}" id="{{0000000{i:02d}-0000-0000-0000-000000000000}}" '
        f'personId="{{00000000-0000-0000-0000-000000000001}}"><text>{escape(line)}</text>'
        "</threadedComment>"
        for i, line in enumerate(LINES, start=2)
    )
    return (
        '<ThreadedComments xmlns="http://schemas.microsoft.com/office/spreadsheetml/2018/'
        f'threadedcomments">{items}</ThreadedComments>'
    )


def _custom_properties(values: list[str] = LINES) -> str:
    props = "".join(
        f'<property fmtid="{{D5CDD505-2E9C-101B-9397-08002B2CF9AE}}" pid="{i + 2}" '
        f'name="客户{i}"><vt:lpwstr>{escape(line)}</vt:lpwstr></property>'
        for i, line in enumerate(values)
    )
    return (
        '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-'
        'properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/'
        f'docPropsVTypes">{props}</Properties>'
    )


def _custom_xml() -> str:
    rows = "".join(
        f"<客户><姓名>{r['name']}</姓名><证件>{r['id']}</证件><电话>{r['mobile']}</电话></客户>"
        for r in RECORDS
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><名单>{rows}</名单>'


def _pivot_cache(with_records: bool = True) -> dict[str, str]:
    """A pivot cache whose source sheet is gone: names as shared items (records point at them
    by index), IDs as strings and mobiles as numbers in the records."""
    names = "".join(f'<s v="{escape(r["name"])}"/>' for r in RECORDS)
    definition = (
        f'<pivotCacheDefinition {S} recordCount="20"><cacheSource type="worksheet">'
        '<worksheetSource ref="A1:C21" sheet="客户"/></cacheSource><cacheFields count="3">'
        f'<cacheField name="姓名" numFmtId="0"><sharedItems count="20">{names}</sharedItems>'
        '</cacheField><cacheField name="身份证号" numFmtId="0"><sharedItems/></cacheField>'
        '<cacheField name="手机号码" numFmtId="0"><sharedItems containsNumber="1"/>'
        "</cacheField></cacheFields></pivotCacheDefinition>"
    )
    if not with_records:
        items = "".join(f'<s v="{r["id"]}"/>' for r in RECORDS)
        definition = definition.replace(
            '<cacheField name="身份证号" numFmtId="0"><sharedItems/>',
            f'<cacheField name="身份证号" numFmtId="0"><sharedItems count="20">{items}'
            "</sharedItems>",
        )
        return {"xl/pivotCache/pivotCacheDefinition1.xml": definition}
    records = "".join(
        f'<r><x v="{i}"/><s v="{r["id"]}"/><n v="{r["mobile"]}"/></r>'
        for i, r in enumerate(RECORDS)
    )
    return {
        "xl/pivotCache/pivotCacheDefinition1.xml": definition,
        "xl/pivotCache/pivotCacheRecords1.xml": f'<pivotCacheRecords {S} count="20">{records}'
        "</pivotCacheRecords>",
    }


def _csv_part() -> bytes:
    return F.csv_bytes(F.customer_rows(20, seed=17), "utf-8")


# --- documents and decks -------------------------------------------------------------------------


def _paragraphs(lines: list[str]) -> str:
    return "".join(f"<w:p><w:r><w:t>{escape(line)}</w:t></w:r></w:p>" for line in lines)


def docx(parts: Mapping[str, str | bytes] | None = None, body: str | None = None) -> bytes:
    """A minimal Word package: a body paragraph, and ``parts`` added as they are."""
    body = body if body is not None else _paragraphs(["旅行箱售后说明：保修一年，七天无理由退换。"])
    base: dict[str, str | bytes] = {
        "[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/package/'
        '2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>',
        "word/document.xml": f"<w:document {W}><w:body>{body}</w:body></w:document>",
        "docProps/core.xml": '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/'
        'package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:title>售后说明</dc:title><dc:creator>客服部</dc:creator></cp:coreProperties>",
    }
    base.update(parts or {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in base.items():
            zf.writestr(name, content.encode() if isinstance(content, str) else content)
    return out.getvalue()


def _word_part(root: str, item: str, lines: list[str]) -> str:
    items = "".join(
        f'<w:{item} w:id="{i + 1}">{_paragraphs([line])}</w:{item}>' for i, line in enumerate(lines)
    )
    return f"<w:{root} {W}>{items}</w:{root}>"


def _text_box() -> str:
    """Records in a text box, as Word writes one: in mc:Choice and again in mc:Fallback."""
    content = f"<w:txbxContent>{_paragraphs(LINES)}</w:txbxContent>"
    return (
        '<w:p><w:r><mc:AlternateContent xmlns:mc="http://schemas.openxmlformats.org/markup-'
        'compatibility/2006"><mc:Choice Requires="wps"><w:drawing><wps:wsp xmlns:wps="http://'
        f'schemas.microsoft.com/office/word/2010/wordprocessingShape"><wps:txbx>{content}'
        "</wps:txbx></wps:wsp></w:drawing></mc:Choice><mc:Fallback><w:pict><v:textbox "
        f'xmlns:v="urn:schemas-microsoft-com:vml">{content}</v:textbox></w:pict></mc:Fallback>'
        "</mc:AlternateContent></w:r></w:p>"
    )


def pptx(parts: Mapping[str, str | bytes]) -> bytes:
    """A minimal PowerPoint package with ``parts``."""
    base: dict[str, str | bytes] = {
        "[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/package/'
        '2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>',
        "ppt/presentation.xml": f"<p:presentation {P}/>",
    }
    base.update(parts)
    return _zip(base)


def _zip(parts: Mapping[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in parts.items():
            zf.writestr(name, content.encode() if isinstance(content, str) else content)
    return out.getvalue()


def _slide(lines: list[str]) -> str:
    """A slide with a table, a row a record, cells as DrawingML writes them."""
    rows = "".join(
        "<a:tr>"
        + "".join(
            f"<a:tc><a:txBody><a:p><a:r><a:t>{escape(cell)}</a:t></a:r></a:p></a:txBody></a:tc>"
            for cell in line.split(" ")
        )
        + "</a:tr>"
        for line in lines
    )
    return f"<p:sld {P} {A}><p:cSld><p:spTree><a:tbl>{rows}</a:tbl></p:spTree></p:cSld></p:sld>"


def _notes(lines: list[str]) -> str:
    paras = "".join(f"<a:p><a:r><a:t>{escape(line)}</a:t></a:r></a:p>" for line in lines)
    return f"<p:notes {P} {A}><p:cSld><p:txBody>{paras}</p:txBody></p:cSld></p:notes>"


def _customer_xlsx() -> bytes:
    return F.xlsx(F.customer_rows(20, seed=17))


HIDDEN: dict[str, Callable[[], tuple[bytes, str]]] = {
    "xlsx cell comments": lambda: (_workbook(_comments), "价格.xlsx"),
    "xlsx threaded comments": lambda: (
        with_parts(_workbook(), {"xl/threadedComments/threadedComment1.xml": _threaded_comments()}),
        "价格.xlsx",
    ),
    "xlsx description property": lambda: (_workbook(_description), "价格.xlsx"),
    "xlsx custom properties": lambda: (
        with_parts(_workbook(), {"docProps/custom.xml": _custom_properties()}),
        "价格.xlsx",
    ),
    "xlsx sheet names": lambda: (_workbook(_sheet_names), "价格.xlsx"),
    "xlsx defined names": lambda: (_workbook(_defined_names), "价格.xlsx"),
    "xlsx formulas without values": lambda: (_workbook(_formulas), "价格.xlsx"),
    "xlsx pivot cache records": lambda: (with_parts(_workbook(), _pivot_cache()), "价格.xlsx"),
    "xlsx pivot cache without records": lambda: (
        with_parts(_workbook(), _pivot_cache(with_records=False)),
        "价格.xlsx",
    ),
    "xlsx custom xml": lambda: (
        with_parts(_workbook(), {"customXml/item1.xml": _custom_xml()}),
        "价格.xlsx",
    ),
    "xlsx extra csv part": lambda: (
        with_parts(_workbook(), {"xl/media/notes.csv": _csv_part()}),
        "价格.xlsx",
    ),
    "xlsm extra text part": lambda: (
        with_parts(_workbook(), {"xl/extra.txt": "\n".join(LINES)}),
        "价格.xlsm",
    ),
    "docx header": lambda: (docx({"word/header1.xml": _word_part("hdr", "p", LINES)}), "a.docx"),
    "docx footer": lambda: (docx({"word/footer1.xml": _word_part("ftr", "p", LINES)}), "a.docx"),
    "docx footnotes": lambda: (
        docx({"word/footnotes.xml": _word_part("footnotes", "footnote", LINES)}),
        "a.docx",
    ),
    "docx endnotes": lambda: (
        docx({"word/endnotes.xml": _word_part("endnotes", "endnote", LINES)}),
        "a.docx",
    ),
    "docx comments": lambda: (
        docx({"word/comments.xml": _word_part("comments", "comment", LINES)}),
        "a.docx",
    ),
    "docx text box": lambda: (docx(body=_text_box()), "a.docx"),
    "docx embedded xlsx": lambda: (
        docx({"word/embeddings/Microsoft_Excel_Worksheet.xlsx": _customer_xlsx()}),
        "a.docx",
    ),
    "pptx slide table": lambda: (pptx({"ppt/slides/slide1.xml": _slide(LINES)}), "a.pptx"),
    "pptx speaker notes": lambda: (
        pptx({"ppt/notesSlides/notesSlide1.xml": _notes(LINES)}),
        "a.pptx",
    ),
    "pptx embedded xlsx": lambda: (
        pptx({"ppt/embeddings/Microsoft_Excel_Worksheet1.xlsx": _customer_xlsx()}),
        "a.pptx",
    ),
}


@pytest.mark.parametrize("case", sorted(HIDDEN))
def test_customers_hidden_in_a_package_are_blocked(case: str) -> None:
    data, name = HIDDEN[case]()
    verdict = inspect(data, name).verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.counts.get("cn_resident_id") == 20
    assert verdict.records >= 20


def test_pivot_cache_rows_are_the_source_rows() -> None:
    """The records of a pivot cache are read as rows (a name, an ID and a mobile on one line),
    not as three loose lists: the deleted sheet's 20 customers are 20 records."""
    verdict = inspect(with_parts(_workbook(), _pivot_cache()), "价格.xlsx").verdict
    assert verdict.records == 20


def test_an_embedded_workbook_is_a_spreadsheet_attachment() -> None:
    data, _ = HIDDEN["docx embedded xlsx"]()
    verdict = inspect(data, "a.docx").verdict
    kinds = [f["kind"] for f in verdict.files]
    assert kinds == ["docx", "xlsx"]
    assert verdict.files[1]["records"] == 20


def test_part_names_chosen_by_the_sender_stay_out_of_locations() -> None:
    secret = RECORDS[0]["id"]
    data = with_parts(_workbook(), {f"customXml/{secret}.xml": _custom_xml()})
    extraction = extract_http(upload("价格.xlsx", data))
    assert extraction.parts and not any(secret in loc for loc, _ in extraction.parts)


def _ordinary_workbook(wb: object) -> None:
    from openpyxl.comments import Comment
    from openpyxl.workbook.defined_name import DefinedName

    ws = wb.active  # type: ignore[attr-defined]
    ws["A2"].comment = Comment("2024 春季新款，12 月 31 日前补货 300 件", "采购")
    ws["E2"].comment = Comment("库存按仓库 WH-0571 盘点", "仓管")
    ws["F2"] = "=D2*E2"
    wb.properties.title = "拉杆箱报价单"  # type: ignore[attr-defined]
    wb.properties.creator = "采购部"  # type: ignore[attr-defined]
    wb.properties.description = "含税价，运费另计。订单号 20240318123456789"  # type: ignore[attr-defined]
    wb.defined_names["报价区"] = DefinedName("报价区", attr_text="'价格'!$A$1:$E$11")  # type: ignore[attr-defined]


ORDINARY: dict[str, Callable[[], tuple[bytes, str]]] = {
    "workbook": lambda: (
        with_parts(
            _workbook(_ordinary_workbook),
            {"docProps/custom.xml": _custom_properties(["华东区", "含税", "2024-03-18"])},
        ),
        "报价.xlsx",
    ),
    "document": lambda: (
        docx(
            {
                "word/header1.xml": _word_part("hdr", "p", ["某某箱包旗舰店 售后服务"]),
                "word/footer1.xml": _word_part("ftr", "p", ["第 1 页 共 3 页"]),
                "word/comments.xml": _word_part("comments", "comment", ["保修期改为两年？"]),
                "word/footnotes.xml": _word_part("footnotes", "footnote", ["以实物为准。"]),
                "word/embeddings/Microsoft_Excel_Worksheet.xlsx": F.price_list_xlsx(),
            }
        ),
        "售后.docx",
    ),
    "deck": lambda: (
        pptx(
            {
                "ppt/slides/slide1.xml": _slide(["拉杆箱 24寸 299元", "登机箱 20寸 199元"]),
                "ppt/notesSlides/notesSlide1.xml": _notes(["讲到价格时停一下"]),
            }
        ),
        "新品.pptx",
    ),
}


@pytest.mark.parametrize("case", sorted(ORDINARY))
def test_ordinary_office_files_with_comments_and_properties_pass(case: str) -> None:
    data, name = ORDINARY[case]()
    verdict = inspect(data, name).verdict
    assert not verdict.blocks, verdict.reason
    assert verdict.records == 0 and not verdict.counts


def test_a_text_box_in_a_docx_is_read_once() -> None:
    """Word keeps a text box twice (mc:Choice and mc:Fallback): still 20 records, not 40."""
    verdict = inspect(docx(body=_text_box()), "a.docx").verdict
    assert verdict.records == 20


def test_too_deep_embedding_is_unscannable() -> None:
    data = _customer_xlsx()
    for _ in range(4):
        data = docx({"word/embeddings/inner.docx": data})
    verdict = inspect(data, "a.docx").verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_deep"


def test_a_deck_renamed_jpg_is_still_a_deck() -> None:
    data = pptx({"ppt/slides/slide1.xml": _slide(LINES)})
    verdict = inspect_http(POLICY, upload("photo.jpg", data, "image/jpeg"), "jd").verdict
    assert verdict.blocks and verdict.counts.get("cn_resident_id") == 20


def test_cdata_and_xml_comments_are_read() -> None:
    rows = "".join(f"<客户><![CDATA[{line}]]></客户>" for line in LINES[:10])
    rows += "".join(f"<!--{line}-->" for line in LINES[10:])
    data = with_parts(_workbook(), {"customXml/item1.xml": f"<名单>{rows}</名单>"})
    verdict = inspect(data, "价格.xlsx").verdict
    assert verdict.blocks and verdict.counts.get("cn_resident_id") == 20


def test_entities_in_a_part_are_not_expanded() -> None:
    """A billion-laughs DTD in a part calamine never opens: its entities stay references."""
    levels = "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i else "lol" * 10}">' for i in range(10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE Properties [{levels}]><Properties>&lol9;</Properties>'
    data = with_parts(_workbook(), {"docProps/custom.xml": bomb})
    extraction = extract_http(upload("价格.xlsx", data))
    assert not extraction.unscannable
    assert extraction.bytes_of_text < 200_000
