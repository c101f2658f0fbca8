"""End to end: customer records written every way issue 16 lists, through the real proxy.

Twenty synthetic customers (name, resident ID, mobile, address) are rendered the ways people
and Excel write numbers when a plain paste gets stopped (:mod:`tests.renderings`: separators,
digits in other scripts, reversible edits of the ID, whole-text encodings, charset conflicts)
and sent as a chat message (JSON), a form post, a WebSocket message, and a CSV and an xlsx
upload. Each must be blocked before it reaches the upstream, *because the records were read*:
the audit line counts every one of the twenty IDs and mobiles, so a rendering that is only
stopped for some other reason (its mobiles alone, say) still fails here.

The other side of the contract: one shopper's own order export (their single mobile, product
names that start like surnames) and a chat message of prices, IP addresses and a size chart
(numbers that spaces and dots join into 11 digits with a mobile's prefix) must be delivered
unchanged, and the prices must not count as mobiles at all.

Test ids are the rendering's and the carrier's names; failure messages show counts and names,
never a value.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import re
import ssl
import string
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect

from tests import files
from tests.e2e.harness import OK_BODY, Proxy, Reply, Sent, Upstream, sample_value
from tests.renderings import (
    ENCODINGS,
    NEEDS_CHECK_X,
    NUMBERS_CHAT,
    PASTED_ENCODINGS,
    RENDERINGS,
    check_x_records,
    own_order_rows,
    own_order_text,
    rendered_rows,
    rendered_text,
)
from tests.synth import customer_records, mask, raw_values

pytestmark = pytest.mark.e2e

N = 20
RECORDS = customer_records(N, seed=20240616)
X_RECORDS = check_x_records(N, seed=616)
# The old 15-digit form only existed for people born in the 1900s: the seed is chosen so.
assert all(r["id"][6:8] == "19" for r in RECORDS), "a record born after 1999"
ORDER_SEED = 31
ORDINARY = json.dumps({"type": "text", "content": "好的，谢谢亲"}, ensure_ascii=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TIMEOUT = 15.0

CARRIERS = ("chat-json", "form", "websocket", "csv-upload", "xlsx-upload")
ENCODING_CARRIERS = ("chat-body", "form", "websocket", "upload")

# How a body that is not pasted text declares itself (the charset conflicts are in the bytes).
BODY_TYPES: dict[str, str] = {
    "utf8-after-utf16-bom": "text/plain; charset=utf-8",
    "utf16le-no-bom": "text/plain",
    "utf16be-no-bom": "text/plain",
    "json-lone-surrogate": "application/json",
}

_DIGIT_RUN = re.compile(r"[0-9]{11,}[0-9Xx]?")


# --- helpers ------------------------------------------------------------------------------------


def new_marker() -> str:
    """Letters only, so the audit log's path redaction (which stars long numbers) keeps it."""
    return "rend" + "".join(random.choices(string.ascii_lowercase, k=12))


def records_for(rendering: str) -> list[dict[str, str]]:
    return X_RECORDS if rendering in NEEDS_CHECK_X else RECORDS


def sensitive(records: list[dict[str, str]], text: str) -> frozenset[str]:
    """The raw IDs and mobiles, plus every long ASCII digit run of the rendered text (a
    reversed or shortened ID): none may appear in what the proxy writes."""
    return frozenset(raw_values(records) | {m.group() for m in _DIGIT_RUN.finditer(text)})


def chat_json(text: str) -> bytes:
    return json.dumps({"type": "text", "content": text}, ensure_ascii=False).encode()


def csv_file(rows: list[list[str]]) -> bytes:
    """UTF-8 CSV as Excel writes it (CRLF, cells with commas or line breaks quoted)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def post(
    proxy: Proxy,
    url: str,
    *,
    content: bytes | None = None,
    upload: tuple[str, bytes, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Sent:
    with proxy.client(timeout=TIMEOUT) as client:
        request = client.build_request(
            "POST",
            url,
            content=content,
            files={"file": upload} if upload is not None else None,
            headers={"Accept": "application/json", **(headers or {})},
        )
        body = request.read()
        response = client.send(request)
        return Sent(Reply(response.status_code, response.headers, response.content), body)


def ws_context(proxy: Proxy) -> ssl.SSLContext:
    # A WebSocket handshake must not negotiate h2.
    ctx = proxy.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _ws_exchange(
    proxy: Proxy, url: str, messages: list[str] | list[str | bytes]
) -> list[str | bytes]:
    replies: list[str | bytes] = []
    async with connect(
        url, proxy=proxy.url, ssl=ws_context(proxy), open_timeout=TIMEOUT, max_size=None
    ) as ws:
        for message in messages:
            await ws.send(message)
            replies.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return replies


def ws_exchange(
    proxy: Proxy, url: str, messages: list[str] | list[str | bytes]
) -> list[str | bytes]:
    """Each message (text, or bytes: a binary frame) on one connection through the proxy, one
    reply collected per message."""
    return asyncio.run(_ws_exchange(proxy, url, messages))


def audit_event(proxy: Proxy, incident: str) -> dict[str, Any]:
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert len(events) == 1, f"{len(events)} audit lines for incident {incident}"
    return events[0]


def assert_records_read(event: Mapping[str, Any], what: str) -> None:
    """The audit line says block, enforced, and counts all N IDs and all N mobiles: the
    block came from reading the records in this rendering, not from something else."""
    assert event.get("action") == "block", f"{what}: the audit line says {event.get('action')!r}"
    assert event.get("enforced") is True, f"{what}: the block was not enforced"
    counts = event.get("counts") if isinstance(event.get("counts"), Mapping) else {}
    assert isinstance(counts, Mapping)
    ids, mobiles = counts.get("cn_resident_id", 0), counts.get("cn_mobile", 0)
    read = ids >= N and mobiles >= N
    assert read, (
        f"{what}: the audit counts {ids} resident IDs and {mobiles} mobiles, expected {N} "
        f"of each (rule {event.get('rule')!r}, reason {event.get('reason')!r})"
    )


def assert_http_blocked(
    proxy: Proxy, upstream: Upstream, sent: Sent, marker: str, values: frozenset[str], what: str
) -> None:
    reply = sent.reply
    assert reply.status == 403, f"{what}: answered {reply.status}, expected 403 (blocked)"
    incident = reply.headers.get("x-dlp-incident")
    assert incident, f"{what}: no X-DLP-Incident header"
    forwarded = len(upstream.recorder.requests(marker))
    assert forwarded == 0, f"{what}: the upstream received the blocked request"
    echoed = sorted(mask(v) for v in values if v.encode() in reply.body)
    assert not echoed, f"{what}: the block answer echoes raw identifiers: {echoed}"
    assert_records_read(audit_event(proxy, incident), what)


def assert_ws_blocked(
    proxy: Proxy,
    upstream: Upstream,
    replies: list[str | bytes],
    marker: str,
    values: frozenset[str],
    what: str,
) -> None:
    notice, echo = replies
    try:
        doc = json.loads(notice)
    except ValueError:
        doc = {}
    blocked = isinstance(doc, dict) and doc.get("type") == "dlp.blocked"
    assert blocked, f"{what}: the message was not answered with a block notice"
    text = notice if isinstance(notice, str) else notice.decode("utf-8", "replace")
    echoed = sorted(mask(v) for v in values if v in text)
    assert not echoed, f"{what}: the block notice echoes raw identifiers: {echoed}"
    round_trip = echo == "echo:" + ORDINARY
    assert round_trip, f"{what}: the next ordinary message did not make the round trip"
    received = [m.data for m in upstream.recorder.ws_messages(marker)]
    only_ordinary = received == [ORDINARY]
    assert only_ordinary, (
        f"{what}: the upstream got {len(received)} messages, expected only the ordinary one"
    )
    assert_records_read(audit_event(proxy, str(doc.get("incident_id"))), what)


def assert_delivered(proxy: Proxy, upstream: Upstream, sent: Sent, marker: str, what: str) -> None:
    """200 from the upstream, which received exactly the bytes sent; at most a log line."""
    assert sent.reply.status == 200, f"{what}: answered {sent.reply.status}, expected 200"
    answered = sent.reply.body == OK_BODY
    assert answered, f"{what}: the client did not get the upstream's answer"
    received = upstream.recorder.requests(marker)
    assert len(received) == 1, f"{what}: the upstream got {len(received)} requests, expected 1"
    same = received[0].body == sent.body
    assert same, f"{what}: the body changed on its way upstream"
    events = proxy.wait_audit(lambda e: marker in str(e.get("path", "")), timeout=1.0)
    actions = sorted({str(e.get("action")) for e in events})
    assert actions in ([], ["log"]), f"{what}: audit actions {actions} for a delivered message"


# --- every rendering, every carrier, is blocked -------------------------------------------------


def send_rendering(
    proxy: Proxy, upstream: Upstream, rendering: str, carrier: str, what: str
) -> None:
    records = records_for(rendering)
    rows = rendered_rows(records, rendering)
    text = rendered_text(records, rendering)
    values = sensitive(records, text)
    proxy.sent_values.update(values)
    marker = new_marker()
    if carrier == "websocket":
        replies = ws_exchange(
            proxy, upstream.url("wss", f"/ws/chat/{marker}"), [chat_json(text).decode(), ORDINARY]
        )
        assert_ws_blocked(proxy, upstream, replies, marker, values, what)
        return
    if carrier == "chat-json":
        sent = post(
            proxy,
            upstream.url("https", f"/im/send/{marker}"),
            content=chat_json(text),
            headers={"Content-Type": "application/json"},
        )
    elif carrier == "form":
        sent = post(
            proxy,
            upstream.url("https", f"/im/form/{marker}"),
            content=urlencode({"type": "text", "content": text}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    elif carrier == "csv-upload":
        sent = post(
            proxy,
            upstream.url("https", f"/im/upload/{marker}"),
            upload=("客户资料.csv", csv_file(rows), "text/csv"),
        )
    elif carrier == "xlsx-upload":
        sent = post(
            proxy,
            upstream.url("https", f"/im/upload/{marker}"),
            upload=("客户资料.xlsx", files.xlsx(rows), XLSX),
        )
    else:
        raise AssertionError(f"unknown carrier {carrier}")
    assert_http_blocked(proxy, upstream, sent, marker, values, what)


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("rendering", list(RENDERINGS))
def test_rendered_records_are_blocked(
    proxy: Proxy, upstream: Upstream, rendering: str, carrier: str
) -> None:
    send_rendering(proxy, upstream, rendering, carrier, f"{rendering} as {carrier}")


# A charset trick is a whole body, file or frame; a form carries the pasted encodings only.
ENCODING_CASES = [
    (encoding, carrier)
    for encoding in ENCODINGS
    for carrier in ENCODING_CARRIERS
    if carrier != "form" or encoding in PASTED_ENCODINGS or encoding.startswith("json")
]


@pytest.mark.parametrize(("encoding", "carrier"), ENCODING_CASES)
def test_encoded_records_are_blocked(
    proxy: Proxy, upstream: Upstream, encoding: str, carrier: str
) -> None:
    text = rendered_text(RECORDS, "plain")
    data = ENCODINGS[encoding](text)
    values = frozenset(raw_values(RECORDS))
    proxy.sent_values.update(values)
    marker = new_marker()
    what = f"{encoding} as {carrier}"
    if carrier == "websocket":  # pasted into the chat box, or a binary frame in its charset
        if encoding in PASTED_ENCODINGS:
            frame: str | bytes = chat_json(data.decode("ascii")).decode()
        elif encoding.startswith("json"):
            frame = data.decode("utf-8")
        else:
            frame = data
        replies = ws_exchange(proxy, upstream.url("wss", f"/ws/chat/{marker}"), [frame, ORDINARY])
        assert_ws_blocked(proxy, upstream, replies, marker, values, what)
        return
    if carrier == "form":
        field = urlencode({"type": "text", "content": data.decode("utf-8")}).encode()
        sent = post(
            proxy,
            upstream.url("https", f"/im/form/{marker}"),
            content=field,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    elif carrier == "chat-body":
        if encoding in PASTED_ENCODINGS:
            content, ctype = chat_json(data.decode("ascii")), "application/json"
        else:
            content, ctype = data, BODY_TYPES[encoding]
        sent = post(
            proxy,
            upstream.url("https", f"/im/send/{marker}"),
            content=content,
            headers={"Content-Type": ctype},
        )
    else:
        if encoding in PASTED_ENCODINGS:
            upload = ("客户资料.txt", data, "text/plain")
        elif encoding.startswith("json"):
            upload = ("客户资料.json", data, BODY_TYPES[encoding])
        else:
            upload = ("客户资料.txt", data, BODY_TYPES[encoding])
        sent = post(proxy, upstream.url("https", f"/im/upload/{marker}"), upload=upload)
    assert_http_blocked(proxy, upstream, sent, marker, values, what)


# --- what must be delivered ---------------------------------------------------------------------


@pytest.mark.parametrize("carrier", ["chat-json", "csv-upload", "xlsx-upload"])
def test_own_order_export_is_delivered(proxy: Proxy, upstream: Upstream, carrier: str) -> None:
    """One shopper's ten orders: their own name, mobile and address on every row, products
    like 白板笔 and 文件夹. One person's data is not customer records."""
    rows = own_order_rows(ORDER_SEED)
    proxy.sent_values.update({rows[1][6]})
    marker = new_marker()
    if carrier == "chat-json":
        sent = post(
            proxy,
            upstream.url("https", f"/im/send/{marker}"),
            content=chat_json(own_order_text(ORDER_SEED)),
            headers={"Content-Type": "application/json"},
        )
    elif carrier == "csv-upload":
        sent = post(
            proxy,
            upstream.url("https", f"/im/upload/{marker}"),
            upload=("我的订单.csv", csv_file(rows), "text/csv"),
        )
    else:
        sent = post(
            proxy,
            upstream.url("https", f"/im/upload/{marker}"),
            upload=("我的订单.xlsx", files.xlsx(rows, sheet="订单"), XLSX),
        )
    assert_delivered(proxy, upstream, sent, marker, f"own order export as {carrier}")


def test_prices_ips_and_sizes_are_not_mobiles(proxy: Proxy, upstream: Upstream) -> None:
    """``139.00 1288.00``, ``139.100.123.45`` and ``175/96 180/100`` join into 11 digits
    with a mobile's prefix; none is a phone. Delivered, and not one mobile counted: no audit
    line counts a mobile for it and the findings metric for mobiles does not move."""
    findings = "dlp_findings_total"
    before = sample_value(proxy.metrics(), findings, {"detector": "cn_mobile"}) or 0.0
    marker = new_marker()
    sent = post(
        proxy,
        upstream.url("https", f"/im/send/{marker}"),
        content=chat_json(NUMBERS_CHAT),
        headers={"Content-Type": "application/json"},
    )
    assert_delivered(proxy, upstream, sent, marker, "prices, IPs and sizes")
    events = proxy.wait_audit(lambda e: marker in str(e.get("path", "")), timeout=1.0)
    counted = [e.get("counts", {}).get("cn_mobile", 0) for e in events]
    assert not any(counted), f"the audit counts {counted} mobiles in prices, IPs and sizes"
    after = sample_value(proxy.metrics(), findings, {"detector": "cn_mobile"}) or 0.0
    assert after == before, f"{findings} for mobiles went up by {after - before:g}"


# --- WebSocket compression: every size read the same way ----------------------------------------

# Above dlp_inline_max_bytes (64 KiB) once inflated, a few KiB once compressed.
_PADDING = "亲，请问这款行李箱什么时候发货？颜色换成蓝色，谢谢。\n" * 5000


def _app_deflate(data: bytes) -> bytes:
    """A chat SDK's own compression of a binary frame (raw deflate, as pako's deflateRaw)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


async def ws_send(
    proxy: Proxy, url: str, messages: list[str | bytes], compression: str | None
) -> list[str | bytes]:
    replies: list[str | bytes] = []
    async with connect(
        url,
        proxy=proxy.url,
        ssl=ws_context(proxy),
        open_timeout=TIMEOUT,
        max_size=None,
        compression=compression,
    ) as ws:
        for message in messages:
            await ws.send(message)
            replies.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return replies


WS_COMPRESSION = [
    (how, size, frame)
    for how in ("permessage-deflate", "uncompressed", "app-deflate")
    for size in ("small", "large")
    for frame in ("text", "binary")
    if not (how == "app-deflate" and frame == "text")
]


def _ws_message(text: str, how: str, frame: str) -> str | bytes:
    if how == "app-deflate":
        return _app_deflate(text.encode())
    return text if frame == "text" else text.encode()


@pytest.mark.parametrize(("how", "size", "frame"), WS_COMPRESSION)
def test_websocket_compression_is_read_at_every_size(
    proxy: Proxy, upstream: Upstream, how: str, size: str, frame: str
) -> None:
    """20 records are blocked with a notice, and a benign message of the same size and
    compression is delivered as sent: permessage-deflate, none, or the chat SDK's own."""
    what = f"{how} {size} {frame}"
    compression = "deflate" if how == "permessage-deflate" else None
    table = rendered_text(RECORDS, "plain")
    records = table if size == "small" else table + "\n" + _PADDING
    marker = new_marker()
    url = upstream.url("wss", f"/ws/chat/{marker}")
    message = _ws_message(records, how, frame)
    replies = asyncio.run(ws_send(proxy, url, [message, ORDINARY], compression))
    assert_ws_blocked(proxy, upstream, replies, marker, sensitive(RECORDS, table), what)

    benign = ORDINARY if size == "small" else _PADDING
    marker = new_marker()
    url = upstream.url("wss", f"/ws/chat/{marker}")
    message = _ws_message(benign, how, frame)
    (echo,) = asyncio.run(ws_send(proxy, url, [message], compression))
    expected = "echo:" + message if isinstance(message, str) else b"echo:" + message
    echoed = echo == expected
    assert echoed, f"{what}: the benign message was not delivered (the echo differs)"
    received = [m.data for m in upstream.recorder.ws_messages(marker)]
    same = received == [message]
    assert same, f"{what}: the upstream did not receive the benign message as sent"


# --- a raw PUT to object storage is an upload -----------------------------------------------


@pytest.mark.parametrize("ctype", ["application/octet-stream", None])
def test_raw_put_of_a_workbook_is_blocked_and_a_photo_passes(
    proxy: Proxy, upstream: Upstream, ctype: str | None
) -> None:
    """A bucket takes the file as the whole body: a 20-record workbook is blocked, a CSV of 4
    customers' mobiles (below every bulk rule) is blocked by the spreadsheet rule as an
    uploaded file, and a product photo is delivered byte for byte."""
    headers = {"Content-Type": ctype} if ctype else {}
    uploads = {
        "c.xlsx": (files.xlsx(files.customer_rows(N, seed=77)), None),
        "c.csv": (
            files.csv_bytes(files.mobile_only_rows(4, seed=78), "utf-8"),
            "spreadsheet-with-records",
        ),
    }
    for name, (body, expected_rule) in uploads.items():
        marker = new_marker()
        with proxy.client(timeout=TIMEOUT) as client:
            response = client.put(
                upstream.url("https", f"/oss/{marker}/{name}"),
                content=body,
                headers={**headers, "Accept": "application/json"},
            )
        assert response.status_code == 403, f"{name}: the PUT was answered {response.status_code}"
        rule = response.json().get("rule")
        if expected_rule is not None:
            assert rule == expected_rule, f"{name}: the PUT was blocked by {rule!r}"
        assert upstream.recorder.requests(marker) == [], f"{name}: the upstream received it"

    photo = files.png(640, 480)
    marker = new_marker()
    with proxy.client(timeout=TIMEOUT) as client:
        response = client.put(
            upstream.url("https", f"/oss/{marker}/p.png"), content=photo, headers=headers
        )
    assert response.status_code == 200, f"the photo PUT was answered {response.status_code}"
    received = upstream.recorder.requests(marker)
    same = len(received) == 1 and received[0].body == photo
    assert same, "the photo did not reach the upstream byte for byte"
