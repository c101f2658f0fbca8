"""URL-encoded forms (a query, a form body, the Referer's query) as parts to scan."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from dlp_addon.extract.collector import Collector


def form(col: Collector, location: str, text: str) -> None:
    """A form's fields as one part, ``name=value`` a line; a value holding JSON (chat APIs
    post ``data={...}``) is also read as the JSON the server parses."""
    pairs = parse_qsl(text, keep_blank_values=True)
    col.text(location, "\n".join(f"{k}={v}" for k, v in pairs))
    for _, value in pairs:
        if value[:1] in ("{", "["):
            col.json_text(location, value)


_PAIR = rb"[A-Za-z0-9_.\-\[\]]{1,64}=[^\s&]*"
_URLENCODED = re.compile(rb"^" + _PAIR + rb"(?:&" + _PAIR + rb")+$")


def looks_urlencoded(body: bytes) -> bool:
    """A form whatever the Content-Type says: ``a=1&b=%E4...`` (two or more pairs)."""
    return len(body) < 10 * 1024 * 1024 and _URLENCODED.match(body) is not None
