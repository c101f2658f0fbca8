"""What extraction yields: text parts to scan, and the files a request carried.

Parts are ``(location, text)`` pairs; the location is a short, bounded label (``query``,
``body:json``, ``multipart:file``...), never a field value, so it may go into audit events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dlp_addon.extract.filetype import SPREADSHEETS

Part = tuple[str, str]

# Reads a long text as it comes: given the location its part will have and its pieces in order
# (a workbook's rows, as its sandboxed reader builds them), it takes them all and returns the
# whole text. The pipeline scans each piece's lines while the next is on its way and keeps
# their findings for that part; without one, the pieces are joined.
Ahead = Callable[[str, Iterable[str]], str]


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
    # A lazy extraction (``extract_http(..., lazy=True)``) may leave the encoded runs of its
    # long texts undecoded, and the rest of a long workbook's text unread: ``rest(ahead)``
    # reads them (a workbook's text through ``ahead``, if given) and returns the whole
    # extraction, whose parts start with these. ``None``: this is the whole extraction.
    rest: Callable[..., Extraction] | None = field(default=None, repr=False, compare=False)
    # Parts that are a long workbook's first rows, sent ahead by its reader: ``rest()`` gives
    # the whole text instead (a preview part is gone from its parts).
    previews: frozenset[str] = frozenset()
    # Stops what ``rest`` would have waited for (a workbook reader still at work), when the
    # rest is not wanted.
    discard: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(a.kind for a in self.attachments)

    @property
    def bytes_of_text(self) -> int:
        return sum(len(t) for _, t in self.parts)
