"""The Kubernetes Deployment's command line, run as the pod would run it.

The pod's files are laid out the way the kubelet mounts them: the policy ConfigMap and the
Secret as directories of ``..data`` symlinks, the CA as the three files the Secret's items
name (no ``.p12``, no ``.cer``), and the paths in the Deployment's args mapped onto them. The
audit log goes to standard error, where the cluster's log collector reads it.
"""

from __future__ import annotations

import json
import os
import secrets as secrets_module
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import (
    REPO,
    Proxy,
    Upstream,
    make_test_policy,
    proxy_executable,
    write_policy,
)
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

DEPLOYMENT = yaml.safe_load((REPO / "deploy" / "k8s" / "deployment.yaml").read_text("utf-8"))
SIX = customer_records(6, seed=83)


def kubelet_volume(root: Path, files: dict[str, bytes]) -> None:
    """``root/name -> ..data/name``, ``..data -> ..<timestamp>``, as the kubelet writes them."""
    data = root / "..2026_11_28_09_00_00.1"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_bytes(content)
        (data / name).chmod(0o440)
        (root / name).symlink_to(f"..data/{name}")
    (root / "..data").symlink_to(data.name)


class PodProxy(Proxy):
    """dlp-proxy started with the Deployment's args, its mounts replaced by local directories."""

    def __init__(self, workdir: Path, upstream: Upstream, secrets: Path) -> None:
        super().__init__(workdir, make_test_policy(), upstream.tls.ca_cert)
        pod = DEPLOYMENT["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts: dict[str, Path] = {}
        for mount in container["volumeMounts"]:
            local = workdir / "pod" / mount["name"]
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                text = yaml.safe_dump(self.policy, allow_unicode=True).encode()
                kubelet_volume(local, {"policy.yaml": text})
            elif "secret" in volume:
                items = {
                    i["path"]: (secrets / i["key"]).read_bytes() for i in volume["secret"]["items"]
                }
                kubelet_volume(local, items)
            else:
                local.mkdir(parents=True)
            mounts[mount["mountPath"]] = local
        self.policy_path = mounts["/etc/dlp-proxy/policy"] / "policy.yaml"
        self.confdir = next(p for m, p in mounts.items() if m.endswith("/ca"))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args: list[str] = []
        for arg in container["args"]:
            name, _, value = arg.partition("=")
            for path, local in mounts.items():
                if value == path or value.startswith(path + "/"):
                    arg = f"{name}={local}{value.removeprefix(path)}"
            assert "=/etc/" not in arg, f"{arg}: not mapped to a mount"
            arg = {str(ports["proxy"]): str(self.port)}.get(arg, arg)
            arg = arg.replace(
                f"dlp_metrics_port={ports['metrics']}", f"dlp_metrics_port={self.metrics_port}"
            )
            args.append(arg.replace("0.0.0.0", "127.0.0.1"))
        self.args = [*args, "--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}"]

    @property
    def command(self) -> list[str]:
        return [str(proxy_executable()), *self.args]

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log is standard error: its JSON lines among the proxy's log lines."""
        out = []
        for line in self.stderr_path.read_text("utf-8", "replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Secret's keys, as install.sh creates them (see deploy/k8s/secret.yaml)."""
    stage = tmp_path_factory.mktemp("stage")
    subprocess.run(
        [str(REPO / "deploy" / "systemd" / "install.sh"), "--root", str(stage), "--no-venv"],
        check=True,
        capture_output=True,
        env=dict(os.environ, DLP_PYTHON=sys.executable),
    )
    out = tmp_path_factory.mktemp("secret")
    etc = stage / "etc" / "dlp-proxy"
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca-cert.pem", "mitmproxy-dhparam.pem"):
        shutil.copyfile(etc / "ca" / name, out / name)
    shutil.copyfile(etc / "hmac.key", out / "hmac.key")
    (out / "redis-password").write_text(secrets_module.token_urlsafe(24))
    return out


def test_deployment_command_line_serves_and_audits_to_stderr(
    tmp_path: Path, upstream: Upstream, secrets: Path
) -> None:
    proxy = PodProxy(tmp_path, upstream, secrets)
    proxy.sent_values.update(raw_values(SIX))
    proxy.start()
    try:
        with proxy.client() as client:
            ok = client.get(upstream.url("https", "/pod/ok"))
            blocked = client.post(
                upstream.url("https", "/pod/bulk"),
                json={"m": records_chat_text(SIX)},
                headers={"Accept": "application/json"},
            )
        assert ok.status_code == 200 and blocked.status_code == 403
        incident = blocked.headers["X-DLP-Incident"]
        (event,) = proxy.wait_audit(lambda e: e.get("incident_id") == incident)
        assert event["action"] == "block" and event["client"] == "127.0.0.1"
        loads = proxy.wait_audit(lambda e: e.get("event") == "policy_loaded")
        assert loads and loads[0]["path"] == str(proxy.policy_path)

        # A ConfigMap update: the kubelet writes a new directory and swaps ..data.
        root = proxy.policy_path.parent
        edited = make_test_policy(overrides={"mode": "monitor"})
        new = root / "..2026_11_28_09_05_00.2"
        new.mkdir()
        write_policy(edited, new / "policy.yaml")
        (root / "..data_tmp").symlink_to(new.name)
        os.replace(root / "..data_tmp", root / "..data")
        reloaded = proxy.wait_audit(lambda e: e.get("trigger") == "file change", timeout=10)
        assert reloaded, "the ConfigMap update was not picked up"
        assert not proxy.leaks(raw_values(SIX), metrics=False)
    finally:
        proxy.stop()
