"""Images and MP4 walked far enough to know where they end, and the text they carry.

A photo can carry a file after its end (图种: ``copy /b photo.jpg + data.zip``; viewers stop at
JPEG EOI, PNG IEND, the GIF trailer, the RIFF size of a WebP, the last MP4 box), and text in
its metadata (PNG tEXt/zTXt/iTXt, JPEG COM, EXIF comments, XMP). ``walk`` returns both: the
text as ``(label, text)`` pairs and the bytes past the end, which the caller reads as a file of
its own. Pixels are not decoded. A structure that cannot be followed is ``parsed=False`` with
the offset where reading stopped; the caller decides (see ``message._Collector.image``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from dlp_addon.errors import ExtractError
from dlp_addon.extract.decode import inflate
from dlp_addon.extract.limits import Budget

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXT_JPEG = b"http://ns.adobe.com/xmp/extension/\x00"
_MAX_META_TEXT = 4 * 1024 * 1024  # text one image's metadata may add (inflated zTXt included)
# EXIF tags holding free text: ImageDescription, Make, Model, Software, Artist, Copyright,
# UserComment, and Windows' XPTitle/XPComment/XPAuthor/XPKeywords/XPSubject (UTF-16LE).
_EXIF_TEXT_TAGS = frozenset({0x010E, 0x010F, 0x0110, 0x0131, 0x013B, 0x8298, 0x9286})
_EXIF_XP_TAGS = frozenset(range(0x9C9B, 0x9CA0))
_EXIF_POINTERS = frozenset({0x8769, 0x8825, 0xA005})  # Exif, GPS, interoperability IFDs
_EXIF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_MP4_SKIP_BOXES = frozenset({b"free", b"skip"})


class _Malformed(Exception):
    """The structure cannot be followed from here."""


@dataclass
class Walk:
    """What an image or MP4 carries besides its pixels."""

    kind: str  # jpeg, png, gif, webp, mp4
    texts: list[tuple[str, str]] = field(default_factory=list)
    trailing: bytes = b""  # bytes after the format's end (a file of their own)
    hidden: list[bytes] = field(default_factory=list)  # non-empty free/skip MP4 box payloads
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
            out.texts.append(("jpeg:com", _decode(payload)))
        elif marker == 0xE1:
            if payload.startswith(b"Exif\x00\x00"):
                _exif(payload[6:], out)
            elif payload.startswith(_XMP_JPEG):
                out.texts.append(("xmp", _decode(payload[len(_XMP_JPEG) :])))
            elif payload.startswith(_XMP_EXT_JPEG):  # extended XMP: GUID, size, offset, data
                out.texts.append(("xmp", _decode(payload[len(_XMP_EXT_JPEG) + 40 :])))
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


# --- EXIF (a TIFF structure) --------------------------------------------------------------------


def _exif(tiff: bytes, out: Walk) -> None:
    """Free-text tags of every IFD (IFD0, Exif, GPS...): a broken EXIF block is ignored (the
    image still ends where its container says)."""
    if tiff[:2] == b"II":
        order = "<"
    elif tiff[:2] == b"MM":
        order = ">"
    else:
        return
    texts: list[str] = []
    try:
        (first,) = struct.unpack_from(order + "I", tiff, 4)
        todo: list[int] = [first]
        seen: set[int] = set()
        while todo and len(seen) < 16:
            ifd = todo.pop()
            if ifd in seen or ifd + 2 > len(tiff):
                continue
            seen.add(ifd)
            (count,) = struct.unpack_from(order + "H", tiff, ifd)
            for i in range(min(count, 512)):
                tag, typ, num, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + i * 12)
                (as_offset,) = struct.unpack(order + "I", value)
                if tag in _EXIF_POINTERS:
                    todo.append(as_offset)
                    continue
                if tag not in _EXIF_TEXT_TAGS and tag not in _EXIF_XP_TAGS:
                    continue
                size = num * _EXIF_TYPE_SIZES.get(typ, 1)
                raw = value[:size] if size <= 4 else tiff[as_offset : as_offset + size]
                texts.append(_exif_text(tag, raw))
            if len(tiff) >= ifd + 6 + count * 12:
                (nxt,) = struct.unpack_from(order + "I", tiff, ifd + 2 + count * 12)
                if nxt:
                    todo.append(nxt)
    except struct.error:
        pass
    text = "\n".join(t for t in texts if t.strip())
    if text:
        out.texts.append(("exif", text))


def _exif_text(tag: int, raw: bytes) -> str:
    if tag in _EXIF_XP_TAGS:
        return raw.decode("utf-16-le", "replace").rstrip("\x00")
    if tag == 0x9286:  # UserComment: an 8-byte character code, then the text
        code, body = raw[:8], raw[8:]
        if code.startswith(b"UNICODE"):
            # The spec leaves byte order to the writer: take the one that reads as text.
            le, be = body.decode("utf-16-le", "replace"), body.decode("utf-16-be", "replace")
            return le if _plausible(le) >= _plausible(be) else be
        return _decode(body).rstrip("\x00 ")
    return _decode(raw).rstrip("\x00")


def _plausible(text: str) -> int:
    return sum(c.isprintable() and c != "\ufffd" and ord(c) < 0xA000 for c in text)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", "replace")


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
            _exif(payload, out)


def _png_text(ctype: bytes, payload: bytes, room: int) -> str:
    """The keyword and text of a tEXt (Latin-1), zTXt (deflated Latin-1) or iTXt (UTF-8, maybe
    deflated) chunk; compressed text inflates within what is left of the budget."""
    keyword, _, rest = payload.partition(b"\x00")
    if ctype == b"tEXt":
        return keyword.decode("latin-1") + " " + _decode(rest)
    if ctype == b"zTXt":
        return keyword.decode("latin-1") + " " + _decode(_inflate(rest[1:], room))
    if len(rest) < 2:
        return keyword.decode("latin-1")
    compressed, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\x00")
    translated, _, body = body.partition(b"\x00")
    if compressed:
        body = _inflate(body, room)
    return " ".join(
        (keyword.decode("latin-1"), translated.decode("utf-8", "replace"), _decode(body))
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
                out.texts.append(("gif:comment", _decode(body)))
            elif label == 0x01:  # plain text: 12 bytes of grid, then the text
                out.texts.append(("gif:text", _decode(body[13:])))
            elif label == 0xFF and body[:11] == b"XMP DataXMP":
                out.texts.append(("xmp", _decode(body[11:])))
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
    (size,) = struct.unpack_from("<I", data, 4)
    end = 8 + size + (size & 1)
    if size < 4 or 8 + size > len(data):
        raise _Malformed(0)
    pos = 12
    while pos + 8 <= 8 + size:
        fourcc, length = struct.unpack_from("<4sI", data, pos)
        payload = data[pos + 8 : pos + 8 + length]
        if fourcc == b"EXIF":
            _exif(payload[6:] if payload.startswith(b"Exif\x00\x00") else payload, out)
        elif fourcc == b"XMP ":
            out.texts.append(("xmp", _decode(payload)))
        pos += 8 + length + (length & 1)
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
        if btype in _MP4_SKIP_BOXES:
            payload = data[pos + header : pos + size]
            if payload.strip(b"\x00"):
                out.hidden.append(payload)
        pos += size
    if pos == 0:
        raise _Malformed(0)
    return int(pos)


def _box_type(btype: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b == 0xA9 for b in btype)  # ©xyz is a valid box type
