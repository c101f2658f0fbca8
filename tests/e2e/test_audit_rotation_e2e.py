"""End to end: the audit log rotated under load, the way logrotate does it (rename, then
SIGHUP), and once without the signal. Every incident id a client was shown is in exactly one
of the files afterwards: none lost in a renamed file nobody reads, none written twice.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import ArgsProxy, TlsFiles, Upstream, make_test_policy, wait_for
from tests.synth import resident_id

pytestmark = pytest.mark.e2e

CLIENTS = 4
PER_CLIENT = 250  # 1,000 blocked requests in all
# After how many answers the test rotates; False: rename only, the proxy must notice by itself.
ROTATIONS = [(120, True), (300, True), (450, False), (650, True), (820, True)]
RNG = random.Random(20261128)
IDS = [resident_id(RNG) for _ in range(6)]  # bulk-resident-id: blocked
TEXT = "请核对客户资料：\n" + "\n".join(IDS)


@pytest.fixture
def proxy(tmp_path: Path, tls_files: TlsFiles) -> Iterator[ArgsProxy]:
    # Inspection inline on the loop: no worker processes to start for small bodies.
    p = ArgsProxy(tmp_path, make_test_policy(), tls_files.ca_cert, extra=[])
    p.start()
    yield p
    p.stop()


def _audit_files(proxy: ArgsProxy) -> list[Path]:
    return sorted(proxy.audit_path.parent.glob(proxy.audit_path.name + "*"))


def test_rotation_under_load_loses_and_duplicates_no_record(
    proxy: ArgsProxy, upstream: Upstream
) -> None:
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
        for k, (after, hangup) in enumerate(ROTATIONS, start=1):
            while seen < after:
                assert answered.acquire(timeout=60), "the clients stopped getting answers"
                seen += 1
            # The previous rotation's new file must exist before this one renames it.
            fresh = wait_for(lambda: True if proxy.audit_path.exists() else None, timeout=10)
            assert fresh, f"after rotation {k - 1} no new audit file"
            os.rename(proxy.audit_path, f"{proxy.audit_path}.{k}")
            if hangup:
                os.kill(proxy.pid, signal.SIGHUP)
    finally:
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert statuses == {403: CLIENTS * PER_CLIENT}, statuses
    assert len(set(incidents)) == CLIENTS * PER_CLIENT

    def all_written() -> collections.Counter[str] | None:
        found: collections.Counter[str] = collections.Counter()
        for path in _audit_files(proxy):
            for line in path.read_text("utf-8").splitlines():
                event = json.loads(line)  # a torn line would fail here
                if "incident_id" in event:
                    found[event["incident_id"]] += 1
        return found if set(incidents) <= set(found) else None

    found = wait_for(all_written, timeout=10) or all_written() or collections.Counter()
    missing = set(incidents) - set(found)
    assert not missing, f"{len(missing)} of {len(incidents)} incidents are in no audit file"
    twice = {i: n for i, n in found.items() if n > 1}
    assert not twice, f"written more than once: {sorted(twice)[:5]}"
    assert set(found) == set(incidents)  # and nothing the clients did not cause
    # Each rotation took records away with it and the proxy went on in a new file: after the
    # rename without a signal too (the file at the path is new, no rotation is left empty).
    counts = {p.name: sum('"incident_id"' in ln for ln in p.read_text().splitlines())
              for p in _audit_files(proxy)}  # fmt: skip
    assert len(counts) == len(ROTATIONS) + 1 and all(counts.values()), counts
    # The signal also reloaded the policy, audited once per signal in whichever file was open.
    reloads = [
        e
        for p in _audit_files(proxy)
        for e in map(json.loads, p.read_text().splitlines())
        if e.get("trigger") == "SIGHUP"
    ]
    assert len(reloads) == sum(hangup for _, hangup in ROTATIONS)
    assert proxy.running
    assert proxy.metric("dlp_audit_write_failures_total") == 0
    assert proxy.leaks(IDS) == {}
