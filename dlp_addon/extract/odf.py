"""What an OpenDocument spreadsheet (ods) carries besides its cell values: comments, named
ranges and expressions, formula text (``content.xml``), and every other part of the package
(``meta.xml`` properties, page headers and footers in ``styles.xml``, any file stuffed into the
zip), read as :mod:`ooxml` reads an Office package's parts.

Cell values and sheet names come from calamine (``spreadsheet``); ``content.xml`` is searched
here only for what calamine leaves out, so a cell is not read twice with another line grouping.
Every search is a ``find`` or a regex that stops at the next ``<`` or ``>``: linear in the part.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator

from dlp_addon.extract import ooxml

_CONTENT = "content.xml"
_ANNOTATION = ("<office:annotation", "</office:annotation>")
_ROW_END = "</table:table-row>"
# Attribute values in either quote (odfpy writes 'of:="..."', LibreOffice "of:=&quot;...").
_VALUE = r"""(?:"([^"<>]*)"|'([^'<>]*)')"""
_FORMULA = re.compile(r"table:formula=" + _VALUE)
_NAMED = re.compile(r"<table:named-(?:range|expression)\b([^<>]*)>")
_NAMED_ATTRS = re.compile(r"table:(?:name|expression|cell-range-address)=" + _VALUE)


def read(entries: Iterable[tuple[str, bytes]]) -> Iterator[ooxml.Text | ooxml.File]:
    """Text and files of the package: ``content.xml`` by :func:`content_text`, the rest by
    :func:`ooxml.read` (nothing is skipped there: an ods has no part read elsewhere)."""
    others = []
    for name, data in entries:
        if name == _CONTENT:
            yield ooxml.Text("comments", content_text(data.decode("utf-8", "replace")))
        else:
            others.append((name, data))
    yield from ooxml.read(others, skip=())


def content_text(xml: str) -> str:
    """Comments (``office:annotation``, a paragraph a line), named ranges and expressions (a
    line each) and formula text (a sheet row a line) of an ods ``content.xml``."""
    lines = []
    start, end = _ANNOTATION
    pos = 0
    while (i := xml.find(start, pos)) >= 0:
        j = xml.find(end, i)
        j = len(xml) if j < 0 else j
        lines.append(ooxml.xml_text(xml[i:j], prose=True))
        pos = j + len(end)
    for m in _NAMED.finditer(xml):
        lines.append("\t".join(_values(_NAMED_ATTRS.findall(m.group(1)))))
    if "table:formula=" in xml:
        for row in xml.split(_ROW_END):
            found = _FORMULA.findall(row)
            if found:
                lines.append("\t".join(_values(found)))
    return "\n".join(line for line in lines if line)


def _values(found: list[tuple[str, str]]) -> list[str]:
    return [html.unescape(double or single) for double, single in found]
