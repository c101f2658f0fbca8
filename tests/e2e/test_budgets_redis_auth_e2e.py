"""End to end: budgets in a Redis that requires a password (as deploy/compose runs it), the
password given to the proxy in a file. Right password: two proxies count together and are
ready. Wrong password: messages with identifiers fail closed, and ``/readyz`` says why, so a
balancer or a health check sees it (a Redis that refuses every worker used to look healthy).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Proxy, TlsFiles, Upstream, wait_for
from tests.e2e.test_budgets_redis_e2e import BUDGET, IDS, LIMIT, PER_MESSAGE, PLAIN, TEXTS, send
from tests.e2e.test_budgets_redis_e2e import policy as budget_policy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PASSWORD = secrets.token_urlsafe(24)
HMAC_KEY = secrets.token_hex(32)


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=PASSWORD)
    server.start()
    yield server
    server.stop()


def start(workdir: Path, tls: TlsFiles, redis: RedisServer, password: str) -> Proxy:
    secret = workdir / "redis-password"
    workdir.mkdir(parents=True, exist_ok=True)
    secret.write_text(password + "\n", "utf-8")
    secret.chmod(0o600)
    p = Proxy(workdir, budget_policy(), tls.ca_cert)
    p.extra_args = [
        "--set", f"dlp_budget_redis={redis.url}",
        "--set", f"dlp_budget_redis_password_file={secret}",
    ]  # fmt: skip
    p.env = {"DLP_HMAC_KEY": HMAC_KEY}
    p.start()
    return p


def readyz(p: Proxy) -> httpx.Response:
    """``/readyz`` once the inspection workers are up (the proxy answers before they are)."""

    def settled() -> httpx.Response | None:
        r = httpx.get(f"http://{p.host}:{p.metrics_port}/readyz", timeout=10, trust_env=False)
        return None if "no inspection worker yet" in r.text else r

    answer = wait_for(settled, timeout=60)
    assert answer is not None, "the inspection workers did not start"
    return answer


@pytest.fixture(scope="module")
def proxies(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, locked_redis: RedisServer
) -> Iterator[dict[str, Proxy]]:
    started: dict[str, Proxy] = {}
    try:
        for name, password in (("one", PASSWORD), ("two", PASSWORD), ("wrong", PASSWORD + "x")):
            workdir = tmp_path_factory.mktemp(f"auth-{name}")
            started[name] = start(workdir, tls_files, locked_redis, password)
        yield started
    finally:
        for p in started.values():
            p.stop()


def test_the_redis_refuses_clients_without_the_password(locked_redis: RedisServer) -> None:
    import redis

    anonymous = redis.Redis.from_url(locked_redis.url, socket_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def test_proxies_with_the_password_share_one_count_and_are_ready(
    proxies: dict[str, Proxy], upstream: Upstream, locked_redis: RedisServer
) -> None:
    for name in ("one", "two"):
        answer = readyz(proxies[name])
        assert (answer.status_code, answer.text) == (200, "ready\n")
    allowed = LIMIT // PER_MESSAGE
    statuses = []
    for i, text in enumerate(TEXTS[: allowed + 1]):
        (answer,) = send(proxies["one" if i % 2 == 0 else "two"], upstream, [text])
        statuses.append(answer.status_code)
    assert statuses == [200] * allowed + [403]
    (counter,) = locked_redis.client().scan_iter(match="dlp:budget:*")
    assert locked_redis.client().zcard(counter) == LIMIT
    assert counter.decode().startswith(f"dlp:budget:{BUDGET}|")


def test_a_wrong_password_fails_closed_and_is_not_ready(
    proxies: dict[str, Proxy], upstream: Upstream
) -> None:
    p = proxies["wrong"]
    answer = readyz(p)
    assert answer.status_code == 503
    assert "budget store (redis) unavailable" in answer.text
    assert "AuthenticationError" in answer.text or "WRONGPASS" in answer.text
    blocked, plain = send(p, upstream, [TEXTS[-1], PLAIN])
    assert blocked.status_code == 403 and blocked.json()["rule"] == "budget-unavailable"
    assert plain.status_code == 200  # chat without identifiers does not need the store
    assert p.metric("dlp_budget_store_errors_total", backend="redis") >= 1
    for q in proxies.values():
        assert PASSWORD not in q.output() + q.audit_text() + readyz(q).text
        assert q.leaks(IDS) == {}


def test_budgets_cli_reads_the_locked_redis_with_the_password_file(
    proxies: dict[str, Proxy], locked_redis: RedisServer, tmp_path: Path
) -> None:
    """The admin's report reads the same password file the workers read, and never shows it."""
    p = proxies["one"]
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n", "utf-8")

    def budgets(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dlp_addon.policy_cli", "budgets", str(p.policy_path),
             "--redis", locked_redis.url, *extra],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    run = budgets("--redis-password-file", str(secret))
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = [line.split() for line in run.stdout.splitlines() if line.startswith(BUDGET)]
    assert row[3] == f"{LIMIT}/{LIMIT}"
    refused = budgets()
    assert refused.returncode == 1 and "dlp-policy budgets:" in refused.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n", "utf-8")
    assert "is empty" in budgets("--redis-password-file", str(empty)).stderr
    for out in (run, refused):
        assert PASSWORD not in out.stdout + out.stderr
