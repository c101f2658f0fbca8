"""Validators: checksums, dates and allocations decide; real numbers are not rejected."""

from __future__ import annotations

import datetime as dt
import random

import phonenumbers

from dlp_addon.detect.validators import (
    cn_landline,
    cn_mobile,
    email,
    format_only,
    gb11643,
    gb11643_15,
    gb11643_check_char,
    gb32100,
    luhn,
    luhn_card,
)

DIGITS = "0123456789"


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


def test_legacy_15_digit_ids_need_a_province_and_a_real_19yy_date() -> None:
    rng = random.Random(15)
    for _ in range(500):
        born = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange(36524))
        value = f"320106{born:%y%m%d}{rng.randrange(1000):03d}"
        assert gb11643_15(value) == value
    assert gb11643_15("310104800229123") is not None  # 1980 was a leap year
    assert gb11643_15("310104810229123") is None
    assert gb11643_15("310104000229123") is None  # 1900 was not
    assert gb11643_15("990104800101123") is None
    assert gb11643_15("310104801301123") is None
    assert gb11643_15("3101048001011234") is None


def test_landlines_agree_with_phonenumbers_fixed_line() -> None:
    # For CN, phonenumbers reports landlines as FIXED_LINE (never FIXED_LINE_OR_MOBILE: the
    # mobile and fixed-line ranges do not overlap); 400 and 800 numbers are SHARED_COST and
    # TOLL_FREE.
    rng = random.Random(21)
    fixed = (
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    found = 0
    for _ in range(5000):
        area = rng.choice(["10", "20", "21", "28", str(rng.randrange(300, 1000))])
        number = "0" + area + "".join(rng.choice(DIGITS) for _ in range(rng.choice((7, 8))))
        parsed = phonenumbers.parse(number, "CN")
        expected = (
            phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in fixed
        )
        assert (cn_landline(number) is not None) == expected
        found += expected
    assert found > 1000


def test_landline_prefix_forms_are_canonicalised() -> None:
    for form in ("010-12345678", "+86 10 1234 5678", "0086-10-12345678", "86 10 12345678"):
        assert cn_landline(form) == "01012345678"
    for other in ("4008001234", "020-8888888", "008610123456789", "13800138000"):
        assert cn_landline(other) is None


def _luhn_complete(body: str) -> str:
    return next(body + c for c in DIGITS if luhn(body + c))


def test_generated_unionpay_cards_pass_and_every_single_digit_error_fails() -> None:
    rng = random.Random(62)
    for _ in range(300):
        length = rng.choice((16, 17, 18, 19))
        card = _luhn_complete("62" + "".join(rng.choice(DIGITS) for _ in range(length - 3)))
        if len(card) == 18 and gb11643(card) is not None:
            continue
        assert luhn_card("-".join((card[:4], card[4:8], card[8:]))) == card
        for i, right in enumerate(card):
            for wrong in DIGITS.replace(right, ""):
                assert luhn_card(card[:i] + wrong + card[i + 1 :]) is None


def test_card_lengths_and_resident_ids() -> None:
    assert luhn_card("6200000000000005") == "6200000000000005"
    assert luhn_card("79927398713") is None  # Luhn-valid, too short for a card
    # An 18-digit ID that happens to pass Luhn is an ID, not a card.
    rng = random.Random(18)
    checked = 0
    while checked < 50:
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000))
        value = _id(rng.choice(["620102", "440105", "411302"]), born, rng.randrange(1000))
        if luhn(value):
            assert luhn_card(value) is None
            checked += 1


def _uscc(body: str) -> str:
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(chars.index(c) * w for c, w in zip(body, weights, strict=True))
    return body + chars[(31 - total % 31) % 31]


def test_generated_credit_codes_pass_and_every_single_character_error_fails() -> None:
    assert gb32100("91350100M000100Y43") == "91350100M000100Y43"
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    rng = random.Random(31)
    for _ in range(200):
        code = _uscc(
            "91" + f"{rng.randrange(110000, 660000)}" + "".join(rng.choice(chars) for _ in range(9))
        )
        assert gb32100(code.lower()) == code
        for i, right in enumerate(code):
            for wrong in chars.replace(right, ""):
                assert gb32100(code[:i] + wrong + code[i + 1 :]) is None
    assert gb32100("91350100M000100Y4") is None
    assert gb32100("91350100M000100O43") is None  # O, I, S, V, Z are not in the alphabet


def test_email_is_lower_cased_and_file_names_are_not_addresses() -> None:
    assert email("Zhang.San@Example.COM") == "zhang.san@example.com"
    assert email("user@163.com") == "user@163.com"
    for name in ("logo@2x.png", "icon@3x.webp", "a@b", "@example.com"):
        assert email(name) is None


def test_format_only_drops_separators_and_upper_cases() -> None:
    assert format_only("粤B·D12345") == format_only("粤BD12345") == "粤BD12345"
    assert format_only("ea1234567") == "EA1234567"
    assert format_only("CA 123-4567") == "CA1234567"
    assert format_only(" · ") is None
