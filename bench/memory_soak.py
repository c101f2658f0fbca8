"""Proxy memory (RSS) after 10,000 requests and over a long WebSocket soak, vs bare mitmdump.

Both proxies run side by side under the same load, on loopback, in front of the same upstream
(HTTP 200 and a WebSocket echo server in this process):

1. warm-up: 500 chat POSTs and 10 messages on each of ``--ws`` WebSocket connections, then
   RSS is read (the reference);
2. ``--requests`` 2 KB chat POSTs on 8 keep-alive connections, then RSS;
3. the soak: ``--ws`` connections (opened in step 1, kept open) each send one ~600-byte chat
   message per second for ``--minutes``; RSS every 30 s.

RSS is the proxy process's VmRSS; for dlp-proxy the inspection workers (idle here: every
message is small and inspected inline) are reported apart. Usage:

    .venv/bin/python bench/memory_soak.py [--minutes 10] [--ws 50] [--requests 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_overhead import (
    chat_body,
    client,
    free_port,
    start_proxies,
    upstream,
)
from bench.websocket_throughput import echo, message


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_rss(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(p)
    return total


async def ws_open(proxy: int, target: int, n: int) -> list[ClientConnection]:
    url, via = f"ws://127.0.0.1:{target}/chat", f"http://127.0.0.1:{proxy}"
    return [await connect(url, proxy=via, max_size=None) for _ in range(n)]


async def ws_round(conns: list[ClientConnection], rng: random.Random) -> None:
    async def one(ws: ClientConnection) -> None:
        m = message(rng)
        await ws.send(m)
        assert await ws.recv() == m

    await asyncio.gather(*(one(ws) for ws in conns))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--ws", type=int, default=50)
    ap.add_argument("--requests", type=int, default=10000)
    args = ap.parse_args()
    http_port, ws_port = free_port(), free_port()
    http_server = await upstream(http_port)
    ws_server = await serve(echo, "127.0.0.1", ws_port, max_size=None)
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        procs = start_proxies(Path(tmp))
        rows: dict[str, dict[str, float]] = {n: {} for n in procs}
        series: list[tuple[float, dict[str, float]]] = []
        conns: dict[str, list[ClientConnection]] = {}
        try:
            bodies = [chat_body(rng) for _ in range(args.requests)]
            for name, (_proc, port, _ca) in procs.items():
                await client(port, http_port, bodies[:500], [])
                conns[name] = await ws_open(port, ws_port, args.ws)
                for _ in range(10):
                    await ws_round(conns[name], rng)
            await asyncio.sleep(2)
            for name, (proc, _, _ca) in procs.items():
                rows[name]["warm"] = rss_mb(proc.pid)
                rows[name]["warm_children"] = tree_rss(proc.pid)
            for name, (proc, port, _ca) in procs.items():
                per = len(bodies) // 8
                await asyncio.gather(
                    *(
                        client(port, http_port, bodies[i * per : (i + 1) * per], [])
                        for i in range(8)
                    )
                )
                rows[name]["after_requests"] = rss_mb(proc.pid)
            start = time.monotonic()
            end = start + args.minutes * 60
            next_sample = start
            sent = 0
            while time.monotonic() < end:
                tick = time.monotonic()
                await asyncio.gather(*(ws_round(c, rng) for c in conns.values()))
                sent += args.ws
                if tick >= next_sample:
                    series.append(
                        (tick - start, {n: rss_mb(p.pid) for n, (p, _, _ca) in procs.items()})
                    )
                    next_sample += 30
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            for name, (proc, _, _ca) in procs.items():
                rows[name]["soak"] = rss_mb(proc.pid)
                rows[name]["soak_children"] = tree_rss(proc.pid)
                rows[name]["max"] = max(s[1][name] for s in series) if series else 0.0
        finally:
            for cs in conns.values():
                for ws in cs:
                    await ws.close()
            for proc, _, _ca in procs.values():
                proc.terminate()
                proc.wait(10)
            http_server.close()
            ws_server.close()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mitmproxy {version('mitmproxy')}; {args.requests} chat "
        f"POSTs, then {args.ws} WebSocket connections x 1 message/s for {args.minutes:g} min "
        f"({sent} messages per proxy)\n"
    )
    print(
        "| proxy | RSS after warm-up MB | after the requests MB | x warm-up | end of soak MB | "
        "x warm-up | max during soak MB | child processes MB (warm-up -> end) |"
    )
    print("| --- " * 8 + "|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['warm']:.1f} | {r['after_requests']:.1f} | "
            f"{r['after_requests'] / r['warm']:.2f} | {r['soak']:.1f} | "
            f"{r['soak'] / r['warm']:.2f} | {r['max']:.1f} | "
            f"{r['warm_children']:.0f} -> {r['soak_children']:.0f} |"
        )
    print("\nRSS during the soak (MB):\n")
    print("| minute | " + " | ".join(procs) + " |")
    print("| --- " * (len(procs) + 1) + "|")
    for t, values in series:
        print(f"| {t / 60:.1f} | " + " | ".join(f"{values[n]:.1f}" for n in procs) + " |")


if __name__ == "__main__":
    asyncio.run(main())
