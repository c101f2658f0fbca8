"""How much one request may make the proxy read, and the running account of it.

A request's content can expand without bound (archives in archives, compression bombs); every
layer spends from one ``Budget`` and stops, unscannable, the moment a limit is passed. Limits
come from the policy's ``inspection`` section. (The policy's budgets across messages are
``decide/budget.py``'s ``CumulativeBudget``.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlp_addon.errors import ExtractError

MiB = 1024 * 1024
_CELL_MARKUP_BYTES = 200


@dataclass(frozen=True)
class OcrLimits:
    """The policy's ``inspection.ocr``: reading text in pictures (see ``extract/ocr.py``)."""

    enabled: bool = True
    timeout_seconds: float = 10.0  # OCR time per request, on top of the request's timeout
    max_pixels: int = 40_000_000  # larger pictures are unscannable (ocr_too_large)
    on_timeout: str = "block"  # block or log a picture OCR could not finish...
    block_above_pixels: int = 250_000  # ...when it is larger than this (it could hold a table)


@dataclass(frozen=True)
class Limits:
    """Safe defaults; the policy may change each one."""

    max_body_bytes: int = 50 * MiB  # largest body (as sent) that is inspected at all
    max_decoded_bytes: int = 64 * MiB  # total bytes produced by decoding and unpacking
    max_archive_depth: int = 3  # zip in zip in zip
    max_archive_entries: int = 1000  # per archive
    max_compression_ratio: float = 100.0  # per entry, once it is over 1 MiB
    max_decode_depth: int = 3  # base64 in JSON in base64 ...
    max_cells: int = 5_000_000  # spreadsheet cells read per request
    ocr: OcrLimits = field(default_factory=OcrLimits)

    @property
    def max_cell_xml_bytes(self) -> int:
        """How much XML a workbook's cells may come in (ods ``content.xml``, xlsx sheets), read
        in passing, a piece at a time: their text (``max_decoded_bytes``) plus 200 bytes of
        markup for each cell ``max_cells`` allows (a LibreOffice string cell with its style
        takes about 130): about 1 GB by default, 17 times the XML of a 100,000-row ods."""
        return self.max_decoded_bytes + _CELL_MARKUP_BYTES * self.max_cells


@dataclass
class Budget:
    """What one request has used of its ``Limits``."""

    limits: Limits
    decoded: int = field(default=0)
    cells: int = field(default=0)
    cell_xml: int = field(default=0)  # XML of cells read in passing (``archive.pieces``)
    ocr_seconds: float = field(default=0.0)  # OCR time spent so far

    def spend(self, nbytes: int) -> None:
        self.decoded += nbytes
        if self.decoded > self.limits.max_decoded_bytes:
            raise ExtractError("too_large")

    def spend_cell_xml(self, nbytes: int) -> None:
        """XML whose cells are charged elsewhere (the cell reader's text), not held: it
        counts against ``max_cell_xml_bytes``, not ``max_decoded_bytes``."""
        self.cell_xml += nbytes
        if self.cell_xml > self.limits.max_cell_xml_bytes:
            raise ExtractError("too_large")

    def spend_cells(self, n: int) -> None:
        self.cells += n
        if self.cells > self.limits.max_cells:
            raise ExtractError("too_large")
