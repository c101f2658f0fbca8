"""Native parsers in a child process with a memory cap and a deadline.

python-calamine is fast, but a crafted workbook can make it panic or ask for gigabytes (a
mutated .xls made it allocate 8 GiB, which aborts the whole process). A request must never take
the proxy down, so workbooks are read in a child forked from a small fork server: the child
has an address-space limit, is killed at the inspection deadline, and whatever kills it
becomes an unscannable ``corrupt``/``too_large`` verdict in the proxy, which lives on.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from dlp_addon.errors import ExtractError
from dlp_addon.extract import spreadsheet
from dlp_addon.extract.limits import Budget, Limits

CHILD_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
_DEFAULT_SECONDS = 30.0

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


def _child(
    conn: multiprocessing.connection.Connection, func: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    try:
        conn.send(("ok", func(*args)))
    except ExtractError as e:
        conn.send(("error", e.reason))
    except MemoryError:
        conn.send(("error", "too_large"))
    finally:
        conn.close()


def run(func: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
    """``func(*args)`` in a sandboxed child. A crash or an abort is ``ExtractError("corrupt")``,
    running out of memory ``too_large``, the deadline ``TimeoutError``."""
    seconds = _DEFAULT_SECONDS if deadline is None else deadline - time.monotonic()
    if seconds <= 0:
        raise TimeoutError
    parent, child = _ctx().Pipe(duplex=False)
    process = _ctx().Process(target=_child, args=(child, func, args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(seconds):
            if process.is_alive():
                raise TimeoutError
            raise ExtractError("corrupt")  # died without a word: a crash, or out of memory
        status, value = parent.recv()
    except EOFError as e:
        raise ExtractError("corrupt") from e
    finally:
        parent.close()
        if process.is_alive():
            process.kill()
        process.join(1)
    if status == "error":
        raise ExtractError(value)
    return value


def read_workbook(data: bytes, budget: Budget, deadline: float | None = None) -> spreadsheet.Sheets:
    """``spreadsheet.read`` in a sandboxed child; its cells are charged to ``budget``."""
    sheets: spreadsheet.Sheets = run(_read, data, budget.limits, deadline=deadline)
    budget.spend_cells(sheets.rows * max(sheets.columns, 1))
    budget.spend(len(sheets.text))
    return sheets


def _read(data: bytes, limits: Limits) -> spreadsheet.Sheets:
    return spreadsheet.read(data, Budget(limits))
