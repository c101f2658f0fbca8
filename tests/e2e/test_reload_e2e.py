"""The admin edits the policy while people chat: the new rule applies within seconds, nobody's
request fails or slips through during the swap, a broken edit changes nothing, SIGHUP reloads."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Proxy, Upstream, make_test_policy, sample_value, write_policy
from tests.synth import customer_records, records_chat_text

pytestmark = pytest.mark.e2e

TWO = records_chat_text(customer_records(2, seed=31))  # 2 IDs: logged by the shipped rules
SIX = records_chat_text(customer_records(6, seed=32))  # 6 IDs: always blocked
ORDINARY = "亲，这款箱子还有黑色的吗？"


def _two_ids_rule(policy: dict[str, Any]) -> None:
    policy["rules"].insert(
        0,
        {
            "name": "two-ids",
            "action": "block",
            "when": [{"detector": "cn_resident_id", "min_distinct": 2}],
        },
    )


def _send(proxy: Proxy, upstream: Upstream, text: str, marker: str) -> int:
    with proxy.client() as client:
        r = client.post(
            upstream.url("https", f"/reload/{marker}"),
            content=json.dumps({"m": text}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
    return r.status_code


def _version(proxy: Proxy) -> str:
    for line in proxy.metrics().splitlines():
        if line.startswith("dlp_policy_info{"):
            return line.split('version="', 1)[1].split('"', 1)[0]
    return ""


def test_policy_edits_apply_live(tmp_path: Path, upstream: Upstream) -> None:
    proxy = Proxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    try:
        assert _send(proxy, upstream, TWO, "before") == 200

        # Chat keeps going through every swap: ordinary messages pass, six IDs never do.
        outcomes: list[tuple[str, int]] = []
        stop = threading.Event()

        def chatter() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    outcomes.append(("ordinary", _send(proxy, upstream, ORDINARY, f"o{n}")))
                    outcomes.append(("six", _send(proxy, upstream, SIX, f"six-{n}")))
                except Exception as e:  # a failed request is what this test looks for
                    outcomes.append((type(e).__name__, -1))

        worker = threading.Thread(target=chatter, daemon=True)
        worker.start()

        # 1. A new rule: two IDs are now blocked, within 2 s of the edit.
        edited = make_test_policy(edit=_two_ids_rule)
        tmp = proxy.policy_path.with_suffix(".tmp")
        write_policy(edited, tmp)
        os.replace(tmp, proxy.policy_path)
        saved = time.monotonic()
        while _send(proxy, upstream, TWO, "after") != 403:
            assert time.monotonic() - saved < 2.0, "the new rule did not apply within 2 s"
            time.sleep(0.1)
        good_version = _version(proxy)

        # 2. A broken edit: the last good policy stays, the log and the metrics say so.
        proxy.policy_path.write_text("version: 1\nrules: [ {name: oops\n", encoding="utf-8")
        deadline = time.monotonic() + 10
        while (
            sample_value(proxy.metrics(), "dlp_policy_reloads_total", {"result": "failure"}) or 0
        ) < 1:
            assert time.monotonic() < deadline, "the broken edit was not noticed"
            time.sleep(0.1)
        assert _send(proxy, upstream, TWO, "broken") == 403
        assert _version(proxy) == good_version
        assert "reload (file change) failed" in proxy.output()

        # 3. SIGHUP: a change the watcher cannot see (same size, same mtime) is loaded on it.
        write_policy(edited, proxy.policy_path)
        deadline = time.monotonic() + 10
        while (
            _version(proxy) != good_version
            or (
                sample_value(proxy.metrics(), "dlp_policy_reloads_total", {"result": "success"})
                or 0
            )
            < 2
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        text = proxy.policy_path.read_text(encoding="utf-8")
        stat = proxy.policy_path.stat()
        quiet = text.replace("min_distinct: 2", "min_distinct: 3", 1)
        assert len(quiet) == len(text)
        proxy.policy_path.write_text(quiet, encoding="utf-8")
        os.utime(proxy.policy_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(1.5)
        assert _version(proxy) == good_version, "the watcher saw an invisible change"
        assert proxy._proc is not None
        proxy._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _version(proxy) == good_version:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
        assert _send(proxy, upstream, TWO, "sighup") == 200  # two IDs are below three again

        stop.set()
        worker.join(30)
        failed = [o for o in outcomes if o[1] == -1]
        assert not failed, f"{len(failed)} requests failed during the swaps: {failed[:3]}"
        assert all(code == 200 for kind, code in outcomes if kind == "ordinary")
        assert all(code == 403 for kind, code in outcomes if kind == "six")
        assert len(outcomes) > 20
        leaked = len(upstream.recorder.requests("/reload/six-"))
        assert leaked == 0, f"{leaked} messages with six IDs reached the upstream"

        loads = [e for e in proxy.audit_events() if e.get("event") == "policy_loaded"]
        assert [e["trigger"] for e in loads][:2] == ["start", "file change"]
        assert loads[1]["changes"]["rules"] == {"added": ["two-ids"]}
        assert loads[-1]["trigger"] == "SIGHUP"
    finally:
        proxy.stop()


class AdminProxy(Proxy):
    """The proxy with its admin API on."""

    token = "e2e-admin-token-" + "7" * 16

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from tests.e2e.harness import free_port

        self.admin_port = free_port()
        self.token_file = self.workdir / "admin.token"
        self.token_file.write_text(self.token, encoding="utf-8")

    @property
    def command(self) -> list[str]:
        return [
            *super().command,
            "--set",
            f"dlp_admin_port={self.admin_port}",
            "--set",
            f"dlp_admin_token_file={self.token_file}",
        ]


def test_admin_api_replaces_the_policy_of_the_running_proxy(
    tmp_path: Path, upstream: Upstream
) -> None:
    import httpx
    import yaml

    proxy = AdminProxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    try:
        api = f"http://127.0.0.1:{proxy.admin_port}"
        auth = {"Authorization": f"Bearer {proxy.token}"}
        assert httpx.get(api + "/policy", trust_env=False).status_code == 401
        assert _send(proxy, upstream, TWO, "api-before") == 200
        new = yaml.safe_dump(make_test_policy(edit=_two_ids_rule), allow_unicode=True)
        r = httpx.put(api + "/policy", content=new.encode(), headers=auth, trust_env=False)
        assert r.status_code == 200 and r.json()["reloaded"] is True
        assert _send(proxy, upstream, TWO, "api-after") == 403
        incidents = httpx.get(api + "/incidents?limit=5", headers=auth, trust_env=False).json()
        assert incidents["incidents"][-1]["rule"] == "two-ids"
        events = [e.get("event") for e in proxy.audit_events()]
        assert "policy_update" in events
    finally:
        proxy.stop()
