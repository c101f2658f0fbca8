"""Everything else an Office Open XML package (xlsx/xlsm, docx, pptx) carries: comments and
notes, document properties, sheet names and defined names, the pivot cache, formula text,
headers, footers, footnotes, endnotes, slides, custom XML and any other part.

Cell values (calamine) and the body of a docx (``document.docx_text``) are read elsewhere;
this module reads the rest of the zip's parts, which the caller takes from
``archive.entries`` (so the archive limits hold; a workbook's sheets come a piece of rows at a
time, from ``archive.pieces``). XML is read with a linear tokenizer, not a
parser: no DTD is processed and no entity is expanded (only character references and the
predefined entities are decoded), so an entity bomb stays a few bytes of text, and a hand-made
part that no parser accepts is still read. Each part yields text under a fixed category name
(never the part's own name, which the sender chooses): the location label stays bounded.
Files inside the package (``embeddings/``, or any part that is a known file type) are handed
back to the caller to be read as files of their own: an xlsx pasted into a docx is a workbook.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dlp_addon.extract.filetype import IMAGE, MEDIA, sniff
from dlp_addon.extract.text import decode_text, is_opaque, text_runs

# Already read by the caller in a workbook: cell values (calamine reads the shared strings
# through the cells that use them) and the body of a docx (read in any package).
SHARED_STRINGS = "xl/sharedStrings.xml"
READ_ELSEWHERE = (SHARED_STRINGS, "word/document.xml")
DOCUMENT_BODY = ("word/document.xml",)

# Every pattern here stops at the next "<" or ">", so no input makes it backtrack over more than
# one tag: reading stays linear in the part's size, however malformed the part is.
_TOKEN = re.compile(
    r"<[!?][^<>]*>"
    r"|<(?P<close>/)?(?:[^\W\d][\w.\-]*:)?(?P<tag>[^\W\d][\w.\-]*)(?P<attrs>(?:\s[^<>]*?)?)(?P<empty>/)?>"
)
_ATTR = re.compile(r"([\w:.\-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_SECTIONS = (("<![CDATA[", "]]>"), ("<!--", "-->"))
# Word, DrawingML (slides, shapes, charts) and spreadsheet comments: prose, a paragraph a line.
_LINE_END = frozenset({"p", "br", "cr", "tr", "comment", "threadedComment", "cm", "si", "author"})
_CELL_END = frozenset({"tc", "tab"})

# Sheet formulas, row by row: the text of each <f> (a cached value, if any, is a cell value).
_ROW_END = re.compile(rb"</(?:\w+:)?row>")
_ROW_END_PREFIX = re.compile(rb"</\w+:")
_FORMULA = re.compile(rb"<(?:\w+:)?f\b[^<>]*>([^<]*)</(?:\w+:)?f>")

# Pivot cache: fields and their shared items (definition), rows of values or item indexes.
_CACHE_FIELD = re.compile(r"<(?:\w+:)?cacheField\b")
_ITEM = re.compile(r"<(?:\w+:)?([snbdemx])\b([^<>]*?)/?>")
_RECORD = re.compile(r"<(?:\w+:)?r\b")


@dataclass(frozen=True)
class Text:
    """Text of a package's part, under a bounded category (``comments``, ``props``...)."""

    category: str
    text: str


@dataclass(frozen=True)
class File:
    """A file carried inside the package (an embedded workbook, a zip stored as a part)."""

    category: str
    data: bytes


def category(name: str) -> str:
    """What a part is, as a short fixed label."""
    low = name.lower()
    base = low.rsplit("/", 1)[-1]
    if low.startswith("docprops/"):
        return "props"
    if low.startswith("customxml/"):
        return "customxml"
    if "/embeddings/" in low:
        return "embedded"
    if "comment" in base:
        return "comments"
    if low == "xl/workbook.xml":
        return "workbook"
    if low.startswith("xl/pivotcache/"):
        return "pivot"
    if low.startswith("xl/worksheets/") and base.endswith(".xml"):
        return "formulas"
    for prefix, label in (
        ("word/header", "header"),
        ("word/footer", "footer"),
        ("word/footnotes", "footnotes"),
        ("word/endnotes", "endnotes"),
        ("ppt/slides/", "slides"),
        ("ppt/notesslides/", "notes"),
    ):
        if low.startswith(prefix):
            return label
    return "part"


def read(
    entries: Iterable[tuple[str, bytes]], skip: Iterable[str] = READ_ELSEWHERE
) -> Iterator[Text | File]:
    """Text and files of every part of the package except ``skip`` (those read elsewhere)."""
    skipped = frozenset(skip)
    parts = [(name, data) for name, data in entries if name not in skipped and data]
    has_records = any("pivotcacherecords" in name.lower() for name, _ in parts)
    definitions = {
        name: _cache_fields(_xml(data))
        for name, data in parts
        if "pivotcachedefinition" in name.lower() and name.lower().endswith(".xml")
    }
    for name, data in parts:
        label = category(name)
        low = name.lower()
        if label == "formulas":
            yield Text(label, formulas(data))
        elif label == "pivot" and "pivotcacherecords" in low:
            fields = _definition_for(name, definitions)
            yield Text(label, pivot_records(_xml(data), fields))
        elif label == "pivot" and low in definitions:
            yield Text(label, _definition_text(definitions[low], items=not has_records))
        elif low.endswith((".xml", ".vml", ".rels")) or data.lstrip()[:1] == b"<":
            prose = low.startswith(("word/", "ppt/")) or label == "comments"
            yield Text(label, xml_text(_xml(data), prose=prose))
        else:
            yield from _other(label, data)


def _other(label: str, data: bytes) -> Iterator[Text | File]:
    """A part that is not XML: a file of a known kind is read as a file (a picture too: a
    screenshot pasted into a document is read by OCR); text is text; other binary (an
    OLE-wrapped embedding, a printer setting) gives its readable runs; video is skipped."""
    kind = sniff(data)
    if kind in (IMAGE, MEDIA):  # walked for what it carries (图种), pictures read by OCR there
        yield File("media", data)
        return
    if kind not in ("binary", "ole") or decode_text(data) is not None:
        yield File("embedded" if label == "embedded" else "part", data)
    elif not is_opaque(data):
        yield Text(label, text_runs(data))


def _xml(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    return data.decode("utf-8", "replace")


def xml_text(xml: str, *, prose: bool) -> str:
    """The text of an XML part. ``prose`` (Word, slides, comments): element text only, a
    paragraph a line, table cells on one line separated by tabs, ``mc:Fallback`` copies
    skipped. Otherwise (properties, custom XML, anything else): element text and attribute
    values too, an element holding others or carrying attributes ending a line (so
    ``<customer name=".." id=".."/>`` and ``<row><name>..</name><id>..</id></row>`` are one
    record each), leaf values separated by tabs."""
    xml = _unwrap_sections(xml)
    out: list[str] = []
    pos = 0
    cells = 0  # open table cells (prose): a paragraph inside a cell does not end the row
    fallback = 0  # open mc:Fallback elements (prose): a second copy of what mc:Choice holds
    children: list[bool] = []  # generic: whether each open element has held another
    for m in _TOKEN.finditer(xml):
        if not fallback and m.start() > pos:
            out.append(html.unescape(xml[pos : m.start()]))
        pos = m.end()
        tag = m.group("tag")
        if tag is None:  # <?xml ...?>, <!DOCTYPE ...>: declarations, nothing expanded
            continue
        closing, empty = m.group("close") is not None, m.group("empty") is not None
        if prose:
            if tag == "Fallback":
                fallback += -1 if closing else (0 if empty else 1)
                fallback = max(fallback, 0)
                continue
            if fallback:
                continue
            if tag == "tc" and not empty:
                cells += -1 if closing else 1
                cells = max(cells, 0)
            if closing or empty:
                if tag in _CELL_END or (tag == "p" and cells):
                    out.append("\t")
                elif tag in _LINE_END:
                    out.append("\n")
            continue
        values = [] if closing else _attr_values(m.group("attrs"))
        if values:
            out.append("\t" + "\t".join(values) + "\t")
        if closing:
            held = children.pop() if children else False
            out.append("\n" if held else "\t")
        elif empty:
            if children:
                children[-1] = True
            out.append("\n" if values else "\t")
        else:
            if children:
                children[-1] = True
            children.append(bool(values))
    if pos < len(xml) and not fallback:
        out.append(html.unescape(xml[pos:]))
    return _tidy("".join(out))


def _unwrap_sections(xml: str) -> str:
    """CDATA sections and XML comments as escaped text (a comment on lines of its own): what
    they hold leaves with the file like any other text. One pass with ``find``: an unclosed
    section runs to the end of the part."""
    for start, end in _SECTIONS:
        if start not in xml:
            continue
        out, pos = [], 0
        while (i := xml.find(start, pos)) >= 0:
            j = xml.find(end, i + len(start))
            j = len(xml) if j < 0 else j
            inner = html.escape(xml[i + len(start) : j], quote=False)
            out += [xml[pos:i], inner if start == "<![CDATA[" else f"\n{inner}\n"]
            pos = j + len(end)
        out.append(xml[pos:])
        xml = "".join(out)
    return xml


def _attr_values(attrs: str) -> list[str]:
    return [
        html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
        for m in _ATTR.finditer(attrs)
        if not m.group(1).startswith("xmlns")
    ]


_BLANK_LINES = re.compile(r"[ \t]*\n[\s]*")
_TABS = re.compile(r"\t[\t ]*")


def _tidy(text: str) -> str:
    """Runs of separators folded: one tab between values, one newline between lines."""
    return _BLANK_LINES.sub("\n", _TABS.sub("\t", text)).strip()


def _has_formula(xml: bytes) -> bool:
    """Whether ``xml`` holds ``</f>`` or ``:f>``: one pass over a sheet of tens of MB (``f>``
    is rare in one without formulas), not two."""
    at = xml.find(b"f>")
    while at >= 0:
        if xml[at - 1 : at] == b":" or (at >= 2 and xml[at - 2 : at] == b"</"):
            return True
        at = xml.find(b"f>", at + 2)
    return False


def is_sheet(name: str) -> bool:
    """A workbook's worksheet part (its cells are calamine's, its formulas read here)."""
    return category(name) == "formulas"


def rows_end(sheet_xml: bytes) -> int:
    """Where a piece of sheet XML may be cut: after its last row end (0: none yet), one
    that :func:`formulas` splits rows at, so a row's formulas stay on one line."""
    end = len(sheet_xml)
    while (at := sheet_xml.rfind(b"row>", 0, end)) >= 0:
        if sheet_xml[at - 2 : at] == b"</":
            return at + 4
        if sheet_xml[at - 1 : at] == b":":
            lt = sheet_xml.rfind(b"<", max(0, at - 64), at)  # a longer prefix: no cut here
            if lt >= 0 and _ROW_END_PREFIX.fullmatch(sheet_xml, lt, at):
                return at + 4
        end = at + 3  # the next "row>" ends before this one's ">"
    return 0


def formulas(sheet_xml: bytes) -> str:
    """The text of a sheet's formulas, a row a line (formulas of one row separated by tabs):
    a formula such as ``="110105..."`` may have no cached value for calamine to read."""
    if not _has_formula(sheet_xml):
        return ""
    lines = []
    for row in _ROW_END.split(sheet_xml):
        found = _FORMULA.findall(row)
        if found:
            lines.append("\t".join(html.unescape(f.decode("utf-8", "replace")) for f in found))
    return "\n".join(lines)


def _cache_fields(xml: str) -> list[tuple[str, list[str]]]:
    """``(field name, shared items)`` of each field of a pivot cache definition, in order."""
    fields = []
    for chunk in _CACHE_FIELD.split(xml)[1:]:  # a field runs to the next one
        end = chunk.find(">")
        name = _attr(chunk[: max(end, 0)], "name")
        fields.append((name, [_attr(a, "v") for _, a in _ITEM.findall(chunk, max(end, 0))]))
    return fields


def _attr(attrs: str, name: str) -> str:
    for m in _ATTR.finditer(attrs):
        if m.group(1) == name:
            return html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
    return ""


def _definition_for(
    records_name: str, definitions: dict[str, list[tuple[str, list[str]]]]
) -> list[tuple[str, list[str]]]:
    """The definition of a records part: same number (Excel's own naming), else the only one."""
    number = re.sub(r"\D", "", records_name.rsplit("/", 1)[-1])
    for name, fields in definitions.items():
        if re.sub(r"\D", "", name.rsplit("/", 1)[-1]) == number:
            return fields
    return next(iter(definitions.values())) if len(definitions) == 1 else []


def _definition_text(fields: list[tuple[str, list[str]]], *, items: bool) -> str:
    """Field names on one line; with ``items`` (a cache saved without its records) each
    field's shared items, one a line."""
    lines = ["\t".join(name for name, _ in fields)]
    if items:
        for _, shared in fields:
            lines.extend(v for v in shared if v)
    return "\n".join(lines)


def pivot_records(xml: str, fields: list[tuple[str, list[str]]]) -> str:
    """The source rows Excel keeps in a pivot cache, a row a line: ``<x v="3"/>`` is the
    field's fourth shared item, other items carry their value."""
    lines = []
    for chunk in _RECORD.split(xml)[1:]:  # a record runs to the next one
        values = []
        for i, (kind, attrs) in enumerate(_ITEM.findall(chunk)):
            value = _attr(attrs, "v")
            if kind == "x":
                shared = fields[i][1] if i < len(fields) else []
                index = int(value) if value.isdigit() else -1
                value = shared[index] if 0 <= index < len(shared) else ""
            values.append(value)
        lines.append("\t".join(values))
    return "\n".join(lines)
