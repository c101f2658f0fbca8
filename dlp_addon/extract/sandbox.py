"""Native parsers in a child process with a memory cap and a deadline.

python-calamine is fast, but a crafted workbook can make it panic or ask for gigabytes (a
mutated .xls made it allocate 8 GiB, which aborts the whole process). A request must never take
the proxy down, so workbooks are read in a child forked from a small fork server: the child
has an address-space limit, is killed at the inspection deadline, and whatever kills it
becomes an unscannable ``corrupt``/``too_large`` verdict in the proxy, which lives on.

A workbook comes back as it is read: its shape first, then its text a piece of whole rows at a
time (:class:`Workbook`), so that the proxy scans one piece while the child builds the next.
Each piece is bytes written straight after its frame and read into one buffer, in about the
str's own width (UTF-16 for Chinese text): pickled, its UTF-8 encoding and decoding and
``Connection.recv``'s growing buffer made a 100,000-row sheet's hand-off 40-70 ms instead of
25-35. And the child never frees the sheet it read: it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
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


def _child(
    conn: multiprocessing.connection.Connection,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    items: bool,
) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    try:
        ahead = (lambda value: _send(conn, "item", value),) if items else ()  # Pending.items
        _send(conn, "ok", func(*args, *ahead))
    except ExtractError as e:
        conn.send(("error", e.reason))
    except MemoryError:
        conn.send(("error", "too_large"))
    finally:
        conn.close()


class Pending:
    """A sandboxed call under way: the caller may do other work before :meth:`result`.
    Use as a context manager, or :meth:`close` it, so that a child whose answer is not wanted
    is killed. With ``items``, ``func`` gets one more argument, a function that sends a value
    (or a :class:`Bulk`) ahead of the answer (:meth:`items`)."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float | None,
        *,
        items: bool = False,
    ):
        self._deadline = time.monotonic() + _DEFAULT_SECONDS if deadline is None else deadline
        if self._deadline <= time.monotonic():
            raise TimeoutError
        self._answer: tuple[str, Any] | None = None
        self._parent, child = _ctx().Pipe(duplex=False)
        with contextlib.suppress(OSError):  # else the default size: more reads, same bytes
            fcntl.fcntl(self._parent.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._process = _ctx().Process(target=_child, args=(child, func, args, items), daemon=True)
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
            status, value = self._parent.recv()
            if isinstance(value, _Follows):  # its payload follows the frame: read it now
                value = Bulk(value.value, self._payload(value.size))
            return status, value
        except EOFError as e:
            self.close()
            raise ExtractError("corrupt") from e
        except BaseException:
            self.close()
            raise

    def items(self) -> Iterator[Any]:
        """What the child sends ahead of its answer, in order (the answer is kept for
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


class Workbook:
    """A workbook read in a sandboxed child (``spreadsheet.pieces``): :meth:`shape` first, then
    :meth:`pieces` of its text as the child builds them, each charged to the budget. Use as a
    context manager, or :meth:`close` it: a reader whose text is not wanted is killed."""

    def __init__(self, data: bytes, limits: Limits, deadline: float | None = None) -> None:
        self._pending = Pending(_read, (data, limits), deadline, items=True)
        self._items = self._pending.items()

    def shape(self, budget: Budget) -> spreadsheet.Shape:
        """The workbook's shape; its cells are charged to ``budget``."""
        shape = next(self._items, None)
        if not isinstance(shape, spreadsheet.Shape):  # answered without one: cannot be
            self.close()
            raise ExtractError("corrupt")
        budget.spend_cells(shape.rows * max(shape.columns, 1))
        return shape

    def pieces(self, budget: Budget) -> Iterator[str]:
        """The text after :meth:`shape`, a piece at a time as it comes (joined, the whole text;
        ``spreadsheet.pieces``), each charged to ``budget``."""
        for item in self._items:
            encoding, payload = item.value, item.payload
            piece: str = payload.decode(encoding, "surrogatepass")
            budget.spend(len(piece))
            yield piece
        self._pending.result()

    def close(self) -> None:
        self._pending.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_workbook(data: bytes, budget: Budget, deadline: float | None = None) -> spreadsheet.Sheets:
    """``spreadsheet.read`` in a sandboxed child; its cells and text are charged to ``budget``."""
    with Workbook(data, budget.limits, deadline) as book:
        shape = book.shape(budget)
        text = "".join(book.pieces(budget))
    return spreadsheet.Sheets(
        text, shape.sheets, shape.hidden_sheets, shape.rows, shape.columns, shape.names
    )


_held: list[object] = []  # in the child: what it read, left for its exit to free


def _read(data: bytes, limits: Limits, send: Callable[[object], None]) -> None:
    """In the child: the workbook's shape, then each piece of its text, sent as it is built."""
    for item in spreadsheet.pieces(data, Budget(limits), _held):
        send(Bulk(*_encoded(item)) if isinstance(item, str) else item)


def _encoded(text: str) -> tuple[str, bytes]:
    """``text`` as bytes in about its own width, and the codec that reads it back."""
    if text.isascii():
        return "ascii", text.encode("ascii")
    try:
        return "utf-16-le", text.encode("utf-16-le")
    except UnicodeEncodeError:  # a lone surrogate: UTF-16 would pair it with its neighbour
        return "utf-8", text.encode("utf-8", "surrogatepass")
