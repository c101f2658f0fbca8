"""What a blocked employee reads: the page, the JSON for scripts and the WebSocket notice."""

from __future__ import annotations

import json

import pytest

from dlp_addon.act.pages import block_body, found_summary, wants_json, ws_notice
from dlp_addon.decide.verdict import BLOCK, Verdict, unlisted_verdict

NAMES = {
    "cn_resident_id": ("居民身份证号码", "PRC resident ID number"),
    "cn_mobile": ("手机号码", "mobile number"),
}
VERDICT = Verdict(
    action=BLOCK,
    enforced=True,
    rule="bulk-resident-ids",
    reason="findings",
    description_zh="批量发送居民身份证号码",
    description_en="Sending <many> resident ID numbers",
    counts={"cn_resident_id": 10, "cn_mobile": 9},
    samples={"cn_resident_id": ["110105********002X"], "cn_mobile": ["138****8000"]},
    records=10,
)
INCIDENT = "DLP-20261128-0123456789"
CONTACT = "信息安全部（分机 8000）"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}, False),  # form post
        ({"sec-fetch-mode": "navigate", "accept": "application/json"}, False),
        ({"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "accept": "*/*"}, True),  # fetch
        ({"sec-fetch-mode": "same-origin", "sec-fetch-dest": "empty"}, True),
        ({"x-requested-with": "XMLHttpRequest"}, True),  # old XHR libraries
        ({"accept": "application/json, text/plain, */*"}, True),  # axios
        ({"content-type": "application/json"}, True),
        ({"accept": "text/html,application/xhtml+xml"}, False),  # curl, old browsers
        ({}, False),
    ],
)
def test_json_goes_to_scripts_and_pages_to_navigations(
    headers: dict[str, str], expected: bool
) -> None:
    assert wants_json(headers) is expected


def test_block_page_chinese_first_with_reason_counts_incident_and_contact() -> None:
    body, ctype = block_body(VERDICT, INCIDENT, CONTACT, as_json=False, names=NAMES)
    page = body.decode()
    assert ctype.startswith("text/html")
    assert page.index("内容已被数据防泄漏策略拦截") < page.index(
        "Blocked by the data-loss-prevention policy"
    )
    assert "居民身份证号码 10 个、手机号码 9 个；共 10 条记录" in page
    assert "PRC resident ID number: 10, mobile number: 9; 10 records" in page
    assert f'<code id="incident-id">{INCIDENT}</code>' in page
    assert page.count(CONTACT) == 2
    assert "Sending &lt;many&gt;" in page, "descriptions are escaped"
    for masked in ("110105", "002X", "138****8000"):
        assert masked not in page, "the page echoes data"


def test_json_error_carries_complete_sentences() -> None:
    body, ctype = block_body(VERDICT, INCIDENT, CONTACT, as_json=True, names=NAMES)
    doc = json.loads(body)
    assert ctype.startswith("application/json")
    assert doc["error"] == "blocked_by_dlp" and doc["incident_id"] == INCIDENT
    for key in ("message_zh", "message_en"):
        assert INCIDENT in doc[key] and CONTACT in doc[key], key
    assert "居民身份证号码 10 个" in doc["message_zh"]
    assert "002X" not in body.decode()


def test_refusal_page_says_the_site_is_not_allowed_and_finds_nothing() -> None:
    body, _ = block_body(unlisted_verdict(), INCIDENT, CONTACT, as_json=False, refused=True)
    page = body.decode()
    assert "此网站未被允许访问" in page and "This site is not allowed" in page
    assert "发现" not in page and "如工作需要访问此网站" in page
    doc = json.loads(
        block_body(unlisted_verdict(), INCIDENT, CONTACT, as_json=True, refused=True)[0]
    )
    assert doc["error"] == "refused_by_dlp" and doc["found_zh"] == ""


def test_websocket_notice_is_typed_json_a_chat_page_can_show() -> None:
    doc = json.loads(ws_notice(VERDICT, INCIDENT, CONTACT, NAMES))
    assert doc["type"] == "dlp.blocked" and doc["incident_id"] == INCIDENT
    assert doc["message"] == f"{doc['message_zh']} / {doc['message_en']}"
    assert doc["found_zh"].startswith("居民身份证号码 10 个")


def test_unknown_detector_is_named_by_its_id_and_nothing_found_is_empty() -> None:
    v = Verdict(action=BLOCK, enforced=True, counts={"policy_number": 3, "cn_mobile": 0})
    assert found_summary(v, None) == ("policy_number 3 个", "policy_number: 3")
    assert found_summary(Verdict(action=BLOCK, enforced=True), NAMES) == ("", "")
