"""A file (or any bytes) read by its kind, told by content: text or a table, JSON, a workbook,
a PDF, an Office or OpenDocument package, an image or MP4, an archive, compressed data.

What a file hides around its format (an image's trailing bytes, a zip's gaps, a PDF's
attachments) is read as a file of its own, one archive level deeper.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from functools import partial

from dlp_addon.errors import ExtractError
from dlp_addon.extract import archive, biff, document, image, ocr, odf, ooxml, spreadsheet
from dlp_addon.extract.collector import Collector
from dlp_addon.extract.decode import decode_content
from dlp_addon.extract.encoded_runs import raw_deflate
from dlp_addon.extract.extraction import Attachment
from dlp_addon.extract.filetype import IMAGE, MEDIA, sniff
from dlp_addon.extract.limits import Budget, Limits
from dlp_addon.extract.tables import table_kind
from dlp_addon.extract.text import decode_readings, is_opaque, text_runs

# A broken image whose unread rest is larger than this is unscannable, not passed.
_MAX_UNPARSED_IMAGE_BYTES = 64 * 1024
_FILE_MAGICS = re.compile(
    rb"PK\x03\x04|PK\x05\x06|%PDF-|7z\xbc\xaf\x27\x1c|Rar!\x1a\x07|\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
)


def _embedded_file(data: bytes) -> int | None:
    """Where the first file we know starts inside ``data`` (a broken image's rest)."""
    m = _FILE_MAGICS.search(data)
    return m.start() if m else None


class Walker(Collector):
    """A :class:`Collector` whose bytes are read by their kind."""

    def __init__(self, limits: Limits, deadline: float | None = None, lazy: bool = False) -> None:
        super().__init__(limits, deadline, lazy)
        self._files = 0

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
                kind = table_kind(text) if file else "text"
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
            self._workbook(location, data, kind, depth)
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

    def _workbook(self, location: str, data: bytes, kind: str, depth: int) -> None:
        """A workbook's cells, read by a sandboxed reader while this process reads its package
        parts. A lazy walker takes a long workbook's first rows (``spreadsheet.PREVIEW_CHARS``
        of its text) and its shape as a preview and leaves the rest to ``Extraction.rest``:
        when the first rows already make a rule block, the rest is never built nor sent;
        otherwise the rest of the text is handed to the caller's ``Ahead`` as it comes (the
        pipeline scans one piece while the reader builds the next). An xls's other streams
        (``biff``) are read while the reader reads the cells, or, after a preview, while it
        builds the rest of the text (the first rows may make them moot)."""
        lazy = self._lazy
        book = spreadsheet.Workbook(data, self.budget.limits, self.deadline)
        xls = kind == "xls"
        try:
            package = _package_parts(data, self.budget, kind) if not xls else None
            extras = _xls_extras(data, self.budget) if xls and not lazy else ""
            shape = book.shape(self.budget)
            pieces = book.pieces(self.budget)
            text, whole = _head(pieces) if lazy else ("".join(pieces), True)
            if xls and lazy and whole:  # a short workbook, read whole
                extras = _xls_extras(data, self.budget)
        except BaseException:
            book.close()
            raise
        if isinstance(package, ExtractError):  # the cells' error, if any, came first
            book.close()
            raise package
        if isinstance(extras, ExtractError):
            book.close()
            raise extras
        self.attachments.append(Attachment(kind, location, shape.sheets, shape.rows, shape.columns))
        where = f"{location}:{kind}"
        if not whole:
            preview = self.preview(where, text)
            self._open.append(book.close)
            rest = partial(
                self._workbook_rest, text, pieces, shape, where, preview, data if xls else None
            )
            self._later.append(rest)
        else:
            self._sheets(where, text, shape.names, extras)
        if package is not None:
            self._package(where, data, depth, kind, package)

    def _workbook_rest(
        self,
        head: str,
        pieces: Iterator[str],
        shape: spreadsheet.Shape,
        where: str,
        preview: str,
        xls: bytes | None,
    ) -> None:
        """The rest of a previewed workbook, handed to the ``Ahead`` as it comes (and an xls's
        other streams, read first: the reader is then still making its cells)."""
        extras = _xls_extras(xls, self.budget) if xls is not None else ""
        location = self.reserve(where)
        text = self.ahead(location, itertools.chain((head,), pieces))  # its error first
        if isinstance(extras, ExtractError):
            raise extras
        self._sheets(where, text, shape.names, extras, location)
        self.replace(preview)

    def _sheets(
        self, where: str, text: str, names: str, extras: str, location: str | None = None
    ) -> None:
        self.document(where, text, location)
        self.document(f"{where}:sheets", names)
        self.document(f"{where}:parts", extras)

    def _app_compressed(self, data: bytes, depth: int) -> bytes | None:
        """What a zlib or raw deflate body or frame inflates to (chat SDKs compress their own
        frames, whatever the transport does), else ``None``. Read at every size: a small
        compressed frame must not pass unread, nor a large benign one be dropped as opaque."""
        looks_zlib = len(data) > 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        if not looks_zlib and not raw_deflate(data):
            return None
        if depth >= self.budget.limits.max_archive_depth:
            raise ExtractError("too_deep")
        inner = self._inflated(data)
        return None if inner is data else inner

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


def _head(pieces: Iterator[str]) -> tuple[str, bool]:
    """The first pieces of a workbook's text, joined, once they reach
    ``spreadsheet.PREVIEW_CHARS`` (a preview), or all of them when the text is shorter; and
    whether that is all of it."""
    got: list[str] = []
    chars = 0
    for piece in pieces:
        got.append(piece)
        chars += len(piece)
        if chars >= spreadsheet.PREVIEW_CHARS:
            return "".join(got), False
    return "".join(got), True


def _xls_extras(data: bytes, budget: Budget) -> str | ExtractError:
    """``biff.extras`` (comments, names, formula text, other streams), read while the
    sandboxed reader reads the cells and charged to ``budget``; an ``ExtractError`` is
    returned, as by :func:`_package_parts`."""
    try:
        extras = biff.extras(data)
        budget.spend(len(extras))
    except ExtractError as e:
        return e
    return extras


_Package = tuple[list[tuple[str, bytes]], list[ooxml.File | ooxml.Text]]


def _package_parts(data: bytes, budget: Budget, kind: str) -> _Package | ExtractError:
    """An Office or OpenDocument package's entries and what ``ooxml`` (``odf``) reads in
    them (a workbook's are read while the sandboxed reader reads its cells); an
    ``ExtractError`` is returned, so that the caller can let the cells' error, if any, come
    first."""
    try:
        if kind in ("xlsx", "ods"):
            return _workbook_parts(data, budget, kind == "ods")
        entries = list(archive.entries(data, budget))
        return entries, list(ooxml.read(entries, ooxml.DOCUMENT_BODY))
    except ExtractError as e:
        return e


def _workbook_parts(data: bytes, budget: Budget, ods: bool) -> _Package:
    """A workbook package's parts. Those holding the cells (an ods ``content.xml``, an xlsx's
    sheets) are searched a piece of whole rows at a time (comments, names, formulas) and
    never held: the cells are charged once, as the cell reader's text, and what is found is
    charged as it is found; the XML goes to ``Budget.spend_cell_xml`` and the per-entry
    ratio (a bomb is refused). An xlsx's shared strings are the cell reader's alone."""
    zf, infos = archive.open_zip(data, budget.limits)
    cells, cut, search = (
        (odf.is_content, odf.rows_end, odf.content_text)
        if ods
        else (ooxml.is_sheet, ooxml.rows_end, ooxml.formulas)
    )
    entries: list[tuple[str, bytes]] = []
    found: list[ooxml.File | ooxml.Text] = []
    for info in infos:
        if cells(info.filename):
            texts = []
            for piece in archive.pieces(zf, info, budget, cut):
                text = search(piece)
                budget.spend(len(text))
                texts.append(text)
            found.append(ooxml.Text("comments" if ods else "formulas", _lines(texts)))
        elif not ods and info.filename == ooxml.SHARED_STRINGS:
            archive.check(info, budget.limits)
        else:
            entries.append((info.filename, archive.read(zf, info, budget)))
    found += odf.read(entries) if ods else ooxml.read(entries, ooxml.READ_ELSEWHERE)
    return entries, found


def _lines(texts: list[str]) -> str:
    return "\n".join(text for text in texts if text)
