"""A Kubernetes ConfigMap update reaches the running proxy.

The kubelet mounts a ConfigMap as ``policy.yaml -> ..data/policy.yaml`` with ``..data`` a
symlink to a timestamped directory; an update writes a new directory and swaps ``..data`` in one
rename, then deletes the old directory. The proxy watches the path it was given (never the
resolved one, which disappears), so the swap is a file change like any other.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Proxy, Upstream, make_test_policy, write_policy
from tests.synth import customer_records, raw_values, records_chat_text

pytestmark = pytest.mark.e2e

TWO = customer_records(2, seed=61)  # two IDs: allowed by the shipped rules


def _ids_rule(min_distinct: int) -> Any:
    def edit(policy: dict[str, Any]) -> None:
        rule = {"detector": "cn_resident_id", "min_distinct": min_distinct}
        policy["rules"].insert(0, {"name": "few-ids", "action": "block", "when": [rule]})

    return edit


class ConfigMapVolume:
    """A directory laid out and updated the way the kubelet's atomic writer does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self.current: Path | None = None

    def publish(self, policy: dict[str, Any], *, like: Path | None = None) -> None:
        self.generation += 1
        data = self.root / f"..2026_11_28_00_00_{self.generation:02d}.{os.getpid()}"
        data.mkdir()
        write_policy(policy, data / "policy.yaml")
        if like is not None:  # same size and modification time as the file it replaces
            st = like.stat()
            os.utime(data / "policy.yaml", ns=(st.st_atime_ns, st.st_mtime_ns))
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.root / "..data")
        link = self.root / "policy.yaml"
        if not link.is_symlink():
            link.symlink_to("..data/policy.yaml")
        if self.current is not None:
            shutil.rmtree(self.current)
        self.current = data

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"


def _send(proxy: Proxy, upstream: Upstream, marker: str) -> int:
    with proxy.client() as client:
        r = client.post(
            upstream.url("https", f"/cm/{marker}"),
            content=json.dumps({"m": records_chat_text(TWO)}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
    return r.status_code


def _wait_status(proxy: Proxy, upstream: Upstream, want: int, marker: str) -> float:
    start = time.monotonic()
    n = 0
    while (status := _send(proxy, upstream, f"{marker}-{n}")) != want:
        assert time.monotonic() - start < 5, f"still {status} 5 s after the ConfigMap update"
        n += 1
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.parametrize("same_stat", [False, True], ids=["kubelet", "same-size-and-mtime"])
def test_configmap_swap_reloads_the_policy(
    tmp_path: Path, upstream: Upstream, same_stat: bool
) -> None:
    volume = ConfigMapVolume(tmp_path / "configmap")
    # Two versions of one length: the rule needs nine IDs, then two.
    base = make_test_policy(edit=_ids_rule(9))
    blocking = make_test_policy(edit=_ids_rule(2))
    volume.publish(base)
    proxy = Proxy(tmp_path / "proxy", base, upstream.tls.ca_cert)
    proxy.policy_path = volume.path
    proxy.sent_values.update(raw_values(TWO))
    proxy.start()
    try:
        assert _send(proxy, upstream, "before") == 200
        old = volume.path.resolve()
        write_policy(blocking, tmp_path / "probe.yaml")
        assert (tmp_path / "probe.yaml").stat().st_size == old.stat().st_size
        volume.publish(blocking, like=old if same_stat else None)
        _wait_status(proxy, upstream, 403, "after")
        volume.publish(base, like=volume.path.resolve() if same_stat else None)  # roll back
        _wait_status(proxy, upstream, 200, "rollback")
        loads = [e for e in proxy.audit_events() if e.get("event") == "policy_loaded"]
        assert [e["trigger"] for e in loads] == ["start", "file change", "file change"]
        assert loads[1]["changes"]["rules"] == {"changed": ["few-ids"]}
        assert not proxy.leaks(raw_values(TWO), metrics=False)
    finally:
        proxy.stop()
