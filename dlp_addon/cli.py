"""``dlp-proxy``: mitmproxy's proxy with the DLP addon and only the mitmproxy addons it needs
(:mod:`dlp_addon.master`). Takes mitmdump's arguments, less those of the addons left out;
``--version`` prints this package's version, commit and scan engines (:mod:`dlp_addon.about`)."""

from __future__ import annotations

import sys
from typing import Any

from mitmproxy.tools import cmdline
from mitmproxy.tools.main import run

from dlp_addon.master import DlpMaster


def _extra(args: Any) -> dict[str, Any]:
    if args.filter_args:  # mitmdump's flow filter: nothing in dlp-proxy saves or prints flows
        print("dlp-proxy: flow filter expressions are not supported", file=sys.stderr)
        sys.exit(1)
    return {}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dlp-proxy``."""
    args = sys.argv[1:] if argv is None else argv
    if "--version" in args:  # mitmdump's own would name only mitmproxy
        from dlp_addon.about import describe

        print(describe())
        return
    run(DlpMaster, cmdline.mitmdump, args, _extra)
