"""Build an EDM index from a customer export, streaming: memory stays bounded however many rows.

One pass over the rows normalises and hashes each (only the row being indexed is ever held
raw), appends its stored hashes to the row table and its primary hashes to one of
:data:`BUCKETS` bucket files chosen by the hash's top bits. The hashes are uniform, so the
buckets are of even size and in order: each is then sorted on its own (numpy, in memory) and
written into place, which leaves the whole table sorted without a merge. 100 million rows of
three primary fields make buckets of ~2.3 million entries (~50 MB to sort).

The index is written under a temporary name next to the target, flushed to disk, and renamed
over it: the proxy (and anyone else) sees the old index or the new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import struct
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dlp_addon.edm.fields import SEARCHED, Keys, Normaliser, primary_hash, stored_hash
from dlp_addon.edm.index import EdmError, Field, Header

BUCKET_BITS = 7
BUCKETS = 1 << BUCKET_BITS
_SHIFT = 64 - BUCKET_BITS
_FLUSH = 1 << 15  # entries a bucket gathers in memory before they go to its file
_ROWS_FLUSH = 1 << 20  # bytes of row table gathered before a write
REJECTS_LISTED = 1000  # the first rejected lines are kept for the report; the rest counted


@dataclass
class BuildReport:
    """What an index build did: counts and line numbers, never a value."""

    rows: int = 0  # indexed
    entries: int = 0  # primary values (keys)
    rejected: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, why), the first ones
    seconds: float = 0.0
    bytes: int = 0

    def reject(self, line: int, why: str) -> None:
        self.rejected += 1
        if len(self.rejects) < REJECTS_LISTED:
            self.rejects.append((line, why))


def build_index(
    rows: Iterable[tuple[int, Sequence[str]]],
    columns: Sequence[tuple[int, Field]],
    primary: Sequence[str],
    keys: Keys,
    out: Path,
    *,
    policy_format: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    every: int = 100_000,
    accept: Callable[[BuildReport], str | None] | None = None,
) -> BuildReport:
    """Index ``rows`` (``(line number, cells)``): ``columns`` says which cell holds which
    field; the fields of the ``primary`` kinds become keys, the others are stored per row.
    ``progress(rows read, rows rejected)`` is called every ``every`` rows. ``accept`` may
    refuse the result (say why) after the pass: the old index then stays."""
    started = time.monotonic()
    kinds = [f.kind for _, f in columns]
    if len(set(kinds)) != len(kinds):
        raise EdmError("each kind of field may be given once")
    if not set(primary) <= set(kinds) or not primary:
        raise EdmError("every primary field must be one of the columns")
    if "policy" in kinds and not policy_format:
        raise EdmError("a policy number column needs its format (--policy-format)")
    stored = tuple(k for k in kinds if k not in primary)
    searched = tuple(k for k in stored if k in SEARCHED)
    header = Header(
        build_id=secrets.token_hex(8),
        key_check=keys.check,
        fields=tuple(f for _, f in columns),
        primary=tuple(primary),
        stored=stored,
        policy_format=policy_format,
        rows=0,
        entries=0,
        rejected=0,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.build-") as tmp:
        work = Path(tmp)
        buckets = _Buckets(work)
        with (work / "rows").open("wb") as rows_file:
            _pass(rows, columns, set(primary), stored, searched, keys, policy_format,
                  buckets, rows_file, report, progress, every)  # fmt: skip
        buckets.close()
        refused = accept(report) if accept is not None else None
        if refused is not None:
            raise EdmRefused(refused, report)
        header = _finished(header, report)
        target = out.parent / f".{out.name}.{os.getpid()}.tmp"
        try:
            _write(header, buckets, work / "rows", target)
            os.replace(target, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    _sync_dir(out.parent)
    report.seconds = time.monotonic() - started
    report.bytes = header.size
    return report


class EdmRefused(EdmError):
    """The build was refused after its pass (too many rejected rows); the old index stays."""

    def __init__(self, why: str, report: BuildReport) -> None:
        super().__init__(f"{why}; the index was not replaced")
        self.report = report


def _finished(header: Header, report: BuildReport) -> Header:
    return Header(
        **{
            **header.__dict__,
            "rows": report.rows,
            "entries": report.entries,
            "rejected": report.rejected,
        }
    )


def _pass(
    rows: Iterable[tuple[int, Sequence[str]]],
    columns: Sequence[tuple[int, Field]],
    primary: set[str],
    stored: tuple[str, ...],
    searched: tuple[str, ...],
    keys: Keys,
    policy_format: str | None,
    buckets: _Buckets,
    rows_file: BinaryIO,
    report: BuildReport,
    progress: Callable[[int, int], None] | None,
    every: int,
) -> None:
    """The streaming pass: normalise, hash, append."""
    normalise = Normaliser(policy_format)
    # (cell index, column header, kind, hash function, slot in the row or -1 for a key,
    # slot of its length or -1)
    plan = []
    for col, f in columns:
        if f.kind in primary:
            plan.append((col, f.name, f.kind, primary_hash(keys, f.kind), -1, -1))
        else:
            length_slot = len(stored) + searched.index(f.kind) if f.kind in searched else -1
            plan.append((col, f.name, f.kind, stored_hash(keys, f.kind), stored.index(f.kind),
                         length_slot))  # fmt: skip
    width = max(col for col, _ in columns) + 1
    pack = struct.Struct("<" + "I" * len(stored) + "B" * len(searched)).pack
    empty = [0] * (len(stored) + len(searched))
    pending = bytearray()
    read = 0
    for line, cells in rows:
        read += 1
        if progress is not None and read % every == 0:
            progress(read, report.rejected)
        if len(cells) < width:
            report.reject(line, f"{len(cells)} columns, {width} expected")
            continue
        values = empty.copy()
        found: list[int] = []
        why = None
        for col, name, kind, hasher, slot, length_slot in plan:
            value = normalise(kind, cells[col])
            if value is None:
                why = f"column {name!r} is not a valid {kind}"
                break
            if not value:
                continue
            if slot < 0:
                found.append(hasher(value))
                continue
            values[slot] = hasher(value)
            if length_slot >= 0:
                values[length_slot] = len(value)
        if why is not None:
            report.reject(line, why)
            continue
        if not found:
            report.reject(line, "no primary value")
            continue
        rowid = report.rows
        report.rows += 1
        pending += pack(*values)
        if len(pending) >= _ROWS_FLUSH:
            rows_file.write(pending)
            pending.clear()
        for key in set(found):
            buckets.add(key, rowid)
            report.entries += 1
    rows_file.write(pending)
    if progress is not None:
        progress(read, report.rejected)


class _Buckets:
    """Primary hashes and their rows, spread over files by the hash's top bits."""

    def __init__(self, work: Path) -> None:
        self.paths = [(work / f"k{b:03d}", work / f"r{b:03d}") for b in range(BUCKETS)]
        self._files = [(kp.open("wb"), rp.open("wb")) for kp, rp in self.paths]
        self._keys = [array("Q") for _ in range(BUCKETS)]
        self._rows = [array("I") for _ in range(BUCKETS)]

    def add(self, key: int, rowid: int) -> None:
        b = key >> _SHIFT
        ks = self._keys[b]
        ks.append(key)
        self._rows[b].append(rowid)
        if len(ks) >= _FLUSH:
            self._flush(b)

    def _flush(self, b: int) -> None:
        kf, rf = self._files[b]
        self._keys[b].tofile(kf)
        self._rows[b].tofile(rf)
        self._keys[b] = array("Q")
        self._rows[b] = array("I")

    def close(self) -> None:
        for b in range(BUCKETS):
            self._flush(b)
            for f in self._files[b]:
                f.close()


def _write(header: Header, buckets: _Buckets, rows: Path, target: Path) -> None:
    """The index file: header, each bucket sorted into place, the row table."""
    import numpy as np  # only the builder needs it

    if array("Q", [1]).tobytes()[0] != 1:
        raise EdmError("the index is little-endian; this machine is not")
    with target.open("wb") as f:
        f.write(header.to_bytes())
        f.truncate(header.size)
        fd = f.fileno()
        at = 0
        for kp, rp in buckets.paths:
            ks = np.fromfile(kp, dtype="<u8")
            rs = np.fromfile(rp, dtype="<u4")
            order = np.argsort(ks, kind="stable")
            os.pwrite(fd, ks[order].tobytes(), header.keys_offset + 8 * at)
            os.pwrite(fd, rs[order].tobytes(), header.rowids_offset + 4 * at)
            at += len(ks)
            kp.unlink()
            rp.unlink()
        with rows.open("rb") as src:
            f.seek(header.rows_offset)
            while chunk := src.read(1 << 24):
                f.write(chunk)
        f.flush()
        os.fsync(fd)


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
