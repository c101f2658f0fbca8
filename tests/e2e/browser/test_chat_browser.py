"""A person at a real browser, through the real proxy, at a shop's customer-service chat.

What the employee sees is what these tests read off the page: the proxy's notice in the chat,
its JSON shown by the page's own error display, its block and refusal pages, and that the chat
goes on working afterwards. What the shop receives is read off its recorder, and what the
auditor reads off the audit log. No failure message carries a raw identifier: the checks on
payloads are booleans, and hits are reported masked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from tests import files
from tests.e2e.browser.conftest import screenshot
from tests.e2e.harness import ConnectionCounter, Proxy, Upstream, scrub
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

RECORDS = customer_records(10, seed=20261128)
RECORDS_TEXT = records_chat_text(RECORDS)
VALUES = frozenset(raw_values(RECORDS))
WORKBOOK = files.xlsx(files.customer_rows(30, seed=101030))
WORKBOOK_VALUES = frozenset(raw_values(customer_records(30, seed=101030)))
PHOTO = files.png(96, 72)
ORDINARY = "亲，请问这款28寸的行李箱今天能发货吗？"
FOLLOW_UP = "好的，那我先拍一个黑色的。"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INCIDENT = re.compile(r"DLP-[0-9]{8}-[0-9a-f]+")
BLOCK_TITLE_ZH, BLOCK_TITLE_EN = (
    "内容已被数据防泄漏策略拦截",
    "Blocked by the data-loss-prevention policy",
)


def open_chat(page: Any, shop: Upstream) -> None:
    page.goto(shop.url("https", "/shop/"))
    page.wait_for_function("window.chat && window.chat.opens === 1")


def send_chat(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def upload(page: Any, name: str, mime: str, data: bytes) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.click("#upload")


def chat_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("({...window.chat})")
    return state


def last_notice(page: Any) -> tuple[str, str]:
    """The text of the newest notice in the chat and the incident id it shows."""
    notice = page.locator("#log .notice").last
    return notice.inner_text(), notice.locator(".incident").inner_text()


def leaked(blob: str | bytes, values: frozenset[str]) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    return sorted(scrub(v) for v in values if v in text)


def audited(proxy: Proxy, incident: str) -> dict[str, Any]:
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert len(events) == 1, f"{len(events)} audit lines for incident {incident}"
    return events[0]


def test_records_typed_into_the_chat_are_stopped_and_the_chat_goes_on(
    page: Any, shop: Upstream, shop_proxy: Proxy
) -> None:
    shop_proxy.sent_values.update(VALUES)
    open_chat(page, shop)
    sid = chat_state(page)["sid"]

    send_chat(page, RECORDS_TEXT)
    page.wait_for_function("window.chat.notices === 1")
    text, incident = last_notice(page)
    assert BLOCK_TITLE_ZH in text and BLOCK_TITLE_EN in text
    assert text.index(BLOCK_TITLE_ZH) < text.index(BLOCK_TITLE_EN), "Chinese first"
    assert "居民身份证号码 10 个" in text, "the notice does not say what was found"
    assert INCIDENT.fullmatch(incident)
    assert not leaked(text, VALUES), "the notice echoes the data"

    send_chat(page, ORDINARY)
    page.wait_for_function("window.chat.replies === 1")
    state = chat_state(page)
    assert state["opens"] == 1 and state["closes"] == 0, "the chat's WebSocket was closed"
    assert page.locator("#log .shop").last.inner_text().startswith("收到：亲，请问")
    screenshot(page, "chat-notice", docs=True)

    received = [m.data for m in shop.recorder.ws_messages(sid)]
    assert received == [ORDINARY], "the shop should have received the ordinary message only"
    assert shop.app.connections[sid] == 1, "the page had to reconnect"
    assert not shop.recorder.anything_contains(VALUES)

    event = audited(shop_proxy, incident)
    assert event["channel"] == "websocket" and event["action"] == "block"


@pytest.mark.parametrize(
    ("name", "mime"), [("客户名单.xlsx", XLSX), ("IMG_2041.jpg", "image/jpeg")]
)
def test_customer_workbook_upload_fails_with_the_proxys_message(
    page: Any, shop: Upstream, shop_proxy: Proxy, name: str, mime: str
) -> None:
    shop_proxy.sent_values.update(WORKBOOK_VALUES)
    open_chat(page, shop)
    sid = chat_state(page)["sid"]

    upload(page, name, mime, WORKBOOK)
    page.wait_for_function("window.chat.notices === 1 || window.chat.uploads + window.chat.errors")
    state = chat_state(page)
    assert state["notices"] == 1 and state["uploads"] == 0 and state["errors"] == 0, state
    text, incident = last_notice(page)
    assert BLOCK_TITLE_ZH in text and BLOCK_TITLE_EN in text
    assert INCIDENT.fullmatch(incident)
    if name.endswith(".xlsx"):
        screenshot(page, "upload-blocked", docs=True)

    assert shop.recorder.requests(sid) == [], "the workbook reached the shop"
    assert not shop.recorder.anything_contains(WORKBOOK_VALUES)
    event = audited(shop_proxy, incident)
    assert event["channel"] == "upload" and event["action"] == "block"


def test_form_post_with_records_shows_the_block_page(
    page: Any, shop: Upstream, shop_proxy: Proxy
) -> None:
    shop_proxy.sent_values.update(VALUES)
    open_chat(page, shop)
    page.fill("input[name=order]", "订单 3307 售后")
    page.fill("textarea[name=content]", RECORDS_TEXT)
    with page.expect_navigation() as navigation:
        page.click("#submit")
    response = navigation.value
    assert response is not None and response.status == 403
    page.wait_for_selector("#incident-id")
    shot = screenshot(page, "block-page", docs=True, full_page=True)
    assert shot.stat().st_size > 10_000

    body = page.locator("body").inner_text()
    assert body.index(BLOCK_TITLE_ZH) < body.index(BLOCK_TITLE_EN), "Chinese first"
    assert "信息安全部" in body, "the page does not say whom to contact"
    assert not leaked(page.content(), VALUES), "the block page echoes the data"
    incident = page.locator("#incident-id").inner_text()
    assert response.headers["x-dlp-incident"] == incident

    event = audited(shop_proxy, incident)
    assert event["path"] == "/shop/feedback" and event["action"] == "block"
    assert not shop.recorder.anything_contains(VALUES), "the records reached the shop"


def test_ordinary_chat_a_product_photo_and_a_form_go_through(
    page: Any, shop: Upstream, shop_proxy: Proxy
) -> None:
    open_chat(page, shop)
    sid = chat_state(page)["sid"]
    send_chat(page, ORDINARY)
    page.wait_for_function("window.chat.replies === 1")
    send_chat(page, FOLLOW_UP)
    page.wait_for_function("window.chat.replies === 2")

    upload(page, "行李箱实拍.png", "image/png", PHOTO)
    page.wait_for_function("window.chat.uploads + window.chat.notices + window.chat.errors")
    state = chat_state(page)
    assert state["uploads"] == 1 and state["notices"] == 0 and state["errors"] == 0, state
    screenshot(page, "chat-ordinary")

    assert [m.data for m in shop.recorder.ws_messages(sid)] == [ORDINARY, FOLLOW_UP]
    uploads = shop.recorder.requests(sid)
    assert len(uploads) == 1 and PHOTO in uploads[0].body, "the photo did not arrive intact"

    page.fill("input[name=order]", "3307")
    page.fill("textarea[name=content]", "拉杆箱轮子坏了，麻烦安排换货，谢谢。")
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value is not None and navigation.value.status == 200
    assert page.locator("#done").inner_text().startswith("提交成功")
    posted = [r.body for r in shop.recorder.requests("/shop/feedback")]
    assert any("换货".encode() in unquote_to_bytes(b.replace(b"+", b" ")) for b in posted)


def test_site_off_the_allow_list_shows_the_refusal_page(
    page: Any, shop_proxy: Proxy, offlist_host: ConnectionCounter
) -> None:
    response = page.goto(f"https://{offlist_host.host}:{offlist_host.port}/upload")
    assert response is not None and response.status == 403
    body = page.locator("body").inner_text()
    assert body.index("此网站未被允许访问") < body.index("This site is not allowed")
    incident = page.locator("#incident-id").inner_text()
    screenshot(page, "refusal-page", docs=True, full_page=True)
    event = audited(shop_proxy, incident)
    assert event["action"] == "refuse" and event["rule"] == "egress-allowlist"
    assert offlist_host.accepted == 0, "the proxy connected to the refused host"
