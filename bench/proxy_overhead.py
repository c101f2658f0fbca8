"""Requests/s and latency of 2 KB chat POSTs through dlp-proxy vs bare mitmdump, same run.

Both proxies run the same mitmproxy on loopback in front of the same upstream; the load client
is a raw asyncio HTTP/1.1 client with keep-alive (httpx would be the bottleneck). The proxy's
CPU seconds per request come from /proc. Usage:

    .venv/bin/python bench/proxy_overhead.py [--requests 3000] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

POLICY = """\
version: 1
destinations:
  - {name: bench, hosts: ["127.0.0.1"]}
rules:
  - name: bulk-resident-id
    action: block
    when: [{detector: cn_resident_id, min_distinct: 5}]
  - name: bulk-mobile
    action: block
    when: [{detector: cn_mobile, min_distinct: 10}]
"""

CHAT = (
    "亲，请问这款行李箱还有 24 寸的吗？订单号 2024112812345678901，什么时候发货？"
    "快递单号 SF1234567890123，价格 ¥329.00，优惠券 COUPON-2024。"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chat_body(rng: random.Random) -> bytes:
    text = ""
    while len(text.encode()) < 2000:
        text += CHAT + str(rng.randrange(10**6))
    return json.dumps({"type": "text", "content": text[:680]}, ensure_ascii=False).encode()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


async def upstream(port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(content_length(head))
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def client(proxy_port: int, target: int, bodies: list[bytes], lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    for body in bodies:
        req = (
            f"POST http://127.0.0.1:{target}/chat HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        t = time.perf_counter()
        writer.write(req + body)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(content_length(head))
        lat.append(time.perf_counter() - t)
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
    writer.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(cmd: list[str], port: int, target: int, n: int, conns: int) -> dict[str, float]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        rng = random.Random(1)
        warm: list[float] = []
        await client(port, target, [chat_body(rng) for _ in range(100)], warm)
        bodies = [chat_body(rng) for _ in range(n)]
        lat: list[float] = []
        cpu0, c0, t0 = cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
        per = n // conns
        await asyncio.gather(
            *(client(port, target, bodies[i * per : (i + 1) * per], lat) for i in range(conns))
        )
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        q = statistics.quantiles(lat, n=100)
        return {
            "rps": len(lat) / wall,
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
            "proxy_cpu_ms_per_req": cpu / len(lat) * 1000,
            "client_cpu_s": time.process_time() - c0,
            "wall_s": wall,
        }
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    target = free_port()
    server = await upstream(target)
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        common = ["--listen-host", "127.0.0.1", "--set", f"confdir={tmp}/conf", "-q"]
        results = {}
        for name, cmd in (
            ("mitmdump (baseline)", [str(BIN / "mitmdump"), *common]),
            (
                "dlp-proxy",
                [
                    str(BIN / "dlp-proxy"),
                    *common,
                    "--set",
                    f"dlp_policy={policy}",
                    "--set",
                    "dlp_metrics_port=0",
                    "--set",
                    f"dlp_audit_log={tmp}/a.jsonl",
                ],
            ),
        ):
            port = free_port()
            results[name] = await measure(
                [*cmd, "-p", str(port)], port, target, args.requests, args.connections
            )
    server.close()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.requests} requests of ~2 KB JSON chat, "
        f"{args.connections} keep-alive connections, HTTP/1.1 on loopback\n"
    )
    print("| proxy | requests/s | p50 ms | p99 ms | proxy CPU ms/request | client CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['proxy_cpu_ms_per_req']:.2f} | {r['client_cpu_s']:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
