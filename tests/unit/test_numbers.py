"""The scanner's compiled hot path (``_numscan``) agrees with its pure-Python twin on any input,
and the plan drops exactly the candidates no detector could accept."""

from __future__ import annotations

import random
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.decide import load_policy
from dlp_addon.detect import numbers
from dlp_addon.detect.normalize import TRIGGERS, needs_folding, needs_folding_utf8
from dlp_addon.detect.numbers import Candidate, Plan, find, find_python
from tests.synth import mobile, resident_id

NUMERIC = [d for d in load_policy().detectors.detectors if d.kind == "numeric"]
SHIPPED = Plan.for_detectors(NUMERIC)
# Every length 7..20 with no checks: exercises token and candidate enumeration alone.
EVERYTHING = Plan(
    tuple((n, numbers.CHECK_NONE, frozenset(range(1000))) for n in range(7, 21)),
    b"".join(bytes([n, 0]) + b"\xff" * 125 for n in range(7, 21)),
)

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
    assert numbers.COMPILED


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=60))
def test_c_and_python_find_the_same_candidates(pieces: list[str]) -> None:
    data = "".join(pieces).encode()
    for plan in (SHIPPED, EVERYTHING):
        assert find(data, plan) == find_python(data, plan)


def test_c_and_python_agree_on_identifiers_among_noise() -> None:
    rng = random.Random(3)
    for _ in range(300):
        parts = [resident_id(rng), mobile(rng), str(rng.randrange(10**17, 10**19)), "订单"]
        seps = [" ", "-", "", "x", "号", "\n"]
        data = "".join(p + rng.choice(seps) for p in rng.sample(parts, len(parts))).encode()
        assert find(data, SHIPPED) == find_python(data, SHIPPED)
        assert find(data, EVERYTHING) == find_python(data, EVERYTHING)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab1 中文，" + TRIGGERS[:40] + TRIGGERS[-40:]), max_size=40)
)
def test_fold_check_in_c_equals_python(text: str) -> None:
    assert needs_folding_utf8(text.encode(), text) == needs_folding(text)


def test_plan_drops_only_what_no_detector_accepts() -> None:
    rng = random.Random(4)
    ident = resident_id(rng)
    wrong = ident[:17] + ("0" if ident[17] != "0" else "1")
    text = f"身份证 {ident} 又 {wrong}".encode()
    found = {Candidate(*c).digits.decode() for c in find(text, SHIPPED)}
    assert ident in found and wrong not in found  # the check digit decides, in C
    # 13-digit millisecond timestamps are no mobile (that needs 86 in front), nor anything else.
    assert find(b"ts=1732781234567&t=1700000000000", SHIPPED) == []
    # An 11-digit number in a block never allocated to mobiles (140...) is not even a candidate.
    assert not [c for c in find(b"tel 14012345678", SHIPPED) if len(c[3]) == 11]
    assert [c[3] for c in find(b"tel 13800138000", SHIPPED)] == [b"13800138000"]


def test_numeric_detector_that_cannot_be_planned_is_a_policy_error(tmp_path: Path) -> None:
    from tests.unit.test_policy import CUSTOM, _problems

    text = CUSTOM.replace(
        "    regex: 'EMP[0-9]{6}'\n", "    numeric: {lengths: [10], pattern: '\\b[0-9]{10}'}\n"
    ).replace("match: [EMP123456], no_match: [EMP12]", "match: ['a 1234567890'], no_match: ['x']")
    problems = _problems(tmp_path, text)
    bad = [p for p in problems if "numeric pattern" in p]
    assert bad and re.match(r".+policy\.yaml:\d+: ", bad[0]), problems
