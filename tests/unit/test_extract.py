"""Extraction: every place a request can carry text is found, decoded and bounded."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
import zlib

import brotli
import pytest

from dlp_addon.errors import ExtractError
from dlp_addon.extract import HttpInput, Limits, extract_http, extract_ws
from dlp_addon.extract.decode import decode_content

ID = "11010519491231002X"
LIMIT = 1 << 20
LIMITS = Limits(max_decoded_bytes=LIMIT)


def _texts(req: HttpInput) -> str:
    return "\n".join(text for _, text in extract_http(req, LIMITS).parts)


def _req(body: bytes, ctype: str = "", path: str = "/send", **headers: str) -> HttpInput:
    h = {"content-type": ctype} if ctype else {}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return HttpInput("POST", path, h, body)


def test_json_at_any_depth_keys_and_numbers() -> None:
    doc = {"a": [{"b": {"c": [[f"id {ID}"]]}}], ID: 1, "phone": 13800138000}
    text = _texts(_req(json.dumps(doc).encode(), "application/json"))
    assert ID in text and "13800138000" in text


def test_json_is_recognised_whatever_the_content_type() -> None:
    text = _texts(_req(json.dumps({"m": ID}).encode(), "text/plain"))
    assert ID in text


def test_urlencoded_form_and_query() -> None:
    body = f"msg=%E8%BA%AB%E4%BB%BD%E8%AF%81+{ID}&x=1".encode()
    text = _texts(_req(body, "application/x-www-form-urlencoded", path=f"/s?q={ID[:-1]}x"))
    assert f"身份证 {ID}" in text
    assert f"q={ID[:-1]}x" in text


def test_percent_encoded_text_is_also_scanned_decoded() -> None:
    encoded = "".join(f"%{ord(c):02X}" for c in ID)
    assert ID in _texts(_req(f"data={encoded}".encode(), "text/plain"))


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "----dlpboundary7MA4YWxk"
    out = io.BytesIO()
    for name, filename, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"'
        if filename:
            disp += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disp}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def test_multipart_fields_and_text_files() -> None:
    body, ctype = _multipart(
        [
            ("msg", None, f"客户 {ID}".encode()),
            ("f", "list.txt", f"张三,{ID}\r\n".encode("gb18030")),
        ]
    )
    ex = extract_http(_req(body, ctype), LIMITS)
    text = "\n".join(t for _, t in ex.parts)
    assert text.count(ID) == 2
    assert ex.files == ("text",)
    assert not ex.unscannable


def test_image_upload_passes_and_a_renamed_zip_is_read() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("c.csv", f"name,id\nzs,{ID}\n")
    body, ctype = _multipart([("photo", "p.jpg", jpeg), ("doc", "photo2.jpg", buf.getvalue())])
    ex = extract_http(_req(body, ctype), LIMITS)
    assert ex.files == ("image", "zip", "csv")
    assert not ex.unscannable
    assert ID in "\n".join(t for _, t in ex.parts)


def test_truncated_multipart_is_unreadable() -> None:
    body, ctype = _multipart([("msg", None, b"hello")])
    with pytest.raises(ExtractError) as e:
        extract_http(_req(body[:-12], ctype), LIMITS)
    assert e.value.reason == "multipart"


def test_binary_websocket_frame_text_runs() -> None:
    frame = b"\x08\x01\x12\x20" + f"客户资料 {ID}".encode() + b"\x18\x00"
    ex = extract_ws(frame, is_text=False)
    assert ID in "\n".join(t for _, t in ex.parts)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("compress", [zlib.compress, _raw_deflate, gzip.compress])
def test_compressed_binary_frames_are_inflated_at_every_size(compress: object) -> None:
    """A chat SDK's own compression: a small frame is read (it used to pass unread below the
    entropy test's size) and a large benign one is read, not dropped as opaque."""
    assert callable(compress)
    small = compress(f"客户 {ID}".encode())
    assert len(small) < 256
    small_ex = extract_ws(small, is_text=False)
    assert ID in "\n".join(t for _, t in small_ex.parts)
    benign = compress(("亲，请问什么时候发货？颜色换成蓝色。" * 4000).encode())
    assert len(benign) > 256
    benign_ex = extract_ws(benign, is_text=False)
    assert benign_ex.unscannable == ()
    assert "发货" in "\n".join(t for _, t in benign_ex.parts)


def test_nested_compression_is_bounded() -> None:
    data = f"客户 {ID}".encode()
    for _ in range(40):
        data = zlib.compress(data)
    with pytest.raises(ExtractError) as e:
        extract_ws(data, is_text=False)
    assert e.value.reason == "too_deep"


def test_high_entropy_binary_is_unscannable() -> None:
    import random

    rng = random.Random(5)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    assert extract_ws(noise, is_text=False).unscannable == ("opaque",)


def test_stacked_encodings_are_all_undone() -> None:
    raw = f'{{"m": "{ID}"}}'.encode()
    body = brotli.compress(gzip.compress(raw))
    assert ID in _texts(_req(body, "application/json", content_encoding="gzip, br"))
    assert decode_content(zlib.compress(raw), "deflate", LIMIT) == raw
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decode_content(raw_deflate.compress(raw) + raw_deflate.flush(), "deflate", LIMIT) == raw


@pytest.mark.parametrize(
    ("body", "encoding", "reason"),
    [
        (gzip.compress(b"0" * (2 * LIMIT)), "gzip", "too_large"),
        (brotli.compress(b"0" * (2 * LIMIT)), "br", "too_large"),
        (b"not gzip at all", "gzip", "bad_encoding"),
        (gzip.compress(b"abc")[:-6], "gzip", "bad_encoding"),
        (b"abc", "compress", "unknown_encoding"),
    ],
)
def test_decode_failures_are_reasons(body: bytes, encoding: str, reason: str) -> None:
    with pytest.raises(ExtractError) as e:
        decode_content(body, encoding, LIMIT)
    assert e.value.reason == reason


def test_gb18030_and_utf16_text() -> None:
    msg = f"客户身份证 {ID}"
    assert ID in _texts(_req(msg.encode("gb18030"), "text/plain"))
    assert ID in _texts(_req(msg.encode("utf-16"), "text/plain"))
    assert ID in _texts(_req(msg.encode("gbk"), "text/plain; charset=gbk"))


@pytest.mark.parametrize("ctype", ["application/octet-stream", ""])
def test_a_raw_put_of_a_csv_or_workbook_is_an_attachment(ctype: str) -> None:
    """Object storage takes a file as the whole body: it counts as an uploaded spreadsheet."""
    from tests import files

    rows = files.customer_rows(20, seed=3)
    for body in (files.csv_bytes(rows, "utf-8"), files.xlsx(rows)):
        req = HttpInput("PUT", "/bucket/customers", {"content-type": ctype} if ctype else {}, body)
        groups = [a.group for a in extract_http(req, LIMITS).attachments]
        assert groups == ["spreadsheet"]


def test_a_json_body_without_content_type_is_no_attachment() -> None:
    req = HttpInput("POST", "/send", {}, json.dumps({"m": ID}).encode())
    assert extract_http(req, LIMITS).attachments == ()
