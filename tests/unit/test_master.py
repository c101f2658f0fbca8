"""dlp-proxy's lean master: the kept addons, and hook dispatch with mitmproxy's semantics."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions, master, options
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from dlp_addon.master import DlpMaster, LeanAddonManager

KEPT = {
    "Core", "Block", "BlockList", "DisableH2C", "Onboarding", "ProxyAuth", "Proxyserver",
    "NextLayer", "TlsConfig", "UpstreamAuth", "TermLog", "DlpAddon", "ErrorCheck",
}  # fmt: skip


class Recorder:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def request(self, flow: object) -> None:
        self.seen.append(flow)


class Boom:
    def request(self, flow: object) -> None:
        raise ValueError("boom")


class Halt:
    def request(self, flow: object) -> None:
        raise exceptions.AddonHalt


class Later:
    def __init__(self) -> None:
        self.seen = 0

    async def request(self, flow: object) -> None:
        await asyncio.sleep(0)
        self.seen += 1


def test_dlp_proxy_loads_only_the_kept_addons() -> None:
    async def go() -> set[str]:
        m = DlpMaster(options.Options())
        return {type(a).__name__ for a in m.addons.chain}

    assert asyncio.run(go()) == KEPT


def test_a_failing_handler_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> tuple[Recorder, Later]:
        m = master.Master(options.Options())
        manager = LeanAddonManager(m)
        rec, later = Recorder(), Later()
        manager.add(Boom(), rec)
        flow = tflow.tflow()
        await manager.trigger_event(HttpRequestHook(flow))
        manager.add(later)  # added after the first dispatch: must be called from now on
        await manager.trigger_event(HttpRequestHook(flow))
        return rec, later

    with caplog.at_level(logging.ERROR):
        rec, later = asyncio.run(go())
    assert len(rec.seen) == 2
    assert later.seen == 1
    assert "Addon error: boom" in caplog.text


def test_addon_halt_stops_the_chain() -> None:
    async def go() -> Recorder:
        m = master.Master(options.Options())
        manager = LeanAddonManager(m)
        rec = Recorder()
        manager.add(Halt(), rec)
        await manager.trigger_event(HttpRequestHook(tflow.tflow()))
        manager.remove(manager.chain[0])
        await manager.trigger_event(HttpRequestHook(tflow.tflow()))
        return rec

    assert len(asyncio.run(go()).seen) == 1
