"""The audit log across a rotation: renamed (logrotate), removed, or unwritable for a while.
A record lands in exactly one file, and a blocked request stays blocked whatever the log does.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from dlp_addon.act.audit import AuditLog
from tests.unit.test_addon import ID, _flow, addon_in, policy_file  # noqa: F401 (fixture)


def lines(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text("utf-8").splitlines()]


def test_reopen_after_a_rename_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.write({"n": 1})
    path.rename(tmp_path / "audit.jsonl.1")
    log.write({"n": 2})  # not reopened yet: goes on into the renamed file, not lost
    log.reopen()
    log.write({"n": 3})
    log.close()
    assert lines(tmp_path / "audit.jsonl.1") == [1, 2]
    assert lines(path) == [3]


def test_a_rename_or_removal_without_a_signal_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.CHECK_INTERVAL = 0.0  # the proxy looks at most once a second; here at every write
    log.write({"n": 1})
    path.rename(tmp_path / "audit.jsonl.1")
    log.write({"n": 2})
    path.unlink()
    log.write({"n": 3})
    log.write({"n": 4})
    log.close()
    assert lines(tmp_path / "audit.jsonl.1") == [1]
    assert lines(path) == [3, 4]


def test_blocks_hold_while_the_reopened_log_cannot_be_written(
    policy_file: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The rotated path is taken by a directory: the next block is still a 403 and counted as
    an audit failure; once the path is free again, records are written without a restart."""
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):
            path.rename(tmp_path / "audit.jsonl.1")
            path.mkdir()
            a.audit.reopen()
            f = _flow("shop.example", f"客户 {ID}".encode())
            a.egress.requestheaders(f)
            await a.inspector.request(f)
            assert f.response is not None and f.response.status_code == 403
            assert a.metrics.audit_failures._value.get() == 1
            path.rmdir()
            g = _flow("shop.example", f"客户 {ID}".encode())
            a.egress.requestheaders(g)
            await a.inspector.request(g)
            assert g.response is not None and g.response.status_code == 403
            assert a.metrics.audit_failures._value.get() == 1
            (event,) = [json.loads(x) for x in path.read_text("utf-8").splitlines()]
            assert event["incident_id"] == g.response.headers["X-DLP-Incident"]

    asyncio.run(go())


def test_hangup_reopens_the_log_before_the_policy_reload_writes(
    policy_file: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        with addon_in(policy_file, tmp_path) as (a, _tctx):
            a.audit.write({"event": "before"})
            os.rename(path, tmp_path / "audit.jsonl.1")
            a.policy_holder._hangup()
            assert a.policy_holder._hup_task is not None
            ok, problems = await a.policy_holder._hup_task
            assert ok, problems

    asyncio.run(go())
    (event,) = [json.loads(x) for x in path.read_text("utf-8").splitlines()]
    assert event["event"] == "policy_loaded" and event["trigger"] == "SIGHUP"
    rotated = (tmp_path / "audit.jsonl.1").read_text("utf-8")
    assert '"before"' in rotated and "SIGHUP" not in rotated
