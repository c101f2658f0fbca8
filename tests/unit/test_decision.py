"""The one decision path (``decision.py``) as the proxy's hooks use it: where a message is
inspected, and that every way out of it fails closed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import tflow

from dlp_addon import decision
from dlp_addon.pipeline import Inspection
from tests.unit.test_addon import POLICY, addon_in

SLOW_POLICY = POLICY + "inspection: {timeout_seconds: 0.2}\n"


@pytest.fixture
def slow_policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(SLOW_POLICY, encoding="utf-8")
    return p


def _stalled(seconds: float) -> Any:
    """An inspection that overruns its deadline and then says "allow"."""
    real = decision.inspect_message

    def stall(*args: Any, **kwargs: Any) -> Inspection:
        time.sleep(seconds)
        return real(*args, **kwargs)

    return stall


def test_a_large_websocket_message_without_inspection_processes_fails_closed_at_the_deadline(
    slow_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without inspection processes a large WebSocket message used to be inspected on the
    event loop with no deadline over it (a stalled inspection stalled every user, then passed).
    Like a large request, it now runs in a thread and is dropped at the policy's timeout."""
    monkeypatch.setattr(decision, "inspect_message", _stalled(1.0))

    async def go() -> None:
        with addon_in(slow_policy, tmp_path) as (a, tctx):
            tctx.configure(a, dlp_inline_max_bytes=10)
            f = tflow.twebsocketflow(messages=False)
            f.metadata["dlp_destination"] = "shop"
            f.websocket.messages.append(_client_message(b"hello there, a plain message"))
            loop = asyncio.get_running_loop()
            ticks = 0

            def tick() -> None:
                nonlocal ticks
                ticks += 1
                loop.call_later(0.01, tick)

            tick()
            await a.inspector.websocket_message(f)
            message = f.websocket.messages[-1]
            assert message.dropped
            assert a.metrics.errors.labels("timeout")._value.get() == 1
            assert ticks > 5  # the event loop went on while the message was inspected

    asyncio.run(go())


def test_a_large_request_without_inspection_processes_fails_closed_at_the_deadline(
    slow_policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_addon import _flow

    monkeypatch.setattr(decision, "inspect_message", _stalled(1.0))

    async def go() -> None:
        with addon_in(slow_policy, tmp_path) as (a, tctx):
            tctx.configure(a, dlp_inline_max_bytes=10)
            f = _flow("shop.example", b"hello there, a plain message")
            a.egress.requestheaders(f)
            await a.inspector.request(f)
            assert f.response is not None and f.response.status_code == 403
            assert b"inspection-error" in f.response.content
            assert a.metrics.errors.labels("timeout")._value.get() == 1

    asyncio.run(go())


def _client_message(content: bytes) -> Any:
    from mitmproxy import websocket
    from wsproto.frame_protocol import Opcode

    return websocket.WebSocketMessage(Opcode.TEXT, True, content)
