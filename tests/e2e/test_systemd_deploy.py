"""deploy/systemd: the units pass ``systemd-analyze verify``, their exposure score is the one
docs/deploy.md states, ``install.sh`` lays out a host with root-only secrets, and the proxy
started with the unit's own command line works inside the unit's main restrictions.

No systemd runs as PID 1 on the test machines, so the last test rebuilds the restrictions that
could break the proxy with the kernel's own tools: a read-only system (ProtectSystem=strict),
/proc with only processes in it (ProcSubset=pid, ProtectProc=invisible), no capabilities
(CapabilityBoundingSet=) and no new privileges; the CA and the HMAC key come from a read-only
credentials directory (LoadCredential=). TLS interception and a workbook upload then prove the
proxy and its sandboxed parser children (which set an address-space limit) still work.
MemoryDenyWriteExecute= was rebuilt the same way (the kernel's PR_SET_MDWE) and broke every TLS
connection (pyOpenSSL's cffi callbacks need W+X memory), so the units leave it off. The
system-call filter is not rebuilt here: see docs/deploy.md.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import files
from tests.e2e.harness import REPO, Proxy, Upstream, make_test_policy, proxy_executable

pytestmark = pytest.mark.e2e

UNITS = REPO / "deploy" / "systemd"
# Each instance runs the release its own link names (install.sh): worker/N, worker/single.
INSTALLED_BIN = re.compile(r"/opt/dlp-proxy/worker/(?:%i|single)/venv/bin/dlp-proxy")
HARDENING = re.compile(r"# --- hardening.*?# --- end of hardening ---", re.S)
DEPLOY_DOC = REPO / "docs" / "deploy.md"


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, continuation lines joined."""
    out: list[tuple[str, str, str]] = []
    section = ""
    text = path.read_text("utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def unit_value(path: Path, key: str) -> list[str]:
    return [v for _, k, v in unit_entries(path) if k == key]


@pytest.fixture(scope="module")
def units_for_verify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units with ExecStart pointing at this checkout's dlp-proxy (verify checks that the
    binary exists); nothing else changed."""
    out = tmp_path_factory.mktemp("units")
    for unit in UNITS.glob("dlp-proxy*"):
        text = unit.read_text("utf-8")
        assert INSTALLED_BIN.search(text) or unit.suffix == ".target"
        (out / unit.name).write_text(INSTALLED_BIN.sub(str(proxy_executable()), text))
    return out


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd
def test_units_pass_systemd_analyze_verify(units_for_verify: Path) -> None:
    names = sorted(p.name for p in units_for_verify.iterdir())
    assert names == ["dlp-proxy.service", "dlp-proxy.target", "dlp-proxy@.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", *(f"./{n}" for n in names)],
        cwd=units_for_verify,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd
@pytest.mark.parametrize("unit", ["dlp-proxy.service", "dlp-proxy@.service"])
def test_exposure_score_is_low_and_documented(units_for_verify: Path, unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", f"./{unit}"],
        cwd=units_for_verify,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr
    score = float(found.group(1))
    assert score <= 2.0, f"{unit}: exposure {score}\n{result.stdout}"
    documented = re.search(r"exposure level[^0-9]*([0-9.]+)", DEPLOY_DOC.read_text("utf-8"))
    assert documented and float(documented.group(1)) == score, "update docs/deploy.md"


def test_both_units_share_one_hardening_block() -> None:
    single = HARDENING.search((UNITS / "dlp-proxy.service").read_text("utf-8"))
    worker = HARDENING.search((UNITS / "dlp-proxy@.service").read_text("utf-8"))
    assert single and worker
    strip = lambda block: [ln for ln in block.group().splitlines()[1:] if ln.strip()]  # noqa: E731
    assert strip(single) == strip(worker)
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "no"),
    ]:
        assert value in unit_value(UNITS / "dlp-proxy@.service", key), key
    for unit in ("dlp-proxy.service", "dlp-proxy@.service"):
        assert unit_value(UNITS / unit, "User") == ["dlp-proxy"]
        assert unit_value(UNITS / unit, "Restart") == ["on-failure"]
        assert unit_value(UNITS / unit, "StandardOutput") == ["journal"]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host tree laid out by install.sh --root (two workers), reusing this checkout's venv."""
    root = tmp_path_factory.mktemp("host")
    result = subprocess.run(
        [str(UNITS / "install.sh"), "--root", str(root), "--workers", "2", "--no-venv"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, DLP_PYTHON=str(Path(proxy_executable()).parent / "python")),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_install_lays_out_the_host(staged: Path) -> None:
    etc = staged / "etc" / "dlp-proxy"
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(etc / "hmac.key") == 0o600 and len((etc / "hmac.key").read_bytes()) >= 32
    assert mode(etc / "ca") == 0o700
    assert mode(etc / "ca" / "mitmproxy-ca.pem") == 0o600
    assert b"PRIVATE KEY" in (etc / "ca" / "mitmproxy-ca.pem").read_bytes()
    ports = set()
    for n in (1, 2):
        env = dict(
            line.split("=", 1)
            for line in (etc / f"worker-{n}.env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        ports |= {env["DLP_LISTEN_PORT"], env["DLP_METRICS_PORT"]}
        assert env["DLP_LISTEN_HOST"] == "127.0.0.1"
        assert "dlp_proxy_protocol=true" in env["DLP_ARGS"]
    assert len(ports) == 4
    # Every credential the units load exists where they look for it.
    for unit in ("dlp-proxy.service", "dlp-proxy@.service"):
        for cred in unit_value(UNITS / unit, "LoadCredential"):
            assert (staged / cred.split(":", 1)[1].lstrip("/")).is_file(), cred
    assert (staged / "etc" / "systemd" / "system" / "dlp-proxy@.service").is_file()
    assert (
        staged / "opt" / "dlp-proxy" / "current" / "dlp_addon" / "patterns" / "detectors.yaml"
    ).is_file()

    # Run again: nothing secret is replaced.
    key = (etc / "hmac.key").read_bytes()
    ca = (etc / "ca" / "mitmproxy-ca.pem").read_bytes()
    subprocess.run(
        [str(UNITS / "install.sh"), "--root", str(staged), "--workers", "2", "--no-venv"],
        capture_output=True,
        check=True,
    )
    assert (etc / "hmac.key").read_bytes() == key
    assert (etc / "ca" / "mitmproxy-ca.pem").read_bytes() == ca


# --- releases: one worker at a time, and back ------------------------------------------------


def install(root: Path, *args: str) -> str:
    result = subprocess.run(
        [str(UNITS / "install.sh"), "--root", str(root), "--no-venv", *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, DLP_PYTHON=str(Path(proxy_executable()).parent / "python")),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def runs(root: Path, instance: str) -> str:
    """The release instance ``instance`` runs: what its unit's ExecStart resolves to."""
    return (root / "opt" / "dlp-proxy" / "worker" / instance).resolve().name


def releases(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "opt" / "dlp-proxy" / "releases").iterdir())


def test_an_upgrade_installs_beside_and_moves_one_worker_at_a_time(tmp_path: Path) -> None:
    install(tmp_path, "--workers", "2")
    (first,) = releases(tmp_path)
    assert runs(tmp_path, "1") == runs(tmp_path, "2") == first
    assert (
        tmp_path / "opt/dlp-proxy/releases" / first / "dlp_addon/patterns/policy.yaml"
    ).is_file()
    assert not list((tmp_path / "opt/dlp-proxy/releases" / first).rglob("*.so"))

    # The upgrade: a second release; the running workers keep theirs until switched.
    out = install(tmp_path, "--workers", "2")
    second = next(r for r in releases(tmp_path) if r != first)
    assert (tmp_path / "opt/dlp-proxy/current").resolve().name == second
    assert runs(tmp_path, "1") == runs(tmp_path, "2") == first
    assert "--switch N" in out
    # The runbook's step: worker 1 alone moves; worker 2 still runs the old code.
    switch = tmp_path / "opt/dlp-proxy/current/deploy/systemd/install.sh"
    subprocess.run([str(switch), "--root", str(tmp_path), "--switch", "1"], check=True)
    assert (runs(tmp_path, "1"), runs(tmp_path, "2")) == (second, first)
    # Rollback: worker 1 back on the release it ran before.
    subprocess.run(
        [str(switch), "--root", str(tmp_path), "--switch", "1", "--release", first], check=True
    )
    assert (runs(tmp_path, "1"), runs(tmp_path, "2")) == (first, first)
    bad = subprocess.run(
        [str(switch), "--root", str(tmp_path), "--switch", "1", "--release", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "no release nope" in bad.stderr
    assert runs(tmp_path, "1") == first
    # A worker added later starts on the newest release.
    install(tmp_path, "--workers", "3")
    assert runs(tmp_path, "3") == (tmp_path / "opt/dlp-proxy/current").resolve().name
    assert runs(tmp_path, "1") == first


def test_old_releases_are_pruned_but_never_one_in_use(tmp_path: Path) -> None:
    install(tmp_path, "--workers", "1")
    (pinned,) = releases(tmp_path)
    for _ in range(4):
        install(tmp_path, "--workers", "1")
    kept = releases(tmp_path)
    assert pinned in kept, "the release worker 1 runs was removed"
    assert len(kept) == 4  # the three newest and the one in use
    install(tmp_path, "--workers", "1", "--restart-all")
    assert runs(tmp_path, "1") == (tmp_path / "opt/dlp-proxy/current").resolve().name
    assert pinned not in releases(tmp_path)


def test_install_writes_the_haproxy_config_the_runbook_drains(staged: Path) -> None:
    cfg = staged / "etc" / "dlp-proxy" / "haproxy.cfg"
    text = cfg.read_text()
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert haproxy, "haproxy is not installed (scripts/setup installs it)"
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in text
    assert "backend dlp_workers" in text
    for n in (1, 2):
        env = (staged / "etc" / "dlp-proxy" / f"worker-{n}.env").read_text()
        port = re.search(r"^DLP_LISTEN_PORT=(\d+)$", env, re.M)
        metrics = re.search(r"^DLP_METRICS_PORT=(\d+)$", env, re.M)
        assert port and metrics
        assert (
            f"server w{n} 127.0.0.1:{port.group(1)} check port {metrics.group(1)} send-proxy-v2"
            in text
        )
    runbook = (REPO / "docs" / "operations.md").read_text("utf-8")
    assert "set server dlp_workers/wN state drain" in runbook
    assert "/run/haproxy/admin.sock" in runbook


@pytest.mark.skipif(os.geteuid() != 0, reason="may need apt-get for gcc and libssl-dev")
def test_a_release_gets_its_own_venv_with_the_c_pass_built(tmp_path: Path) -> None:
    """The real install path (no --no-venv): a non-editable install with the scanner's C pass
    compiled in the release's own venv, not in the checkout."""
    result = subprocess.run(
        [str(UNITS / "install.sh"), "--root", str(tmp_path), "--workers", "1"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, DLP_PYTHON=_base_python()),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (release,) = releases(tmp_path)
    venv = tmp_path / "opt/dlp-proxy/releases" / release / "venv"
    # Loaded by path: the extension alone (the package's data files are another test's).
    load = (
        "import glob, importlib.util, sysconfig\n"
        "(p,) = glob.glob(sysconfig.get_paths()['platlib'] + '/dlp_addon/detect/_numscan*.so')\n"
        "s = importlib.util.spec_from_file_location('dlp_addon.detect._numscan', p)\n"
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); print(m.__file__)\n"
    )
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", load], capture_output=True, text=True, cwd=tmp_path
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(venv / "lib"))
    source = tmp_path / "opt/dlp-proxy/releases" / release / "dlp_addon" / "detect"
    assert not list(source.glob("*.so")), "the extension was built into the release's source"
    installed = list((venv / "lib").glob("python3.*/site-packages/dlp_addon/__init__.py"))
    assert installed, "the release's venv does not hold the package (an editable install?)"
    assert (tmp_path / "opt/dlp-proxy/worker/1/venv/bin/dlp-proxy").is_file()


def _base_python() -> str:
    """The interpreter this checkout's venv was made from (a venv's python cannot make one
    outside itself portably)."""
    import sys

    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


# --- the unit's command line inside its restrictions -------------------------------------------

# Run inside new mount and PID namespaces: everything read-only but the proxy's own
# directories and /tmp; /proc with processes only; then no capabilities and no new privileges.
SANDBOX = """\
set -e
mount -t proc -o subset=pid,hidepid=invisible proc /proc
for d in $WRITABLE; do mount --bind "$d" "$d"; done
mount -o remount,bind,ro /
mount --bind "$CREDENTIALS" "$CREDENTIALS"
mount -o remount,bind,ro "$CREDENTIALS"
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all --ambient-caps=-all -- "$@"
"""


def unit_command(unit: Path, env: dict[str, str], specifiers: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: specifiers, ``${VAR}`` in place, ``$VAR`` as words."""
    (line,) = unit_value(unit, "ExecStart")
    for spec, value in specifiers.items():
        line = line.replace(spec, value)
    words: list[str] = []
    for word in shlex.split(line):
        if re.fullmatch(r"\$[A-Z_]+", word):
            words += env.get(word[1:], "").split()
        else:
            words.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], word))
    return words


def proxy_proc(port: int) -> Path:
    """/proc/PID of the dlp-proxy process listening on ``port``."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/dlp-proxy") for a in argv[:2]) and str(port).encode() in argv:
            return entry
    raise AssertionError(f"no dlp-proxy process with port {port}")


class SandboxedProxy(Proxy):
    """The proxy started by dlp-proxy.service's own ExecStart, inside the restrictions above."""

    def __init__(self, workdir: Path, upstream: Upstream, staged: Path) -> None:
        super().__init__(workdir, make_test_policy(), upstream.tls.ca_cert)
        self.credentials = workdir / "credentials"
        self.credentials.mkdir(mode=0o700)
        unit = UNITS / "dlp-proxy.service"
        for cred in unit_value(unit, "LoadCredential"):
            name, source = cred.split(":", 1)
            target = self.credentials / name
            shutil.copyfile(staged / source.lstrip("/"), target)
            target.chmod(0o400)
        self.confdir = self.credentials
        self.logs = workdir / "log"
        self.logs.mkdir()
        self.audit_path = self.logs / "audit.jsonl"
        env = {
            "DLP_LISTEN_HOST": self.host,
            "DLP_LISTEN_PORT": str(self.port),
            "DLP_METRICS_HOST": self.host,
            "DLP_METRICS_PORT": str(self.metrics_port),
            "DLP_ARGS": f"--set ssl_verify_upstream_trusted_ca={self.upstream_ca}",
        }
        command = unit_command(unit, env, {"%d": str(self.credentials), "%i": "1"})
        command = [
            INSTALLED_BIN.sub(str(proxy_executable()), w)
            .replace("/etc/dlp-proxy/policy.yaml", str(self.policy_path))
            .replace("/var/log/dlp-proxy/", f"{self.logs}/")
            for w in command
        ]
        script = (
            f"WRITABLE={shlex.quote(f'{workdir} /tmp')}\n"
            f"CREDENTIALS={shlex.quote(str(self.credentials))}\n" + SANDBOX
        )
        self._command = [
            "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "sh", "-c", script, "sandbox",
            *command,
        ]  # fmt: skip

    @property
    def command(self) -> list[str]:
        return self._command


@pytest.fixture(scope="module")
def sandboxed(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, staged: Path
) -> Iterator[SandboxedProxy]:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv to rebuild the unit's restrictions")
    proxy = SandboxedProxy(tmp_path_factory.mktemp("sandboxed"), upstream, staged)
    proxy.start()
    yield proxy
    proxy.stop()


ROWS = files.customer_rows(12, seed=77)
VALUES = {
    c for row in ROWS for c in row if isinstance(c, str) and sum(ch.isdigit() for ch in c) >= 7
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_unit_command_line_works_inside_the_units_restrictions(
    sandboxed: SandboxedProxy, upstream: Upstream
) -> None:
    sandboxed.sent_values.update(VALUES)
    with sandboxed.client() as client:
        price = client.post(
            upstream.url("https", "/sandboxed/price"),
            files={"file": ("价目表.xlsx", files.price_list_xlsx(), XLSX)},
        )
        customers = client.post(
            upstream.url("https", "/sandboxed/customers"),
            files={"file": ("客户资料.xlsx", files.xlsx(ROWS), XLSX)},
            headers={"Accept": "application/json"},
        )
    assert price.status_code == 200, price.text[:200]
    assert upstream.recorder.requests("/sandboxed/price")
    assert customers.status_code == 403
    assert not upstream.recorder.requests("/sandboxed/customers")
    incident = customers.headers["X-DLP-Incident"]
    (event,) = sandboxed.wait_audit(lambda e: e.get("incident_id") == incident)
    # Read by the sandboxed child, not given up on: a workbook with its records counted.
    assert not event["reason"].startswith("unscannable"), event["reason"]
    assert event["files"] and event["files"][0]["kind"] == "xlsx"
    assert event["files"][0]["records"] >= 12
    # The process really ran without capabilities or a way to gain them.
    proc = proxy_proc(sandboxed.port)
    status = (proc / "status").read_text()
    assert re.search(r"^CapEff:\s*0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s*1$", status, re.M), status
    mounts = {
        fields[4]: fields[5] + "," + line.split(" - ", 1)[1]
        for line in (proc / "mountinfo").read_text().splitlines()
        if (fields := line.split())
    }
    assert mounts["/"].startswith("ro"), mounts["/"]
    assert "subset=pid" in mounts["/proc"], mounts["/proc"]
    assert mounts[str(sandboxed.credentials)].startswith("ro")
