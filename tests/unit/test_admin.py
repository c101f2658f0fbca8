"""The admin API: no token, no answer; nothing written before it validates; every change
audited with who made it."""

from __future__ import annotations

import json
import logging
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
            incidents=lambda n: [{"incident_id": f"DLP-{i}"} for i in range(n)],
        )

    def reload(self, trigger: str) -> tuple[bool, list[str]]:
        self.reloads.append(trigger)
        self.policy = load_policy(self.path)
        return True, []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def call(self, method: str, path: str, body: bytes = b"", token: bytes | None = TOKEN) -> Any:
        headers = {"Authorization": "Bearer " + token.decode()} if token is not None else {}
        return httpx.request(method, self.url(path), content=body, headers=headers, trust_env=False)

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
    before = admin.policy.version if admin.policy else None
    new = GOOD.replace("min_distinct: 5", "min_distinct: 7")
    r = admin.call("PUT", "/policy", new.encode())
    assert r.status_code == 200 and r.json()["reloaded"] is True
    assert admin.path.read_text() == new and admin.reloads == ["admin API"]
    (event,) = admin.audit_events()
    assert event["event"] == "policy_update" and "127.0.0.1" in event["who"]
    assert event["previous_version"] == before and event["policy_version"] == r.json()["version"]
    assert event["policy_version"] != before


def test_incidents_limits_and_errors(admin: Harness) -> None:
    assert len(admin.call("GET", "/incidents?limit=3").json()["incidents"]) == 3
    assert len(admin.call("GET", "/incidents?limit=99999").json()["incidents"]) == 1000
    assert admin.call("GET", "/nowhere").status_code == 404
    assert admin.call("DELETE", "/policy").status_code == 405
    assert admin.call("POST", "/policy/validate", b"x" * (MAX_BODY + 1)).status_code == 413
