"""End to end: real clients -> the ``dlp-proxy`` process -> a recording upstream on 127.0.0.1.

The case behind the project: customer records (name, ID number, mobile, address) pasted into a
shop's customer-service chat. Each test sends them the way some client would and checks what a
user and an auditor would notice: the answer, what reached the upstream, the audit line, the
metrics, and that no raw identifier shows up in anything the proxy wrote.

Failure messages never show a raw identifier: comparisons of payloads are reduced to booleans,
and values found where they must not be are reported masked.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import socket
import ssl
import string
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import StartProxy
from tests.e2e.harness import (
    OK_BODY,
    TEST_DESTINATION,
    ConnectionCounter,
    Proxy,
    Upstream,
    sample_value,
    wait_for,
)
from tests.synth import (
    customer_records,
    identifiers_in,
    mask,
    mask_id,
    mask_mobile,
    ordinary_chat_corpus,
    raw_values,
    records_chat_text,
    resident_id,
)

pytestmark = pytest.mark.e2e

RECORDS = customer_records(8, seed=20181128)
RECORDS_TEXT = records_chat_text(RECORDS)
RAW = frozenset(raw_values(RECORDS))
IDS = frozenset(r["id"] for r in RECORDS)
MOBILES = frozenset(r["mobile"] for r in RECORDS)

CORPUS = ordinary_chat_corpus(seed=11)
CORPUS_VALUES = frozenset(v for m in CORPUS for found in identifiers_in(m) for v in found)
ORDINARY = "亲，请问这款28寸的行李箱今天能发货吗？"

AUDIT_KEYS = frozenset(
    {
        "time", "incident_id", "client", "destination", "host", "method", "path", "channel",
        "rule", "action", "enforced", "counts", "samples", "policy_version",
    }
)  # fmt: skip
BLOCK_JSON_KEYS = frozenset({"error", "incident_id", "rule", "message_zh", "message_en", "contact"})
DECISIONS = "dlp_decisions_total"
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORDS = re.compile(r"\b[A-Za-z]{3,}\b")
TIMEOUT = 10.0


# --- helpers ------------------------------------------------------------------------------------


def new_marker() -> str:
    """Letters only, so the audit log's path redaction (which stars long numbers) keeps it."""
    return "case" + "".join(random.choices(string.ascii_lowercase, k=12))


def json_body(text: str) -> bytes:
    return json.dumps({"type": "text", "content": text}, ensure_ascii=False).encode()


def leaked(text: str | bytes, values: Iterable[str]) -> list[str]:
    """The values that occur raw in ``text``, masked (safe for a failure message)."""
    blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return sorted(mask(v) for v in values if v in blob)


def block_rules(proxy: Proxy) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in proxy.policy.get("rules") or [] if r.get("action") == "block"}


def decisions(metrics_text: str, rule: str | None = None) -> float:
    labels = {"action": "block", "destination": TEST_DESTINATION}
    if rule is not None:
        labels["rule"] = rule
    return sample_value(metrics_text, DECISIONS, labels) or 0.0


def counter(metrics_text: str, name: str) -> float:
    return sample_value(metrics_text, name) or 0.0


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


def visible_text(page: str) -> str:
    page = re.sub(r"(?is)<(style|script)\b.*?</\1>", " ", page)
    return re.sub(r"<[^>]+>", " ", page)


@dataclass(frozen=True)
class Reply:
    """A client's view of an answer; its repr leaves the body out (it may echo identifiers)."""

    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)

    @classmethod
    def of(cls, response: httpx.Response) -> Reply:
        return cls(response.status_code, response.headers, response.content)


def assert_no_leaks(proxy: Proxy, values: Iterable[str]) -> None:
    leaks = proxy.leaks(values)
    assert not leaks, f"raw identifiers in the proxy's own output: {leaks}"


def assert_samples_masked(
    event: Mapping[str, Any], values: frozenset[str], expected_masks: set[str]
) -> None:
    samples = strings_in(event.get("samples"))
    assert len(samples) > 0, "the audit event has no samples"
    all_masked = all("*" in s for s in samples)
    assert all_masked, "a sample in the audit event is not masked"
    found = leaked("\n".join(samples), values)
    assert not found, f"raw identifiers in the audit samples: {found}"
    expected = bool(expected_masks & set(samples))
    assert expected, "no sample masked like 110105********123X / 138****8000"


def check_audit_event(
    proxy: Proxy,
    incident: str,
    *,
    marker: str,
    rule: str | None,
    values: frozenset[str],
    expected_masks: set[str],
    method: str | None,
    channels: set[str],
    counts: Mapping[str, int],
) -> dict[str, Any]:
    """The single audit line for ``incident``, checked against the contract; returns it."""
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert len(events) == 1, f"{len(events)} audit lines for incident {incident}"
    event = events[0]
    missing = sorted(AUDIT_KEYS - event.keys())
    assert not missing, f"audit event lacks keys {missing}"
    assert event["action"] == "block"
    assert event["enforced"] is True
    assert event["destination"] == TEST_DESTINATION
    assert str(event["host"]).startswith("127.0.0.1")
    assert "127.0.0.1" in str(event["client"])
    assert event["channel"] in channels
    has_marker = marker in str(event["path"])
    assert has_marker, "the audit path lost the test's marker"
    if method is not None:
        assert event["method"] == method
    if rule is not None:
        assert event["rule"] == rule
    if isinstance(event["counts"], Mapping):
        for detector, n in counts.items():
            assert event["counts"].get(detector) == n, f"distinct {detector} counted"
    assert_samples_masked(event, values, expected_masks)
    return event


def assert_blocked(
    proxy: Proxy,
    upstream: Upstream,
    reply: Reply,
    *,
    marker: str,
    metrics_before: str,
    expect_json: bool,
    method: str,
    channels: set[str] | None = None,
    values: frozenset[str] = RAW,
    expected_masks: set[str] | None = None,
    counts: Mapping[str, int] | None = None,
) -> str:
    """Everything a blocked HTTP request must show; returns the rule that blocked it."""
    proxy.sent_values.update(values)
    assert reply.status == 403, "the request was not blocked"
    incident = reply.headers.get("x-dlp-incident")
    assert incident, "no X-DLP-Incident header"
    header_text = "\n".join(f"{k}: {v}" for k, v in reply.headers.multi_items())
    found = leaked(reply.body, values)
    assert not found, f"the block answer echoes raw identifiers: {found}"
    found = leaked(header_text, values)
    assert not found, f"the block answer's headers echo raw identifiers: {found}"

    ctype = reply.headers.get("content-type", "")
    text = reply.body.decode("utf-8", "replace")
    rule: str | None = None
    if expect_json:
        assert ctype.startswith("application/json"), f"content-type {ctype!r}, expected JSON"
        try:
            doc = json.loads(text)
        except ValueError:
            pytest.fail("the JSON block answer does not parse", pytrace=False)
        missing = sorted(BLOCK_JSON_KEYS - doc.keys())
        assert not missing, f"JSON block answer lacks {missing}"
        assert doc["error"] == "blocked_by_dlp"
        assert doc["incident_id"] == incident
        rule = doc["rule"]
        has_zh = CJK.search(str(doc["message_zh"])) is not None
        assert has_zh, "message_zh has no Chinese"
        has_en = ENGLISH_WORDS.search(str(doc["message_en"])) is not None
        assert has_en, "message_en has no English"
        if proxy.policy.get("contact"):
            assert doc["contact"] == proxy.policy["contact"]
    else:
        assert ctype.startswith("text/html"), f"content-type {ctype!r}, expected an HTML page"
        shows_incident = incident in text
        assert shows_incident, "the block page does not show the incident id"
        page = visible_text(text)
        has_zh = CJK.search(page) is not None
        assert has_zh, "the block page has no Chinese text"
        has_en = len(ENGLISH_WORDS.findall(page)) >= 5
        assert has_en, "the block page has no English text"

    forwarded = len(upstream.recorder.requests(marker))
    assert forwarded == 0, "the upstream received the blocked request"
    found = upstream.recorder.anything_contains(values)
    assert not found, f"raw identifiers reached the upstream: {found}"

    event = check_audit_event(
        proxy,
        incident,
        marker=marker,
        rule=rule,
        values=values,
        expected_masks=expected_masks if expected_masks is not None else {mask_id(i) for i in IDS},
        method=method,
        channels=channels or {"http", "upload"},
        counts=counts if counts is not None else {"cn_resident_id": len(IDS)},
    )
    rule = str(event["rule"])
    assert rule in block_rules(proxy), f"rule {rule!r} is not a block rule of the policy"

    metrics_after = proxy.metrics()
    delta = decisions(metrics_after, rule) - decisions(metrics_before, rule)
    assert delta == 1, f"{DECISIONS} for rule {rule} went up by {delta}, expected 1"
    assert_no_leaks(proxy, values)
    return rule


def curl(proxy: Proxy, url: str, payload: bytes, headers: Mapping[str, str], tmp: Path) -> Reply:
    """POST ``payload`` with curl through the proxy; the answer's status, headers and body."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed")
    (tmp / "payload").write_bytes(payload)
    argv = [
        exe, "-sS", "--noproxy", "", "-x", proxy.url, "--cacert", str(proxy.ca_path),
        "--max-time", "20", "--data-binary", f"@{tmp / 'payload'}",
        "-D", str(tmp / "headers"), "-o", str(tmp / "body"), "-w", "%{http_code}",
    ]  # fmt: skip
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run([*argv, url], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, f"curl failed ({done.returncode}): {done.stderr.decode()[-500:]}"
    # -D holds the CONNECT answer too; the last header block is the request's.
    blocks = [b for b in re.split(r"\r?\n\r?\n", (tmp / "headers").read_text("latin-1")) if b]
    fields = [line.split(":", 1) for line in blocks[-1].splitlines()[1:] if ":" in line]
    return Reply(
        int(done.stdout.decode()),
        httpx.Headers([(k.strip(), v.strip()) for k, v in fields]),
        (tmp / "body").read_bytes(),
    )


def ws_context(proxy: Proxy) -> ssl.SSLContext:
    # A fresh context: httpx sets ALPN (h2) on a context it is given, and a WebSocket
    # handshake must not negotiate h2.
    ctx = proxy.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def ws_exchange(
    proxy: Proxy, url: str, messages: list[str], replies_per_message: int = 1
) -> list[str | bytes]:
    """Send each message on one connection through the proxy, collecting the replies."""
    replies: list[str | bytes] = []
    ssl_arg = ws_context(proxy) if url.startswith("wss:") else None
    async with connect(
        url, proxy=proxy.url, ssl=ssl_arg, open_timeout=TIMEOUT, max_size=None
    ) as ws:
        for message in messages:
            await ws.send(message)
            for _ in range(replies_per_message):
                replies.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return replies


# --- blocked HTTP -------------------------------------------------------------------------------


def test_records_as_json_over_https_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.post(
            upstream.url("https", f"/im/send/{marker}"),
            content=json_body(RECORDS_TEXT),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert response.http_version == "HTTP/1.1"
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=True, method="POST",
    )  # fmt: skip


def test_records_as_json_over_http2_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client(http2=True) as client:
        response = client.post(
            upstream.url("https", f"/im/send/{marker}"),
            content=json_body(RECORDS_TEXT),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert response.http_version == "HTTP/2"
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=True, method="POST",
    )  # fmt: skip


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_records_in_urlencoded_form_are_blocked(
    proxy: Proxy, upstream: Upstream, scheme: str
) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.post(
            upstream.url(scheme, f"/im/form/{marker}"), data={"to": "shop", "msg": RECORDS_TEXT}
        )
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=False, method="POST",
    )  # fmt: skip


def test_records_in_multipart_field_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.post(
            upstream.url("https", f"/im/upload/{marker}"),
            data={"message": RECORDS_TEXT},
            files={"attachment": ("note.txt", b"see the message", "text/plain")},
        )
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=False, method="POST",
    )  # fmt: skip


def test_records_in_query_string_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.get(
            upstream.url("https", f"/search/{marker}"),
            params={"q": RECORDS_TEXT},
            headers={"Sec-Fetch-Mode": "cors"},
        )
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=True, method="GET",
    )  # fmt: skip


def test_records_sent_with_curl_are_blocked(
    proxy: Proxy, upstream: Upstream, tmp_path: Path
) -> None:
    marker, before = new_marker(), proxy.metrics()
    reply = curl(
        proxy,
        upstream.url("https", f"/im/send/{marker}"),
        json_body(RECORDS_TEXT),
        {"Content-Type": "application/json", "Accept": "application/json"},
        tmp_path,
    )
    assert_blocked(
        proxy,
        upstream,
        reply,
        marker=marker,
        metrics_before=before,
        expect_json=True,
        method="POST",
    )


@pytest.mark.parametrize(
    ("headers", "expect_json"),
    [
        ({}, False),
        ({"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, False),
        ({"Accept": "application/json"}, True),
        ({"X-Requested-With": "XMLHttpRequest"}, True),
        ({"Sec-Fetch-Mode": "cors"}, True),
    ],
    ids=["no-accept", "browser-page", "accept-json", "xhr", "fetch-cors"],
)
def test_block_answer_is_json_for_scripts_and_html_for_pages(
    proxy: Proxy, upstream: Upstream, headers: dict[str, str], expect_json: bool
) -> None:
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.post(
            upstream.url("https", f"/im/plain/{marker}"),
            content=RECORDS_TEXT.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8", **headers},
        )
    assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=expect_json, method="POST",
    )  # fmt: skip


def test_many_mobiles_without_ids_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    people = customer_records(12, seed=99)
    text = "\n".join(f"{p['name']} {p['mobile']}" for p in people)
    mobiles = frozenset(p["mobile"] for p in people)
    marker, before = new_marker(), proxy.metrics()
    with proxy.client() as client:
        response = client.post(
            upstream.url("https", f"/im/send/{marker}"),
            content=json_body(text),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    rule = assert_blocked(
        proxy, upstream, Reply.of(response),
        marker=marker, metrics_before=before, expect_json=True, method="POST",
        values=mobiles, expected_masks={mask_mobile(m) for m in mobiles},
        counts={"cn_mobile": len(mobiles)},
    )  # fmt: skip
    detectors = {c["detector"] for c in block_rules(proxy)[rule]["when"]}
    assert detectors == {"cn_mobile"}, f"blocked by {rule}, which is not a mobile-only rule"


# --- WebSocket ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["wss", "ws"])
def test_websocket_records_dropped_and_connection_stays_usable(
    proxy: Proxy, upstream: Upstream, scheme: str
) -> None:
    proxy.sent_values.update(RAW)
    marker, before = new_marker(), proxy.metrics()
    notice, echo = asyncio.run(
        ws_exchange(proxy, upstream.url(scheme, f"/ws/chat/{marker}"), [RECORDS_TEXT, ORDINARY])
    )

    is_text = isinstance(notice, str)
    assert is_text, "the block notice is not a text message"
    found = leaked(notice, RAW)
    assert not found, f"the block notice echoes raw identifiers: {found}"
    try:
        doc = json.loads(notice)
    except ValueError:
        pytest.fail("the block notice is not JSON", pytrace=False)
    missing = sorted({"type", "incident_id", "rule", "message"} - doc.keys())
    assert not missing, f"block notice lacks {missing}"
    assert doc["type"] == "dlp.blocked"
    assert doc["rule"] in block_rules(proxy)
    assert len(str(doc["message"])) > 0, "empty block notice message"

    round_trip = echo == "echo:" + ORDINARY
    assert round_trip, "the next ordinary message did not make the round trip"
    received = [m.data for m in upstream.recorder.ws_messages(marker)]
    only_ordinary = received == [ORDINARY]
    assert only_ordinary, f"upstream got {len(received)} messages, expected only the ordinary one"
    found = upstream.recorder.anything_contains(RAW)
    assert not found, f"raw identifiers reached the upstream: {found}"

    check_audit_event(
        proxy,
        doc["incident_id"],
        marker=marker,
        rule=doc["rule"],
        values=RAW,
        expected_masks={mask_id(i) for i in IDS},
        method=None,
        channels={"websocket"},
        counts={"cn_resident_id": len(IDS)},
    )
    after = proxy.metrics()
    delta = decisions(after, doc["rule"]) - decisions(before, doc["rule"])
    assert delta == 1, f"{DECISIONS} went up by {delta}, expected 1"
    inspected = "dlp_websocket_messages_inspected_total"
    assert counter(after, inspected) - counter(before, inspected) >= 2
    assert_no_leaks(proxy, RAW)


# --- ordinary traffic passes untouched ----------------------------------------------------------


def test_ordinary_chat_corpus_passes_byte_for_byte(proxy: Proxy, upstream: Upstream) -> None:
    proxy.sent_values.update(CORPUS_VALUES)
    marker, before = new_marker(), proxy.metrics()
    blocks_before = sum(1 for e in proxy.audit_events() if e.get("action") == "block")
    bodies = [json_body(m) for m in CORPUS]
    not_ok: list[int] = []
    with proxy.client() as client:
        for i, body in enumerate(bodies):
            response = client.post(
                upstream.url("https", f"/im/send/{marker}/{i}"),
                content=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            if response.status_code != 200 or response.content != OK_BODY:
                not_ok.append(i)
    assert not not_ok, f"corpus messages not answered by the upstream: {not_ok}"

    received = {r.path.rsplit("/", 1)[1]: r.body for r in upstream.recorder.requests(marker)}
    changed = [i for i, body in enumerate(bodies) if received.get(str(i)) != body]
    assert not changed, f"corpus messages that did not arrive byte for byte: {changed}"
    after = proxy.metrics()
    assert decisions(after) == decisions(before), "ordinary chat caused block decisions"
    blocks_after = sum(1 for e in proxy.audit_events() if e.get("action") == "block")
    assert blocks_after == blocks_before, "ordinary chat caused block audit events"
    inspected = "dlp_requests_inspected_total"
    assert counter(after, inspected) - counter(before, inspected) >= len(CORPUS)
    assert_no_leaks(proxy, CORPUS_VALUES)


def test_ordinary_chat_passes_over_websocket(proxy: Proxy, upstream: Upstream) -> None:
    sample = CORPUS[::8]
    proxy.sent_values.update(CORPUS_VALUES)
    marker, before = new_marker(), proxy.metrics()
    replies = asyncio.run(ws_exchange(proxy, upstream.url("wss", f"/ws/chat/{marker}"), sample))
    wrong = [i for i, (m, r) in enumerate(zip(sample, replies, strict=True)) if r != "echo:" + m]
    assert not wrong, f"messages whose echo did not come back intact: {wrong}"
    received = [m.data for m in upstream.recorder.ws_messages(marker)]
    same = received == sample
    assert same, f"upstream got {len(received)} messages, not the {len(sample)} sent, in order"
    assert decisions(proxy.metrics()) == decisions(before), "ordinary chat caused blocks"


def test_allowed_request_over_http2_arrives_intact(proxy: Proxy, upstream: Upstream) -> None:
    marker = new_marker()
    body = json_body(ORDINARY)
    with proxy.client(http2=True) as client:
        response = client.post(
            upstream.url("https", f"/im/send/{marker}"),
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    answered = response.content == OK_BODY
    assert answered, "the client did not get the upstream's answer"
    received = upstream.recorder.requests(marker)
    assert len(received) == 1
    same = received[0].body == body
    assert same, "the body changed on its way upstream"
    assert received[0].http_version == "2", "the proxy did not speak HTTP/2 to the upstream"


# --- egress allow-list --------------------------------------------------------------------------


def test_offlist_host_is_never_contacted(proxy: Proxy, offlist_host: ConnectionCounter) -> None:
    """A CONNECT to a host off the list is answered 200 by the proxy alone (so a browser can show
    the refusal page); HTTPS in it gets the page under one incident id; raw bytes are cut off;
    the host itself never sees a connection."""
    target = f"{offlist_host.host}:{offlist_host.port}"
    refusals = DECISIONS, {"action": "refuse", "rule": "egress-allowlist"}
    before = sample_value(proxy.metrics(), refusals[0], refusals[1]) or 0.0
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        assert status_line.split(" ")[1:2] == ["200"], f"CONNECT answered {status_line!r}"
        sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\0" * 64)  # not HTTP, not TLS
        sock.settimeout(TIMEOUT)
        try:
            rest = sock.recv(4096)
        except ConnectionResetError:
            rest = b""
    assert rest == b"", "raw TCP through a refused tunnel was answered"

    with proxy.client() as client:
        secure = client.get(f"https://{target}/", headers={"Accept": "text/html"})
        secure_again = client.get(f"https://{target}/favicon.ico")
        plain = client.get(f"http://{target}/")
    assert secure.status_code == 403
    assert secure.headers["X-DLP-Refused"] == "not-allowed"
    assert "此网站未被允许访问" in secure.text and "This site is not allowed" in secure.text
    incident = secure.headers["X-DLP-Incident"]
    assert incident in secure.text
    assert secure_again.headers["X-DLP-Incident"] == incident, "one tunnel, one incident"
    assert plain.status_code == 403
    assert offlist_host.accepted == 0, "the proxy connected to a host not on the allow-list"

    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert len(events) == 1 and events[0]["action"] == "refuse"
    assert events[0]["method"] == "CONNECT"
    after = sample_value(proxy.metrics(), refusals[0], refusals[1]) or 0.0
    # the raw-TCP tunnel, the HTTPS tunnel (one, however many requests) and the plain request
    assert after - before == 3
    assert offlist_host.accepted == 0


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_count_inspections_findings_and_blocks(proxy: Proxy, upstream: Upstream) -> None:
    proxy.sent_values.update(RAW)
    before = proxy.metrics()
    with proxy.client() as client:
        blocked = client.post(
            upstream.url("https", f"/im/send/{new_marker()}"),
            content=json_body(RECORDS_TEXT),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert blocked.status_code == 403
    notice, _ = asyncio.run(
        ws_exchange(
            proxy, upstream.url("wss", f"/ws/chat/{new_marker()}"), [RECORDS_TEXT, ORDINARY]
        )
    )
    is_notice = isinstance(notice, str) and '"dlp.blocked"' in notice
    assert is_notice, "the WebSocket message was not blocked"
    after = proxy.metrics()

    assert decisions(after) - decisions(before) == 2
    for name in ("dlp_requests_inspected_total", "dlp_websocket_messages_inspected_total"):
        assert counter(after, name) > counter(before, name), f"{name} did not go up"
    findings = "dlp_findings_total"
    assert counter(after, findings) - counter(before, findings) >= 2 * len(IDS)
    found = leaked(after, RAW)
    assert not found, f"raw identifiers in /metrics: {found}"


# --- monitor mode -------------------------------------------------------------------------------


def test_monitor_mode_forwards_and_audits_unenforced(
    start_proxy: StartProxy, upstream: Upstream
) -> None:
    monitor = start_proxy(mode="monitor")
    records = customer_records(8, seed=4242)
    values = frozenset(raw_values(records))
    monitor.sent_values.update(values)
    marker = new_marker()
    body = json_body(records_chat_text(records))
    with monitor.client() as client:
        response = client.post(
            upstream.url("https", f"/im/send/{marker}"),
            content=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    assert response.status_code == 200, "monitor mode blocked the request"
    answered = response.content == OK_BODY
    assert answered, "the client did not get the upstream's answer"
    received = upstream.recorder.requests(marker)
    assert len(received) == 1, "monitor mode did not forward the request exactly once"
    same = received[0].body == body
    assert same, "monitor mode changed the body on its way upstream"

    events = monitor.wait_audit(lambda e: marker in str(e.get("path", "")))
    assert len(events) == 1, f"{len(events)} audit lines for the monitored request"
    event = events[0]
    missing = sorted(AUDIT_KEYS - event.keys())
    assert not missing, f"audit event lacks keys {missing}"
    assert event["enforced"] is False
    assert event["action"] == "block", "the audit should say what would have happened"
    assert event["rule"] in block_rules(monitor)
    assert event["destination"] == TEST_DESTINATION
    assert_samples_masked(event, values, {mask_id(r["id"]) for r in records})
    assert_no_leaks(monitor, values)


def test_a_client_that_rejects_the_proxys_certificate_is_counted(
    proxy: Proxy, upstream: Upstream
) -> None:
    """An app pinning its own certificate (here: a client that trusts only the platform's CA)
    fails closed, and the admin sees which allowed platform it was for."""
    name = "dlp_tls_client_failures_total"
    labels = {"destination": TEST_DESTINATION}
    before = sample_value(proxy.metrics(), name, labels)
    assert before is not None, f"{name} is not exported before any failure"
    pinned = ssl.create_default_context(cafile=str(upstream.tls.ca_cert))  # not the proxy's CA
    with (
        httpx.Client(proxy=proxy.url, verify=pinned, trust_env=False, timeout=10) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(upstream.url("https", "/pinned"))
    assert not upstream.recorder.requests("/pinned")
    after = wait_for(
        lambda: v if (v := sample_value(proxy.metrics(), name, labels) or 0) > before else None,
        timeout=5,
    )
    assert after == before + 1


def test_websocket_ping_payloads_stay_out_of_the_proxys_log(
    proxy: Proxy, upstream: Upstream
) -> None:
    """mitmproxy logs pings with their payload; a ping carrying an ID must not put it there."""
    ident = resident_id(random.Random(8080))
    proxy.sent_values.add(ident)

    async def ping() -> None:
        url = upstream.url("wss", f"/ws/chat/{new_marker()}")
        async with connect(url, proxy=proxy.url, ssl=ws_context(proxy), open_timeout=TIMEOUT) as ws:
            pong = await ws.ping(ident.encode())
            await asyncio.wait_for(pong, TIMEOUT)

    asyncio.run(ping())
    logged = wait_for(lambda: True if "(payload not shown)" in proxy.output() else None, timeout=5)
    assert logged, "the ping was not logged at all: this test would prove nothing"
    assert ident not in proxy.output()
