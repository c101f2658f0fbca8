"""The entry point mitmproxy loads: ``dlp-proxy`` (mitmdump with this addon) or
``mitmdump -s dlp_addon/addon.py``. The addons themselves are in ``dlp_addon/edge/``.

Every hook that inspects catches its own failures and turns them into the policy's error action:
mitmproxy itself would log an addon's exception and let the flow through (fail open).
"""

from __future__ import annotations

from dlp_addon.edge import DlpAddon

__all__ = ["DlpAddon", "addons"]

addons = [DlpAddon()]
