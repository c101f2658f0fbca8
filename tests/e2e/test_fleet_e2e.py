"""End to end, the deployment as an operator builds it on one host: HAProxy in front of two
``dlp-proxy`` workers (``dlp-workers 2``, PROXY protocol on) sharing one real Redis for the
budgets, all installed by ``scripts/setup``.

Desktops are loopback addresses other than 127.0.0.1 (each client binds its own), so the audit
can show that the workers saw the desktop and not HAProxy.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from tests.e2e.harness import TlsFiles, Upstream, make_test_policy, sample_value, wait_for
from tests.e2e.test_workers_e2e import Fleet
from tests.redis_server import RedisServer
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

BUDGET = "fleet-drip"
LIMIT = 12  # distinct resident IDs a desktop may send in a day
PER_MESSAGE = 3
DRIP = customer_records(30, seed=20261128)
DRIP_TEXTS = [
    "\n".join(f"{r['name']} {r['id']} {r['address']}" for r in DRIP[i : i + PER_MESSAGE])
    for i in range(0, len(DRIP), PER_MESSAGE)
]
BULK = customer_records(10, seed=20261129)
CHAT = "亲，这款行李箱周末能送到吗？"


def _policy() -> dict[str, Any]:
    def edit(p: dict[str, Any]) -> None:
        p["budgets"] = [
            {"name": BUDGET, "legal_category": "other", "limit": LIMIT, "window": "24h"}
        ]

    return make_test_policy(edit=edit)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, redis_server: RedisServer
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet-redis-haproxy")
    key = root / "hmac.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    f = Fleet(
        root,
        tls_files,
        policy=_policy(),
        extra=[
            "--set", f"dlp_hmac_key_file={key}",
            "--set", f"dlp_budget_redis={redis_server.url}",
        ],
    )  # fmt: skip
    yield f
    f.stop()


class _BoundBackend(httpcore.SyncBackend):
    """Every connection from one local address (httpx and httpcore do not bind the connection
    to a proxy to ``local_address``)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return super().connect_tcp(host, port, timeout, self.address, socket_options)


def desktop(fleet: Fleet, address: str) -> httpx.Client:
    """A desktop on ``address``, one connection per request, so HAProxy balances each one."""
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.HTTPProxy(
        proxy_url=f"http://127.0.0.1:{fleet.port}",
        ssl_context=ssl.create_default_context(cafile=fleet.confdir / "mitmproxy-ca-cert.pem"),
        max_keepalive_connections=0,
        network_backend=_BoundBackend(address),
    )
    return httpx.Client(transport=transport, trust_env=False, timeout=15)


def post(client: httpx.Client, upstream: Upstream, path: str, text: str) -> httpx.Response:
    body = json.dumps({"content": text}, ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "accept": "application/json"}
    return client.post(upstream.url("https", path), content=body, headers=headers)


def audit_events(fleet: Fleet) -> list[dict[str, Any]]:
    events = []
    for path in sorted(fleet.root.glob("audit.w*.jsonl")):
        events += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return events


def metric(fleet: Fleet, worker: dict[str, Any], name: str, labels: dict[str, str]) -> float:
    text = httpx.get(
        f"http://127.0.0.1:{worker['metrics_port']}/metrics", timeout=5, trust_env=False
    ).text
    return sample_value(text, name, labels) or 0.0


def test_bulk_records_are_blocked_through_the_balancer_and_audited_with_the_desktop(
    fleet: Fleet, upstream: Upstream
) -> None:
    with desktop(fleet, "127.0.0.5") as client:
        blocked = post(client, upstream, "/fleet/bulk", records_chat_text(BULK))
    assert blocked.status_code == 403, blocked.text[:200]
    incident = blocked.headers["x-dlp-incident"]
    assert not upstream.recorder.requests("/fleet/bulk"), "the records reached the platform"
    assert not upstream.recorder.anything_contains(raw_values(BULK))
    events = wait_for(
        lambda: [e for e in audit_events(fleet) if e.get("incident_id") == incident] or None,
        timeout=10,
    )
    assert events, f"incident {incident} is in no worker's audit log"
    assert events[0]["client"] == "127.0.0.5", "the worker saw HAProxy, not the desktop"


def test_a_desktops_budget_counts_across_both_workers(fleet: Fleet, upstream: Upstream) -> None:
    workers = fleet.state["workers"]
    before = [fleet.inspected(w) for w in workers]
    with desktop(fleet, "127.0.0.6") as client:
        answers = [post(client, upstream, f"/fleet/drip{i}", t) for i, t in enumerate(DRIP_TEXTS)]
        again = post(client, upstream, "/fleet/again", DRIP_TEXTS[0])  # already counted
    after = [fleet.inspected(w) for w in workers]
    assert all(a > b for a, b in zip(after, before, strict=True)), (
        f"both workers should have inspected some of the messages: {before} -> {after}"
    )
    allowed = LIMIT // PER_MESSAGE
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * allowed + [403] * (len(answers) - allowed), statuses
    assert {a.json()["rule"] for a in answers[allowed:]} == {BUDGET}
    assert again.status_code == 200, "re-sending counted identifiers moved the budget"
    trips = sum(
        metric(fleet, w, "dlp_budget_trips_total", {"budget": BUDGET, "action": "block"})
        for w in workers
    )
    assert trips == len(answers) - allowed
    tripped = [e for e in audit_events(fleet) if (e.get("budget") or {}).get("name") == BUDGET]
    assert tripped and {e["client"] for e in tripped} == {"127.0.0.6"}
    assert {e["user"] for e in tripped} == {"127.0.0.6"}


def test_killing_a_worker_loses_no_request_that_a_client_retries(
    fleet: Fleet, upstream: Upstream
) -> None:
    victim = fleet.state["workers"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    delivered = 0
    with desktop(fleet, "127.0.0.7") as client:
        for i in range(10):
            for _attempt in range(2):  # what a chat front end does: one retry
                try:
                    answer = post(client, upstream, f"/fleet/during{i}", CHAT)
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    delivered += 1
                    break
    assert delivered == 10
    assert len(upstream.recorder.requests("/fleet/during")) == 10


def test_both_workers_metrics_are_scrapeable(fleet: Fleet) -> None:
    def scraped(worker: dict[str, Any]) -> bool | None:
        try:
            text = httpx.get(
                f"http://127.0.0.1:{worker['metrics_port']}/metrics", timeout=3, trust_env=False
            ).text
        except httpx.HTTPError:
            return None  # a worker restarted by the test above may still be starting
        return True if sample_value(text, "dlp_requests_inspected_total") is not None else None

    for worker in fleet.state["workers"]:
        assert wait_for(lambda w=worker: scraped(w), timeout=30, interval=0.3), (
            f"worker {worker['name'] if 'name' in worker else worker['port']} is not scrapeable"
        )


def test_nothing_raw_in_what_the_fleet_wrote(fleet: Fleet) -> None:
    raw = raw_values(BULK) | raw_values(DRIP)
    written = [fleet.output, *fleet.root.glob("audit.w*.jsonl"), *fleet.run_dir.glob("*.log")]
    for path in written:
        text = Path(path).read_text("utf-8", errors="replace")
        leaked = [v for v in raw if v in text]
        assert not leaked, f"{path.name} holds {len(leaked)} raw identifiers"
