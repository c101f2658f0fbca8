"""The fixed registry of validators a detector definition may name.

A validator takes the matched text and returns the canonical value (what "distinct" is counted
on) when the match is a real identifier, or ``None`` when it is not. Checksums and dates live
here because they cannot be data.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from functools import lru_cache

import phonenumbers

Validator = Callable[[str], str | None]

_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"
# Province-level prefixes of GB/T 2260, plus 81/82/83 for Hong Kong, Macau and Taiwan
# residence permits. Only the province is checked: an ID keeps the county code it was issued
# under even after that code is retired, so the full code table is no reason to reject.
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
_EARLIEST_BIRTH_YEAR = 1880


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isascii() and (c.isdigit() or c in "Xx")).upper()


def gb11643_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


def gb11643(text: str) -> str | None:
    """18-character resident ID: province, a real birth date not in the future, check char."""
    value = _digits(text)
    if len(value) != 18 or not value[:17].isdigit() or int(value[:2]) not in _PROVINCES:
        return None
    try:
        born = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None
    if born.year < _EARLIEST_BIRTH_YEAR or born > _dt.date.today():
        return None
    return value if gb11643_check_char(value[:17]) == value[17] else None


@lru_cache(maxsize=65536)
def _mobile_block_valid(first7: str) -> bool:
    # Allocation is decided by the number block (the first seven digits); phonenumbers'
    # metadata tracks which blocks are mobile.
    number = phonenumbers.parse("+86" + first7 + "0000")
    return bool(
        phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    )


def cn_mobile(text: str) -> str | None:
    """Mainland mobile in an allocated block; any +86 / 0086 / 86 prefix is dropped."""
    value = _digits(text)[-11:]
    if len(value) != 11 or value[0] != "1" or not _mobile_block_valid(value[:7]):
        return None
    return value


VALIDATORS: dict[str, Validator] = {
    "gb11643": gb11643,
    "cn_mobile": cn_mobile,
}
