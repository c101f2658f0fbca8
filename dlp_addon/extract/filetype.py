"""What bytes are, from their content: magic numbers and container structure, never the
file name or the Content-Type a client claims."""

from __future__ import annotations

import io
import zipfile

TEXT, IMAGE, MEDIA = "text", "image", "media"
SPREADSHEETS = frozenset({"xlsx", "xls", "ods", "csv"})

_IMAGES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
_SIMPLE = (
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"%PDF-", "pdf"),
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"


def sniff(data: bytes) -> str:
    """``xlsx``, ``ods``, ``docx``, ``pptx``, ``zip``, ``xls``, ``ole``, ``encrypted_office``,
    ``pdf``, ``gzip``, ``tar``, ``7z``, ``rar``..., ``image``, ``media`` or ``binary`` (text is
    decided by the caller, which knows the charset)."""
    if data.startswith(_IMAGES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return IMAGE
    if is_bmp(data):
        return IMAGE
    if data[4:8] == b"ftyp" or data[:4] == b"\x1aE\xdf\xa3" or data[:4] == b"OggS":
        return MEDIA  # MP4/MOV, Matroska/WebM, Ogg
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    if data.startswith(_OLE):
        return _ole_kind(data)
    for magic, name in _SIMPLE:
        if data.startswith(magic):
            return name
    if data[257:262] == b"ustar":  # POSIX and GNU tar
        return "tar"
    return "binary"


def is_bmp(data: bytes) -> bool:
    """A Windows bitmap: ``BM``, reserved zeros, and a known DIB header size (``BM`` alone
    starts ordinary text)."""
    return (
        len(data) > 26
        and data[:2] == b"BM"
        and data[6:10] == b"\0\0\0\0"
        and int.from_bytes(data[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    )


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
                return "xlsx"
            if "word/document.xml" in names:
                return "docx"
            if "ppt/presentation.xml" in names:
                return "pptx"
            if "mimetype" in names and data[30:38] == b"mimetype" and _ODS_MIME in data[:100]:
                return "ods"
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return "corrupt"
    return "zip"


def _ole_kind(data: bytes) -> str:
    """Compound files: legacy Excel (and WPS .et), or an encrypted OOXML document."""
    if "EncryptedPackage".encode("utf-16-le") in data:
        return "encrypted_office"
    if "Workbook".encode("utf-16-le") in data or "Book\x00".encode("utf-16-le") in data:
        return "xls"
    return "ole"
