"""Where cumulative budgets are kept between messages and restarts.

- ``sqlite.py``: one file in WAL mode, for one proxy instance (the default);
- ``redis.py``: one Redis shared by several proxy instances, so they count together.

Both keep, per counter (``budget|scope|subject``), the keyed hash of each identifier and when it
was last sent; never a raw value. Both answer :meth:`BudgetStore.admit` atomically: count,
decide, and add only when no blocking budget trips. Their calls block, so the proxy runs them in
a worker thread (``dlp_addon/budget_keeper.py``).
"""

from __future__ import annotations

from dlp_addon.state.store import BudgetStore, StoreError, Usage, read_password_file

__all__ = ["BudgetStore", "StoreError", "Usage", "open_store", "read_password_file"]


def open_store(
    redis_url: str,
    sqlite_path: str,
    redis_password: str | None = None,
    *,
    create: bool = True,
) -> BudgetStore:
    """Redis when a URL is given (``redis_password`` unless the URL has one), else the SQLite
    file (made when missing only if ``create``: the proxy makes it, a tool reading the proxy's
    counts must find it)."""
    if redis_url:
        from dlp_addon.state.redis import RedisStore

        return RedisStore(redis_url, password=redis_password)
    from dlp_addon.state.sqlite import SqliteStore

    return SqliteStore(sqlite_path, create=create)
