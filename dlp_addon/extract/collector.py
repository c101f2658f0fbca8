"""The parts of one request as they are found, on one budget, and what a text hides.

:class:`Collector` records parts and reads every layer a text may hide (character
references, percent-encoding, ``\\u`` escapes, base64/hex/base32 runs, JSON); bytes go to
:meth:`Collector.blob`, which :class:`dlp_addon.extract.files.Walker` implements by kind.
"""

from __future__ import annotations

import html
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from functools import partial
from urllib.parse import unquote_plus

from dlp_addon.errors import ExtractError
from dlp_addon.extract import encoded_runs
from dlp_addon.extract.decode import inflate
from dlp_addon.extract.extraction import Ahead, Attachment, Extraction, Part
from dlp_addon.extract.filetype import sniff
from dlp_addon.extract.json_lines import json_lines
from dlp_addon.extract.limits import Budget, Limits
from dlp_addon.extract.text import decode_text

# A character reference: &#49; &#x31; or a named one (&amp; &nbsp; ...).
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# A text at least this long (a sheet, a CSV) has its encoded runs decoded only after its own
# scan when the collector is lazy: the early verdict may make them moot.
LONG_TEXT = 1 << 16


class Collector(ABC):
    """Walks everything a request carries, depth first, spending one budget."""

    def __init__(self, limits: Limits, deadline: float | None = None, lazy: bool = False) -> None:
        self.budget = Budget(limits)
        self.deadline = deadline
        self.parts: list[Part] = []
        self.unscannable: list[str] = []
        self.logged: list[str] = []
        self.attachments: list[Attachment] = []
        self._lazy = lazy
        self._serial = 0  # parts are numbered in order; a replaced one's number is not reused
        self._later: list[Callable[[], None]] = []
        self._previews: set[str] = set()
        self._open: list[Callable[[], None]] = []  # closes what the deferred work waits for
        self.ahead: Ahead = _joined  # who reads a long text as it comes (see ``Extraction.rest``)

    def result(self) -> Extraction:
        """What was collected. A lazy collector's long texts may still have their encoded runs
        to decode: then ``rest`` does that and gives the whole extraction."""
        return Extraction(
            tuple(self.parts),
            tuple(self.unscannable),
            tuple(self.attachments),
            tuple(self.logged),
            self.budget.ocr_seconds,
            rest=self._rest if self._later else None,
            previews=frozenset(self._previews),
            discard=self.discard if self._later else None,
        )

    def _rest(self, ahead: Ahead | None = None) -> Extraction:
        self.ahead = ahead or _joined
        try:
            while self._later:  # a decoded run may be a long text whose own runs wait in turn
                self._later.pop(0)()
        except BaseException:
            self.discard()
            raise
        return self.result()

    def discard(self) -> None:
        """Drop the deferred work and stop what it would have waited for."""
        self._later.clear()
        while self._open:
            self._open.pop()()

    def preview(self, location: str, text: str) -> str:
        """Record a preview part (see ``Extraction.previews``); :meth:`replace` ends it."""
        unique = self.add(location, text)
        self._previews.add(unique)
        return unique

    def replace(self, preview: str) -> None:
        """Remove the preview part ``preview``: the whole text it began has come."""
        self.parts = [part for part in self.parts if part[0] != preview]
        self._previews.discard(preview)

    def add(self, location: str, text: str, unique: str | None = None) -> str:
        """Record a text part under a location unique in this request (records are per part),
        or under the one :meth:`reserve` gave."""
        unique = unique or self.reserve(location)
        self.parts.append((unique, text))
        return unique

    def reserve(self, location: str) -> str:
        """A location unique in this request, for a part recorded later (its text is still on
        its way: ``Ahead``)."""
        unique = f"{location}#{self._serial}"
        self._serial += 1
        return unique

    @abstractmethod
    def blob(
        self, location: str, data: bytes, charset: str | None, *, file: bool, depth: int = 0
    ) -> None:
        """Bytes whose type is decided by content: text, JSON, a workbook, an archive..."""

    def text(self, location: str, text: str, depth: int = 0) -> None:
        """A text part, plus what it hides: percent-encoding, \\u escapes, character
        references (``&#49;``), base64, hex and base32 runs (of text, files, or zlib/deflate
        data). Past ``max_decode_depth`` a run that still decodes to something readable is
        unscannable (``too_deep``): never passed unread."""
        if not text:
            return
        self.add(location, text)
        if self._lazy and len(text) >= LONG_TEXT:
            self._later.append(partial(self._hidden, location, text, depth))
        else:
            self._hidden(location, text, depth)

    def _hidden(self, location: str, text: str, depth: int) -> None:
        """What :meth:`text` reads inside a text it has recorded."""
        if depth >= self.budget.limits.max_decode_depth:
            if any(raw is not None for _, raw in encoded_runs.decoded(text)):
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
        for how, raw in encoded_runs.decoded(text):
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

    def document(self, location: str, text: str, unique: str | None = None) -> None:
        """A file's text (cells, pages), plus its character references decoded (``&#49;``
        typed into cells): the rest of :meth:`text`'s decoding is left to smaller parts.
        ``unique``: the location :meth:`reserve` gave it."""
        self.add(location, text, unique)
        if "&" in text and _REFERENCE.search(text):
            decoded = html.unescape(text)
            if decoded != text:
                self.add(location + ":ent", decoded)

    def json_text(self, location: str, text: str, depth: int = 0) -> bool:
        """``text`` read as JSON, a line per object, when it is JSON (else ``False``)."""
        lines = json_lines(text)
        if lines is None:
            return False
        self.text(location + ":json", "\n".join(lines), depth)
        return True


def _joined(location: str, pieces: Iterable[str]) -> str:
    """The ``Ahead`` of a caller that reads texts only when they are whole."""
    return "".join(pieces)
