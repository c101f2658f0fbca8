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
from tests.unit.test_addon import POLICY, _flow, addon_in, policy_file  # noqa: F401 (fixture)

SLOW_POLICY = POLICY + "inspection: {timeout_seconds: 0.2}\n"


def _stalled(seconds: float) -> Any:
    """An inspection that overruns its deadline and then says "allow"."""
    real = decision.inspect_message

    def stall(*args: Any, **kwargs: Any) -> Inspection:
        time.sleep(seconds)
        return real(*args, **kwargs)

    return stall


def test_a_large_websocket_message_without_inspection_processes_fails_closed_at_the_deadline(
    policy_file: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without inspection processes a large WebSocket message used to be inspected on the
    event loop with no deadline over it (a stalled inspection stalled every user, then passed).
    Like a large request, it now runs in a thread and is dropped at the policy's timeout."""
    policy_file.write_text(SLOW_POLICY, encoding="utf-8")
    monkeypatch.setattr(decision, "inspect_message", _stalled(1.0))

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, tctx):
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
    policy_file: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy_file.write_text(SLOW_POLICY, encoding="utf-8")
    monkeypatch.setattr(decision, "inspect_message", _stalled(1.0))

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, tctx):
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


def test_an_exemption_from_a_budget_holds_on_the_decision_path(tmp_path: Path) -> None:
    """The rules a sender is exempt from are found once, when the message is decided, and the
    budgets skip the same ones: the exempt user goes on sending, the other one is stopped."""
    from dlp_addon.budget_keeper import BudgetKeeper
    from dlp_addon.decide.policy import load_policy
    from dlp_addon.pipeline import WsInput
    from dlp_addon.state.sqlite import SqliteStore
    from tests.synth import customer_records

    p = tmp_path / "policy.yaml"
    p.write_text(
        POLICY.replace("min_distinct: 1", "min_distinct: 50")
        + "budgets:\n  - {name: people, window: 1d, limit: 2}\n"
        + "exemptions:\n  - {reason: export desk, users: [alice], rules: [people]}\n",
        encoding="utf-8",
    )
    policy = load_policy(p, hmac_key=b"k" * 32)
    keeper = BudgetKeeper(lambda: SqliteStore(str(tmp_path / "b.sqlite")), "sqlite")
    decider = decision.Decider(lambda: keeper)
    ids = [r["id"] for r in customer_records(4, seed=3)]

    async def send(user: str) -> list[str]:
        who = policy.requester(user, "/")
        out = []
        for i in ids:
            message = WsInput(f"客户 {i}".encode(), True)
            out.append((await decider.decide(policy, message, "shop", who)).verdict.action)
        return out

    assert asyncio.run(send("alice")) == ["allow"] * 4
    assert asyncio.run(send("bob")) == ["allow", "allow", "block", "block"]
    keeper.close()
