"""The egress allow-list at the connection level: hosts off the list are never contacted.

Checked at every step a host is named: the CONNECT, the TLS handshake, the server connection,
each request's host and ``Host`` header. Raw TCP and UDP cannot be inspected and are killed.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import connection, ctx, http, tcp, tls, udp
from mitmproxy.proxy import server_hooks

from dlp_addon.act.pages import block_body, wants_json
from dlp_addon.decide.policy import Policy
from dlp_addon.decide.verdict import unlisted_verdict
from dlp_addon.edge.flow_input import DEST_KEY, headers, host_only
from dlp_addon.edge.policy_holder import PolicyHolder
from dlp_addon.edge.reporting import OTHER, Reporting

logger = logging.getLogger(__name__)

_PLAIN_REFUSAL = b"Blocked: this site is not on the allow-list (data-loss prevention).\n"


class Egress:
    """Refuse hosts off the allow-list; name the destination of the others for the inspector."""

    def __init__(self, holder: PolicyHolder, reporting: Reporting) -> None:
        self._holder = holder
        self._reporting = reporting
        # Client connections whose CONNECT named a host off the allow-list -> incident id.
        self._refused_tunnels: dict[str, str] = {}

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        policy = self._holder.policy
        if (
            policy is not None
            and policy.refuse_unlisted
            and policy.destination_for(flow.request.host) is None
        ):
            self._accept_refused_tunnel(flow, policy)
            return
        self._check_destination(flow, [flow.request.host])

    def _accept_refused_tunnel(self, flow: http.HTTPFlow, policy: Policy) -> None:
        """Answer a CONNECT to a host off the allow-list with 200 without contacting the host.

        A browser cannot show a 403 to a CONNECT (it shows its own connection error), so the
        tunnel is opened to the proxy alone: TLS is completed with the proxy's CA, and every
        request in it is answered with the refusal page under this one incident id.
        ``tls_clienthello`` and ``server_connect`` make sure the host is never contacted;
        non-HTTP traffic in the tunnel is still killed by ``tcp_start``.
        """
        incident = self._reporting.count_refusal(flow, policy)
        self._refused_tunnels[flow.client_conn.id] = incident
        now = time.time()
        flow.response = http.Response(
            flow.request.data.http_version,
            200,
            b"Connection established",
            http.Headers(),
            b"",
            None,
            now,
            now,
        )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if data.context.client.id in self._refused_tunnels:
            data.establish_server_tls_first = False  # there is no server to ask

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client that rejects the proxy's certificate: an app pinning its own, or a desktop
        without the CA. Counted by allowed destination, so the admin sees which platform's app
        fails closed (the host itself stays out of the label: it is the client's to choose)."""
        policy = self._holder.policy
        server = data.context.server.address
        host = data.conn.sni or (server[0] if server else None)  # no SNI for an IP address
        dest = policy.destination_for(host) if policy is not None and host else None
        self._reporting.metrics.tls_client_failures.labels(dest or OTHER).inc()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Never open a connection to a host off the allow-list, whatever asked for it.

        Regular proxy mode only: there the server address is the host the client named, which
        the hooks above already checked. Through an upstream proxy, or in transparent mode
        (addresses, not names), the address is not one the allow-list speaks of."""
        server = data.server
        if server.error or server.via is not None or server.address is None:
            return
        if data.client.proxy_mode.type_name != "regular":
            return
        policy = self._holder.policy
        host = str(server.address[0])
        if policy is None or (policy.refuse_unlisted and policy.destination_for(host) is None):
            server.error = "not on the DLP allow-list"

    def client_disconnected(self, client: connection.Client) -> None:
        self._refused_tunnels.pop(client.id, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if (
            "onboarding" in ctx.options
            and ctx.options.onboarding
            and flow.request.scheme == "http"
            and flow.request.pretty_host == ctx.options.onboarding_host
        ):
            return  # http://mitm.it, served by mitmproxy itself: the CA for employees
        hosts = [flow.request.host]
        if flow.request.host_header:
            hosts.append(host_only(flow.request.host_header))
        self._check_destination(flow, hosts)

    def _check_destination(self, flow: http.HTTPFlow, hosts: list[str]) -> None:
        """Record the destination; refuse the flow when any host it names is not allowed."""
        policy = self._holder.policy
        if policy is None:
            self.refuse(flow, None)
            return
        names = [policy.destination_for(h) for h in hosts]
        if all(names):
            flow.metadata[DEST_KEY] = names[0]
        elif policy.refuse_unlisted:
            self.refuse(flow, policy)
        else:
            flow.metadata[DEST_KEY] = OTHER

    def refuse(self, flow: http.HTTPFlow, policy: Policy | None) -> None:
        """Answer ``flow`` with the refusal: the page, or a plain one if rendering fails; a 503
        while no policy is loaded (nothing is allowed then)."""
        if policy is None:
            flow.response = http.Response.make(503, b"DLP policy not loaded\n")
            return
        # Refused before anything else, so no error below can leave the request unanswered
        # (mitmproxy would then forward it to the host the policy does not allow).
        flow.response = http.Response.make(403, _PLAIN_REFUSAL, {"Content-Type": "text/plain"})
        try:
            self._refusal_page(flow, policy)
        except Exception as e:
            logger.error("refusal page failed, plain refusal sent: %s", type(e).__name__)

    def _refusal_page(self, flow: http.HTTPFlow, policy: Policy) -> None:
        incident = self._refused_tunnels.get(flow.client_conn.id) or self._reporting.count_refusal(
            flow, policy
        )
        body, ctype = block_body(
            unlisted_verdict(),
            incident,
            policy.contact,
            as_json=wants_json(headers(flow.request.headers)),
            refused=True,
        )
        flow.response = http.Response.make(
            403,
            body,
            {
                "Content-Type": ctype,
                "X-DLP-Incident": incident,
                "X-DLP-Refused": "not-allowed",
                "Cache-Control": "no-store",
            },
        )

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Raw TCP through the proxy cannot be inspected: it never reaches a platform."""
        self._reporting.metrics.unscannable.labels("raw_tcp").inc()
        flow.kill()

    def udp_start(self, flow: udp.UDPFlow) -> None:
        self._reporting.metrics.unscannable.labels("raw_udp").inc()
        flow.kill()
