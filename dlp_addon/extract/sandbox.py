"""Native parsers in reader processes with a memory cap and a deadline.

python-calamine is fast, but a crafted workbook can make it panic or ask for gigabytes (a
mutated .xls made it allocate 8 GiB, which aborts the whole process). A request must never take
the proxy down, so workbooks are read in a reader process (forked from a small fork server, or
from an inspection worker): it has an address-space limit, is killed at the inspection deadline
or when its answer is no longer wanted, and whatever kills it becomes an unscannable
``corrupt``/``too_large`` verdict in the proxy, which lives on.

A reader that answered in full reads the next workbook too (one at a time), for up to
``IDLE_SECONDS`` after its last one: its memory is already mapped in, where a new process
spends ~50-100 ms of a 100,000-row workbook faulting pages in. It keeps what it freed for the
next workbook, so it leaves (and a new one starts) once it holds more than ``KEEP_BYTES``.
A reader that erred, was killed or ran out of memory is never used again. The workbook's bytes
reach it as a memory file (``memfd``) passed over a socket, and calamine reads that by path.

A reader may send values ahead of its answer (``Pending.items``: a workbook's text, a piece at
a time, see ``spreadsheet.Workbook``), and a large value as bytes written straight after its
frame and read into one buffer (:class:`Bulk`): pickled, a 100,000-row sheet's text took
40-70 ms to cross instead of 25-35. What a job leaves in :data:`held` is freed after its answer,
while the proxy goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import multiprocessing
import multiprocessing.connection
import multiprocessing.reduction
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from dlp_addon.errors import ExtractError

CHILD_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
IDLE_SECONDS = 60.0  # a reader waits this long for its next workbook, then leaves
KEEP_BYTES = 512 * 1024 * 1024  # a reader holding more after a workbook leaves
_KEEP_READERS = 2  # idle readers a process keeps
_DEFAULT_SECONDS = 30.0
_PIPE_BYTES = 1024 * 1024  # Linux's default cap for a pipe: a bulk payload in fewer reads
_F_SETPIPE_SZ = 1031

_lock = threading.Lock()
_context: Any = None


def _ctx() -> Any:
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["dlp_addon.extract.spreadsheet"])
            _context = ctx
        return _context


def prefer_fork() -> None:
    """Fork readers directly, without a fork server: for a process that runs no other
    thread (an inspection worker), where forking is safe and a fork server would cost a
    second start-up and its memory."""
    global _context
    with _lock:
        _context = multiprocessing.get_context("fork")


class Bulk(NamedTuple):
    """A value with a large payload, sent after its frame as it is (not pickled) and read
    into one buffer: a sandboxed call's answer, or an item it sends ahead."""

    value: Any
    payload: bytes | bytearray


class _Follows(NamedTuple):
    """In a frame: the value of a :class:`Bulk` whose ``size`` bytes follow the frame."""

    value: Any
    size: int


def _send(conn: multiprocessing.connection.Connection, status: str, value: Any) -> None:
    if not isinstance(value, Bulk):
        conn.send((status, value))
        return
    conn.send((status, _Follows(value.value, len(value.payload))))
    view = memoryview(value.payload)  # nothing may come between: a failure is a short read
    while view:
        view = view[os.write(conn.fileno(), view) :]


class _Job(NamedTuple):
    func: Callable[..., Any]
    args: tuple[Any, ...]
    items: bool  # ``func`` gets a function that sends values ahead of its answer
    handle: bool  # a file descriptor follows, passed over the socket: ``func``'s first argument


def _serve(
    jobs: multiprocessing.connection.Connection, conn: multiprocessing.connection.Connection
) -> None:
    """A reader: runs each job it is sent, one at a time, and answers on ``conn`` (a pipe);
    leaves after ``IDLE_SECONDS`` without one, after an error, or holding over ``KEEP_BYTES``."""
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    _keep_freed_memory()
    while jobs.poll(IDLE_SECONDS):
        try:
            job: _Job = jobs.recv()
            args = job.args
            if job.handle:
                args = (multiprocessing.reduction.recv_handle(jobs), *args)
        except (EOFError, OSError):
            return  # the proxy is gone
        try:
            ahead = (lambda value: _send(conn, "item", value),) if job.items else ()
            answer = job.func(*args, *ahead)
            stays = 0 <= _own_bytes() <= KEEP_BYTES
            _send(conn, "ok" if stays else "ok:last", answer)
        except ExtractError as e:
            conn.send(("error", e.reason))
            return
        except MemoryError:
            conn.send(("error", "too_large"))
            return
        finally:
            if job.handle:
                os.close(args[0])
        del job, args, answer
        held.clear()  # after the answer: while the proxy goes on with it
        if not stays:
            return


def _keep_freed_memory() -> None:
    """glibc keeps freed memory for the next workbook instead of unmapping it (best effort)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: its largest
        libc.mallopt(-1, KEEP_BYTES)  # M_TRIM_THRESHOLD


def _own_bytes() -> int:
    """Memory only this process holds (what it has written: not the pages it shares with the
    process it was forked from), or -1 when the system does not tell."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines()[1:])
        kib = int(fields[b"Private_Clean"].split()[0]) + int(fields[b"Private_Dirty"].split()[0])
    except (OSError, ValueError, KeyError, IndexError):
        return -1
    return kib * 1024


class _Reader:
    """A reader process and the proxy's ends of its channels: jobs over a socket (it passes
    file descriptors), answers over a pipe (it holds a megabyte)."""

    def __init__(self) -> None:
        self.jobs, their_jobs = _ctx().Pipe(duplex=True)
        self.answers, their_answers = _ctx().Pipe(duplex=False)
        with contextlib.suppress(OSError):  # else the default size: more reads, same bytes
            fcntl.fcntl(self.answers.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self.process = _ctx().Process(
            target=_serve, args=(their_jobs, their_answers), daemon=True, name="dlp-reader"
        )
        try:
            self.process.start()
        finally:
            their_jobs.close()
            their_answers.close()
        self.idle_since = 0.0

    def send(self, job: _Job, handle: int | None) -> None:
        self.jobs.send(job)
        if handle is not None:
            multiprocessing.reduction.send_handle(self.jobs, handle, self.process.pid or 0)

    def kill(self) -> None:
        """Stop it, without waiting for the kernel to take its memory back (10-20 ms for a
        100,000-row sheet): it is reaped when the next reader starts."""
        self.jobs.close()
        self.answers.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(0)


_idle: list[_Reader] = []  # readers that answered in full, waiting for the next workbook
held: list[object] = []  # in a reader: what a job left for it to free after the answer


def _take() -> _Reader:
    """An idle reader that will not leave before it gets its job, else a new one."""
    with _lock:
        while _idle:
            reader = _idle.pop()
            fresh = time.monotonic() - reader.idle_since < IDLE_SECONDS - 5
            if fresh and reader.process.is_alive():
                return reader
            reader.kill()
    return _Reader()


def _give(reader: _Reader) -> None:
    reader.idle_since = time.monotonic()
    with _lock:
        if len(_idle) < _KEEP_READERS:
            _idle.append(reader)
            return
    reader.kill()


def idle() -> list[int]:
    """The process ids of the readers waiting for a workbook."""
    with _lock:
        return [r.process.pid for r in _idle if r.process.pid is not None]


def shutdown() -> None:
    """Stop the idle readers and wait for them (at exit, and for measuring their memory)."""
    with _lock:
        readers = list(_idle)
        _idle.clear()
    for reader in readers:
        reader.kill()
        reader.process.join(5)


class Pending:
    """A sandboxed call under way: the caller may do other work before :meth:`result`.
    Use as a context manager, or :meth:`close` it, so that a reader whose answer is not wanted
    is killed. With ``items``, ``func`` gets one more argument, a function that sends a value
    (or a :class:`Bulk`) ahead of the answer (:meth:`items`); with ``handle``, a file
    descriptor passed to the reader is its first argument (closed after the call)."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float | None,
        *,
        items: bool = False,
        handle: int | None = None,
    ):
        self._deadline = time.monotonic() + _DEFAULT_SECONDS if deadline is None else deadline
        if self._deadline <= time.monotonic():
            raise TimeoutError
        self._answer: tuple[str, Any] | None = None
        self._whole = False  # the reader answered in full: it may read the next workbook
        reader = _take()
        self._reader: _Reader | None = reader
        self._parent, self._process = reader.answers, reader.process
        try:
            reader.send(_Job(func, args, items, handle is not None), handle)
        except OSError as e:  # it left in between (it cannot have read anything)
            self.close()
            raise ExtractError("corrupt") from e

    def _receive(self) -> tuple[str, Any]:
        """The reader's next message; a crash or an abort is ``ExtractError("corrupt")``, the
        deadline ``TimeoutError`` (the reader is then killed)."""
        try:
            if not self._parent.poll(max(0.0, self._deadline - time.monotonic())):
                if self._process.is_alive():
                    raise TimeoutError
                raise ExtractError("corrupt")  # died without a word: a crash, or out of memory
            status, value = self._parent.recv()
            if isinstance(value, _Follows):  # its payload follows the frame: read it now
                value = Bulk(value.value, self._payload(value.size))
            if status.startswith("ok"):
                self._whole, status = status == "ok", "ok"
            return status, value
        except EOFError as e:
            self.close()
            raise ExtractError("corrupt") from e
        except BaseException:
            self.close()
            raise

    def items(self) -> Iterator[Any]:
        """What the reader sends ahead of its answer, in order (the answer is kept for
        :meth:`result`). Errors as for :meth:`result`; an error answer is raised here."""
        while self._answer is None:
            status, value = self._receive()
            if status == "item":
                yield value
                continue
            self._answer = (status, value)
            if status == "error":
                self.close()
                raise ExtractError(value)

    def result(self) -> Any:
        """The call's value. A crash or an abort is ``ExtractError("corrupt")``, running out
        of memory ``too_large``, the deadline ``TimeoutError``."""
        try:
            status, value = self._answer if self._answer is not None else self._receive()
            while status == "item":  # items nobody asked for
                status, value = self._receive()
        finally:
            self.close()
        if status == "error":
            raise ExtractError(value)
        return value

    def _payload(self, size: int) -> bytearray:
        """The ``size`` bytes the reader writes after a bulk answer's frame."""
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        while done < size:
            if not self._parent.poll(max(0.0, self._deadline - time.monotonic())):
                raise TimeoutError if self._process.is_alive() else EOFError
            read = os.readv(self._parent.fileno(), [view[done:]])
            if not read:
                raise EOFError
            done += read
        return buffer

    def close(self) -> None:
        """Give the reader back when it answered in full, else kill it (``_Reader.kill``)."""
        reader, whole = self._reader, self._whole
        self._reader, self._whole = None, False
        if reader is None:
            return
        if whole:
            _give(reader)
        else:
            reader.kill()

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(func: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
    """``func(*args)`` in a sandboxed reader. A crash or an abort is ``ExtractError("corrupt")``,
    running out of memory ``too_large``, the deadline ``TimeoutError``."""
    with Pending(func, args, deadline) as pending:
        return pending.result()
