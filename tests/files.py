"""Files for upload tests, built in the test from synthetic data: never committed binaries.

Every builder is deterministic (from a seed where randomness is involved), so a failing case can
be replayed, and returns the file's bytes. Spreadsheets come from the libraries real users'
software resembles (openpyxl for xlsx, xlwt for xls, odfpy for ods); the hostile files (bombs,
encrypted archives) are written by hand with ``zlib`` and ``struct`` so that their structure is
exactly what the name says and their size in memory stays small while they are built.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence

from tests.synth import customer_records

Cell = str | int | float
Row = Sequence[Cell]

CUSTOMER_HEADER: tuple[str, ...] = ("姓名", "身份证号", "手机号码", "住址")
MOBILE_HEADER = "手机号码"
PRICE_HEADER: tuple[str, ...] = ("品名", "货号", "颜色", "单价（元）", "库存")

MIB = 1024 * 1024


# --- rows ---------------------------------------------------------------------------------------


def customer_rows(n: int, seed: int) -> list[list[Cell]]:
    """Header plus ``n`` rows [姓名, 身份证号, 手机号码, 住址] of synthetic customers."""
    rows: list[list[Cell]] = [list(CUSTOMER_HEADER)]
    rows.extend([r["name"], r["id"], r["mobile"], r["address"]] for r in customer_records(n, seed))
    return rows


def mobile_only_rows(n: int, seed: int) -> list[list[Cell]]:
    """Header plus ``n`` rows [姓名, 手机号码, 住址]: mobiles are the only identifiers."""
    rows: list[list[Cell]] = [["姓名", MOBILE_HEADER, "住址"]]
    rows.extend([r["name"], r["mobile"], r["address"]] for r in customer_records(n, seed))
    return rows


_PRODUCTS = ("拉杆箱", "登机箱", "旅行背包", "收纳袋", "行李牌", "颈枕", "密码锁", "行李带")
_COLOURS = ("黑色", "白色", "藏青色", "玫瑰金", "灰色", "军绿色")


def price_rows(n: int = 30, seed: int = 7) -> list[list[Cell]]:
    """Header plus ``n`` products with prices and stock: no personal data, no long numbers."""
    rng = random.Random(seed)
    rows: list[list[Cell]] = [list(PRICE_HEADER)]
    for i in range(n):
        rows.append(
            [
                f"{rng.choice(_PRODUCTS)} {rng.choice((20, 24, 26, 28))}寸",
                f"SKU-LX{2019 + i % 7}-{i:03d}",
                rng.choice(_COLOURS),
                rng.randrange(19, 1999) + rng.choice((0.0, 0.5, 0.9, 0.99)),
                rng.randrange(0, 500),
            ]
        )
    return rows


# --- spreadsheets -------------------------------------------------------------------------------


def _mobiles_as_numbers(rows: Sequence[Row]) -> list[list[Cell]]:
    """The same rows with every cell of the 手机号码 column an integer (as Excel stores a
    number typed into a cell)."""
    if not rows:
        return []
    header = list(rows[0])
    col = header.index(MOBILE_HEADER) if MOBILE_HEADER in header else -1
    out: list[list[Cell]] = [header]
    for row in rows[1:]:
        cells = list(row)
        if 0 <= col < len(cells) and isinstance(cells[col], str) and str(cells[col]).isdigit():
            cells[col] = int(cells[col])
        out.append(cells)
    return out


def xlsx(
    rows: Sequence[Row],
    *,
    sheet: str = "客户",
    hidden_rows: Sequence[Row] | None = None,
    mobile_as_number: bool = False,
) -> bytes:
    """An xlsx workbook with ``rows`` on the visible sheet ``sheet``.

    With ``hidden_rows``, those rows go on a second sheet whose ``sheet_state`` is ``hidden``
    (pass the personal rows there and a price list as ``rows``). ``mobile_as_number`` stores
    the 手机号码 column as integers on every sheet.
    """
    from openpyxl import Workbook

    if mobile_as_number:
        rows = _mobiles_as_numbers(rows)
        if hidden_rows is not None:
            hidden_rows = _mobiles_as_numbers(hidden_rows)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = sheet
    for row in rows:
        ws.append(list(row))
    if hidden_rows is not None:
        hidden = wb.create_sheet("Sheet2")
        for row in hidden_rows:
            hidden.append(list(row))
        hidden.sheet_state = "hidden"
        wb.active = 0
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def price_list_xlsx() -> bytes:
    """A shop's price list: products, SKUs, prices, stock. Nothing personal."""
    return xlsx(price_rows(), sheet="价目表")


def xls(rows: Sequence[Row], *, sheet: str = "客户") -> bytes:
    """A BIFF8 (Excel 97-2003) workbook."""
    import xlwt  # type: ignore[import-untyped]

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet(sheet)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def ods(rows: Sequence[Row], *, sheet: str = "客户") -> bytes:
    """An OpenDocument spreadsheet."""
    from odf.opendocument import OpenDocumentSpreadsheet  # type: ignore[import-untyped]
    from odf.table import Table, TableCell, TableRow  # type: ignore[import-untyped]
    from odf.text import P  # type: ignore[import-untyped]

    doc = OpenDocumentSpreadsheet()
    table = Table(name=sheet)
    for row in rows:
        tr = TableRow()
        for value in row:
            if isinstance(value, int | float):
                cell = TableCell(valuetype="float", value=str(value))
            else:
                cell = TableCell(valuetype="string")
            cell.addElement(P(text=str(value)))
            tr.addElement(cell)
        table.addElement(tr)
    doc.spreadsheet.addElement(table)
    out = io.BytesIO()
    doc.write(out)
    return out.getvalue()


_BOM_OF = {
    "utf-8": codecs.BOM_UTF8,
    "utf-16-le": codecs.BOM_UTF16_LE,
    "utf-16-be": codecs.BOM_UTF16_BE,
    "utf-32-le": codecs.BOM_UTF32_LE,
    "utf-32-be": codecs.BOM_UTF32_BE,
}


def csv_bytes(rows: Sequence[Row], encoding: str, delimiter: str = ",", bom: bool = False) -> bytes:
    """CSV (or TSV with ``delimiter="\\t"``) as Excel would export it, in ``encoding``."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows(rows)
    data = buf.getvalue().encode(encoding)
    if bom:
        name = codecs.lookup(encoding).name
        if name not in _BOM_OF:
            raise ValueError(f"no byte order mark for {encoding}")
        data = _BOM_OF[name] + data
    return data


# --- archives -----------------------------------------------------------------------------------

_FIXED_DATE = (2024, 6, 1, 12, 0, 0)


def zip_of(members: Mapping[str, bytes]) -> bytes:
    """A deflated zip of ``members`` (name -> bytes), with fixed timestamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, _FIXED_DATE), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def nested_zip(name: str, data: bytes, depth: int) -> bytes:
    """``data`` as ``name`` inside ``depth`` zips (``depth=2``: a zip holding a zip of it)."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    blob = zip_of({name: data})
    for level in range(1, depth):
        blob = zip_of({f"level{level}.zip": blob})
    return blob


# --- benign binaries ----------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG with a colour gradient (a product photo stand-in)."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type: none
        for x in range(width):
            raw += bytes(((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), 128))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _png_chunk(b"IEND", b"")
    )


_FTYP = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def media_blob(size: int = 4 * MIB, seed: int = 2024) -> bytes:
    """A benign MP4 of ``size`` bytes: an ``ftyp`` box, then one ``mdat`` box of
    deterministic pseudo-random bytes (as compressed video looks)."""
    header = 8
    if size < len(_FTYP) + header:
        raise ValueError("too small for an MP4")
    payload = random.Random(seed).randbytes(size - len(_FTYP) - header)
    return _FTYP + struct.pack(">I", header + len(payload)) + b"mdat" + payload


# --- bombs and encrypted content ----------------------------------------------------------------


def _zeros_member(zf: zipfile.ZipFile, name: str, size: int) -> None:
    """Write ``size`` zero bytes as member ``name`` without holding them in memory."""
    chunk = bytes(MIB)
    info = zipfile.ZipInfo(name, _FIXED_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=size >= 0xFFFFFFFF) as member:
        left = size
        while left > 0:
            n = min(left, len(chunk))
            member.write(chunk[:n])
            left -= n


@functools.cache
def nested_zip_bomb(depth: int = 4, fanout: int = 16, leaf_bytes: int = 16 * MIB) -> bytes:
    """42.zip style: ``fanout`` copies of a zip per level, ``depth`` levels, each leaf a file of
    ``leaf_bytes`` zeros. Expands to ``fanout ** depth * leaf_bytes`` (1 TiB by default)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        _zeros_member(zf, "0.txt", leaf_bytes)
    blob = out.getvalue()
    for _ in range(depth):
        blob = zip_of({f"{i:x}.zip": blob for i in range(fanout)})
    return blob


def _crc_with_zeros(prefix: bytes, zeros: int) -> int:
    crc = zlib.crc32(prefix)
    chunk = bytes(MIB)
    while zeros > 0:
        n = min(zeros, len(chunk))
        crc = zlib.crc32(chunk[:n], crc)
        zeros -= n
    return crc


def _deflate_zeros(size: int) -> bytes:
    """A complete raw deflate stream of ``size`` zero bytes, built 1 MiB at a time."""
    d = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(MIB)
    parts: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, len(chunk))
        parts.append(d.compress(chunk[:n]))
        left -= n
    parts.append(d.flush())
    return b"".join(parts)


_LFH = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
_CDH = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header, 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory, 22 bytes
_DOS_TIME, _DOS_DATE = 0x6000, 0x58C1  # 12:00:00, 2024-06-01


def _local_header(
    name: bytes, *, flags: int, method: int, crc: int, csize: int, usize: int
) -> bytes:
    return (
        _LFH.pack(
            0x04034B50, 20, flags, method, _DOS_TIME, _DOS_DATE, crc, csize, usize, len(name), 0
        )
        + name
    )


def _central_header(
    name: bytes, *, flags: int, method: int, crc: int, csize: int, usize: int, offset: int
) -> bytes:
    fixed = (0x02014B50, 20, 20, flags, method, _DOS_TIME, _DOS_DATE, crc, csize, usize)
    return _CDH.pack(*fixed, len(name), 0, 0, 0, 0, 0, offset) + name


def _end_of_central_directory(entries: int, cd_size: int, cd_offset: int) -> bytes:
    return _EOCD.pack(0x06054B50, 0, 0, entries, entries, cd_size, cd_offset, 0)


@functools.cache
def overlapping_zip_bomb(files: int = 64, kernel_bytes: int = 32 * MIB) -> bytes:
    """David Fifield's "better zip bomb" (quoted overlap), small: ``files`` entries that all
    end in one shared deflate kernel of ``kernel_bytes`` zeros.

    Entry *i*'s data opens with a non-final stored deflate block that quotes entry *i+1*'s
    local file header, so every entry is a valid deflate stream running through all later
    headers into the kernel. The archive is about 40 KB; the entries add up to
    ``files * kernel_bytes`` (2 GiB by default). CRCs and sizes are correct.
    """
    names = [f"{i:04d}.txt".encode() for i in range(files)]
    kernel = _deflate_zeros(kernel_bytes)
    header_len = [_LFH.size + len(n) for n in names]
    quote = 5  # stored block header: BFINAL=0 BTYPE=00, LEN, NLEN

    # Offsets: LFH_0, quote, LFH_1, quote, ..., LFH_{n-1}, kernel.
    offsets: list[int] = []
    pos = 0
    for i in range(files):
        offsets.append(pos)
        pos += header_len[i] + (quote if i < files - 1 else 0)
    end = pos + len(kernel)

    headers: list[bytes] = [b""] * files
    meta: list[tuple[int, int, int]] = [(0, 0, 0)] * files  # crc, csize, usize
    suffix = b""  # the quoted headers after entry i, in order
    for i in reversed(range(files)):
        data_start = offsets[i] + header_len[i]
        crc = _crc_with_zeros(suffix, kernel_bytes)
        csize, usize = end - data_start, len(suffix) + kernel_bytes
        headers[i] = _local_header(names[i], flags=0, method=8, crc=crc, csize=csize, usize=usize)
        meta[i] = (crc, csize, usize)
        suffix = headers[i] + suffix

    body = bytearray()
    for i in range(files):
        body += headers[i]
        if i < files - 1:
            n = header_len[i + 1]
            body += struct.pack("<BHH", 0, n, n ^ 0xFFFF)
    body += kernel
    assert len(body) == end

    cd = bytearray()
    for i in range(files):
        crc, csize, usize = meta[i]
        cd += _central_header(
            names[i], flags=0, method=8, crc=crc, csize=csize, usize=usize, offset=offsets[i]
        )
    return bytes(body + cd + _end_of_central_directory(files, len(cd), len(body)))


@functools.cache
def gzip_bomb(size: int = 2048 * MIB) -> bytes:
    """A gzip member of ``size`` zero bytes (2 GiB -> about 2 MB), built without ever holding
    the zeros: a full flush after each MiB resets the compressor, so every MiB compresses to
    the same bytes, which are repeated."""
    if size % MIB:
        raise ValueError("size must be a whole number of MiB")
    d = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = d.compress(bytes(MIB)) + d.flush(zlib.Z_FULL_FLUSH)
    final = d.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, mtime 0, unix
    trailer = struct.pack("<II", _crc_with_zeros(b"", size), size & 0xFFFFFFFF)
    return header + block * (size // MIB) + final + trailer


_LAUGHS = 10


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
_SPREADSHEETML = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_OFFICE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _minimal_xlsx(shared_strings: bytes, cells: int) -> bytes:
    """The smallest workbook Excel opens: one sheet whose first ``cells`` rows each hold
    shared string *i*."""
    rows = "".join(
        f'<row r="{i + 1}"><c r="A{i + 1}" t="s"><v>{i}</v></c></row>' for i in range(cells)
    )
    parts = {
        "[Content_Types].xml": (
            f"{_XML}"
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CT}.sharedStrings+xml"/>'
            "</Types>"
        ).encode(),
        "_rels/.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_REL}">'
            f'<Relationship Id="rId1" Type="{_OFFICE_REL}/officeDocument" '
            'Target="xl/workbook.xml"/>'
            "</Relationships>"
        ).encode(),
        "xl/workbook.xml": (
            f'{_XML}<workbook xmlns="{_SPREADSHEETML}" '
            f'xmlns:r="{_OFFICE_REL}"><sheets><sheet name="价目表" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>"
        ).encode(),
        "xl/_rels/workbook.xml.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_REL}">'
            f'<Relationship Id="rId1" Type="{_OFFICE_REL}/worksheet" '
            'Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_OFFICE_REL}/sharedStrings" '
            'Target="sharedStrings.xml"/>'
            "</Relationships>"
        ).encode(),
        "xl/worksheets/sheet1.xml": (
            f'{_XML}<worksheet xmlns="{_SPREADSHEETML}"><sheetData>{rows}</sheetData></worksheet>'
        ).encode(),
        "xl/sharedStrings.xml": shared_strings,
    }
    return zip_of(parts)


_LAUGHS = 10


def xml_entity_bomb_xlsx() -> bytes:
    """An xlsx whose ``xl/sharedStrings.xml`` declares billion-laughs entities (10 levels of
    tenfold expansion: 3 GB of text) and uses the last one as both of its shared strings."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, _LAUGHS)]
    top = f"&lol{_LAUGHS - 1};"
    shared = (
        f"{_XML}\n"
        f"<!DOCTYPE sst [\n{chr(10).join(entities)}\n]>\n"
        f'<sst xmlns="{_SPREADSHEETML}" count="2" uniqueCount="2">'
        f"<si><t>{top}</t></si><si><t>{top}</t></si></sst>"
    ).encode()
    return _minimal_xlsx(shared, 2)


def minimal_xlsx(strings: Sequence[str]) -> bytes:
    """A hand-written workbook whose column A holds ``strings`` as shared strings."""
    from xml.sax.saxutils import escape

    sis = "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
    shared = (
        f"{_XML}"
        f'<sst xmlns="{_SPREADSHEETML}" count="{len(strings)}" uniqueCount="{len(strings)}">'
        f"{sis}</sst>"
    ).encode()
    return _minimal_xlsx(shared, len(strings))


def encrypted_zip(seed: int = 5, name: str = "customers.csv", size: int = 2048) -> bytes:
    """A zip with one entry whose general-purpose flag bit 0 (encrypted) is set: a 12-byte
    ZipCrypto header and ``size`` bytes that look like ciphertext. No real crypto."""
    rng = random.Random(seed)
    payload = rng.randbytes(12 + size)
    raw_name = name.encode()
    crc = zlib.crc32(rng.randbytes(size))  # of some plaintext nobody can recover
    fields = {"flags": 0x1, "method": 0, "crc": crc, "csize": len(payload), "usize": size}
    local = _local_header(raw_name, **fields)
    body = local + payload
    cd = _central_header(raw_name, offset=0, **fields)
    return body + cd + _end_of_central_directory(1, len(cd), len(body))
