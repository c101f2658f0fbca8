"""The master behind ``dlp-proxy``: only the mitmproxy addons the product needs, dispatched
without per-call overhead.

mitmproxy hands every hook of every flow (and an ``update`` after each) to every loaded addon,
looking each handler up again each time; mitmdump loads ~35 addons, most of them debugging
tools (replay, map/modify, saving and printing flows). Here the kept addons are
:func:`kept_addons` (what is left out, and why, is in docs/benchmarks.md, "Addons") and each
hook's handlers are looked up once, when the addon set changes. ``mitmdump -s
dlp_addon/addon.py`` still runs the addon with mitmproxy's full set.
"""

from __future__ import annotations

import inspect
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks, master, options
from mitmproxy.addons import (
    block,
    blocklist,
    core,
    disable_h2c,
    dumper,
    errorcheck,
    next_layer,
    onboarding,
    proxyauth,
    proxyserver,
    termlog,
    tlsconfig,
    upstream_auth,
)

from dlp_addon.edge import DlpAddon

_addon_log = logging.getLogger("mitmproxy.addonmanager")


def kept_addons() -> list[Any]:
    """mitmproxy's addons that dlp-proxy runs, in mitmproxy's own order."""
    return [
        core.Core(),  # options, flow commands
        block.Block(),  # block_global / block_private: who may use the proxy
        blocklist.BlockList(),  # block_list: the admin's own refusals
        disable_h2c.DisableH2C(),  # h2c upgrades would break the connection
        onboarding.Onboarding(),  # http://mitm.it: the CA for employees
        proxyauth.ProxyAuth(),  # who the user is (rules and exemptions by user and group)
        proxyserver.Proxyserver(),  # the listeners; inject.websocket
        next_layer.NextLayer(),  # protocol detection, ignore_hosts / allow_hosts
        tlsconfig.TlsConfig(),  # interception certificates, upstream verification
        upstream_auth.UpstreamAuth(),  # chaining to a corporate upstream proxy
    ]


class LeanAddonManager(addonmanager.AddonManager):
    """mitmproxy's manager with each hook's handlers found once per change of the addon set.

    Same semantics for a flow hook: handlers run in chain order, an exception is logged and the
    next handler runs (fail open, which is why the DLP addon catches its own), ``AddonHalt``
    stops the chain, ``OptionsError`` propagates."""

    def __init__(self, master: master.Master) -> None:
        super().__init__(master)
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self._handlers.clear()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self._handlers.clear()

    def clear(self) -> None:
        super().clear()
        self._handlers.clear()

    def _handlers_for(self, name: str) -> list[Callable[..., Any]]:
        found = self._handlers.get(name)
        if found is None:
            found = []
            for a in addonmanager.traverse(self.chain):
                func = getattr(a, name, None)
                if func is None or isinstance(func, types.ModuleType):
                    continue
                if not callable(func):
                    raise exceptions.AddonManagerError(f"Addon handler {name} ({a}) not callable")
                found.append(func)
            self._handlers[name] = found
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        args = event.args()
        for func in self._handlers_for(event.name):
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as e:
                _addon_log.error(f"Addon error: {e}", exc_info=True)


class DlpMaster(master.Master):
    """The kept mitmproxy addons, the DLP addon and the startup error check. The flow
    printer (mitmdump's Dumper) is loaded only with ``--set dlp_raw_flow_log=true``."""

    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        opts.changed.disconnect(self.addons._configure_all)
        self.addons = LeanAddonManager(self)
        self._termlog_addon = termlog.TermLog()
        self.addons.add(self._termlog_addon)
        self.addons.add(*kept_addons())
        self.dlp = DlpAddon()
        self.addons.add(self.dlp, errorcheck.ErrorCheck())

    async def run(self) -> None:
        # An option change (--set dlp_policy=...) loads the policy during argument parsing;
        # without one, it is loaded here, before any server is up.
        try:
            if self.options.dlp_raw_flow_log:
                self.addons.add(dumper.Dumper())
            self.dlp.ensure_policy()
        except exceptions.OptionsError as e:
            print(f"dlp-proxy: {e}", file=sys.stderr)
            sys.exit(1)
        unknown = sorted(self.options.deferred)
        if unknown:
            print(
                f"dlp-proxy: unknown option(s): {', '.join(unknown)}; dlp-proxy loads only the "
                "mitmproxy addons it needs (docs/benchmarks.md, 'Addons')",
                file=sys.stderr,
            )
            sys.exit(1)
        await super().run()
