"""Issue 16 at the scanner: every rendering of 20 customer records in tests/renderings.py is
read back as 20 resident IDs (and 20 mobiles where the mobile is rendered too) that the shipped
rules count and block; prices and IP addresses make no countable mobile; a disguised ID alone
stays low until records are clearly present."""

from __future__ import annotations

import random

import pytest

from dlp_addon.decide import decide, load_policy
from dlp_addon.decide.tally import Tally
from dlp_addon.detect import Scanner
from tests.renderings import NUMBERS_CHAT, RENDERINGS, check_x_records, rendered_text
from tests.synth import customer_records, mobile, resident_id

POLICY = load_policy()
SCANNERS = {
    e: Scanner(POLICY.detectors, b"renderings-key", engine=e) for e in ("hyperscan", "python")
}
# Read by extraction (the entities become a part of their own), not by the scanner.
_EXTRACTION = {"html-entities-decimal", "html-entities-hex"}
_ID_ONLY = {"prefixed-letter", "prefixed-digit", "check-digit-dropped", "old-15-digit", "reversed"}


def _records(rendering: str) -> list[dict[str, str]]:
    return (
        check_x_records(20, seed=16)
        if rendering.startswith("check-x")
        else customer_records(20, 16)
    )


@pytest.mark.parametrize("engine", sorted(SCANNERS))
@pytest.mark.parametrize("rendering", sorted(set(RENDERINGS) - _EXTRACTION))
def test_every_rendering_counts_20_records_and_blocks(engine: str, rendering: str) -> None:
    text = rendered_text(_records(rendering), rendering)
    findings = SCANNERS[engine].scan(text, "chat")
    tally = Tally(findings, POLICY.detectors)
    assert tally.distinct("cn_resident_id") == 20, f"{rendering}: IDs counted"
    if rendering not in _ID_ONLY:
        assert tally.distinct("cn_mobile") == 20, f"{rendering}: mobiles counted"
    if rendering == "sep-line-break":  # a row broken over lines counts each line it holds IDs on
        assert 20 <= tally.records() <= 40, f"{rendering}: records"
    else:
        assert tally.records() == 20, f"{rendering}: records"
    verdict = decide(POLICY, findings, destination="taobao-tmall", channel="http")
    assert verdict.blocks, f"{rendering} was not blocked"


@pytest.mark.parametrize("engine", sorted(SCANNERS))
def test_prices_ip_addresses_and_size_charts_make_no_countable_mobile(engine: str) -> None:
    findings = SCANNERS[engine].scan(NUMBERS_CHAT, "chat")
    counted = [f.masked for f in findings if f.detector == "cn_mobile" and f.confidence != "low"]
    assert not counted, f"prices read as mobiles: {counted}"
    assert not decide(POLICY, findings, destination="jd", channel="http").blocks


@pytest.mark.parametrize("engine", sorted(SCANNERS))
def test_a_mobile_is_counted_as_people_write_it_and_not_as_prices_add_up(engine: str) -> None:
    value = mobile(random.Random(5))
    a, b, c = value[:3], value[3:7], value[7:]
    scan = SCANNERS[engine].scan

    def level(text: str) -> set[str]:
        return {f.confidence for f in scan(text, "t") if f.detector == "cn_mobile"}

    for written in (
        f"{a} {b} {c}",
        f"{a}-{b}-{c}",
        f"{a}\t{b}\t{c}",
        f"{a}、{b}、{c}",
        f"+86 {a} {b} {c}",
    ):
        assert level(written) == {"medium"}, "a 3-4-4 mobile"
    assert level(f"{a}.{b[:2]} {b[2:]}{c[:2]}.{c[2:]}") == {"low"}, "3-2-4-2 (two prices)"
    assert level(f"{a[:2]}\t{a[2:]}{b}\t{c}") == set(), "across tabs, only 3-4-4 counts at all"


@pytest.mark.parametrize("engine", sorted(SCANNERS))
def test_a_disguised_id_alone_is_low_and_raised_where_records_are_present(engine: str) -> None:
    rng = random.Random(3)
    ids = [resident_id(rng) for _ in range(3)]
    scan = SCANNERS[engine].scan

    def levels(text: str) -> list[str]:
        return [f.confidence for f in scan(text, "t") if f.detector == "cn_resident_id"]

    for disguised in (ids[0][:17], ids[0][::-1], "9" + ids[0]):
        assert levels(f"订单备注 {disguised}") == ["low"], "one disguised number is not a record"
        assert levels(f"王秀英 {disguised} 上海") == ["medium"], "with a name on its line"
    three = "\n".join(f"备注 {v[:17]}" for v in ids)
    assert levels(three) == ["medium"] * 3, "three lines of them are a table"
    findings = scan(f"订单备注 {ids[0][:17]}", "t")
    assert not decide(POLICY, findings, destination="jd", channel="http").blocks


def test_an_ids_key_is_the_same_whatever_its_rendering() -> None:
    """Budgets de-duplicate by keyed hash: the 17-digit and reversed forms are the same ID."""
    value = resident_id(random.Random(8))
    keys = {
        f.key
        for text in (value, value[:17], value[::-1], "A" + value, f"{value[:6]}\t{value[6:]}")
        for f in SCANNERS["hyperscan"].scan(f"王伟 {text}", "t")
        if f.detector == "cn_resident_id"
    }
    assert len(keys) == 1
