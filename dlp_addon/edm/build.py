"""Build an EDM index from a customer export, streaming: memory stays bounded however many rows.

One pass over the rows normalises and hashes each, appends its stored hashes to the row table
and its primary hashes to one of :data:`BUCKETS` bucket files chosen by the hash's top bits.
Rows go in batches of :data:`BATCH_ROWS` to ``jobs`` worker processes (hashing is the cost);
at most two batches per worker are in flight, so no more than ``2 x jobs x BATCH_ROWS`` raw
rows are ever in memory, and none is written anywhere. The hashes are uniform, so the
buckets are of even size and in order: each is then sorted on its own (numpy, in memory) and
written into place, which leaves the whole table sorted without a merge. 100 million rows of
three primary fields make buckets of ~2.3 million entries (~50 MB to sort).

The index is written under a temporary name next to the target, flushed to disk, and renamed
over it: the proxy (and anyone else) sees the old index or the new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import multiprocessing.pool
import os
import secrets
import struct
import tempfile
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dlp_addon.edm.fields import SEARCHED, Keys, Normaliser, primary_hash, stored_hash
from dlp_addon.edm.index import EdmError, Field, Header

BUCKET_BITS = 7
BUCKETS = 1 << BUCKET_BITS
_SHIFT = 64 - BUCKET_BITS
BATCH_ROWS = 1000
REJECTS_LISTED = 1000  # the first rejected lines are kept for the report; the rest counted


@dataclass
class BuildReport:
    """What an index build did: counts and line numbers, never a value."""

    rows: int = 0  # indexed
    slots: int = 0  # rows read (a rejected row keeps its place in the table, empty)
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
    jobs: int = 1,
) -> BuildReport:
    """Index ``rows`` (``(line number, cells)``): ``columns`` says which cell holds which
    field; the fields of the ``primary`` kinds become keys, the others are stored per row.
    ``progress(rows read, rows rejected)`` is called about every ``every`` rows. ``accept``
    may refuse the result (say why) after the pass: the old index then stays. ``jobs``:
    worker processes hashing (1: in this process)."""
    started = time.monotonic()
    kinds = [f.kind for _, f in columns]
    if len(set(kinds)) != len(kinds):
        raise EdmError("each kind of field may be given once")
    if not set(primary) <= set(kinds) or not primary:
        raise EdmError("every primary field must be one of the columns")
    if "policy" in kinds and not policy_format:
        raise EdmError("a policy number column needs its format (--policy-format)")
    stored = tuple(k for k in kinds if k not in primary)
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
    plan = _Plan(tuple(columns), tuple(primary), keys.hmac_key, policy_format)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.build-") as tmp:
        work = Path(tmp)
        buckets = _Buckets(work)
        with (work / "rows").open("wb") as rows_file:
            for base, (packed, ks, rs, rejects) in _hashed(plan, rows, jobs):
                rows_file.write(packed)
                buckets.add(ks, rs)
                for line, why in rejects:
                    report.reject(line, why)
                before = report.slots
                report.slots = base + len(packed) // header.row_bytes
                report.entries += len(ks) // 8
                if progress is not None and before // every != report.slots // every:
                    progress(report.slots, report.rejected)
        buckets.close()
        report.rows = report.slots - report.rejected
        if progress is not None:
            progress(report.slots, report.rejected)
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
            "rows": report.slots,
            "entries": report.entries,
            "rejected": report.rejected,
        }
    )


# What a batch becomes: its row table bytes, its primary hashes (u64) and their rows (u32),
# and its rejected lines.
_Hashed = tuple[bytes, bytes, bytes, list[tuple[int, str]]]


@dataclass(frozen=True)
class _Plan:
    """What a hashing process needs (picklable)."""

    columns: tuple[tuple[int, Field], ...]
    primary: tuple[str, ...]
    hmac_key: bytes
    policy_format: str | None


class _Hasher:
    """Normalises and hashes rows: in this process or in a worker."""

    def __init__(self, plan: _Plan) -> None:
        keys = Keys(plan.hmac_key)
        kinds = [f.kind for _, f in plan.columns]
        stored = [k for k in kinds if k not in plan.primary]
        searched = [k for k in stored if k in SEARCHED]
        self.normalise = Normaliser(plan.policy_format)
        # (cell, header, kind, hash, slot in the row or -1 for a key, slot of its length or -1)
        self.steps: list[tuple[int, str, str, Callable[[str], int], int, int]] = []
        for col, f in plan.columns:
            if f.kind in plan.primary:
                self.steps.append((col, f.name, f.kind, primary_hash(keys, f.kind), -1, -1))
                continue
            length = len(stored) + searched.index(f.kind) if f.kind in searched else -1
            hasher = stored_hash(keys, f.kind)
            self.steps.append((col, f.name, f.kind, hasher, stored.index(f.kind), length))
        self.width = max(col for col, _ in plan.columns) + 1
        self.row = struct.Struct("<" + "I" * len(stored) + "B" * len(searched))
        self.empty = [0] * (len(stored) + len(searched))

    def batch(self, base: int, rows: list[tuple[int, Sequence[str]]]) -> _Hashed:
        """Rows ``base``, ``base + 1``... of the table."""
        packed = bytearray()
        ks, rs = array("Q"), array("I")
        rejects: list[tuple[int, str]] = []
        blank = self.row.pack(*self.empty)
        normalise, pack = self.normalise, self.row.pack
        for n, (line, cells) in enumerate(rows):
            why = None
            if len(cells) < self.width:
                why = f"{len(cells)} columns, {self.width} expected"
            values = self.empty.copy()
            found: set[int] = set()
            for col, name, kind, hasher, slot, length in self.steps if why is None else ():
                value = normalise(kind, cells[col])
                if value is None:
                    why = f"column {name!r} is not a valid {kind}"
                    break
                if not value:
                    continue
                if slot < 0:
                    found.add(hasher(value))
                    continue
                values[slot] = hasher(value)
                if length >= 0:
                    values[length] = len(value)
            if why is None and not found:
                why = "no primary value"
            if why is not None:
                rejects.append((line, why))
                packed += blank
                continue
            packed += pack(*values)
            ks.extend(found)
            rs.extend([base + n] * len(found))
        return bytes(packed), ks.tobytes(), rs.tobytes(), rejects


_WORKER: _Hasher | None = None


def _start_worker(plan: _Plan) -> None:
    global _WORKER
    _WORKER = _Hasher(plan)


def _work(job: tuple[int, list[tuple[int, Sequence[str]]]]) -> _Hashed:
    assert _WORKER is not None
    return _WORKER.batch(*job)


def _batches(
    rows: Iterable[tuple[int, Sequence[str]]],
) -> Iterator[tuple[int, list[tuple[int, Sequence[str]]]]]:
    base, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield base, batch
            base, batch = base + len(batch), []
    if batch:
        yield base, batch


def _hashed(
    plan: _Plan, rows: Iterable[tuple[int, Sequence[str]]], jobs: int
) -> Iterator[tuple[int, _Hashed]]:
    """``(first row, hashed batch)`` in order; at most two batches per worker in flight."""
    if jobs <= 1:
        hasher = _Hasher(plan)
        for base, batch in _batches(rows):
            yield base, hasher.batch(base, batch)
        return
    context = multiprocessing.get_context("forkserver")
    with context.Pool(jobs, initializer=_start_worker, initargs=(plan,)) as pool:
        pending: deque[tuple[int, multiprocessing.pool.AsyncResult[_Hashed]]] = deque()
        for base, batch in _batches(rows):
            pending.append((base, pool.apply_async(_work, ((base, batch),))))
            if len(pending) >= 2 * jobs:
                first, result = pending.popleft()
                yield first, result.get()
        while pending:
            first, result = pending.popleft()
            yield first, result.get()


class _Buckets:
    """Primary hashes and their rows, spread over files by the hash's top bits."""

    def __init__(self, work: Path) -> None:
        self.paths = [(work / f"k{b:03d}", work / f"r{b:03d}") for b in range(BUCKETS)]
        self._files = [(kp.open("wb"), rp.open("wb")) for kp, rp in self.paths]

    def add(self, keys: bytes, rowids: bytes) -> None:
        import numpy as np

        ks = np.frombuffer(keys, dtype="<u8")
        rs = np.frombuffer(rowids, dtype="<u4")
        which = (ks >> np.uint64(_SHIFT)).astype(np.intp)
        order = np.argsort(which, kind="stable")
        which, ks, rs = which[order], ks[order], rs[order]
        bounds = np.searchsorted(which, np.arange(BUCKETS + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[b], bounds[b + 1]
            kf, rf = self._files[b]
            kf.write(ks[lo:hi].tobytes())
            rf.write(rs[lo:hi].tobytes())

    def close(self) -> None:
        for files in self._files:
            for f in files:
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
