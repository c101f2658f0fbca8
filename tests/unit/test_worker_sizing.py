"""``dlp_inspect_workers=0`` is sized from what the process may use, not the host's cores.

A pod limited to 2 CPUs on a 64-core node sees 64 cores in ``os.cpu_count()``; half of them
as ~90 MB inspection processes would not fit its memory limit. Fake cgroup trees (v2 and v1)
stand in for /sys/fs/cgroup and /proc/self/cgroup.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dlp_addon import inspect_pool as offload

HOST_CORES = 64


@pytest.fixture(autouse=True)
def many_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(HOST_CORES)))


def v2(tmp_path: Path, limits: dict[str, str], own: str = "/") -> tuple[Path, Path]:
    """A cgroup v2 mount with ``cpu.max`` set per directory, the process in ``own``."""
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for rel, value in limits.items():
        d = root / rel.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value + "\n")
    (root / own.strip("/")).mkdir(parents=True, exist_ok=True)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"0::{own}\n")
    return root, self_cgroup


def v1(tmp_path: Path, quota: str, period: str = "100000", own: str = "/") -> tuple[Path, Path]:
    """A cgroup v1 mount (cpu,cpuacct hierarchy) with the quota on the process's own group."""
    root = tmp_path / "cgroup"
    d = root / "cpu,cpuacct" / own.strip("/")
    d.mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "memory").mkdir()
    (d / "cpu.cfs_quota_us").write_text(quota + "\n")
    (d / "cpu.cfs_period_us").write_text(period + "\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"4:memory:{own}\n2:cpu,cpuacct:{own}\n0::/\n")
    return root, self_cgroup


def test_a_pod_limited_to_two_cpus_gets_one_worker_not_thirty_two(tmp_path: Path) -> None:
    root, own = v2(tmp_path, {"/": "200000 100000"})
    n, why = offload.default_workers(root, own)
    assert n == 1
    assert "cgroup CPU limit 2" in why and "cpu.max" in why


def test_a_limit_on_a_parent_cgroup_applies_to_the_process_below_it(tmp_path: Path) -> None:
    root, own = v2(
        tmp_path,
        {"/kubepods.slice": "800000 100000", "/kubepods.slice/pod1/c1": "max 100000"},
        own="/kubepods.slice/pod1/c1",
    )
    assert offload.cgroup_cpu_limit(root, own) == (8.0, str(root / "kubepods.slice" / "cpu.max"))
    assert offload.default_workers(root, own)[0] == 4


def test_no_cpu_limit_sizes_from_the_cores_the_process_may_run_on(tmp_path: Path) -> None:
    root, own = v2(tmp_path, {"/": "max 100000"})
    assert offload.cgroup_cpu_limit(root, own) is None
    n, why = offload.default_workers(root, own)
    assert n == HOST_CORES // 2 and "affinity" in why


def test_an_affinity_smaller_than_the_quota_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root, own = v2(tmp_path, {"/": "1600000 100000"})
    n, why = offload.default_workers(root, own)
    assert n == 2 and "4 CPUs in this process's affinity" in why


def test_cgroup_v1_quota_and_period(tmp_path: Path) -> None:
    root, own = v1(tmp_path, "600000", own="/docker/abc")
    cpus, why = offload.available_cpus(root, own)
    assert cpus == 6.0 and "cpu.cfs_quota_us" in why
    assert offload.default_workers(root, own)[0] == 3


def test_cgroup_v1_without_quota_is_no_limit(tmp_path: Path) -> None:
    root, own = v1(tmp_path, "-1")
    assert offload.cgroup_cpu_limit(root, own) is None
    assert offload.default_workers(root, own)[0] == HOST_CORES // 2


def test_half_a_cpu_still_gets_one_worker(tmp_path: Path) -> None:
    root, own = v2(tmp_path, {"/": "50000 100000"})
    assert offload.default_workers(root, own)[0] == 1


@pytest.mark.parametrize("content", ["", "garbage", "100000", "-5 100000", "max max"])
def test_an_unreadable_cpu_max_is_no_limit_not_a_crash(tmp_path: Path, content: str) -> None:
    root, own = v2(tmp_path, {"/": content})
    assert offload.cgroup_cpu_limit(root, own) is None


def test_no_cgroup_filesystem_at_all(tmp_path: Path) -> None:
    assert offload.cgroup_cpu_limit(tmp_path / "none", tmp_path / "none-self") is None
    assert offload.default_workers(tmp_path / "none", tmp_path / "none-self")[0] == HOST_CORES // 2


def test_the_start_up_log_says_how_many_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, own = v2(tmp_path, {"/": "300000 100000"})
    with caplog.at_level(logging.INFO, logger="dlp_addon.inspect_pool"):
        assert offload.pool_size(0, root, own) == 1
        assert offload.pool_size(5, root, own) == 5
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("inspection workers: 1 (") and "cgroup CPU limit 3" in first
    assert second == "inspection workers: 5 (dlp_inspect_workers)"
