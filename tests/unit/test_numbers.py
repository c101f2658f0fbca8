"""The scanner's compiled hot path (``_numscan``) agrees with its pure-Python twin on any input
(candidates left to Python included), and the plan drops exactly the candidates no detector
could accept."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner, _numscan, native, validators
from dlp_addon.detect.candidates import Candidate, find_python
from dlp_addon.detect.kinds import NumericDetector
from dlp_addon.detect.normalize import TRIGGERS, needs_folding
from dlp_addon.detect.plan import Plan
from tests.synth import mobile, resident_id

DETECTORS = load_policy().detectors
NUMERIC = [d for d in DETECTORS.detectors if d.kind == "numeric"]
SHIPPED = Plan.for_detectors(NUMERIC)

_PIECES = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "3",
        "5",
        "8",
        "9",
        "12",
        "86",
        "1380013",
        "X",
        "x",
        " ",
        "-",
        ".",
        "/",
        "  ",
        "a",
        "Z",
        "号",
        "\n",
        "１",
        "\u200b",
        "é",
    ]
)


def test_the_c_hot_path_is_built() -> None:
    """scripts/setup builds it; without it the scanner is correct but several times slower."""
    assert native.COMPILED


# Every number of 7 to 20 digits, validated in Python: the C pass hands each candidate back
# pending, so candidate enumeration alone is compared with find_python.
_ANY = NumericDetector(
    id="any_number",
    name_zh="数字",
    name_en="any number",
    category="other",
    legal_category="other",
    confidence="medium",
    validate=validators.none,
    mask_keep=(2, 2),
    lengths=frozenset(range(7, 21)),
    numeric=re.compile(rb"[0-9]{6,19}[0-9Xx]"),
)
SETS = {
    "shipped": DETECTORS,
    "shipped + any number": dataclasses.replace(DETECTORS, detectors=(*DETECTORS.detectors, _ANY)),
}
SCANNERS = {
    name: (Scanner(ds, b"k", engine="hyperscan"), Scanner(ds, b"k", engine="python"))
    for name, ds in SETS.items()
}


def _nothing_near(scanner: Scanner) -> list[list[int] | None]:
    """No context word or keyword anywhere, for each detector of the scanner's C pass."""
    return [None] * (2 * len(scanner._c_dets))


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=60))
def test_c_and_python_find_the_same(pieces: list[str]) -> None:
    text = "".join(pieces)
    for compiled, python in SCANNERS.values():
        assert sorted(compiled.scan(text, "t")) == sorted(python.scan(text, "t"))


def test_candidates_left_to_python_come_back_pending() -> None:
    compiled, _ = SCANNERS["shipped + any number"]
    result = _numscan.findings(
        b"order 1234567 and 1234 5678 9012", compiled._compiled, "t", 0, _nothing_near(compiled), 0
    )
    assert result is not None
    done, records, pending = result
    assert done == [] and records == []
    assert {p[3] for p in pending} == {b"1234567", b"12345678", b"123456789012", b"56789012"}


def test_c_and_python_agree_on_identifiers_among_noise() -> None:
    rng = random.Random(3)
    for _ in range(300):
        parts = [resident_id(rng), mobile(rng), str(rng.randrange(10**17, 10**19)), "订单"]
        seps = [" ", "-", "", "x", "号", "\n"]
        text = "".join(p + rng.choice(seps) for p in rng.sample(parts, len(parts)))
        for compiled, python in SCANNERS.values():
            assert sorted(compiled.scan(text, "t")) == sorted(python.scan(text, "t"))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab1 中文，" + TRIGGERS[:40] + TRIGGERS[-40:]), max_size=40)
)
def test_fold_check_in_c_equals_python(text: str) -> None:
    """The C pass answers None (fold first) exactly when the text needs folding."""
    compiled = SCANNERS["shipped"][0]
    result = _numscan.findings(
        text.encode(), compiled._compiled, "t", 0, _nothing_near(compiled), 0
    )
    assert (result is None) == needs_folding(text)


def test_plan_drops_only_what_no_detector_accepts() -> None:
    rng = random.Random(4)
    ident = resident_id(rng)
    wrong = ident[:17] + ("0" if ident[17] != "0" else "1")
    text = f"身份证 {ident} 又 {wrong}".encode()
    found = {Candidate(*c).digits.decode() for c in find_python(text, SHIPPED)}
    assert ident in found and wrong not in found  # the check digit decides before any detector
    # 13-digit millisecond timestamps are no mobile (that needs 86 in front), nor anything else.
    assert find_python(b"ts=1732781234567&t=1700000000000", SHIPPED) == []
    # An 11-digit number in a block never allocated to mobiles (140...) is not even a candidate.
    assert not [c for c in find_python(b"tel 14012345678", SHIPPED) if len(c[3]) == 11]
    assert [c[3] for c in find_python(b"tel 13800138000", SHIPPED)] == [b"13800138000"]


def test_numeric_detector_that_cannot_be_planned_is_a_policy_error(tmp_path: Path) -> None:
    from tests.unit.test_policy import CUSTOM, _problems

    text = CUSTOM.replace(
        "    regex: 'EMP[0-9]{6}'\n", "    numeric: {lengths: [10], pattern: '\\b[0-9]{10}'}\n"
    ).replace("match: [EMP123456], no_match: [EMP12]", "match: ['a 1234567890'], no_match: ['x']")
    problems = _problems(tmp_path, text)
    bad = [p for p in problems if "numeric pattern" in p]
    assert bad and re.match(r".+policy\.yaml:\d+: ", bad[0]), problems
