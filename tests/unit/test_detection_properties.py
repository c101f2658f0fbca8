"""Detection as the issue's "done when" states it: every rendering of a valid number is found,
near-misses are not, ordinary chat yields nothing above low confidence, and records count rows,
not matches."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from dlp_addon.decide import decide, load_policy
from dlp_addon.decide.tally import Tally
from dlp_addon.detect.engine import engine_for
from tests.synth import (
    bad_check_id,
    customer_records,
    identifiers_in,
    mobile,
    non_mobile,
    ordinary_chat_corpus,
    resident_id,
)

POLICY = load_policy()
SCANNER = engine_for(POLICY).scanner
FULLWIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
ZWSP = "\u200b"


def _spaced(v: str, groups: tuple[int, ...]) -> Callable[[str], str]:
    def render(sep: str) -> str:
        out, i = [], 0
        for g in groups:
            out.append(v[i : i + g])
            i += g
        return sep.join(out)

    return render


def id_renderings(v: str) -> list[str]:
    six_eight_four = _spaced(v, (6, 8, 4))
    return [
        v,
        v.lower(),
        v.translate(FULLWIDTH),
        six_eight_four(" "),
        six_eight_four("-"),
        _spaced(v, (4, 4, 4, 4, 2))(" "),
        ZWSP.join(v),
        f"身份证号:{v}，",
        f"ID {v.lower()} 已核实",
    ]


def mobile_renderings(v: str) -> list[str]:
    three_four_four = _spaced(v, (3, 4, 4))
    return [
        v,
        v.translate(FULLWIDTH),
        three_four_four(" "),
        three_four_four("-"),
        f"+86 {v}",
        f"+86-{three_four_four(' ')}",
        f"0086{v}",
        f"86-{v}",
        ZWSP.join(v),
        f"电话{v}收",
    ]


def _found(text: str, detector: str) -> set[str]:
    return {f.masked for f in SCANNER.scan(text, "t") if f.detector == detector}


@pytest.mark.parametrize("seed", range(5))
def test_every_rendering_of_a_valid_id_is_found(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        value = resident_id(rng)
        want = {value[:6] + "*" * 8 + value[-4:]}
        for text in id_renderings(value):
            assert _found(text, "cn_resident_id") == want, f"missed a rendering of {want}"


@pytest.mark.parametrize("seed", range(5))
def test_every_rendering_of_a_valid_mobile_is_found(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(40):
        value = mobile(rng)
        want = {value[:3] + "****" + value[-4:]}
        for text in mobile_renderings(value):
            assert _found(text, "cn_mobile") == want, f"missed a rendering of {want}"


def test_wrong_check_digits_and_unallocated_prefixes_are_not_found() -> None:
    rng = random.Random(7)
    for _ in range(500):
        for text in id_renderings(bad_check_id(rng)):
            assert not _found(text, "cn_resident_id")
        for text in mobile_renderings(non_mobile(rng)):
            assert not _found(text, "cn_mobile")


def test_ordinary_chat_yields_nothing_above_low_confidence() -> None:
    messages = [m for m in ordinary_chat_corpus(seed=2026, n=11000) if not any(identifiers_in(m))]
    assert len(messages) >= 10000
    above_low = [
        (f.detector, f.masked)
        for m in messages[:10000]
        for f in SCANNER.scan(m, "chat")
        if f.confidence != "low"
    ]
    assert not above_low, f"{len(above_low)} findings above low confidence, e.g. {above_low[:5]}"


def _table(n: int, seed: int) -> str:
    rows = customer_records(n, seed)
    header = "姓名\t身份证号\t手机号码\t住址"
    return "\n".join(
        [header, *(f"{r['name']}\t{r['id']}\t{r['mobile']}\t{r['address']}" for r in rows)]
    )


def test_a_200_row_table_counts_200_records_not_600_matches() -> None:
    table = _table(200, seed=3)
    findings = SCANNER.scan(table, "body")
    tally = Tally(findings, POLICY.detectors)
    assert len([f for f in findings if f.detector in ("cn_resident_id", "cn_mobile")]) == 400
    assert tally.records() == 200
    assert tally.distinct("cn_resident_id") == 200
    twice = SCANNER.scan(table + "\n" + table, "body")
    tally = Tally(twice, POLICY.detectors)
    assert tally.distinct("cn_resident_id") == 200 and tally.records() == 200


def test_records_by_legal_category_and_threshold_rules() -> None:
    verdict = decide(
        POLICY, SCANNER.scan(_table(12, seed=4), "body"), destination="jd", channel="http"
    )
    assert verdict.blocks and verdict.records == 12


def test_keyed_hashes_not_values() -> None:
    value = resident_id(random.Random(1))
    finding = SCANNER.scan(value, "t")[0]
    assert value not in repr(finding) and value not in finding.key
    rekeyed = engine_for(load_policy(hmac_key=b"another key, another hash")).scanner
    other = rekeyed.scan(value, "t")[0]
    assert other.key != finding.key


def unionpay_card(rng: random.Random, length: int) -> str:
    """A Luhn-valid UnionPay-style number (invented)."""
    body = "62" + "".join(rng.choice("0123456789") for _ in range(length - 3))
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d) * (1 if i % 2 else 2)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


def card_renderings(v: str) -> list[str]:
    fours = tuple([4] * (len(v) // 4) + ([len(v) % 4] if len(v) % 4 else []))
    return [
        v,
        v.translate(FULLWIDTH),
        _spaced(v, fours)(" "),
        _spaced(v, fours)("-"),
        ZWSP.join(v),
        f"银行卡号：{v}",
    ]


@pytest.mark.parametrize("length", [16, 19])
def test_every_rendering_of_a_valid_card_is_found(length: int) -> None:
    rng = random.Random(length)
    for _ in range(100):
        value = unionpay_card(rng, length)
        want = {value[:4] + "*" * (length - 8) + value[-4:]}
        for text in card_renderings(value):
            assert _found(text, "bank_card") == want, f"missed a rendering of {want}"
        # A wrong check digit is never a card. (Grouped renderings are left out on purpose:
        # the first 16 digits of a grouped 19-digit number are a 16-digit candidate of their
        # own, and pass Luhn one time in ten.)
        broken = value[:-1] + str((int(value[-1]) + 1) % 10)
        for text in (broken, broken.translate(FULLWIDTH), ZWSP.join(broken), f"卡号{broken}"):
            assert not _found(text, "bank_card")
