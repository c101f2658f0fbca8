"""Scan engine throughput and 2 KB latency against a naive baseline, in one run, one core.

Corpus: generated shop chat in ~2 KB messages, each with one resident ID and one mobile number
placed among decoys (order and tracking numbers, timestamps, prices, IDs with wrong check
digits). Baseline: Python ``re`` with the naive patterns, two passes per message. The scanner
runs with every shipped detector on. The findings of the fast path are compared with a plain
reference implementation on the whole corpus. Usage:

    .venv/bin/python bench/scan_engine.py [--mb 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner
from tests.reference_scanner import ReferenceScanner
from tests.synth import identifiers_in, mobile, ordinary_chat_corpus, resident_id

BASELINE = (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"))


_LABEL = {"hyperscan": "compiled: hyperscan + C", "python": "pure Python"}
_LONG_NUMBER = re.compile(r"[0-9]{7,}")


def corpus(megabytes: float, seed: int = 1, decoy_share: float = 0.2) -> list[str]:
    """~2 KB messages, each with exactly one valid ID and one valid mobile.

    Lines come from the tests' ordinary shop chat: ``decoy_share`` of them carry long numbers
    that are not identifiers (order and tracking numbers, timestamps, wrong check digits), the
    rest is conversation. ``decoy_share=1`` gives the adversarial corpus.
    """
    rng = random.Random(seed)
    clean = [m for m in ordinary_chat_corpus(seed, n=4000) if not any(identifiers_in(m))]
    decoys = [m for m in clean if _LONG_NUMBER.search(m)]
    talk = [m for m in clean if not _LONG_NUMBER.search(m)]
    out: list[str] = []
    size = 0
    while size < megabytes * 1e6:
        parts: list[str] = []
        while sum(len(p.encode()) for p in parts) < 1900:
            parts.append(rng.choice(decoys if rng.random() < decoy_share else talk))
        parts.insert(rng.randrange(len(parts)), f"身份证 {resident_id(rng)}")
        parts.insert(rng.randrange(len(parts)), f"电话 {mobile(rng)}")
        msg = "\n".join(parts)
        out.append(msg)
        size += len(msg.encode())
    return out


def baseline(msg: str) -> int:
    return sum(len(p.findall(msg)) for p in BASELINE)


def throughput(fn: Callable[[str], object], chunks: list[str]) -> float:
    """MB/s over the whole corpus, best of three."""
    size = sum(len(c.encode()) for c in chunks) / 1e6
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for chunk in chunks:
            fn(chunk)
        best = min(best, time.perf_counter() - t0)
    return size / best


def latency(fn: Callable[[str], object], msgs: list[str]) -> tuple[float, float]:
    """p50 and p99 in µs of one 2 KB message."""
    lat = []
    for m in msgs:
        t = time.perf_counter()
        fn(m)
        lat.append(time.perf_counter() - t)
    q = statistics.quantiles(lat, n=100)
    return q[49] * 1e6, q[98] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--decoys", type=float, default=0.2, help="share of lines with long numbers")
    ap.add_argument("--chunk-kb", type=int, default=1024, help="throughput is measured per chunk")
    args = ap.parse_args()
    msgs = corpus(args.mb, decoy_share=args.decoys)
    chunks: list[str] = []
    for m in msgs:
        if chunks and len(chunks[-1]) < args.chunk_kb * 1024 // 3:
            chunks[-1] += "\n" + m
        else:
            chunks.append(m)
    mb = sum(len(m.encode()) for m in msgs) / 1e6
    detectors = load_policy().detectors  # shipped detectors and the policy's own
    engines: list[tuple[str, Callable[[str], object]]] = [
        ("baseline: re, 2 naive passes", baseline)
    ]
    for engine in ("hyperscan", "python"):
        scanner = Scanner(detectors, b"bench-key" * 4, engine=engine)
        engines.append(
            (
                f"dlp scanner ({_LABEL[engine]}), all detectors",
                lambda m, s=scanner: s.scan(m, "bench"),
            )
        )
    rows = []
    for name, fn in engines:
        latency(fn, msgs[:300])  # warm up
        rows.append((name, throughput(fn, chunks), *latency(fn, msgs[:20000])))
    reference = ReferenceScanner(detectors, b"bench-key" * 4)
    fast = Scanner(detectors, b"bench-key" * 4)
    differ = findings = 0
    for m in msgs:
        want = reference.scan(m)
        findings += len(want)
        differ += {(f.detector, f.key) for f in fast.scan(m, "bench")} != want
    # The reviewer's CPU-exhaustion input: one token of 3,400 space-separated valid IDs
    # (64 KB), every one of them a finding, each inside a longer run of the same detector.
    rng = random.Random(3)
    one_token = " ".join(resident_id(rng) for _ in range(3400))
    fast = Scanner(detectors, b"bench-key" * 4)
    adversarial = [
        (name, throughput(fn, [one_token]))
        for name, fn in (
            ("baseline", baseline),
            ("dlp scanner (compiled)", lambda m: fast.scan(m, "b")),
        )
    ]
    base = rows[0]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (one used), Python "
        f"{platform.python_version()}; corpus {mb:.1f} MB, {len(msgs)} messages of ~2 KB "
        f"({args.decoys:.0%} of lines with decoy numbers), throughput over "
        f"{args.chunk_kb} KB chunks\n"
    )
    print("| engine | MB/s | x baseline | 2 KB p50 µs | 2 KB p99 µs | p99 / baseline p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, mbs, p50, p99 in rows:
        print(
            f"| {name} | {mbs:.1f} | {mbs / base[1]:.2f} | {p50:.0f} | {p99:.0f} | "
            f"{p99 / base[3]:.2f} |"
        )
    print(
        f"\nfast path vs plain reference scanner: {len(msgs) - differ} of {len(msgs)} "
        f"messages identical ({findings} distinct findings in all)"
    )
    print(
        "\none 64 KB token of 3,400 space-separated valid IDs: "
        + ", ".join(f"{name} {mbs:.1f} MB/s" for name, mbs in adversarial)
    )


if __name__ == "__main__":
    main()
