"""Zip archives read defensively: every entry's bytes are bounded by the request's budget, and
the archive is refused before anything is inflated when it looks like a bomb.

Python's zipfile trusts the central directory. Overlapping-entry bombs ("A better zip bomb")
point many entries at one compressed block; 42.zip nests archives. Both are caught here: entry
ranges must not overlap, depth and entry count are bounded, sizes and ratios are checked both as
declared and as actually inflated, and encrypted entries are reported as such.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget, MiB

_CHUNK = 64 * 1024
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_NAME_SEPARATORS = re.compile(r"[_\-.+]")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Streams that make an OLE file a document, whatever it is named.
_OFFICE_STREAMS = ("Workbook", "Book\x00", "WordDocument", "PowerPoint", "EncryptedPackage")


def entries(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """``(name, content)`` of every file in the archive, or ``ExtractError`` with a reason."""
    limits = budget.limits
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as e:
        raise ExtractError("corrupt") from e
    if len(infos) > limits.max_archive_entries:
        raise ExtractError("too_many_entries")
    _check_no_overlap(data, infos)
    for info in infos:
        if info.flag_bits & 0x1:
            raise ExtractError("encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ExtractError("unsupported_compression")
        _check_ratio(info.file_size, info.compress_size, limits.max_compression_ratio)
        yield info.filename, _read(zf, info, budget)


def listing(data: bytes) -> tuple[str, str]:
    """Entry names (a line each, ``_ - . +`` read as spaces: ``姓名_身份证号_手机.jpg``)
    and the archive's and entries' comments: text a user chose, so text to scan."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as e:
        raise ExtractError("corrupt") from e
    names = "\n".join(_NAME_SEPARATORS.sub(" ", i.filename) for i in infos)
    comments = [zf.comment] + [i.comment for i in infos]
    return names, "\n".join(_comment(c) for c in comments if c)


def _comment(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", "replace")  # zip tools on Chinese Windows write GBK


def is_os_litter(name: str, content: bytes) -> bool:
    """Windows' Thumbs.db (an OLE file with a Catalog stream) or macOS's .DS_Store (``Bud1``),
    known by name and content: a file merely named so is read like any other."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if base == "thumbs.db":
        return (
            content.startswith(_OLE)
            and any(s.encode("utf-16-le") in content for s in ("Catalog", "256_"))
            and not any(s.encode("utf-16-le") in content for s in _OFFICE_STREAMS)
        )
    return base == ".ds_store" and content[:8] == b"\x00\x00\x00\x01Bud1"


def _check_no_overlap(data: bytes, infos: list[zipfile.ZipInfo]) -> None:
    spans = []
    for info in infos:
        start = info.header_offset
        try:
            header = _LOCAL_HEADER.unpack_from(data, start)
        except struct.error as e:
            raise ExtractError("corrupt") from e
        if header[0] != b"PK\x03\x04":
            raise ExtractError("corrupt")
        name_len, extra_len = header[9], header[10]
        end = start + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ExtractError("zip_bomb")


def _check_ratio(size: int, compressed: int, max_ratio: float) -> None:
    if size > MiB and size > max_ratio * max(compressed, 1):
        raise ExtractError("zip_bomb")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget) -> bytes:
    out = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                out += chunk
                budget.spend(len(chunk))
                _check_ratio(len(out), info.compress_size, budget.limits.max_compression_ratio)
    except ExtractError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise ExtractError("corrupt") from e
    return bytes(out)
