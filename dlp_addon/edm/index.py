"""The EDM index file: a memory-mapped, sorted table of keyed hashes. No raw value is in it.

Layout (little-endian)::

    header      4096 bytes: magic, length, JSON (fields, primaries, counts, key check, format)
    keys        u64 x entries, ascending: the keyed hash of one primary value of one row
    row ids     u32 x entries: the row each key belongs to (rows of a shared value are adjacent)
    rows        row_bytes x rows: the 4-byte hash of each stored (non-primary) field, then the
                length in characters of each searched one (name, address, plate); 0 = empty

A lookup is a binary search over the keys, straight in the mapping: loading is opening the
file (no parsing), and every inspection process that maps it shares the same page-cache pages.
The file is written whole under another name and renamed over the old one, so a reader sees
the old index or the new one, never half of one.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import mmap
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlp_addon.edm.fields import SEARCHED
from dlp_addon.errors import DlpError

MAGIC = b"DLPEDM\x00\x01"
HEADER_BYTES = 4096
FORMAT_VERSION = 1
# Rows examined for one primary value: a placeholder mobile shared by 100,000 rows must not
# make every message that carries it cost 100,000 comparisons.
MAX_ROWS_PER_VALUE = 256


class EdmError(DlpError):
    """An index that cannot be read, or that does not fit the policy or the key."""


@dataclass(frozen=True)
class Field:
    name: str  # the column's header, for the admin
    kind: str  # fields.KINDS


@dataclass(frozen=True)
class Header:
    """What the index holds; nothing in it identifies a customer."""

    build_id: str
    key_check: str
    fields: tuple[Field, ...]
    primary: tuple[str, ...]  # kinds indexed as keys
    stored: tuple[str, ...]  # kinds kept in each row, for corroboration
    policy_format: str | None
    rows: int
    entries: int
    rejected: int
    created: str

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(k for k in self.stored if k in SEARCHED)

    @property
    def row_format(self) -> str:
        return "<" + "I" * len(self.stored) + "B" * len(self.searched)

    @property
    def row_bytes(self) -> int:
        return struct.calcsize(self.row_format)

    @property
    def keys_offset(self) -> int:
        return HEADER_BYTES

    @property
    def rowids_offset(self) -> int:
        return HEADER_BYTES + 8 * self.entries

    @property
    def rows_offset(self) -> int:
        return HEADER_BYTES + 12 * self.entries

    @property
    def size(self) -> int:
        return self.rows_offset + self.row_bytes * self.rows

    def to_bytes(self) -> bytes:
        doc = {
            "version": FORMAT_VERSION,
            "build_id": self.build_id,
            "key_check": self.key_check,
            "fields": [[f.name, f.kind] for f in self.fields],
            "primary": list(self.primary),
            "stored": list(self.stored),
            "policy_format": self.policy_format,
            "rows": self.rows,
            "entries": self.entries,
            "rejected": self.rejected,
            "created": self.created,
        }
        body = json.dumps(doc, ensure_ascii=False).encode()
        if len(body) > HEADER_BYTES - 12:
            raise EdmError("index header too long (too many columns or a very long format)")
        return (MAGIC + struct.pack("<I", len(body)) + body).ljust(HEADER_BYTES, b"\0")

    @classmethod
    def parse(cls, data: bytes | mmap.mmap, where: str) -> Header:
        if len(data) < HEADER_BYTES or data[:8] != MAGIC:
            raise EdmError(f"{where}: not an EDM index (dlp-policy edm index writes one)")
        (length,) = struct.unpack("<I", data[8:12])
        try:
            doc: dict[str, Any] = json.loads(bytes(data[12 : 12 + length]))
            if doc["version"] != FORMAT_VERSION:
                raise EdmError(f"{where}: index format {doc['version']}, this proxy reads 1")
            return cls(
                build_id=doc["build_id"],
                key_check=doc["key_check"],
                fields=tuple(Field(n, k) for n, k in doc["fields"]),
                primary=tuple(doc["primary"]),
                stored=tuple(doc["stored"]),
                policy_format=doc["policy_format"],
                rows=int(doc["rows"]),
                entries=int(doc["entries"]),
                rejected=int(doc["rejected"]),
                created=doc["created"],
            )
        except (ValueError, KeyError, TypeError) as e:
            raise EdmError(f"{where}: damaged index header") from e


class EdmIndex:
    """An index file, mapped read-only. Picklable: an inspection worker maps the very file the
    proxy opened (through the proxy's descriptor, even after a newer index replaced it)."""

    def __init__(self, path: Path, *, _via: str | None = None) -> None:
        self.path = path
        opened = _via or str(path)
        try:
            fd = os.open(opened, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise EdmError(f"{path}: cannot open the index ({e.strerror})") from e
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_BYTES:
                raise EdmError(f"{path}: not an EDM index (dlp-policy edm index writes one)")
            self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.header = Header.parse(self._map, str(path))
        if self.header.size != size:
            raise EdmError(f"{path}: index is {size} bytes, its header says {self.header.size}")
        h = self.header
        view = memoryview(self._map)
        self._keys: Sequence[int] = view[h.keys_offset : h.rowids_offset].cast("Q")
        self._rowids: Sequence[int] = view[h.rowids_offset : h.rows_offset].cast("I")
        self._rows = view[h.rows_offset : h.size]
        self._row = struct.Struct(h.row_format)
        self._advice()

    def _advice(self) -> None:
        """Lookups jump about: no read-ahead of pages that will not be used."""
        if hasattr(mmap, "MADV_RANDOM"):
            with contextlib.suppress(OSError):
                self._map.madvise(mmap.MADV_RANDOM)

    def rows_of(self, key: int) -> list[int]:
        """The rows one primary hash belongs to (at most :data:`MAX_ROWS_PER_VALUE`)."""
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        out: list[int] = []
        n = len(keys)
        while i < n and keys[i] == key and len(out) < MAX_ROWS_PER_VALUE:
            out.append(self._rowids[i])
            i += 1
        return out

    def row(self, rowid: int) -> tuple[int, ...]:
        """A row's stored hashes, then the lengths of its searched fields."""
        return self._row.unpack_from(self._rows, rowid * self._row.size)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (str(self.path), os.getpid(), self._fd, self.header.build_id))


def _reopen(path: str, pid: int, fd: int, build_id: str) -> EdmIndex | BrokenIndex:
    """In an inspection worker: the proxy's own open file if it can be reached, else the
    path, and only if it is the same build. Never raises (a worker that cannot unpickle its
    policy would die and be restarted forever): a broken index fails each inspection."""
    for via in (f"/proc/{pid}/fd/{fd}", path):
        try:
            index = EdmIndex(Path(path), _via=via)
        except EdmError:
            continue
        if index.header.build_id == build_id:
            return index
    return BrokenIndex(Path(path))


class BrokenIndex:
    """Stands in for an index a worker could not map: every lookup fails (closed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows_of(self, key: int) -> list[int]:
        raise EdmError(f"{self.path}: the index this policy was loaded with is gone")

    def row(self, rowid: int) -> tuple[int, ...]:
        raise EdmError(f"{self.path}: the index this policy was loaded with is gone")
