"""Keep traffic out of mitmproxy's own log lines.

mitmproxy logs what it sees: every WebSocket ping and pong at info level with its payload
(``Received WebSocket ping from ... (payload: b'...')``), and the server name a client asked
for when its TLS handshake fails (``... does not trust the proxy's certificate for
110105194912310020.example.com``). A client may put anything there, a resident ID too, and the
proxy's log must never carry one. Every record of a ``mitmproxy`` logger is therefore cleaned
when it is made: payloads are dropped (that a ping happened is useful, its bytes are not) and
numbers that may be identifiers are starred (``act.audit.star_numbers``: IPv4 addresses,
ports and short numbers stay readable).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from dlp_addon.act.audit import star_numbers

_PAYLOAD = re.compile(r"\(payload: .*\)", re.S)


def clean(message: str) -> str:
    """``message`` without payload bytes and with identifier-like numbers starred."""
    if "(payload: " in message:
        message = _PAYLOAD.sub("(payload not shown)", message)
    return star_numbers(message)


def _clean_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error handling
        return
    cleaned = clean(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()


def install() -> None:
    """Clean every ``mitmproxy.*`` log record as it is made (loggers created later included),
    once per process."""
    make = logging.getLogRecordFactory()
    if getattr(make, "dlp_cleans", False):
        return

    def cleaning_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith("mitmproxy"):
            _clean_record(record)
        return record

    cleaning_factory.dlp_cleans = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(cleaning_factory)
