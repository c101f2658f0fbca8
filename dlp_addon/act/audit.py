"""The audit trail: one JSON line per decision that is not a plain allow.

Written for the auditor: who (client address; the user from the proxy login, the policy's
address map or else the address; the user's groups), where (destination, host, method,
path without query values), what (channel, rule, action, whether it was enforced, distinct counts
per detector, masked samples) and under which policy version. Query *names* are kept, their
values never.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote

import regex

from dlp_addon.decide.verdict import Verdict
from dlp_addon.detect.normalize import normalize

logger = logging.getLogger(__name__)


def new_incident_id() -> str:
    """Short, unguessable, sortable by day: ``DLP-20261128-3f9a1c2e7b``."""
    return f"DLP-{_dt.datetime.now(_dt.UTC):%Y%m%d}-{secrets.token_hex(5)}"


_LONG_NUMBER = regex.compile(r"[0-9]{6,}[0-9Xx]?")


def star_numbers(text: str) -> str:
    """Long digit runs (IDs, mobiles) in a path or host replaced by stars of the same length."""
    return str(_LONG_NUMBER.sub(lambda m: "*" * len(m.group()), normalize(text)))


def redact_path(path: str) -> str:
    """The path, percent-decoded, long numbers starred, each query value replaced by ``*``
    (names kept: they say what was sent)."""
    base, sep, query = path.partition("?")
    base = star_numbers(unquote(base))
    if not sep:
        return base
    names = [star_numbers(k) for k, _ in parse_qsl(query, keep_blank_values=True)]
    return base + "?" + "&".join(f"{k}=*" for k in names)


class AuditLog:
    """Appends JSON lines to a file (``-`` for stderr); each line is flushed at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: TextIO | None = None

    def open(self) -> None:
        import sys

        if self.path == "-":
            self._fh = sys.stderr
        else:
            p = Path(self.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._fh = p.open("a", encoding="utf-8", errors="backslashreplace")

    def close(self) -> None:
        if self._fh is not None and self.path != "-":
            self._fh.close()
        self._fh = None

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        with self._lock:
            if self._fh is None:
                self.open()
            assert self._fh is not None
            self._fh.write(line + "\n")
            self._fh.flush()


def decision_event(
    verdict: Verdict,
    *,
    incident_id: str,
    client: str,
    destination: str,
    host: str,
    method: str,
    path: str,
    channel: str,
    policy_version: str,
    user: str | None = None,
    groups: Iterable[str] = (),
    identity: str = "none",
) -> dict[str, Any]:
    """The audit record of one decision. ``identity`` says where ``user`` came from:
    ``proxyauth``, ``network`` (the policy's address map), ``address`` or ``none``."""
    event: dict[str, Any] = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
        "incident_id": incident_id,
        "client": client,
        "destination": destination,
        "host": star_numbers(host),
        "method": method,
        "path": redact_path(path),
        "channel": channel,
        "rule": verdict.rule,
        "action": verdict.action,
        "enforced": verdict.enforced,
        "reason": verdict.reason,
        "counts": verdict.counts,
        "records": verdict.records,
        "files": list(verdict.files),
        "samples": verdict.samples,
        "policy_version": policy_version,
        "user": user,
        "groups": sorted(groups),
        "identity": identity,
    }
    if verdict.budget is not None:
        event["budget"] = verdict.budget
    return event
