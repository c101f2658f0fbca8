"""The fixed registry of validators a detector definition may name.

A validator takes the matched text and returns the canonical value (what "distinct" is counted
on) when the match is a real identifier, or ``None`` when it is not. Checksums and dates live
here because they cannot be data; the check-digit arithmetic itself is in ``checksums``.
Which of them have a twin in the C pass is declared once, in ``validator_table``.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

import phonenumbers

from dlp_addon.detect import checksums
from dlp_addon.detect.kinds import Validator
from dlp_addon.detect.validator_table import TWINS, Twin
from dlp_addon.shipped import PATTERNS_DIR

# Province-level prefixes of GB/T 2260, plus 81/82/83 for Hong Kong, Macau and Taiwan
# residence permits. Only the province is checked: an ID keeps the county code it was issued
# under even after that code is retired, so the full code table is no reason to reject.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
_EARLIEST_BIRTH_YEAR = 1880
_SAFE_PAST_YEAR = _dt.date.today().year - 1  # births before it are in the past, however long we run


_NOT_DIGIT_OR_X = re.compile(r"[^0-9Xx]")


def _digits(text: str) -> str:
    """ASCII digits (and X) of ``text``, upper-cased; scanner candidates are already clean."""
    if not (text.isascii() and text.isalnum()):
        text = _NOT_DIGIT_OR_X.sub("", text)
    return text.upper()


def gb11643_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits."""
    return checksums.mod11_2_check(first17.encode())


def gb11643(text: str) -> str | None:
    """18-character resident ID: province, check char, a real birth date not in the future."""
    value = _digits(text)
    if len(value) != 18 or not value[:17].isdigit() or int(value[:2]) not in _PROVINCES:
        return None
    if gb11643_check_char(value[:17]) != value[17]:
        return None
    return value if _real_birth_date(value[6:14]) else None


def id_shaped(value: str) -> bool:
    """Digits with a resident ID's province and a real birth date where an ID has them: an ID,
    or one with a typo in its check character (never read as an ID's reverse)."""
    return (
        len(value) >= 14
        and value[:14].isdigit()
        and int(value[:2]) in _PROVINCES
        and (_real_birth_date(value[6:14]))
    )


def _real_birth_date(yyyymmdd: str) -> bool:
    try:
        born = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return born.year >= _EARLIEST_BIRTH_YEAR and (
        born.year < _SAFE_PAST_YEAR or born <= _dt.date.today()
    )


# phonenumbers' metadata tracks which number blocks are allocated to mobiles; its pattern is
# compiled once here instead of parsing every candidate (35 µs a parse).
_CN_METADATA = phonenumbers.PhoneMetadata.metadata_for_region("CN")
assert _CN_METADATA is not None and _CN_METADATA.mobile is not None
_CN_MOBILE = re.compile(str(_CN_METADATA.mobile.national_number_pattern))


def cn_mobile(text: str) -> str | None:
    """Mainland mobile in an allocated block; any +86 / 0086 / 86 prefix is dropped."""
    value = _digits(text)[-11:]
    return value if len(value) == 11 and _CN_MOBILE.fullmatch(value) else None


def none(text: str) -> str | None:
    """No check: the regex alone decides (keywords, names, an organisation's own formats)."""
    return text.strip() or None


def luhn(text: str) -> str | None:
    """ISO/IEC 7812 (Luhn) check digit over every digit; the digits are the value."""
    digits = _NOT_DIGIT_OR_X.sub("", text)
    return digits if checksums.luhn_ok(digits.encode()) else None


def iso7064_mod11_2(text: str) -> str | None:
    """ISO 7064 MOD 11-2, the check of GB 11643 without its date and province tests."""
    value = _digits(text)
    return value if checksums.mod11_2_ok(value.encode()) else None


_MOD37 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def iso7064_mod37_36(text: str) -> str | None:
    """ISO 7064 MOD 37,36 (hybrid) over digits and letters."""
    value = re.sub(r"[^0-9A-Za-z]", "", text).upper()
    if len(value) < 2:
        return None
    product = 36
    for ch in value[:-1]:
        total = (product + _MOD37.index(ch)) % 36 or 36
        product = total * 2 % 37
    check = (37 - product) % 36
    return value if _MOD37[check] == value[-1] else None


def gb11643_15(text: str) -> str | None:
    """The 15-digit legacy resident ID (before 1999): province and a real 19YY birth date."""
    value = _digits(text)
    if len(value) != 15 or not value.isdigit() or int(value[:2]) not in _PROVINCES:
        return None
    return value if _real_birth_date("19" + value[6:12]) else None


_CN_FIXED = re.compile(str(_CN_METADATA.fixed_line.national_number_pattern))  # type: ignore[union-attr]


def cn_landline(text: str) -> str | None:
    """Trunk 0, area code and subscriber number, in a range phonenumbers lists as fixed line."""
    value = _digits(text)
    if value.startswith("0086"):
        value = "0" + value[4:]
    elif value.startswith("86") and len(value) > 11:
        value = "0" + value[2:]
    if not value.startswith("0") or value.startswith("00"):
        return None
    return value if _CN_FIXED.fullmatch(value[1:]) else None


def luhn_card(text: str) -> str | None:
    """A payment card: 16-19 digits passing Luhn. An 18-digit number shaped like a resident ID
    (province and a real birth date) is an ID, or a mistyped one, not a card."""
    value = luhn(text)
    if value is None or not 16 <= len(value) <= 19:
        return None
    if len(value) == 18 and id_shaped(value):
        return None
    return value


def email(text: str) -> str | None:
    """An e-mail address, lower-cased; ``logo@2x.png``-style file names are not addresses."""
    value = text.strip().lower()
    local, _, domain = value.rpartition("@")
    if not local or "." not in domain:
        return None
    if domain.rsplit(".", 1)[1] in _FILE_SUFFIXES or (domain[0].isdigit() and "x." in domain):
        return None
    return value


_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "css", "js"})


# The shipped list of characters common in given names (patterns/keywords/, one a line: its
# header says where the choice comes from). Read once: it ships with this code.
GIVEN_NAME_CHARS_FILE = PATTERNS_DIR / "keywords" / "given-name-chars.txt"


def _given_name_chars(path: Path) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return frozenset(
        ch for w in lines if not w.lstrip().startswith("#") for ch in w if not ch.isspace()
    )


GIVEN_NAME_CHARS = _given_name_chars(GIVEN_NAME_CHARS_FILE)
# The two-character surnames cn_name's regex lists (a test keeps the two in step).
COMPOUND_SURNAMES = frozenset({"欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容"})


def cn_given_name(text: str) -> str | None:
    """A surname followed by a given name, every character of which is common in given names:
    a surname character starting a word is no evidence (白板笔 is 白 + 板笔, 文件夹 文 + 件夹)."""
    value = text.strip()
    given = value[2:] if value[:2] in COMPOUND_SURNAMES else value[1:]
    if not given or not GIVEN_NAME_CHARS.issuperset(given):
        return None
    return value


_SEPARATORS = re.compile(r"[\s·./-]")


def format_only(text: str) -> str | None:
    """No checksum exists (passports, permits, plates): the regex decides, and the canonical
    value is the match upper-cased without separators, so ``粤B·D12345`` and ``粤BD12345`` count
    as one."""
    value = _SEPARATORS.sub("", text).upper()
    return value or None


def gb32100(text: str) -> str | None:
    """Unified social credit code (GB 32100-2015): 18 characters, mod-31 check character."""
    value = text.strip().upper()
    return value if value.isascii() and checksums.gb32100_ok(value.encode()) else None


# What a validator can accept, as a numeric pattern: lets the scanner drop impossible
# candidates (an 11-digit number in an unallocated block, an 18-digit one whose first two
# digits are no province) by their first three digits, before any checksum or DFA runs.
_PROVINCE = "(?:" + "|".join(map(str, sorted(_PROVINCES))) + ")"
ACCEPTS: dict[Validator, str] = {
    cn_mobile: f"(?:0086|86)?(?:{_CN_MOBILE.pattern})",
    gb11643: f"{_PROVINCE}[0-9]{{15}}[0-9Xx]",
    gb11643_15: f"{_PROVINCE}[0-9]{{13}}",
}

# The patterns of allocated number blocks (phonenumbers'), which the C twins of the validators
# marked ``own_pattern`` in validator_table full-match as DFAs.
OWN_PATTERNS: dict[Validator, str] = {cn_mobile: _CN_MOBILE.pattern, cn_landline: _CN_FIXED.pattern}
PROVINCES = _PROVINCES

VALIDATORS: dict[str, Validator] = {
    "gb11643_15": gb11643_15,
    "cn_landline": cn_landline,
    "luhn_card": luhn_card,
    "email": email,
    "format_only": format_only,
    "gb32100": gb32100,
    "none": none,
    "luhn": luhn,
    "iso7064_mod11_2": iso7064_mod11_2,
    "iso7064_mod37_36": iso7064_mod37_36,
    "gb11643": gb11643,
    "cn_mobile": cn_mobile,
    "cn_given_name": cn_given_name,
}

# The validators with a twin in _numscan.c (validator_table.TWINS), by the kind of run they check.
C_TWINS: dict[Validator, Twin] = {VALIDATORS[t.name]: t for t in TWINS if t.runs == "number"}
TOKEN_TWINS: dict[Validator, Twin] = {VALIDATORS[t.name]: t for t in TWINS if t.runs == "token"}
