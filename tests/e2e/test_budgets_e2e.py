"""End to end: cumulative budgets against the drip, through the real ``dlp-proxy``.

One authenticated employee (mitmproxy's ``proxyauth`` with an htpasswd file) sends customer
records three at a time, each message too small for any per-message rule, over HTTPS through
the proxy. The budget allows 300 different identifiers: the first 100 messages must arrive, the
101st and every later one with new records must be stopped with a message saying why. A second
employee has a budget of their own; re-sending records already counted does not move the count;
a restart keeps the counts (SQLite); an admin reset is audited. Nothing the proxy wrote (output,
audit, metrics, the database) may hold a raw identifier or the HMAC key.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.e2e.harness import Proxy, TlsFiles, Upstream, make_test_policy, scrub
from tests.synth import customer_records

pytestmark = pytest.mark.e2e

LIMIT = 300
PER_MESSAGE = 3
MESSAGES = 200
BUDGET = "drip-test"
USERS = {"alice": "alice-pw-" + "a" * 8, "bob": "bob-pw-" + "b" * 8}
RECORDS = customer_records(MESSAGES * PER_MESSAGE + 1, seed=20260801)
IDS = [r["id"] for r in RECORDS]
# Name, ID number and address: three records are below every per-message rule of the policy.
MESSAGE_TEXTS = [
    "\n".join(f"{r['name']} {r['id']} {r['address']}" for r in RECORDS[i : i + PER_MESSAGE])
    for i in range(0, MESSAGES * PER_MESSAGE, PER_MESSAGE)
]
EXTRA_TEXT = f"{RECORDS[-1]['name']} {RECORDS[-1]['id']} {RECORDS[-1]['address']}"


def budget_policy(**extra: Any) -> dict[str, Any]:
    def edit(policy: dict[str, Any]) -> None:
        policy["budgets"] = [
            {
                "name": BUDGET,
                "description": {"zh": "测试额度", "en": "Test budget"},
                "legal_category": "other",
                "limit": LIMIT,
                "window": "30d",
            }
        ]
        policy.update(extra)

    return make_test_policy(edit=edit)


def write_htpasswd(path: Path) -> Path:
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, pw in USERS.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def send(proxy: Proxy, user: str | None, texts: list[str], upstream: Upstream) -> list[Any]:
    """POST each text as a chat message over HTTPS as ``user``; the answers, in order."""
    url = proxy.url
    if user is not None:
        url = url.replace("http://", f"http://{user}:{USERS[user]}@")
    answers = []
    with httpx.Client(proxy=url, verify=proxy.ssl_context(), trust_env=False, timeout=15) as client:
        for text in texts:
            r = client.post(
                upstream.url("https", "/chat/send"),
                content=json.dumps({"content": text}, ensure_ascii=False).encode(),
                headers={"content-type": "application/json", "accept": "application/json"},
            )
            answers.append(r)
    return answers


def budgets_cli(proxy: Proxy, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dlp_addon.policy_cli", "budgets", str(proxy.policy_path),
         "--db", str(proxy.workdir / "budgets.sqlite"),
         "--audit-log", str(proxy.audit_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, scrub(out.stdout + out.stderr)
    return out.stdout


def count_of(proxy: Proxy, subject: str) -> int:
    """The count ``dlp-policy budgets`` reports for ``subject`` (0 when it is not listed)."""
    for line in budgets_cli(proxy).splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0] == BUDGET and fields[1] == subject:
            return int(fields[3].split("/")[0])
    return 0


@pytest.fixture(scope="module")
def key() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, key: str
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("budgets")
    key_file = workdir / "hmac.key"
    key_file.write_text(key, encoding="utf-8")
    p = Proxy(workdir, budget_policy(), tls_files.ca_cert)
    p.extra_args = [
        "--set", f"proxyauth=@{write_htpasswd(workdir / 'htpasswd')}",
        "--set", f"dlp_budget_db={workdir / 'budgets.sqlite'}",
        "--set", f"dlp_hmac_key_file={key_file}",
    ]  # fmt: skip
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def drip(proxy: Proxy, upstream: Upstream) -> list[Any]:
    """Alice's 200 messages of 3 records each, in order."""
    return send(proxy, "alice", MESSAGE_TEXTS, upstream)


def arrived(upstream: Upstream, texts: list[str]) -> list[bool]:
    bodies = [r.body for r in upstream.recorder.requests("/chat/send")]
    wanted = [json.dumps(t, ensure_ascii=False)[1:-1].encode() for t in texts]
    return [any(w in b for b in bodies) for w in wanted]


def test_budget_trips_exactly_at_the_configured_count(
    drip: list[Any], proxy: Proxy, upstream: Upstream
) -> None:
    allowed = LIMIT // PER_MESSAGE
    statuses = [r.status_code for r in drip]
    assert statuses == [200] * allowed + [403] * (MESSAGES - allowed)
    assert arrived(upstream, MESSAGE_TEXTS) == [True] * allowed + [False] * (MESSAGES - allowed)

    answer = drip[allowed].json()
    assert answer["error"] == "blocked_by_dlp" and answer["rule"] == BUDGET
    assert f"{LIMIT}" in answer["message_en"] and "30 days" in answer["message_en"]
    assert f"{LIMIT}" in answer["message_zh"] and "30 天" in answer["message_zh"]
    assert drip[allowed].headers["x-dlp-incident"] == answer["incident_id"]

    trips = proxy.wait_audit(lambda e: e.get("rule") == BUDGET)
    assert len(trips) == MESSAGES - allowed
    first = trips[0]
    assert first["user"] == "alice" and first["identity"] == "proxyauth"
    assert first["budget"]["count_before"] == LIMIT
    assert first["budget"]["count_with_message"] == LIMIT + PER_MESSAGE
    assert first["action"] == "block" and first["enforced"] is True
    # Every audit event names who sent it; never the password.
    assert all(e["user"] == "alice" for e in proxy.audit_events() if "incident_id" in e)
    assert USERS["alice"] not in proxy.audit_text() + proxy.output()

    assert count_of(proxy, "user:alice") == LIMIT
    assert proxy.metric("dlp_budget_trips_total", budget=BUDGET, action="block") == (
        MESSAGES - allowed
    )


def test_second_user_has_a_budget_of_their_own(
    drip: list[Any], proxy: Proxy, upstream: Upstream
) -> None:
    allowed = LIMIT // PER_MESSAGE
    answers = send(proxy, "bob", MESSAGE_TEXTS, upstream)
    assert [r.status_code for r in answers] == [200] * allowed + [403] * (MESSAGES - allowed)
    assert count_of(proxy, "user:alice") == LIMIT
    assert count_of(proxy, "user:bob") == LIMIT
    bob = proxy.wait_audit(lambda e: e.get("rule") == BUDGET and e.get("user") == "bob")
    assert len(bob) == MESSAGES - allowed


def test_resending_the_same_records_does_not_move_the_count(
    drip: list[Any], proxy: Proxy, upstream: Upstream
) -> None:
    allowed = LIMIT // PER_MESSAGE
    again = send(proxy, "alice", MESSAGE_TEXTS[:allowed], upstream)
    assert [r.status_code for r in again] == [200] * allowed
    assert count_of(proxy, "user:alice") == LIMIT
    # At the limit, one record not yet counted is one too many.
    (one_more,) = send(proxy, "alice", [EXTRA_TEXT], upstream)
    assert one_more.status_code == 403 and one_more.json()["rule"] == BUDGET
    assert count_of(proxy, "user:alice") == LIMIT


def test_restart_keeps_the_counts(drip: list[Any], proxy: Proxy, upstream: Upstream) -> None:
    allowed = LIMIT // PER_MESSAGE
    assert proxy.stop() in (0, -15)
    proxy.start()
    assert count_of(proxy, "user:alice") == LIMIT
    first, blocked = send(proxy, "alice", [MESSAGE_TEXTS[0], MESSAGE_TEXTS[allowed]], upstream)
    assert first.status_code == 200  # counted before the restart: same key, same hashes
    assert blocked.status_code == 403 and blocked.json()["rule"] == BUDGET
    assert count_of(proxy, "user:alice") == LIMIT


def test_admin_reset_is_audited_and_frees_the_user(
    drip: list[Any], proxy: Proxy, upstream: Upstream
) -> None:
    allowed = LIMIT // PER_MESSAGE
    out = budgets_cli(proxy, "--reset", "alice")
    assert f"user:alice: {LIMIT} identifiers forgotten" in out
    (event,) = [e for e in proxy.audit_events() if e.get("event") == "budget_reset"]
    assert event["subject"] == "user:alice" and event["identifiers_forgotten"] == LIMIT
    assert event["who"].startswith("dlp-policy budgets")
    assert count_of(proxy, "user:alice") == 0
    assert count_of(proxy, "user:bob") == LIMIT
    (after,) = send(proxy, "alice", [MESSAGE_TEXTS[allowed]], upstream)
    assert after.status_code == 200
    assert count_of(proxy, "user:alice") == PER_MESSAGE


def test_listing_shows_users_nearest_their_limits(drip: list[Any], proxy: Proxy) -> None:
    lines = [line.split() for line in budgets_cli(proxy).splitlines()[1:]]
    assert [f[1] for f in lines] == ["user:bob", "user:alice"]  # bob at 100 %, alice at 1 %
    assert lines[0][3] == f"{LIMIT}/{LIMIT}"


def test_no_raw_identifier_or_key_in_anything_the_proxy_wrote(
    drip: list[Any], proxy: Proxy, key: str
) -> None:
    secrets_ = [*IDS, key]
    assert proxy.leaks(secrets_) == {}
    db_files = sorted(proxy.workdir.glob("budgets.sqlite*"))
    assert db_files, "no budget database written"
    blob = b"".join(f.read_bytes() for f in db_files)
    assert [scrub(v) for v in secrets_ if v.encode() in blob] == []
    listing = budgets_cli(proxy)
    assert [scrub(v) for v in secrets_ if v in listing] == []


def test_identity_from_the_address_map_else_the_address(
    tmp_path: Path, tls_files: TlsFiles, upstream: Upstream
) -> None:
    """Without a proxy login: the policy's address map names the user, else the address."""
    mapped = budget_policy(
        groups={"branch": []},
        networks=[{"cidr": "127.0.0.0/8", "user": "front-desk-pc", "groups": ["branch"]}],
    )
    for policy, user, identity, groups in (
        (mapped, "front-desk-pc", "network", ["branch"]),
        (budget_policy(), "127.0.0.1", "address", []),
    ):
        p = Proxy(tmp_path / identity, policy, tls_files.ca_cert)
        p.extra_args = ["--set", f"dlp_budget_db={p.workdir / 'budgets.sqlite'}"]
        p.start()
        try:
            (answer,) = send(p, None, [MESSAGE_TEXTS[0]], upstream)
            assert answer.status_code == 200
            (event,) = p.wait_audit(lambda e: "incident_id" in e)
            assert (event["user"], event["identity"], event["groups"]) == (user, identity, groups)
            assert count_of(p, f"user:{user}") == PER_MESSAGE
        finally:
            p.stop()
