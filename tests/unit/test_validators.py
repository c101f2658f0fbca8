"""Validators: checksums, dates and allocations decide; real numbers are not rejected."""

from __future__ import annotations

import datetime as dt
import random

import phonenumbers

from dlp_addon.detect.validators import cn_mobile, gb11643, gb11643_check_char


def _id(region: str, born: dt.date, seq: int) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + gb11643_check_char(first17)


def test_standard_examples_pass() -> None:
    assert gb11643("11010519491231002X") == "11010519491231002X"
    assert gb11643("440524188001010014") == "440524188001010014"
    assert gb11643("11010519491231002x") == "11010519491231002X"


def test_every_wrong_check_digit_is_rejected() -> None:
    good = "11010519491231002X"
    for c in "0123456789":
        assert gb11643(good[:17] + c) is None


def test_retired_region_codes_still_pass() -> None:
    # An ID keeps the county code it was issued under. 110102 (Xicheng) absorbed 110104
    # (Xuanwu) in 2010; a person born in 1941 registered under a code created later
    # is just as real. Only the province is checked.
    assert gb11643(_id("110104", dt.date(1941, 3, 5), 17)) is not None
    assert gb11643(_id("469027", dt.date(1941, 3, 5), 18)) is not None


def test_dates_and_provinces() -> None:
    rng = random.Random(7)
    for _ in range(500):
        born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 60))
        assert gb11643(_id("320106", born, rng.randrange(1000))) is not None
    assert gb11643(_id("990105", dt.date(1980, 1, 1), 1)) is None  # no province 99
    assert gb11643(_id("810000", dt.date(1990, 1, 1), 1)) is not None  # HK residence permit
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    assert gb11643(_id("320106", tomorrow, 1)) is None
    assert gb11643("32010619000229" + "0010") is None  # no 29 February 1900


def test_random_digits_rarely_pass() -> None:
    rng = random.Random(11)
    passed = sum(
        gb11643("".join(rng.choice("0123456789") for _ in range(18))) is not None
        for _ in range(20000)
    )
    assert passed < 20000 / 200  # checksum (1/11), date and province together


def test_mobile_prefixes_follow_phonenumbers_metadata() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        n = "1" + "".join(rng.choice("0123456789") for _ in range(10))
        parsed = phonenumbers.parse("+86" + n)
        expected = (
            phonenumbers.is_valid_number(parsed)
            and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
        )
        assert (cn_mobile(n) is not None) == expected


def test_mobile_prefix_forms_are_canonicalised() -> None:
    for form in ("+86 138 0013 8000", "0086-13800138000", "86-138-0013-8000", "13800138000"):
        assert cn_mobile(form) == "13800138000"
    assert cn_mobile("12012345678") is None
