"""The budget store's options and life: which store, its password, opening and pruning it.

The store is opened at start only when the policy has budgets; a store that cannot be opened is
a warning (and each message meets the policy's ``on_budget_error``), never a proxy that will
not start. Deciding with the budgets is ``decision.py``'s and ``budget_keeper.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions

from dlp_addon.budget_keeper import BudgetKeeper
from dlp_addon.edge.policy_holder import PolicyHolder
from dlp_addon.edge.reporting import Reporting
from dlp_addon.state import StoreError, open_store, read_password_file

logger = logging.getLogger(__name__)

OPTIONS = {"dlp_budget_db", "dlp_budget_redis", "dlp_budget_redis_password_file"}


@dataclass(frozen=True)
class StoreSettings:
    db: str = "dlp-budgets.sqlite"
    redis: str = ""
    redis_password: str | None = None

    @property
    def backend(self) -> str:
        return "redis" if self.redis else "sqlite"


def read_redis_password(path: str) -> str | None:
    if not path:
        return None
    try:
        return read_password_file(path, "dlp_budget_redis_password_file")
    except StoreError as e:
        raise exceptions.OptionsError(str(e)) from e


class BudgetStoreService:
    """One :class:`BudgetKeeper` per process, made on first need from the options."""

    def __init__(self, holder: PolicyHolder, reporting: Reporting) -> None:
        self.settings = StoreSettings()
        self._holder = holder
        self._metrics = reporting.metrics
        self._keeper: BudgetKeeper | None = None
        self._pruner: asyncio.Task[None] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "dlp_budget_db",
            str,
            StoreSettings.db,
            "SQLite file (WAL mode) keeping the policy's cumulative budgets across restarts; "
            "used when dlp_budget_redis is empty.",
        )
        loader.add_option(
            "dlp_budget_redis",
            str,
            StoreSettings.redis,
            "Redis URL (redis://host:port/db) for budgets shared by several proxy instances; "
            "needs the same dlp_hmac_key_file or $DLP_HMAC_KEY on every instance.",
        )
        loader.add_option(
            "dlp_budget_redis_password_file",
            str,
            "",
            "File holding the password of dlp_budget_redis (Redis requirepass or ACL user), "
            "so it stays off the command line and out of the URL.",
        )

    def configure(self, updated: set[str]) -> None:
        if not (OPTIONS | {"dlp_hmac_key_file"}) & updated:
            return
        if ctx.options.dlp_budget_redis and self._holder.settings.hmac_key() is None:
            raise exceptions.OptionsError(
                "dlp_budget_redis needs dlp_hmac_key_file or $DLP_HMAC_KEY: instances "
                "sharing budgets must hash identifiers with the same key"
            )
        self.settings = StoreSettings(
            db=ctx.options.dlp_budget_db,
            redis=ctx.options.dlp_budget_redis,
            redis_password=read_redis_password(ctx.options.dlp_budget_redis_password_file),
        )
        if self._keeper is not None:
            self._keeper.close()
        self._keeper = None

    @property
    def keeper(self) -> BudgetKeeper:
        if self._keeper is None:
            s = self.settings
            self._keeper = BudgetKeeper(
                lambda: open_store(s.redis, s.db, s.redis_password),
                s.backend,
                on_store_error=self._metrics.budget_store_errors.labels(s.backend).inc,
                on_store_time=self._metrics.budget_store_seconds.labels(s.backend).observe,
            )
        return self._keeper

    def problem(self) -> str | None:
        """Why budgets cannot be kept now (readiness), or ``None``."""
        policy = self._holder.policy
        return self.keeper.problem() if policy is not None and policy.budgets else None

    async def _prune(self) -> None:
        """Hourly: drop identifiers that have left every budget window."""
        while True:
            if self._holder.policy is not None:
                await self.keeper.prune(self._holder.policy)
            await asyncio.sleep(3600)

    def running(self) -> None:
        policy = self._holder.policy
        if policy is None or not policy.budgets:
            return
        if self._holder.settings.hmac_key() is None:
            logger.warning(
                "budgets without dlp_hmac_key_file or $DLP_HMAC_KEY: identifiers hash with a "
                "per-process key, so the same ID sent again after a restart counts again"
            )
        self.keeper.open()
        self._pruner = asyncio.get_running_loop().create_task(self._prune())

    def done(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
        if self._keeper is not None:
            self._keeper.close()
