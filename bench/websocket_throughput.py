"""WebSocket chat messages/s and round-trip latency through dlp-proxy vs bare mitmdump.

Both proxies run side by side on loopback in front of the same echo server; dlp-proxy inspects
every client message (a ~600-byte JSON chat message without identifiers). Each client sends a
message and waits for its echo before the next, on ``--connections`` connections for
throughput, then on one for latency. Runs alternate between the proxies ``--repeat`` times;
the median is shown with the range of the per-repeat ratio. Client and echo server share this
process, whose CPU is reported as a share of one core. Usage:

    .venv/bin/python bench/websocket_throughput.py [--messages 4000] [--connections 8]
        [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_overhead import CHAT, Meter, free_port, start_proxies


def message(rng: random.Random) -> str:
    text = (CHAT * 3)[:200] + str(rng.randrange(10**6))
    return json.dumps({"type": "text", "content": text}, ensure_ascii=False)


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


async def talker(proxy: int, target: int, msgs: list[str], lat: list[float]) -> None:
    async with connect(
        f"ws://127.0.0.1:{target}/chat", proxy=f"http://127.0.0.1:{proxy}", max_size=None
    ) as ws:
        for m in msgs:
            t = time.perf_counter()
            await ws.send(m)
            reply = await ws.recv()
            lat.append(time.perf_counter() - t)
            assert reply == m, "the echo differs from what was sent"


async def load(pid: int, proxy: int, target: int, msgs: list[str], conns: int) -> dict[str, float]:
    lat: list[float] = []
    meter = Meter([pid])
    per = len(msgs) // conns
    await asyncio.gather(
        *(talker(proxy, target, msgs[i * per : (i + 1) * per], lat) for i in range(conns))
    )
    return meter.result(lat)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--latency-messages", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    target = free_port()
    server = await serve(echo, "127.0.0.1", target, max_size=None)
    rng = random.Random(3)
    msgs = [message(rng) for _ in range(args.messages)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = start_proxies(Path(tmp))
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        try:
            for _proc, port, _ca in procs.values():
                await talker(port, target, msgs[:300], [])
            for _ in range(args.repeat):
                for name, (proc, port, _ca) in procs.items():
                    for kind, work, conns in (
                        ("many", msgs, args.connections),
                        ("one", msgs[: args.latency_messages], 1),
                    ):
                        r = await load(proc.pid, port, target, work, conns)
                        runs.setdefault((name, kind), []).append(r)
        finally:
            for proc, _, _ca in procs.values():
                proc.terminate()
                proc.wait(10)
            server.close()

    med = statistics.median
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mitmproxy {version('mitmproxy')}, websockets "
        f"{version('websockets')}; ~{len(msgs[0].encode())}-byte JSON chat messages over ws:// "
        f"on loopback, each waiting for its echo; throughput: {args.messages} messages on "
        f"{args.connections} connections; latency: {args.latency_messages} on one; median of "
        f"{args.repeat} alternating repeats\n"
    )
    base = "mitmdump (baseline)"
    print(
        f"| proxy | messages/s ({args.connections} conns) | x baseline (range) | p50 ms | p99 ms "
        "| 1 conn p50 ms | 1 conn p99 ms | proxy CPU ms/message "
        "| client+echo CPU, share of a core |"
    )
    print("| --- " * 9 + "|")
    for name in procs:
        many, one = runs[(name, "many")], runs[(name, "one")]
        ratios = [m["rps"] / b["rps"] for m, b in zip(many, runs[(base, "many")], strict=True)]
        print(
            f"| {name} | {med([m['rps'] for m in many]):.0f} | {med(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {med([m['p50'] for m in many]):.2f} | "
            f"{med([m['p99'] for m in many]):.2f} | {med([o['p50'] for o in one]):.2f} | "
            f"{med([o['p99'] for o in one]):.2f} | {med([m['cpu_ms'] for m in many]):.2f} | "
            f"{med([m['client_core'] for m in many]):.0%} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
