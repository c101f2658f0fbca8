"""Applies cumulative budgets to an inspected message, off the event loop.

The stores themselves are in ``state/``; this is the proxy's side of them, part of deciding
(``decision.py`` calls it once the message is inspected).

The store's calls block (SQLite file locks, a Redis round trip), so each runs in a worker
thread under a deadline; a slow or unreachable store becomes the policy's ``on_budget_error``
verdict, never a stalled proxy. Only messages that leave are counted: a verdict that already
blocks never reaches the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from dlp_addon.decide.budget import Charge, Outcome, charges
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import budget_error, with_budgets
from dlp_addon.pipeline import Inspection
from dlp_addon.state import BudgetStore, StoreError

logger = logging.getLogger(__name__)

STORE_TIMEOUT = 3.0


class BudgetKeeper:
    """The proxy's side of the budget store: one per process. The store is opened on first
    need (a policy without budgets never creates a database file)."""

    def __init__(
        self,
        opener: Callable[[], BudgetStore],
        backend: str,
        *,
        on_store_error: Callable[[], None] = lambda: None,
        on_store_time: Callable[[float], None] = lambda _: None,
        timeout: float = STORE_TIMEOUT,
    ) -> None:
        self.backend = backend
        self._opener = opener
        self._store: BudgetStore | None = None
        self._lock = threading.Lock()
        self._on_error = on_store_error
        self._on_time = on_store_time
        self.timeout = timeout

    @property
    def store(self) -> BudgetStore:
        """The store, opened now if it is not yet; raises :class:`StoreError`."""
        with self._lock:
            if self._store is None:
                self._store = self._opener()
                logger.info("budgets kept in %s", self.backend)
            return self._store

    def open(self) -> bool:
        """Open the store at start-up. A failure is a warning, counted, and met again per
        message with the policy's ``on_budget_error``: it must not stop the proxy (mitmproxy
        exits on an error logged during start-up), or Redis being down at boot would take
        all egress down instead of only what the budgets cannot vouch for."""
        try:
            _ = self.store
        except StoreError as e:
            self._on_error()
            logger.warning("budget store (%s) unavailable: %s", self.backend, e)
            return False
        return True

    def problem(self) -> str | None:
        """Why the store cannot be used right now, or ``None``: what readiness reports, so a
        worker whose budget store refuses it (down, wrong password) leaves the balancer."""
        try:
            self.store.ping()
        except StoreError as e:
            return f"budget store ({self.backend}) unavailable: {e}"
        return None

    def _admit(self, todo: list[Charge], now: float) -> list[Outcome]:
        return self.store.admit(todo, now)

    async def apply(
        self,
        policy: Policy,
        inspection: Inspection,
        who: Requester,
        destination: str,
        now: float | None = None,
    ) -> Inspection:
        """``inspection`` with its verdict as the budgets leave it. The rules the requester is
        exempt from are those :func:`~dlp_addon.decide.verdict.decide` found."""
        verdict = inspection.verdict
        if verdict.blocks or not policy.budgets or not (inspection.findings or inspection.edm_keys):
            return inspection
        stamp = time.time() if now is None else now
        todo = charges(
            policy.budgets,
            policy.detectors,
            inspection.findings,
            user=who.user,
            groups=who.groups,
            destination=destination,
            enforcing=policy.enforcing,
            exempt=set(verdict.exempt) or None,
            edm_keys=inspection.edm_keys,
        )
        if not todo:
            return inspection
        started = time.monotonic()
        try:
            outcomes = await asyncio.wait_for(
                asyncio.to_thread(self._admit, todo, stamp), self.timeout
            )
        except (StoreError, TimeoutError) as e:
            self._on_error()
            reason = "timed out" if isinstance(e, TimeoutError) else str(e)
            logger.error("budget store (%s) failed: %s", self.backend, reason)
            new = budget_error(policy, verdict)
        else:
            new = with_budgets(policy, verdict, outcomes)
        finally:
            self._on_time(time.monotonic() - started)
        return dataclasses.replace(inspection, verdict=new)

    async def prune(self, policy: Policy) -> None:
        """Drop what has left every window (the store also prunes each counter it touches)."""
        windows = {b.name: b.window for b in policy.budgets}
        if not windows:
            return
        try:
            removed = await asyncio.to_thread(lambda: self.store.prune(windows, time.time()))
        except StoreError as e:
            self._on_error()
            logger.error("budget store (%s) prune failed: %s", self.backend, e)
            return
        if removed:
            logger.info("budget store: %d identifiers left their windows", removed)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is None:
            return
        try:
            store.close()
        except Exception as e:  # closing must not stop the proxy's shutdown
            logger.warning("closing the budget store: %s", type(e).__name__)
