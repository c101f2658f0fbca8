"""Zip (and tar) archives read defensively: every entry's bytes are bounded by the request's
budget, and the archive is refused before anything is inflated when it looks like a bomb. A
part that is only searched in passing (a workbook's sheet XML) is inflated a piece at a time
and never held whole (:func:`pieces`).

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
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget, Limits, MiB

_CHUNK = 64 * 1024
_PIECE = 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_END_RECORD = b"PK\x05\x06"
_NAME_SEPARATORS = re.compile(r"[_\-.+]")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Streams that make an OLE file a document, whatever it is named.
_OFFICE_STREAMS = ("Workbook", "Book\x00", "WordDocument", "PowerPoint", "EncryptedPackage")


def entries(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """``(name, content)`` of every file in the archive, or ``ExtractError`` with a reason."""
    zf, infos = open_zip(data, budget.limits)
    for info in infos:
        yield info.filename, read(zf, info, budget)


def open_zip(data: bytes, limits: Limits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The zip and its files, once their number and ranges are checked (nothing inflated)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as e:
        raise ExtractError("corrupt") from e
    if len(infos) > limits.max_archive_entries:
        raise ExtractError("too_many_entries")
    _check_no_overlap(data, infos)
    return zf, infos


def check(info: zipfile.ZipInfo, limits: Limits) -> None:
    """An entry's flags, method and declared ratio, checked before it is inflated."""
    if info.flag_bits & 0x1:
        raise ExtractError("encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ExtractError("unsupported_compression")
    _check_ratio(info.file_size, info.compress_size, limits.max_compression_ratio)


def read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget) -> bytes:
    """An entry's content, charged to ``budget`` as it is inflated."""
    check(info, budget.limits)
    out = bytearray()
    for chunk in _inflated(zf, info, budget, budget.spend):
        out += chunk
    return bytes(out)


def pieces(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, cut: Callable[[bytes], int]
) -> Iterator[bytes]:
    """An entry inflated a piece of about a MiB at a time, for a part that is searched in
    passing and whose content another reader charges (a workbook's sheet XML: its cells are
    charged when the sandboxed reader sends them). Each piece ends where ``cut`` says a unit
    (a sheet row) ends, so nothing searched for is split. Only the piece being gathered is
    held: its bytes count against ``Budget.spend_cell_xml``, not the decoded bytes, and a
    unit longer than the decoded bytes left is ``too_large``."""
    check(info, budget.limits)
    chunks: list[bytes] = []
    size = 0
    want = _PIECE  # a cut is looked for once this much is held (doubled when none is found)
    for chunk in _inflated(zf, info, budget, budget.spend_cell_xml):
        chunks.append(chunk)
        size += len(chunk)
        if size < want:
            continue
        held = b"".join(chunks)
        end = cut(held)
        room = budget.limits.max_decoded_bytes - budget.decoded
        if end:
            yield held[:end]
            held = held[end:]
        elif size > room:
            raise ExtractError("too_large")
        chunks, size = [held], len(held)
        want = max(_PIECE, min(2 * size, room + 1))
    if size:
        yield b"".join(chunks)


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


def outside(data: bytes) -> list[bytes]:
    """The bytes no entry covers: before the first entry, between entries (less a data
    descriptor), between the last entry and the central directory, and after the end record
    and its comment. Python's zipfile, like ``unzip``, reads the *last* end record through the
    central directory and skips them all; a streaming reader (Java's ZipInputStream) reads
    local entries from the first byte. A zip hidden in front of another, an entry missing from
    the directory or a CSV appended is data a receiver may read: each is a file of its own."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as e:
        raise ExtractError("corrupt") from e
    spans = sorted(_spans(data, infos))
    out = [data[: min([start for start, _, _ in spans] + [zf.start_dir])]]
    for (_, end, info), (start, _, _) in itertools.pairwise([*spans, (zf.start_dir, 0, None)]):
        gap = data[end:start]
        if info is not None and info.flag_bits & 0x8:  # a data descriptor follows the data
            gap = b"" if len(gap) <= 24 else gap[16 if gap[:4] == b"PK\x07\x08" else 12 :]
        out.append(gap)
    end = data.rfind(_END_RECORD, max(0, len(data) - 65_557))
    if end >= 0:
        (comment_length,) = struct.unpack_from("<H", data, end + 20)
        out.append(data[end + 22 + comment_length :])
    return [chunk for chunk in out if chunk]


def gzip_names(data: bytes) -> str:
    """The file name and comment a gzip header may carry (FNAME, FCOMMENT: Latin-1 by the RFC,
    UTF-8 or GBK in practice)."""
    if len(data) < 10 or not data[3] & 0x18:
        return ""
    flags, pos, out = data[3], 10, []
    if flags & 0x04:  # FEXTRA: a length, then that many bytes
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for flag in (0x08, 0x10):
        if flags & flag:
            end = data.find(b"\x00", pos)
            end = len(data) if end < 0 else end
            out.append(_comment(data[pos:end]))
            pos = end + 1
    return "\n".join(out)


def tar(data: bytes, budget: Budget) -> tuple[str, list[tuple[str, bytes]]]:
    """A tar archive's text (member and link names, pax header values such as ``comment``, a
    line each, names read as :func:`listing` reads them) and its regular files."""
    limits = budget.limits
    lines: list[str] = []
    files: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for count, member in enumerate(tf, start=1):
                if count > limits.max_archive_entries:
                    raise ExtractError("too_many_entries")
                lines.append(_NAME_SEPARATORS.sub(" ", f"{member.name} {member.linkname}"))
                lines.extend(v for k, v in member.pax_headers.items() if k != "path")
                if member.isfile():
                    budget.spend(member.size)  # a sparse member's full size: no bomb
                    fh = tf.extractfile(member)
                    files.append((member.name, fh.read() if fh is not None else b""))
    except ExtractError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise ExtractError("corrupt") from e
    return "\n".join(lines), files


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


def _spans(data: bytes, infos: list[zipfile.ZipInfo]) -> list[tuple[int, int, zipfile.ZipInfo]]:
    """Where each entry's local header and data lie: ``(start, end, info)``."""
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
        spans.append(
            (start, start + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size, info)
        )
    return spans


def _check_no_overlap(data: bytes, infos: list[zipfile.ZipInfo]) -> None:
    spans = sorted((start, end) for start, end, _ in _spans(data, infos))
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ExtractError("zip_bomb")


def _check_ratio(size: int, compressed: int, max_ratio: float) -> None:
    if size > MiB and size > max_ratio * max(compressed, 1):
        raise ExtractError("zip_bomb")


def _inflated(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget, spend: Callable[[int], None]
) -> Iterator[bytes]:
    """An entry's content a chunk at a time, each chunk ``spend``-ed and the inflated size
    checked against the ratio as it grows (a directory may lie about sizes)."""
    size = 0
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                size += len(chunk)
                spend(len(chunk))
                _check_ratio(size, info.compress_size, budget.limits.max_compression_ratio)
                yield chunk
    except ExtractError:
        raise
    except NotImplementedError as e:  # flags zipfile refuses: patched data, strong encryption
        raise ExtractError("unsupported_compression") from e
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise ExtractError("corrupt") from e
