"""What one HTTP request or WebSocket message carries, as text parts to scan.

The entry points: :func:`extract_http` reads the URL, the headers that carry data and the
body (a form, multipart, or bytes read by kind); :func:`extract_ws` one WebSocket message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from python_multipart.multipart import parse_options_header

from dlp_addon.errors import ExtractError
from dlp_addon.extract.decode import decode_content
from dlp_addon.extract.extraction import Attachment, Extraction, Part
from dlp_addon.extract.files import Walker
from dlp_addon.extract.filetype import sniff
from dlp_addon.extract.forms import form, looks_urlencoded
from dlp_addon.extract.headers import request_headers
from dlp_addon.extract.limits import Limits
from dlp_addon.extract.multipart import multipart
from dlp_addon.extract.text import decode_readings

__all__ = ["Attachment", "Extraction", "HttpInput", "Part", "extract_http", "extract_ws"]


@dataclass(frozen=True)
class HttpInput:
    """A request as the core sees it: no mitmproxy types. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


def _content_type(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    ctype, params = parse_options_header(headers.get("content-type", ""))
    return (
        ctype.decode("latin-1").lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


def extract_http(
    req: HttpInput,
    limits: Limits | None = None,
    deadline: float | None = None,
    *,
    lazy: bool = False,
) -> Extraction:
    """Parts of the URL (path, query), of the headers that carry data (cookies, object storage
    metadata, long custom values) and of the body, decoded and parsed by content. ``lazy``:
    what long texts hide, and the whole text of a long workbook (its first rows come as a
    preview), are left to ``Extraction.rest`` (see the pipeline)."""
    limits = limits or Limits()
    col = Walker(limits, deadline, lazy)
    try:
        return _http(col, req, limits)
    except BaseException:
        col.discard()  # a workbook reader started for a preview
        raise


def _http(col: Walker, req: HttpInput, limits: Limits) -> Extraction:
    path, _, query = req.path.partition("?")
    col.text("path", unquote(path))
    if query:
        form(col, "query", query)
    request_headers(col, req.headers)
    if not req.body:
        return col.result()
    if len(req.body) > limits.max_body_bytes:
        raise ExtractError("too_large")
    body = decode_content(
        req.body, req.headers.get("content-encoding", ""), limits.max_decoded_bytes
    )
    col.budget.spend(len(body))
    ctype, params = _content_type(req.headers)
    charset = params.get("charset")
    if ctype == "multipart/form-data":
        multipart(col, body, params.get("boundary", ""))
    elif ctype == "application/x-www-form-urlencoded" or looks_urlencoded(body):
        readings = decode_readings(body, charset)
        if not readings:
            raise ExtractError("charset")
        for text in readings:
            form(col, "body:form", text)
    else:
        col.blob("body", body, charset, file=_is_raw_file(body, ctype))
    return col.result()


# What a client says when it PUTs or POSTs a file's bytes as the whole body (object storage,
# resumable uploads): nothing, or a generic or table type.
_RAW_FILE_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/csv",
        "text/csv",
        "text/tab-separated-values",
    }
)


def _is_raw_file(body: bytes, ctype: str) -> bool:
    """Whether a whole body is a file (an xlsx, a CSV, a zip PUT to a bucket), so it counts as
    an attachment like a multipart upload: by its content when it has a known format, else by
    a Content-Type that names no message format (a JSON body stays a message)."""
    if sniff(body) != "binary":
        return True
    return ctype in _RAW_FILE_TYPES and body[:64].lstrip()[:1] not in (b"{", b"[")


def extract_ws(
    content: bytes,
    is_text: bool,
    limits: Limits | None = None,
    deadline: float | None = None,
    *,
    lazy: bool = False,
) -> Extraction:
    """Parts of one WebSocket message (text, JSON, or a binary frame's readable runs);
    ``lazy`` as for :func:`extract_http`."""
    col = Walker(limits or Limits(), deadline, lazy)
    try:
        return _ws(col, content, is_text)
    except BaseException:
        col.discard()
        raise


def _ws(col: Walker, content: bytes, is_text: bool) -> Extraction:
    if is_text:
        text = content.decode("utf-8", "replace")
        if not col.json_text("ws", text):
            col.text("ws", text)
    else:
        col.blob("ws", content, None, file=False)
    return col.result()
