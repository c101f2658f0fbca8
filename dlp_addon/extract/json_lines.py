"""A JSON document as lines to scan: one line (one record) per object."""

from __future__ import annotations

import json
from collections.abc import Iterator


class _Object(list[tuple[str, object]]):
    """A JSON object as its pairs in order, duplicate keys included."""


def json_lines(text: str) -> list[str] | None:
    """The lines of ``text`` when it is a JSON object or array, else ``None``. Every value of
    a duplicate key is kept: parsers disagree on which one wins."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        doc = json.loads(text, object_pairs_hook=_Object)
    except (ValueError, RecursionError):
        return None
    return list(_lines(doc))


def _lines(doc: object) -> Iterator[str]:
    """One line per JSON object (its keys and one-line scalar values), one per scalar in an
    array; a multi-line string keeps its lines (a table pasted into a chat message). A line is
    a record. Iterative, so depth costs no recursion."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, _Object):
            line = []
            for k, v in node:
                line.append(k)
                if isinstance(v, dict | list) or (isinstance(v, str) and "\n" in v):
                    stack.append(v)
                elif (s := _scalar(v)) is not None:
                    line.append(s)
            yield " ".join(line)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, dict | list):
                    stack.append(item)
                elif (s := _scalar(item)) is not None:
                    yield s
        elif (s := _scalar(node)) is not None:
            yield s


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
