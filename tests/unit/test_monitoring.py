"""deploy/prometheus and deploy/grafana: promtool accepts the config and rules, every alert's
unit test passes, and dashboards and alerts name only metrics the proxy exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dlp_addon.act.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROM = DEPLOY / "prometheus"
METRIC = re.compile(r"\bdlp_[a-z_]+")


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup installs Debian's prometheus package"
    proc = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_promtool(args: tuple[str, ...]) -> None:
    assert "SUCCESS" in _promtool(*args)


def _exported() -> set[str]:
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        r["alert"]
        for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    tested = {
        t["alertname"]
        for case in yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert alerts == tested


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    exported = _exported()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "dlp-proxy.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used, "no metric referenced"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Blocks by rule (per minute)", "Inspection latency", "Policy in force"):
        assert needed in titles
