"""Requests/s of 2 KB chat POSTs: one dlp-proxy, vs 1 and 2 workers behind HAProxy (dlp-workers).

All three set-ups run side by side on loopback in front of the same upstream, with the same
policy; the runs alternate ``--repeat`` times. The load is ``--connections`` keep-alive
connections (HAProxy balances connections, not requests). Proxy CPU is the sum over the
workers and HAProxy; the client's CPU is reported as a share of one core: on a 2-core machine
the client, HAProxy and the workers share the same cores. Usage:

    .venv/bin/python bench/workers_scaling.py [--requests 6000] [--connections 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_overhead import (
    BIN,
    POLICY,
    Meter,
    chat_body,
    client,
    free_port,
    upstream,
    wait_listening,
)


def fleet(n: int, tmp: Path, policy: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port, run = free_port(), tmp / f"fleet{n}"
    cmd = [
        str(BIN / "dlp-workers"), str(n), "-p", str(port), "--worker-port", "0",
        "--metrics-port", "0", "--run-dir", str(run), "--audit-log", str(run / "a.jsonl"),
        "--", "-q", "--set", f"confdir={tmp}/conf", "--set", f"dlp_policy={policy}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(900):
        if (run / "workers.json").exists():
            break
        if proc.poll() is not None:
            raise SystemExit(f"dlp-workers {n} exited")
        time.sleep(0.1)
    wait_listening(port, proc)
    return proc, port, run / "workers.json"


def pids(state: Path | None, proc: subprocess.Popen[bytes]) -> list[int]:
    if state is None:
        return [proc.pid]
    s = json.loads(state.read_text())
    return [s["haproxy_pid"], *(w["pid"] for w in s["workers"])]


async def load(
    port: int, target: int, bodies: list[bytes], conns: int, who: list[int]
) -> dict[str, float]:
    lat: list[float] = []
    meter = Meter(who)
    per = len(bodies) // conns
    await asyncio.gather(
        *(client(port, target, bodies[i * per : (i + 1) * per], lat) for i in range(conns))
    )
    return meter.result(lat)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    target = free_port()
    server = await upstream(target)
    rng = random.Random(2)
    bodies = [chat_body(rng) for _ in range(args.requests)]
    setups: dict[str, tuple[subprocess.Popen[bytes], int, Path | None]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        try:
            port = free_port()
            direct = subprocess.Popen(
                [
                    str(BIN / "dlp-proxy"), "--listen-host", "127.0.0.1", "-p", str(port), "-q",
                    "--set", f"confdir={tmp}/conf", "--set", f"dlp_policy={policy}",
                    "--set", "dlp_metrics_port=0", "--set", f"dlp_audit_log={tmp}/a.jsonl",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_listening(port, direct)
            setups["dlp-proxy alone (baseline)"] = (direct, port, None)
            for n in (1, 2):
                setups[f"dlp-workers {n} (HAProxy + {n})"] = fleet(n, tmp, policy)
            who = {name: pids(state, proc) for name, (proc, _, state) in setups.items()}
            for _proc, port, _state in setups.values():
                await asyncio.gather(*(client(port, target, bodies[:50], []) for _ in range(4)))
            runs: dict[str, list[dict[str, float]]] = {}
            for _ in range(args.repeat):
                for name, (_proc, port, _state) in setups.items():
                    r = await load(port, target, bodies, args.connections, who[name])
                    runs.setdefault(name, []).append(r)
        finally:
            for proc, _, _ in setups.values():
                proc.terminate()
                proc.wait(30)
            server.close()

    med = statistics.median
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mitmproxy {version('mitmproxy')}; {args.requests} ~2 KB "
        f"JSON chat POSTs over HTTP/1.1 on {args.connections} keep-alive connections, "
        f"loopback; median of {args.repeat} alternating repeats\n"
    )
    base = runs["dlp-proxy alone (baseline)"]
    print(
        "| set-up | requests/s | x baseline (range) | p50 ms | p99 ms | "
        "proxy CPU ms/request (workers + HAProxy) | client CPU, share of a core |"
    )
    print("| --- " * 7 + "|")
    for name, rs in runs.items():
        ratios = [r["rps"] / b["rps"] for r, b in zip(rs, base, strict=True)]
        print(
            f"| {name} | {med([r['rps'] for r in rs]):.0f} | {med(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {med([r['p50'] for r in rs]):.2f} | "
            f"{med([r['p99'] for r in rs]):.2f} | {med([r['cpu_ms'] for r in rs]):.2f} | "
            f"{med([r['client_core'] for r in rs]):.0%} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
