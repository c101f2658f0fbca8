"""``dlp-policy budgets``: who is nearest their cumulative budgets, and resetting one person.

    dlp-policy budgets POLICY [--db FILE | --redis URL [--redis-password-file FILE]] [--top N]
    dlp-policy budgets POLICY --reset NAME [--group] [--audit-log FILE]

Reads the same store the proxy writes (the SQLite file, or Redis); a ``--db`` that is missing
or not a budget database is an error, never a new empty one. Counts only: the store holds
keyed hashes, so nothing here can show which identifiers were sent. A reset forgets every
counter of one user (or group) and is written to the audit log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import socket
import sys
import time

from dlp_addon.act.audit import AuditLog
from dlp_addon.decide.budget import window_words
from dlp_addon.decide.policy import Policy
from dlp_addon.state import BudgetStore, StoreError, open_store, read_password_file


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("budgets", help="users nearest their budgets; reset one user's counters")
    p.add_argument("policy")
    p.add_argument("--db", default="dlp-budgets.sqlite", help="the proxy's dlp_budget_db")
    p.add_argument("--redis", default="", help="the proxy's dlp_budget_redis URL")
    p.add_argument(
        "--redis-password-file",
        default="",
        help="the proxy's dlp_budget_redis_password_file (the password never goes on the "
        "command line, where ps shows it)",
    )
    p.add_argument("--top", type=int, default=20, help="how many counters to list (default 20)")
    p.add_argument("--reset", metavar="NAME", help="forget every counter of this user")
    p.add_argument("--group", action="store_true", help="--reset names a group, not a user")
    p.add_argument(
        "--audit-log", default="dlp-audit.jsonl", help="where a reset is recorded ('-': stderr)"
    )


def run(policy: Policy, args: argparse.Namespace) -> int:
    if not policy.budgets and not args.reset:  # nor has the proxy made a database for them
        print("the policy has no budgets")
        return 0
    try:
        password = (
            read_password_file(args.redis_password_file, "--redis-password-file")
            if args.redis_password_file
            else None
        )
        store = open_store(args.redis, args.db, password, create=False)
    except StoreError as e:
        print(f"dlp-policy budgets: {e}", file=sys.stderr)
        return 1
    try:
        if args.reset:
            return _reset(store, args)
        return _list(policy, store, args.top)
    except StoreError as e:
        print(f"dlp-policy budgets: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _list(policy: Policy, store: BudgetStore, top: int) -> int:
    budgets = {b.name: b for b in policy.budgets}
    usage = store.usage({n: b.window for n, b in budgets.items()}, time.time())
    if not usage:
        print("no counts in any budget window")
        return 0
    usage.sort(key=lambda u: (-u.count / budgets[u.budget].limit, u.budget, u.subject))
    print(f"{'budget':<22} {'user or group':<26} {'destination':<14} {'used / limit':>18}  window")
    for u in usage[:top]:
        b = budgets[u.budget]
        used = f"{u.count}/{b.limit} ({100 * u.count / b.limit:.0f}%)"
        window = window_words(b.window)[1]
        print(f"{u.budget:<22} {u.subject:<26} {u.scope:<14} {used:>18}  {window}")
    return 0


def _reset(store: BudgetStore, args: argparse.Namespace) -> int:
    subject = f"{'group' if args.group else 'user'}:{args.reset}"
    removed = store.reset(subject)
    event = {
        "event": "budget_reset",
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "who": f"dlp-policy budgets, OS user {getpass.getuser()} on {socket.gethostname()}",
        "subject": subject,
        "identifiers_forgotten": removed,
        "store": store.backend,
    }
    audit = AuditLog(args.audit_log)
    try:
        audit.write(event)
    except OSError as e:
        print(f"dlp-policy budgets: reset done, but the audit log failed: {e.strerror}")
        return 1
    finally:
        audit.close()
    print(f"{subject}: {removed} identifiers forgotten; recorded in {args.audit_log}")
    return 0
