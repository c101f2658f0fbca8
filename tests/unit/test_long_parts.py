"""A long part (a big sheet's text) is scanned in chunks of whole lines with the deadline checked
between them; what was found before the deadline may decide the block by itself."""

from __future__ import annotations

from typing import Any

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.decide.policy import Policy
from dlp_addon.detect import scanner as scanner_module
from dlp_addon.detect.scanner import Scanner, ScanTimeout
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import inspect_http
from tests.synth import customer_records, records_chat_text

RECORDS = customer_records(3000, seed=4242)
TABLE = records_chat_text(RECORDS)


def test_chunked_scan_finds_what_one_pass_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy()
    whole = policy.scanner.scan_all([("body", TABLE)])
    monkeypatch.setattr(scanner_module, "_CHUNK_CHARS", 5_000)
    assert len(list(scanner_module._chunks(TABLE))) > 20
    chunked = policy.scanner.scan_all([("body", TABLE)])
    assert {(f.detector, f.key) for f in chunked} == {(f.detector, f.key) for f in whole}
    assert {f.record for f in chunked} == {f.record for f in whole}  # same lines, same records
    assert len({f.record for f in chunked if f.detector == "cn_resident_id"}) == len(RECORDS)


class _StopsHalfway(Scanner):
    """Scans the first half of every part for real, then reports the deadline passed."""

    def scan_all(self, parts: Any, deadline: float | None = None) -> Any:
        found = []
        for location, text in parts:
            lines = text.split("\n")
            found += self.scan("\n".join(lines[: len(lines) // 2]), location)
        raise ScanTimeout(found)


def _inspect(policy: Policy, text: str) -> Any:
    stopping = _StopsHalfway(policy.detectors, b"k" * 32)
    policy = Policy(**{**policy.__dict__, "scanner": stopping})
    req = HttpInput("POST", "/chat", {"content-type": "text/plain"}, text.encode())
    return inspect_http(policy, req, "taobao-tmall")


def test_a_deadline_after_enough_findings_blocks_by_the_rule() -> None:
    inspection = _inspect(load_policy(), TABLE)
    verdict = inspection.verdict
    assert verdict.blocks and verdict.reason == "findings:partial"
    assert verdict.rule == "bulk-resident-id"
    assert 0 < verdict.counts["cn_resident_id"] < len(RECORDS)  # "at least", of what was read
    assert inspection.error_stage == "timeout"  # still counted as an inspection past its deadline


def test_a_deadline_before_anything_decisive_is_still_an_error_block() -> None:
    few = records_chat_text(RECORDS[:4])  # half of it holds 2 IDs: no rule blocks on that
    verdict = _inspect(load_policy(), few).verdict
    assert verdict.blocks and verdict.reason == "error:timeout"
