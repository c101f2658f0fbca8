"""Starting the proxy the ways an admin does: dlp-proxy with the shipped policy, mitmdump -s,
and a broken policy that must keep the proxy from starting at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    Proxy,
    ProxyStartError,
    Upstream,
    free_port,
    make_test_policy,
    proxy_executable,
)
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

ADDON_FILE = Path(__file__).resolve().parents[2] / "dlp_addon" / "addon.py"


class ScriptProxy(Proxy):
    """The addon loaded into plain mitmdump with ``-s``."""

    @property
    def command(self) -> list[str]:
        cmd = super().command
        return [str(Path(sys.executable).parent / "mitmdump"), "-s", str(ADDON_FILE), *cmd[1:]]


class DefaultPolicyProxy(Proxy):
    """dlp-proxy with no ``dlp_policy`` option: the shipped patterns/policy.yaml."""

    @property
    def command(self) -> list[str]:
        cmd = super().command
        i = cmd.index(f"dlp_policy={self.policy_path}")
        return cmd[: i - 1] + cmd[i + 1 :]


def test_addon_loads_into_plain_mitmdump(tmp_path: Path, upstream: Upstream) -> None:
    proxy = ScriptProxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    try:
        records = customer_records(8, seed=7)
        with proxy.client() as client:
            r = client.post(
                upstream.url("https", "/script/send"),
                json={"content": records_chat_text(records)},
                headers={"Accept": "application/json"},
            )
        assert r.status_code == 403 and r.json()["error"] == "blocked_by_dlp"
        assert not upstream.recorder.requests("/script/send")
        assert not proxy.leaks(raw_values(records))
    finally:
        proxy.stop()


def test_dlp_proxy_uses_the_shipped_policy_by_default(tmp_path: Path, upstream: Upstream) -> None:
    proxy = DefaultPolicyProxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    try:
        # 127.0.0.1 is not among the shipped destinations: refused, never contacted.
        r = httpx.get(upstream.url("http", "/default/probe"), proxy=proxy.url, trust_env=False)
        assert r.status_code == 403 and r.headers.get("X-DLP-Refused") == "not-allowed"
        assert not upstream.recorder.requests("/default/probe")
        assert 'dlp_policy_info{mode="enforce"' in proxy.metrics()
    finally:
        proxy.stop()


def test_invalid_policy_keeps_the_proxy_from_starting(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "destinations:\n  - {name: shop, hosts: [shop.example]}\n"
        "rules:\n  - name: ids\n    action: block\n"
        "    when: [{detector: cn_id, min_distinct: 5}]\n",
        encoding="utf-8",
    )
    port = free_port()
    proc = subprocess.run(
        [str(proxy_executable()), "--listen-host", "127.0.0.1", "-p", str(port),
         "--set", f"confdir={tmp_path / 'conf'}", "--set", f"dlp_policy={policy}",
         "--set", "dlp_metrics_port=0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"{policy}:7: " in proc.stderr and "unknown detector 'cn_id'" in proc.stderr
    assert "listening" not in proc.stdout + proc.stderr


def test_block_json_matches_the_documented_shape(tmp_path: Path, upstream: Upstream) -> None:
    proxy = Proxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.start()
    try:
        records = customer_records(6, seed=9)
        with proxy.client() as client:
            r = client.post(
                upstream.url("https", "/doc/send"),
                content=json.dumps({"m": records_chat_text(records)}),
                headers={"Content-Type": "application/json", "X-Requested-With": "XMLHttpRequest"},
            )
        doc = r.json()
        assert r.status_code == 403 and r.headers["X-DLP-Incident"] == doc["incident_id"]
        assert {"error", "incident_id", "rule", "message_zh", "message_en", "contact"} <= set(doc)
    finally:
        proxy.stop()


def _without_c_pass(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``dlp_addon.detect._numscan`` cannot be imported, as after an
    install that could not build it (a ``sitecustomize`` that blocks the module)."""
    site = tmp_path / "no-c-pass"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nsys.modules['dlp_addon.detect._numscan'] = None\n", encoding="utf-8"
    )
    return {"PYTHONPATH": str(site)}


def test_enforce_mode_refuses_to_start_without_the_compiled_engine(
    tmp_path: Path, upstream: Upstream
) -> None:
    proxy = Proxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.env.update(_without_c_pass(tmp_path))
    with pytest.raises(ProxyStartError) as refused:
        proxy.start()
    assert "needs the compiled scan engine" in str(refused.value)
    assert "dlp_engine=python" in str(refused.value)


def test_the_slow_engine_runs_when_the_admin_chooses_it(tmp_path: Path, upstream: Upstream) -> None:
    proxy = Proxy(tmp_path, make_test_policy(), upstream.tls.ca_cert)
    proxy.env.update(_without_c_pass(tmp_path))
    proxy.extra_args += ["--set", "dlp_engine=python"]
    proxy.start()
    try:
        records = customer_records(10, seed=18)
        with proxy.client() as client:
            r = client.post(
                upstream.url("https", "/slow/send"),
                json={"content": records_chat_text(records)},
                headers={"Accept": "application/json"},
            )
        assert r.status_code == 403 and r.json()["error"] == "blocked_by_dlp"
        assert 'engine="python"' in proxy.metrics()
        assert not proxy.leaks(raw_values(records))
    finally:
        proxy.stop()
