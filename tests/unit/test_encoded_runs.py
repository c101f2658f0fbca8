"""Base64, hex and base32 runs of a long text (a big CSV) are found by a byte scan and the
runs' regexes where they can match: exactly the runs the regexes find over the whole text."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.extract import encoded_runs, runs

PIECES = st.sampled_from(
    [
        base64.b64encode("身份证号 110105199001011234".encode()).decode(),
        base64.urlsafe_b64encode(b"\xfb\xff" * 20).decode(),
        "31313031303531393930303130313132333478",
        "\\x31\\x31\\x30\\x31\\x30\\x35\\x31\\x39",
        "0x3131303130353139393030",
        "31:31:30:31:30:35:31:39:39",
        "31 31 30 31 30 35 31 39 39 30",
        base64.b32encode(b"13800138000 13800138000").decode(),
        "GEZDGNBVGY3TQOJQ==",
        "=",
        "==",
        "a",
        "Z",
        "7",
        "g",
        " ",
        ":",
        "\\",
        "x",
        ",",
        "\n",
        "王伟",
        "１３８",
        "\ud800",
        "SKU-LX2019-000123",
        "-",
        "_",
        "+",
        "/",
        "ABCDEFGHIJKLMNOP",
        "QRSTUVWXYZ234567",
        "abcdefghijklmnopqrstuvwx",
        "110105199001011234",
        "13800138000",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(PIECES, max_size=60))
def test_the_fast_runs_are_the_regexes_runs(pieces: list[str]) -> None:
    text = "".join(pieces)
    fast = encoded_runs._RUNS
    plain = (encoded_runs._BASE64_RUN, encoded_runs._HEX_RUN, encoded_runs._BASE32_RUN)
    expected = tuple(p.findall(text) for p in plain)
    data = text.encode("utf-8", "surrogatepass")
    assert fast.findall_bytes(data) == expected
    if runs._runscan is not None:  # the C pass and its twin give the same windows
        assert runs._runscan.windows(data) == runs.windows_py(data)


def test_a_long_text_takes_the_fast_way(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = base64.b64encode("身份证号 110105199001011234".encode()).decode()
    text = "拉杆箱,SKU-LX2019-000123,黑色\n" * 5000 + hidden + "\n"
    assert len(text) >= runs._SHORT
    assert encoded_runs._RUNS.findall(text)[0] == [hidden]
    assert [how for how, raw in encoded_runs.decoded(text) if raw is not None] == ["b64"]


def test_the_c_pass_is_built() -> None:
    assert runs._runscan is not None, "scripts/setup builds dlp_addon/extract/_runscan.c"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_the_windows_agree_on_any_bytes(data: bytes) -> None:
    if runs._runscan is not None:
        assert runs._runscan.windows(data) == runs.windows_py(data)
