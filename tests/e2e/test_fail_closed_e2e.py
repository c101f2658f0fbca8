"""End to end: a block holds whatever goes wrong after the decision, and nothing a client
sends ends up raw in the proxy's own log.

The review found a fail-open: a request path with a byte that is not UTF-8 made the audit
write raise before the 403 was set, and mitmproxy forwarded the blocked body. The block is now
applied before anything else happens; these tests send such requests through the real proxy,
run a proxy whose audit log cannot be written, and put resident IDs where mitmproxy itself
logs them (the server name of a failed TLS handshake)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import socket
import ssl
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import StartProxy
from tests.e2e.harness import (
    Proxy,
    ProxyStartError,
    TlsFiles,
    Upstream,
    make_test_policy,
    sample_value,
    wait_for,
)
from tests.synth import customer_records, raw_values, records_chat_text, resident_id

pytestmark = pytest.mark.e2e

RECORDS = customer_records(8, seed=7071)
TEXT = records_chat_text(RECORDS)
RAW = frozenset(raw_values(RECORDS))
TIMEOUT = 10.0


def _marker() -> str:
    return "fc" + "".join(random.choices(string.ascii_lowercase, k=12))


def _host_port(upstream: Upstream, scheme: str) -> tuple[str, int]:
    parts = urlsplit(upstream.url(scheme, "/"))
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(TIMEOUT)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def test_a_non_utf8_path_inside_a_tunnel_is_still_blocked(proxy: Proxy, upstream: Upstream) -> None:
    """The reviewer's case: CONNECT, then POST /a\\xff with eight records in the body."""
    proxy.sent_values.update(RAW)
    host, port = _host_port(upstream, "http")
    marker = _marker()
    body = TEXT.encode()
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(
            b"POST /a\xff/" + marker.encode() + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
            + b"\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        response = _read_response(sock)
    assert _status(response) == 403, response[:200]
    incident = response.split(b"X-DLP-Incident: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert not upstream.recorder.requests(marker)
    assert not upstream.recorder.anything_contains(RAW), "records reached the upstream"
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert events, "the block was not audited"
    assert marker in events[0]["path"]


def _ws_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (
        bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class RawWebSocketEcho:
    """A bare WebSocket echo server on 127.0.0.1 that, unlike the recording upstream, accepts
    any bytes in the handshake path; it keeps every text message it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = re.search(rb"(?i)sec-websocket-key: *(\S+)", request)
            assert key is not None
            accept = base64.b64encode(hashlib.sha1(key.group(1) + _WS_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            try:
                while True:
                    text = _read_frame(conn, masked=True)
                    self.received.append(text)
                    reply = ("echo:" + text).encode()
                    conn.sendall(bytes([0x81, len(reply)]) + reply)  # short replies only
            except (ConnectionError, TimeoutError, OSError):
                return

    def close(self) -> None:
        self.sock.close()


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _read_frame(sock: socket.socket, *, masked: bool) -> str:
    """The next frame's text; ConnectionError for a close frame."""
    head = _recv_exact(sock, 2)
    if head[0] & 0x0F == 0x8:
        raise ConnectionError("closed by the peer")
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(_recv_exact(sock, 2), "big")
    mask = _recv_exact(sock, 4) if masked else b"\0\0\0\0"
    payload = _recv_exact(sock, n)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload)).decode()


def test_a_websocket_with_a_non_utf8_path_has_its_records_dropped(proxy: Proxy) -> None:
    """The same through a WebSocket whose handshake path holds such a byte."""
    proxy.sent_values.update(RAW)
    echo_server = RawWebSocketEcho()
    target = f"127.0.0.1:{echo_server.port}"
    key = base64.b64encode(os.urandom(16))
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            # In a tunnel: mitmproxy refuses such a byte in an absolute-form request line
            # itself (400), but takes it in the origin form a tunnelled request uses.
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.sendall(
                b"GET /ws/chat/\xff" + _marker().encode() + b" HTTP/1.1\r\nHost: "
                + target.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
            )  # fmt: skip
            handshake = b""
            while b"\r\n\r\n" not in handshake:
                handshake += sock.recv(4096)
            assert handshake.startswith(b"HTTP/1.1 101"), handshake[:200]
            sock.sendall(_ws_frame(TEXT))
            notice = json.loads(_read_frame(sock, masked=False))
            sock.sendall(_ws_frame("在吗？"))
            echo = _read_frame(sock, masked=False)
    finally:
        echo_server.close()
    assert notice["type"] == "dlp.blocked"
    assert echo == "echo:在吗？", "the chat did not go on after the block"
    assert echo_server.received == ["在吗？"], "records reached the upstream"
    assert proxy.wait_audit(lambda e: e.get("incident_id") == notice["incident_id"])


def test_an_identifier_path_with_separators_is_starred_in_the_audit(
    proxy: Proxy, upstream: Upstream
) -> None:
    phone = RECORDS[0]["mobile"]
    grouped = f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
    proxy.sent_values.update({*RAW, grouped})
    marker = _marker()
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=TIMEOUT) as client:
        r = client.post(upstream.url("http", f"/u/{grouped}/{marker}"), content=TEXT.encode())
    assert r.status_code == 403
    events = proxy.wait_audit(lambda e: e.get("incident_id") == r.headers["x-dlp-incident"])
    assert events, "the block was not audited"
    assert f"/u/***-****-****/{marker}" in events[0]["path"]


@pytest.fixture(scope="module")
def unwritable_audit(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, tls_files: TlsFiles
) -> Iterator[Proxy]:
    """A proxy whose audit log is /dev/full: every write fails (a full disk)."""
    proxy = Proxy(tmp_path_factory.mktemp("full"), make_test_policy(), tls_files.ca_cert)
    proxy.audit_path = Path("/dev/full")
    try:
        proxy.start()
    except ProxyStartError as e:
        pytest.fail(str(e), pytrace=False)
    yield proxy
    proxy.stop()
    assert not [v for v in proxy.sent_values if v in proxy.output()], "raw value in the log"


def test_blocks_hold_when_the_audit_log_cannot_be_written(
    unwritable_audit: Proxy, upstream: Upstream
) -> None:
    proxy = unwritable_audit
    proxy.sent_values.update(RAW)
    marker = _marker()
    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=TIMEOUT) as client:
        blocked = client.post(upstream.url("http", f"/chat/{marker}"), content=TEXT.encode())
        ordinary = client.post(upstream.url("http", f"/chat/{marker}ok"), content="在吗？".encode())
    assert blocked.status_code == 403
    assert ordinary.status_code == 200, "ordinary chat must keep working"
    assert not upstream.recorder.anything_contains(RAW), "records reached the upstream"
    failures = wait_for(
        lambda: (
            v
            if (v := sample_value(proxy.metrics(), "dlp_audit_write_failures_total") or 0) >= 1
            else None
        ),
        timeout=5,
    )
    assert failures, "the failed audit write is not counted"
    assert "cannot write audit" in proxy.output()


@pytest.mark.parametrize("where", ["allowed host", "off-list host"])
def test_an_identifier_as_a_server_name_stays_out_of_the_log(
    start_proxy: StartProxy, upstream: Upstream, where: str
) -> None:
    """A client that does not trust the proxy's CA fails its handshake; mitmproxy logs the
    server name it asked for. An ID there is starred, the line itself kept."""
    proxy = start_proxy()
    ident = resident_id(random.Random(4242 + len(where)))
    proxy.sent_values.add(ident)
    name = f"{ident}.shop.example"
    host, port = _host_port(upstream, "https")
    target = f"{host}:{port}" if where == "allowed host" else f"{name}:443"
    untrusting = ssl.create_default_context()  # the system's CAs, not the proxy's
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        with pytest.raises(ssl.SSLError):
            untrusting.wrap_socket(sock, server_hostname=name)
    logged = wait_for(
        lambda: True if "does not trust the proxy's certificate" in proxy.output() else None,
        timeout=5,
    )
    assert logged, "mitmproxy did not log the failed handshake: this test would prove nothing"
    assert ident not in proxy.output()
    assert "******************.shop.example" in proxy.output()


@pytest.mark.parametrize("where", ["query", "host header"])
def test_a_non_utf8_byte_in_the_query_or_host_never_lets_records_through(
    proxy: Proxy, upstream: Upstream, where: str
) -> None:
    """The same byte in the query string or the Host header: blocked (or refused as a
    malformed request by mitmproxy itself), never forwarded."""
    proxy.sent_values.update(RAW)
    host, port = _host_port(upstream, "http")
    marker = _marker()
    body = TEXT.encode()
    target = (
        f"/q/{marker}?a=\xff".encode("latin-1") if where == "query" else f"/h/{marker}".encode()
    )
    host_header = f"{host}:{port}".encode() + (b"\xff" if where == "host header" else b"")
    with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(
            b"POST " + target + b" HTTP/1.1\r\nHost: " + host_header
            + b"\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        response = _read_response(sock)
    assert _status(response) in (400, 403), response[:200]
    assert not upstream.recorder.requests(marker)
    assert not upstream.recorder.anything_contains(RAW), "records reached the upstream"


def test_malformed_requests_carrying_ids_leave_no_raw_id_in_the_log(proxy: Proxy) -> None:
    """mitmproxy answers malformed requests itself and logs why, quoting what it got; an ID
    in such a request is starred in that line."""
    ident = resident_id(random.Random(5150))
    proxy.sent_values.add(ident)
    malformed = [
        f"GET http://127.0.0.1/{ident} HTTP/1.1 extra\r\n\r\n".encode(),
        f"GET /{ident} HTTP/1.1\r\nHost: 127.0.0.1\r\nBad header {ident}\r\n\r\n".encode(),
        f"{ident} / HTTP/1.1\r\n\r\n".encode(),
    ]
    for request in malformed:
        with socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT) as sock:
            sock.sendall(request)
            assert _status(_read_response(sock)) == 400
    logged = wait_for(
        lambda: True if "Invalid header line: b'Bad header *****" in proxy.output() else None, 5
    )
    assert logged, "mitmproxy did not log the bad header: this test would prove nothing"
    assert "Bad HTTP request line" in proxy.output()
    assert ident not in proxy.output()
