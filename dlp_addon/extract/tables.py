"""Whether a file's text is a table (CSV, TSV...) or plain text: its first lines tell."""

from __future__ import annotations

import re

_MIN_TABLE_LINES = 2
# Where the twentieth line ends (by str.splitlines' line boundaries).
_TWENTIETH_LINE = re.compile(
    r"(?:[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*+(?>\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])){20}"
)


def table_kind(text: str) -> str:
    """``csv`` when the first lines hold the same number of commas or tabs, else ``text``."""
    head = text[: m.end()] if (m := _TWENTIETH_LINE.match(text)) else text  # not all of it
    lines = [line for line in head.splitlines()[:20] if line.strip()]
    if len(lines) < _MIN_TABLE_LINES:
        return "text"
    for sep in ("\t", ",", "，", ";", "|"):
        counts = {line.count(sep) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return "csv"
    return "text"
