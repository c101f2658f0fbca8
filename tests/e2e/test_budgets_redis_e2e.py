"""End to end: two ``dlp-proxy`` processes sharing one real Redis count one budget together;
with Redis stopped, the policy's ``on_budget_error`` holds (block by default, or log).

Each employee here is the client address (no proxy login), the simplest identity.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Proxy, TlsFiles, Upstream, make_test_policy, scrub
from tests.e2e.test_proxy_e2e import ws_exchange
from tests.redis_server import RedisServer
from tests.synth import customer_records

pytestmark = pytest.mark.e2e

LIMIT = 30
PER_MESSAGE = 3
BUDGET = "drip-shared"
RECORDS = customer_records(90, seed=20260802)
IDS = [r["id"] for r in RECORDS]
TEXTS = [
    "\n".join(f"{r['name']} {r['id']} {r['address']}" for r in RECORDS[i : i + PER_MESSAGE])
    for i in range(0, len(RECORDS), PER_MESSAGE)
]
PLAIN = "亲，请问这款28寸的行李箱今天能发货吗？"


def policy(on_budget_error: str = "block") -> dict[str, Any]:
    def edit(p: dict[str, Any]) -> None:
        p["budgets"] = [
            {"name": BUDGET, "legal_category": "other", "limit": LIMIT, "window": "24h"}
        ]
        p.setdefault("inspection", {})["on_budget_error"] = on_budget_error

    return make_test_policy(edit=edit)


def send(proxy: Proxy, upstream: Upstream, texts: list[str]) -> list[httpx.Response]:
    with httpx.Client(
        proxy=proxy.url, verify=proxy.ssl_context(), trust_env=False, timeout=15
    ) as client:
        return [
            client.post(
                upstream.url("https", "/chat/send"),
                content=json.dumps({"content": t}, ensure_ascii=False).encode(),
                headers={"content-type": "application/json", "accept": "application/json"},
            )
            for t in texts
        ]


@pytest.fixture(scope="module")
def key() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def proxies(
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: TlsFiles,
    redis_server: RedisServer,
    key: str,
) -> Iterator[dict[str, Proxy]]:
    """Two enforcing proxies and one whose policy says ``on_budget_error: log``."""
    started: dict[str, Proxy] = {}
    for name, on_error in (("one", "block"), ("two", "block"), ("lenient", "log")):
        p = Proxy(tmp_path_factory.mktemp(f"redis-{name}"), policy(on_error), tls_files.ca_cert)
        p.extra_args = ["--set", f"dlp_budget_redis={redis_server.url}"]
        p.env = {"DLP_HMAC_KEY": key}
        p.start()
        started[name] = p
    yield started
    for p in started.values():
        p.stop()


def test_two_proxies_sharing_redis_count_together(
    proxies: dict[str, Proxy], upstream: Upstream, redis_server: RedisServer, key: str
) -> None:
    allowed = LIMIT // PER_MESSAGE
    statuses = []
    for i, text in enumerate(TEXTS[: allowed + 2]):
        proxy = proxies["one"] if i % 2 == 0 else proxies["two"]
        (answer,) = send(proxy, upstream, [text])
        statuses.append(answer.status_code)
    assert statuses == [200] * allowed + [403, 403]
    # Each proxy saw half the messages, and each one blocked once the shared count was full.
    for name in ("one", "two"):
        trips = proxies[name].wait_audit(lambda e: e.get("rule") == BUDGET)
        assert len(trips) == 1 and trips[0]["budget"]["count_before"] == LIMIT
    # Re-sent through either proxy, counted records pass and do not move the count.
    again = send(proxies["two"], upstream, TEXTS[:2]) + send(proxies["one"], upstream, TEXTS[:2])
    assert [a.status_code for a in again] == [200] * 4
    (counter,) = [k for k in redis_server.client().scan_iter(match="dlp:budget:*")]
    assert redis_server.client().zcard(counter) == LIMIT
    assert counter.decode() == f"dlp:budget:{BUDGET}|*|user:127.0.0.1"
    dump = redis_server.dump()
    assert [scrub(v) for v in [*IDS, key] if v.encode() in dump] == []


def test_over_budget_over_websocket_drops_the_message_and_says_why(
    proxies: dict[str, Proxy], upstream: Upstream
) -> None:
    """Runs after the shared count is full: new records are dropped with a notice, records
    already counted still go, and the chat stays open."""
    allowed = LIMIT // PER_MESSAGE
    fresh, counted = TEXTS[allowed + 5], TEXTS[0]
    path = "/ws/chat-budget"
    replies = asyncio.run(
        ws_exchange(proxies["two"], upstream.url("wss", path), [fresh, counted, PLAIN])
    )
    notice = json.loads(replies[0])
    assert notice["type"] == "dlp.blocked" and notice["rule"] == BUDGET
    assert f"{LIMIT}" in notice["message"] and "24 hours" in notice["message"]
    assert replies[1:] == ["echo:" + counted, "echo:" + PLAIN]
    assert [m.data for m in upstream.recorder.ws_messages(path)] == [counted, PLAIN]


def test_budgets_cli_reads_the_shared_redis(
    proxies: dict[str, Proxy], redis_server: RedisServer
) -> None:
    p = proxies["one"]
    run = subprocess.run(
        [sys.executable, "-m", "dlp_addon.policy_cli", "budgets", str(p.policy_path),
         "--redis", redis_server.url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, scrub(run.stdout + run.stderr)
    (row,) = [line.split() for line in run.stdout.splitlines() if line.startswith(BUDGET)]
    assert row[1:4] == ["user:127.0.0.1", "*", f"{LIMIT}/{LIMIT}"]


def test_redis_down_fails_closed_or_logs_as_configured(
    proxies: dict[str, Proxy], upstream: Upstream, redis_server: RedisServer, key: str
) -> None:
    redis_server.stop()
    fresh = TEXTS[-1]  # never sent: a count is needed, and there is none to be had
    blocked, plain = send(proxies["one"], upstream, [fresh, PLAIN])
    assert blocked.status_code == 403
    assert blocked.json()["rule"] == "budget-unavailable"
    assert "budget" in blocked.json()["message_en"]
    assert plain.status_code == 200  # chat without identifiers does not need the store
    assert proxies["one"].metric("dlp_budget_store_errors_total", backend="redis") >= 1

    (lenient,) = send(proxies["lenient"], upstream, [fresh])
    assert lenient.status_code == 200
    (event,) = proxies["lenient"].wait_audit(lambda e: e.get("rule") == "budget-unavailable")
    assert event["action"] == "log" and event["user"] == "127.0.0.1"
    for p in proxies.values():
        assert p.leaks([*IDS, key]) == {}
        assert p.running


def test_redis_needs_an_explicit_hmac_key(tmp_path: Path, tls_files: TlsFiles) -> None:
    """Instances with different random keys would count the same ID twice: refused."""
    p = Proxy(tmp_path, policy(), tls_files.ca_cert)
    p.extra_args = ["--set", "dlp_budget_redis=redis://127.0.0.1:1/0"]
    p.env = {"DLP_HMAC_KEY": ""}
    with pytest.raises(Exception, match="dlp_budget_redis needs dlp_hmac_key_file"):
        p.start(timeout=20)
