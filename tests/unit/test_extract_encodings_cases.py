"""Records hidden from the proxy by an encoding or a charset trick are still read (issue 16).

Each case carries 20 synthetic customers (tests/synth.py) in one rendering: HTML/XML character
references, hex (bare, spaced, ``\\x`` escapes), base32, base64/hex/base32 of zlib, gzip or raw
deflate, base64 nested three deep, and bodies whose declared charset, BOM and bytes disagree.
The shipped policy must find all 20 IDs and block. The negatives are what such decoding must
leave alone: digests, secrets, tokens, colours and long numbers, with nothing unscannable.
Failure messages show counts and part labels, never a value.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import hashlib
import json
import random
import uuid
import zlib
from collections.abc import Callable

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.detect.engine import engine_for
from dlp_addon.errors import ExtractError
from dlp_addon.extract import Extraction, HttpInput, Limits, extract_http, extract_ws
from dlp_addon.extract.text import decode_readings as readings
from dlp_addon.pipeline import inspect_http, inspect_ws
from tests import files as F
from tests.synth import customer_records, records_chat_text

POLICY = load_policy()
RECORDS = customer_records(20, seed=16)
TEXT = records_chat_text(RECORDS)
IDS_ONLY = "\n".join(r["id"] for r in RECORDS)
ID_KEYS = {engine_for(POLICY).scanner.key("cn_resident_id", r["id"].upper()) for r in RECORDS}
MIB = 1024 * 1024


def post(body: bytes, ctype: str = "application/json") -> HttpInput:
    return HttpInput("POST", "/api/send", {"content-type": ctype} if ctype else {}, body)


def as_json(value: str) -> HttpInput:
    return post(json.dumps({"msg": value}).encode())


def ids_found(ex: Extraction) -> int:
    """How many of the 20 IDs the policy's scanner finds in the extracted parts."""
    findings = engine_for(POLICY).scanner.scan_all(ex.parts)
    return len({f.key for f in findings if f.detector == "cn_resident_id"} & ID_KEYS)


def labels(ex: Extraction) -> list[str]:
    return [location for location, _ in ex.parts]


def deflate_raw(data: bytes) -> bytes:
    d = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return d.compress(data) + d.flush()


def zeros_compressed(size: int, wbits: int) -> bytes:
    """``size`` zero bytes compressed, built a MiB at a time: a decompression bomb."""
    d = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(MIB)
    return b"".join(d.compress(chunk) for _ in range(size // MIB)) + d.flush()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def nested_b64(data: bytes, levels: int) -> str:
    for _ in range(levels):
        data = base64.b64encode(data)
    return data.decode()


UTF8 = TEXT.encode()

# --- encodings --------------------------------------------------------------------------------

ENCODED: dict[str, Callable[[], HttpInput]] = {
    # HTML/XML character references
    "decimal references in json": lambda: as_json("".join(f"&#{ord(c)};" for c in TEXT)),
    "hex references in html": lambda: post(
        ("<td>" + "".join(f"&#x{ord(c):X};" for c in TEXT) + "</td>").encode(), "text/html"
    ),
    "digits only as references in xml": lambda: post(
        (
            "<rows>"
            + "".join(f"&#{ord(c)};" if c.isdigit() else c for c in TEXT).replace("\n", "&#10;")
            + "</rows>"
        ).encode(),
        "application/xml",
    ),
    # hex
    "hex": lambda: as_json(UTF8.hex()),
    "hex upper with 0x": lambda: as_json("0x" + UTF8.hex().upper()),
    "hex of digits only": lambda: as_json(" ".join(r["id"].encode().hex() for r in RECORDS)),
    "hex spaced pairs": lambda: as_json(UTF8.hex(" ")),
    "hex colon pairs": lambda: post(UTF8.hex(":").encode(), "text/plain"),
    "hex per line in a csv": lambda: post(
        "\n".join(f"{i},{r['id'].encode().hex()}" for i, r in enumerate(RECORDS)).encode(),
        "text/csv",
    ),
    "\\x escapes": lambda: as_json("".join(f"\\x{b:02x}" for b in UTF8)),
    "hex in a url path": lambda: HttpInput(
        "GET", "/export/" + IDS_ONLY.replace("\n", " ").encode().hex() + "/csv", {}, b""
    ),
    # base32
    "base32": lambda: as_json(base64.b32encode(UTF8).decode()),
    "base32 unpadded": lambda: post(base64.b32encode(UTF8).decode().rstrip("=").encode(), ""),
    # compressed, then encoded
    "base64 of zlib": lambda: as_json(b64(zlib.compress(UTF8))),
    "base64 of raw deflate": lambda: as_json(b64(deflate_raw(UTF8))),
    "base64 of gzip": lambda: as_json(b64(gzip.compress(UTF8, mtime=0))),
    "base64url of zlib": lambda: as_json(
        base64.urlsafe_b64encode(zlib.compress(UTF8)).decode().rstrip("=")
    ),
    "hex of zlib": lambda: as_json(zlib.compress(UTF8).hex()),
    "base32 of raw deflate": lambda: as_json(base64.b32encode(deflate_raw(UTF8)).decode()),
    "base64 of zlib of a csv": lambda: as_json(
        b64(zlib.compress(F.csv_bytes(F.customer_rows(20, seed=16), "gbk")))
    ),
    # nested base64, to the policy's max_decode_depth (3)
    "base64 x3 in json": lambda: as_json(nested_b64(UTF8, 3)),
    "base64 x3 as the body": lambda: post(nested_b64(UTF8, 3).encode(), "text/plain"),
    "base64 of json of base64": lambda: as_json(b64(json.dumps({"d": b64(UTF8)}).encode())),
}


@pytest.mark.parametrize("case", sorted(ENCODED))
def test_encoded_records_are_found(case: str) -> None:
    ex = extract_http(ENCODED[case](), POLICY.limits)
    assert not ex.unscannable, ex.unscannable
    assert ids_found(ex) == 20, labels(ex)


@pytest.mark.parametrize(
    "case", ["decimal references in json", "hex", "base32", "base64 of zlib", "base64 x3 in json"]
)
def test_encoded_records_are_blocked(case: str) -> None:
    verdict = inspect_http(POLICY, ENCODED[case](), "jd").verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.counts.get("cn_resident_id") == 20


def test_websocket_messages_are_decoded_too() -> None:
    text_frame = json.dumps({"m": UTF8.hex()}).encode()
    assert ids_found(extract_ws(text_frame, is_text=True)) == 20
    entities = "".join(f"&#{ord(c)};" for c in TEXT).encode()
    verdict = inspect_ws(POLICY, entities, True, "jd").verdict
    assert verdict.blocks and verdict.counts.get("cn_resident_id") == 20


@pytest.mark.parametrize(
    ("encode", "wbits"),
    [
        (lambda d: b64(d), zlib.MAX_WBITS),
        (lambda d: b64(d), -zlib.MAX_WBITS),
        (lambda d: d.hex(), zlib.MAX_WBITS),
        (lambda d: base64.b32encode(d).decode(), -zlib.MAX_WBITS),
    ],
    ids=["base64 zlib", "base64 raw deflate", "hex zlib", "base32 raw deflate"],
)
def test_compression_bombs_in_encoded_runs_are_too_large(
    encode: Callable[[bytes], str], wbits: int
) -> None:
    """A bomb is refused (fail closed), never skipped as undecodable junk."""
    bomb = encode(zeros_compressed(4 * MIB, wbits))
    with pytest.raises(ExtractError) as e:
        extract_http(as_json(bomb), Limits(max_decoded_bytes=MIB))
    assert e.value.reason == "too_large"


def test_compression_bomb_in_base64_blocks_with_the_shipped_policy() -> None:
    bomb = b64(zeros_compressed(POLICY.limits.max_decoded_bytes + 8 * MIB, zlib.MAX_WBITS))
    verdict = inspect_http(POLICY, as_json(bomb), "jd").verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_large", verdict.reason


# --- charsets ---------------------------------------------------------------------------------

CSV_ROWS = F.customer_rows(20, seed=16)
CSV_TEXT = "\r\n".join(",".join(map(str, row)) for row in CSV_ROWS)


# What a UTF-16 reader makes of ASCII is plausible CJK (``11`` is U+3131): only the UTF-8
# reading shows the IDs. Even-length, so that the UTF-16 reading decodes cleanly.
ASCII_ROWS = "\n".join(f"{r['id']},{r['mobile']}" for r in RECORDS)


def even(data: bytes) -> bytes:
    return data + b" " if len(data) % 2 else data


def _stray_byte_json() -> bytes:
    """UTF-8 JSON with one invalid byte: a UTF-8 server reads it (with a replacement)."""
    return b"\xff" + json.dumps({"m": TEXT}, ensure_ascii=False).encode()


CHARSETS: dict[str, Callable[[], HttpInput]] = {
    "FF FE + utf-8, declared utf-8": lambda: post(b"\xff\xfe" + UTF8, "text/plain; charset=utf-8"),
    "FF FE + utf-8, no charset": lambda: post(b"\xff\xfe" + UTF8, "text/plain"),
    "FF FE + ascii ids, declared utf-8": lambda: post(
        even(b"\xff\xfe" + ASCII_ROWS.encode()), "application/json; charset=utf-8"
    ),
    "FE FF + ascii ids": lambda: post(even(b"\xfe\xff" + ASCII_ROWS.encode()), ""),
    "FF FE + ascii json": lambda: post(
        even(b"\xff\xfe" + json.dumps({"rows": ASCII_ROWS.splitlines()}).encode())
    ),
    "FF FE + utf-8 json": lambda: post(
        b"\xff\xfe" + json.dumps({"m": TEXT}, ensure_ascii=False).encode()
    ),
    "EF BB BF + gbk": lambda: post(codecs.BOM_UTF8 + TEXT.encode("gbk"), "text/plain"),
    "utf-16le without bom": lambda: post(TEXT.encode("utf-16-le"), "text/plain"),
    "utf-16be without bom": lambda: post(TEXT.encode("utf-16-be"), "text/csv; charset=utf-8"),
    "utf-16le without bom, odd length": lambda: post(TEXT.encode("utf-16-le") + b"\n", ""),
    "utf-16 with bom and a lone surrogate": lambda: post(
        codecs.BOM_UTF16_LE + b"\x00\xd8" + TEXT.encode("utf-16-le"), "text/plain"
    ),
    "utf-16le csv upload without bom": lambda: _upload(CSV_TEXT.encode("utf-16-le")),
    "utf-16le csv upload with bom (Excel)": lambda: _upload(
        codecs.BOM_UTF16_LE + CSV_TEXT.replace(",", "\t").encode("utf-16-le")
    ),
    "gbk, no charset": lambda: post(TEXT.encode("gbk"), "text/plain"),
    "gbk, declared utf-8": lambda: post(TEXT.encode("gbk"), "text/plain; charset=utf-8"),
    "utf-8, declared gbk": lambda: post(UTF8, "text/plain; charset=gbk"),
    "utf-8, declared latin-1": lambda: post(UTF8, "text/plain; charset=iso-8859-1"),
    "utf-8 json with a stray byte": lambda: post(_stray_byte_json()),
    "form with FF FE": lambda: post(
        even(b"\xff\xfe" + b"a=1&ids=" + IDS_ONLY.replace("\n", "+").encode()),
        "application/x-www-form-urlencoded",
    ),
}


def _upload(data: bytes) -> HttpInput:
    boundary = "----dlp-encodings"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="客户.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return post(body, f"multipart/form-data; boundary={boundary}")


@pytest.mark.parametrize("case", sorted(CHARSETS))
def test_every_reading_of_a_charset_conflict_is_scanned(case: str) -> None:
    ex = extract_http(CHARSETS[case](), POLICY.limits)
    assert not ex.unscannable, ex.unscannable
    assert ids_found(ex) == 20, labels(ex)


@pytest.mark.parametrize(
    "case", ["FF FE + ascii ids, declared utf-8", "FF FE + ascii json", "utf-16le without bom"]
)
def test_charset_tricks_are_blocked(case: str) -> None:
    verdict = inspect_http(POLICY, CHARSETS[case](), "jd").verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.counts.get("cn_resident_id") == 20


def test_a_utf16_csv_without_bom_is_a_spreadsheet_attachment() -> None:
    verdict = inspect_http(POLICY, CHARSETS["utf-16le csv upload without bom"](), "jd").verdict
    assert verdict.blocks and verdict.records == 20
    assert [f["kind"] for f in verdict.files] == ["csv"]


def test_one_reading_when_the_charsets_agree() -> None:
    """A GBK file read as GB18030 is not read again as UTF-8 mojibake (its records would count
    twice), and plain UTF-8 is read once."""
    assert len(readings(TEXT.encode("gbk"))) == 1
    assert len(readings(UTF8, "utf-8")) == 1
    assert len(readings(codecs.BOM_UTF8 + UTF8, "utf-8")) == 1
    assert len(readings(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-8")) == 1
    verdict = inspect_http(POLICY, CHARSETS["gbk, no charset"](), "jd").verdict
    assert verdict.records == 20


@pytest.mark.parametrize(
    "data",
    [F.png(16, 16), b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4],
    ids=["png", "jpeg"],
)
def test_images_are_not_text(data: bytes) -> None:
    """An image whose bytes happen to read as text (a JPEG starts with FF) stays an image. (The
    broken JPEG's small unread rest gives its readable runs, as any cut-short image does.)"""
    ex = extract_http(_upload(data), POLICY.limits)
    assert ex.files == ("image",) and not ex.unscannable
    read = [label for label in labels(ex) if ":rest" not in label]
    assert read == ["path#0", "multipart:name#1", "multipart:filename#2"]


def test_random_bytes_behind_a_bom_are_opaque() -> None:
    """Encrypted bytes behind a UTF-16 BOM are not UTF-16 text that passes: still opaque."""
    noise = random.Random(16).randbytes(8192)
    for bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        ex = extract_http(post(bom + noise, "application/octet-stream"), POLICY.limits)
        assert ex.unscannable == ("opaque",)


# --- lone surrogates --------------------------------------------------------------------------


def test_lone_surrogates_pass_through_extraction_unchanged() -> None:
    """JSON ``\\ud800`` escapes give lone surrogates; every decoder passes them through and
    nothing encodes them on the way (the scanner decides what they mean)."""
    rows = [r["id"][:6] + "\\ud800" + r["id"][6:] for r in RECORDS]
    doc = '{"rows": ["' + '", "'.join(rows) + '"], "n": "1\\udfff2"}'
    bodies = {
        "json": post(doc.encode()),
        "base64 json": as_json(b64(doc.encode())),
        "percent json": post(("q=" + "".join(f"%{b:02X}" for b in doc.encode())).encode(), ""),
        "hex json": as_json(doc.encode().hex()),
    }
    for name, req in bodies.items():
        ex = extract_http(req, POLICY.limits)
        surrogates = sum(t.count("\ud800") for _, t in ex.parts)
        assert surrogates >= 20, (name, labels(ex))
        ins = inspect_http(POLICY, req, "jd")
        assert ins.error_stage is None and not ins.verdict.reason.startswith("error"), name


def test_surrogates_in_unicode_escapes_and_entities() -> None:
    text = "\\ud800 &#xd800; &#55296; " + TEXT
    ex = extract_http(post(text.encode(), "text/plain"), POLICY.limits)
    assert ids_found(ex) == 20
    assert any("\ud800" in t for _, t in ex.parts)


# --- what must be left alone ------------------------------------------------------------------

NEGATIVES: dict[str, str] = {
    "sha-256 digests": "\n".join(
        f"文件校验 sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(20)
    ),
    "sha-1 digests, upper case": "\n".join(
        hashlib.sha1(str(i).encode()).hexdigest().upper() for i in range(20)
    ),
    "a jwt": "Authorization: Bearer "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwibmFtZSI6IuW8oOS4iSIsImlhdCI6"
    "MTcxNzIwMDAwMH0.3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "hex colours": "配色 #1a2b3c #ff0000 #00ff00 #0000ff #abcdef #123456 #7f7f7f "
    "ff0000,00ff00,0000ff,ffffff,000000,1a2b3c,4d5e6f,abcdef",
    "long order numbers": "\n".join(
        f"订单号 {n}"
        for n in (
            "20240601123456789012",
            "3131303130353139343931323331303032",  # even, decimal, spells digits: read both ways
            "202406011234567890123456",
            "98765432109876543210987654321098",
            "12345678901234567890",
        )
    ),
    "uuids": "\n".join(f"trace {uuid.UUID(int=i * 7919 + 1)}" for i in range(20)),
    "a mac and an ipv6": "mac 00:1a:2b:3c:4d:5e ip fe80:0000:0000:0000:0202:b3ff:fe1e:8329",
}


@pytest.mark.parametrize("case", sorted(NEGATIVES))
def test_digests_secrets_and_numbers_are_left_alone(case: str) -> None:
    for req in (as_json(NEGATIVES[case]), post(NEGATIVES[case].encode(), "text/plain")):
        ex = extract_http(req, POLICY.limits)
        assert not ex.unscannable, ex.unscannable
        decoded = [n for n in labels(ex) if any(s in n for s in (":hex", ":b32", ":z", ":cs"))]
        if case == "long order numbers":  # the one number spelling digits, nothing else
            assert len(decoded) == 1, decoded
        else:
            assert not decoded, decoded
        verdict = inspect_http(POLICY, req, "jd").verdict
        assert not verdict.blocks, verdict.reason


def test_numbers_are_still_scanned_as_they_are() -> None:
    """Every 18-digit ID is also an even run of hex digits: read as the ID it is, with no
    decoded junk beside it."""
    ex = extract_http(post(IDS_ONLY.encode(), "text/plain"), POLICY.limits)
    assert ids_found(ex) == 20
    assert labels(ex) == ["path#0", "body#1"]
