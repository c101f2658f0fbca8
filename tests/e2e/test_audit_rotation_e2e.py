"""End to end: the audit log rotated under load, the way logrotate does it (rename, then
SIGHUP), once without the signal, and by logrotate itself with deploy/logrotate/dlp-proxy.
Every incident id a client was shown is in exactly one of the files afterwards: none lost in a
renamed file nobody reads, none written twice.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import REPO, ArgsProxy, TlsFiles, Upstream, make_test_policy, wait_for
from tests.synth import resident_id

pytestmark = pytest.mark.e2e

CLIENTS = 4
PER_CLIENT = 250  # 1,000 blocked requests in all
RNG = random.Random(20261128)
IDS = [resident_id(RNG) for _ in range(6)]  # bulk-resident-id: blocked
TEXT = "请核对客户资料：\n" + "\n".join(IDS)
LOGROTATE = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin")


@pytest.fixture
def proxy(tmp_path: Path, tls_files: TlsFiles) -> Iterator[ArgsProxy]:
    p = ArgsProxy(tmp_path, make_test_policy(), tls_files.ca_cert, extra=[])
    p.start()
    yield p
    p.stop()


def blocked_load(
    proxy: ArgsProxy, upstream: Upstream, rotations: list[int], rotate: Callable[[int], None]
) -> list[str]:
    """1,000 blocked requests from 4 clients; ``rotate(k)`` once the k-th entry of
    ``rotations`` (a number of answers) is reached. The incident ids the clients were shown."""
    incidents: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    answered = threading.Semaphore(0)
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(proxy=proxy.url, trust_env=False, timeout=30) as c:
            for i in range(PER_CLIENT):
                r = c.post(
                    upstream.url("http", f"/chat/rotate-{n}-{i}"),
                    content=TEXT.encode(),
                    headers={"content-type": "text/plain; charset=utf-8"},
                )
                with lock:
                    statuses[r.status_code] += 1
                    if "X-DLP-Incident" in r.headers:
                        incidents.append(r.headers["X-DLP-Incident"])
                answered.release()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    seen = 0
    try:
        for k, after in enumerate(rotations, start=1):
            while seen < after:
                assert answered.acquire(timeout=60), "the clients stopped getting answers"
                seen += 1
            # The previous rotation's new file must exist before this one renames it.
            fresh = wait_for(lambda: True if proxy.audit_path.exists() else None, timeout=10)
            assert fresh, f"after rotation {k - 1} no new audit file"
            rotate(k)
    finally:
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert statuses == {403: CLIENTS * PER_CLIENT}, statuses
    assert len(set(incidents)) == CLIENTS * PER_CLIENT
    return incidents


def _read(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def _audit_files(proxy: ArgsProxy) -> list[Path]:
    return sorted(proxy.audit_path.parent.glob(proxy.audit_path.name + "*"))


def _events(proxy: ArgsProxy) -> list[dict[str, object]]:
    return [json.loads(ln) for p in _audit_files(proxy) for ln in _read(p).splitlines()]


def assert_each_once(proxy: ArgsProxy, incidents: list[str]) -> None:
    def all_written() -> collections.Counter[str] | None:
        found = collections.Counter(
            str(e["incident_id"]) for e in _events(proxy) if "incident_id" in e
        )
        return found if set(incidents) <= set(found) else None

    found = wait_for(all_written, timeout=10) or collections.Counter()
    missing = set(incidents) - set(found)
    assert not missing, f"{len(missing)} of {len(incidents)} incidents are in no audit file"
    twice = {i: n for i, n in found.items() if n > 1}
    assert not twice, f"written more than once: {sorted(twice)[:5]}"
    assert set(found) == set(incidents)  # and nothing the clients did not cause
    # Each rotation took records away with it, and the proxy went on in a new file.
    counts = {p.name: _read(p).count('"incident_id"') for p in _audit_files(proxy)}
    assert all(counts.values()), counts
    assert proxy.running
    assert proxy.metric("dlp_audit_write_failures_total") == 0
    assert proxy.leaks(IDS) == {}


def test_rotation_under_load_loses_and_duplicates_no_record(
    proxy: ArgsProxy, upstream: Upstream
) -> None:
    # After how many answers; False: rename only, the proxy must notice by itself.
    rotations = [(120, True), (300, True), (450, False), (650, True), (820, True)]

    def rotate(k: int) -> None:
        os.rename(proxy.audit_path, f"{proxy.audit_path}.{k}")
        if rotations[k - 1][1]:
            os.kill(proxy.pid, signal.SIGHUP)

    incidents = blocked_load(proxy, upstream, [n for n, _ in rotations], rotate)
    assert_each_once(proxy, incidents)
    assert len(_audit_files(proxy)) == len(rotations) + 1
    # The signal also reloaded the policy, audited once per signal in whichever file was open.
    # The reload runs in a thread after the reopen; the last one may finish after the clients.
    hangups = sum(hangup for _, hangup in rotations)

    def reloads() -> int:
        return sum(e.get("trigger") == "SIGHUP" for e in _events(proxy))

    wait_for(lambda: True if reloads() >= hangups else None, timeout=30)
    assert reloads() == hangups


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed (scripts/setup)")
def test_the_shipped_logrotate_config_rotates_a_busy_proxy_without_loss(
    proxy: ArgsProxy, upstream: Upstream, tmp_path: Path
) -> None:
    """deploy/logrotate/dlp-proxy as shipped, but for this proxy's file and pid, numbered
    rather than dated (three rotations in a day): compressed a rotation late, signalled."""
    assert LOGROTATE is not None
    shipped = (REPO / "deploy/logrotate/dlp-proxy").read_text("utf-8")
    assert (
        "/var/log/dlp-proxy/audit*.jsonl {" in shipped and "systemctl kill --signal=HUP" in shipped
    )
    config = re.sub(
        r"^/var/log/dlp-proxy/audit\*\.jsonl \{", f"{proxy.audit_path} {{", shipped, flags=re.M
    )
    config = re.sub(r"^\s*systemctl kill .*$", f"        kill -HUP {proxy.pid}", config, flags=re.M)
    config = re.sub(r"^\s*date(ext|format).*\n", "", config, flags=re.M)
    conf = tmp_path / "logrotate.conf"
    conf.write_text(config, "utf-8")

    def rotate(_: int) -> None:
        run = subprocess.run(
            [LOGROTATE, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr

    incidents = blocked_load(proxy, upstream, [200, 500, 800], rotate)
    assert_each_once(proxy, incidents)
    names = sorted(p.name for p in _audit_files(proxy))
    base = proxy.audit_path.name
    assert names == [base, f"{base}.1", f"{base}.2.gz", f"{base}.3.gz"], names
