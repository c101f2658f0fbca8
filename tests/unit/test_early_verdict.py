"""The early verdict: a long upload whose first rows already make a rule block is answered
without scanning the rest, and the verdict and the audit say its counts are lower bounds; a
benign one, a rule that only logs and monitor mode are always read to the end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dlp_addon.act.audit import decision_event
from dlp_addon.decide import load_policy
from dlp_addon.decide.policy import DEFAULT_POLICY, Policy
from dlp_addon.detect import offsets
from dlp_addon.errors import PolicyError
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import Inspection, inspect_http
from tests.synth import customer_records, records_chat_text

RECORDS = customer_records(3000, seed=77)
TABLE = records_chat_text(RECORDS)
CATALOGUE = "\n".join(
    f"拉杆箱 {20 + i % 9}寸\tSKU-LX{i:06d}\t黑色\t{199 + i % 700}.00" for i in range(6000)
)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few thousand characters, so a test-sized table is a long part."""
    monkeypatch.setattr(offsets, "_CHUNK_CHARS", 8_000)
    monkeypatch.setattr(offsets, "_FIRST_CHUNK_CHARS", 2_000)


def _inspect(policy: Policy, text: str) -> Inspection:
    req = HttpInput("POST", "/chat", {"content-type": "text/plain"}, text.encode())
    return inspect_http(policy, req, "taobao-tmall")


def test_a_table_of_customers_is_blocked_after_its_first_rows() -> None:
    early = _inspect(load_policy(), TABLE).verdict
    assert early.blocks and early.rule == "bulk-resident-id" and early.reason == "findings"
    assert not early.complete
    assert 5 <= early.counts["cn_resident_id"] < len(RECORDS) // 10  # "at least", a few rows


def test_without_the_early_verdict_every_row_is_counted() -> None:
    policy = dataclasses.replace(load_policy(), early_verdict=False)
    full = _inspect(policy, TABLE).verdict
    assert full.blocks and full.rule == "bulk-resident-id" and full.complete
    assert full.counts["cn_resident_id"] == len(RECORDS)
    assert full.records == len(RECORDS)


def test_monitor_mode_counts_everything_that_passes() -> None:
    monitor = dataclasses.replace(load_policy(), mode="monitor")
    verdict = _inspect(monitor, TABLE).verdict
    assert not verdict.blocks and verdict.complete
    assert verdict.counts["cn_resident_id"] == len(RECORDS)


def test_a_benign_table_is_read_to_the_end() -> None:
    two = records_chat_text(RECORDS[:2])  # two customers at the very end: not a block
    verdict = _inspect(load_policy(), CATALOGUE + "\n" + two).verdict
    assert not verdict.blocks and verdict.complete
    assert verdict.counts["cn_resident_id"] == 2


def test_the_audit_event_says_the_counts_are_lower_bounds() -> None:
    def event(policy: Policy) -> dict[str, object]:
        return decision_event(
            _inspect(policy, TABLE).verdict,
            incident_id="x",
            client="127.0.0.1",
            destination="taobao-tmall",
            host="example.com",
            method="POST",
            path="/chat",
            channel="http",
            policy_version="v",
        )

    assert event(load_policy())["counts_complete"] is False
    assert event(dataclasses.replace(load_policy(), early_verdict=False))["counts_complete"] is True


def _policy_with(tmp_path: Path, value: object) -> Policy:
    doc = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    doc["inspection"]["early_verdict"] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_policy(path)


def test_the_admin_can_turn_it_off(tmp_path: Path) -> None:
    assert load_policy().early_verdict is True  # the shipped default
    assert _policy_with(tmp_path, False).early_verdict is False
    with pytest.raises(PolicyError, match="early_verdict"):
        _policy_with(tmp_path, "sometimes")
