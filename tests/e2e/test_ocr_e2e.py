"""End to end: pictures of customer data are read (OCR) and stopped by the real proxy.

Once spreadsheets are blocked, the next channel is a picture of one: a screenshot of the sheet,
a phone photo of a printout, a scanned page as PDF. Each is uploaded to the shop's chat through
a real ``dlp-proxy`` and must be stopped, the audit line counting the records read from the
picture; a product photo with a price tag must arrive byte for byte. OCR runs in the
inspection worker processes: ordinary chat is answered while a picture is being read. A
picture OCR cannot finish in time follows the policy's ``inspection.ocr.on_timeout``.

Pictures are drawn here (:mod:`tests.images`) from synthetic customers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from dlp_addon.extract import ocr
from tests.e2e.harness import Proxy, Upstream, sample_value, wait_for
from tests.e2e.test_files_e2e import (
    assert_passed_intact,
    assert_read_and_blocked,
    assert_refused,
    new_marker,
    send,
    upload,
)
from tests.images import encode, photo_like, product_photo, scanned_pdf, table_rows
from tests.images import table_screenshot as screenshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(ocr.engine() is None, reason="scripts/setup installs tesseract"),
]

ROWS = table_rows(20, seed=20241205)
VALUES = frozenset({r[2] for r in ROWS} | {r[3] for r in ROWS})
SHOT = screenshot(ROWS)
UPLOAD_TIMEOUT = 60.0  # the client's patience; OCR of one picture takes about a second


def started(start_proxy: Any, **inspection: Any) -> Proxy:
    """A proxy with the shipped policy's ``inspection`` updated, once its inspection worker is
    up (a request that waits for the first worker spends its own deadline)."""
    proxy: Proxy = start_proxy(edit=lambda p: p["inspection"].update(inspection))
    proxy.sent_values |= VALUES
    url = proxy.metrics_url.replace("/metrics", "/readyz")

    def ready() -> bool | None:
        try:
            return httpx.get(url, timeout=2, trust_env=False).status_code == 200 or None
        except httpx.HTTPError:
            return None

    assert wait_for(ready, timeout=60), "no inspection worker came up"
    return proxy


@pytest.fixture(scope="module")
def proxy(start_proxy: Any) -> Proxy:
    """The shipped policy (OCR on, defaults), with room for a loaded CI machine."""
    return started(start_proxy, timeout_seconds=30, ocr={"timeout_seconds": 25})


@pytest.mark.parametrize(
    ("filename", "content_type", "min_ids"),
    [
        ("screenshot.png", "image/png", 20),
        ("small.webp", "image/webp", 20),  # under dlp_inline_max_bytes: handed to a worker
        ("photo.jpg", "image/jpeg", 15),
        ("scan.pdf", "application/pdf", 20),
    ],
)
def test_a_picture_of_a_customer_table_is_blocked(
    proxy: Proxy, upstream: Upstream, filename: str, content_type: str, min_ids: int
) -> None:
    data = {
        "screenshot.png": lambda: encode(SHOT, "PNG"),
        "small.webp": lambda: encode(SHOT, "WEBP", quality=80),
        "photo.jpg": lambda: encode(photo_like(SHOT), "JPEG", quality=60),  # skewed, noisy
        "scan.pdf": lambda: scanned_pdf(SHOT),  # one page, an image and no text layer
    }[filename]()
    assert filename != "small.webp" or len(data) < 65536
    marker = new_marker()
    sent = upload(proxy, upstream, marker, filename, data, content_type, timeout=UPLOAD_TIMEOUT)
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=min_ids, counts={}
    )
    event = proxy.wait_audit(lambda e: e.get("incident_id") == sent.reply.headers["x-dlp-incident"])
    counts = event[0]["counts"]
    assert counts.get("cn_resident_id", 0) >= min_ids, f"IDs read: {counts}"
    assert counts.get("cn_mobile", 0) >= min_ids, f"mobiles read: {counts}"


def test_a_product_photo_with_a_price_tag_is_delivered_intact(
    proxy: Proxy, upstream: Upstream
) -> None:
    marker = new_marker()
    data = encode(product_photo(), "JPEG", quality=88)  # "纯棉短袖T恤", "¥199.00 包邮"
    sent = upload(proxy, upstream, marker, "tshirt.jpg", data, "image/jpeg", timeout=UPLOAD_TIMEOUT)
    assert_passed_intact(proxy, upstream, sent, marker)


def test_chat_is_answered_while_a_picture_is_read(proxy: Proxy, upstream: Upstream) -> None:
    """The picture is read in a worker process: chat messages sent meanwhile are answered
    before the picture's verdict (were OCR on the event loop, they would wait for it)."""
    long_table = screenshot(table_rows(80, seed=7))  # several seconds of OCR
    data = encode(long_table, "PNG")
    marker = new_marker()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        picture = pool.submit(
            upload, proxy, upstream, marker, "list.png", data, "image/png", timeout=UPLOAD_TIMEOUT
        )
        time.sleep(0.5)  # the upload is in; its OCR has started
        chats = []
        for i in range(5):
            body = json.dumps({"msg": f"亲，这款还有货吗？第{i}次询问"}).encode()
            sent = send(
                proxy,
                upstream.url("https", f"/im/send/{new_marker()}"),
                content=body,
                headers={"Content-Type": "application/json"},
            )
            chats.append((sent.reply.status, picture.done()))
        blocked = picture.result()
    assert [status for status, _ in chats] == [200] * 5
    answered_first = [not done for _, done in chats]
    assert all(answered_first), f"chat answered only after the picture: {answered_first}"
    assert_refused(proxy, upstream, blocked, marker)


def test_a_screenshot_sent_over_a_websocket_is_dropped(proxy: Proxy, upstream: Upstream) -> None:
    """A chat SDK sends the picture as a binary frame (small: inspected inline, so the picture
    is handed to a worker); it is dropped with a notice and the chat goes on."""
    picture = encode(SHOT, "WEBP", quality=80)
    tag = new_marker()

    async def exchange() -> list[str | bytes]:
        async with connect(
            upstream.url("ws", f"/ws/{tag}"), proxy=proxy.url, open_timeout=30, max_size=None
        ) as ws:
            await ws.send(picture)
            notice = await asyncio.wait_for(ws.recv(), UPLOAD_TIMEOUT)
            await ws.send("亲，在吗？")
            return [notice, await asyncio.wait_for(ws.recv(), 30)]

    notice, echo = asyncio.run(exchange())
    assert isinstance(notice, str) and json.loads(notice)["type"] == "dlp.blocked"
    assert echo == "echo:亲，在吗？", "the connection is not usable after the drop"
    assert [m.data for m in upstream.recorder.ws_messages(tag)] == ["亲，在吗？"]


def test_ocr_timeout_follows_the_policy(start_proxy: Any, upstream: Upstream) -> None:
    """OCR time 0.05 s: a table-sized picture is blocked as unscannable (on_timeout: block),
    a small one (it cannot hold a table) is delivered and logged; both are counted."""
    proxy = started(start_proxy, ocr={"timeout_seconds": 0.05})
    marker = new_marker()
    sent = upload(proxy, upstream, marker, "shot.png", encode(SHOT, "PNG"), "image/png")
    event = assert_refused(proxy, upstream, sent, marker)
    assert event.get("reason") == "unscannable:ocr_timeout", event.get("reason")

    small = Image.new("RGB", (400, 300), "white")  # 120,000 pixels: under block_above_pixels
    small.paste(SHOT.crop((0, 0, 400, 300)))
    data = encode(small, "PNG")
    marker = new_marker()
    sent = upload(proxy, upstream, marker, "small.png", data, "image/png")
    assert_passed_intact(proxy, upstream, sent, marker)
    logged = proxy.wait_audit(lambda e: marker in str(e.get("path", "")))
    assert [e.get("reason") for e in logged] == ["unscannable:ocr_timeout"]
    assert sample_value(proxy.metrics(), "dlp_unscannable_total", {"reason": "ocr_timeout"}) == 2


def test_ocr_timeout_log_lets_a_table_sized_picture_through(
    start_proxy: Any, upstream: Upstream
) -> None:
    proxy = started(start_proxy, ocr={"timeout_seconds": 0.05, "on_timeout": "log"})
    marker = new_marker()
    sent = upload(proxy, upstream, marker, "shot.png", encode(SHOT, "PNG"), "image/png")
    assert_passed_intact(proxy, upstream, sent, marker)
