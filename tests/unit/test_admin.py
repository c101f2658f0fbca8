"""The admin API: no token, no answer; nothing written before it validates; every change
audited with who made it."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dlp_addon.act.audit import AuditLog
from dlp_addon.admin import MAX_BODY, AdminServer
from dlp_addon.decide.policy import Policy, load_policy
from tests.unit.test_policy import GOOD

TOKEN = b"s3cret-admin-token-0123456789"


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "policy.yaml"
        self.path.write_text(GOOD, encoding="utf-8")
        self.policy: Policy | None = load_policy(self.path)
        self.reloads: list[str] = []
        self.reload_result: tuple[bool, list[str]] = (True, [])
        self.incident_limits: list[int] = []
        self.audit_path = tmp_path / "audit.jsonl"
        self.audit = AuditLog(str(self.audit_path))
        self.server = AdminServer(
            host="127.0.0.1",
            port=0,
            token=TOKEN,
            policy_path=self.path,
            current=lambda: self.policy,
            reload=self.reload,
            audit=lambda: self.audit,
            incidents=self.incidents,
        )

    def incidents(self, n: int) -> list[dict[str, Any]]:
        self.incident_limits.append(n)
        return [{"incident_id": f"DLP-{i}", "samples": ["138****8000"]} for i in range(n)]

    def reload(self, trigger: str) -> tuple[bool, list[str]]:
        self.reloads.append(trigger)
        if self.reload_result[0]:
            self.policy = load_policy(self.path)
        return self.reload_result

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def call(self, method: str, path: str, body: bytes = b"", token: bytes | None = TOKEN) -> Any:
        headers = {"Authorization": "Bearer " + token.decode()} if token is not None else {}
        return httpx.request(method, self.url(path), content=body, headers=headers, trust_env=False)

    def raw(self, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> bytes:
        """The status line of a request httpx would refuse to send."""
        lines = [
            method + b" " + path + b" HTTP/1.1",
            b"Host: admin",
            b"Authorization: Bearer " + TOKEN,
        ]
        lines += [k + b": " + v for k, v in headers.items()]
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as c:
            c.sendall(b"\r\n".join(lines) + b"\r\n\r\nversion: 1\n")
            return c.recv(4096).split(b"\r\n", 1)[0]

    def audit_events(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    h.server.start()
    yield h
    h.server.stop()
    h.audit.close()


def test_missing_or_wrong_token_is_refused(
    admin: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert admin.call("GET", "/policy", token=None).status_code == 401
        r = admin.call("GET", "/policy", token=b"guess-guess-guess-guess")
    assert r.status_code == 401 and r.json() == {"error": "unauthorized"}
    assert "refused a request from 127.0.0.1" in caplog.text
    assert "guess-guess" not in caplog.text and TOKEN.decode() not in caplog.text
    bad = GOOD.replace("min_distinct: 5", "min_distinct: 9")
    assert admin.call("PUT", "/policy", bad.encode(), token=None).status_code == 401
    assert admin.path.read_text() == GOOD


def test_get_policy(admin: Harness) -> None:
    r = admin.call("GET", "/policy")
    assert r.status_code == 200 and r.json()["text"] == GOOD
    assert admin.policy is not None and r.json()["version"] == admin.policy.version


def test_validate(admin: Harness) -> None:
    ok = admin.call("POST", "/policy/validate", GOOD.replace("5}", "6}").encode())
    assert ok.status_code == 200 and ok.json()["valid"] is True
    bad = admin.call(
        "POST", "/policy/validate", GOOD.replace("action: block", "action: x").encode()
    )
    assert bad.status_code == 422
    assert any(p.startswith(f"{admin.path}:7: ") for p in bad.json()["problems"])
    assert admin.path.read_text() == GOOD and not admin.reloads
    assert not list(admin.path.parent.glob(".candidate-*"))


def test_put_invalid_writes_nothing(admin: Harness) -> None:
    r = admin.call("PUT", "/policy", b"version: 1\nrules: [\n")
    assert r.status_code == 422
    assert admin.path.read_text() == GOOD and not admin.reloads and not admin.audit_events()


def test_put_valid_writes_reloads_and_audits(admin: Harness) -> None:
    admin.path.chmod(0o640)
    before = admin.policy.version if admin.policy else None
    new = GOOD.replace("min_distinct: 5", "min_distinct: 7")
    r = admin.call("PUT", "/policy", new.encode())
    assert r.status_code == 200 and r.json()["reloaded"] is True and r.json()["problems"] == []
    assert admin.path.read_text() == new and admin.reloads == ["admin API"]
    (event,) = admin.audit_events()
    assert event["event"] == "policy_update" and event["who"] == "admin API token from 127.0.0.1"
    assert event["previous_version"] == before and event["policy_version"] == r.json()["version"]
    assert event["policy_version"] != before and event["reloaded"] is True
    assert TOKEN.decode() not in admin.audit_path.read_text()
    assert admin.path.stat().st_mode & 0o777 == 0o640, "the file's permissions are kept"
    assert not list(admin.path.parent.glob(".new-*")) + list(admin.path.parent.glob(".cand*"))
    assert admin.call("GET", "/policy").json()["text"] == new


def test_put_whose_reload_fails_says_so(admin: Harness) -> None:
    before = admin.policy.version if admin.policy else None
    admin.reload_result = (False, ["policy.yaml:1: the disk ate it"])
    new = GOOD.replace("min_distinct: 5", "min_distinct: 7")
    r = admin.call("PUT", "/policy", new.encode())
    assert r.status_code == 200 and r.json() == {
        "version": before,
        "reloaded": False,
        "problems": ["policy.yaml:1: the disk ate it"],
    }
    (event,) = admin.audit_events()
    assert event["reloaded"] is False and event["policy_version"] != before


def test_put_through_a_symlink_replaces_its_target(admin: Harness, tmp_path: Path) -> None:
    real = tmp_path / "versions" / "v1.yaml"
    real.parent.mkdir()
    real.write_text(GOOD, encoding="utf-8")
    admin.path.unlink()
    admin.path.symlink_to(real)
    new = GOOD.replace("min_distinct: 5", "min_distinct: 7")
    assert admin.call("PUT", "/policy", new.encode()).status_code == 200
    assert admin.path.is_symlink() and real.read_text() == new


def test_unwritable_directory_is_a_clear_500(
    admin: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("dlp_addon.admin.tempfile.mkstemp", refuse)
    r = admin.call("PUT", "/policy", GOOD.replace("5}", "6}").encode())
    assert r.status_code == 500 and "Permission denied" in r.json()["error"]
    assert admin.path.read_text() == GOOD and not admin.reloads and not admin.audit_events()


def test_incidents_pass_the_limit_through(admin: Harness) -> None:
    r = admin.call("GET", "/incidents?limit=3")
    assert r.status_code == 200
    assert r.json()["incidents"][0] == {"incident_id": "DLP-0", "samples": ["138****8000"]}
    admin.call("GET", "/incidents")
    admin.call("GET", "/incidents?limit=99999")
    admin.call("GET", "/incidents?limit=0")
    assert admin.incident_limits == [3, 50, 1000, 1]
    assert admin.call("GET", "/incidents?limit=ten").status_code == 400


def test_json_headers(admin: Harness) -> None:
    for r in (admin.call("GET", "/policy"), admin.call("GET", "/nowhere", token=None)):
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"


def test_unknown_paths_and_methods(admin: Harness) -> None:
    assert admin.call("GET", "/nowhere").status_code == 404
    assert admin.call("GET", "/policy/").status_code == 404
    for method, path, allow in (
        ("DELETE", "/policy", "GET, PUT"),
        ("PATCH", "/policy", "GET, PUT"),
        ("POST", "/policy", "GET, PUT"),
        ("GET", "/policy/validate", "POST"),
        ("PUT", "/incidents", "GET"),
    ):
        r = admin.call(method, path)
        assert (r.status_code, r.headers["allow"]) == (405, allow), (method, path)
    assert admin.call("PATCH", "/policy", token=None).status_code == 401


def test_oversize_and_badly_framed_bodies(
    admin: Harness, capfd: pytest.CaptureFixture[str]
) -> None:
    big = b"x" * (MAX_BODY + 1)
    assert admin.call("POST", "/policy/validate", big).status_code == 413
    assert admin.call("PUT", "/policy", big).status_code == 413
    chunked = httpx.put(
        admin.url("/policy"),
        content=iter([GOOD.encode()]),
        headers={"Authorization": "Bearer " + TOKEN.decode()},
        trust_env=False,
    )
    assert chunked.status_code == 411
    for length in (b"-1", b"ten"):
        assert admin.raw(b"PUT", b"/policy", {b"Content-Length": length}).startswith(
            b"HTTP/1.0 400"
        )
    assert admin.path.read_text() == GOOD and not admin.reloads
    assert capfd.readouterr().err == "", "nothing on stderr: no access log, no traceback"


def test_validate_rejects_text_that_is_not_utf8(admin: Harness) -> None:
    r = admin.call("POST", "/policy/validate", b"version: 1\n\xff\xfe\n")
    assert r.status_code == 422
    assert r.json()["problems"] == [f"{admin.path}:1: not UTF-8 text"]
