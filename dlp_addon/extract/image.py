"""Images and MP4 walked far enough to know where they end, and the text they carry.

A photo can carry a file after its end (图种: ``copy /b photo.jpg + data.zip``; viewers stop at
JPEG EOI, PNG IEND, the GIF trailer, the RIFF size of a WebP, the last MP4 box), and text in
its metadata (PNG tEXt/zTXt/iTXt, JPEG COM, EXIF comments, XMP). ``walk`` returns both: the
text as ``(label, text)`` pairs and the bytes past the end, which the caller reads as a file of
its own. Pixels are not decoded. A structure that cannot be followed is ``parsed=False`` with
the offset where reading stopped; the caller decides (see ``files.Walker.image``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from dlp_addon.errors import ExtractError
from dlp_addon.extract.decode import inflate
from dlp_addon.extract.exif import decode
from dlp_addon.extract.exif import texts as exif_texts
from dlp_addon.extract.filetype import sniff
from dlp_addon.extract.limits import Budget
from dlp_addon.extract.text import text_runs

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXT_JPEG = b"http://ns.adobe.com/xmp/extension/\x00"
_MAX_META_TEXT = 4 * 1024 * 1024  # text one image's metadata may add (inflated zTXt included)
_MP4_SKIP_BOXES = frozenset({b"free", b"skip"})
_MP4_BULK = frozenset({b"mdat"})  # media data: not copied, not read
_MP4_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"mfra", b"sidx"}
    | {b"ssix", b"prft", b"emsg", b"pdin"}
)
_PNG_CHUNKS = frozenset(
    b"IHDR PLTE IDAT IEND tRNS cHRM gAMA iCCP sBIT sRGB cICP mDCV cLLI bKGD hIST pHYs sPLT tIME "
    b"acTL fcTL fdAT oFFs pCAL sCAL sTER gIFg gIFx dSIG tEXt zTXt iTXt eXIf".split()
)
_GIF_APPS = frozenset({b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"})
_WEBP_CHUNKS = frozenset(
    {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP", b"EXIF", b"XMP "}
)


class _Malformed(Exception):
    """The structure cannot be followed from here."""


@dataclass
class Walk:
    """What an image or MP4 carries besides its pixels."""

    kind: str  # jpeg, png, gif, webp, mp4
    texts: list[tuple[str, str]] = field(default_factory=list)
    trailing: bytes = b""  # bytes after the format's end (a file of their own)
    # non-empty MP4 free/skip boxes, unknown WebP chunks, bytes inside a RIFF size
    hidden: list[bytes] = field(default_factory=list)
    parsed: bool = True
    stopped_at: int = 0  # where reading stopped when not parsed


def kind_of(data: bytes) -> str | None:
    """The format ``walk`` knows for ``data``, or ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(_PNG_SIG):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "mp4"
    return None


def walk(data: bytes, budget: Budget) -> Walk | None:
    """The structure of a JPEG, PNG, GIF, WebP or MP4; ``None`` for any other bytes."""
    kind = kind_of(data)
    if kind is None:
        return None
    result = Walk(kind)
    reader = {"jpeg": _jpeg, "png": _png, "gif": _gif, "webp": _webp, "mp4": _mp4}[kind]
    try:
        end = reader(data, result, budget)
        result.trailing = data[end:]
    except _Malformed as e:
        result.parsed = False
        result.stopped_at = int(e.args[0]) if e.args else 0
    spent = sum(len(t) for _, t in result.texts)
    if spent > _MAX_META_TEXT:
        raise ExtractError("too_large")
    budget.spend(spent)
    return result


# --- JPEG ---------------------------------------------------------------------------------------


def _jpeg(data: bytes, out: Walk, budget: Budget) -> int:
    """Segments from SOI to EOI; entropy-coded data after each SOS skipped to the next marker."""
    pos = 2
    n = len(data)
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise _Malformed(pos)
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            raise _Malformed(pos)
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if pos + 2 > n:
            raise _Malformed(pos)
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > n:
            raise _Malformed(pos)
        payload = data[pos + 2 : pos + length]
        pos += length
        if marker == 0xFE:
            out.texts.append(("jpeg:com", decode(payload)))
        elif marker == 0xE1:
            if payload.startswith(b"Exif\x00\x00"):
                _add_exif(payload[6:], out)
            elif payload.startswith(_XMP_JPEG):
                out.texts.append(("xmp", decode(payload[len(_XMP_JPEG) :])))
            elif payload.startswith(_XMP_EXT_JPEG):  # extended XMP: GUID, size, offset, data
                out.texts.append(("xmp", decode(payload[len(_XMP_EXT_JPEG) + 40 :])))
            else:
                _extra("jpeg:app", payload, out)
        elif 0xE2 <= marker <= 0xEF:  # ICC, MPF, IPTC (APP13), vendors' segments
            _extra("jpeg:app", payload, out)
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            pos = _after_scan(data, pos)


def _after_scan(data: bytes, start: int) -> int:
    n = len(data)
    pos = start
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise _Malformed(start)  # truncated: the whole scan is of unknown extent
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:  # stuffed byte, RSTn, fill
            pos += 1 if nxt == 0xFF else 2
            continue
        return pos


def _add_exif(tiff: bytes, out: Walk) -> None:
    text = exif_texts(tiff)
    if text:
        out.texts.append(("exif", text))


# --- PNG ----------------------------------------------------------------------------------------


def _png(data: bytes, out: Walk, budget: Budget) -> int:
    pos = len(_PNG_SIG)
    n = len(data)
    room = min(_MAX_META_TEXT, budget.limits.max_decoded_bytes - budget.decoded)
    while True:
        if pos + 12 > n:
            raise _Malformed(pos)
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + int(length)
        if end > n or not ctype.isalpha():
            raise _Malformed(pos)
        payload = data[pos + 8 : pos + 8 + length]
        pos = end
        if ctype == b"IEND":
            return pos
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            text = _png_text(ctype, payload, room)
            room -= len(text)
            out.texts.append(("png:" + ctype.decode(), text))
        elif ctype == b"eXIf":
            _add_exif(payload, out)
        elif ctype not in _PNG_CHUNKS:  # a private chunk (prVt, mkBF...)
            _extra("png:chunk", payload, out)


def _png_text(ctype: bytes, payload: bytes, room: int) -> str:
    """The keyword and text of a tEXt (Latin-1), zTXt (deflated Latin-1) or iTXt (UTF-8, maybe
    deflated) chunk; compressed text inflates within what is left of the budget."""
    keyword, _, rest = payload.partition(b"\x00")
    if ctype == b"tEXt":
        return keyword.decode("latin-1") + " " + decode(rest)
    if ctype == b"zTXt":
        return keyword.decode("latin-1") + " " + decode(_inflate(rest[1:], room))
    if len(rest) < 2:
        return keyword.decode("latin-1")
    compressed, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\x00")
    translated, _, body = body.partition(b"\x00")
    if compressed:
        body = _inflate(body, room)
    return " ".join(
        (keyword.decode("latin-1"), translated.decode("utf-8", "replace"), decode(body))
    )


def _inflate(raw: bytes, room: int) -> bytes:
    try:
        return inflate(raw, zlib.MAX_WBITS, max(room, 0))
    except zlib.error:
        return b""  # not deflate data: nothing a viewer would show either
    except ExtractError as e:
        if e.reason == "too_large":
            raise
        return b""


# --- GIF ----------------------------------------------------------------------------------------


def _gif(data: bytes, out: Walk, budget: Budget) -> int:
    """Header, colour tables, then extension and image blocks (sub-blocks) to the trailer."""
    n = len(data)
    if n < 13:
        raise _Malformed(0)
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        if pos >= n:
            raise _Malformed(pos)
        block = data[pos]
        if block == 0x3B:  # trailer
            return pos + 1
        if block == 0x21:  # extension: label, then sub-blocks
            if pos + 2 > n:
                raise _Malformed(pos)
            label = data[pos + 1]
            body, pos = _sub_blocks(data, pos + 2)
            if label == 0xFE:  # comment
                out.texts.append(("gif:comment", decode(body)))
            elif label == 0x01:  # plain text: 12 bytes of grid, then the text
                out.texts.append(("gif:text", decode(body[13:])))
            elif label == 0xFF and body[:11] == b"XMP DataXMP":
                out.texts.append(("xmp", decode(body[11:])))
            elif label == 0xFF and body[:11] not in _GIF_APPS:
                _extra("gif:app", body, out)
        elif block == 0x2C:  # image descriptor, local colour table, LZW data
            if pos + 10 > n:
                raise _Malformed(pos)
            lflags = data[pos + 9]
            pos += 10 + (3 * 2 ** ((lflags & 7) + 1) if lflags & 0x80 else 0)
            _, pos = _sub_blocks(data, pos + 1)  # + the LZW minimum code size byte
        else:
            raise _Malformed(pos)


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    """The concatenated sub-blocks starting at ``pos`` (length-prefixed, ending with 0)."""
    parts: list[bytes] = []
    n = len(data)
    while True:
        if pos >= n:
            raise _Malformed(pos)
        size = data[pos]
        pos += 1
        if size == 0:
            return b"".join(parts), pos
        if pos + size > n:
            raise _Malformed(pos)
        parts.append(data[pos : pos + size])
        pos += size


# --- WebP (RIFF) --------------------------------------------------------------------------------


def _webp(data: bytes, out: Walk, budget: Budget) -> int:
    """Chunks inside the RIFF size. The size is the writer's word: bytes inside it that do not
    form a chunk, and chunks of no WebP type, are hidden data (a stretched size covering an
    appended file), read like what follows the end."""
    (size,) = struct.unpack_from("<I", data, 4)
    end = 8 + size + (size & 1)
    if size < 4 or 8 + size > len(data):
        raise _Malformed(0)
    pos = 12
    while pos + 8 <= 8 + size:
        fourcc, length = struct.unpack_from("<4sI", data, pos)
        if not _box_type(fourcc) or pos + 8 + length > 8 + size:
            break
        payload = data[pos + 8 : pos + 8 + length]
        if fourcc == b"EXIF":
            _add_exif(payload[6:] if payload.startswith(b"Exif\x00\x00") else payload, out)
        elif fourcc == b"XMP ":
            out.texts.append(("xmp", decode(payload)))
        elif fourcc not in _WEBP_CHUNKS and payload.strip(b"\x00"):
            out.hidden.append(payload)
        pos += 8 + length + (length & 1)
    if data[pos : 8 + size].strip(b"\x00"):
        out.hidden.append(data[pos : 8 + size])
    return int(min(end, len(data)))


# --- MP4 (ISO base media) -----------------------------------------------------------------------


def _mp4(data: bytes, out: Walk, budget: Budget) -> int:
    """Top-level boxes to the last one; bytes that do not form a box are what follows it. The
    payload of a ``free``/``skip`` box that is not all zeros is read too (a place to hide)."""
    pos = 0
    n = len(data)
    while pos + 8 <= n:
        size, btype = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > n:
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = n - pos
        if size < header or not _box_type(btype):
            break  # not a box: what follows the last one
        if pos + size > n:
            raise _Malformed(pos)  # a box cut short: the file is truncated
        payload = data[pos + header : pos + size] if btype not in _MP4_BULK else b""
        if btype in _MP4_SKIP_BOXES:
            if payload.strip(b"\x00"):
                out.hidden.append(payload)
        elif btype == b"moov":
            _mp4_metadata(payload, out, 0)
        elif btype not in _MP4_BOXES:  # udta, meta, uuid (XMP), a box of no known type
            _extra("mp4:box", payload, out)
        pos += size
    if pos == 0:
        raise _Malformed(0)
    return int(pos)


def _mp4_metadata(payload: bytes, out: Walk, level: int) -> None:
    """``udta`` and ``meta`` boxes (title, comment, description...) inside ``moov``, its
    tracks and their media: their readable runs."""
    pos = 0
    while pos + 8 <= len(payload) and level < 4:
        size, btype = struct.unpack_from(">I4s", payload, pos)
        if size < 8 or pos + size > len(payload):
            return
        inner = payload[pos + 8 : pos + size]
        if btype in (b"udta", b"meta", b"uuid"):
            _extra("mp4:meta", inner, out)
        elif btype in (b"trak", b"mdia", b"minf"):
            _mp4_metadata(inner, out, level + 1)
        pos += size


def _extra(label: str, payload: bytes, out: Walk) -> None:
    """A segment, chunk or box no viewer shows (a private PNG chunk, JPEG APP13, an MP4 ``udta``):
    a known file inside it is a file of its own; otherwise its readable runs are text."""
    if sniff(payload) != "binary":
        out.hidden.append(payload)
    elif runs := text_runs(payload):
        out.texts.append((label, runs))


def _box_type(btype: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b == 0xA9 for b in btype)  # ©xyz is a valid box type
