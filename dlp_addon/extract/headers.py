"""The request headers that carry data, read as the receiving site reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from dlp_addon.extract.collector import Collector
from dlp_addon.extract.forms import form
from dlp_addon.extract.text import decode_readings

# Object storage user metadata (Aliyun OSS, S3, Tencent COS, Huawei OBS, GCS): stored with the
# object and handed back to whoever reads it, so data, whatever its length.
_META_PREFIXES = ("x-oss-meta-", "x-amz-meta-", "x-cos-meta-", "x-obs-meta-", "x-goog-meta-")
# Headers the browser or the HTTP stack writes, never data: not read, so they cost nothing.
_FORMAT_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "cache-control",
        "pragma",
        "origin",
        "upgrade-insecure-requests",
        "te",
        "priority",
        "dnt",
        "range",
        "expect",
    }
)
_FORMAT_PREFIXES = ("accept", "sec-", "if-", ":")
# Shorter values of other headers are ids and flags: too short to carry a record.
_MIN_HEADER_VALUE = 16


def header_readings(raw: bytes) -> list[str]:
    """A header's bytes as the receiving site may read them: UTF-8 or GB18030 (browsers send
    a file name's bytes as they are), else latin-1."""
    return decode_readings(raw, None) or [raw.decode("latin-1")]


def _value_readings(value: str) -> list[str]:
    """A header value as mitmproxy hands it over (its bytes as latin-1) read as the site may
    read it; a value that is already text (a saved request) is kept as it is."""
    if value.isascii():  # nearly every header: nothing to re-read
        return [value]
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return [value]
    return header_readings(raw)


def request_headers(col: Collector, headers: Mapping[str, str]) -> None:
    """Headers that carry data: every cookie, object storage metadata, the query of the
    Referer, a Content-Disposition file name, any other long value (``x-*`` and custom)."""
    for name, value in headers.items():
        if name in _FORMAT_HEADERS or name.startswith(_FORMAT_PREFIXES):
            continue
        if name == "cookie":  # a part each: decoding one cookie does not re-read the rest
            for cookie in re.split(r";\s*", value):
                if cookie:
                    for reading in _value_readings(cookie):
                        col.text("cookie", reading)
        elif name == "referer":
            query = urlsplit(value).query
            if query:
                form(col, "header:referer", query)
        elif name == "content-disposition":
            for reading in _value_readings(value):
                col.text("header:disposition", reading)
        elif name.startswith(_META_PREFIXES) or len(value) > _MIN_HEADER_VALUE:
            if name.startswith(_META_PREFIXES):
                where = "header:meta"
            else:
                where = "header:x" if name.startswith("x-") else "header:other"
            for reading in _value_readings(value):
                col.text(where, reading)
