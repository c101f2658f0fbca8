"""The C answer to "may numerals or letters stand for digits here" (``_numscan.digit_hint``,
which the hyperscan prefilter asks instead of matching ``DIGIT_HINTS`` itself) is the regexes'
answer: otherwise a number written 一三八... or l38OO... would not be folded and read."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.detect.keywords import HyperscanPrefilter as _HyperscanPrefilter
from dlp_addon.detect.native import numscan as _numscan
from dlp_addon.detect.normalize import DIGIT_HINTS, NUMERALS

HINTS = re.compile("|".join(DIGIT_HINTS))
PRE = _HyperscanPrefilter(["身份证"], {})
_NUMERALS = sorted(NUMERALS)
_PIECES = st.sampled_from(
    [
        *_NUMERALS[:20],
        *_NUMERALS[-20:],
        *"0123456789",
        *" \t-./,;_|\r\n、，；",
        *"中文abOolIX",
        "é",
        "😀",
    ]
)


@settings(max_examples=3000)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_the_c_hint_is_the_regexes(text: str) -> None:
    assert PRE._hint_bits is not None and _numscan is not None  # the compiled path answers
    assert PRE.scan(text.encode(), text).digit_hint == (HINTS.search(text) is not None)


def test_examples() -> None:
    hint = [PRE.scan(t.encode(), t).digit_hint for t in ("一三八", "一3-8 0", "1二", "周三11点")]
    assert hint == [False, True, False, False]
    assert PRE.scan(b"l38OO", "l38OO").digit_hint
    assert PRE.scan("一 1 2 3".encode(), "一 1 2 3").digit_hint
    assert not PRE.scan("一    1 2 3".encode(), "一    1 2 3").digit_hint  # four spaces apart
