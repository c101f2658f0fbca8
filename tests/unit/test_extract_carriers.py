"""Issue 17, requests: what a request carries besides its URL and body fields is read too.

Twenty synthetic customer records hidden where a server stores or forwards them but the proxy
used to look away (a cookie, object storage metadata such as ``x-oss-meta-*``, a custom
``x-*`` header, the Referer's query, a Content-Disposition file name, a multipart file name or
part header, data before the first or after the closing multipart boundary, the first of two
duplicate JSON keys) must be read and blocked by the shipped policy. An ordinary browser
request (its cookies, tracking ids, CSRF token and Referer) and an ordinary photo upload must
pass, readable. Failure messages name the carrier, never a value.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.extract.message import Extraction, HttpInput
from dlp_addon.pipeline import Inspection, inspect_http
from tests import files
from tests.renderings import rendered_text
from tests.synth import customer_records, mobile

POLICY = load_policy()
N = 20
RECORDS = customer_records(N, seed=1717)
TEXT = rendered_text(RECORDS, "plain")
# Header values are ASCII on the wire: a client percent-encodes the table (a line a record).
PCT = quote(TEXT, safe="")
B64 = base64.b64encode(TEXT.encode()).decode("ascii")
BOUNDARY = "----WebKitFormBoundaryq7GQ2b1XvZk8TgRl"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(64)


def _inspect(req: HttpInput, destination: str = "taobao-tmall") -> tuple[Inspection, Extraction]:
    seen: list[Extraction] = []
    result = inspect_http(POLICY, req, destination, seen=seen)
    assert len(seen) == 1, "the request was not extracted"
    return result, seen[0]


def _part(disposition: str, data: bytes, ctype: str = "", extra: str = "") -> bytes:
    head = f"Content-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    head += extra
    return f"--{BOUNDARY}\r\n{head}\r\n".encode() + data + b"\r\n"


def _multipart(parts: list[bytes], preamble: bytes = b"", epilogue: bytes = b"\r\n") -> HttpInput:
    body = preamble + b"".join(parts) + f"--{BOUNDARY}--".encode() + epilogue
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    return HttpInput("POST", "/upload", {"content-type": ctype}, body)


def _photo_part(filename: str) -> bytes:
    return _part(f'form-data; name="file"; filename="{filename}"', JPEG, "image/jpeg")


def _get(headers: dict[str, str]) -> HttpInput:
    return HttpInput("GET", "/item.htm?id=681234567890", headers, b"")


def _put(headers: dict[str, str]) -> HttpInput:
    """A PUT of a product photo to object storage, the way the OSS SDK sends it."""
    return HttpInput("PUT", "/shop/photo.jpg", {"content-type": "image/jpeg", **headers}, JPEG)


def _json(body: str) -> HttpInput:
    return HttpInput("POST", "/im/send", {"content-type": "application/json"}, body.encode())


CARRIERS: dict[str, Callable[[], HttpInput]] = {
    "x-oss-meta-header": lambda: _put({"x-oss-meta-note": PCT}),
    "x-amz-meta-header": lambda: _put({"x-amz-meta-remark": PCT}),
    "x-cos-meta-header": lambda: _put({"x-cos-meta-memo": B64}),
    "custom-x-header-base64": lambda: _get({"x-client-data": B64}),
    "custom-header": lambda: _get({"remark": PCT}),
    "cookie": lambda: _get({"cookie": f"cna=Z8pRHkL2nQ4CAXt1; note={PCT}; isg=BJ2d"}),
    "cookie-base64": lambda: _get({"cookie": f"_tb_token_=e3a57b; draft={B64}"}),
    "referer-query": lambda: _get(
        {"referer": f"https://shop.example.cn/search?spm=a1z10.1&q={PCT}"}
    ),
    "content-disposition": lambda: _put(
        {"content-disposition": f"attachment; filename*=UTF-8''{PCT}"}
    ),
    # Browsers percent-encode a line feed in a file name (HTML's multipart encoding).
    "multipart-filename": lambda: _multipart([_photo_part(PCT)]),
    "multipart-filename-extended": lambda: _multipart(
        [_part(f"form-data; name=\"file\"; filename*=UTF-8''{PCT}", JPEG, "image/jpeg")]
    ),
    # An insurer's batch of ID-card photos: one record per file name, raw UTF-8 bytes.
    "multipart-filenames-one-record-each": lambda: _multipart(
        [
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{r["name"]}_{r["id"]}_{r["mobile"]}.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
            + JPEG
            + b"\r\n"
            for r in RECORDS
        ]
    ),
    "multipart-part-header": lambda: _multipart(
        [
            _part(
                'form-data; name="file"; filename="a.jpg"', JPEG, "image/jpeg", f"X-Note: {PCT}\r\n"
            )
        ]
    ),
    "multipart-preamble": lambda: _multipart(
        [_photo_part("a.jpg")], preamble=TEXT.encode() + b"\r\n"
    ),
    "multipart-preamble-after-newline": lambda: _multipart(
        [_photo_part("a.jpg")], preamble=b"\r\n" + TEXT.encode() + b"\r\n"
    ),
    "multipart-epilogue": lambda: _multipart(
        [_photo_part("a.jpg")], epilogue=b"\r\n" + TEXT.encode()
    ),
    "multipart-epilogue-zip": lambda: _multipart(
        [_photo_part("a.jpg")],
        epilogue=b"\r\n" + files.zip_of({"customers.csv": TEXT.replace("\t", ",").encode()}),
    ),
    "json-duplicate-key-first": lambda: _json(
        '{"type": "text", "content": ' + json.dumps(TEXT) + ', "content": "好的"}'
    ),
    "json-duplicate-key-nested": lambda: _json(
        '{"msg": {"body": ' + json.dumps(TEXT) + ', "body": "在吗"}, "msg": {"body": "好的"}}'
    ),
}


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_records_in_each_carrier_are_read_and_blocked(carrier: str) -> None:
    result, _ = _inspect(CARRIERS[carrier]())
    verdict = result.verdict
    assert verdict.blocks, f"{carrier}: not blocked ({verdict.action}, {verdict.reason})"
    assert verdict.reason == "findings", f"{carrier}: blocked for {verdict.reason}, not records"
    ids, mobiles = verdict.counts.get("cn_resident_id", 0), verdict.counts.get("cn_mobile", 0)
    assert (ids, mobiles) == (N, N), f"{carrier}: {ids} IDs and {mobiles} mobiles read"


def test_http2_cookies_sent_as_separate_fields_stay_separate_cookies() -> None:
    """mitmproxy's HTTP/2 requests repeat ``cookie``; the addon joins them as HTTP/1 does."""
    from mitmproxy import http

    from dlp_addon.edge.flow_input import headers as _headers

    headers = http.Headers([(b"cookie", b"a=1"), (b"cookie", f"note={PCT}".encode())])
    joined = _headers(headers)["cookie"]
    assert joined == f"a=1; note={PCT}", "HTTP/2 cookie fields were not joined with '; '"
    result, _ = _inspect(_get({"cookie": joined}))
    assert result.verdict.blocks, "records in the second HTTP/2 cookie field passed"


# --- what must pass -----------------------------------------------------------------------------


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _jwt(rng: random.Random) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    claims = {"sub": str(rng.randrange(10**9, 10**10)), "iat": 1718500000, "exp": 1718586400}
    return ".".join([part({"alg": "HS256", "typ": "JWT"}), part(claims), _token(rng, 43)])


def browser_headers(seed: int) -> dict[str, str]:
    """What Chrome sends to a shop page: session and tracking cookies (hex, base64-like and
    JWT tokens, millisecond timestamps, the shopper's percent-encoded nick and their own
    mobile as login name), CSRF and trace headers, a Referer with spm tracking parameters."""
    rng = random.Random(seed)
    hexed = string.hexdigits[:16]
    nick = quote("\\u5c0f\\u738b\\u5e97\\u94fa")  # \u escapes, percent-encoded: as tracknick
    cookies = {
        "cna": _token(rng, 24),
        "t": _token(rng, 32, hexed),
        "_m_h5_tk": f"{_token(rng, 32, hexed)}_{1718500000000 + rng.randrange(10**6)}",
        "_m_h5_tk_enc": _token(rng, 32, hexed),
        "cookie2": _token(rng, 32, hexed),
        "_tb_token_": _token(rng, 13, hexed),
        "tracknick": nick,
        "lgc": mobile(rng),
        "isg": _token(rng, 64, string.ascii_letters + string.digits + "-_"),
        "tfstk": _token(rng, 120, string.ascii_letters + string.digits + "-_"),
        "session": _jwt(rng),
        "xlly_s": "1",
        "thw": "cn",
    }
    return {
        "host": "item.taobao.com",
        "user-agent": CHROME,
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "accept-language": "zh-CN,zh;q=0.9,en;q=0.8",
        "accept-encoding": "gzip, deflate, br, zstd",
        "sec-ch-ua": '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"',
        "sec-fetch-site": "same-site",
        "referer": "https://s.taobao.com/search?q=%E7%99%BD%E6%9D%BF%E7%AC%94&spm=a21bo.1.0.0"
        f"&_ksTS={1718500000000 + rng.randrange(10**6)}_87",
        "cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        "x-csrf-token": _token(rng, 40),
        "x-requested-with": "XMLHttpRequest",
        "x-b3-traceid": _token(rng, 32, hexed),
        "x-request-id": str(uuid.UUID(int=rng.getrandbits(128))),
        "if-none-match": f'W/"{_token(rng, 40, hexed)}"',
    }


@pytest.mark.parametrize("seed", range(5))
def test_an_ordinary_browser_request_passes_readable(seed: int) -> None:
    result, extraction = _inspect(_get(browser_headers(seed)))
    assert not result.verdict.blocks, f"seed {seed}: blocked ({result.verdict.reason})"
    assert not extraction.unscannable, f"seed {seed}: unscannable {extraction.unscannable}"
    where = {loc.split("#")[0] for loc, _ in extraction.parts}
    assert "cookie" in where, "the cookies were not read at all"
    skipped = ("user-agent", "accept", "sec-")
    assert not any(w.startswith(skipped) for w in where), f"ordinary headers read: {where}"


@pytest.mark.parametrize(
    "filename",
    ["商品主图.jpg", "IMG_20240616_123456.jpg", "DSC-0042 (2).jpeg", "白板笔 详情页-3.png"],
)
def test_a_photo_upload_with_an_ordinary_file_name_passes(filename: str) -> None:
    parts = [_part('form-data; name="shopId"', b"5678"), _photo_part(filename)]
    result, extraction = _inspect(_multipart(parts))
    assert not result.verdict.blocks, f"{filename}: blocked ({result.verdict.reason})"
    assert not extraction.unscannable, f"{filename}: unscannable {extraction.unscannable}"
    assert extraction.files == ("image",), f"{filename}: files {extraction.files}"


def test_a_put_to_object_storage_with_ordinary_metadata_passes() -> None:
    headers = {
        "x-oss-meta-author": "shop-admin",
        "x-oss-meta-sku": "SKU-2024-000123",
        "x-oss-date": "Sun, 16 Jun 2024 08:00:00 GMT",
        "content-disposition": 'inline; filename="主图-白色款.jpg"',
        "authorization": "OSS LTAI5tExampleKeyId:" + _token(random.Random(3), 28) + "=",
    }
    result, extraction = _inspect(_put(headers))
    assert not result.verdict.blocks, f"blocked ({result.verdict.reason})"
    assert not extraction.unscannable, f"unscannable {extraction.unscannable}"
