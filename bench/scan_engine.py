"""Scan engine throughput and 2 KB latency against a naive baseline, in one run, one core.

Two corpora of ~2 KB messages, each message with one resident ID and one mobile number:
generated shop chat with a share of decoy lines (order and tracking numbers, timestamps,
prices, IDs with wrong check digits), and a decoy-dense one in which every line but two is a
row of long numbers that are not identifiers (order, tracking and 18-digit payment numbers,
timestamps, prices, SKUs, coupons). Baseline: Python ``re`` with the naive patterns, two
passes per message. The scanner runs with every shipped detector on. The
findings of the fast path are compared with a plain reference implementation on both
corpora. Usage:

    .venv/bin/python bench/scan_engine.py [--mb 50] [--dense-mb 20]
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
from tests.synth import (
    coupon,
    datetime_text,
    identifiers_in,
    mobile,
    order_number,
    ordinary_chat_corpus,
    payment_reference,
    price,
    resident_id,
    sku,
    tracking_number,
    unix_ts,
)

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
    return _messages(
        megabytes, rng, lambda r: r.choice(decoys if r.random() < decoy_share else talk)
    )


def _messages(
    megabytes: float, rng: random.Random, line: Callable[[random.Random], str | None]
) -> list[str]:
    """~2 KB messages of ``line``s (``None``: draw again), each with one valid resident ID and
    one valid mobile inserted at random places."""
    out: list[str] = []
    size = 0
    while size < megabytes * 1e6:
        parts: list[str] = []
        while sum(len(p.encode()) for p in parts) < 1900:
            drawn = line(rng)
            if drawn is not None:
                parts.append(drawn)
        parts.insert(rng.randrange(len(parts)), f"身份证 {resident_id(rng)}")
        parts.insert(rng.randrange(len(parts)), f"电话 {mobile(rng)}")
        msg = "\n".join(parts)
        out.append(msg)
        size += len(msg.encode())
    return out


_DENSE: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"订单号 {order_number(r)}",
    lambda r: f"运单号 {tracking_number(r)}",
    lambda r: f"支付流水号 {payment_reference(r)}",
    lambda r: f"交易号：{payment_reference(r)}",
    lambda r: f"ref {payment_reference(r)} at {unix_ts(r, millis=True)}",
    lambda r: f"支付时间 {datetime_text(r)}，时间戳 {unix_ts(r)}",
    lambda r: (
        f"订单号 {order_number(r)} 支付流水号 {payment_reference(r)} 支付时间 {datetime_text(r)}"
    ),
    lambda r: (
        f"order={order_number(r)} pay_ref={payment_reference(r)} ts={unix_ts(r)} amount={price(r)}"
    ),
    lambda r: f"运单 {tracking_number(r)} 订单 {order_number(r)} 更新 {unix_ts(r, millis=True)}",
    lambda r: f"{payment_reference(r)},{order_number(r)},{unix_ts(r)},{price(r)},{sku(r)}",
    lambda r: f"交易参考号 {payment_reference(r)} 券码 {coupon(r)} 实付 {price(r)}",
    lambda r: (
        f'{{"ts":{unix_ts(r, millis=True)},"order":"{order_number(r)}",'
        f'"trade_no":"{payment_reference(r)}"}}'
    ),
)


def dense_corpus(megabytes: float, seed: int = 2) -> list[str]:
    """~2 KB messages, each with exactly one valid ID and one valid mobile; each of its other
    lines holds long numbers that are not resident IDs or mobiles (order, tracking and payment
    numbers, timestamps) with prices, SKUs and coupons: a hard case for a number scanner, every
    number a token to check. (An order number may pass as a card number, Luhn and prefix: the
    scanner reports it, as the reference does.)"""
    return _messages(megabytes, random.Random(seed), _dense_line)


def _dense_line(rng: random.Random) -> str | None:
    line = rng.choice(_DENSE)(rng)
    return None if any(identifiers_in(line)) else line


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


def scanner_fn(scanner: Scanner) -> Callable[[str], object]:
    return lambda m: scanner.scan(m, "bench")


Row = tuple[str, float, float, float]  # engine, MB/s, p50 µs, p99 µs


def measure(msgs: list[str], chunk_kb: int) -> tuple[list[Row], int, int]:
    """Each engine's throughput (over ``chunk_kb`` chunks) and 2 KB latency; then how many
    messages the fast path and the reference disagree on, and the findings in all."""
    chunks: list[str] = []
    for m in msgs:
        if chunks and len(chunks[-1]) < chunk_kb * 1024 // 3:
            chunks[-1] += "\n" + m
        else:
            chunks.append(m)
    detectors = load_policy().detectors  # shipped detectors and the policy's own
    engines: list[tuple[str, Callable[[str], object]]] = [
        ("baseline: re, 2 naive passes", baseline)
    ]
    for engine in ("hyperscan", "python"):
        scanner = Scanner(detectors, b"bench-key" * 4, engine=engine)
        engines.append((f"dlp scanner ({_LABEL[engine]}), all detectors", scanner_fn(scanner)))
    rows: list[Row] = []
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
    return rows, differ, findings


def report(title: str, msgs: list[str], rows: list[Row], differ: int, findings: int) -> None:
    mb = sum(len(m.encode()) for m in msgs) / 1e6
    print(f"\n{title}: {mb:.1f} MB, {len(msgs)} messages of ~2 KB\n")
    print("| engine | MB/s | x baseline | 2 KB p50 µs | 2 KB p99 µs | p99 / baseline p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = rows[0]
    for name, mbs, p50, p99 in rows:
        print(
            f"| {name} | {mbs:.1f} | {mbs / base[1]:.2f} | {p50:.0f} | {p99:.0f} | "
            f"{p99 / base[3]:.2f} |"
        )
    print(
        f"\nfast path vs plain reference scanner: {len(msgs) - differ} of {len(msgs)} "
        f"messages identical ({findings} distinct findings in all)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50.0, help="size of the chat corpus")
    ap.add_argument("--decoys", type=float, default=0.2, help="share of lines with long numbers")
    ap.add_argument("--dense-mb", type=float, default=20.0, help="size of the decoy-dense one")
    ap.add_argument("--chunk-kb", type=int, default=1024, help="throughput is measured per chunk")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (one used), Python "
        f"{platform.python_version()}; throughput over {args.chunk_kb} KB chunks"
    )
    msgs = corpus(args.mb, decoy_share=args.decoys)
    report(
        f"chat, {args.decoys:.0%} of lines with decoy numbers", msgs, *measure(msgs, args.chunk_kb)
    )
    if args.dense_mb > 0:
        dense = dense_corpus(args.dense_mb)
        report(
            "decoy-dense (all lines but two: order, tracking, payment numbers, timestamps)",
            dense,
            *measure(dense, args.chunk_kb),
        )
    # The reviewer's CPU-exhaustion input: one token of 3,400 space-separated valid IDs
    # (64 KB), every one of them a finding, each inside a longer run of the same detector.
    rng = random.Random(3)
    one_token = " ".join(resident_id(rng) for _ in range(3400))
    fast = Scanner(load_policy().detectors, b"bench-key" * 4)
    adversarial = [
        (name, throughput(fn, [one_token]))
        for name, fn in (
            ("baseline", baseline),
            ("dlp scanner (compiled)", lambda m: fast.scan(m, "b")),
        )
    ]
    print(
        "\none 64 KB token of 3,400 space-separated valid IDs: "
        + ", ".join(f"{name} {mbs:.1f} MB/s" for name, mbs in adversarial)
    )


if __name__ == "__main__":
    main()
