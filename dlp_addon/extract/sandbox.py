"""Native parsers in a child process with a memory cap and a deadline.

python-calamine is fast, but a crafted workbook can make it panic or ask for gigabytes (a
mutated .xls made it allocate 8 GiB, which aborts the whole process). A request must never take
the proxy down, so workbooks are read in a child forked from a small fork server: the child
has an address-space limit, is killed at the inspection deadline, and whatever kills it
becomes an unscannable ``corrupt``/``too_large`` verdict in the proxy, which lives on.

A workbook's text (megabytes) comes back as bytes written straight after the answer's frame
and read into one buffer, in about the str's own width (UTF-16 for Chinese text): pickled, its
UTF-8 encoding and decoding and ``Connection.recv``'s growing buffer made a 100,000-row sheet's
hand-off 40-70 ms instead of 25-35. And the child never frees the sheet it read: it exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from dlp_addon.errors import ExtractError
from dlp_addon.extract import spreadsheet
from dlp_addon.extract.limits import Budget, Limits

CHILD_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
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
    """Fork children directly, without a fork server: for a process that runs no other
    thread (an inspection worker), where forking is safe and a fork server would cost a
    second start-up and its memory."""
    global _context
    with _lock:
        _context = multiprocessing.get_context("fork")


class Bulk(NamedTuple):
    """A sandboxed call's answer with a large payload, sent after the answer as it is (not
    pickled) and read into one buffer."""

    value: Any
    payload: bytes | bytearray


def _child(
    conn: multiprocessing.connection.Connection,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    previews: bool,
) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    try:
        if previews:  # ``func`` may hand something ahead of its answer: Pending.preview
            answer = func(*args, lambda value: conn.send(("preview", value)))
        else:
            answer = func(*args)
        bulk = isinstance(answer, Bulk)
        conn.send(("bulk", (answer.value, len(answer.payload))) if bulk else ("ok", answer))
    except ExtractError as e:
        conn.send(("error", e.reason))
    except MemoryError:
        conn.send(("error", "too_large"))
    else:
        if bulk:  # nothing may follow its frame but the payload: a failure here is a short read
            view = memoryview(answer.payload)
            while view:
                view = view[os.write(conn.fileno(), view) :]
    finally:
        conn.close()


class Pending:
    """A sandboxed call under way: the caller may do other work before :meth:`result`.
    Use as a context manager, or :meth:`close` it, so that a child whose answer is not wanted
    is killed. With ``previews``, ``func`` gets one more argument, a function that sends a
    value ahead of the answer (:meth:`preview`)."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float | None,
        *,
        previews: bool = False,
    ):
        self._deadline = time.monotonic() + _DEFAULT_SECONDS if deadline is None else deadline
        if self._deadline <= time.monotonic():
            raise TimeoutError
        self._answer: tuple[str, Any] | None = None
        self._parent, child = _ctx().Pipe(duplex=False)
        with contextlib.suppress(OSError):  # else the default size: more reads, same bytes
            fcntl.fcntl(self._parent.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._process = _ctx().Process(
            target=_child, args=(child, func, args, previews), daemon=True
        )
        self._process.start()
        child.close()

    def _receive(self) -> tuple[str, Any]:
        """The child's next message; a crash or an abort is ``ExtractError("corrupt")``, the
        deadline ``TimeoutError`` (the child is then killed)."""
        try:
            if not self._parent.poll(max(0.0, self._deadline - time.monotonic())):
                if self._process.is_alive():
                    raise TimeoutError
                raise ExtractError("corrupt")  # died without a word: a crash, or out of memory
            message: tuple[str, Any] = self._parent.recv()
            if message[0] == "bulk":  # its payload follows the frame: read it now
                value, size = message[1]
                message = ("ok", Bulk(value, self._payload(size)))
            return message
        except EOFError as e:
            self.close()
            raise ExtractError("corrupt") from e
        except BaseException:
            self.close()
            raise

    def preview(self) -> Any:
        """What the child sent ahead of its answer, or ``None`` when it answered without one
        (the answer is kept for :meth:`result`). Errors as for :meth:`result`."""
        status, value = self._receive()
        if status == "preview":
            return value
        self._answer = (status, value)
        if status == "error":
            self.close()
            raise ExtractError(value)
        return None

    def result(self) -> Any:
        """The call's value. A crash or an abort is ``ExtractError("corrupt")``, running out
        of memory ``too_large``, the deadline ``TimeoutError``."""
        try:
            status, value = self._answer if self._answer is not None else self._receive()
            while status == "preview":  # a preview nobody asked for
                status, value = self._receive()
        finally:
            self.close()
        if status == "error":
            raise ExtractError(value)
        return value

    def _payload(self, size: int) -> bytearray:
        """The ``size`` bytes the child writes after a bulk answer's frame."""
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
        """Kill the child, without waiting for the kernel to take its memory back (10-20 ms
        for a 100,000-row sheet): it is reaped when the next child starts."""
        self._parent.close()
        if self._process.is_alive():
            self._process.kill()
        self._process.join(0)

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(func: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
    """``func(*args)`` in a sandboxed child. A crash or an abort is ``ExtractError("corrupt")``,
    running out of memory ``too_large``, the deadline ``TimeoutError``."""
    with Pending(func, args, deadline) as pending:
        return pending.result()


def start_workbook(
    data: bytes, limits: Limits, deadline: float | None = None, *, preview: bool = False
) -> Pending:
    """``spreadsheet.read`` started in a sandboxed child; :func:`workbook_of` its answer. With
    ``preview``, a long workbook's first rows and shape come first (:meth:`Pending.preview`:
    a :class:`spreadsheet.Preview`, or ``None`` for a short one)."""
    return Pending(_read, (data, limits), deadline, previews=preview)


def workbook_of(
    pending: Pending, budget: Budget, *, cells_spent: bool = False
) -> spreadsheet.Sheets:
    """The workbook read by ``pending``; its cells (unless a preview's were ``cells_spent``)
    and its text are charged to ``budget``."""
    answer: Bulk = pending.result()
    shell, encoding = answer.value
    text = answer.payload.decode(encoding, "surrogatepass")
    sheets: spreadsheet.Sheets = dataclasses.replace(shell, text=text)
    if not cells_spent:
        budget.spend_cells(sheets.rows * max(sheets.columns, 1))
    budget.spend(len(sheets.text))
    return sheets


def read_workbook(data: bytes, budget: Budget, deadline: float | None = None) -> spreadsheet.Sheets:
    """``spreadsheet.read`` in a sandboxed child; its cells are charged to ``budget``."""
    with start_workbook(data, budget.limits, deadline) as pending:
        return workbook_of(pending, budget)


_held: list[object] = []  # in the child: what it read, left for its exit to free


def _read(
    data: bytes, limits: Limits, preview: Callable[[spreadsheet.Preview], None] | None = None
) -> Bulk:
    sheets = spreadsheet.read(data, Budget(limits), preview, _held)
    encoding, payload = _encoded(sheets.text)
    return Bulk((dataclasses.replace(sheets, text=""), encoding), payload)


def _encoded(text: str) -> tuple[str, bytes]:
    """``text`` as bytes in about its own width, and the codec that reads it back."""
    if text.isascii():
        return "ascii", text.encode("ascii")
    try:
        return "utf-16-le", text.encode("utf-16-le")
    except UnicodeEncodeError:  # a lone surrogate: UTF-16 would pair it with its neighbour
        return "utf-8", text.encode("utf-8", "surrogatepass")
