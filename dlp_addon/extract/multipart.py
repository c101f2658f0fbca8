"""A multipart/form-data body: its parts' names, file names, headers and data, and what lies
before the first part (the preamble) and after the last (the epilogue)."""

from __future__ import annotations

import inspect

from python_multipart.multipart import MultipartParser, parse_options_header

from dlp_addon.errors import ExtractError
from dlp_addon.extract.collector import Collector
from dlp_addon.extract.headers import header_readings

# Part headers that only describe the part; any other one is data (``X-Note: ...``).
_PART_FORMAT_HEADERS = frozenset({b"content-type", b"content-transfer-encoding", b"content-length"})

# python-multipart refuses a part header over 4 KiB and more than 8 of them; servers take more
# (a 20-row table fits in a file name), so the body's own limits bound them here.
_PARSER_LIMITS: dict[str, int] = (
    {"max_header_count": 256, "max_header_size": 1 << 20}
    if "max_header_size" in inspect.signature(MultipartParser).parameters
    else {}
)


def _multipart_bounds(body: bytes, boundary: str) -> tuple[int, int]:
    """Where the parts start (after the preamble) and where the epilogue starts (after the
    first closing delimiter, which part data cannot hold). Servers skip a preamble and an
    epilogue, but a site that stores the raw body keeps them: both are read."""
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        start = 0
    else:
        found = body.find(b"\n" + delimiter)
        if found < 0:
            raise ExtractError("multipart")
        start = found + 1
    close = delimiter + b"--"
    if body.startswith(close, start):
        return start, start + len(close)
    end = body.find(b"\r\n" + close, start)
    return start, len(body) if end < 0 else end + 2 + len(close)


def multipart(col: Collector, body: bytes, boundary: str) -> None:
    if not boundary:
        raise ExtractError("multipart")
    start, end = _multipart_bounds(body, boundary)
    # The line break before a delimiter and the one after the closing delimiter belong to them.
    preamble = body[:start].removesuffix(b"\n").removesuffix(b"\r")
    epilogue = body[end:].removeprefix(b"\r\n")
    for location, extra in (("multipart:preamble", preamble), ("multipart:epilogue", epilogue)):
        if extra.strip():  # a file (a zip after the parts) is read as a file
            col.blob(location, extra, None, file=True)
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
        raw_disp = hdrs.get(b"content-disposition", b"")
        _, disp = parse_options_header(raw_disp)
        _, ctype_params = parse_options_header(hdrs.get(b"content-type", b""))
        charset = ctype_params.get(b"charset", b"").decode("latin-1") or None
        # filename* (RFC 5987) is dropped by the parser, but clients send it and sites read it.
        is_file = b"filename" in disp or b"filename*" in raw_disp.lower()
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        col.text("multipart:name", name)
        if is_file:  # the whole header: filename="...", filename*=UTF-8''%E5... alike
            for reading in header_readings(raw_disp):
                col.text("multipart:filename", reading)
        for key, value in headers:
            if key != b"content-disposition" and key not in _PART_FORMAT_HEADERS:
                for reading in header_readings(value):
                    col.text("multipart:header", reading)
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
        **_PARSER_LIMITS,
    )
    try:
        parser.write(body[start:end])
        parser.finalize()
    except ExtractError:  # from a part's content (a bomb, an encrypted file): keep its reason
        raise
    except Exception as e:  # the parser raises several types; any of them means unreadable
        raise ExtractError("multipart") from e
    if not state["ended"]:
        raise ExtractError("multipart")
