"""Issue 16 at extraction: 20 customer records hidden by an encoding or a charset trick are
read and blocked as a chat body, a form post and a WebSocket message; everyday encoded values
(digests, TOTP secrets, JWTs, colours, order numbers) are neither blocked nor unscannable; a
decompression bomb and nesting past the limit are refused, never passed unread."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import urlencode

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.extract import HttpInput, extract_http
from dlp_addon.extract.text import decode_readings
from dlp_addon.pipeline import inspect_http, inspect_ws
from tests.renderings import ENCODINGS, rendered_text
from tests.synth import customer_records

POLICY = load_policy()
RECORDS = customer_records(20, seed=61)
TEXT = rendered_text(RECORDS, "plain")


def _http(body: bytes, ctype: str) -> HttpInput:
    return HttpInput("POST", "/im/send", {"content-type": ctype}, body)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "text/plain", ""])
def test_an_encoded_table_is_read_and_blocked(encoding: str, ctype: str) -> None:
    result = inspect_http(POLICY, _http(ENCODINGS[encoding](TEXT), ctype), "taobao-tmall")
    assert result.verdict.blocks and result.verdict.reason == "findings", encoding
    assert result.verdict.counts.get("cn_resident_id", 0) == 20, encoding


@pytest.mark.parametrize("encoding", ["hex", "base32", "base64-zlib", "base64-nested-3"])
def test_an_encoded_table_in_a_form_field_or_a_websocket_message_is_blocked(
    encoding: str,
) -> None:
    encoded = ENCODINGS[encoding](TEXT).decode("ascii")
    form = urlencode({"to": "shop", "msg": encoded}).encode()
    result = inspect_http(POLICY, _http(form, "application/x-www-form-urlencoded"), "jd")
    assert result.verdict.blocks, f"form: {encoding}"
    ws = inspect_ws(POLICY, json.dumps({"type": "text", "body": encoded}).encode(), True, "jd")
    assert ws.verdict.blocks, f"websocket: {encoding}"


@pytest.mark.parametrize("encoding", ["utf16le-no-bom", "utf16be-no-bom", "utf8-after-utf16-bom"])
def test_a_binary_websocket_frame_in_another_charset_is_blocked(encoding: str) -> None:
    ws = inspect_ws(POLICY, ENCODINGS[encoding](TEXT), False, "jd")
    assert ws.verdict.blocks, encoding


def test_character_references_are_read() -> None:
    refs = "".join(f"&#{ord(c)};" if c.isdigit() else c for c in TEXT)
    hexed = "".join(f"&#x{ord(c):x};" if c.isdigit() else c for c in TEXT)
    for body in (refs, hexed):
        result = inspect_http(
            POLICY, _http(json.dumps({"m": body}).encode(), "application/json"), "jd"
        )
        assert result.verdict.blocks


def test_a_declared_charset_a_bom_and_sniffing_each_give_their_reading() -> None:
    plain = "客户 110105 手机"
    readings = decode_readings(b"\xff\xfe" + plain.encode(), "utf-8")
    assert any(plain in r for r in readings), "what a UTF-8 server reads"
    assert decode_readings(plain.encode("utf-16-le")) == [plain]
    assert decode_readings(plain.encode("gb18030")) == [plain]
    assert decode_readings(bytes(range(256)) * 4) == []  # binary stays binary


@pytest.mark.parametrize(
    "value",
    [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # SHA-256 digest
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",  # a base32 TOTP secret
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLWhlcmU",  # JWT
        "#ff8800 #00aa11 #123456 #abcdef #fedcba #001122 #334455 #667788",  # colours
        "订单号 202412051234567890123456",  # a long decimal order number
        "a1b2c3d4e5f60718293a4b5c6d7e8f90",  # an MD5-looking request id
    ],
)
def test_everyday_encoded_values_are_neither_blocked_nor_unscannable(value: str) -> None:
    body = json.dumps({"msg": f"亲，{value} 麻烦看一下"}).encode()
    result = inspect_http(POLICY, _http(body, "application/json"), "jd")
    assert not result.verdict.blocks
    assert not extract_http(_http(body, "application/json")).unscannable


def test_a_zlib_bomb_in_base64_is_refused_not_passed() -> None:
    bomb = base64.b64encode(zlib.compress(b"0" * (80 << 20), 9)).decode()
    result = inspect_http(POLICY, _http(json.dumps({"m": bomb}).encode(), "application/json"), "jd")
    assert result.verdict.blocks and result.verdict.reason != "findings"


def test_base64_nested_past_the_limit_is_unscannable_not_passed() -> None:
    layer = TEXT.encode()
    for _ in range(POLICY.limits.max_decode_depth + 2):
        layer = base64.b64encode(layer)
    result = inspect_http(POLICY, _http(layer, "text/plain"), "jd")
    assert result.verdict.blocks and "too_deep" in result.verdict.reason
