"""Extraction never crashes on hostile input: the only exception it may raise is ``ExtractError``.

Anything else escaping ``extract_http`` would reach the addon as an internal error (blocked, but
counted as a bug and logged as one) instead of a bounded "unscannable" reason. Inputs are random
and malformed multipart bodies, random Content-Encoding stacks, JSON with layers of base64 /
percent / ``\\u`` encoding, and broken archives and workbooks. Each call must also come back
within :data:`CALL_SECONDS`: a generous bound meant to catch hangs and runaway decoding, not to
measure speed (that is ``bench/``'s job).

The seed files hold no personal data (price lists), so a falsifying example never shows one.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import zipfile
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlp_addon.errors import ExtractError
from dlp_addon.extract import Extraction, HttpInput, Limits, extract_http
from tests import files

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.14
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

# Time is bounded by a hang guard, not asserted: a fuzz case that never returns fails here.
pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # nothing written into the work tree; a failure prints its reproduction
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_extract(req: HttpInput) -> Extraction:
    """``extract_http`` with the default limits."""
    return extract_http(req, Limits())


def check(req: HttpInput) -> None:
    """Extraction returns or raises ``ExtractError``; nothing else escapes."""
    try:
        result = run_extract(req)
    except ExtractError as e:
        assert isinstance(e.reason, str) and 0 < len(e.reason) <= 64, "unbounded reason"
    else:
        assert isinstance(result, Extraction)


def post(body: bytes, content_type: str | None, **headers: str) -> HttpInput:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        hdrs["content-type"] = content_type
    return HttpInput("POST", "/fuzz?x=1", hdrs, body)


# --- seed files (no personal data) --------------------------------------------------------------

PRICES = files.price_rows(8, seed=3)
SEEDS: dict[str, bytes] = {
    "xlsx": files.xlsx(PRICES, sheet="价目表"),
    "xlsx-hidden": files.xlsx(PRICES[:3], sheet="价目表", hidden_rows=PRICES),
    "xlsx-minimal": files.minimal_xlsx(["品名", "拉杆箱", "SKU-LX2024-BLK-28"]),
    "xlsx-entity-bomb": files.xml_entity_bomb_xlsx(),
    "xls": files.xls(PRICES),
    "ods": files.ods(PRICES),
    "zip-csv": files.zip_of({"价目表.csv": files.csv_bytes(PRICES, "utf-8")}),
    "zip-in-zip": files.nested_zip("价目表.csv", files.csv_bytes(PRICES, "gbk"), depth=3),
    "zip-encrypted": files.encrypted_zip(size=256),
    "png": files.png(8, 8),
    "gzip-csv": gzip.compress(files.csv_bytes(PRICES, "utf-8"), mtime=0),
}
SPREADSHEET_TYPES = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-excel.sheet.macroEnabled.12",
    "application/vnd.ms-excel",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/zip",
    "application/octet-stream",
    "image/jpeg",
    "text/csv",
)
MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"PK\x03\x04\x14\x00\x01\x00",  # encrypted flag
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"\x1f\x8b\x08",
    b"\x89PNG\r\n\x1a\n",
    b"\x00\x00\x00\x18ftypmp42",
    b"\xef\xbb\xbf",
    b"%PDF-",
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file with a few byte-level edits: flips, cuts, inserts, overwritten 32-bit
    fields (sizes, offsets, counts in zip headers)."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(("flip", "truncate", "insert", "delete", "u32")),
                st.integers(0, 1 << 30),
                st.binary(min_size=1, max_size=8),
            ),
            max_size=4,
        )
    )
    for op, pos, blob in edits:
        i = pos % (len(data) + 1)
        if op == "flip" and data:
            data[i % len(data)] ^= blob[0] or 0x01
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = blob
        elif op == "delete":
            del data[i : i + len(blob)]
        elif op == "u32":
            value = draw(st.sampled_from((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), pos)))
            data[i : i + 4] = value.to_bytes(4, "little")
    return bytes(data)


def claimed_files() -> st.SearchStrategy[bytes]:
    """Bytes that claim to be a workbook or an archive: mutated real ones, or a magic
    number followed by noise."""
    noise = st.builds(lambda m, b: m + b, st.sampled_from(MAGIC), st.binary(max_size=2048))
    return st.one_of(mutated(), noise, st.binary(max_size=512))


# --- text payloads with layers of encoding ------------------------------------------------------


def _b64(data: bytes, variant: int) -> str:
    if variant == 0:
        return base64.b64encode(data).decode()
    if variant == 1:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    if variant == 2:
        return base64.encodebytes(data).decode()  # MIME style, with newlines
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


def _u_escape(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in text)


def encode_layer(value: str | bytes, how: str, variant: int) -> str:
    raw = value.encode() if isinstance(value, str) else value
    if how == "base64":
        return _b64(raw, variant)
    if how == "percent":
        text = raw.decode("utf-8", "replace")
        return quote(text, safe="") if variant % 2 else quote_plus(text)
    if how == "u-escape":
        return _u_escape(raw.decode("utf-8", "replace"))
    if how == "double-percent":
        return quote(quote(raw.decode("utf-8", "replace"), safe=""), safe="")
    return raw.decode("latin-1")


LAYERS = st.sampled_from(("base64", "percent", "u-escape", "double-percent", "none"))

PLAIN_TEXT = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        (
            files.csv_bytes(PRICES, "utf-8").decode(),
            "亲，这款行李箱有货吗？",
            "%E4%BA%B2%zz%%%",
            "\\u4eb2\\ud800\\uZZZZ",
            "=?utf-8?b?5Lqy?=",
            "AAAA" * 64,
            "====",
            "[" * 200,
        )
    ),
)

ENCODED_BYTES = st.one_of(
    st.binary(max_size=512),
    st.sampled_from(sorted(SEEDS)).map(SEEDS.__getitem__),
    mutated(),
)


@st.composite
def encoded_strings(draw: st.DrawFn) -> str:
    """A string holding text or file bytes under one to four layers of encoding."""
    value: str | bytes = draw(st.one_of(PLAIN_TEXT, ENCODED_BYTES))
    for _ in range(draw(st.integers(1, 4))):
        value = encode_layer(value, draw(LAYERS), draw(st.integers(0, 3)))
    return value if isinstance(value, str) else value.decode("latin-1")


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    encoded_strings(),
)


def json_values() -> st.SearchStrategy[Any]:
    """JSON documents whose strings may be base64/percent/\\u-encoded, including JSON itself
    (base64 of a JSON document holding base64 ...)."""
    return st.recursive(
        JSON_SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
            st.builds(
                lambda v, how, variant: encode_layer(json.dumps(v), how, variant),
                children,
                LAYERS,
                st.integers(0, 3),
            ),
        ),
        max_leaves=25,
    )


# --- multipart ----------------------------------------------------------------------------------

BOUNDARY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?"
HEADER_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@st.composite
def multipart_requests(draw: st.DrawFn) -> HttpInput:
    boundary = draw(st.text(alphabet=BOUNDARY_CHARS, min_size=1, max_size=70))
    chunks: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(HEADER_TEXT).replace('"', "")
        disposition = f'form-data; name="{name}"'
        if draw(st.booleans()):
            filename = draw(st.one_of(HEADER_TEXT, st.sampled_from(("a.xlsx", "b.jpg", ""))))
            disposition += f'; filename="{filename}"'
            if draw(st.booleans()):
                disposition += f"; filename*=UTF-8''{quote(filename)}"
        lines = [f"Content-Disposition: {disposition}"]
        if draw(st.booleans()):
            lines.append(f"Content-Type: {draw(st.sampled_from(SPREADSHEET_TYPES))}")
        if draw(st.booleans()):
            lines.append(f"Content-Transfer-Encoding: {draw(st.sampled_from(('base64', '8bit')))}")
        payload = draw(
            st.one_of(
                claimed_files(),
                st.text(max_size=200).map(str.encode),
                json_values().map(lambda v: json.dumps(v).encode()),
            )
        )
        head = "\r\n".join(lines).encode("utf-8", "surrogatepass")
        chunks.append(f"--{boundary}\r\n".encode() + head + b"\r\n\r\n" + payload + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()

    damage = draw(
        st.sampled_from(("none", "truncate", "no-end", "junk-prefix", "bare-lf", "noise"))
    )
    if damage == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "no-end":
        body = body.rsplit(b"--", 2)[0]
    elif damage == "junk-prefix":
        body = draw(st.binary(max_size=64)) + body
    elif damage == "bare-lf":
        body = body.replace(b"\r\n", b"\n")
    elif damage == "noise":
        body = draw(st.binary(max_size=1024))

    header_boundary = draw(st.sampled_from(("same", "other", "missing", "quoted", "empty")))
    ctype = {
        "same": f"multipart/form-data; boundary={boundary}",
        "other": "multipart/form-data; boundary=not-the-one",
        "missing": "multipart/form-data",
        "quoted": f'multipart/form-data; boundary="{boundary}"',
        "empty": "multipart/form-data; boundary=",
    }[header_boundary]
    return post(body, ctype)


# --- Content-Encoding stacks --------------------------------------------------------------------

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "x-gzip": lambda b: gzip.compress(b, mtime=0),
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
    "identity": lambda b: b,
}


def _raw_deflate(data: bytes) -> bytes:
    d = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return d.compress(data) + d.flush()


@st.composite
def encoded_bodies(draw: st.DrawFn) -> HttpInput:
    data = draw(
        st.one_of(
            st.binary(max_size=2048),
            json_values().map(lambda v: json.dumps(v).encode()),
            claimed_files(),
        )
    )
    stack = draw(st.lists(st.sampled_from(sorted(ENCODERS)), max_size=4))
    for name in stack:
        data = (
            _raw_deflate(data)
            if name == "deflate" and draw(st.booleans())
            else (ENCODERS[name](data))
        )
    labels = list(stack)
    lie = draw(st.sampled_from(("honest", "shuffled", "extra", "unknown", "dropped", "corrupt")))
    if lie == "shuffled":
        labels = draw(st.permutations(labels))
    elif lie == "extra":
        labels.append(draw(st.sampled_from(sorted(ENCODERS))))
    elif lie == "unknown":
        labels.insert(
            draw(st.integers(0, len(labels))), draw(st.sampled_from(("compress", "", "x")))
        )
    elif lie == "dropped" and labels:
        labels.pop(draw(st.integers(0, len(labels) - 1)))
    elif lie == "corrupt" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]
    separator = draw(st.sampled_from((", ", ",", " , ", ",,")))
    encoding = separator.join(label.upper() if draw(st.booleans()) else label for label in labels)
    ctype = draw(
        st.sampled_from(
            (None, "application/json", "text/plain; charset=gbk", "application/octet-stream",
             "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
             *SPREADSHEET_TYPES)
        )
    )  # fmt: skip
    return post(data, ctype, content_encoding=encoding)


# --- the properties -----------------------------------------------------------------------------


@FUZZ
@given(multipart_requests())
def test_malformed_multipart_raises_only_extract_error(req: HttpInput) -> None:
    check(req)


@FUZZ
@given(encoded_bodies())
def test_content_encoding_stacks_raise_only_extract_error(req: HttpInput) -> None:
    check(req)


@FUZZ
@given(
    json_values(),
    st.sampled_from(("json", "form", "form-as-text", "percent-json")),
)
def test_encoded_json_nestings_raise_only_extract_error(doc: Any, how: str) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    if how == "json":
        req = post(text.encode(), "application/json")
    elif how == "form":
        req = post(f"data={quote_plus(text)}&t=1".encode(), "application/x-www-form-urlencoded")
    elif how == "form-as-text":
        req = post(f"data={quote(text, safe='')}&t=1".encode(), "text/plain")
    else:
        req = post(quote(text).encode(), None)
    check(req)


@FUZZ
@given(
    claimed_files(),
    st.sampled_from(SPREADSHEET_TYPES),
    st.sampled_from(("upload", "raw")),
)
def test_bytes_claiming_to_be_xlsx_or_zip_raise_only_extract_error(
    data: bytes, ctype: str, how: str
) -> None:
    if how == "raw":
        check(post(data, ctype))
        return
    boundary = "fuzzboundary7MA4YWxkTrZu0gW"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="价目表.xlsx"\r\nContent-Type: {ctype}\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    check(post(body, f"multipart/form-data; boundary={boundary}"))


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
def test_deeply_nested_json_raises_only_extract_error(depth: int) -> None:
    """Nesting deeper than Python's recursion limit, plain and base64-wrapped."""
    nested = "[" * depth + "]" * depth
    check(post(nested.encode(), "application/json"))
    wrapped = json.dumps({"file": base64.b64encode(nested.encode()).decode()})
    check(post(wrapped.encode(), "application/json"))


def test_an_entry_flag_zipfile_cannot_read_is_unscannable() -> None:
    """An entry flagged "compressed patched data" (flag bit 5) or "strong encryption" (bit 6):
    zipfile raises NotImplementedError, which must become an unscannable reason."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", "拉杆箱,黑色\n" * 50)
    for bit in (0x20, 0x40):
        data = bytearray(buf.getvalue())
        data[data.index(b"PK\x01\x02") + 8] |= bit  # the directory entry's flags
        req = HttpInput("POST", "/upload", {"content-type": "application/zip"}, bytes(data))
        with pytest.raises(ExtractError) as e:
            extract_http(req)
        assert e.value.reason == "unsupported_compression"
