"""Inspects what is sent to allowed destinations: HTTP requests and client WebSocket messages.

Both hooks take one path (:meth:`Inspector._inspect`): the flow is turned into the core's input,
the :class:`~dlp_addon.decision.Decider` gives the verdict, it is counted, enforced and
audited. Only the enforcing differs: a request is answered with the block page, a WebSocket
message is dropped and a notice sent in its place. Any error here fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, http

from dlp_addon.act.audit import new_incident_id
from dlp_addon.act.pages import block_body, detector_names, wants_json, ws_notice
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import ALLOW, Verdict, error_verdict
from dlp_addon.decision import Decider, Routing
from dlp_addon.edge.egress import Egress
from dlp_addon.edge.flow_input import DEST_KEY, headers, http_input, requester, ws_input
from dlp_addon.edge.policy_holder import PolicyHolder
from dlp_addon.edge.reporting import Reporting
from dlp_addon.pipeline import Inspection, Message, WsInput

logger = logging.getLogger(__name__)

Enforce = Callable[[Policy, Verdict, str], None]  # (policy, blocking verdict, incident id)


def block_response(
    flow: http.HTTPFlow, verdict: Verdict, incident: str, policy: Policy
) -> http.Response:
    """The 403 a blocked request gets: the block page, or a plain one if rendering fails."""
    extra = {"X-DLP-Incident": incident, "Cache-Control": "no-store"}
    try:
        body, ctype = block_body(
            verdict,
            incident,
            policy.contact,
            as_json=wants_json(headers(flow.request.headers)),
            names=detector_names(policy),
        )
    except Exception as e:
        logger.error("block page failed, plain block sent: %s", type(e).__name__)
        body = f"Blocked by data-loss prevention. Incident {incident}\n".encode()
        ctype = "text/plain; charset=utf-8"
    return http.Response.make(403, body, {"Content-Type": ctype, **extra})


class Inspector:
    """``request`` and ``websocket_message``: inspect, then block or log by policy."""

    def __init__(
        self, holder: PolicyHolder, reporting: Reporting, egress: Egress, decider: Decider
    ) -> None:
        self._holder = holder
        self._reporting = reporting
        self._egress = egress
        self._decider = decider

    def load(self, loader: Any) -> None:
        loader.add_option(
            "dlp_inline_max_bytes",
            int,
            Routing.inline_max_bytes,
            "Bodies and WebSocket messages up to this size are inspected on the event loop; "
            "larger ones in the inspection worker processes under the policy's timeout.",
        )
        loader.add_option(
            "dlp_ws_max_message_bytes",
            int,
            Routing.ws_max_message_bytes,
            "Largest WebSocket message inspected; a larger one is unscannable (too_large) and "
            "handled by the policy's on_unscannable (dropped, with a notice, by default).",
        )

    def configure(self, updated: set[str]) -> None:
        if {"dlp_inline_max_bytes", "dlp_ws_max_message_bytes"} & updated:
            self._decider.routing = Routing(
                inline_max_bytes=ctx.options.dlp_inline_max_bytes,
                ws_max_message_bytes=ctx.options.dlp_ws_max_message_bytes,
            )

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return

        def block(policy: Policy, verdict: Verdict, incident: str) -> None:
            flow.response = block_response(flow, verdict, incident, policy)

        size = len(flow.request.raw_content or b"")
        await self._inspect(flow, http_input(flow), size, block, self._egress.refuse)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        if not flow.live or flow.websocket is None:
            return
        messages = flow.websocket.messages
        message = messages[-1]
        # mitmproxy keeps every message for the life of the connection; keep only this one.
        del messages[:-1]
        if not message.from_client or message.injected:
            return

        def block(policy: Policy, verdict: Verdict, incident: str) -> None:
            message.drop()  # dropped first: nothing that follows can let it through
            try:
                notice = ws_notice(verdict, incident, policy.contact, detector_names(policy))
                ctx.master.commands.call("inject.websocket", flow, True, notice.encode(), True)
            except Exception as e:  # the user misses the notice; the message stays dropped
                logger.error("cannot send the block notice: %s", type(e).__name__)

        await self._inspect(
            flow, ws_input(message), len(message.content), block, lambda *_: message.drop()
        )

    async def _inspect(
        self,
        flow: http.HTTPFlow,
        message: Message | None,
        size: int,
        block: Enforce,
        refuse: Callable[[http.HTTPFlow, Policy | None], None],
    ) -> None:
        """The one path: decide, count, enforce a block, audit. Without a policy or a
        destination nothing is inspected, and nothing passes: ``refuse``."""
        policy = self._holder.policy
        destination = flow.metadata.get(DEST_KEY)
        if policy is None or destination is None:
            refuse(flow, policy)
            return
        ws = isinstance(message, WsInput)
        who = Requester()
        try:
            who = requester(policy, flow)
            with self._reporting.metrics.in_flight.track_inprogress():
                inspection = await self._decider.decide(policy, message, destination, who)
        except Exception as e:  # last resort: fail closed, never let mitmproxy pass it on
            logger.error(
                "%s inspection crashed: %s", "websocket" if ws else "request", type(e).__name__
            )
            channel = "websocket" if ws else "http"
            inspection = Inspection(error_verdict(policy, "addon"), channel, 0, "addon", 0.0)
        self._reporting.record(inspection, destination, size)
        verdict = inspection.verdict
        if verdict.action == ALLOW:
            return
        incident = new_incident_id()
        # The block first: nothing that follows (the audit, its log line) can undo it.
        if verdict.blocks:
            block(policy, verdict, incident)
        self._reporting.decision(
            flow, verdict, incident, destination, inspection.channel, policy, who
        )
