"""End to end, issue 17: customer records carried by a request's headers and multipart framing.

Twenty synthetic customers sent through the real proxy in an ``x-oss-meta-note`` header (a PUT
to object storage), a cookie, a multipart file name and a multipart epilogue (data after the
closing boundary, which a site storing the raw body keeps). Each must be blocked before it
reaches the upstream, because the records were read: the audit line counts all twenty IDs and
mobiles. An ordinary browser request with its cookies and a photo upload are delivered
unchanged. Failure messages show counts and carrier names, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import Proxy, Reply, Sent, Upstream
from tests.e2e.test_renderings_e2e import (
    TIMEOUT,
    assert_delivered,
    assert_http_blocked,
    new_marker,
    sensitive,
)
from tests.renderings import rendered_text
from tests.synth import customer_records
from tests.unit.test_extract_carriers import JPEG, browser_headers

pytestmark = pytest.mark.e2e

RECORDS = customer_records(20, seed=20240617)
TEXT = rendered_text(RECORDS, "plain")
# Header values are ASCII on the wire: a client percent-encodes the table.
PCT = quote(TEXT, safe="")

CARRIERS = ("x-oss-meta-note", "cookie", "multipart-filename", "multipart-epilogue")


def send(
    proxy: Proxy,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    files: Mapping[str, tuple[str, bytes, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    epilogue: bytes = b"",
) -> Sent:
    """One request through the proxy; ``epilogue`` is appended after the multipart body's
    closing boundary (httpx writes the body, so the framing is a real client's)."""
    with proxy.client(timeout=TIMEOUT) as client:
        request = client.build_request(
            method, url, content=content, files=files, headers=dict(headers or {})
        )
        body = request.read() + epilogue
        if epilogue:
            request = client.build_request(
                method,
                url,
                content=body,
                headers={"Content-Type": request.headers["content-type"], **(headers or {})},
            )
        response = client.send(request)
        return Sent(Reply(response.status_code, response.headers, response.content), body)


def _send_carrier(proxy: Proxy, upstream: Upstream, carrier: str, marker: str) -> Sent:
    url = upstream.url("https", f"/carrier/{marker}")
    if carrier == "x-oss-meta-note":  # a photo PUT to a bucket, the table in its metadata
        return send(
            proxy,
            "PUT",
            url,
            content=JPEG,
            headers={"Content-Type": "image/jpeg", "x-oss-meta-note": PCT},
        )
    if carrier == "cookie":
        return send(proxy, "GET", url, headers={"Cookie": f"cna=Z8pRHkL2nQ4CAXt1; note={PCT}"})
    if carrier == "multipart-filename":  # httpx writes line breaks in a file name as %0A
        return send(proxy, "POST", url, files={"file": (TEXT, JPEG, "image/jpeg")})
    if carrier == "multipart-epilogue":
        return send(
            proxy,
            "POST",
            url,
            files={"file": ("商品主图.jpg", JPEG, "image/jpeg")},
            epilogue=TEXT.encode(),
        )
    raise AssertionError(f"unknown carrier {carrier}")


@pytest.mark.parametrize("carrier", CARRIERS)
def test_records_in_headers_and_multipart_framing_are_blocked(
    proxy: Proxy, upstream: Upstream, carrier: str
) -> None:
    values = sensitive(RECORDS, TEXT)
    proxy.sent_values.update(values)
    marker = new_marker()
    sent = _send_carrier(proxy, upstream, carrier, marker)
    assert_http_blocked(proxy, upstream, sent, marker, values, f"records in a {carrier}")


def test_an_ordinary_browser_request_and_photo_upload_are_delivered(
    proxy: Proxy, upstream: Upstream
) -> None:
    headers = {k: v for k, v in browser_headers(7).items() if k not in ("host", "accept-encoding")}
    marker = new_marker()
    page = send(proxy, "GET", upstream.url("https", f"/item/{marker}"), headers=headers)
    assert_delivered(proxy, upstream, page, marker, "an ordinary browser request")
    marker = new_marker()
    upload = send(
        proxy,
        "POST",
        upstream.url("https", f"/upload/{marker}"),
        files={"file": ("IMG_20240616_123456.jpg", JPEG, "image/jpeg")},
        headers=headers,
    )
    assert_delivered(proxy, upstream, upload, marker, "a photo upload with an ordinary name")


def test_httpx_writes_the_file_name_as_a_browser_does() -> None:
    """The file-name case above relies on the client escaping line breaks (``%0A``)."""
    request = httpx.Request("POST", "https://x.test/", files={"f": ("a\nb", b"", "text/plain")})
    assert b'filename="a%0Ab"' in request.read(), "httpx does not escape a line feed"
