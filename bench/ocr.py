"""OCR of pictures: the two engines compared, and chat latency while screenshots are read.

Pictures: ``--shots`` generated screenshots of 20-row customer tables (序号, 姓名, 身份证号,
手机号码; tests.synth customers, each a different seed, rendered with the CJK font by
tests.images) and a photo-like copy of each (upscaled, skewed 4°, uneven light, noise, blur,
JPEG quality 60).

Engines, in this process, one picture at a time, each given one thread (the inspection
workers give each picture one core): Tesseract as dlp_addon.extract.ocr runs it (the picture
made upright, grey, level and legible by Pillow, ``tesseract stdin stdout -l chi_sim --psm 6``,
OMP_THREAD_LIMIT=1; the model is loaded by each run), and RapidOCR (rapidocr-onnxruntime, its
bundled PP-OCR models loaded once; ``intra_op_num_threads=1``) when it is installed (it is not
a dependency: ``pip install rapidocr-onnxruntime``). Per engine: ms per picture (p50, p99,
max) and the recall of the IDs and mobiles drawn in the pictures (checksum-valid IDs and
valid mobiles found in the text / those drawn); a misread that still validates is counted as
"false".

Then real processes on loopback: a minimal asyncio upstream and ``dlp-proxy`` with the shipped
policy (127.0.0.1 its only destination; default worker count). ``--clients`` chat clients
(~700-character JSON chat POSTs without identifiers, ``--think-ms`` between requests) run
alone, then again while ``--uploads`` clients upload one screenshot each at the same moment;
the second run goes on until the last screenshot is answered. Usage:

    .venv/bin/python bench/ocr.py [--shots 20] [--clients 10] [--chat-requests 40]
        [--uploads 10] [--think-ms 20] [--timeout SECONDS] [--skip-proxy] [--skip-engines]
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_overhead import chat_body, free_port, upstream
from bench.xlsx_inspection import (
    BIN,
    Sample,
    chat_client,
    local_policy,
    multipart,
    quantiles_ms,
    upload_client,
)
from dlp_addon.extract import ocr
from tests.images import encode, photo_like, table_rows, table_screenshot
from tests.synth import identifiers_in

# --- the pictures and the engines ----------------------------------------------------------


def pictures(n: int) -> dict[str, list[tuple[bytes, set[str], set[str]]]]:
    """``n`` clean screenshots and their photo-like copies, with the values drawn in each."""
    out: dict[str, list[tuple[bytes, set[str], set[str]]]] = {"clean": [], "photo": []}
    for seed in range(n):
        rows = table_rows(20, seed=1000 + seed)
        ids, mobiles = {r[2] for r in rows}, {r[3] for r in rows}
        shot = table_screenshot(rows)
        out["clean"].append((encode(shot, "PNG"), ids, mobiles))
        photo = photo_like(shot, seed=seed, angle=3.0 + (seed % 3))
        out["photo"].append((encode(photo, "JPEG", quality=60), ids, mobiles))
    return out


def tesseract(data: bytes) -> str:
    exe = ocr.engine()
    assert exe is not None, "tesseract with chi_sim is not installed (scripts/setup)"
    img = ocr._legible(ocr._level(ocr._upright_grey(Image.open(io.BytesIO(data)))))
    done = subprocess.run(
        ocr._command(exe), input=ocr._pgm(img), capture_output=True, env=ocr._env(), check=True
    )
    return done.stdout.decode("utf-8", "replace")


def rapidocr() -> Any:
    """RapidOCR with one thread, or None when it is not installed."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)


def rapid_text(engine: Any, data: bytes) -> str:
    found, _ = engine(data)
    return "\n".join(text for _, text, _ in found or [])


def measure(
    read: Any, pics: dict[str, list[tuple[bytes, set[str], set[str]]]]
) -> dict[str, dict[str, float]]:
    out = {}
    for kind, items in pics.items():
        ms: list[float] = []
        hit = drawn = false = 0
        for data, ids, mobiles in items:
            t0 = time.perf_counter()
            text = read(data)
            ms.append((time.perf_counter() - t0) * 1000)
            got_ids, got_mobiles = identifiers_in(text)
            hit += len(got_ids & ids) + len(got_mobiles & mobiles)
            false += len(got_ids - ids) + len(got_mobiles - mobiles)
            drawn += len(ids) + len(mobiles)
        q = statistics.quantiles(ms, n=100) if len(ms) > 1 else ms * 99
        out[kind] = {
            "p50": q[49],
            "p99": q[98],
            "max": max(ms),
            "recall": hit / drawn,
            "false": false,
        }
    return out


# --- the proxy run -------------------------------------------------------------------------


async def proxy_run(args: argparse.Namespace, shots: list[bytes]) -> dict[str, Any]:
    target = free_port()
    server = await upstream(target)
    rng = random.Random(7)
    think = args.think_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        policy_file = local_policy(Path(tmp), args.timeout)
        port = free_port()
        cmd = [
            str(BIN / "dlp-proxy"), "--listen-host", "127.0.0.1", "-p", str(port),
            "--set", f"dlp_policy={policy_file}", "--set", "dlp_metrics_port=0",
            "--set", f"dlp_audit_log={tmp}/a.jsonl", "--set", f"confdir={tmp}/conf", "-q",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            bodies = [[chat_body(rng) for _ in range(args.chat_requests)] for _ in range(10)]
            await chat_client(port, target, bodies[0], 0, [])  # warm
            await upload_client(port, target, multipart(shots[0]))  # warm the worker
            per = bodies[: args.clients]
            alone: list[Sample] = []
            await asyncio.gather(*(chat_client(port, target, b, think, alone) for b in per))
            uploads = asyncio.gather(
                *(upload_client(port, target, multipart(s)) for s in shots[: args.uploads])
            )
            during: list[Sample] = []
            started = time.perf_counter()
            chats = asyncio.gather(
                *(
                    chat_client(port, target, b, think, during, until=uploads, cap=10_000)
                    for b in per
                )
            )
            done = await uploads
            end = time.perf_counter()
            await chats
            in_flight = [s for s in during if s.start <= end]
            reasons = Counter(
                str(e.get("reason"))
                for line in (Path(tmp) / "a.jsonl").read_text().splitlines()
                if (e := json.loads(line)).get("action") == "block"
            )
        finally:
            proc.terminate()
            proc.wait(10)
            server.close()
    return {
        "alone": alone,
        "during": in_flight,
        "uploads": [s for s, _, _ in done],
        "upload_wall": end - started,
        "reasons": reasons,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--chat-requests", type=int, default=40)
    ap.add_argument("--uploads", type=int, default=10)
    ap.add_argument("--think-ms", type=float, default=20)
    ap.add_argument("--skip-proxy", action="store_true")
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--timeout", type=float, help="the policy's inspection.timeout_seconds")
    args = ap.parse_args()

    pics = pictures(args.shots)
    tess = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
    try:
        rapid_version = version("rapidocr-onnxruntime")
    except PackageNotFoundError:
        rapid_version = "not installed"
    print(
        f"{platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{tess.stdout.splitlines()[0]}; rapidocr-onnxruntime {rapid_version}; "
        f"{args.shots} screenshots of 20 rows (40 IDs and mobiles each), clean and photo-like"
    )
    results = {}
    if not args.skip_engines:
        results["Tesseract (chi_sim, 1 thread)"] = measure(tesseract, pics)
    engine = None if args.skip_engines else rapidocr()
    if engine is not None:
        rapid_text(engine, pics["clean"][0][0])  # the models loaded once
        results["RapidOCR (PP-OCRv3, 1 thread)"] = measure(lambda d: rapid_text(engine, d), pics)
    print("| engine | pictures | ms p50 | ms p99 | ms max | recall (IDs + mobiles) | false |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, per in results.items():
        for kind, r in per.items():
            print(
                f"| {name} | {kind} | {r['p50']:.0f} | {r['p99']:.0f} | {r['max']:.0f} "
                f"| {r['recall']:.1%} | {r['false']:.0f} |"
            )
    if args.skip_proxy:
        return
    run = asyncio.run(proxy_run(args, [d for d, _, _ in pics["clean"]]))
    a50, a99, amax = quantiles_ms(run["alone"])
    d50, d99, dmax = quantiles_ms(run["during"])
    statuses = Counter(s.status for s in run["uploads"])
    u = sorted(s.seconds for s in run["uploads"])
    print(
        f"\nchat through dlp-proxy, {args.clients} clients: alone p50 {a50:.1f} ms, "
        f"p99 {a99:.1f} ms, max {amax:.1f} ms ({len(run['alone'])} requests); while "
        f"{args.uploads} screenshots were read: p50 {d50:.1f} ms, p99 {d99:.1f} ms, "
        f"max {dmax:.1f} ms ({len(run['during'])} requests)"
    )
    print(
        f"screenshots: answers {dict(statuses)}, blocked for {dict(run['reasons'])} "
        f"(with the warm-up one); answered after {u[0]:.1f} s (first) to "
        f"{u[-1]:.1f} s (last), {run['upload_wall']:.1f} s for all"
    )


if __name__ == "__main__":
    main()
