"""What one HTTP request or WebSocket message carries, as text parts to scan.

Parts are ``(location, text)`` pairs; the location is a short, bounded label (``query``,
``body:json``, ``multipart:file``...), never a field value, so it may go into audit events.
"""

from __future__ import annotations

import base64
import binascii
import html
import inspect
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from python_multipart.multipart import MultipartParser, parse_options_header

from dlp_addon.errors import ExtractError
from dlp_addon.extract import archive, document, image, ocr, odf, ooxml, sandbox
from dlp_addon.extract.decode import decode_content, inflate
from dlp_addon.extract.filetype import IMAGE, MEDIA, SPREADSHEETS, sniff
from dlp_addon.extract.limits import Budget, Limits
from dlp_addon.extract.runs import EncodedRuns
from dlp_addon.extract.text import decode_readings, decode_text, is_opaque, text_runs

Part = tuple[str, str]


@dataclass(frozen=True)
class HttpInput:
    """A request as the core sees it: no mitmproxy types. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class Attachment:
    """A file the request carries, as the rules see it: its true kind and its shape."""

    kind: str  # xlsx, xls, ods, csv, text, zip, docx, image, media, pdf, ...
    location: str
    sheets: int = 0
    rows: int = 0
    columns: int = 0

    @property
    def group(self) -> str:
        """``spreadsheet``, ``archive``, ``document`` or ``media``: what rules name."""
        if self.kind in SPREADSHEETS:
            return "spreadsheet"
        if self.kind in ("zip", "tar", "gzip", "7z", "rar", "bzip2", "xz", "zstd"):
            return "archive"
        if self.kind in ("image", "media"):
            return "media"
        return "document"


@dataclass(frozen=True)
class Extraction:
    """Text to scan, plus what could not be read and which files were carried."""

    parts: tuple[Part, ...] = field(repr=False)
    unscannable: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    logged: tuple[str, ...] = ()  # unread, but the policy lets it through (audited)
    ocr_seconds: float = 0.0  # spent reading pictures: it moves the request's deadline

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(a.kind for a in self.attachments)

    @property
    def bytes_of_text(self) -> int:
        return sum(len(t) for _, t in self.parts)


_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{24,}={0,2}")
# Hex: 16 or more digits in pairs, maybe as \x escapes or with : or a space between pairs.
_HEX_RUN = re.compile(
    r"(?<![0-9A-Za-z])(?:0[xX])?(?:(?:\\x)?[0-9A-Fa-f]{2}[: ]?){7,}(?:\\x)?[0-9A-Fa-f]{2}"
    r"(?![0-9A-Za-z])"
)
_HEX_NOISE = re.compile(r"\\x|^0[xX]|:")
_BASE32_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9+/])")
_RUNS = EncodedRuns(_BASE64_RUN, _HEX_RUN, _BASE32_RUN)  # the same, fast on long texts
# A character reference: &#49; &#x31; or a named one (&amp; &nbsp; ...).
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_MIN_TABLE_LINES = 2
# Where the twentieth line ends (by str.splitlines' line boundaries).
_TWENTIETH_LINE = re.compile(
    r"(?:[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*+(?>\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])){20}"
)
# A broken image whose unread rest is larger than this is unscannable, not passed.
_MAX_UNPARSED_IMAGE_BYTES = 64 * 1024
_FILE_MAGICS = re.compile(
    rb"PK\x03\x04|PK\x05\x06|%PDF-|7z\xbc\xaf\x27\x1c|Rar!\x1a\x07|\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
)


def _embedded_file(data: bytes) -> int | None:
    """Where the first file we know starts inside ``data`` (a broken image's rest)."""
    m = _FILE_MAGICS.search(data)
    return m.start() if m else None


class _Collector:
    """Walks everything a request carries, depth first, spending one budget."""

    def __init__(self, limits: Limits, deadline: float | None = None) -> None:
        self.budget = Budget(limits)
        self.deadline = deadline
        self.parts: list[Part] = []
        self.unscannable: list[str] = []
        self.logged: list[str] = []
        self.attachments: list[Attachment] = []
        self._files = 0

    def result(self) -> Extraction:
        return Extraction(
            tuple(self.parts),
            tuple(self.unscannable),
            tuple(self.attachments),
            tuple(self.logged),
            self.budget.ocr_seconds,
        )

    def add(self, location: str, text: str) -> str:
        """Record a text part under a location unique in this request (records are per part)."""
        unique = f"{location}#{len(self.parts)}"
        self.parts.append((unique, text))
        return unique

    def text(self, location: str, text: str, depth: int = 0) -> None:
        """A text part, plus what it hides: percent-encoding, \\u escapes, character
        references (``&#49;``), base64, hex and base32 runs (of text, files, or zlib/deflate
        data). Past ``max_decode_depth`` a run that still decodes to something readable is
        unscannable (``too_deep``): never passed unread."""
        if not text:
            return
        self.add(location, text)
        if depth >= self.budget.limits.max_decode_depth:
            if any(raw is not None for _, raw in _encoded_runs(text)):
                self.unscannable.append("too_deep")
            return
        if "&" in text and _REFERENCE.search(text):
            decoded = html.unescape(text)
            if decoded != text:
                self.text(location + ":ent", decoded, depth + 1)
        if "%" in text:
            decoded = unquote_plus(text)
            if decoded != text:
                self.text(location + ":pct", decoded, depth + 1)
        if "\\u" in text:
            unescaped = _U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
            if unescaped != text:
                self.text(location + ":u", unescaped, depth + 1)
        for how, raw in _encoded_runs(text):
            if raw is not None:
                raw = self._inflated(raw)
                self.budget.spend(len(raw))
                self.blob(f"{location}:{how}", raw, None, file=False, depth=depth + 1)

    def _inflated(self, raw: bytes) -> bytes:
        """``raw``, or what it inflates to when it is zlib or raw deflate data holding text (a
        bomb is ``too_large``: refused, never passed)."""
        if sniff(raw) != "binary" or decode_text(raw, None) is not None:
            return raw
        left = self.budget.limits.max_decoded_bytes - self.budget.decoded
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            try:
                inner = inflate(raw, wbits, left)
            except (zlib.error, ExtractError) as e:
                if isinstance(e, ExtractError) and e.reason == "too_large":
                    raise
                continue
            return inner
        return raw

    def _app_compressed(self, data: bytes, depth: int) -> bytes | None:
        """What a zlib or raw deflate body or frame inflates to (chat SDKs compress their own
        frames, whatever the transport does), else ``None``. Read at every size: a small
        compressed frame must not pass unread, nor a large benign one be dropped as opaque."""
        looks_zlib = len(data) > 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        if not looks_zlib and not _raw_deflate(data):
            return None
        if depth >= self.budget.limits.max_archive_depth:
            raise ExtractError("too_deep")
        inner = self._inflated(data)
        return None if inner is data else inner

    def blob(
        self, location: str, data: bytes, charset: str | None, *, file: bool, depth: int = 0
    ) -> None:
        """Bytes whose type is decided by content: text, JSON, a workbook, an archive..."""
        if not data:
            return
        if file:  # each file gets its own location: its records are its own
            self._files += 1
            location = f"{location}@{self._files}"
        # Magic numbers first: an uncompressed PDF or a tar also decodes as "text".
        kind = sniff(data)
        readings = decode_readings(data, charset) if kind == "binary" else []
        if readings:  # every plausible reading: the receiving site reads one of them
            text = readings[0]
            for reading in readings:
                if self.json_text(location, reading, depth):
                    kind = "json"
                else:
                    self.text(location, reading, depth)
            if kind != "json":
                kind = _table_kind(text) if file else "text"
            if file:
                lines = text.count("\n") + 1
                self.attachments.append(Attachment(kind, location, int(kind == "csv"), lines))
            return
        if kind in (IMAGE, MEDIA):
            if file:
                self.attachments.append(Attachment(kind, location))
            self.image(location, data, depth)
            return
        if kind in ("xlsx", "xls", "ods"):
            with sandbox.start_workbook(data, self.budget.limits, self.deadline) as pending:
                package = _package_parts(data, self.budget, kind) if kind != "xls" else None
                sheets = sandbox.workbook_of(pending, self.budget)  # its error comes first
            if isinstance(package, ExtractError):
                raise package
            self.attachments.append(
                Attachment(kind, location, sheets.sheets, sheets.rows, sheets.columns)
            )
            self.document(f"{location}:{kind}", sheets.text)
            self.document(f"{location}:{kind}:sheets", sheets.names)
            self.document(f"{location}:{kind}:parts", sheets.extras)
            if package is not None:
                self._package(f"{location}:{kind}", data, depth, kind, package)
            return
        if kind == "pdf":
            if file:
                self.attachments.append(Attachment(kind, location))
            pdf = document.read_pdf(data, self.budget)
            self.document(location + ":pdf", pdf.text)
            self.text(location + ":pdf:notes", pdf.notes, depth)
            for scan in pdf.scans:
                self.ocr(location + ":pdf:scan", scan)
            if pdf.files and depth >= self.budget.limits.max_archive_depth:
                raise ExtractError("too_deep")
            for embedded in pdf.files:
                self.blob(location + ":pdf:file", embedded, None, file=True, depth=depth + 1)
            return
        if kind in ("zip", "docx", "pptx", "gzip", "tar"):
            if file or depth:
                self.attachments.append(Attachment(kind, location))
            self._container(location, data, kind, depth)
            return
        if kind == "binary" and (inner := self._app_compressed(data, depth)) is not None:
            self.budget.spend(len(inner))
            self.blob(location + ":z", inner, charset, file=file, depth=depth + 1)
            return
        if kind == "binary" and not is_opaque(data):  # e.g. a protobuf frame: read its runs
            self.text(location + ":strings", text_runs(data), depth)
            return
        if file:
            self.attachments.append(Attachment(kind, location))
        self.unscannable.append("opaque" if kind == "binary" else kind)

    def image(self, location: str, data: bytes, depth: int) -> None:
        """An image or MP4: its metadata text read, and whatever follows the format's end read
        as a file of its own (图种). A structure that cannot be followed is passed as an image
        only when the unread rest is small and holds no file we know (its readable runs are
        scanned); else it is unscannable (``image_structure``): a large blob behind a broken
        header is not taken on trust."""
        if ocr.is_picture(data):
            self.ocr(location, data)
        walked = image.walk(data, self.budget)
        if walked is None:  # Matroska/WebM, Ogg: passed, as before
            return
        for label, text in walked.texts:
            self.text(f"{location}:{label}", text, depth)
        if not walked.parsed:
            start = _embedded_file(data)  # anywhere: a wrong turn may have skipped it
            if start is not None:
                self._hidden_file(location, data[start:], depth)
            elif len(data) - walked.stopped_at > _MAX_UNPARSED_IMAGE_BYTES:
                self.unscannable.append("image_structure")
            else:  # a small unread rest: its readable runs (a CSV after a cut-short JPEG)
                self.text(f"{location}:rest", text_runs(data[walked.stopped_at :]), depth)
            return
        for hidden in walked.hidden:  # padding boxes: read unless high-entropy filler
            if sniff(hidden) != "binary" or not is_opaque(hidden):
                self._hidden_file(location, hidden, depth)
        if walked.trailing.strip(b"\x00\r\n\t "):
            self._hidden_file(location, walked.trailing, depth)

    def ocr(self, location: str, data: bytes) -> None:
        """The text in a picture (a screenshot, a photo, a scanned page), read as a file's."""
        spent = self.budget.ocr_seconds
        found = ocr.read(data, self.budget)
        if self.deadline is not None:  # OCR has its own time: the rest keeps what it had
            self.deadline += self.budget.ocr_seconds - spent
        if found.text:
            self.document(location + ":ocr", found.text)
        self.unscannable.extend(filter(None, [found.unscannable]))
        self.logged.extend(filter(None, [found.logged]))

    def _hidden_file(self, location: str, data: bytes, depth: int) -> None:
        if depth >= self.budget.limits.max_archive_depth:
            raise ExtractError("too_deep")
        self.blob(location + ":after", data, None, file=True, depth=depth + 1)

    def _container(self, location: str, data: bytes, kind: str, depth: int) -> None:
        if depth >= self.budget.limits.max_archive_depth:
            raise ExtractError("too_deep")
        if kind == "gzip":
            self.text(location + ":names", archive.gzip_names(data), depth)
            inner = decode_content(
                data, "gzip", self.budget.limits.max_decoded_bytes - self.budget.decoded
            )
            self.budget.spend(len(inner))
            self.blob(location + ":gz", inner, None, file=True, depth=depth + 1)
            return
        if kind in ("docx", "pptx"):
            self._package(f"{location}:{kind}", data, depth, kind)
            return
        if kind == "tar":
            names, members = archive.tar(data, self.budget)
            self.text(location + ":names", names, depth)
            for name, content in members:
                self._member(location + ":tar", name, content, depth)
            return
        self._around_zip(location, data, depth)
        names, comments = archive.listing(data)
        self.text(location + ":names", names, depth)
        self.text(location + ":comment", comments, depth)
        for name, content in archive.entries(data, self.budget):
            self._member(location + ":zip", name, content, depth)

    def _member(self, location: str, name: str, content: bytes, depth: int) -> None:
        """A file in an archive. Thumbs.db, .DS_Store: not a file of ours, not unscannable;
        their readable runs are still scanned (plain text inside does not get through)."""
        if archive.is_os_litter(name, content):
            self.text(location + ":litter", text_runs(content), depth)
        else:
            self.blob(location, content, None, file=True, depth=depth + 1)

    def _around_zip(self, location: str, data: bytes, depth: int) -> None:
        """What a zip (or an Office package) carries outside its entries (``archive.outside``):
        a file of its own (a zip hidden in front, a CSV appended)."""
        for extra in archive.outside(data):
            if extra.strip(b"\x00\r\n\t "):
                self._hidden_file(location, extra, depth)

    def _package(
        self, location: str, data: bytes, depth: int, kind: str, parts: _Package | None = None
    ) -> None:
        """An Office or OpenDocument package's parts (the docx body, comments, properties,
        pivot cache...); files inside it (an embedded workbook) are read as files of their
        own, images and media walked for what they carry. ``parts``: :func:`_package_parts`
        of ``data``, when they were read already."""
        self._around_zip(location, data, depth)
        read = _package_parts(data, self.budget, kind) if parts is None else parts
        if isinstance(read, ExtractError):
            raise read
        entries, items = read
        for name, content in entries:
            if name == "word/document.xml":
                self.document(location, document.docx_text(content))
        for item in items:
            if isinstance(item, ooxml.File) and item.category == "media":
                self.image(f"{location}:media", item.data, depth + 1)
            elif isinstance(item, ooxml.File):
                if depth >= self.budget.limits.max_archive_depth:
                    raise ExtractError("too_deep")
                self.blob(
                    f"{location}:{item.category}", item.data, None, file=True, depth=depth + 1
                )
            elif item.text:
                self.document(f"{location}:{item.category}", item.text)

    def document(self, location: str, text: str) -> None:
        """A file's text (cells, pages), plus its character references decoded (``&#49;``
        typed into cells): the rest of :meth:`text`'s decoding is left to smaller parts."""
        self.add(location, text)
        if "&" in text and _REFERENCE.search(text):
            decoded = html.unescape(text)
            if decoded != text:
                self.add(location + ":ent", decoded)

    def json_text(self, location: str, text: str, depth: int = 0) -> bool:
        stripped = text.lstrip()
        if not stripped.startswith(("{", "[")):
            return False
        try:  # every value of a duplicate key: parsers disagree on which one wins
            doc = json.loads(text, object_pairs_hook=_Object)
        except (ValueError, RecursionError):
            return False
        self.text(location + ":json", "\n".join(_json_lines(doc)), depth)
        return True


_Package = tuple[list[tuple[str, bytes]], list[ooxml.File | ooxml.Text]]


def _package_parts(data: bytes, budget: Budget, kind: str) -> _Package | ExtractError:
    """An Office or OpenDocument package's entries and what ``ooxml`` (``odf``) reads in
    them (a workbook's are read while the sandboxed child reads its cells); an
    ``ExtractError`` is returned, so that the caller can let the cells' error, if any, come
    first."""
    try:
        entries = list(archive.entries(data, budget))
        if kind == "ods":
            return entries, list(odf.read(entries))
        skip = ooxml.READ_ELSEWHERE if kind == "xlsx" else ooxml.DOCUMENT_BODY
        return entries, list(ooxml.read(entries, skip))
    except ExtractError as e:
        return e


def _encoded_runs(text: str) -> Iterator[tuple[str, bytes | None]]:
    """``(how, decoded bytes or None)`` of each base64, hex and base32 run of ``text``."""
    b64, hx, b32 = _RUNS.findall(text)
    for run in b64:
        yield "b64", _b64(run)
    for run in hx:
        yield "hex", _hex(run)
    for run in b32:
        yield "b32", _b32(run)


def _hex(run: str) -> bytes | None:
    """Decoded bytes of a hex run (``313130...``, ``\\x31\\x31...``, ``31:31:30``), when they
    are readable or a file, or compressed data (see ``_worth``)."""
    words = _HEX_NOISE.sub("", run).split(" ")
    try:
        if all(len(w) == 2 for w in words):  # bytes written a pair at a time: "31 31 30"
            raw = bytes.fromhex("".join(words))
        else:  # values hexed one by one and joined by spaces: their spaces kept
            raw = b" ".join(bytes.fromhex(w) for w in words)
    except ValueError:
        return None
    return raw if _worth(raw) or _raw_deflate(raw) else None


def _b32(run: str) -> bytes | None:
    stripped = run.rstrip("=")
    try:
        raw = base64.b32decode(stripped + "=" * (-len(stripped) % 8))
    except (binascii.Error, ValueError):
        return None
    return raw if _worth(raw) or _raw_deflate(raw) else None


def _worth(raw: bytes) -> bool:
    """Decoded bytes worth reading: text, a file we know, or zlib data (its header)."""
    if decode_text(raw, None) is not None or sniff(raw) != "binary":
        return True
    return len(raw) > 2 and raw[0] == 0x78 and (raw[0] << 8 | raw[1]) % 31 == 0


def _b64(run: str) -> bytes | None:
    """Decoded bytes of a base64 (or base64url) run that really is base64, else ``None``."""
    if len(run.rstrip("=")) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(
            run + "=" * (-len(run) % 4),
            altchars=b"-_" if ("-" in run or "_" in run) else None,
            validate=True,
        )
    except (binascii.Error, ValueError):
        return None
    # Hex digests, long digit strings and words also match the alphabet: keep only runs that
    # decode to something readable, a file we know, or compressed data (zlib, raw deflate).
    if _worth(raw) or _raw_deflate(raw):
        return raw
    return None


def _raw_deflate(raw: bytes) -> bool:
    """Whether ``raw`` is a complete raw deflate stream (a quick look: its first 64 KiB)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        d.decompress(raw, 1 << 16)
    except zlib.error:
        return False
    return d.eof or len(d.unconsumed_tail) > 0


def _table_kind(text: str) -> str:
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


class _Object(list[tuple[str, object]]):
    """A JSON object as its pairs in order, duplicate keys included."""


def _json_lines(doc: object) -> Iterator[str]:
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


def _content_type(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    ctype, params = parse_options_header(headers.get("content-type", ""))
    return (
        ctype.decode("latin-1").lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


def _form(col: _Collector, location: str, text: str) -> None:
    """A form's fields as one part, ``name=value`` a line; a value holding JSON (chat APIs
    post ``data={...}``) is also read as the JSON the server parses."""
    pairs = parse_qsl(text, keep_blank_values=True)
    col.text(location, "\n".join(f"{k}={v}" for k, v in pairs))
    for _, value in pairs:
        if value[:1] in ("{", "["):
            col.json_text(location, value)


# Part headers that only describe the part; any other one is data (``X-Note: ...``).
_PART_FORMAT_HEADERS = frozenset({b"content-type", b"content-transfer-encoding", b"content-length"})


def _header_readings(raw: bytes) -> list[str]:
    """A header's bytes as the receiving site may read them: UTF-8 or GB18030 (browsers send
    a file name's bytes as they are), else latin-1."""
    return decode_readings(raw, None) or [raw.decode("latin-1")]


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


def _multipart(col: _Collector, body: bytes, boundary: str) -> None:
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
            for reading in _header_readings(raw_disp):
                col.text("multipart:filename", reading)
        for key, value in headers:
            if key != b"content-disposition" and key not in _PART_FORMAT_HEADERS:
                for reading in _header_readings(value):
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


def _value_readings(value: str) -> list[str]:
    """A header value as mitmproxy hands it over (its bytes as latin-1) read as the site may
    read it; a value that is already text (a saved request) is kept as it is."""
    if value.isascii():  # nearly every header: nothing to re-read
        return [value]
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return [value]
    return _header_readings(raw)


def _request_headers(col: _Collector, headers: Mapping[str, str]) -> None:
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
                _form(col, "header:referer", query)
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


def extract_http(
    req: HttpInput, limits: Limits | None = None, deadline: float | None = None
) -> Extraction:
    """Parts of the URL (path, query), of the headers that carry data (cookies, object storage
    metadata, long custom values) and of the body, decoded and parsed by content."""
    limits = limits or Limits()
    col = _Collector(limits, deadline)
    path, _, query = req.path.partition("?")
    col.text("path", unquote(path))
    if query:
        _form(col, "query", query)
    _request_headers(col, req.headers)
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
        _multipart(col, body, params.get("boundary", ""))
    elif ctype == "application/x-www-form-urlencoded" or _looks_urlencoded(body):
        readings = decode_readings(body, charset)
        if not readings:
            raise ExtractError("charset")
        for text in readings:
            _form(col, "body:form", text)
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


_PAIR = rb"[A-Za-z0-9_.\-\[\]]{1,64}=[^\s&]*"
_URLENCODED = re.compile(rb"^" + _PAIR + rb"(?:&" + _PAIR + rb")+$")


def _looks_urlencoded(body: bytes) -> bool:
    """A form whatever the Content-Type says: ``a=1&b=%E4...`` (two or more pairs)."""
    return len(body) < 10 * 1024 * 1024 and _URLENCODED.match(body) is not None


def extract_ws(
    content: bytes, is_text: bool, limits: Limits | None = None, deadline: float | None = None
) -> Extraction:
    """Parts of one WebSocket message (text, JSON, or a binary frame's readable runs)."""
    col = _Collector(limits or Limits(), deadline)
    if is_text:
        text = content.decode("utf-8", "replace")
        if not col.json_text("ws", text):
            col.text("ws", text)
    else:
        col.blob("ws", content, None, file=False)
    return col.result()
