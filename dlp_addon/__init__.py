"""DLP egress proxy: a sans-proxy core (extract -> detect -> decide) and a thin mitmproxy addon.

Packages follow the data flow:

- ``extract``: request bytes and WebSocket messages -> text parts to scan.
- ``detect``: text parts -> findings (identifiers, validated).
- ``decide``: findings + policy + context -> verdict.
- ``act``: verdict -> audit event, metrics, the page or notice the user sees.
- ``addon``: mitmproxy hooks only; ``cli``: the ``dlp-proxy`` command.
"""

__version__ = "0.1.0"
