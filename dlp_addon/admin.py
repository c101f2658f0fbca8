"""The policy admin HTTP API: read, validate and replace the policy, read recent incidents.

Off by default; bound to 127.0.0.1 by default; every request needs ``Authorization: Bearer
<token>`` (compared in constant time; failures are logged with the client address, never with
what was sent). A new policy is validated before anything is written, written atomically next
to the old one, reloaded, and the change is audited with who made it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
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


class AdminServer:
    """The API in a daemon thread. ``current`` gives the policy in force, ``reload`` reloads it
    from its file (returns success and problems), ``incidents`` the last N audit records."""

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
        self._token = token
        self.policy_path = policy_path
        self._current, self._reload, self._audit, self._incidents = (
            current,
            reload,
            audit,
            incidents,
        )
        self._server: ThreadingHTTPServer | None = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log on stderr: paths and clients go through our logger

            def do_GET(self) -> None:
                admin._handle(self, "GET")

            def do_POST(self) -> None:
                admin._handle(self, "POST")

            def do_PUT(self) -> None:
                admin._handle(self, "PUT")

            def do_DELETE(self) -> None:
                admin._handle(self, "DELETE")

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        logger.info("admin API on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- requests --------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        client = req.client_address[0]
        given = req.headers.get("Authorization", "")
        expected = b"Bearer " + self._token
        if not hmac.compare_digest(given.encode("latin-1", "replace"), expected):
            logger.warning("admin API: refused a request from %s without a valid token", client)
            return _send(req, 401, {"error": "unauthorized"})
        url = urlsplit(req.path)
        routes: dict[tuple[str, str], Callable[[], tuple[int, dict[str, Any]]]] = {
            ("GET", "/policy"): self._get_policy,
            ("POST", "/policy/validate"): lambda: self._validate(_body(req))[0:2],
            ("PUT", "/policy"): lambda: self._put(_body(req), client),
            ("GET", "/incidents"): lambda: self._get_incidents(url.query),
        }
        if (method, url.path) not in routes:
            known = {path for _, path in routes}
            return _send(req, 405 if url.path in known else 404, {"error": "not here"})
        try:
            status, doc = routes[(method, url.path)]()
        except _TooLarge:
            status, doc = 413, {"error": f"body over {MAX_BODY} bytes"}
        _send(req, status, doc)

    def _get_policy(self) -> tuple[int, dict[str, Any]]:
        policy = self._current()
        return 200, {
            "version": policy.version if policy else None,
            "path": str(self.policy_path),
            "text": self.policy_path.read_text(encoding="utf-8"),
        }

    def _validate(self, text: bytes) -> tuple[int, dict[str, Any], Policy | None]:
        """Load ``text`` as a policy from a temporary file next to the real one, so that its
        relative includes resolve the same way."""
        fd, name = tempfile.mkstemp(
            prefix=".candidate-", suffix=".yaml", dir=self.policy_path.parent
        )
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

    def _put(self, text: bytes, client: str) -> tuple[int, dict[str, Any]]:
        with self._write_lock:
            status, doc, candidate = self._validate(text)
            if candidate is None:
                return status, doc
            previous = self._current()
            fd, name = tempfile.mkstemp(prefix=".new-", suffix=".yaml", dir=self.policy_path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(name, self.policy_path)
            reloaded, problems = self._reload("admin API")
            current = self._current()
            self._audit().write(
                {
                    "event": "policy_update",
                    "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                    "who": f"admin API token from {client}",
                    "policy_version": current.version if current else None,
                    "previous_version": previous.version if previous else None,
                }
            )
            return 200, {
                "version": current.version if current else None,
                "reloaded": reloaded,
                "problems": problems,
            }

    def _get_incidents(self, query: str) -> tuple[int, dict[str, Any]]:
        try:
            limit = int(parse_qs(query).get("limit", ["50"])[0])
        except ValueError:
            return 400, {"error": "limit must be a number"}
        return 200, {"incidents": self._incidents(max(1, min(limit, 1000)))}


class _TooLarge(Exception):
    pass


def _body(req: BaseHTTPRequestHandler) -> bytes:
    length = int(req.headers.get("Content-Length", "0") or 0)
    if length > MAX_BODY:
        raise _TooLarge
    return req.rfile.read(length)


def _send(req: BaseHTTPRequestHandler, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode()
    req.send_response(status)
    req.send_header("Content-Type", "application/json; charset=utf-8")
    req.send_header("Cache-Control", "no-store")
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)
