"""The policy admin HTTP API: read, validate and replace the policy, read recent incidents.

Off by default; bound to 127.0.0.1 by default; every request needs ``Authorization: Bearer
<token>`` (compared in constant time; failures are logged with the client address, never with
what was sent). A new policy is validated before anything is written, written atomically next
to the old one, reloaded, and the change is audited with who made it.

Stdlib only and no mitmproxy: the addon hands in callables for the policy in force, a reload,
the audit log and the recent incidents.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dlp_addon.act.audit import AuditLog
from dlp_addon.decide.policy import Policy, load_policy
from dlp_addon.errors import PolicyError

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
DEFAULT_INCIDENTS = 50
MAX_INCIDENTS = 1000
# A client that stops sending mid-request must not hold a thread for ever.
REQUEST_TIMEOUT_SECONDS = 30.0

_ALLOWED = {"/policy": ("GET", "PUT"), "/policy/validate": ("POST",), "/incidents": ("GET",)}

Reply = tuple[int, dict[str, Any]]


class _HttpError(Exception):
    """A request refused before its route ran (body framing, size)."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback on stderr; a client hanging up is not news.
        logger.debug("admin API: connection from %s failed", client_address[0], exc_info=True)


class AdminServer:
    """The API in a daemon thread. ``current`` gives the policy in force, ``reload`` reloads it
    from its file (returns success and problems), ``audit`` the audit log in use (a callable:
    the addon may reopen it), ``incidents`` the last N audit records, already masked."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        token: bytes,
        policy_path: Path,
        current: Callable[[], Policy | None],
        reload: Callable[[str], tuple[bool, list[str]]],
        audit: Callable[[], AuditLog],
        incidents: Callable[[int], list[dict[str, Any]]],
    ) -> None:
        self.host, self.port = host, port
        self._expected = b"Bearer " + token
        self.policy_path = policy_path
        self._current = current
        self._reload = reload
        self._audit = audit
        self._incidents = incidents
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        """Bind (port 0 picks a free port, then in ``.port``) and serve in a daemon thread."""
        admin = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_SECONDS

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log on stderr: what matters goes through our logger

            def do_GET(self) -> None:
                admin._handle(self)

            def do_POST(self) -> None:
                admin._handle(self)

            def do_PUT(self) -> None:
                admin._handle(self)

            def do_DELETE(self) -> None:
                admin._handle(self)

            def do_PATCH(self) -> None:
                admin._handle(self)

            def do_HEAD(self) -> None:
                admin._handle(self)

            def do_OPTIONS(self) -> None:
                admin._handle(self)

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dlp-admin-api", daemon=True
        )
        self._thread.start()
        logger.info("admin API on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- requests --------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        client = req.client_address[0]
        method = req.command
        given = req.headers.get("Authorization", "")
        # http.server decodes header bytes as latin-1, so this gives back exactly what was sent.
        if not hmac.compare_digest(given.encode("latin-1", "replace"), self._expected):
            logger.warning("admin API: refused a request from %s without a valid token", client)
            return _send(req, 401, {"error": "unauthorized"})
        url = urlsplit(req.path)
        allowed = _ALLOWED.get(url.path)
        if allowed is None:
            return _send(req, 404, {"error": "not found"})
        if method not in allowed:
            return _send(
                req, 405, {"error": f"use {' or '.join(allowed)}"}, {"Allow": ", ".join(allowed)}
            )
        try:
            if url.path == "/policy/validate":
                status, doc = self._validate(_body(req))[:2]
            elif url.path == "/incidents":
                status, doc = self._get_incidents(url.query)
            elif method == "PUT":
                status, doc = self._put(_body(req), client)
            else:
                status, doc = self._get_policy()
        except _HttpError as e:
            status, doc = e.status, {"error": e.message}
        except Exception:
            logger.exception("admin API: %s %s from %s failed", method, url.path, client)
            status, doc = 500, {"error": "internal error; see the proxy's log"}
        _send(req, status, doc)

    def _get_policy(self) -> Reply:
        policy = self._current()
        try:
            text = self.policy_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return 500, {"error": f"cannot read {self.policy_path}: {_why(e)}"}
        return 200, {
            "version": policy.version if policy else None,
            "path": str(self.policy_path),
            "text": text,
        }

    def _validate(self, text: bytes) -> tuple[int, dict[str, Any], Policy | None]:
        """Load ``text`` as a policy from a temporary file next to the real one, so that its
        relative includes resolve the same way; problems name the real file."""
        try:
            fd, name = tempfile.mkstemp(
                prefix=".candidate-", suffix=".yaml", dir=self.policy_path.parent
            )
        except OSError as e:
            return (*_cannot_write(self.policy_path.parent, e), None)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text)
            policy = load_policy(Path(name))
        except PolicyError as e:
            problems = [p.replace(name, str(self.policy_path)) for p in e.problems]
            return 422, {"valid": False, "problems": problems}, None
        finally:
            Path(name).unlink(missing_ok=True)
        return 200, {"valid": True, "version": policy.version}, policy

    def _put(self, text: bytes, client: str) -> Reply:
        with self._write_lock:
            status, doc, candidate = self._validate(text)
            if candidate is None:
                return status, doc
            previous = self._current()
            try:
                _replace_atomically(self.policy_path, text)
            except OSError as e:
                return _cannot_write(self.policy_path.parent, e)
            reloaded, problems = self._reload("admin API")
            current = self._current()
            logger.info(
                "admin API: policy %s replaced by a request from %s (version %s, reloaded: %s)",
                self.policy_path,
                client,
                candidate.version,
                reloaded,
            )
            event = {
                "event": "policy_update",
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "who": f"admin API token from {client}",
                "path": str(self.policy_path),
                "policy_version": candidate.version,
                "previous_version": previous.version if previous else None,
                "reloaded": reloaded,
            }
            try:
                self._audit().write(event)
            except OSError as e:
                logger.error("admin API: cannot write the audit event: %s", _why(e))
            return 200, {
                "version": current.version if current else None,
                "reloaded": reloaded,
                "problems": problems,
            }

    def _get_incidents(self, query: str) -> Reply:
        raw = parse_qs(query).get("limit", [str(DEFAULT_INCIDENTS)])[0]
        try:
            limit = int(raw)
        except ValueError:
            return 400, {"error": "limit must be a whole number"}
        return 200, {"incidents": self._incidents(max(1, min(limit, MAX_INCIDENTS)))}


def _replace_atomically(path: Path, text: bytes) -> None:
    """Write ``text`` over ``path`` so a reader sees the old file or the new one, never half:
    a temporary file in the same directory, flushed to disk, renamed over it. A symlink is
    written through (its target replaced), and the old file's permissions are kept."""
    target = path.resolve()
    try:
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    fd, name = tempfile.mkstemp(prefix=".new-", suffix=".yaml", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself to disk; not every OS allows it
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _body(req: BaseHTTPRequestHandler) -> bytes:
    if req.headers.get("Transfer-Encoding", "identity").lower() != "identity":
        raise _HttpError(411, "send the body with a Content-Length")
    raw = req.headers.get("Content-Length", "0").strip() or "0"
    if not raw.isdigit() or not raw.isascii():
        raise _HttpError(400, "bad Content-Length")
    length = int(raw)
    if length > MAX_BODY:
        raise _HttpError(413, f"body over {MAX_BODY} bytes")
    try:
        body = req.rfile.read(length)
    except TimeoutError as e:
        raise _HttpError(408, "the body did not arrive in time") from e
    if len(body) != length:
        raise _HttpError(400, "body shorter than its Content-Length")
    return body


def _send(
    req: BaseHTTPRequestHandler,
    status: int,
    doc: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    req.send_response(status)
    req.send_header("Content-Type", "application/json; charset=utf-8")
    req.send_header("Cache-Control", "no-store")
    req.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        req.send_header(name, value)
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(body)


def _cannot_write(directory: Path, e: OSError) -> Reply:
    logger.error("admin API: cannot write in %s: %s", directory, _why(e))
    return 500, {"error": f"cannot write in {directory}: {_why(e)}"}


def _why(e: Exception) -> str:
    return (e.strerror if isinstance(e, OSError) else None) or type(e).__name__
