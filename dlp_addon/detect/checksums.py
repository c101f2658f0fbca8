"""The check-digit arithmetic, written once in Python (``_numscan.c`` has its twin, tested
equal on generated input): ISO 7064 MOD 11-2 (GB 11643 resident IDs), Luhn (ISO/IEC 7812
cards) and GB 32100 mod 31 (unified social credit codes). Inputs are ASCII bytes; whether a
text is shaped right for them is the validators' business."""

from __future__ import annotations

import operator

from dlp_addon.detect.validator_table import GB32100_CHARS, GB32100_WEIGHTS, MOD11_2_CHECK

# 2^k mod 11 for the digit k places left of the check character, for bodies of up to 64.
_MOD11_WEIGHTS = tuple(pow(2, k, 11) for k in range(64, 0, -1))
# What the ASCII code of '0' adds to each body length's weighted sum.
_MOD11_ZERO = [ord("0") * sum(_MOD11_WEIGHTS[len(_MOD11_WEIGHTS) - n :]) for n in range(65)]
# Each GB 32100 character's value as a byte (255: not allowed), for one C-speed translate.
_GB32100_TABLE = bytes(GB32100_CHARS.find(chr(b)) % 256 for b in range(256))


def mod11_2_check(body: bytes) -> str:
    """The MOD 11-2 check character (``X`` for 10) of the ASCII digits ``body``."""
    n = len(body)
    if n <= len(_MOD11_WEIGHTS):
        weights = _MOD11_WEIGHTS[len(_MOD11_WEIGHTS) - n :]
        total = sum(map(operator.mul, body, weights)) - _MOD11_ZERO[n]
    else:
        total = 0
        for c in body:
            total = (total + c - 48) * 2 % 11
    return MOD11_2_CHECK[total % 11]


def mod11_2_ok(value: bytes) -> bool:
    """Digits and their MOD 11-2 check character (``x`` or ``X`` for 10) last."""
    body = value[:-1]
    return (
        len(value) >= 2
        and body.isdigit()
        and body.isascii()
        and mod11_2_check(body) == value[-1:].upper().decode("latin-1")
    )


def luhn_ok(digits: bytes) -> bool:
    """The Luhn check over every digit of at least two ASCII digits."""
    if len(digits) < 2 or not (digits.isdigit() and digits.isascii()):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        v = (c - 48) * (2 if i % 2 else 1)
        total += v - 9 if v > 9 else v
    return total % 10 == 0


def gb32100_ok(value: bytes) -> bool:
    """18 characters of the GB 32100 alphabet (upper case), the last the mod-31 check."""
    if len(value) != 18:
        return False
    codes = value.translate(_GB32100_TABLE)
    if 255 in codes:
        return False
    total: int = sum(map(operator.mul, codes, GB32100_WEIGHTS))
    return (31 - total % 31) % 31 == codes[17]
