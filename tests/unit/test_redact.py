"""Findings carry where they are in the text as written (characters, before folding), so an
identifier can be masked in place in any rendering; both scanners agree on the spans."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner
from dlp_addon.detect.normalize import normalize
from dlp_addon.detect.redact import redact
from dlp_addon.detect.scanner import Finding
from tests import synth
from tests.unit.test_detection_properties import id_renderings, mobile_renderings

DETECTORS = load_policy().detectors
SCANNERS = [Scanner(DETECTORS, b"k", engine=e) for e in ("hyperscan", "python")]
_DIGITS = re.compile(r"[0-9Xx]")


@pytest.mark.parametrize("scanner", SCANNERS, ids=lambda s: s.engine)
def test_every_rendering_is_masked_in_place(scanner: Scanner) -> None:
    rng = random.Random(21)
    for _ in range(20):
        ident, phone = synth.resident_id(rng), synth.mobile(rng)
        for rendering in id_renderings(ident) + mobile_renderings(phone):
            text = f"备注 {rendering} 好的。"
            found = scanner.scan(text, "t")
            assert found, rendering
            numbers = [f for f in found if f.detector in ("cn_resident_id", "cn_mobile")]
            assert numbers, rendering
            for f in numbers:  # each span lies inside what was written
                assert (
                    text.index(rendering)
                    <= f.start
                    < f.end
                    <= text.index(rendering) + len(rendering)
                ), (f, rendering)
            masked = redact(text, found)
            assert masked.startswith("备注 ") and masked.endswith(" 好的。")
            folded = "".join(_DIGITS.findall(normalize(masked)))
            for raw in (ident, phone):
                assert raw.upper() not in folded.upper(), masked
            assert any(f.masked in masked for f in found)


def test_spans_point_at_the_original_text_after_folding() -> None:
    text = "备注：证件 1101\u200b0519\u200b491231002X，手机 １３８００１３８０００。"
    for scanner in SCANNERS:
        found = {f.detector: f for f in scanner.scan(text, "t")}
        ident, phone = found["cn_resident_id"], found["cn_mobile"]
        assert text[ident.start : ident.end] == "1101\u200b0519\u200b491231002X"
        assert text[phone.start : phone.end] == "１３８００１３８０００"
        assert redact(text, found.values()) == ("备注：证件 110105********002X，手机 138****8000。")


def test_records_names_and_addresses_are_located_too() -> None:
    rng = random.Random(22)
    rows = [synth.customer_records(1, seed=s)[0] for s in range(5)]
    text = "\n".join(f"{r['name']},{r['id']},{r['mobile']},{r['address']}" for r in rows)
    for scanner in SCANNERS:
        found = scanner.scan(text, "t")
        assert {"cn_name", "cn_address", "cn_resident_id", "cn_mobile"} <= {
            f.detector for f in found
        }
        masked = redact(text, found)
        for r in rows:
            for field in ("name", "id", "mobile"):
                assert r[field] not in masked
        assert masked.count("\n") == text.count("\n")
    del rng


def test_overlapping_spans_leave_nothing_raw() -> None:
    text = "张伟住上海市浦东新区张杨路123号"
    a = Finding("cn_name", "k1", "张*", "t", 0, "medium", 0, 2)
    b = Finding("cn_address", "k2", "上海市浦东新*", "t", 0, "medium", 1, len(text))
    assert redact(text, [b, a]) == "张*" + "*" * (len(text) - 2)
    assert redact(text, []) == text
    assert redact(text, [a._replace(start=-1, end=-1)]) == text  # no span: nothing to mask


_INVISIBLE = ["\u200e", "\u200f", "\u202a", "\u2064", "\ufe0f", "\u034f", "\U000e0041", "\u00ad"]


@pytest.mark.parametrize("scanner", SCANNERS, ids=lambda s: s.engine)
def test_invisible_characters_and_other_scripts_digits_hide_nothing(scanner: Scanner) -> None:
    """The review's evasions: direction marks, invisible operators, variation selectors, tags
    between the digits, or digits of another script (Adlam, Brahmi): still found, located."""
    phone = synth.mobile(random.Random(31))
    renderings = [mark.join(phone) for mark in _INVISIBLE]
    renderings += ["".join(chr(base + int(c)) for c in phone) for base in (0x1E950, 0x11066)]
    for rendering in renderings:
        text = f"手机 {rendering} 好的"
        found = [f for f in scanner.scan(text, "t") if f.detector == "cn_mobile"]
        assert len(found) == 1, ascii(rendering)
        assert text[found[0].start : found[0].end] == rendering


def test_every_format_character_and_decimal_digit_is_folded() -> None:
    """normalize covers the whole of Unicode: each format character (Cf) is dropped, each
    decimal digit (Nd) becomes its ASCII digit."""
    for cp in range(0x80, 0x110000):
        category = unicodedata.category(chr(cp))
        if category == "Cf":
            assert normalize(chr(cp)) == "", hex(cp)
        elif category == "Nd":
            assert normalize(chr(cp)) == str(unicodedata.decimal(chr(cp))), hex(cp)
