"""End to end: large bodies are inspected in worker processes, and when those are busy, late or
dead the request fails closed at once with a reason, while chat keeps flowing.

A "slow" body here is many synthetic customer records as text (seconds of scanning); what it
is blocked for does not matter, only that a worker is busy with it. Failure messages carry
statuses, reasons and counts, never an identifier.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.harness import (
    ArgsProxy,
    Proxy,
    Upstream,
    make_test_policy,
    wait_for,
    write_policy,
)
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

RECORDS = customer_records(20000, 700707)
VALUES = raw_values(RECORDS)
# ~7.5 MB, seconds of scanning when read to the end: the proxies that need it slow turn the
# early verdict off (its first rows would block it at once).
SLOW_BODY = (records_chat_text(RECORDS) * 4).encode()
READ_TO_THE_END = {"early_verdict": False}
LARGE_CLEAN = ("亲，这款行李箱有货吗？订单号 2024112812345678901。" * 2500).encode()  # > 64 KiB
SMALL_CHAT = json.dumps({"content": "亲，今天能发货吗？"}, ensure_ascii=False).encode()
TIMEOUT = 60.0


def marker() -> str:
    return "off" + "".join(random.choices(string.ascii_lowercase, k=10))


Launch = Callable[..., ArgsProxy]


@pytest.fixture(scope="module")
def launch(launch_proxy: Launch) -> Iterator[Launch]:
    """Proxies started with extra arguments; none may leak the slow body's identifiers."""
    started: list[ArgsProxy] = []

    def start(*extra: str, **policy_top: Any) -> ArgsProxy:
        proxy = launch_proxy(*extra, **policy_top)
        started.append(proxy)
        ready = wait_for(lambda: _ready(proxy), timeout=30)
        assert ready, "the proxy's /readyz never said ready (no inspection worker up)"
        return proxy

    yield start
    for proxy in started:
        proxy.stop()  # with workers busy or being replaced: a clean stop, no traceback
        leaks = proxy.leaks(VALUES, metrics=False)
        assert not leaks, f"raw identifiers in the proxy's output or audit: {leaks}"
        assert "Traceback" not in proxy.output(), proxy.stderr_tail()


def _ready(proxy: Proxy) -> bool | None:
    url = proxy.metrics_url.replace("/metrics", "/readyz")
    try:
        return True if httpx.get(url, timeout=2, trust_env=False).status_code == 200 else None
    except httpx.HTTPError:
        return None


def post(proxy: Proxy, upstream: Upstream, path: str, body: bytes) -> httpx.Response:
    with proxy.client(timeout=TIMEOUT) as client:
        return client.post(
            upstream.url("https", path),
            content=body,
            headers={"content-type": "text/plain; charset=utf-8", "accept": "application/json"},
        )


def reason_of(proxy: Proxy, response: httpx.Response) -> str:
    incident = response.headers.get("x-dlp-incident", "")
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    return str(events[0].get("reason")) if events else "(no audit event)"


def errors(proxy: Proxy, stage: str) -> float:
    return proxy.metric("dlp_inspection_errors_total", stage=stage)


def in_background(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as e:  # reported by the test, not lost in the thread
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_inspecting(proxy: Proxy) -> None:
    busy = wait_for(
        lambda: True if proxy.metric("dlp_inspections_in_flight") >= 1 else None, timeout=20
    )
    assert busy, "the slow upload never reached inspection"


def test_busy_workers_refuse_the_next_large_request_at_once_and_chat_flows(
    launch: Launch, upstream: Upstream
) -> None:
    proxy = launch(
        "--set", "dlp_inspect_workers=1", "--set", "dlp_inspect_queue=0",
        inspection={"timeout_seconds": 60, **READ_TO_THE_END},
    )  # fmt: skip
    slow, result = in_background(lambda: post(proxy, upstream, f"/up/{marker()}", SLOW_BODY))
    wait_inspecting(proxy)
    before = errors(proxy, "overload")

    tag = marker()
    started = time.monotonic()
    refused = post(proxy, upstream, f"/up/{tag}", LARGE_CLEAN)
    waited = time.monotonic() - started
    chat = post(proxy, upstream, f"/chat/{tag}", SMALL_CHAT)
    still_busy = slow.is_alive()

    assert refused.status_code == 403, f"a large request while the worker is busy: {refused}"
    assert reason_of(proxy, refused) == "error:overload"
    assert refused.json()["rule"] == "inspection-error"
    assert errors(proxy, "overload") - before == 1
    assert not upstream.recorder.requests(f"/up/{tag}"), "the refused body reached the platform"
    assert chat.status_code == 200, "small chat is inspected inline and must not wait"
    assert still_busy, "the slow upload finished too early for this test to mean anything"
    assert waited < 10, f"the refusal waited {waited:.1f} s instead of answering at once"

    slow.join(TIMEOUT)
    assert result and isinstance(result[0], httpx.Response), f"slow upload: {result}"
    assert result[0].status_code == 403 and reason_of(proxy, result[0]) == "findings"
    tag = marker()
    again = post(proxy, upstream, f"/up/{tag}", LARGE_CLEAN)
    assert again.status_code == 200, "the worker did not come back after the slow upload"
    arrived = upstream.recorder.requests(f"/up/{tag}")
    assert arrived and arrived[0].body == LARGE_CLEAN


def test_inspection_past_the_deadline_fails_closed(launch: Launch, upstream: Upstream) -> None:
    proxy = launch(
        "--set", "dlp_inspect_workers=1", inspection={"timeout_seconds": 0.5, **READ_TO_THE_END}
    )  # fmt: skip
    tag = marker()
    late = post(proxy, upstream, f"/up/{tag}", SLOW_BODY)
    assert late.status_code == 403
    assert reason_of(proxy, late) == "error:timeout"
    assert not upstream.recorder.requests(f"/up/{tag}")
    assert_large_requests_pass_again(proxy, upstream)


def assert_large_requests_pass_again(proxy: Proxy, upstream: Upstream) -> None:
    """A worker that overran its deadline or died is replaced within seconds."""

    def probe() -> bool | None:
        return True if post(proxy, upstream, f"/up/{marker()}", LARGE_CLEAN).is_success else None

    assert wait_for(probe, timeout=20, interval=0.5), "large requests keep failing"


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def test_a_dead_worker_costs_one_request_not_the_proxy(launch: Launch, upstream: Upstream) -> None:
    proxy = launch(
        "--set", "dlp_inspect_workers=1", inspection={"timeout_seconds": 60, **READ_TO_THE_END}
    )  # fmt: skip
    slow, result = in_background(lambda: post(proxy, upstream, f"/up/{marker()}", SLOW_BODY))
    wait_inspecting(proxy)
    # Workers are forked by the fork server, itself a child of the proxy.
    workers = [w for server in _children(proxy.pid) for w in _children(server)]
    assert workers, "no inspection worker process found"
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    slow.join(TIMEOUT)
    assert result and isinstance(result[0], httpx.Response), f"slow upload: {result}"
    assert result[0].status_code == 403
    assert reason_of(proxy, result[0]) == "error:worker"
    assert errors(proxy, "worker") >= 1
    assert_large_requests_pass_again(proxy, upstream)
    assert proxy.running


def test_large_websocket_message_is_inspected_and_an_oversized_one_dropped(
    launch: Launch, upstream: Upstream
) -> None:
    proxy = launch("--set", "dlp_ws_max_message_bytes=200000")
    records = records_chat_text(customer_records(1500, 990099))  # ~140 KB: the worker path
    oversized = "x" * 200001
    ordinary = "亲，在吗？"
    tag = marker()

    async def exchange() -> list[str | bytes]:
        replies: list[str | bytes] = []
        async with connect(
            upstream.url("ws", f"/ws/{tag}"), proxy=proxy.url, open_timeout=TIMEOUT, max_size=None
        ) as ws:
            for message in (records, oversized, ordinary):
                await ws.send(message)
                replies.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return replies

    blocked, too_big, echo = asyncio.run(exchange())
    assert isinstance(blocked, str) and json.loads(blocked)["type"] == "dlp.blocked"
    assert isinstance(too_big, str) and json.loads(too_big)["type"] == "dlp.blocked"
    assert echo == "echo:" + ordinary, "the connection is not usable after the drops"
    assert [m.data for m in upstream.recorder.ws_messages(tag)] == [ordinary]
    reasons = {e.get("reason") for e in proxy.audit_events() if e.get("channel") == "websocket"}
    assert "unscannable:too_large" in reasons, f"audit reasons: {sorted(map(str, reasons))}"
    assert "findings" in reasons


def test_bodies_over_the_default_size_limit_are_refused(launch: Launch, upstream: Upstream) -> None:
    proxy = launch()
    tag = marker()
    size = 64 * 1024 * 1024 + 1
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            f"POST {upstream.url('http', '/up/' + tag)} HTTP/1.1\r\n"
            f"Host: {upstream.host}:{upstream.http_port}\r\nContent-Length: {size}\r\n\r\n".encode()
            + b"a" * 65536
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:40]
    assert not upstream.recorder.requests(f"/up/{tag}")


def _two_ids_rule(policy: dict[str, Any]) -> None:
    rule = {
        "name": "two-ids",
        "action": "block",
        "when": [{"detector": "cn_resident_id", "min_distinct": 2}],
    }
    policy["rules"].insert(0, rule)


def test_workers_get_the_new_policy_on_reload(launch: Launch, upstream: Upstream) -> None:
    proxy = launch("--set", "dlp_inspect_workers=1")
    two = records_chat_text(customer_records(2, seed=710071)).encode() + LARGE_CLEAN  # > 64 KiB
    assert post(proxy, upstream, f"/up/{marker()}", two).status_code == 200

    edited = make_test_policy(edit=_two_ids_rule)
    tmp = proxy.policy_path.with_suffix(".tmp")
    write_policy(edited, tmp)
    os.replace(tmp, proxy.policy_path)

    def blocked() -> bool | None:
        return True if post(proxy, upstream, f"/up/{marker()}", two).status_code == 403 else None

    assert wait_for(blocked, timeout=10, interval=0.2), "the worker kept the old policy"
    events = [e for e in proxy.audit_events() if e.get("rule") == "two-ids"]
    assert events and events[-1]["channel"] == "http"


def test_stopping_the_proxy_during_an_inspection_is_clean(
    launch: Launch, upstream: Upstream
) -> None:
    proxy = launch(
        "--set", "dlp_inspect_workers=1", inspection={"timeout_seconds": 60, **READ_TO_THE_END}
    )  # fmt: skip
    slow, _ = in_background(lambda: post(proxy, upstream, f"/up/{marker()}", SLOW_BODY))
    wait_inspecting(proxy)
    status = proxy.stop()
    slow.join(TIMEOUT)
    assert status in (0, -15), proxy.stderr_tail()
    assert "Traceback" not in proxy.output(), proxy.stderr_tail()
    assert "Task exception" not in proxy.output(), proxy.stderr_tail()
