"""Behind a TCP load balancer, the audit names the desktop, not the balancer.

A real ``dlp-proxy`` with ``dlp_proxy_protocol`` on; raw clients that write a PROXY v1 or v2
header and then an ordinary proxy request; and a real HAProxy with ``send-proxy-v2`` in front
of the worker, reached by an httpx client bound to its own loopback address. The addresses in
the headers (TEST-NET 192.0.2.0/24, 2001:db8::/32) are only written into headers, never dialled.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.harness import (
    OFFLIST_HOST,
    ConnectionCounter,
    Proxy,
    Upstream,
    free_port,
    make_test_policy,
    wait_for,
)
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
SIX = customer_records(6, seed=91)


class BalancedProxy(Proxy):
    """The harness's proxy with extra ``--set`` options."""

    def __init__(self, workdir: Path, upstream: Upstream, options: Sequence[str]) -> None:
        super().__init__(workdir, make_test_policy(), upstream.tls.ca_cert)
        self.extra = [arg for opt in options for arg in ("--set", opt)]

    @property
    def command(self) -> list[str]:
        return [*super().command, *self.extra]


@pytest.fixture(scope="module")
def balanced(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[BalancedProxy]:
    proxy = BalancedProxy(tmp_path_factory.mktemp("pp"), upstream, ["dlp_proxy_protocol=true"])
    proxy.start()
    yield proxy
    proxy.stop()
    assert not proxy.leaks(raw_values(SIX), metrics=False)


def v1(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    dest = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {source} {dest} {port} 8080\r\n".encode()


def v2(source: str, port: int, *, local: bool = False) -> bytes:
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in source:
        body = (
            socket.inet_pton(socket.AF_INET6, source) + bytes(16) + struct.pack("!HH", port, 8080)
        )
        fam = 0x21
    else:
        body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
        body += struct.pack("!HH", port, 8080)
        fam = 0x11
    tlv = b"\x04\x00\x01\x00"  # a NOOP TLV, as balancers may append: skipped
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body) + 4) + body + tlv


def exchange(proxy: Proxy, header: bytes, request: bytes, timeout: float = 10) -> bytes:
    """Send ``header`` then ``request`` on one connection; everything the proxy answers."""
    with socket.create_connection((proxy.host, proxy.port), timeout=timeout) as sock:
        sock.sendall(header + request)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def bulk_post(upstream: Upstream, marker: str) -> bytes:
    body = json.dumps({"m": records_chat_text(SIX)}, ensure_ascii=False).encode()
    url = upstream.url("http", f"/pp/{marker}")
    return (
        f"POST {url} HTTP/1.1\r\nHost: {upstream.host}:{upstream.http_port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def incident_id(head: str) -> str:
    """The ``X-DLP-Incident`` value of a response head."""
    return next(
        line.split(":", 1)[1].strip()
        for line in head.splitlines()
        if line.lower().startswith("x-dlp-incident:")
    )


def incident_client(proxy: Proxy, response: bytes) -> str:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 403"), head.split("\r\n", 1)[0]
    incident = incident_id(head)
    events = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
    assert events, f"no audit event for incident {incident}"
    client: str = events[0]["client"]
    return client


def test_v1_header_gives_the_desktop_address_to_the_audit(
    balanced: BalancedProxy, upstream: Upstream
) -> None:
    response = exchange(balanced, v1("192.0.2.41", 50123), bulk_post(upstream, "v1"))
    assert incident_client(balanced, response) == "192.0.2.41"
    assert not upstream.recorder.requests("/pp/v1"), "the bulk records reached the upstream"


def test_v2_header_ipv6_and_ipv4(
    balanced: BalancedProxy, upstream: Upstream, offlist_host: ConnectionCounter
) -> None:
    response = exchange(balanced, v2("2001:db8::7", 40000), bulk_post(upstream, "v2-6"))
    assert incident_client(balanced, response) == "2001:db8::7"

    # A CONNECT to a host off the allow-list: the proxy answers it itself (to show its refusal
    # page inside the tunnel), never contacts the host, and the refusal names the desktop.
    connect = f"CONNECT {OFFLIST_HOST}:{offlist_host.port} HTTP/1.1\r\n\r\n".encode()
    response = exchange(balanced, v2("192.0.2.42", 40001), connect)
    assert response.startswith(b"HTTP/1.1 200"), response[:40]
    events = balanced.wait_audit(
        lambda e: e.get("method") == "CONNECT" and str(e.get("host", "")).startswith(OFFLIST_HOST)
    )
    assert events, "no audit event for the refused CONNECT"
    assert (events[-1]["action"], events[-1]["client"]) == ("refuse", "192.0.2.42")
    assert offlist_host.accepted == 0


def test_allowed_traffic_flows_after_the_header(
    balanced: BalancedProxy, upstream: Upstream
) -> None:
    request = (
        f"GET {upstream.url('http', '/pp/plain')} HTTP/1.1\r\n"
        f"Host: {upstream.host}:{upstream.http_port}\r\nConnection: close\r\n\r\n"
    ).encode()
    response = exchange(balanced, v2("192.0.2.43", 40002), request)
    assert response.startswith(b"HTTP/1.1 200"), response[:40]
    assert upstream.recorder.requests("/pp/plain")


def test_balancer_health_check_keeps_the_socket_address(
    balanced: BalancedProxy, upstream: Upstream
) -> None:
    response = exchange(balanced, v2("", 0, local=True), bulk_post(upstream, "local"))
    assert incident_client(balanced, response) == "127.0.0.1"


@pytest.mark.parametrize(
    "header",
    [
        b"",  # no header at all: an ordinary client that reached the worker directly
        b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 8080\r\n",  # port out of range
        b"PROXY TCP4 2001:db8::1 127.0.0.1 1 8080\r\n",  # family mismatch
        V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + bytes(12),  # version 3
    ],
    ids=["none", "bad-port", "bad-family", "bad-version"],
)
def test_connection_without_a_valid_header_is_closed(
    balanced: BalancedProxy, upstream: Upstream, header: bytes
) -> None:
    marker = f"bad-{len(header)}-{header[:14].hex()}"
    response = exchange(balanced, header, bulk_post(upstream, marker))
    assert response == b"", response[:60]
    assert not upstream.recorder.requests(marker)


def test_header_from_an_untrusted_peer_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    proxy = BalancedProxy(
        tmp_path,
        upstream,
        ["dlp_proxy_protocol=true", "dlp_proxy_protocol_from=10.20.0.0/16"],
    )
    proxy.start()
    try:
        request = (
            f"GET {upstream.url('http', '/pp/untrusted')} HTTP/1.1\r\n"
            f"Host: {upstream.host}\r\nConnection: close\r\n\r\n"
        ).encode()
        assert exchange(proxy, v1("192.0.2.44", 1), request) == b""
        assert not upstream.recorder.requests("/pp/untrusted")
        assert "untrusted source" in proxy.output()
    finally:
        proxy.stop()


# --- a real HAProxy in front ----------------------------------------------------------------


def _haproxy_config(listen: int, worker: Proxy, send: str) -> str:
    return f"""\
global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend desktops
    bind 127.0.0.1:{listen}
    default_backend workers
backend workers
    server w1 {worker.host}:{worker.port} {send}
"""


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_through_haproxy_the_audit_shows_the_desktop(
    balanced: BalancedProxy, upstream: Upstream, tmp_path: Path, send: str
) -> None:
    listen = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(_haproxy_config(listen, balanced, send))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def listening() -> bool | None:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=0.5).close()
                return True
            except OSError:
                return None

        assert wait_for(listening, timeout=10), "haproxy did not start"
        desktop = "127.0.0.3"  # the desktop's own address; HAProxy dials the worker from .1
        body = tmp_path / "body.json"
        body.write_text(json.dumps({"m": records_chat_text(SIX)}, ensure_ascii=False), "utf-8")
        curl = [
            "curl", "-sS", "--max-time", "15", "-x", f"http://127.0.0.1:{listen}",
            "--interface", desktop, "--cacert", str(balanced.ca_path),
            "-o", "/dev/null", "-D", "-", "-w", "%{http_code}",
        ]  # fmt: skip
        ok = subprocess.run(
            [*curl, upstream.url("https", f"/pp/ha-{send}-ok")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        blocked = subprocess.run(
            [*curl, "-H", "Content-Type: application/json", "-H", "Accept: application/json",
             "--data-binary", f"@{body}", upstream.url("https", f"/pp/ha-{send}-bulk")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ok.stdout.endswith("200"), ok.stderr
        assert blocked.stdout.endswith("403"), blocked.stderr
        incident = incident_id(blocked.stdout)
        events = balanced.wait_audit(lambda e: e.get("incident_id") == incident)
        assert events and events[0]["client"] == desktop
        assert not upstream.recorder.requests(f"/pp/ha-{send}-bulk")
    finally:
        haproxy.terminate()
        try:
            haproxy.wait(10)
        except subprocess.TimeoutExpired:
            haproxy.kill()
            haproxy.wait()
