"""Numbers that may be identifiers are starred wherever the proxy writes a path, host or
mitmproxy's own log line, however they are written; IPs, ports and short numbers stay."""

from __future__ import annotations

import pytest

from dlp_addon.act.audit import redact_path, star_numbers
from dlp_addon.act.logfilter import clean


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("/u/13800138000", "/u/***********"),
        ("/u/138-0013-8000", "/u/***-****-****"),
        ("/u/138 0013 8000", "/u/*** **** ****"),
        ("/u/138.0013.8000", "/u/***.****.****"),
        ("/u/1380013８000", "/u/***********"),  # a full-width digit
        ("/u/1101\u200b05194912310020", "/u/******************"),  # a zero-width space
        ("/id/11010519491231002X", "/id/******************"),
        ("110105194912310020.shop.example", "******************.shop.example"),
        ("/orders/2026-11-28/", "/orders/****-**-**/"),  # eight digits: could be part of an ID
        ("127.0.0.1", "127.0.0.1"),
        ("192.168.100.200:8080", "192.168.100.200:8080"),
        ("/v2/items/12345?page=3", "/v2/items/12345?page=3"),
        ("/a/1-2-3", "/a/1-2-3"),
    ],
)
def test_star_numbers(written: str, shown: str) -> None:
    assert star_numbers(written) == shown


def test_redact_path_decodes_then_stars_and_drops_query_values() -> None:
    assert redact_path("/u/138%200013%208000/x?phone=13800138000&q=1") == (
        "/u/*** **** ****/x?phone=*&q=*"
    )


def test_log_lines_lose_payloads_and_identifiers_but_keep_their_sense() -> None:
    line = (
        "Client TLS handshake failed. The client does not trust the proxy's certificate for "
        "110105194912310020.shop.example (sslv3 alert bad certificate)"
    )
    assert clean(line) == line.replace("110105194912310020", "*" * 18)
    ping = "Received WebSocket ping from 127.0.0.1:51234 (payload: b'13800138000')"
    assert clean(ping) == "Received WebSocket ping from 127.0.0.1:51234 (payload not shown)"
    assert clean("client connect 127.0.0.1:51234") == "client connect 127.0.0.1:51234"
