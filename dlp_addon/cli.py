"""``dlp-proxy``: mitmdump with the DLP addon loaded. Takes every mitmdump argument."""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy import exceptions, options
from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run

from dlp_addon.addon import DlpAddon


class DlpMaster(DumpMaster):
    """mitmdump's master plus the DLP addon, which must have a valid policy before serving."""

    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.dlp = DlpAddon()
        self.addons.add(self.dlp)

    async def run(self) -> None:
        # An option change (--set dlp_policy=...) loads the policy during argument parsing;
        # without one, it is loaded here, before any server is up.
        try:
            self.dlp.ensure_policy()
        except exceptions.OptionsError as e:
            print(f"dlp-proxy: {e}", file=sys.stderr)
            sys.exit(1)
        await super().run()


def _extra(args: Any) -> dict[str, Any]:
    if args.filter_args:
        v = " ".join(args.filter_args)
        return {"save_stream_filter": v, "readfile_filter": v, "dumper_filter": v}
    return {}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dlp-proxy``."""
    run(DlpMaster, cmdline.mitmdump, sys.argv[1:] if argv is None else argv, _extra)
