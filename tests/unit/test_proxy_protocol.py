"""The PROXY header reader: every form HAProxy sends, nothing read past the header, and
malformed or truncated headers refused (see tests/e2e/test_proxy_protocol_e2e.py for the proxy)."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from dlp_addon.addon import DlpAddon
from dlp_addon.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeaderError,
    parse_networks,
    read_header,
    trusted,
)

REQUEST = b"GET http://example.com/ HTTP/1.1\r\n\r\n"


def _read(data: bytes) -> tuple[tuple[str, int] | None, bytes]:
    """The address read from ``data`` and what is left in the stream after the header."""

    async def go() -> tuple[tuple[str, int] | None, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        address = await read_header(reader)
        return address, await reader.read()

    return asyncio.run(go())


def _v2(cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def test_v1_forms() -> None:
    assert _read(b"PROXY TCP4 192.0.2.9 10.0.0.1 51000 3128\r\n" + REQUEST) == (
        ("192.0.2.9", 51000),
        REQUEST,
    )
    assert _read(b"PROXY TCP6 2001:db8::9 ::1 7 3128\r\n" + REQUEST) == (
        ("2001:db8::9", 7),
        REQUEST,
    )
    assert _read(b"PROXY UNKNOWN\r\n" + REQUEST) == (None, REQUEST)
    assert _read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n" + REQUEST) == (None, REQUEST)


def test_v2_forms_and_tlvs_are_consumed() -> None:
    v4 = socket.inet_aton("192.0.2.10") + socket.inet_aton("10.0.0.1") + struct.pack("!HH", 4, 5)
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x03\x00\x00\x00"  # ALPN and NOOP
    assert _read(_v2(1, 0x11, v4 + tlvs) + REQUEST) == (("192.0.2.10", 4), REQUEST)
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::10") + bytes(16) + struct.pack("!HH", 6, 7)
    assert _read(_v2(1, 0x21, v6) + REQUEST) == (("2001:db8::10", 6), REQUEST)
    assert _read(_v2(0, 0x00, b"") + REQUEST) == (None, REQUEST)  # LOCAL: health check
    assert _read(_v2(1, 0x00, b"") + REQUEST) == (None, REQUEST)  # UNSPEC
    assert _read(_v2(1, 0x31, bytes(216)) + REQUEST) == (None, REQUEST)  # AF_UNIX


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,  # a client that never heard of the balancer
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2",  # no CRLF before EOF
        b"PROXY TCP4 192.0.2.1 10.0.0.1 01 2\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1\r\n",  # a field missing
        b"PROXY TCP5 192.0.2.1 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2 " + b"x" * 100 + b"\r\n",  # too long
        b"PROXY TCP4 300.0.2.1 10.0.0.1 1 2\r\n",
        _v2(1, 0x11, bytes(8)),  # address block too short
        _v2(1, 0x12, bytes(12)),  # UDP over a TCP listener
        _v2(2, 0x11, bytes(12)),  # unknown command
        V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes(5),  # truncated
        b"short",
    ],
)
def test_malformed_or_missing_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        _read(data)


def test_trusted_sources() -> None:
    nets = parse_networks(" 10.20.0.0/16, ::1 ,")
    assert trusted(("10.20.3.4", 1), nets)
    assert trusted(("::ffff:10.20.3.4", 1), nets)  # dual-stack listeners map IPv4 peers
    assert trusted(("::1", 1), nets)
    assert not trusted(("10.21.0.1", 1), nets)
    assert not trusted(None, nets)
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        parse_networks("10.0.0.0/33")


def test_bad_trusted_network_is_an_option_error(tmp_path: Path) -> None:
    with taddons.context(DlpAddon()) as tctx:
        tctx.options.update(dlp_audit_log=str(tmp_path / "a.jsonl"))
        with pytest.raises(exceptions.OptionsError, match="dlp_proxy_protocol_from"):
            tctx.options.update(dlp_proxy_protocol_from="balancer.example")
