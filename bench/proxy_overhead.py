"""Requests/s and latency of 2 KB chat POSTs through dlp-proxy vs bare mitmdump, same run.

Both proxies (the same mitmproxy) run side by side on loopback in front of the same minimal
asyncio upstream (plain and TLS); dlp-proxy inspects every request under a policy allowing
127.0.0.1. For each scheme (HTTP, and HTTPS through CONNECT with the proxy's interception) the
load is: ``--connections`` keep-alive connections for throughput, then one connection for the
latency a single user sees. The runs alternate between the proxies, ``--repeat`` times, so
drift on this shared machine hits both; the table gives the median of the repeats and the
range of the per-repeat ratio. The load client is a raw asyncio HTTP/1.1 client (httpx would
be the bottleneck); its CPU is reported as a share of one core. Usage:

    .venv/bin/python bench/proxy_overhead.py [--requests 3000] [--connections 8]
        [--latency-requests 1000] [--repeat 3] [--schemes http,https]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


async def upstream(port: int, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(content_length(head))
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls)


async def open_via(
    proxy: int, target: int, scheme: str, ca: Path | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A connection to ``target`` through the proxy; returns the request-target prefix."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    if scheme == "http":
        return reader, writer, f"http://127.0.0.1:{target}"
    writer.write(
        f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["http/1.1"])
    await writer.start_tls(ctx, server_hostname="127.0.0.1")
    return reader, writer, ""


async def client(
    proxy: int,
    target: int,
    bodies: list[bytes],
    lat: list[float],
    scheme: str = "http",
    ca: Path | None = None,
) -> None:
    reader, writer, prefix = await open_via(proxy, target, scheme, ca)
    for body in bodies:
        req = (
            f"POST {prefix}/chat HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n"
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


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("proxy did not start")


class Meter:
    """Wall time, the proxy processes' CPU and this process's CPU over one load run."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu0 = sum(map(cpu_seconds, pids))
        self.client0 = time.process_time()
        self.t0 = time.perf_counter()

    def result(self, lat: list[float]) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        q = statistics.quantiles(lat, n=100)
        return {
            "rps": len(lat) / wall,
            "p50": q[49] * 1000,
            "p99": q[98] * 1000,
            "cpu_ms": (sum(map(cpu_seconds, self.pids)) - self.cpu0) / len(lat) * 1000,
            "client_core": (time.process_time() - self.client0) / wall,
        }


async def load(
    pid: int, port: int, target: int, scheme: str, ca: Path, bodies: list[bytes], conns: int
) -> dict[str, float]:
    lat: list[float] = []
    meter = Meter([pid])
    per = len(bodies) // conns
    await asyncio.gather(
        *(
            client(port, target, bodies[i * per : (i + 1) * per], lat, scheme, ca)
            for i in range(conns)
        )
    )
    return meter.result(lat)


def med(values: list[float]) -> float:
    return statistics.median(values)


def start_proxies(
    tmp: Path, common: list[str] | None = None
) -> dict[str, tuple[subprocess.Popen[bytes], int, Path]]:
    """Bare mitmdump (the baseline) and dlp-proxy running POLICY, side by side on loopback,
    each with its own CA in ``tmp``: name -> (process, port, the CA certificate clients trust)."""
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    for name, exe, extra in (
        ("mitmdump (baseline)", "mitmdump", []),
        (
            "dlp-proxy",
            "dlp-proxy",
            ["--set", f"dlp_policy={policy}", "--set", "dlp_metrics_port=0",
             "--set", f"dlp_audit_log={tmp}/a.jsonl"],
        ),
    ):  # fmt: skip
        port = free_port()
        conf = tmp / f"conf-{exe}"
        cmd = [
            str(BIN / exe), "--listen-host", "127.0.0.1", "-p", str(port), "-q",
            "--set", f"confdir={conf}", *(common or []), *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, proc)
        procs[name] = (proc, port, conf / "mitmproxy-ca-cert.pem")
    return procs


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--latency-requests", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schemes", default="http,https")
    args = ap.parse_args()
    schemes = args.schemes.split(",")

    from tests.e2e.harness import make_tls_files

    with tempfile.TemporaryDirectory() as tmp:
        tls = make_tls_files(Path(tmp) / "tls")
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(tls.cert, tls.key)
        plain_port, tls_port = free_port(), free_port()
        servers = [await upstream(plain_port), await upstream(tls_port, server_ctx)]
        targets = {"http": plain_port, "https": tls_port}
        procs = start_proxies(Path(tmp), ["--set", f"ssl_verify_upstream_trusted_ca={tls.ca_cert}"])
        try:
            rng = random.Random(1)
            bodies = [chat_body(rng) for _ in range(args.requests)]
            few = bodies[: args.latency_requests]
            for _proc, port, ca in procs.values():  # warm-up: imports, certificates, caches
                for scheme in schemes:
                    await client(port, targets[scheme], bodies[:200], [], scheme, ca)
            runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
            for _ in range(args.repeat):
                for scheme in schemes:
                    for name, (proc, port, ca) in procs.items():
                        for kind, work, conns in (
                            ("many", bodies, args.connections),
                            ("one", few, 1),
                        ):
                            r = await load(proc.pid, port, targets[scheme], scheme, ca, work, conns)
                            runs.setdefault((scheme, name, kind), []).append(r)
        finally:
            for proc, _, _ in procs.values():
                proc.terminate()
                proc.wait(10)
            for s in servers:
                s.close()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mitmproxy {version('mitmproxy')}; ~2 KB JSON chat POSTs "
        f"on loopback; throughput: {args.requests} requests on {args.connections} keep-alive "
        f"connections; latency: {args.latency_requests} requests on one connection; "
        f"median of {args.repeat} alternating repeats\n"
    )
    base = "mitmdump (baseline)"
    print(
        f"| scheme | proxy | requests/s ({args.connections} conns) | x baseline (range) | "
        "p50 ms | p99 ms | 1 conn p50 ms | 1 conn p99 ms | added p99 ms (1 conn) | "
        "proxy CPU ms/request | client CPU, share of a core |"
    )
    print("| --- " * 11 + "|")
    for scheme in schemes:
        for name in procs:
            many, one = runs[(scheme, name, "many")], runs[(scheme, name, "one")]
            ratios = [
                m["rps"] / b["rps"] for m, b in zip(many, runs[(scheme, base, "many")], strict=True)
            ]
            added = [
                o["p99"] - b["p99"] for o, b in zip(one, runs[(scheme, base, "one")], strict=True)
            ]
            print(
                f"| {scheme} | {name} | {med([m['rps'] for m in many]):.0f} | "
                f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                f"{med([m['p50'] for m in many]):.2f} | {med([m['p99'] for m in many]):.2f} | "
                f"{med([o['p50'] for o in one]):.2f} | {med([o['p99'] for o in one]):.2f} | "
                f"{med(added):+.2f} ({min(added):+.2f} to {max(added):+.2f}) | "
                f"{med([m['cpu_ms'] for m in many]):.2f} | "
                f"{med([m['client_core'] for m in many]):.0%} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
