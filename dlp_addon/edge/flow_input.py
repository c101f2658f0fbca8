"""A mitmproxy flow turned into what the core needs: plain inputs and who sent them.

The only place that reads a request's or a WebSocket message's fields for inspection; the core
(``pipeline.py`` and below) never sees a flow.
"""

from __future__ import annotations

from mitmproxy import http, websocket

from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.extract.message import HttpInput
from dlp_addon.pipeline import WsInput

DEST_KEY = "dlp_destination"  # flow.metadata: the destination the allow-list named


def headers(h: http.Headers) -> dict[str, str]:
    """Every header, repeated ones joined; HTTP/2 sends each cookie as a field of its own,
    joined with ``; `` as in HTTP/1 so each stays one cookie for the extractor."""
    out: dict[str, str] = {}
    for name, value in h.fields:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        sep = "; " if key == "cookie" else ", "
        out[key] = f"{out[key]}{sep}{val}" if key in out else val
    return out


def host_only(authority: str) -> str:
    """The host of a ``Host`` header: without its port, IPv6 brackets taken off."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def client(flow: http.HTTPFlow) -> str | None:
    """The client's address (the load balancer's client's, with the PROXY protocol)."""
    return str(flow.client_conn.peername[0]) if flow.client_conn.peername else None


def requester(policy: Policy, flow: http.HTTPFlow) -> Requester:
    """Who sent ``flow``: the proxy login, else the policy's address map, else the address."""
    auth = flow.metadata.get("proxyauth")  # set by mitmproxy's proxy authentication
    user = str(auth[0]) if isinstance(auth, tuple | list) and auth else None
    return policy.requester(user, flow.request.path, client(flow))


def http_input(flow: http.HTTPFlow) -> HttpInput | None:
    """The request as the core reads it; ``None`` when its body was streamed (already gone)."""
    raw = flow.request.raw_content
    if raw is None:
        return None
    return HttpInput(
        method=flow.request.method,
        path=flow.request.path,
        headers=headers(flow.request.headers),
        body=raw,
    )


def ws_input(message: websocket.WebSocketMessage) -> WsInput:
    return WsInput(message.content, message.is_text)
