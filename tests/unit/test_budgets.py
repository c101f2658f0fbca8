"""Budgets below the proxy: policy keys and their errors, identity, what a message charges, the
verdict, and both stores (SQLite file, a real Redis) answering the same questions alike."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlp_addon.budget_keeper import BudgetKeeper
from dlp_addon.decide.budget import Charge, charges, window_seconds, window_words
from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, load_policy
from dlp_addon.decide.verdict import budget_error, with_budgets
from dlp_addon.errors import PolicyError
from dlp_addon.pipeline import inspect_ws
from dlp_addon.state import BudgetStore
from dlp_addon.state.redis import RedisStore
from dlp_addon.state.sqlite import SqliteStore
from tests.redis_server import RedisServer
from tests.synth import customer_records

BASE = """\
version: 1
destinations:
  - {name: shop, hosts: [shop.example]}
  - {name: mall, hosts: [mall.example]}
rules:
  - name: ids
    action: block
    when: [{detector: cn_resident_id, min_distinct: 5}]
groups:
  sales: [alice]
  claims: []
"""
RECORDS = customer_records(40, seed=7)
DAY = 86400.0


def _policy(tmp_path: Path, extra: str) -> Policy:
    p = tmp_path / "policy.yaml"
    p.write_text(BASE + textwrap.dedent(extra), encoding="utf-8")
    return load_policy(p, hmac_key=b"k" * 32)


def _problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(PolicyError) as e:
        _policy(tmp_path, extra)
    return e.value.problems


def test_shipped_budgets_follow_the_legal_tiers_with_insider_halving() -> None:
    policy = load_policy(DEFAULT_POLICY)
    budgets = {b.name: b for b in policy.budgets}
    assert budgets["personal-data-30d"].limit == 2499  # 5,000 / 2, stay below
    assert budgets["financial-data-30d"].limit == 24  # 50 / 2, stay below
    assert budgets["personal-data-30d"].window == 30 * 86400
    assert budgets["personal-data-24h"].window == 86400
    assert all(b.action == "block" and b.per == "user" for b in policy.budgets)
    assert policy.on_budget_error == "block"


def test_budget_mistakes_are_reported_with_their_lines(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        budgets:
          - {name: ids, window: 30d, limit: 5}
          - {name: b3, window: 1d, limit: 5, threshold: serious, legal_category: other}
          - {name: b4, window: 1d, threshold: serious}
          - {name: b5, window: 1d, limit: 5, detectors: [cn_uscc, nope]}
          - {name: b6, window: 1d, limit: 5, groups: [ghosts], destinations: [nowhere]}
        networks:
          - {cidr: 10.0.0.0/33, user: x}
          - {cidr: 10.0.0.0/8}
          - {cidr: 10.1.0.0/16, groups: [nobody]}
        """,
    )
    text = "\n".join(problems)
    for expected in (
        "yaml:13: duplicate rule or budget name 'ids'",
        "yaml:14: give one of limit, threshold",
        "yaml:15: threshold needs a legal_category",
        "yaml:16: 'cn_uscc' is not a personal data detector",
        "yaml:16: 'nope' is not a personal data detector",
        "yaml:17: unknown group 'ghosts'",
        "yaml:17: unknown destination 'nowhere'",
        "yaml:19: '10.0.0.0/33' is not an address range",
        "yaml:20: a network entry names a user or groups",
        "yaml:21: unknown group 'nobody'",
    ):
        assert expected in text, text
    assert all(p.startswith(str(tmp_path)) and ".yaml:" in p for p in problems)
    (bad_window,) = _problems(tmp_path, "budgets:\n  - {name: b, window: 3w, limit: 5}\n")
    assert "policy.yaml:13: budgets.0.window: '3w' does not match" in bad_window


def test_identity_login_then_address_map_then_address(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        """\
        networks:
          - {cidr: 10.20.0.0/16, groups: [claims]}
          - {cidr: 10.20.3.7/32, user: bob}
        """,
    )
    login = policy.requester("alice", "/x?q=1", "10.20.3.7")
    assert (login.user, login.source, login.groups, login.path) == (
        "alice",
        "proxyauth",
        frozenset({"sales", "claims"}),
        "/x",
    )
    mapped = policy.requester(None, "/", "::ffff:10.20.3.7")
    assert (mapped.user, mapped.source, mapped.groups) == ("bob", "network", {"claims"})
    in_range = policy.requester(None, "/", "10.20.9.9")
    assert (in_range.user, in_range.source, in_range.groups) == ("10.20.9.9", "address", {"claims"})
    outside = policy.requester(None, "/", "192.0.2.1")
    assert (outside.user, outside.source, outside.groups) == ("192.0.2.1", "address", set())
    assert policy.requester(None, "/").source == "none"


def _findings(policy: Policy, text: str) -> Any:
    return inspect_ws(policy, text.encode(), True, "shop").findings


def test_a_message_charges_distinct_personal_identifiers_only(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        """\
        budgets:
          - {name: people, window: 1d, limit: 100}
          - {name: team, per: group, window: 1d, limit: 100, groups: [sales]}
          - {name: mall-only, window: 1d, limit: 100, destinations: [mall]}
          - {name: each-site, window: 1d, limit: 100, per_destination: true, detectors: [cn_mobile]}
        """,
    )
    r = RECORDS[:3]
    text = "\n".join(f"{x['name']} {x['id']} {x['mobile']} {x['address']}" for x in r)
    text += f"\n再发一次 {r[0]['id']}\n统一社会信用代码 91350100M000100Y43"
    found = _findings(policy, text)
    got = charges(
        policy.budgets,
        policy.detectors,
        found,
        user="alice",
        groups=frozenset({"sales"}),
        destination="shop",
        enforcing=True,
    )
    by = {(c.budget, c.subject, c.scope): c for c in got}
    # 3 IDs + 3 mobiles; names, addresses, the repeat and the company code do not count.
    assert len(by[("people", "user:alice", "*")].keys) == 6
    assert len(by[("team", "group:sales", "*")].keys) == 6
    assert len(by[("each-site", "user:alice", "shop")].keys) == 3
    assert not any(c.budget == "mall-only" for c in got)
    assert all(c.blocking for c in got)
    # A user outside the group charges no group counter; exempt budgets are skipped.
    other = charges(
        policy.budgets,
        policy.detectors,
        found,
        user="carol",
        groups=frozenset(),
        destination="shop",
        enforcing=False,
        exempt={"people"},
    )
    assert {c.budget for c in other} == {"each-site"} and not other[0].blocking


def test_windows_in_words() -> None:
    assert window_seconds("24h") == 86400 and window_seconds("30d") == 30 * 86400
    assert window_seconds("0d") is None and window_seconds("5s") is None
    assert window_words(30 * 86400) == ("30 天", "30 days")
    assert window_words(3600) == ("1 小时", "1 hour")
    assert window_words(86400) == ("24 小时", "24 hours")


# --- stores -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[BudgetStore]:
    s: BudgetStore
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "b.sqlite"))
    else:
        redis_server.client().flushdb()
        s = RedisStore(redis_server.url)
    yield s
    s.close()


def _charge(keys: list[str], *, limit: int = 5, blocking: bool = True, budget: str = "b") -> Charge:
    return Charge(budget, "user:alice", "*", int(DAY), limit, blocking, frozenset(keys))


def _keys(*names: int) -> list[str]:
    return [f"{n:024x}" for n in names]


def test_store_trips_exactly_past_the_limit_and_counts_repeats_once(store: BudgetStore) -> None:
    (o,) = store.admit([_charge(_keys(1, 2, 3))], 1000.0)
    assert (o.before, o.after, o.tripped) == (0, 3, False)
    (o,) = store.admit([_charge(_keys(2, 3, 4, 5))], 1001.0)  # two new: 5, at the limit
    assert (o.before, o.after, o.tripped) == (3, 5, False)
    (o,) = store.admit([_charge(_keys(1, 2, 3, 4, 5))], 1002.0)  # nothing new
    assert (o.before, o.after, o.tripped) == (5, 5, False)
    (o,) = store.admit([_charge(_keys(5, 6))], 1003.0)  # one new: past it
    assert (o.before, o.after, o.tripped) == (5, 6, True)
    (o,) = store.admit([_charge(_keys(6))], 1004.0)  # the blocked one was not counted
    assert (o.before, o.after) == (5, 6)


def test_store_commits_nothing_when_any_blocking_budget_trips(store: BudgetStore) -> None:
    store.admit([_charge(_keys(1, 2, 3, 4, 5), budget="day")], 1000.0)
    both = [_charge(_keys(6), budget="day"), _charge(_keys(6), budget="month", limit=100)]
    day, month = store.admit(both, 1001.0)
    assert day.tripped and not month.tripped
    (month,) = store.admit([_charge(_keys(7), budget="month", limit=100)], 1002.0)
    assert month.before == 0  # nothing of the blocked message reached the other budget
    # A log budget (not blocking) that trips still counts what left.
    store.admit([_charge(_keys(8), budget="day", blocking=False)], 1003.0)
    (day,) = store.admit([_charge(_keys(8), budget="day")], 1004.0)
    assert day.before == 6


def test_store_window_slides_reset_and_prune(store: BudgetStore) -> None:
    store.admit([_charge(_keys(1, 2))], 1000.0)
    store.admit([_charge(_keys(3))], 1000.0 + DAY / 2)
    store.admit([_charge(_keys(1), budget="other")], 1000.0)
    (o,) = store.admit([_charge([])], 1000.0 + DAY + 1)  # 1 and 2 left the window
    assert o.before == 1
    usage = {(u.budget, u.subject): u.count for u in store.usage({"b": int(DAY)}, 1000.0 + DAY)}
    assert usage == {("b", "user:alice"): 1}
    assert store.prune({"other": int(DAY)}, 1000.0 + 2 * DAY) == 1
    assert store.reset("user:alice") == 1
    assert store.usage({"b": int(DAY)}, 1000.0 + DAY) == []


def test_sqlite_counts_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    first = SqliteStore(path)
    first.admit([_charge(_keys(1, 2, 3))], 1000.0)
    first.close()
    again = SqliteStore(path)
    (o,) = again.admit([_charge(_keys(3, 4))], 1001.0)
    assert (o.before, o.after) == (3, 4)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


# --- the verdict --------------------------------------------------------------------------------


def test_keeper_blocks_over_budget_and_fails_closed_on_a_locked_store(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "budgets:\n  - {name: people, window: 1d, limit: 4}\n")
    who = policy.requester("alice", "/")
    db = str(tmp_path / "k.sqlite")
    errors: list[str] = []
    keeper = BudgetKeeper(
        lambda: SqliteStore(db), "sqlite", on_store_error=lambda: errors.append("x"), timeout=0.3
    )
    texts = [f"{r['name']} {r['id']}" for r in RECORDS[:5]]

    async def go() -> list[Any]:
        out = []
        for text in ("\n".join(texts[:3]), texts[3], texts[4]):
            ins = inspect_ws(policy, text.encode(), True, "shop")
            out.append((await keeper.apply(policy, ins, who, "shop")).verdict)
        # Another process holds the write lock longer than the keeper waits: fail closed.
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        ins = inspect_ws(policy, texts[4].encode(), True, "shop")
        out.append((await keeper.apply(policy, ins, who, "shop")).verdict)
        other.execute("ROLLBACK")
        return out

    first, fourth, fifth, locked = asyncio.run(go())
    assert first.action == "allow" and fourth.action == "allow"
    assert (fifth.action, fifth.rule, fifth.blocks) == ("block", "people", True)
    assert fifth.budget is not None and fifth.budget["count_before"] == 4
    assert "limit of 4" in fifth.description_en and "24 hours" in fifth.description_en
    assert (locked.rule, locked.blocks, locked.reason) == (
        "budget-unavailable",
        True,
        "error:budget",
    )


def test_a_log_budget_does_not_override_a_block_and_log_errors_pass(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        """\
        inspection: {on_budget_error: log}
        budgets:
          - {name: watch, action: log, window: 1d, limit: 1}
        """,
    )
    ins = inspect_ws(policy, f"{RECORDS[0]['id']} {RECORDS[1]['id']}".encode(), True, "shop")
    charge = charges(
        policy.budgets,
        policy.detectors,
        ins.findings,
        user="alice",
        groups=frozenset(),
        destination="shop",
        enforcing=True,
    )[0]
    from dlp_addon.decide.budget import Outcome

    tripped = [Outcome(charge, 0, 2)]
    logged = with_budgets(policy, ins.verdict, tripped)
    assert (logged.action, logged.rule, logged.blocks) == ("log", "watch", False)
    error = budget_error(policy, ins.verdict)
    assert (error.action, error.blocks) == ("log", False)


def test_a_budget_change_is_in_the_policy_load_summary(tmp_path: Path) -> None:
    from dlp_addon.decide.changes import summarize

    before = _policy(tmp_path, "budgets:\n  - {name: people, window: 1d, limit: 4}\n")
    after = _policy(
        tmp_path,
        "inspection: {on_budget_error: log}\n"
        "budgets:\n  - {name: people, window: 1d, limit: 5}\n"
        "  - {name: month, window: 30d, limit: 50}\n",
    )
    changes = summarize(before, after)
    assert changes["budgets"] == {"added": ["month"], "changed": ["people"]}
    assert changes["on_budget_error"] == {"before": "block", "after": "log"}


def test_a_store_that_cannot_be_opened_fails_closed(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "budgets:\n  - {name: people, window: 1d, limit: 4}\n")
    (tmp_path / "not-a-dir").write_text("x")
    keeper = BudgetKeeper(
        lambda: SqliteStore(str(tmp_path / "not-a-dir" / "b.sqlite")), "sqlite", timeout=1
    )
    assert keeper.open() is False
    ins = inspect_ws(policy, RECORDS[0]["id"].encode(), True, "shop")
    verdict = asyncio.run(keeper.apply(policy, ins, policy.requester("alice", "/"), "shop")).verdict
    assert (verdict.rule, verdict.blocks) == ("budget-unavailable", True)
    plain = inspect_ws(policy, "今天能发货吗？".encode(), True, "shop")
    assert asyncio.run(keeper.apply(policy, plain, policy.requester("alice", "/"), "shop")) is plain
