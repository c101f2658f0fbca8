"""One source of truth across the native boundary: the validator table both Python and the C
pass read, and checksums that agree between the two languages on generated input.

``validator_table.py`` declares which validators have a C twin (codes, names, checksum kinds);
``setup.py`` generates the C header from it. If the two drifted, a detector would be checked by
the wrong twin in C (or refused by the plan's sanity checks), so these tests hold the table,
the Python registry and the C source to each other."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.detect import _numscan, checksums, validator_table, validators
from dlp_addon.detect.definitions import DEFAULT_DETECTORS, load_detectors
from dlp_addon.detect.validator_table import GB32100_CHARS, TWINS
from dlp_addon.errors import PolicyError

C_SOURCE = Path(validators.__file__).with_name("_numscan.c").read_text(encoding="utf-8")
DIGITS = "0123456789"


def _with_check(rng: random.Random, kind: str) -> bytes:
    """A checksum-valid input of ``kind``, its check character from the Python checksum."""
    if kind == "mod11_2":
        body = "".join(rng.choice(DIGITS) for _ in range(rng.randrange(1, 64))).encode()
        return body + checksums.mod11_2_check(body).encode()
    if kind == "luhn":
        body = "".join(rng.choice(DIGITS) for _ in range(rng.randrange(1, 64)))
        (valid,) = [body + d for d in DIGITS if checksums.luhn_ok((body + d).encode())]
        return valid.encode()
    body = "".join(rng.choice(GB32100_CHARS) for _ in range(17))
    (valid,) = [body + c for c in GB32100_CHARS if checksums.gb32100_ok((body + c).encode())]
    return valid.encode()


def _mutated(rng: random.Random, value: bytes) -> bytes:
    """``value`` with one character changed, swapped with its neighbour, or lower-cased."""
    s = bytearray(value)
    at = rng.randrange(len(s))
    pick = rng.randrange(3)
    if pick == 0:
        s[at] = rng.choice(b"0123456789Xx" + GB32100_CHARS.encode())
    elif pick == 1 and at + 1 < len(s):
        s[at], s[at + 1] = s[at + 1], s[at]
    else:
        s = bytearray(bytes(s).lower())
    return bytes(s)


PYTHON_CHECKS = {
    "mod11_2": checksums.mod11_2_ok,
    "luhn": checksums.luhn_ok,
    "gb32100": checksums.gb32100_ok,
}


@pytest.mark.parametrize("kind", sorted(PYTHON_CHECKS))
def test_c_and_python_checksums_agree_on_generated_numbers(kind: str) -> None:
    rng = random.Random(f"checksums-{kind}")
    python = PYTHON_CHECKS[kind]
    valid = 0
    for _ in range(3000):
        value = _with_check(rng, kind)
        assert _numscan.checksum_ok(kind, value) and python(value), kind
        mutant = _mutated(rng, value)
        assert _numscan.checksum_ok(kind, mutant) == python(mutant), (kind, mutant)
        valid += python(mutant)
    assert 0 < valid < 3000  # the mutants are not all valid, nor all invalid


@settings(max_examples=500, deadline=None)
@given(kind=st.sampled_from(sorted(PYTHON_CHECKS)), text=st.text("0123456789XxAQY-", max_size=64))
def test_c_and_python_checksums_agree_on_any_input(kind: str, text: str) -> None:
    value = text.encode()
    assert _numscan.checksum_ok(kind, value) == PYTHON_CHECKS[kind](value)


def test_the_table_names_registered_validators_once() -> None:
    codes = [t.code for t in TWINS]
    assert sorted(codes) == list(range(1, len(TWINS) + 1))  # 0 is "validated in Python"
    assert len({t.name for t in TWINS}) == len(TWINS)
    assert {t.name for t in TWINS} <= set(validators.VALIDATORS)
    assert all(t.check in validator_table.CHECKS for t in TWINS)
    twins = {**validators.C_TWINS, **validators.TOKEN_TWINS}
    assert sorted(t.code for t in twins.values()) == sorted(codes)
    assert set(validators.OWN_PATTERNS) == {
        validators.VALIDATORS[t.name] for t in TWINS if t.own_pattern
    }


def test_the_c_pass_takes_its_codes_from_the_generated_header() -> None:
    """No validator code, checksum kind or checksum constant is written in the C source: each
    name it uses is one the header generated from the table declares."""
    header = validator_table.c_header()
    declared = set(re.findall(r"\b((?:V|CHECK|G)_[A-Z0-9_]+)\b(?: =|\[)", header))
    used = set(re.findall(r"\b((?:V|CHECK|G)_[A-Z0-9_]+)\b", C_SOURCE))
    assert used <= declared
    assert '#include "_numscan_table.h"' in C_SOURCE
    for mirrored in ("enum { V_", "enum { CHECK_", "GB32100_WEIGHTS[17] =", '"10X98765432"'):
        assert mirrored not in C_SOURCE


def test_an_unknown_detector_kind_is_a_policy_error_with_file_and_line(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_DETECTORS.parent, tmp_path / "patterns")
    path = tmp_path / "patterns" / DEFAULT_DETECTORS.name
    text = path.read_text(encoding="utf-8")
    at = text.index("\n    numeric:")
    path.write_text(text[:at] + "\n    number:" + text[at + len("\n    numeric:") :])
    line = text[: at + 1].count("\n") + 1
    with pytest.raises(PolicyError) as e:
        load_detectors(path)
    assert f"{path}:{line}: detectors.0: unknown key 'number'" in str(e.value)
