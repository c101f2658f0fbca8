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
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from dlp_addon.decide.verdict import Verdict
from dlp_addon.detect.normalize import normalize

logger = logging.getLogger(__name__)


def new_incident_id() -> str:
    """Short, unguessable, sortable by day: ``DLP-20261128-3f9a1c2e7b``."""
    return f"DLP-{_dt.datetime.now(_dt.UTC):%Y%m%d}-{secrets.token_hex(5)}"


# A number as people write one: digit groups joined by single spaces, dashes, dots or slashes.
_NUMBER = re.compile(r"[0-9]+(?:[ \-./][0-9]+)*[Xx]?")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")  # an IPv4 address: kept


def star_numbers(text: str) -> str:
    """Numbers that may be identifiers, in a path, host or log line, with their digits starred:
    a run of 6 or more digits, or 7 or more written in groups (``138-0013-8000``,
    ``138 0013 8000``), after folding (full-width digits, zero-width characters). Short
    numbers (``/v2/``, ports, ``page=3``) and IPv4 addresses stay readable; a date written
    ``2026-11-28`` is starred (eight digits: it could as well be part of an ID)."""

    def star(m: re.Match[str]) -> str:
        number = m.group()
        digits = sum(c.isdigit() for c in number)
        grouped = not number.rstrip("Xx").isdigit()
        if digits < 6 or (grouped and digits < 7) or _DOTTED_QUAD.fullmatch(number):
            return number
        return _DIGIT_OR_X.sub("*", number)

    return _NUMBER.sub(star, normalize(text))


_DIGIT_OR_X = re.compile(r"[0-9Xx]")


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
    """Appends JSON lines to a file (``-`` for stderr); each line goes out in one ``write``.

    Rotation without loss: a renamed file keeps receiving lines until :meth:`reopen` (the
    proxy calls it on SIGHUP), and at most a second after the file at ``path`` was renamed
    or removed the next line opens it anew (an inode check, so a rotation without a signal
    loses nothing either). Lines are written unbuffered with ``O_APPEND``: a line is in
    exactly one file, and a failed write leaves nothing behind to be flushed twice later.
    """

    CHECK_INTERVAL = 1.0  # seconds between checks that ``path`` is still the open file

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None  # (device, inode) of the open file
        self._checked = 0.0

    def open(self) -> None:
        with self._lock:
            self._open()

    def _open(self) -> None:
        if self.path == "-":
            return
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        self._checked = time.monotonic()

    def _close(self) -> None:
        fd, self._fd, self._inode = self._fd, None, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._close()

    def reopen(self) -> None:
        """Close the file and open ``path`` again (after a rotation). A failure to open is
        logged and tried again by the next write, which then fails if it still cannot."""
        with self._lock:
            self._close()
            try:
                self._open()
            except OSError as e:
                logger.error("cannot reopen audit log %s: %s", self.path, e.strerror)

    def _rotated(self) -> bool:
        """Whether ``path`` is no longer the open file (renamed or removed)."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_INTERVAL:
            return False
        self._checked = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        if self.path == "-":
            with self._lock:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            return
        data = (line + "\n").encode("utf-8", errors="backslashreplace")
        with self._lock:
            if self._fd is not None and self._rotated():
                self._close()
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view = memoryview(data)
            while view:  # a regular file takes it in one call; a full disk raises
                view = view[os.write(self._fd, view) :]


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
        "counts_complete": verdict.complete,
        "edm_records": verdict.edm_records,
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
