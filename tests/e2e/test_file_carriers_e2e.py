"""End to end, issue 17: every place a file carries 20 customers, through the real proxy.

One ``dlp-proxy`` process (the shipped policy) between real clients and the recording upstream
on 127.0.0.1. Each hiding place issue 17 lists is a generated file holding 20 synthetic
customers (name, resident ID, mobile, address): images with a zip or a CSV after their end
(JPEG, PNG, GIF, WebP, MP4, also cut short or with a stretched RIFF size), PNG text and private
chunks, EXIF, XMP and IPTC comments, an MP4's comment; workbook comments, properties, sheet
names, extra parts, custom XML, the pivot cache of a deleted sheet, formulas saved without
values and defined names (xlsx, and the ods and xls variants); Word and PowerPoint headers,
footers, notes, comments, text boxes and embedded workbooks; PDF attachments, notes, form
fields, properties, owner-password-only PDFs and a zip appended to a PDF; zip and tar entry
names, the zip comment, a CSV appended to a zip; a multipart preamble and duplicate JSON keys.

Files go the ways a shop's staff send them: a chat upload (multipart), a raw PUT to object
storage, a binary WebSocket frame with permessage-deflate below and above the inline limit (the
large one is read in an inspection worker). Each must be answered 403 before anything reaches
the upstream, and its audit line must count all 20 IDs and mobiles (the records were *read*, not
refused as unreadable) with masked samples only. The everyday files next to them (a product-photo
zip with Thumbs.db and .DS_Store, an owner-password manual, a camera photo with EXIF, a phone
video, a tar of photos) are delivered byte for byte.

Request carriers with their own files: cookies, ``x-oss-meta-*``, multipart file names and the
epilogue in ``test_request_carriers_e2e.py``; text WebSocket frames at every size and
compression in ``test_renderings_e2e.py``. Failure messages name the case, never a value.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests import carrier_files as C
from tests import files as F
from tests.e2e.harness import Proxy, Sent, Upstream
from tests.e2e.test_renderings_e2e import (
    ORDINARY,
    assert_delivered,
    assert_http_blocked,
    assert_ws_blocked,
    audit_event,
    new_marker,
    ws_send,
)
from tests.e2e.test_request_carriers_e2e import send
from tests.synth import customer_records, raw_values
from tests.unit import test_carrier_gaps as gaps
from tests.unit import test_hiding_places as hp
from tests.unit import test_office_parts as op

pytestmark = pytest.mark.e2e

# The builders' customers: tests.unit.test_files_extract.ROWS (seed 1) and the Office parts'
# (seed 17). Both sets are registered so that none may appear raw in the proxy's output.
VALUES = frozenset(raw_values(customer_records(20, 1)) | raw_values(op.RECORDS))
CSV = gaps.CSV
ZIP = hp.csv_zip()

# The WebSocket frame above dlp_inline_max_bytes (64 KiB): read in an inspection worker.
LARGE = 64 * 1024
PAD = random.Random(17).randbytes(LARGE)  # a binary part nobody reads: high-entropy, skipped


# name -> (file, how it is sent)
FileCase = tuple[Callable[[], bytes], str]
POLYGLOTS: dict[str, Callable[[], bytes]] = {
    "jpeg": C.camera_photo,
    "png": lambda: F.png(64, 64),
    "gif": hp.gif,
    "webp": hp.webp,
    "mp4": C.mp4_video,
}
CASES: dict[str, FileCase] = {
    # 图种: a file after the image's end, sent to a bucket (zip) or to the chat (CSV)
    **{f"{k} + zip": (lambda b=b: b() + ZIP, "put") for k, b in POLYGLOTS.items()},
    **{f"{k} + csv": (lambda b=b: b() + CSV, "upload") for k, b in POLYGLOTS.items()},
    "mp4 + csv with an english header": (gaps.HIDDEN["mp4 + csv with an english header"], "put"),
    "cut-short jpeg + csv": (gaps.HIDDEN["cut-short jpeg + csv"], "upload"),
    "webp with its RIFF size stretched over a zip": (
        gaps.HIDDEN["webp stretched over a zip"],
        "put",
    ),
    "zip + csv appended": (gaps.HIDDEN["zip + csv appended"], "upload"),
    "pdf + zip appended": (gaps.HIDDEN["pdf + zip appended"], "upload"),
    # text inside images
    **{k: (hp.HIDDEN[k], "upload") for k in ("png tEXt", "png zTXt", "png iTXt compressed")},
    **{k: (hp.HIDDEN[k], "put") for k in ("jpeg EXIF UserComment", "jpeg XMP", "jpeg COM")},
    "gif comment": (hp.HIDDEN["gif comment"], "upload"),
    **{
        k: (gaps.HIDDEN[k], "put")
        for k in ("jpeg IPTC (APP13)", "png private chunk", "mp4 comment (udta)")
    },
    # workbooks
    **{
        k: (lambda k=k: op.HIDDEN[k]()[0], "upload")
        for k in (
            "xlsx cell comments",
            "xlsx threaded comments",
            "xlsx description property",
            "xlsx custom properties",
            "xlsx sheet names",
            "xlsx defined names",
            "xlsx formulas without values",
            "xlsx pivot cache records",
            "xlsx custom xml",
            "xlsx extra csv part",
        )
    },
    **{
        k: (gaps.HIDDEN[k], "upload")
        for k in (
            "xls sheet names",
            "xls comments",
            "xls defined names",
            "xls formulas with string literals",
            "ods sheet names",
            "ods comments",
            "ods formulas without values",
            "ods named expressions",
            "ods description",
            "ods extra csv part",
        )
    },
    # Word and PowerPoint
    **{
        k: (lambda k=k: op.HIDDEN[k]()[0], "upload")
        for k in (
            "docx header",
            "docx footer",
            "docx footnotes",
            "docx endnotes",
            "docx comments",
            "docx text box",
            "docx embedded xlsx",
            "pptx slide table",
            "pptx speaker notes",
            "pptx embedded xlsx",
        )
    },
    "pptx comments": (gaps.pptx_comments, "upload"),
    # PDF
    **{
        k: (hp.HIDDEN[k], "upload")
        for k in (
            "pdf embedded csv",
            "pdf sticky note",
            "pdf form fields",
            "pdf owner password only",
        )
    },
    "pdf file attachment annotation": (gaps.HIDDEN["pdf file attachment annotation"], "upload"),
    "pdf title subject keywords": (gaps.HIDDEN["pdf title subject keywords"], "upload"),
    # archives
    "zip entry names (ID-card photo batch)": (
        hp.HIDDEN["zip entry names (ID-card photo batch)"],
        "upload",
    ),
    "zip comment": (hp.HIDDEN["zip comment"], "upload"),
    "tar of a workbook": (gaps.HIDDEN["tar of a workbook"], "put"),
    "tar entry names": (gaps.HIDDEN["tar entry names"], "upload"),
    "tar.gz of a csv": (lambda: gzip.compress(C.tar_of({"a.csv": CSV}), mtime=0), "put"),
    # WebSocket binary frames, permessage-deflate, inline and in a worker
    "png + zip in a small deflated frame": (lambda: F.png(64, 64) + ZIP, "ws"),
    "png tEXt in a small deflated frame": (hp.HIDDEN["png tEXt"], "ws"),
    "mp4 + csv in a large deflated frame": (lambda: C.mp4_video() + CSV, "ws"),
    "xlsx pivot cache in a large deflated frame": (
        lambda: C.with_parts(
            op.HIDDEN["xlsx pivot cache records"]()[0],
            {"xl/printerSettings/printerSettings1.bin": PAD},
        ),
        "ws",
    ),
}

BENIGN: dict[str, FileCase] = {
    "product photo zip with Thumbs.db and .DS_Store": (hp.product_photo_zip, "upload"),
    "owner-password PDF manual": (hp.BENIGN["owner-password manual"], "upload"),
    "camera photo with EXIF, GPS and thumbnail": (C.camera_photo, "put"),
    "phone video": (C.mp4_video, "upload"),
    "tar of product photos with Thumbs.db and .DS_Store": (
        gaps.BENIGN["tar of product photos with Thumbs.db and .DS_Store"],
        "put",
    ),
    "camera photo in a small deflated frame": (C.camera_photo, "ws"),
    "phone video in a large deflated frame": (C.mp4_video, "ws"),
}


# --- sending ------------------------------------------------------------------------------------


def send_file(proxy: Proxy, upstream: Upstream, data: bytes, how: str, marker: str) -> Sent:
    if how == "put":  # the file is the whole body, as an object storage SDK sends it
        url = upstream.url("https", f"/oss/{marker}/IMG_20240616_102133.jpg")
        return send(proxy, "PUT", url, content=data, headers={"Content-Type": "image/jpeg"})
    url = upstream.url("https", f"/im/upload/{marker}")
    return send(proxy, "POST", url, files={"file": ("商品图.jpg", data, "image/jpeg")})


def send_frame(proxy: Proxy, upstream: Upstream, messages: list[str | bytes], marker: str) -> Any:
    url = upstream.url("wss", f"/ws/chat/{marker}")
    return asyncio.run(ws_send(proxy, url, messages, "deflate"))


def assert_records_counted_and_masked(proxy: Proxy, incident: str, what: str) -> None:
    """The audit line counts the 20 records (a customer a record, not one blob) and shows
    masked samples only (``110105********123X``, ``138****8000``)."""
    event = audit_event(proxy, incident)
    records = event.get("records", 0)
    assert records >= 20, f"{what}: the audit line counts {records} records, expected 20"
    samples = event.get("samples") or {}
    shown = [s for values in samples.values() for s in values]
    masked = bool(shown) and all("*" in s for s in shown) and not VALUES.intersection(shown)
    assert masked, f"{what}: the audit line's {len(shown)} samples are not all masked"


# --- every carrier is blocked -------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_customers_in_each_carrier_are_read_and_blocked(
    proxy: Proxy, upstream: Upstream, case: str
) -> None:
    build, how = CASES[case]
    data = build()
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    if how == "ws":
        replies = send_frame(proxy, upstream, [data, ORDINARY], marker)
        assert_ws_blocked(proxy, upstream, replies, marker, VALUES, case)
        incident = str(json.loads(replies[0]).get("incident_id"))
    else:
        sent = send_file(proxy, upstream, data, how, marker)
        assert_http_blocked(proxy, upstream, sent, marker, VALUES, case)
        incident = str(sent.reply.headers["x-dlp-incident"])
    assert_records_counted_and_masked(proxy, incident, case)


def test_a_large_frame_case_is_above_the_inline_limit() -> None:
    """The "large" frames really go to an inspection worker."""
    for case in (
        "mp4 + csv in a large deflated frame",
        "xlsx pivot cache in a large deflated frame",
    ):
        assert len(CASES[case][0]()) > LARGE, case
    assert len(CASES["png + zip in a small deflated frame"][0]()) < LARGE


def _multipart(preamble: bytes) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST", "https://x.test/", files={"file": ("商品主图.png", F.png(32, 32), "image/png")}
    )
    return preamble + request.read(), request.headers["content-type"]


REQUESTS: dict[str, Callable[[], tuple[bytes, str]]] = {
    "multipart preamble": lambda: _multipart(CSV + b"\r\n"),
    # Python keeps the last value of a key, many servers the first: both are read.
    "duplicate JSON keys": lambda: (
        b'{"type": "text", "content": '
        + json.dumps(hp.TABLE, ensure_ascii=False).encode()
        + b', "content": "\xe5\xa5\xbd\xe7\x9a\x84"}',
        "application/json",
    ),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_customers_in_the_request_framing_are_read_and_blocked(
    proxy: Proxy, upstream: Upstream, case: str
) -> None:
    body, ctype = REQUESTS[case]()
    proxy.sent_values.update(VALUES)
    marker = new_marker()
    url = upstream.url("https", f"/im/send/{marker}")
    sent = send(proxy, "POST", url, content=body, headers={"Content-Type": ctype})
    assert_http_blocked(proxy, upstream, sent, marker, VALUES, case)
    assert_records_counted_and_masked(proxy, str(sent.reply.headers["x-dlp-incident"]), case)


# --- everyday files are delivered ---------------------------------------------------------------


@pytest.mark.parametrize("case", list(BENIGN))
def test_everyday_files_are_delivered_byte_for_byte(
    proxy: Proxy, upstream: Upstream, case: str
) -> None:
    build, how = BENIGN[case]
    data = build()
    marker = new_marker()
    if how == "ws":
        (echo,) = send_frame(proxy, upstream, [data], marker)
        assert echo == b"echo:" + data, f"{case}: the frame did not make the round trip"
        received = [m.data for m in upstream.recorder.ws_messages(marker)]
        assert received == [data], f"{case}: the upstream did not receive the frame as sent"
        return
    sent = send_file(proxy, upstream, data, how, marker)
    assert_delivered(proxy, upstream, sent, marker, case)
