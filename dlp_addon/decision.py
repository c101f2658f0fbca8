"""One message in, its final verdict out: the proxy's one decision path.

An HTTP request and a WebSocket message take the same road. Where it is inspected is chosen
here, once: small messages on the event loop (inline), larger ones in the inspection processes
(``inspect_pool.py``), or, when the proxy runs without them, in a thread under the policy's
timeout. Then cumulative budgets fold into the verdict (``budget_keeper.py``). Every way out
fails closed: a timeout, a lost process or a store that cannot answer is the policy's error
action, never a silent pass. No mitmproxy here: the edge hands in plain inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from dlp_addon.budget_keeper import BudgetKeeper
from dlp_addon.decide.policy import Policy, Requester
from dlp_addon.decide.verdict import decide
from dlp_addon.errors import OcrDeferred
from dlp_addon.extract import ocr
from dlp_addon.inspect_pool import InspectionPool
from dlp_addon.pipeline import (
    Inspection,
    Message,
    WsInput,
    channel_of,
    failed,
    inspect_message,
    size_of,
)


@dataclass(frozen=True)
class Routing:
    """Where messages are inspected (``dlp_inline_max_bytes``, ``dlp_ws_max_message_bytes``)."""

    inline_max_bytes: int = 65536
    ws_max_message_bytes: int = 4 * 1024 * 1024


class Decider:
    """Inspect a message where it belongs, then apply the budgets. ``pool`` is set while the
    proxy runs its inspection processes; ``budgets`` gives the process's budget keeper."""

    def __init__(self, budgets: Callable[[], BudgetKeeper]) -> None:
        self.routing = Routing()
        self.pool: InspectionPool | None = None
        self._budgets = budgets

    async def decide(
        self, policy: Policy, message: Message | None, destination: str, who: Requester
    ) -> Inspection:
        """The verdict for ``message`` (``None``: a streamed body that already left)."""
        inspection = await self._inspect(policy, message, destination, who)
        return await self._budgets().apply(policy, inspection, who, destination)

    async def _inspect(
        self, policy: Policy, message: Message | None, destination: str, who: Requester
    ) -> Inspection:
        if message is None:
            return failed(policy, "streamed", "http")
        size = size_of(message)
        if isinstance(message, WsInput) and size > self.routing.ws_max_message_bytes:
            verdict = decide(
                policy,
                (),
                destination=destination,
                channel="websocket",
                unscannable=["too_large"],
                requester=who,
            )
            return Inspection(verdict, "websocket", 0, None, 0.0)
        deadline = time.monotonic() + policy.timeout_seconds
        if size <= self.routing.inline_max_bytes:
            with contextlib.suppress(OcrDeferred):  # a picture to read: in an inspection process
                return inspect_message(policy, message, destination, deadline, who)
        if self.pool is not None:
            return await self.pool.inspect(policy, message, destination, deadline, who)
        # No inspection processes (dlp_inspect_workers=-1, or the hooks run outside a proxy):
        # a thread, and the answer is taken at the deadline whatever the thread is doing.
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(inspect_message, policy, message, destination, deadline, who),
                timeout=policy.timeout_seconds + ocr.allowance(policy.limits),
            )
        except TimeoutError:
            return failed(policy, "timeout", channel_of(message), policy.timeout_seconds)
