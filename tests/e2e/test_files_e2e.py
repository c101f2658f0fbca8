"""End to end: files uploaded through the real proxy are recognised by content and read.

A salesperson exports the customer list and uploads it to a shop's chat or file endpoint: as a
workbook (xlsx, xls, ods), as CSV in whatever encoding Excel chose, renamed to look like a photo,
hidden on a sheet nobody sees, zipped twice, base64 inside a JSON field, or gzip-compressed. Each
must be stopped before it leaves, and the audit line must show that the content was *read* (the
records counted), not merely refused as unreadable. Product photos, videos and price lists must
go through byte for byte. Hostile files (zip, gzip and XML bombs, encrypted archives) must be
refused quickly without taking the proxy down.

Every file is built here from synthetic data (:mod:`tests.files`). Failure messages show counts,
booleans and the audit event's bounded ``reason``, never an identifier.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import files
from tests.e2e.harness import OK_BODY, Proxy, Reply, Sent, Upstream
from tests.synth import customer_records, mask, raw_values

pytestmark = pytest.mark.e2e

ROWS_SEED = 20240601
N_ROWS = 20
ROWS = files.customer_rows(N_ROWS, ROWS_SEED)
RECORDS = customer_records(N_ROWS, ROWS_SEED)
VALUES = frozenset(raw_values(RECORDS))

N_MOBILE_ROWS = 25
MOBILE_SEED = 99025
MOBILE_ROWS = files.mobile_only_rows(N_MOBILE_ROWS, MOBILE_SEED)
MOBILE_VALUES = frozenset(r["mobile"] for r in customer_records(N_MOBILE_ROWS, MOBILE_SEED))

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLS = "application/vnd.ms-excel"
ODS = "application/vnd.oasis.opendocument.spreadsheet"

BOMB_TIMEOUT = 30.0  # seconds the client waits for the proxy's answer to a hostile file
RSS_LIMIT_KIB = 1536 * 1024  # 1.5 GiB
ORDINARY = "亲，请问这款28寸的行李箱今天能发货吗？"


# --- helpers ------------------------------------------------------------------------------------


def new_marker() -> str:
    """Letters only, so the audit log's path redaction (which stars long numbers) keeps it."""
    return "file" + "".join(random.choices(string.ascii_lowercase, k=12))


def leaked(blob: bytes | str, values: frozenset[str]) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    return sorted(mask(v) for v in values if v in text)


def send(
    proxy: Proxy,
    url: str,
    *,
    files_: Mapping[str, tuple[str, bytes, str]] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    timeout: float = 15.0,
) -> Sent:
    """One request through the proxy; the body is materialised first so it can be compared
    with what the upstream received."""
    with proxy.client(timeout=timeout) as client:
        request = client.build_request(
            method,
            url,
            files=dict(files_) if files_ is not None else None,
            content=content,
            headers={"Accept": "application/json", **(headers or {})},
        )
        body = request.read()
        response = client.send(request)
        reply = Reply(response.status_code, response.headers, response.content)
    return Sent(reply, body)


def upload(
    proxy: Proxy,
    upstream: Upstream,
    marker: str,
    filename: str,
    data: bytes,
    content_type: str,
    *,
    timeout: float = 15.0,
) -> Sent:
    """A browser-style multipart file upload to the shop's chat attachment endpoint."""
    return send(
        proxy,
        upstream.url("https", f"/im/upload/{marker}"),
        files_={"file": (filename, data, content_type)},
        timeout=timeout,
    )


def put_raw(
    proxy: Proxy,
    upstream: Upstream,
    marker: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    timeout: float = 15.0,
) -> Sent:
    """The body sent as is (a JSON API, or a PUT to object storage)."""
    return send(
        proxy,
        upstream.url("https", f"/api/files/{marker}"),
        content=data,
        headers=headers,
        method=method,
        timeout=timeout,
    )


def audit_for(proxy: Proxy, incident: str, timeout: float = 5.0) -> dict[str, Any]:
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident, timeout)
    assert len(events) == 1, f"{len(events)} audit lines for incident {incident}"
    return events[0]


def assert_refused(proxy: Proxy, upstream: Upstream, sent: Sent, marker: str) -> dict[str, Any]:
    """403 with an incident id, nothing forwarded, one audit line saying block; returns it."""
    reply = sent.reply
    assert reply.status == 403, f"answered {reply.status}, expected 403 (blocked)"
    incident = reply.headers.get("x-dlp-incident")
    assert incident, "no X-DLP-Incident header"
    forwarded = len(upstream.recorder.requests(marker))
    assert forwarded == 0, "the upstream received the blocked request"
    event = audit_for(proxy, incident)
    assert event.get("action") == "block", "the audit line does not say block"
    assert event.get("enforced") is True, "the audit line says the block was not enforced"
    return event


def assert_read_and_blocked(
    proxy: Proxy,
    upstream: Upstream,
    sent: Sent,
    marker: str,
    *,
    values: frozenset[str],
    min_records: int,
    counts: Mapping[str, int],
) -> None:
    """Blocked because the content was read: the audit line counts the records and the
    distinct identifiers in the file, rather than calling the file unscannable."""
    event = assert_refused(proxy, upstream, sent, marker)
    found = leaked(sent.reply.body, values)
    assert not found, f"the block answer echoes raw identifiers: {found}"
    found = upstream.recorder.anything_contains(values)
    assert not found, f"raw identifiers reached the upstream: {found}"
    reason = str(event.get("reason"))
    records = event.get("records")
    read = isinstance(records, int) and records >= min_records
    assert read, f"audit records={records!r}, expected >= {min_records} (reason: {reason})"
    got = event.get("counts") if isinstance(event.get("counts"), Mapping) else {}
    assert isinstance(got, Mapping)
    for detector, n in counts.items():
        assert got.get(detector, 0) == n, (
            f"distinct {detector}: {got.get(detector, 0)}, expected {n} (reason: {reason})"
        )


def assert_passed_intact(proxy: Proxy, upstream: Upstream, sent: Sent, marker: str) -> None:
    """200 from the upstream, which received exactly the bytes sent; at most a log line."""
    assert sent.reply.status == 200, f"answered {sent.reply.status}, expected 200"
    answered = sent.reply.body == OK_BODY
    assert answered, "the client did not get the upstream's answer"
    received = upstream.recorder.requests(marker)
    assert len(received) == 1, f"the upstream got {len(received)} requests, expected 1"
    same = received[0].body == sent.body
    assert same, (
        f"the body changed on its way upstream ({len(received[0].body)} bytes arrived, "
        f"{len(sent.body)} sent)"
    )
    events = proxy.wait_audit(lambda e: marker in str(e.get("path", "")), timeout=1.0)
    actions = sorted({str(e.get("action")) for e in events})
    assert actions in ([], ["log"]), f"audit actions {actions} for an allowed upload"


def memory_kib(proxy: Proxy) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of the proxy process, in KiB."""
    proc = proxy._proc  # the harness keeps its Popen private; only the pid is read here
    assert proc is not None, "the proxy is not running"
    assert proc.poll() is None, f"the proxy exited with {proc.returncode}"
    found: dict[str, int] = {}
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def chat_still_works(proxy: Proxy, upstream: Upstream) -> None:
    marker = new_marker()
    body = json.dumps({"type": "text", "content": ORDINARY}, ensure_ascii=False).encode()
    sent = put_raw(proxy, upstream, marker, body, {"Content-Type": "application/json"})
    assert sent.reply.status == 200, f"ordinary chat answered {sent.reply.status} afterwards"
    received = upstream.recorder.requests(marker)
    arrived = len(received) == 1 and received[0].body == body
    assert arrived, "ordinary chat did not arrive intact afterwards"


# --- files that must be read and blocked --------------------------------------------------------

ID_COUNTS = {"cn_resident_id": N_ROWS}


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    build: Callable[[], bytes]


UPLOADS: dict[str, Upload] = {
    "xlsx": Upload("客户资料.xlsx", XLSX, lambda: files.xlsx(ROWS)),
    "xlsx-named-jpg": Upload("IMG_20240601.jpg", "image/jpeg", lambda: files.xlsx(ROWS)),
    "xls": Upload("客户资料.xls", XLS, lambda: files.xls(ROWS)),
    "ods": Upload("客户资料.ods", ODS, lambda: files.ods(ROWS)),
    "csv-utf8": Upload("客户.csv", "text/csv", lambda: files.csv_bytes(ROWS, "utf-8")),
    "csv-gbk": Upload("客户.csv", "text/csv", lambda: files.csv_bytes(ROWS, "gbk")),
    "csv-utf8-bom": Upload(
        "客户.csv", "text/csv", lambda: files.csv_bytes(ROWS, "utf-8", bom=True)
    ),
    "tsv-as-txt": Upload(
        "备忘.txt", "text/plain", lambda: files.csv_bytes(ROWS, "utf-8", delimiter="\t")
    ),
    "xlsx-hidden-sheet": Upload(
        "价目表.xlsx",
        XLSX,
        lambda: files.xlsx(files.price_rows(), sheet="价目表", hidden_rows=ROWS),
    ),
    "zip-in-zip-csv": Upload(
        "资料.zip",
        "application/zip",
        lambda: files.nested_zip("客户.csv", files.csv_bytes(ROWS, "utf-8"), depth=2),
    ),
}


@pytest.mark.parametrize("case", list(UPLOADS), ids=list(UPLOADS))
def test_uploaded_customer_file_is_read_and_blocked(
    proxy: Proxy, upstream: Upstream, case: str
) -> None:
    spec = UPLOADS[case]
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    sent = upload(proxy, upstream, marker, spec.filename, spec.build(), spec.content_type)
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=N_ROWS, counts=ID_COUNTS
    )


def test_xlsx_put_as_jpeg_body_is_read_and_blocked(proxy: Proxy, upstream: Upstream) -> None:
    """Object-storage style: the workbook is the whole body, declared image/jpeg."""
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    sent = put_raw(
        proxy, upstream, marker, files.xlsx(ROWS), {"Content-Type": "image/jpeg"}, method="PUT"
    )
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=N_ROWS, counts=ID_COUNTS
    )


def test_mobiles_stored_as_numbers_in_xlsx_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    """Excel keeps a typed-in mobile as a number; read back it must still be 11 digits (not
    ``13812345678.0``). Mobiles are the only identifiers, so only the mobile detector counts."""
    proxy.sent_values.update(MOBILE_VALUES)
    marker = new_marker()
    data = files.xlsx(MOBILE_ROWS, mobile_as_number=True)
    sent = upload(proxy, upstream, marker, "回访名单.xlsx", data, XLSX)
    assert_read_and_blocked(
        proxy,
        upstream,
        sent,
        marker,
        values=MOBILE_VALUES,
        min_records=N_MOBILE_ROWS,
        counts={"cn_mobile": N_MOBILE_ROWS, "cn_resident_id": 0},
    )


def test_base64_csv_in_json_is_decoded_and_blocked(proxy: Proxy, upstream: Upstream) -> None:
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    encoded = base64.b64encode(files.csv_bytes(ROWS, "utf-8")).decode("ascii")
    body = json.dumps({"file": encoded}).encode()
    sent = put_raw(proxy, upstream, marker, body, {"Content-Type": "application/json"})
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=N_ROWS, counts=ID_COUNTS
    )


def test_gzip_encoded_json_rows_are_blocked(proxy: Proxy, upstream: Upstream) -> None:
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    header = [str(h) for h in ROWS[0]]
    doc = {"rows": [dict(zip(header, row, strict=True)) for row in ROWS[1:]]}
    body = gzip.compress(json.dumps(doc, ensure_ascii=False).encode(), mtime=0)
    sent = put_raw(
        proxy,
        upstream,
        marker,
        body,
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=N_ROWS, counts=ID_COUNTS
    )


def test_gb18030_text_body_is_blocked(proxy: Proxy, upstream: Upstream) -> None:
    """No charset declared: the bytes are not UTF-8, so GB18030 must be recognised."""
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    text = "\n".join(" ".join(str(c) for c in row) for row in ROWS)
    sent = put_raw(proxy, upstream, marker, text.encode("gb18030"), {"Content-Type": "text/plain"})
    assert_read_and_blocked(
        proxy, upstream, sent, marker, values=VALUES, min_records=N_ROWS, counts=ID_COUNTS
    )


# --- files that must pass byte for byte ---------------------------------------------------------

BENIGN: dict[str, Upload] = {
    "png": Upload("商品主图.png", "image/png", lambda: files.png(640, 480)),
    "mp4-4mb": Upload("开箱视频.mp4", "video/mp4", lambda: files.media_blob(4 * files.MIB)),
    "price-list-xlsx": Upload("价目表.xlsx", XLSX, files.price_list_xlsx),
}


@pytest.mark.parametrize("how", ["multipart", "raw"])
@pytest.mark.parametrize("case", list(BENIGN), ids=list(BENIGN))
def test_benign_file_passes_byte_for_byte(
    proxy: Proxy, upstream: Upstream, case: str, how: str
) -> None:
    spec = BENIGN[case]
    marker = new_marker()
    data = spec.build()
    if how == "multipart":
        sent = upload(proxy, upstream, marker, spec.filename, data, spec.content_type)
        carried = data in sent.body
        assert carried, "the multipart body does not hold the file"
    else:
        sent = put_raw(
            proxy, upstream, marker, data, {"Content-Type": spec.content_type}, method="PUT"
        )
    assert_passed_intact(proxy, upstream, sent, marker)


# --- hostile files ------------------------------------------------------------------------------

HOSTILE: dict[str, Upload] = {
    "nested-zip-bomb": Upload("资料.zip", "application/zip", lambda: files.nested_zip_bomb(4)),
    "overlapping-zip-bomb": Upload("资料.zip", "application/zip", files.overlapping_zip_bomb),
    "xml-entity-bomb-xlsx": Upload("价目表.xlsx", XLSX, files.xml_entity_bomb_xlsx),
    "encrypted-zip": Upload("客户.zip", "application/zip", files.encrypted_zip),
}


def _check_hostile_outcome(proxy: Proxy, upstream: Upstream, sent: Sent, marker: str) -> None:
    assert_refused(proxy, upstream, sent, marker)
    chat_still_works(proxy, upstream)
    memory = memory_kib(proxy)
    peak = max(memory.values())
    assert peak < RSS_LIMIT_KIB, f"proxy memory reached {peak // 1024} MiB ({memory})"


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_upload_is_refused_quickly_and_proxy_survives(
    proxy: Proxy, upstream: Upstream, case: str
) -> None:
    """Refused (unscannable) within the client's 30 s; the proxy keeps serving and its memory
    (peak resident set, VmHWM) stays under 1.5 GiB."""
    spec = HOSTILE[case]
    marker = new_marker()
    sent = upload(
        proxy,
        upstream,
        marker,
        spec.filename,
        spec.build(),
        spec.content_type,
        timeout=BOMB_TIMEOUT,
    )
    _check_hostile_outcome(proxy, upstream, sent, marker)


def test_gzip_bomb_body_is_refused_quickly_and_proxy_survives(
    proxy: Proxy, upstream: Upstream
) -> None:
    """2 GiB of zeros as a ~2 MB ``Content-Encoding: gzip`` JSON body."""
    marker = new_marker()
    sent = put_raw(
        proxy,
        upstream,
        marker,
        files.gzip_bomb(),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=BOMB_TIMEOUT,
    )
    _check_hostile_outcome(proxy, upstream, sent, marker)
