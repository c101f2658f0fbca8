"""What every budget store is: the :class:`BudgetStore` protocol, its error and its records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dlp_addon.decide.budget import Charge, Outcome
from dlp_addon.errors import DlpError


class StoreError(DlpError):
    """The budget store cannot be read or written (Redis down, disk full, locked database)."""


@dataclass(frozen=True)
class Usage:
    """One counter's state, for ``dlp-policy budgets``."""

    budget: str
    scope: str
    subject: str
    count: int


class BudgetStore(Protocol):
    backend: str  # sqlite | redis: a bounded metric label

    def admit(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        """Count each charge's counter within its window, with and without its keys; add the
        keys (last seen ``now``) to every counter unless a blocking charge trips."""
        ...

    def usage(self, windows: dict[str, int], now: float) -> list[Usage]:
        """Every counter of the budgets in ``windows`` (name -> seconds) that is not empty."""
        ...

    def reset(self, subject: str) -> int:
        """Forget every counter of ``subject`` (``user:NAME`` or ``group:NAME``); returns how
        many identifiers were forgotten."""
        ...

    def prune(self, windows: dict[str, int], now: float) -> int:
        """Drop identifiers older than their budget's window; returns how many."""
        ...

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers now (readiness asks)."""
        ...

    def close(self) -> None: ...


def read_password_file(path: str, what: str) -> str:
    """The Redis password kept in ``path`` (its text, stripped): a file, so that no command
    line or URL shows it. ``what`` names the option in the error."""
    try:
        password = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise StoreError(f"cannot read {what}: {why}") from e
    if not password:
        raise StoreError(f"{what} is empty")
    return password
