"""Inspection of a 100,000-row customer spreadsheet upload, and chat latency while it runs.

One xlsx (columns 姓名, 身份证号, 手机号码, 住址, generated customers from tests.synth, every
value a string) is built in memory with openpyxl's write-only mode. Then, in this process, one
core: python-calamine's bare read of it (the floor: every sheet ``to_python()``, best of 3),
openpyxl's read_only read (once, it is slow), the DLP extraction stage alone
(``extract_http`` as the pipeline calls it) and the whole DLP inspection of a multipart upload
carrying it (``inspect_http`` with the shipped policy), each best of 3. Peak RSS of each comes
from a fresh child process doing it once (VmHWM: ``ru_maxrss`` would carry this process's
peak over fork and exec), with the child's RSS just before the work.

Then real processes on loopback: a minimal asyncio upstream and ``dlp-proxy`` running the
shipped policy with 127.0.0.1 as its only destination. Chat clients (raw asyncio HTTP/1.1,
keep-alive, ~2 KB JSON chat POSTs without identifiers, think time between requests) run
alone, then again while one more client uploads the spreadsheet through the proxy; in the
second run they keep going until the upload is answered, so the requests in flight during it
are all measured. Usage:

    .venv/bin/python bench/xlsx_inspection.py [--rows 100000] [--clients 20]
        [--chat-requests 50] [--think-ms 20] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import io
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from openpyxl import Workbook, load_workbook
from python_calamine import CalamineWorkbook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_overhead import chat_body, content_length, cpu_seconds, free_port, upstream
from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, load_policy
from dlp_addon.extract.message import Extraction, HttpInput, extract_http
from dlp_addon.pipeline import Inspection, inspect_http
from tests.synth import customer_records

BIN = Path(sys.executable).parent
BOUNDARY = "----dlpbench7MA4YWxkTrZu0gW"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ("姓名", "身份证号", "手机号码", "住址")
READ_TIMEOUT = 120.0  # seconds: no socket read waits longer, so every run ends by itself


def local_policy(folder: Path, timeout: float | None) -> Path:
    """The shipped policy with 127.0.0.1 as its only destination (and ``timeout``), written
    to ``folder``: what the benches' real ``dlp-proxy`` runs."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["destinations"] = [{"name": "bench", "hosts": ["127.0.0.1"]}]
    if timeout is not None:
        policy["inspection"]["timeout_seconds"] = timeout
    policy_file = folder / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    return policy_file


# --- the file and the upload ---------------------------------------------------------------


def build_xlsx(rows: int, seed: int) -> tuple[bytes, float, float]:
    """The workbook's bytes, seconds to generate the records, seconds in all."""
    t0 = time.perf_counter()
    records = customer_records(rows, seed)
    records_s = time.perf_counter() - t0
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("客户")
    ws.append(list(HEADER))
    for r in records:
        ws.append([r["name"], r["id"], r["mobile"], r["address"]])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue(), records_s, time.perf_counter() - t0


def multipart(data: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="customers.xlsx"\r\n'
        f"Content-Type: {XLSX_TYPE}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


UPLOAD_HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


# --- the steps measured --------------------------------------------------------------------


def calamine_read(data: bytes) -> int:
    wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
    return sum(len(wb.get_sheet_by_name(s).to_python()) for s in wb.sheet_names)


def openpyxl_read(data: bytes) -> int:
    wb = load_workbook(io.BytesIO(data), read_only=True)
    try:
        return sum(1 for ws in wb.worksheets for _ in ws.iter_rows(values_only=True))
    finally:
        wb.close()


def inspect_upload(body: bytes, policy: Policy) -> Inspection:
    req = HttpInput("POST", "/upload", UPLOAD_HEADERS, body)
    return inspect_http(policy, req, "bench", deadline=time.monotonic() + 600)


def extract_upload(body: bytes, policy: Policy) -> Extraction:
    """The extraction stage alone, called as the pipeline calls it."""
    return extract_http(HttpInput("POST", "/upload", UPLOAD_HEADERS, body), policy.limits)


def best_of[T](n: int, fn: Callable[..., T], *args: object) -> tuple[float, T]:
    """Best wall time of ``n`` calls, and the last call's result."""
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def status_mb(key: str, pid: int | str = "self") -> float:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of a process from /proc, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(step: str, path: Path) -> None:
    """One step, once, in a fresh process: print its peak RSS and the RSS just before it."""
    data = path.read_bytes()
    fn: Callable[[], object]
    if step in ("inspect", "extract"):
        policy, body = load_policy(), multipart(data)
        run = inspect_upload if step == "inspect" else extract_upload
        fn = lambda: run(body, policy)  # noqa: E731
    else:
        fn = lambda: (calamine_read if step == "calamine" else openpyxl_read)(data)  # noqa: E731
    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    fn()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "before_mb": before,
                "peak_mb": status_mb("VmHWM"),
            }
        )
    )


def rss_of(step: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, "--xlsx", str(path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the proxy run -------------------------------------------------------------------------


@dataclass
class Sample:
    start: float
    seconds: float
    status: int


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    await asyncio.wait_for(reader.readexactly(content_length(head)), READ_TIMEOUT)
    return head


async def chat_client(
    proxy: int,
    target: int,
    bodies: list[bytes],
    think: float,
    out: list[Sample],
    until: asyncio.Task[object] | None = None,
    cap: int = 0,
) -> None:
    """Send ``bodies`` in order; with ``until``, go on (cycling) until it is done, ``cap`` max."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    try:
        i = 0
        while i < len(bodies) or (until is not None and not until.done() and i < cap):
            body = bodies[i % len(bodies)]
            req = (
                f"POST http://127.0.0.1:{target}/chat HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(req + body)
            head = await read_response(reader)
            out.append(Sample(t0, time.perf_counter() - t0, status_of(head)))
            i += 1
            await asyncio.sleep(think)
    finally:
        writer.close()


async def upload_client(proxy: int, target: int, body: bytes) -> tuple[Sample, float, str]:
    """POST the multipart upload; its status, when the body was handed off, the incident id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    try:
        req = (
            f"POST http://127.0.0.1:{target}/upload HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        t0 = time.perf_counter()
        writer.write(req + body)
        await writer.drain()
        sent = time.perf_counter() - t0
        head = await read_response(reader)
        incident = ""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"x-dlp-incident:"):
                incident = line.split(b":", 1)[1].strip().decode()
        return Sample(t0, time.perf_counter() - t0, status_of(head)), sent, incident
    finally:
        writer.close()


def quantiles_ms(samples: list[Sample]) -> tuple[float, float, float]:
    lat = [s.seconds for s in samples]
    if len(lat) < 2:
        v = lat[0] * 1000 if lat else float("nan")
        return v, v, v
    q = statistics.quantiles(lat, n=100)
    return q[49] * 1000, q[98] * 1000, max(lat) * 1000


@dataclass
class ProxyRun:
    alone: list[Sample]
    alone_wall: float
    alone_cpu: float
    loaded: list[Sample]
    during: list[Sample]  # chat requests in flight while the upload was
    after: list[Sample]  # the rest of the run with the upload
    loaded_wall: float
    loaded_cpu: float
    upload: Sample
    upload_sent: float
    upload_event: dict[str, Any]
    warm_upload: Sample
    hwm_alone: float
    hwm_loaded: float
    chat_audit: dict[str, int]  # audit events of chat requests, by rule and reason
    proxy_errors: str


async def proxy_run(
    args: argparse.Namespace, body: bytes, warm_body: bytes, extra: list[str]
) -> ProxyRun:
    target = free_port()
    server = await upstream(target)
    rng = random.Random(args.seed)
    think = args.think_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        policy_file = local_policy(Path(tmp), args.timeout)
        port = free_port()
        cmd = [
            str(BIN / "dlp-proxy"),
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--set",
            f"dlp_policy={policy_file}",
            "--set",
            "dlp_metrics_port=0",
            "--set",
            f"dlp_audit_log={tmp}/a.jsonl",
            "--set",
            f"confdir={tmp}/conf",
            "-q",
            *extra,
        ]
        stderr = open(Path(tmp) / "proxy.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            for _ in range(300):
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "proxy.err").read_text()[-2000:])
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            warm: list[Sample] = []
            await chat_client(port, target, [chat_body(rng) for _ in range(100)], 0, warm)
            warm_upload, _, _ = await upload_client(port, target, warm_body)

            per_client = [
                [chat_body(rng) for _ in range(args.chat_requests)] for _ in range(args.clients)
            ]
            # 20 connections opening at once: not what is measured, so once before.
            await asyncio.gather(*(chat_client(port, target, b, think, []) for b in per_client))
            alone: list[Sample] = []
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            await asyncio.gather(*(chat_client(port, target, b, think, alone) for b in per_client))
            alone_wall, alone_cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            hwm_alone = status_mb("VmHWM", proc.pid)

            loaded: list[Sample] = []
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            up = asyncio.create_task(upload_client(port, target, body))
            await asyncio.gather(
                *(
                    chat_client(port, target, b, think, loaded, up, args.chat_requests * 40)
                    for b in per_client
                )
            )
            upload, sent, incident = await up
            loaded_wall, loaded_cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            hwm_loaded = status_mb("VmHWM", proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            stderr.close()
        audit = [
            json.loads(line)
            for line in (Path(tmp) / "a.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        proxy_errors = (Path(tmp) / "proxy.err").read_text(errors="replace").strip()
    server.close()
    up_end = upload.start + upload.seconds
    return ProxyRun(
        alone=alone,
        alone_wall=alone_wall,
        alone_cpu=alone_cpu,
        loaded=loaded,
        during=[s for s in loaded if s.start < up_end],
        after=[s for s in loaded if s.start >= up_end],
        loaded_wall=loaded_wall,
        loaded_cpu=loaded_cpu,
        upload=upload,
        upload_sent=sent,
        upload_event=next((e for e in audit if e.get("incident_id") == incident), {}),
        warm_upload=warm_upload,
        hwm_alone=hwm_alone,
        hwm_loaded=hwm_loaded,
        chat_audit=dict(
            Counter(f"{e['rule']} ({e['reason']})" for e in audit if e["path"] == "/chat")
        ),
        proxy_errors=proxy_errors,
    )


# --- main ----------------------------------------------------------------------------------


def verdict_line(ins: Inspection) -> str:
    v = ins.verdict
    return (
        f"action {v.action}, rule {v.rule}, reason {v.reason}, records {v.records}, "
        f"counts {json.dumps(v.counts, sort_keys=True)}, {ins.text_chars} characters of text "
        f"scanned, channel {ins.channel}"
    )


MODES = (
    ("inspection worker processes (default)", []),
    ("a thread of the proxy (dlp_inspect_workers=-1)", ["--set", "dlp_inspect_workers=-1"]),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", type=int, default=20, help="chat clients")
    ap.add_argument("--chat-requests", type=int, default=50, help="per chat client")
    ap.add_argument("--think-ms", type=float, default=20.0, help="pause after each chat reply")
    ap.add_argument(
        "--timeout", type=float, help="the proxy's inspection timeout (default: the policy's)"
    )
    ap.add_argument("--proxy-only", action="store_true", help="skip the in-process steps")
    ap.add_argument(
        "--child", choices=("calamine", "openpyxl", "extract", "inspect"), help=argparse.SUPPRESS
    )
    ap.add_argument("--xlsx", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.xlsx)
        return

    warm_data, _, _ = build_xlsx(20, args.seed + 1)  # also gets imports out of the way
    data, gen_records, gen_total = build_xlsx(args.rows, args.seed)
    body = multipart(data)

    policy = load_policy()
    modes = {name: asyncio.run(proxy_run(args, body, multipart(warm_data), x)) for name, x in MODES}
    print(f"command: .venv/bin/python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}\n")
    if not args.proxy_only:
        in_process(args, data, body, warm_data, policy, gen_records, gen_total)
    print_proxy_runs(args, policy, modes)


def in_process(
    args: argparse.Namespace,
    data: bytes,
    body: bytes,
    warm_data: bytes,
    policy: Policy,
    gen_records: float,
    gen_total: float,
) -> None:
    inspect_upload(multipart(warm_data), policy)  # warm up the scanner and the readers
    calamine_s, cells = best_of(3, calamine_read, data)
    openpyxl_s, rows_read = best_of(1, openpyxl_read, data)
    extract_s, extraction = best_of(3, extract_upload, body, policy)
    inspect_s, ins = best_of(3, inspect_upload, body, policy)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.xlsx"
        path.write_bytes(data)
        rss = {step: rss_of(step, path) for step in ("calamine", "openpyxl", "extract", "inspect")}

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, mitmproxy {version('mitmproxy')}, python-calamine "
        f"{version('python-calamine')}, openpyxl {version('openpyxl')}; one sheet of "
        f"{args.rows} rows (姓名, 身份证号, 手机号码, 住址, all strings), xlsx "
        f"{len(data) / 1e6:.1f} MB, upload body {len(body) / 1e6:.1f} MB; generated in "
        f"{gen_total:.1f} s ({gen_records:.1f} s of it the customer records), not counted below\n"
    )
    print("| step (one process, one core) | seconds | x calamine | peak RSS MB | RSS before MB |")
    print("| --- | --- | --- | --- | --- |")
    for name, step, secs in (
        ("python-calamine bare read, to_python() (best of 3)", "calamine", calamine_s),
        ("openpyxl read_only, every row (once)", "openpyxl", openpyxl_s),
        ("DLP extraction stage alone, extract_http (best of 3)", "extract", extract_s),
        ("DLP inspect_http of the multipart upload (best of 3)", "inspect", inspect_s),
    ):
        r = rss[step]
        print(
            f"| {name} | {secs:.2f} | {secs / calamine_s:.2f} | {r['peak_mb']:.0f} | "
            f"{r['before_mb']:.0f} |"
        )
    print(
        f"\ninspection / bare calamine read: {inspect_s / calamine_s:.2f}x (aim <= 1.5x); "
        f"extraction alone / bare calamine read: {extract_s / calamine_s:.2f}x, the rest "
        f"({inspect_s - extract_s:.2f} s) is the scan and the decision; calamine read {cells} "
        f"rows, openpyxl {rows_read}; the extraction gave {len(extraction.parts)} parts, "
        f"files {list(extraction.files)}, unscannable {list(extraction.unscannable)}.\n"
        f"verdict: {verdict_line(ins)}.\n"
        "RSS from a fresh child doing the step once (VmHWM); 'before' is that child's "
        "RSS after its imports, the policy and the bytes, just before the step.\n"
    )


def print_proxy_runs(args: argparse.Namespace, policy: Policy, modes: dict[str, ProxyRun]) -> None:
    timeout = policy.timeout_seconds if args.timeout is None else args.timeout
    print(
        f"dlp-proxy, shipped policy with 127.0.0.1 as its only destination "
        f"(timeout_seconds {timeout:g}); {args.clients} chat clients, "
        f"{args.chat_requests} requests of ~2 KB JSON each, {args.think_ms:.0f} ms think time, "
        "HTTP/1.1 keep-alive on loopback; with the upload they keep going until it is "
        "answered.\n"
    )
    for mode, pr in modes.items():
        print_proxy_run(mode, pr)


def print_proxy_run(mode: str, pr: ProxyRun) -> None:
    print(f"\nLarge bodies inspected in {mode}:\n")
    print("| chat run | requests | not 200 | p50 ms | p99 ms | max ms | wall s | proxy CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    runs: tuple[tuple[str, list[Sample], str], ...] = (
        ("alone", pr.alone, f"{pr.alone_wall:.1f} | {pr.alone_cpu:.1f}"),
        ("with the upload: in flight during it", pr.during, "- | -"),
        ("with the upload: after it was answered", pr.after, "- | -"),
        ("with the upload: whole run", pr.loaded, f"{pr.loaded_wall:.1f} | {pr.loaded_cpu:.1f}"),
    )
    for name, samples, tail in runs:
        if not samples:
            continue
        p50, p99, mx = quantiles_ms(samples)
        bad = sum(1 for s in samples if s.status != 200)
        print(f"| {name} | {len(samples)} | {bad} | {p50:.1f} | {p99:.1f} | {mx:.0f} | {tail} |")
    ev = pr.upload_event
    print(
        f"\nupload: status {pr.upload.status} after {pr.upload.seconds:.2f} s (body handed to "
        f"the socket in {pr.upload_sent:.2f} s); proxy audit: action {ev.get('action')}, rule "
        f"{ev.get('rule')}, reason {ev.get('reason')}, records {ev.get('records')}, "
        f"counts {json.dumps(ev.get('counts'), sort_keys=True)}.\n"
        f"warm-up upload of a 20-row xlsx: status {pr.warm_upload.status} in "
        f"{pr.warm_upload.seconds:.2f} s; audit events of chat requests: {pr.chat_audit or 0}.\n"
        f"proxy peak RSS (VmHWM): {pr.hwm_alone:.0f} MB after the chat-only run, "
        f"{pr.hwm_loaded:.0f} MB after the run with the upload."
    )
    if pr.proxy_errors:
        print(f"\nproxy stderr:\n{pr.proxy_errors[-2000:]}")


if __name__ == "__main__":
    main()
