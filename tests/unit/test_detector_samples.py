"""Every detector's own samples: each `match` sample yields that detector, no `no_match` does."""

from __future__ import annotations

import pytest

from dlp_addon.detect import Scanner, load_detectors

DETECTORS = load_detectors()
SCANNER = Scanner(DETECTORS, b"test-key")

CASES = [
    (det.id, kind, sample)
    for det in DETECTORS.detectors
    for kind, samples in (("match", det.samples_match), ("no_match", det.samples_no_match))
    for sample in samples
]


@pytest.mark.parametrize(("detector", "kind", "sample"), CASES, ids=lambda v: str(v)[:24])
def test_sample(detector: str, kind: str, sample: str) -> None:
    found = [f for f in SCANNER.scan(sample, "sample") if f.detector == detector]
    if kind == "match":
        assert found, f"{detector} missed a sample it must match"
    else:
        assert not found, f"{detector} matched a sample it must not: {[f.masked for f in found]}"


def test_every_detector_ships_samples() -> None:
    for det in DETECTORS.detectors:
        assert det.samples_match and det.samples_no_match, det.id
