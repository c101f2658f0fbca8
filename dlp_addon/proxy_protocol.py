"""PROXY protocol (v1 text, v2 binary) on the proxy's listening port.

Behind a TCP load balancer (HAProxy ``send-proxy-v2``, an AWS NLB, nginx stream) every
connection comes from the balancer; the desktop's address arrives in a short header before the
first byte of the client's own traffic. mitmproxy 12 does not read that header (mitmproxy issue
4776), so this addon does, in the ``client_connected`` hook: mitmproxy has registered the
connection's reader by then but not read from it yet. The header is consumed, and the client's
``peername`` becomes the address it names, so the audit log, identity by address and every other
addon see the desktop, not the balancer.

With ``dlp_proxy_protocol`` on, a connection without a valid header, from a peer outside
``dlp_proxy_protocol_from``, or whose header does not arrive within 5 s is closed before
anything is read: a desktop that reaches a worker directly cannot claim another's address.
A v2 ``LOCAL`` header or a v1 ``UNKNOWN`` one (the balancer's own health checks) keeps the
socket's address, as the specification says.

Specification: https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from typing import Any, Protocol

from mitmproxy import connection, ctx, exceptions

from dlp_addon.errors import DlpError

logger = logging.getLogger(__name__)

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
HEADER_TIMEOUT = 5.0
DEFAULT_FROM = "127.0.0.0/8,::1/128"

_V2_INET = 0x1
_V2_INET6 = 0x2
_V2_STREAM = 0x1


class ProxyHeaderError(DlpError):
    """A connection did not start with a valid PROXY header; ``reason`` is a bounded label."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Reader(Protocol):
    """What is needed of an ``asyncio.StreamReader``: reads that never take too much."""

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = ...) -> bytes: ...


def _port(raw: bytes) -> int:
    if not raw.isdigit() or (len(raw) > 1 and raw.startswith(b"0")):
        raise ProxyHeaderError("malformed")
    port = int(raw)
    if port > 65535:
        raise ProxyHeaderError("malformed")
    return port


def parse_v1(line: bytes) -> Address | None:
    """The source address of a v1 line (``PROXY TCP4 src dst sport dport\\r\\n``); ``None`` for
    ``PROXY UNKNOWN``."""
    if len(line) > V1_MAX or not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise ProxyHeaderError("malformed")
    fields = line[len(V1_PREFIX) : -2].split(b" ")
    if fields[0] == b"UNKNOWN":
        return None
    if len(fields) != 5 or fields[0] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed")
    family = ipaddress.IPv4Address if fields[0] == b"TCP4" else ipaddress.IPv6Address
    try:
        source = family(fields[1].decode("ascii"))
        family(fields[2].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ProxyHeaderError("malformed") from e
    _port(fields[4])
    return str(source), _port(fields[3])


def parse_v2_addresses(ver_cmd: int, fam: int, body: bytes) -> Address | None:
    """The source address of a v2 header, given its 13th and 14th bytes and what follows the
    length; ``None`` when the socket's own address stands (LOCAL, or a family without one)."""
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError("malformed")
    command = ver_cmd & 0xF
    if command == 0x0:  # LOCAL: the balancer speaking for itself
        return None
    if command != 0x1:
        raise ProxyHeaderError("malformed")
    family, transport = fam >> 4, fam & 0xF
    if family == _V2_INET and transport == _V2_STREAM:
        if len(body) < 12:
            raise ProxyHeaderError("malformed")
        src, _dst, sport, _dport = struct.unpack("!4s4sHH", body[:12])
        return str(ipaddress.IPv4Address(src)), sport
    if family == _V2_INET6 and transport == _V2_STREAM:
        if len(body) < 36:
            raise ProxyHeaderError("malformed")
        src6, _dst6, sport, _dport = struct.unpack("!16s16sHH", body[:36])
        return str(ipaddress.IPv6Address(src6)), sport
    if family in (_V2_INET, _V2_INET6):  # a datagram header on a TCP listener
        raise ProxyHeaderError("malformed")
    return None  # UNSPEC or UNIX: keep the socket's address, as the specification asks


async def read_header(reader: Reader) -> Address | None:
    """Consume one PROXY header (v1 or v2) from ``reader`` and nothing after it."""
    try:
        start = await reader.readexactly(12)  # no valid header is shorter
        if start == V2_SIGNATURE:
            ver_cmd, fam, length = struct.unpack("!BBH", await reader.readexactly(4))
            body = await reader.readexactly(length) if length else b""
            return parse_v2_addresses(ver_cmd, fam, body)
        if start.startswith(V1_PREFIX):
            rest = b"" if start.endswith(b"\r\n") else await reader.readuntil(b"\r\n")
            return parse_v1(start + rest)
    except asyncio.IncompleteReadError as e:
        raise ProxyHeaderError("missing") from e
    except asyncio.LimitOverrunError as e:
        raise ProxyHeaderError("malformed") from e
    raise ProxyHeaderError("missing")


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1"`` as networks; ``ValueError`` names the bad entry."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as e:
            raise ValueError(f"'{item}' is not an address or network") from e
    return tuple(out)


def trusted(peer: Address | None, networks: tuple[Network, ...]) -> bool:
    """Whether ``peer`` (the balancer's side of the socket) is in one of ``networks``."""
    if peer is None:
        return False
    try:
        ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class ProxyProtocol:
    """Take each client's address from the PROXY header its load balancer sends first."""

    def __init__(self) -> None:
        self._from: tuple[Network, ...] = parse_networks(DEFAULT_FROM)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "dlp_proxy_protocol",
            bool,
            False,
            "Expect a PROXY protocol header (v1 or v2, as HAProxy's send-proxy-v2 sends) at the "
            "start of every client connection and take the client's address from it; "
            "connections without one are closed.",
        )
        loader.add_option(
            "dlp_proxy_protocol_from",
            str,
            DEFAULT_FROM,
            "Comma-separated addresses or networks of the load balancers allowed to send "
            "PROXY headers; connections from anywhere else are closed.",
        )

    def configure(self, updated: set[str]) -> None:
        if "dlp_proxy_protocol_from" in updated:
            try:
                self._from = parse_networks(ctx.options.dlp_proxy_protocol_from)
            except ValueError as e:
                raise exceptions.OptionsError(f"dlp_proxy_protocol_from: {e}") from e

    async def client_connected(self, client: connection.Client) -> None:
        if not ctx.options.dlp_proxy_protocol:
            return
        balancer = client.peername
        try:
            if not trusted(balancer, self._from):
                raise ProxyHeaderError("untrusted source")
            reader = self._reader(client)
            source = await asyncio.wait_for(read_header(reader), HEADER_TIMEOUT)
        except TimeoutError:
            self._refuse(client, "timeout")
            return
        except ProxyHeaderError as e:
            self._refuse(client, e.reason)
            return
        if source is not None:
            client.peername = source

    @staticmethod
    def _reader(client: connection.Client) -> Reader:
        """The connection's stream, before mitmproxy reads from it."""
        handler = ctx.master.addons.get("proxyserver").connections.get(client.id)
        io = handler.transports.get(client) if handler is not None else None
        reader = getattr(io, "reader", None)
        if client.transport_protocol != "tcp" or not isinstance(reader, asyncio.StreamReader):
            raise ProxyHeaderError("not a TCP stream")
        return reader

    @staticmethod
    def _refuse(client: connection.Client, reason: str) -> None:
        host = client.peername[0] if client.peername else "?"
        logger.warning("connection from %s closed: PROXY protocol header %s", host, reason)
        client.error = f"PROXY protocol header {reason}"
