"""Files are read by what they are, not what they are called; bombs and encrypted content get a
clear verdict. Every file is built here (tests/files.py), with synthetic customers."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import Inspection, inspect_http
from tests import files as F

POLICY = load_policy()
ROWS = F.customer_rows(20, seed=1)
BOUNDARY = "----dlp-test-boundary"


def upload(name: str, data: bytes, ctype: str = "application/octet-stream") -> HttpInput:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return HttpInput(
        "POST", "/upload", {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, body
    )


def body(data: bytes, ctype: str, encoding: str = "") -> HttpInput:
    headers = {"content-type": ctype} | ({"content-encoding": encoding} if encoding else {})
    return HttpInput("POST", "/send", headers, data)


def inspect(req: HttpInput) -> Inspection:
    return inspect_http(POLICY, req, "jd")


def _rows_text(rows: list[list[object]]) -> str:
    return "\n".join(" ".join(map(str, r)) for r in rows)


READABLE: dict[str, Callable[[], HttpInput]] = {
    "xlsx": lambda: upload("客户.xlsx", F.xlsx(ROWS)),
    "xlsx renamed .jpg": lambda: upload("photo.jpg", F.xlsx(ROWS), "image/jpeg"),
    "xls": lambda: upload("客户.xls", F.xls(ROWS)),
    "ods": lambda: upload("客户.ods", F.ods(ROWS)),
    "csv utf-8": lambda: upload("a.csv", F.csv_bytes(ROWS, "utf-8")),
    "csv gbk": lambda: upload("a.csv", F.csv_bytes(ROWS, "gbk")),
    "csv utf-8 bom": lambda: upload("a.csv", F.csv_bytes(ROWS, "utf-8", bom=True)),
    "tsv as .txt": lambda: upload("notes.txt", F.csv_bytes(ROWS, "utf-8", delimiter="\t")),
    "hidden sheet": lambda: upload("价格表.xlsx", F.xlsx(F.price_rows(), hidden_rows=ROWS)),
    "zip in zip": lambda: upload("a.zip", F.nested_zip("c.csv", F.csv_bytes(ROWS, "utf-8"), 2)),
    "base64 csv in json": lambda: body(
        json.dumps({"file": base64.b64encode(F.csv_bytes(ROWS, "utf-8")).decode()}).encode(),
        "application/json",
    ),
    "gzip json": lambda: body(
        gzip.compress(json.dumps({"m": _rows_text(ROWS)}, ensure_ascii=False).encode()),
        "application/json",
        "gzip",
    ),
    "gb18030 text": lambda: body(_rows_text(ROWS).encode("gb18030"), "text/plain"),
}


@pytest.mark.parametrize("case", sorted(READABLE))
def test_customer_records_are_found_and_blocked(case: str) -> None:
    ins = inspect(READABLE[case]())
    assert ins.verdict.blocks and ins.verdict.reason == "findings", ins.verdict.reason
    assert ins.verdict.records == 20
    assert ins.verdict.counts.get("cn_resident_id") == 20


def test_a_mobile_column_stored_as_numbers() -> None:
    ins = inspect(upload("m.xlsx", F.xlsx(F.mobile_only_rows(25, 3), mobile_as_number=True)))
    assert ins.verdict.blocks and ins.verdict.counts.get("cn_mobile") == 25


def test_spreadsheets_are_attachments_and_price_lists_are_logged() -> None:
    ins = inspect(upload("报价.xlsx", F.price_list_xlsx()))
    assert (ins.verdict.action, ins.verdict.rule) == ("log", "spreadsheet-attachment")
    assert ins.channel == "upload"


@pytest.mark.parametrize("case", ["png", "media"])
def test_images_and_media_pass(case: str) -> None:
    data = F.png(64, 64) if case == "png" else F.media_blob()
    assert inspect(upload(f"x.{case}", data)).verdict.action == "allow"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("nested", "too_deep"),
        ("overlapping", "zip_bomb"),
        ("xml_entities", "corrupt"),
        ("encrypted", "encrypted"),
    ],
)
def test_bombs_and_encrypted_files_are_unscannable(case: str, reason: str) -> None:
    data = {
        "nested": F.nested_zip_bomb,
        "overlapping": F.overlapping_zip_bomb,
        "xml_entities": F.xml_entity_bomb_xlsx,
        "encrypted": F.encrypted_zip,
    }[case]()
    verdict = inspect(upload("f.zip", data)).verdict
    assert verdict.blocks and verdict.reason == f"unscannable:{reason}"


def test_gzip_bomb_in_content_encoding_is_too_large() -> None:
    verdict = inspect(body(F.gzip_bomb(256 * 1024 * 1024), "application/json", "gzip")).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_large"


def test_encrypted_office_documents_are_unscannable() -> None:
    ole = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\x00" * 512
        + "EncryptedPackage".encode("utf-16-le")
        + b"\x00" * 512
    )
    verdict = inspect(upload("secret.xlsx", ole)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:encrypted_office"


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text is ``lines`` (ASCII), built by hand: no PDF writer needed."""
    ops = "BT /F1 10 Tf 20 800 Td 12 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


def test_pdf_text_is_read() -> None:
    lines = [f"{r[1]} {r[2]}" for r in ROWS]  # ID and mobile: ASCII, as Helvetica can show
    verdict = inspect(upload("scan.pdf", _pdf(lines))).verdict
    assert verdict.blocks and verdict.counts.get("cn_resident_id") == 20
    assert verdict.records == 20


def test_a_broken_pdf_is_unscannable() -> None:
    verdict = inspect(upload("x.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40)).verdict
    assert verdict.blocks and verdict.reason.startswith("unscannable:")


def test_each_file_is_described_in_the_verdict() -> None:
    verdict = inspect(upload("价格表.xlsx", F.xlsx(F.price_rows(), hidden_rows=ROWS))).verdict
    (described,) = verdict.files
    assert described["kind"] == "xlsx" and described["sheets"] == 2
    assert described["records"] == 20 and described["rows"] == len(F.price_rows()) + len(ROWS)
