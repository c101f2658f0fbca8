"""Keep traffic out of mitmproxy's own log lines.

mitmproxy logs every WebSocket ping and pong at info level with its payload
(``Received WebSocket ping from ... (payload: b'...')``): a client may put anything in a ping,
a resident ID too, and the proxy's log must never carry one. The filter keeps the line (that a
ping happened is useful) and drops the bytes.
"""

from __future__ import annotations

import logging
import re

_PAYLOAD = re.compile(r"\(payload: .*\)", re.S)
SERVER_LOGGER = "mitmproxy.proxy.server"  # where mitmproxy's protocol layers log


class RedactPayloads(logging.Filter):
    """Replace ``(payload: ...)`` in a record's message by a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "(payload: " in message:
            record.msg = _PAYLOAD.sub("(payload not shown)", message)
            record.args = ()
        return True


def install() -> None:
    """Add the filter to mitmproxy's server logger, once per process."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, RedactPayloads) for f in logger.filters):
        logger.addFilter(RedactPayloads())
