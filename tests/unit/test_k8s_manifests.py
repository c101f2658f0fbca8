"""deploy/k8s, checked offline: every built-in object against the Kubernetes OpenAPI schemas
(kubernetes-validate carries them, strict: unknown fields are errors), the ServiceMonitor
against the fields the Prometheus Operator reads, and the references between objects that a
schema cannot see (selectors, port names, volumes, the mounted paths the proxy is told about).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dlp_addon.decide.policy import load_policy
from tests.deploy_support import unknown_options
from tests.e2e.harness import REPO

K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"
APP = {"app.kubernetes.io/name": "dlp-proxy"}


def load_all() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            if doc is not None:
                out.append((path.name, doc))
    return out


OBJECTS = load_all()


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for _, o in OBJECTS if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(
    ("file", "obj"),
    [(f, o) for f, o in OBJECTS if "." not in o["apiVersion"].split("/")[0]]
    + [(f, o) for f, o in OBJECTS if o["apiVersion"].split("/")[0].endswith(".k8s.io")],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_builtin_objects_match_the_kubernetes_schema(file: str, obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{file}: {obj['kind']} {obj['metadata']['name']}: {e.message} at {e.path}")


def test_every_object_is_applied_and_namespaced() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    listed = set(kustomization["resources"])
    files = {f for f, _ in OBJECTS}
    assert listed == files - {"secret.yaml"}  # the Secret is created from files, never applied
    kinds = {o["kind"] for _, o in OBJECTS}
    wanted = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"}
    wanted |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
    assert kinds == wanted
    for _, o in OBJECTS:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "dlp-proxy", o["kind"]


def test_servicemonitor_scrapes_the_metrics_service() -> None:
    monitor = find("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    services = [
        o
        for _, o in OBJECTS
        if o["kind"] == "Service"
        and matches(spec["selector"]["matchLabels"], o["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in services] == ["dlp-proxy-metrics"]
    assert spec["namespaceSelector"]["matchNames"] == [services[0]["metadata"]["namespace"]]
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}


def test_services_reach_the_pods_on_named_ports() -> None:
    pod = find("Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for _, svc in OBJECTS:
        if svc["kind"] != "Service":
            continue
        assert matches(svc["spec"]["selector"], pod["metadata"]["labels"])
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in named, port
    public = find("Service", "dlp-proxy")
    assert public["spec"]["externalTrafficPolicy"] == "Local"  # the audit keeps the desktop
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["proxy"]


def test_deployment_runs_the_proxy_hardened_with_its_policy_and_secrets() -> None:
    deployment = find("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], APP)
    (container,) = pod["containers"]
    args = container["args"]
    assert unknown_options(args) == []
    options = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) == set(volumes)
    assert not any("subPath" in m for m in container["volumeMounts"])  # would freeze the policy

    def mounted(path: str) -> tuple[dict[str, Any], str]:
        directory, _, name = path.rpartition("/")
        return volumes[mounts[directory]], name

    policy_volume, policy_file = mounted(options["dlp_policy"])
    configmap = find("ConfigMap", policy_volume["configMap"]["name"])
    assert policy_file in configmap["data"]
    secret = find("Secret", volumes[mounts[options["confdir"]]]["secret"]["secretName"])
    ca_files = {i["path"] for i in volumes[mounts[options["confdir"]]]["secret"]["items"]}
    assert {"mitmproxy-ca.pem", "mitmproxy-ca-cert.pem", "mitmproxy-dhparam.pem"} <= ca_files
    hmac_volume, hmac_file = mounted(options["dlp_hmac_key_file"])
    assert hmac_file in {i["path"] for i in hmac_volume["secret"]["items"]}
    assert options["dlp_budget_redis"].startswith("redis://")
    assert "@" not in options["dlp_budget_redis"]  # the password never sits in the args
    redis_volume, redis_file = mounted(options["dlp_budget_redis_password_file"])
    assert redis_file in {i["path"] for i in redis_volume["secret"]["items"]}
    for volume in volumes.values():
        for item in volume.get("secret", {}).get("items", []):
            assert item["key"] in secret["stringData"], item
    assert options["dlp_metrics_host"] == "0.0.0.0"
    metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert int(options["dlp_metrics_port"]) == metrics_port["containerPort"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert args[args.index("--listen-port") + 1] == str(
        next(p for p in container["ports"] if p["name"] == "proxy")["containerPort"]
    )
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert "/tmp" in mounts  # the workbook sandbox's fork server needs a writable /tmp
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_configmap_policy_is_valid(tmp_path: Path) -> None:
    text = find("ConfigMap", "dlp-policy")["data"]["policy.yaml"]
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert policy.destinations and policy.rules and policy.budgets


def _generator() -> ModuleType:
    """deploy/k8s/make-configmap, a script without a .py suffix, as a module."""
    loader = importlib.machinery.SourceFileLoader("make_configmap", str(K8S / "make-configmap"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_configmap_is_the_shipped_policy_byte_for_byte() -> None:
    """It used to be a hand-made copy that had fallen behind (no budgets): now generated, and
    any drift fails here. The shipped policy's place is the generator's SHIPPED_POLICY."""
    gen = _generator()
    committed = (K8S / "configmap.yaml").read_text("utf-8")
    assert committed == gen.render(), "run: .venv/bin/python deploy/k8s/make-configmap"
    data = find("ConfigMap", "dlp-policy")["data"]
    assert "policy.yaml" in data
    for key, text in data.items():
        assert text.encode("utf-8") == (gen.SHIPPED_POLICY.parent / key).read_bytes(), key
    check = subprocess.run(
        [sys.executable, str(K8S / "make-configmap"), "--check"], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_generator_carries_the_files_a_policy_names_exactly(tmp_path: Path) -> None:
    """A policy with its own keyword list: both go in, byte for byte, whatever their blank
    lines and indentation; the file the pods then read loads as the same policy."""
    gen = _generator()
    words = "  客户名单\n\n投保人信息\n\n\n"  # indented first line, trailing blank lines
    (tmp_path / "my-words.txt").write_text(words, "utf-8")
    shipped = yaml.safe_load(gen.SHIPPED_POLICY.read_text("utf-8"))
    shipped["custom_detectors"] = [
        {
            "id": "kw_my_customers",
            "name": {"zh": "客户名单", "en": "customer list"},
            "category": "keyword",
            "legal_category": None,
            "words_file": "my-words.txt",
            "validator": "none",
            "confidence": "low",
            "samples": {"match": ["这是投保人信息"], "no_match": ["行李箱"]},
        }
    ]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(shipped, allow_unicode=True) + "# no newline at the end", "utf-8"
    )
    configmap = yaml.safe_load(gen.render(policy))
    assert set(configmap["data"]) == {"policy.yaml", "my-words.txt"}
    for key, text in configmap["data"].items():
        assert text.encode("utf-8") == (tmp_path / key).read_bytes(), key
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for key, text in configmap["data"].items():
        (mounted / key).write_text(text, "utf-8")
    assert "kw_my_customers" in load_policy(mounted / "policy.yaml").detectors.by_id()


def test_hpa_pdb_and_network_policy_cover_the_pods() -> None:
    hpa = find("HorizontalPodAutoscaler")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        find("Deployment")["metadata"]["name"],
    )
    assert hpa["minReplicas"] >= 2  # one pod down for an upgrade still leaves one serving
    pdb = find("PodDisruptionBudget")["spec"]
    labels = find("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(pdb["selector"]["matchLabels"], labels)
    net = find("NetworkPolicy")["spec"]
    assert matches(net["podSelector"]["matchLabels"], labels)
    assert set(net["policyTypes"]) == {"Ingress", "Egress"}
    allowed_in = {p["port"] for rule in net["ingress"] for p in rule["ports"]}
    assert allowed_in == {"proxy", "metrics"}
    internet = [
        to["ipBlock"] for rule in net["egress"] for to in rule.get("to", []) if "ipBlock" in to
    ]
    assert internet and all("10.0.0.0/8" in b["except"] for b in internet)
