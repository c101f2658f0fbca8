"""What one HTTP request or WebSocket message carries, as text parts to scan.

Parts are ``(location, text)`` pairs; the location is a short, bounded label (``query``,
``body:json``, ``multipart:file``...), never a field value, so it may go into audit events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, unquote_plus

from python_multipart.multipart import MultipartParser, parse_options_header

from dlp_addon.errors import ExtractError
from dlp_addon.extract.decode import decode_content
from dlp_addon.extract.text import binary_kind, decode_text, text_runs

Part = tuple[str, str]


@dataclass(frozen=True)
class HttpInput:
    """A request as the core sees it: no mitmproxy types. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class Extraction:
    """Text to scan, plus what could not be read and which files were carried."""

    parts: tuple[Part, ...] = field(repr=False)
    unscannable: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # content kind of each uploaded file: text, image, zip...

    @property
    def bytes_of_text(self) -> int:
        return sum(len(t) for _, t in self.parts)


class _Collector:
    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.unscannable: list[str] = []
        self.files: list[str] = []

    def result(self) -> Extraction:
        return Extraction(tuple(self.parts), tuple(self.unscannable), tuple(self.files))

    def text(self, location: str, text: str) -> None:
        if text:
            self.parts.append((location, text))
            if "%" in text:
                decoded = unquote_plus(text)
                if decoded != text:
                    self.parts.append((location + ":decoded", decoded))

    def blob(self, location: str, data: bytes, charset: str | None, *, file: bool) -> None:
        """Bytes whose type is decided by content: text, JSON, image, container or binary."""
        if not data:
            return
        text = decode_text(data, charset)
        if text is not None:
            if file:
                self.files.append("text")
            if not self.json_text(location, text):
                self.text(location, text)
            return
        kind = binary_kind(data)
        if file:
            self.files.append(kind)
        if kind == "image":
            return
        if kind == "binary":
            self.text(location + ":strings", text_runs(data))
            return
        self.unscannable.append(kind)

    def json_text(self, location: str, text: str) -> bool:
        stripped = text.lstrip()
        if not stripped.startswith(("{", "[")):
            return False
        try:
            doc = json.loads(text)
        except ValueError:
            return False
        self.parts.append((location + ":json", "\n".join(_json_lines(doc))))
        return True


def _json_lines(doc: object) -> Iterator[str]:
    """One line per JSON object (its keys and one-line scalar values), one per scalar in an
    array; a multi-line string keeps its lines (a table pasted into a chat message). A line is
    a record. Iterative, so depth costs no recursion."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            line = []
            for k, v in node.items():
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


def _content_type(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    ctype, params = parse_options_header(headers.get("content-type", ""))
    return (
        ctype.decode("latin-1").lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


def _form(col: _Collector, location: str, text: str) -> None:
    pairs = parse_qsl(text, keep_blank_values=True)
    col.parts.append((location, "\n".join(f"{k}={v}" for k, v in pairs)))


def _multipart(col: _Collector, body: bytes, boundary: str) -> None:
    if not boundary:
        raise ExtractError("multipart")
    state: dict[str, object] = {"ended": False}
    headers: list[tuple[bytes, bytes]] = []
    field_buf: list[bytes] = []
    value_buf: list[bytes] = []
    data: list[bytes] = []

    def on_header_field(b: bytes, start: int, end: int) -> None:
        field_buf.append(b[start:end])

    def on_header_value(b: bytes, start: int, end: int) -> None:
        value_buf.append(b[start:end])

    def on_header_end() -> None:
        headers.append((b"".join(field_buf).lower(), b"".join(value_buf)))
        field_buf.clear()
        value_buf.clear()

    def on_part_data(b: bytes, start: int, end: int) -> None:
        data.append(b[start:end])

    def on_part_end() -> None:
        hdrs = dict(headers)
        _, disp = parse_options_header(hdrs.get(b"content-disposition", b""))
        _, ctype_params = parse_options_header(hdrs.get(b"content-type", b""))
        charset = ctype_params.get(b"charset", b"").decode("latin-1") or None
        is_file = b"filename" in disp or b"filename*" in disp
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        col.text("multipart:name", name)
        col.blob(
            "multipart:file" if is_file else "multipart:field",
            b"".join(data),
            charset,
            file=is_file,
        )
        headers.clear()
        data.clear()

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # the parser raises several types; any of them means unreadable
        raise ExtractError("multipart") from e
    if not state["ended"]:
        raise ExtractError("multipart")


def extract_http(req: HttpInput, max_decoded_bytes: int) -> Extraction:
    """Parts of the URL (path, query) and of the body, decoded and parsed by content."""
    col = _Collector()
    path, _, query = req.path.partition("?")
    col.text("path", unquote(path))
    if query:
        _form(col, "query", query)
    if not req.body:
        return col.result()
    body = decode_content(req.body, req.headers.get("content-encoding", ""), max_decoded_bytes)
    if len(body) > max_decoded_bytes:
        raise ExtractError("too_large")
    ctype, params = _content_type(req.headers)
    charset = params.get("charset")
    if ctype == "multipart/form-data":
        _multipart(col, body, params.get("boundary", ""))
    elif ctype == "application/x-www-form-urlencoded":
        text = decode_text(body, charset)
        if text is None:
            raise ExtractError("charset")
        _form(col, "body:form", text)
    else:
        col.blob("body", body, charset, file=False)
    return col.result()


def extract_ws(content: bytes, is_text: bool) -> Extraction:
    """Parts of one WebSocket message (text, JSON, or a binary frame's readable runs)."""
    col = _Collector()
    if is_text:
        text = content.decode("utf-8", "replace")
        if not col.json_text("ws", text):
            col.text("ws", text)
    else:
        col.blob("ws", content, None, file=False)
    return col.result()
