"""Every detector's own samples, the shipped ones and the shipped policy's custom ones: each
`match` sample yields that detector, no `no_match` sample does."""

from __future__ import annotations

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner

POLICY = load_policy()
DETECTORS = POLICY.detectors
SCANNERS = {
    engine: Scanner(DETECTORS, b"test-key", engine=engine) for engine in ("hyperscan", "python")
}

CASES = [
    (det.id, kind, sample)
    for det in DETECTORS.detectors
    for kind, samples in (("match", det.samples_match), ("no_match", det.samples_no_match))
    for sample in samples
]


@pytest.mark.parametrize("engine", sorted(SCANNERS))
@pytest.mark.parametrize(("detector", "kind", "sample"), CASES, ids=lambda v: str(v)[:24])
def test_sample(engine: str, detector: str, kind: str, sample: str) -> None:
    found = [f for f in SCANNERS[engine].scan(sample, "sample") if f.detector == detector]
    if kind == "match":
        assert found, f"{detector} missed a sample it must match"
    else:
        assert not found, f"{detector} matched a sample it must not: {[f.masked for f in found]}"


def test_every_detector_ships_samples() -> None:
    for det in DETECTORS.detectors:
        assert det.samples_match and det.samples_no_match, det.id
