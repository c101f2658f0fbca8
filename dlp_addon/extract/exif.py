"""Free text in an EXIF block (a TIFF structure): descriptions, artist, copyright, the user
comment, Windows' XP tags, in every IFD (IFD0, Exif, GPS, interoperability). A broken block gives
what was read before the break: the image still ends where its container says."""

from __future__ import annotations

import struct

# EXIF tags holding free text: ImageDescription, Make, Model, Software, Artist, Copyright,
# UserComment, and Windows' XPTitle/XPComment/XPAuthor/XPKeywords/XPSubject (UTF-16LE).
_EXIF_TEXT_TAGS = frozenset({0x010E, 0x010F, 0x0110, 0x0131, 0x013B, 0x8298, 0x9286})
_EXIF_XP_TAGS = frozenset(range(0x9C9B, 0x9CA0))
_EXIF_POINTERS = frozenset({0x8769, 0x8825, 0xA005})  # Exif, GPS, interoperability IFDs
_EXIF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def texts(tiff: bytes) -> str:
    """Free-text tags of every IFD, a tag a line."""
    if tiff[:2] == b"II":
        order = "<"
    elif tiff[:2] == b"MM":
        order = ">"
    else:
        return ""
    found: list[str] = []
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
                found.append(_exif_text(tag, raw))
            if len(tiff) >= ifd + 6 + count * 12:
                (nxt,) = struct.unpack_from(order + "I", tiff, ifd + 2 + count * 12)
                if nxt:
                    todo.append(nxt)
    except struct.error:
        pass
    return "\n".join(t for t in found if t.strip())


def _exif_text(tag: int, raw: bytes) -> str:
    if tag in _EXIF_XP_TAGS:
        return raw.decode("utf-16-le", "replace").rstrip("\x00")
    if tag == 0x9286:  # UserComment: an 8-byte character code, then the text
        code, body = raw[:8], raw[8:]
        if code.startswith(b"UNICODE"):
            # The spec leaves byte order to the writer: take the one that reads as text.
            le, be = body.decode("utf-16-le", "replace"), body.decode("utf-16-be", "replace")
            return le if _plausible(le) >= _plausible(be) else be
        return decode(body).rstrip("\x00 ")
    return decode(raw).rstrip("\x00")


def _plausible(text: str) -> int:
    return sum(c.isprintable() and c != "\ufffd" and ord(c) < 0xA000 for c in text)


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", "replace")
