"""Budgets in one SQLite file (WAL mode): one proxy instance, kept across restarts.

One row per (counter, identifier hash) with the time it was last sent. ``admit`` runs in one
``BEGIN IMMEDIATE`` transaction, so concurrent messages (and ``dlp-policy budgets --reset`` in
another process) cannot both slip under a limit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from dlp_addon.decide.budget import Charge, Outcome, parse_counter
from dlp_addon.state.store import StoreError, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    counter TEXT NOT NULL,      -- budget|scope|subject
    key TEXT NOT NULL,          -- keyed hash (HMAC) of one identifier, never the value
    last_seen REAL NOT NULL,    -- unix time it was last sent
    PRIMARY KEY (counter, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (counter, last_seen);
"""
_CHUNK = 500  # host parameters per IN (...) query


class SqliteStore:
    backend = "sqlite"

    def __init__(self, path: str, timeout: float = 2.0, *, create: bool = True) -> None:
        """Open (``create``: and make, on the proxy's first start) the database at ``path``.

        Without ``create`` (``dlp-policy budgets``) the file must already be a budget
        database: a mistyped ``--db`` is an error, not a new empty database reporting no
        counts."""
        # ``timeout`` (waiting for another writer) stays under the keeper's deadline, so a call
        # the proxy gave up on fails rather than committing after the message was blocked.
        self.path = path
        if not create:
            self._db = self._open_existing(path, timeout)
        else:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if not Path(path).exists():  # user names and hashes: for the proxy's account only
                    Path(path).touch(mode=0o600)
                self._db = sqlite3.connect(
                    path, timeout=timeout, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as e:
                raise StoreError(f"cannot open budget database {path}: {e}") from e
        self._lock = threading.Lock()

    def ping(self) -> None:
        try:
            with self._lock:
                self._db.execute("SELECT count(*) FROM seen WHERE 0").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"budget database: {e}") from e

    @staticmethod
    def _open_existing(path: str, timeout: float) -> sqlite3.Connection:
        if not Path(path).is_file():
            raise StoreError(
                f"no budget database at {path} (give the proxy's dlp_budget_db file with --db)"
            )
        try:
            uri = Path(path).resolve().as_uri() + "?mode=rw"  # never creates the file
            db = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open budget database {path}: {e}") from e
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(seen)")}
        except sqlite3.DatabaseError as e:  # "file is not a database"
            db.close()
            raise StoreError(f"{path} is not a budget database ({e})") from e
        if not {"counter", "key", "last_seen"} <= columns:
            db.close()
            raise StoreError(f"{path} is not a budget database (it has no table of counters)")
        return db

    def admit(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        try:
            with self._lock:
                return self._admit(charges, now)
        except sqlite3.Error as e:
            raise StoreError(f"budget database: {e}") from e

    def _admit(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            outcomes = []
            for c in charges:
                db.execute(
                    "DELETE FROM seen WHERE counter = ? AND last_seen < ?",
                    (c.counter, now - c.window),
                )
                (before,) = db.execute(
                    "SELECT count(*) FROM seen WHERE counter = ?", (c.counter,)
                ).fetchone()
                keys = sorted(c.keys)
                known = 0
                for i in range(0, len(keys), _CHUNK):
                    chunk = keys[i : i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    (n,) = db.execute(
                        f"SELECT count(*) FROM seen WHERE counter = ? AND key IN ({marks})",
                        (c.counter, *chunk),
                    ).fetchone()
                    known += n
                outcomes.append(Outcome(c, before, before + len(keys) - known))
            if not any(o.tripped and o.charge.blocking for o in outcomes):
                db.executemany(
                    "INSERT INTO seen (counter, key, last_seen) VALUES (?, ?, ?) "
                    "ON CONFLICT (counter, key) DO UPDATE SET last_seen = excluded.last_seen",
                    [(c.counter, k, now) for c in charges for k in c.keys],
                )
            db.execute("COMMIT")
            return outcomes
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def usage(self, windows: dict[str, int], now: float) -> list[Usage]:
        out = []
        try:
            with self._lock:
                rows = self._db.execute("SELECT DISTINCT counter FROM seen").fetchall()
                for (counter,) in rows:
                    budget, scope, subject = parse_counter(counter)
                    if budget not in windows:
                        continue
                    (n,) = self._db.execute(
                        "SELECT count(*) FROM seen WHERE counter = ? AND last_seen >= ?",
                        (counter, now - windows[budget]),
                    ).fetchone()
                    if n:
                        out.append(Usage(budget, scope, subject, n))
        except sqlite3.Error as e:
            raise StoreError(f"budget database: {e}") from e
        return out

    def reset(self, subject: str) -> int:
        try:
            with self._lock:
                counters = [
                    c
                    for (c,) in self._db.execute("SELECT DISTINCT counter FROM seen").fetchall()
                    if parse_counter(c)[2] == subject
                ]
                removed = 0
                for c in counters:
                    removed += self._db.execute("DELETE FROM seen WHERE counter = ?", (c,)).rowcount
                return removed
        except sqlite3.Error as e:
            raise StoreError(f"budget database: {e}") from e

    def prune(self, windows: dict[str, int], now: float) -> int:
        removed = 0
        try:
            with self._lock:
                for budget, window in windows.items():
                    cur = self._db.execute(
                        "DELETE FROM seen WHERE counter >= ? AND counter < ? AND last_seen < ?",
                        (budget + "|", budget + "}", now - window),
                    )
                    removed += cur.rowcount
        except sqlite3.Error as e:
            raise StoreError(f"budget database: {e}") from e
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
