"""What an OpenDocument spreadsheet (ods) carries besides its cell values: comments, named
ranges and expressions, formula text (``content.xml``), and every other part of the package
(``meta.xml`` properties, page headers and footers in ``styles.xml``, any file stuffed into the
zip), read as :mod:`ooxml` reads an Office package's parts.

Cell values and sheet names come from calamine (``spreadsheet``); ``content.xml`` is searched
here only for what calamine leaves out, so a cell is not read twice with another line grouping,
a piece of whole rows at a time (:func:`rows_end`): it is the size of the cells' XML.
Every search is a ``find`` or a regex that stops at the next ``<`` or ``>``: linear in the part.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator

from dlp_addon.extract import ooxml

CONTENT = "content.xml"
# A comment's start (not ``<office:annotation-end/>``, which marks where its range ends).
_ANNOTATION = re.compile(r"<office:annotation[\s/>]")
_ANNOTATION_END = "</office:annotation>"
_ROW_END = "</table:table-row>"
_ANNOTATION_B = re.compile(_ANNOTATION.pattern.encode())
_ANNOTATION_END_B = _ANNOTATION_END.encode()
_ROW_END_B = _ROW_END.encode()
_ANNOTATION_START = b"<office:annotation"
_MARKERS = (_ANNOTATION_START, b"<table:named-", b"table:formula=")
# Attribute values in either quote (odfpy writes 'of:="..."', LibreOffice "of:=&quot;...").
_VALUE = r"""(?:"([^"<>]*)"|'([^'<>]*)')"""
_FORMULA = re.compile(r"table:formula=" + _VALUE)
_NAMED = re.compile(r"<table:named-(?:range|expression)\b([^<>]*)>")
_NAMED_ATTRS = re.compile(r"table:(?:name|expression|cell-range-address)=" + _VALUE)


def read(entries: Iterable[tuple[str, bytes]]) -> Iterator[ooxml.Text | ooxml.File]:
    """Text and files of the package's other parts, by :func:`ooxml.read` (nothing else is
    skipped: an ods has no part read elsewhere); ``content.xml`` is :func:`content_text`'s,
    a piece at a time."""
    yield from ooxml.read(((n, d) for n, d in entries if n != CONTENT), skip=())


def is_content(name: str) -> bool:
    """The part that holds the cells (calamine's) and what is read here besides them."""
    return name == CONTENT


def rows_end(xml: bytes) -> int:
    """Where a piece of ``content.xml`` may be cut: after its last row end that no comment
    spans (0: no such place yet). :func:`content_text` pairs a comment's start with the next
    end, so none spans a row end when the last start before it has its end before it.
    Comments, names and formulas are then never split; neither is a row."""
    end = len(xml)
    while (at := xml.rfind(_ROW_END_B, 0, end)) >= 0:
        cut = at + len(_ROW_END_B)
        start = _last_comment(xml, cut)
        if start < 0 or xml.find(_ANNOTATION_END_B, start, cut) >= 0:
            return cut
        end = start
    return 0


def _last_comment(xml: bytes, before: int) -> int:
    """Where the last comment starting before ``before`` starts (-1: none); one backward
    search in a piece without comments."""
    at = xml.rfind(_ANNOTATION_START, 0, before)
    while at >= 0 and not _ANNOTATION_B.match(xml, at):
        at = xml.rfind(_ANNOTATION_START, 0, at + len(_ANNOTATION_START) - 1)
    return at


def content_text(xml: bytes) -> str:
    """Comments (``office:annotation``, a paragraph a line), named ranges and expressions (a
    line each) and formula text (a sheet row a line) of an ods ``content.xml`` (or of a piece
    of it cut by :func:`rows_end`)."""
    if not any(marker in xml for marker in _MARKERS):  # most pieces of a sheet: no decoding
        return ""
    text = xml.decode("utf-8", "replace")
    lines = []
    pos = 0
    while m := _ANNOTATION.search(text, pos):
        j = text.find(_ANNOTATION_END, m.start())
        j = len(text) if j < 0 else j
        lines.append(ooxml.xml_text(text[m.start() : j], prose=True))
        pos = j + len(_ANNOTATION_END)
    for m in _NAMED.finditer(text):
        lines.append("\t".join(_values(_NAMED_ATTRS.findall(m.group(1)))))
    if "table:formula=" in text:
        for row in text.split(_ROW_END):
            found = _FORMULA.findall(row)
            if found:
                lines.append("\t".join(_values(found)))
    return "\n".join(line for line in lines if line)


def _values(found: list[tuple[str, str]]) -> list[str]:
    return [html.unescape(double or single) for double, single in found]
