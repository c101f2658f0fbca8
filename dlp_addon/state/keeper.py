"""Applies cumulative budgets to an inspected message, off the event loop.

The store's calls block (SQLite file locks, a Redis round trip), so each runs in a worker
thread under a deadline; a slow or unreachable store becomes the policy's ``on_budget_error``
verdict, never a stalled proxy. Only messages that leave are counted: a verdict that already
blocks never reaches the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from dlp_addon.decide.budget import charges
from dlp_addon.decide.over_budget import budget_error, with_budgets
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.pipeline import Inspection
from dlp_addon.state import BudgetStore, StoreError

logger = logging.getLogger(__name__)

STORE_TIMEOUT = 3.0


class BudgetKeeper:
    """The proxy's side of the budget store: one per process."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        on_store_error: Callable[[], None] = lambda: None,
        on_store_time: Callable[[float], None] = lambda _: None,
        timeout: float = STORE_TIMEOUT,
    ) -> None:
        self.store = store
        self._on_error = on_store_error
        self._on_time = on_store_time
        self.timeout = timeout

    async def apply(
        self,
        policy: Policy,
        inspection: Inspection,
        who: Requester,
        destination: str,
        now: float | None = None,
    ) -> Inspection:
        """``inspection`` with its verdict as the budgets leave it."""
        verdict = inspection.verdict
        if verdict.blocks or not policy.budgets or not inspection.findings:
            return inspection
        stamp = time.time() if now is None else now
        exempt = policy.exempt_rules(who, destination, dt.datetime.fromtimestamp(stamp, dt.UTC))
        todo = charges(
            policy.budgets,
            policy.detectors,
            inspection.findings,
            user=who.user,
            groups=who.groups,
            destination=destination,
            enforcing=policy.enforcing,
            exempt=exempt,
        )
        if not todo:
            return inspection
        started = time.monotonic()
        try:
            outcomes = await asyncio.wait_for(
                asyncio.to_thread(self.store.admit, todo, stamp), self.timeout
            )
        except (StoreError, TimeoutError) as e:
            self._on_error()
            reason = "timed out" if isinstance(e, TimeoutError) else str(e)
            logger.error("budget store (%s) failed: %s", self.store.backend, reason)
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
            removed = await asyncio.to_thread(self.store.prune, windows, time.time())
        except StoreError as e:
            self._on_error()
            logger.error("budget store (%s) prune failed: %s", self.store.backend, e)
            return
        if removed:
            logger.info("budget store: %d identifiers left their windows", removed)

    def close(self) -> None:
        try:
            self.store.close()
        except Exception as e:  # closing must not stop the proxy's shutdown
            logger.warning("closing the budget store: %s", type(e).__name__)
