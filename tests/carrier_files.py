"""Files for the carrier tests (issue 17), built here from synthetic data: the everyday files a
shop sends (a camera photo with its EXIF and thumbnail, a phone video, a tar of photos) and the
hiding places the unit tests of :mod:`tests.unit.test_hiding_places` and
:mod:`tests.unit.test_office_parts` do not build (tar, OpenDocument and xls workbooks with
comments, names and formulas, PDF file-attachment annotations and document information, a WebP
whose RIFF size was stretched over an appended file).

The photo is a decodable baseline JPEG (flat grey: one Huffman code for a zero DC difference and
one for end-of-block) and the video a structurally complete MP4 (``ftyp``, ``moov`` with one AVC
track and its sample tables, ``mdat``): what a viewer and a player accept, not just magic bytes.
"""

from __future__ import annotations

import io
import random
import struct
import tarfile
import zipfile
from collections.abc import Mapping, Sequence

from tests import files as F

# --- a camera photo -----------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def grey_jpeg(width: int, height: int, *, app: bytes = b"") -> bytes:
    """A decodable baseline greyscale JPEG, flat grey; ``app`` segments (APP1 EXIF...) go
    right after SOI, as cameras write them."""
    one_code = bytes([1] + [0] * 15)  # a single 1-bit code
    blocks = -(-width // 8) * -(-height // 8)
    bits = "00" * blocks  # DC difference 0, then end of block, for every block
    bits += "1" * (-len(bits) % 8)
    scan = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    return (
        b"\xff\xd8"
        + app
        + _segment(0xDB, b"\x00" + bytes([1] * 64))
        + _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + _segment(0xC4, b"\x00" + one_code + b"\x00")
        + _segment(0xC4, b"\x10" + one_code + b"\x00")
        + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + scan
        + b"\xff\xd9"
    )


_TIFF_TYPES = {"B": 1, "A": 2, "H": 3, "I": 4, "R": 5, "U": 7}
Entry = tuple[int, str, bytes | int | Sequence[int]]  # tag, type letter, value


def _value(kind: str, value: bytes | int | Sequence[int]) -> tuple[int, bytes]:
    """(count, little-endian bytes) of an IFD value."""
    if isinstance(value, bytes):
        return len(value), value
    values = [value] if isinstance(value, int) else list(value)
    if kind == "R":  # rationals as (numerator, denominator) pairs
        return len(values) // 2, struct.pack(f"<{len(values)}I", *values)
    return len(values), struct.pack(f"<{len(values)}{kind}", *values)


def _ifd(entries: Sequence[Entry], offset: int, next_ifd: int) -> bytes:
    """An IFD placed at ``offset`` of the TIFF block, its long values right after it."""
    data_at = offset + 2 + 12 * len(entries) + 4
    head, tail = struct.pack("<H", len(entries)), b""
    for tag, kind, value in sorted(entries, key=lambda e: e[0]):
        count, raw = _value(kind, value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", data_at + len(tail))
            tail += raw + b"\x00" * (len(raw) % 2)
        head += struct.pack("<HHI", tag, _TIFF_TYPES[kind], count) + field
    return head + struct.pack("<I", next_ifd) + tail


def camera_exif(thumbnail: bytes) -> bytes:
    """An APP1 EXIF segment as a phone writes one: make, model, software, dates, exposure,
    lens, GPS position, and a JPEG thumbnail in IFD1."""
    date = b"2024:06:16 10:21:33\x00"
    ifd0: list[Entry] = [
        (0x010F, "A", b"Xiaomi\x00"),
        (0x0110, "A", b"Redmi K70\x00"),
        (0x0112, "H", 1),
        (0x011A, "R", (72, 1)),
        (0x011B, "R", (72, 1)),
        (0x0128, "H", 2),
        (0x0131, "A", b"K70-user 14 UKQ1.231003.002 V816.0.6.0\x00"),
        (0x0132, "A", date),
        (0x8769, "I", 0),  # Exif IFD, filled in below
        (0x8825, "I", 0),  # GPS IFD
    ]
    exif: list[Entry] = [
        (0x829A, "R", (1, 120)),
        (0x829D, "R", (168, 100)),
        (0x8827, "H", 100),
        (0x9000, "U", b"0231"),
        (0x9003, "A", date),
        (0x920A, "R", (5580, 1000)),
        (0xA434, "A", b"Xiaomi Redmi K70 back camera 5.58mm f/1.68\x00"),
    ]
    gps: list[Entry] = [
        (0x0000, "B", (2, 2, 0, 0)),
        (0x0001, "A", b"N\x00"),
        (0x0002, "R", (30, 1, 16, 1, 1234, 100)),
        (0x0003, "A", b"E\x00"),
        (0x0004, "R", (120, 1, 9, 1, 5678, 100)),
    ]
    ifd1: list[Entry] = [(0x0103, "H", 6), (0x0201, "I", 0), (0x0202, "I", len(thumbnail))]
    sizes = [len(_ifd(e, 0, 0)) for e in (ifd0, exif, gps, ifd1)]
    at = [8]
    for size in sizes[:-1]:
        at.append(at[-1] + size)
    thumb_at = at[-1] + sizes[-1]
    ifd0[8], ifd0[9] = (0x8769, "I", at[1]), (0x8825, "I", at[2])
    ifd1[1] = (0x0201, "I", thumb_at)
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + _ifd(ifd0, at[0], at[3])
        + _ifd(exif, at[1], 0)
        + _ifd(gps, at[2], 0)
        + _ifd(ifd1, at[3], 0)
        + thumbnail
    )
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


def camera_photo() -> bytes:
    """A 1600x1200 phone photo: EXIF with camera data, GPS and a 160x120 thumbnail."""
    return grey_jpeg(1600, 1200, app=camera_exif(grey_jpeg(160, 120)))


# --- a phone video ------------------------------------------------------------------------------


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big"), *payload)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def mp4_video(
    frames: int = 60, frame_bytes: int = 8000, seed: int = 11, *, comment: str = ""
) -> bytes:
    """A 2-second 640x360 H.264 MP4 as a phone's faststart export lays it out: ``ftyp``,
    ``moov`` (one video track, its sample tables pointing into ``mdat``; with ``comment``, a
    ``udta`` with iTunes-style metadata as players show it), ``mdat``."""
    rng = random.Random(seed)
    samples = [
        struct.pack(">I", frame_bytes - 4)
        + bytes([0x65 if i == 0 else 0x41])
        + rng.randbytes(frame_bytes - 5)
        for i in range(frames)
    ]
    sps, pps = (
        bytes.fromhex("6764001eacd940a02ff9610000030001000003003c8f162d96"),
        bytes.fromhex("68ebecb22c"),
    )
    avcc = _box(
        b"avcC",
        bytes([1, 0x64, 0x00, 0x1E, 0xFF, 0xE1]),
        struct.pack(">H", len(sps)) + sps,
        b"\x01" + struct.pack(">H", len(pps)) + pps,
    )
    avc1 = _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1) + bytes(16),
        struct.pack(">HHIIIH", 640, 360, 0x480000, 0x480000, 0, 1),
        bytes(32) + struct.pack(">Hh", 0x18, -1),
        avcc,
    )

    def moov(mdat_at: int) -> bytes:
        stbl = _box(
            b"stbl",
            _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
            _full(b"stts", 0, 0, struct.pack(">III", 1, frames, 512)),
            _full(b"stss", 0, 0, struct.pack(">II", 1, 1)),
            _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
            _full(
                b"stsz",
                0,
                0,
                struct.pack(">II", 0, frames),
                *(struct.pack(">I", len(s)) for s in samples),
            ),
            _full(b"stco", 0, 0, struct.pack(">II", 1, mdat_at)),
        )
        minf = _box(
            b"minf",
            _full(b"vmhd", 0, 1, bytes(8)),
            _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))),
            stbl,
        )
        mdia = _box(
            b"mdia",
            _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, 15360, frames * 512, 0x55C4, 0)),
            _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00"),
            minf,
        )
        tkhd = _full(
            b"tkhd",
            0,
            3,
            struct.pack(">IIIII", 0, 0, 1, 0, 2000),
            bytes(8),
            struct.pack(">hhhH", 0, 0, 0, 0),
            _MATRIX,
            struct.pack(">II", 640 << 16, 360 << 16),
        )
        mvhd = _full(
            b"mvhd",
            0,
            0,
            struct.pack(">IIIIIH", 0, 0, 1000, 2000, 0x10000, 0x100),
            bytes(10),
            _MATRIX,
            bytes(24),
            struct.pack(">I", 2),
        )
        return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia), _udta(comment) if comment else b"")

    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    size = len(moov(0))
    return ftyp + moov(len(ftyp) + size + 8) + _box(b"mdat", *samples)


def _udta(comment: str) -> bytes:
    """``udta/meta/ilst/©cmt/data``: the comment a player's "properties" show."""
    data = _full(b"data", 0, 1, bytes(4), comment.encode())
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"mdir", b"appl", bytes(9))
    return _box(b"udta", _full(b"meta", 0, 0, hdlr, _box(b"ilst", _box(b"\xa9cmt", data))))


# --- archives and stretched containers ----------------------------------------------------------


def tar_of(members: Mapping[str, bytes]) -> bytes:
    """An uncompressed POSIX tar of ``members`` (name -> bytes), fixed times."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1718532000, 0o644
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def webp_stretched(webp: bytes, tail: bytes) -> bytes:
    """``webp`` + ``tail`` with the RIFF size grown to cover ``tail``: a WebP that still
    decodes, whose appended file is now *inside* the container."""
    size = len(webp) - 8 + len(tail)
    return b"RIFF" + struct.pack("<I", size) + webp[8:] + tail


def with_parts(package: bytes, parts: Mapping[str, str | bytes]) -> bytes:
    """A zip package (xlsx, ods, docx) with ``parts`` added or replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename not in parts:
                dst.writestr(info, src.read(info))
        for name, content in parts.items():
            data = content.encode() if isinstance(content, str) else content
            dst.writestr(name, data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


# --- OpenDocument and xls workbooks -------------------------------------------------------------


def ods_with(
    lines: Sequence[str] = (),
    *,
    comments: bool = False,
    sheet_names: bool = False,
    formulas: bool = False,
    named: bool = False,
    description: bool = False,
) -> bytes:
    """A price-list ods whose customers (``lines``, "name id mobile address") hide in cell
    comments, sheet names, formulas saved without a value, named expressions or the document
    description."""
    from odf import dc, office  # type: ignore[import-untyped]
    from odf.opendocument import OpenDocumentSpreadsheet  # type: ignore[import-untyped]
    from odf.table import (  # type: ignore[import-untyped]
        NamedExpression,
        NamedExpressions,
        Table,
        TableCell,
        TableRow,
    )
    from odf.text import P  # type: ignore[import-untyped]

    doc = OpenDocumentSpreadsheet()
    table = Table(name="价目表")
    for i, row in enumerate(F.price_rows(10)):
        tr = TableRow()
        for value in row:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=str(value)))
            tr.addElement(cell)
        if comments and 0 < i <= len(lines):
            note = TableCell(valuetype="string")
            annotation = office.Annotation()
            annotation.addElement(dc.Creator(text="客服"))
            annotation.addElement(P(text=lines[i - 1]))
            note.addElement(annotation)
            tr.addElement(note)
        table.addElement(tr)
    if comments:  # more customers than price rows: one note-only row each
        for line in lines[10:]:
            tr, note, annotation = TableRow(), TableCell(), office.Annotation()
            annotation.addElement(P(text=line))
            note.addElement(annotation)
            tr.addElement(note)
            table.addElement(tr)
    doc.spreadsheet.addElement(table)
    if formulas:
        calc = Table(name="计算")
        for line in lines:
            tr = TableRow()
            for value in line.split(" ")[1:3]:
                tr.addElement(TableCell(formula=f'of:="{value}"'))
            calc.addElement(tr)
        doc.spreadsheet.addElement(calc)
    if sheet_names:
        for line in lines:
            extra = Table(name=" ".join(line.split(" ")[1:3]))
            extra.addElement(TableRow())
            doc.spreadsheet.addElement(extra)
    if named:
        names = NamedExpressions()
        for i, line in enumerate(lines):
            value = " ".join(line.split(" ")[1:3])
            names.addElement(
                NamedExpression(
                    name=f"客户{i}", expression=f'of:="{value}"', basecelladdress="$价目表.$A$1"
                )
            )
        doc.spreadsheet.addElement(names)
    if description:
        doc.meta.addElement(dc.Description(text="\n".join(lines)))
    out = io.BytesIO()
    doc.write(out)
    return out.getvalue()


def xls_with_sheet_names(lines: Sequence[str]) -> bytes:
    """An xls price list with a sheet per customer, named "id mobile"."""
    import xlwt  # type: ignore[import-untyped]

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("价目表")
    for r, row in enumerate(F.price_rows(10)):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    for line in lines:
        wb.add_sheet(" ".join(line.split(" ")[1:3]))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _record(rtype: int, body: bytes) -> bytes:
    return struct.pack("<HH", rtype, len(body)) + body


def _biff_records(stream: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos + 4 <= len(stream):
        rtype, size = struct.unpack_from("<HH", stream, pos)
        out.append((rtype, stream[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return out


def xls_with(
    lines: Sequence[str],
    *,
    formulas: bool = False,
    comments: bool = False,
    names: bool = False,
    products: int = 10,
) -> bytes:
    """An xls price list (xlwt, ``products`` rows) whose customers (``lines``, "name id mobile
    address") hide in formulas with string literals, cell comments (TXO records and their text)
    or defined names (NAME records holding a string constant): records xlwt cannot write are
    added to its BIFF stream by hand, sheet offsets (BOUNDSHEET) moved to match."""
    import xlwt
    from xlwt.CompoundDoc import XlsDoc  # type: ignore[import-untyped]

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("价目表")
    for r, row in enumerate(F.price_rows(products)):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    if formulas:
        calc = wb.add_sheet("计算")
        for r, line in enumerate(lines):
            for c, value in enumerate(line.split(" ")[1:3]):
                calc.write(r, c, xlwt.Formula(f'"{value}"'))
    records = _biff_records(wb.get_biff_data())
    globals_end = next(i for i, (t, _) in enumerate(records) if t == 0x000A)
    if names:
        extra = []
        for i, line in enumerate(lines):
            literal = " ".join(line.split(" ")[1:3]).encode("latin-1")
            rgce = bytes((0x17, len(literal), 0)) + literal
            name = f"C{i}".encode()
            head = struct.pack("<HBBHHHBBBB", 0, 0, len(name), len(rgce), 0, 0, 0, 0, 0, 0)
            extra.append((0x0018, head + b"\x00" + name + rgce))
        grown = sum(4 + len(body) for _, body in extra)
        records = [
            (t, struct.pack("<I", struct.unpack_from("<I", b)[0] + grown) + b[4:])
            if t == 0x0085
            else (t, b)
            for t, b in records
        ]
        records[globals_end:globals_end] = extra
    if comments:
        notes = []
        for line in lines:
            notes.append(
                (
                    0x01B6,
                    struct.pack("<HH", 0x12, 0) + bytes(6) + struct.pack("<HHI", len(line), 16, 0),
                )
            )
            notes.append((0x003C, b"\x01" + line.encode("utf-16-le")))
        records[-1:-1] = notes  # before the last sheet's EOF
    out = io.BytesIO()
    XlsDoc().save(out, b"".join(_record(t, b) for t, b in records))
    return out.getvalue()


def zip_with_unlisted_entry(listed: Mapping[str, bytes], hidden: Mapping[str, bytes]) -> bytes:
    """A zip of ``listed`` and ``hidden`` whose central directory lists only ``listed``: the
    hidden entries' local headers and data stay in the file, where a streaming reader finds
    them."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in {**listed, **hidden}.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 6, 1, 12, 0, 0)), data, zipfile.ZIP_DEFLATED)
        zf.filelist = [i for i in zf.filelist if i.filename in listed]
    return out.getvalue()


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def streamed_zip(members: Mapping[str, bytes]) -> bytes:
    """A zip written to a pipe (as a browser or a Java service streams one): sizes in a data
    descriptor after each entry's data (flag bit 3)."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            with zf.open(name, "w") as fh:
                fh.write(data)
    return bytes(sink.data)
