"""A hook the scanner calls between the chunks of a long part, with what it has found so far.

The scanner is shared by every inspection, so the hook travels with the inspection instead, in
a context variable: :func:`dlp_addon.decide.early.watching` sets it for one inspection (the
early verdict), and whatever it raises ends the scan. Without a hook this costs one lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

HOOK: ContextVar[Callable[[Sequence[Any]], None] | None] = ContextVar(
    "dlp_scan_checkpoint", default=None
)


def checkpoint(found: Sequence[Any]) -> None:
    """Hand ``found`` (the findings so far) to this inspection's hook, if it has one."""
    hook = HOOK.get()
    if hook is not None:
        hook(found)
