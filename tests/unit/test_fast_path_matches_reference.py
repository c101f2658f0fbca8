"""The fast scanner (hyperscan prefilter, and its pure-Python fallback) finds exactly what the
plain reference scanner finds, on decoy-heavy chat (and chat whose lines are nearly all order,
tracking and payment numbers) with identifiers in every rendering."""

from __future__ import annotations

import random

from bench.scan_engine import corpus, dense_corpus
from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner
from tests.reference_scanner import ReferenceScanner
from tests.synth import mobile, resident_id
from tests.unit.test_detection_properties import id_renderings, mobile_renderings

KEY = b"reference-key"
DETECTORS = load_policy().detectors


def _messages() -> list[str]:
    rng = random.Random(9)
    tricky = [
        " ".join(id_renderings(resident_id(rng)) + mobile_renderings(mobile(rng)))
        for _ in range(100)
    ]
    filler = "亲，这款行李箱还有货吗？" * 40
    shaped = [
        f"{filler}\n张伟 邮箱 zhang.{i}@example.com 车牌 沪A{i:05d} 护照 E{i:08d}\n{filler}"
        f" 发到 li_{i}@mail.example.cn 港澳通行证 C{i:08d} 台胞证 {i + 10**7} 税号 "
        f"91350100M000100Y43\n{filler} 编号 {i + 2 * 10**7}"
        for i in range(200)
    ]
    return (
        corpus(0.6, seed=5, decoy_share=1.0)
        + corpus(0.4, seed=6)
        + dense_corpus(0.3, seed=7)
        + tricky
        + shaped
    )


def test_fast_paths_equal_the_reference() -> None:
    reference = ReferenceScanner(DETECTORS, KEY)
    fast = {e: Scanner(DETECTORS, KEY, engine=e) for e in ("hyperscan", "python")}
    messages = _messages()
    differ = 0
    total = 0
    for msg in messages:
        want = reference.scan(msg)
        total += len(want)
        for scanner in fast.values():
            got = {(f.detector, f.key) for f in scanner.scan(msg, "m")}
            differ += got != want
    assert total > 1000
    assert differ == 0, f"{differ} messages where a fast path and the reference disagree"
