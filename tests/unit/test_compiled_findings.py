r"""The compiled findings pass (``_numscan.findings``) equals its Python twin: the same
findings, keys, masks, lines and confidences on any input; its DFAs full-match exactly what the
detectors' regexes full-match; its SHA-256 is SHA-256; a damaged plan is refused, not used.
Shipped regexes moved from ``regex`` to ``re`` (\p{Han} spelled out) match as written."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import sys

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner, _numscan, native, validator_table, validators
from dlp_addon.detect.definitions import CONFIDENCE, DEFAULT_DETECTORS, for_stdlib_re, han_class
from dlp_addon.detect.dfa import NUMERIC_SYMBOLS, TOKEN_SYMBOLS, dfa, dfa_fullmatch, token_body
from dlp_addon.detect.native import FindingsLayout, compile_findings
from dlp_addon.detect.normalize import TRIGGER_BITMAP
from dlp_addon.detect.plan import Plan
from dlp_addon.detect.scanner import Finding
from dlp_addon.sourcefile import load_yaml
from tests import synth
from tests.synth import mobile, resident_id

DETECTORS = load_policy().detectors
KEY = b"compiled-test-key"
COMPILED = Scanner(DETECTORS, KEY, engine="hyperscan")
PYTHON = Scanner(DETECTORS, KEY, engine="python")
NUMERIC = [d for d in DETECTORS.detectors if d.kind == "numeric"]
LAYOUT = FindingsLayout(Finding, CONFIDENCE, 900, frozenset({"cn_resident_id", "cn_mobile"}))


def uscc(rng: random.Random, *, valid: bool = True) -> str:
    """A synthetic unified social credit code with a right (or wrong) check character."""
    chars = validator_table.GB32100_CHARS
    body = rng.choice("9157") + rng.choice("123") + f"{rng.randrange(10**6):06d}"
    body += "".join(rng.choice(chars) for _ in range(9))
    total = sum(
        chars.index(c) * w for c, w in zip(body, validator_table.GB32100_WEIGHTS, strict=True)
    )
    check = (31 - total % 31) % 31
    return body + chars[check if valid else (check + 1) % 31]


def luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for last in "0123456789":
        if validators.luhn(body + last):
            return body + last
    raise AssertionError("unreachable")


def _pieces(rng: random.Random) -> list[str]:
    return [
        resident_id(rng),
        resident_id(rng)[:17] + "x",
        mobile(rng),
        "+86 " + mobile(rng),
        luhn_number(rng, "62", 19),
        luhn_number(rng, "4", 16),
        "0755-" + "".join(rng.choice("0123456789") for _ in range(8)),
        uscc(rng),
        uscc(rng, valid=False),
        f"P{rng.randrange(10, 99)}20{rng.randrange(10, 99)}{rng.randrange(10**10):010d}",
        str(rng.randrange(10**17, 10**19)),
        # issue 16: an ID and a mobile cut into groups, and the reversible edits of an ID
        "\t".join((ident := resident_id(rng))[k : k + n] for k, n in ((0, 6), (6, 8), (14, 4))),
        " ".join((phone := mobile(rng))[k : k + n] for k, n in ((0, 3), (3, 4), (7, 4))),
        phone[:5] + "、" + phone[5:],
        ident[:17],
        ident[::-1],
        rng.choice("9A") + ident,
        ident[:6] + ident[8:17],
    ]


_GLUE = st.sampled_from(
    [
        " ",
        "-",
        "",
        "x",
        "X",
        "a",
        "Q",
        "号",
        "\n",
        "税号：",
        "身份证",
        "电话",
        "卡号",
        "台胞证 ",
        "１",
        "\u200b",
        "，",
        ".",
        "/",
        "保单号 ",
        # loose separators between digit groups (issue 16)
        "\t",
        ", ",
        "、",
        " - ",
        "  ",
        "；",
        "_",
        "|",
        "\r\n",
        " X",
        ".x\n",
        # long Chinese runs with punctuation: the C pass skips them sixteen bytes at a time
        "亲，这款行李箱还有货吗？我们周三发货。",
        "收件人地址：浙江省杭州市西湖区文三路",
        "　全角空格后面",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.randoms(use_true_random=False), st.lists(st.tuples(st.integers(0, 17), _GLUE), max_size=14)
)
def test_compiled_and_python_scanners_give_the_same_findings(
    rng: random.Random, picks: list[tuple[int, str]]
) -> None:
    pieces = _pieces(rng)
    text = "".join(pieces[i] + glue for i, glue in picks)
    assert sorted(COMPILED.scan(text, "t")) == sorted(PYTHON.scan(text, "t"))


def test_the_token_detectors_are_checked_in_c() -> None:
    """cn_uscc, tw_permit and the policy's own policy_number are whole-token shapes."""
    in_c = {d.id for d in COMPILED._c_dets} - {d.id for d in NUMERIC}
    assert {"cn_uscc", "policy_number", "tw_permit"} <= in_c
    assert not {d.id for _, d in COMPILED._regexes.regexes} & in_c


def _mutants(rng: random.Random, seed: str, symbols: bytes, n: int) -> list[str]:
    out = [seed]
    for _ in range(n):
        s = list(seed)
        for _ in range(rng.randrange(1, 3)):
            op = rng.randrange(3)
            at = rng.randrange(len(s) + 1)
            ch = chr(rng.choice(symbols))
            if op == 0 and at < len(s):
                s[at] = ch
            elif op == 1:
                s.insert(at, ch)
            elif s and at < len(s):
                del s[at]
        out.append("".join(s))
    return out


def test_dfas_full_match_what_the_regexes_full_match() -> None:
    rng = random.Random(11)
    seeds = [resident_id(rng) for _ in range(20)] + [mobile(rng) for _ in range(20)]
    seeds += ["008613800138000", "8613912345678", "01012345678", "075512345678", "09516012345"]
    seeds += [luhn_number(rng, p, n) for p, n in (("62", 19), ("4", 16), ("35", 17), ("22", 16))]
    patterns = [d.numeric.pattern.decode() for d in NUMERIC]
    patterns += list(validators.OWN_PATTERNS.values())
    for pattern in patterns:
        machine = dfa(pattern)
        assert machine is not None, pattern
        compiled = re.compile(pattern)
        for seed in seeds:
            for s in _mutants(rng, seed, NUMERIC_SYMBOLS, 30):
                want = compiled.fullmatch(s) is not None
                assert dfa_fullmatch(machine, s.encode()) == want, (pattern, s)


def test_token_dfas_full_match_what_the_bodies_full_match() -> None:
    rng = random.Random(12)
    seeds = [uscc(rng) for _ in range(20)] + ["P3120240012345678", "91350100M000100Y43"]
    seeds += ["12345678", "1234567890", "A1234567"]
    for det in DETECTORS.detectors:
        body = token_body(det.pattern.pattern) if det.kind == "regex" else None
        machine = dfa(body, TOKEN_SYMBOLS) if body else None
        if machine is None:
            continue
        compiled = re.compile(body)  # type: ignore[arg-type]
        for seed in seeds:
            for s in _mutants(rng, seed, TOKEN_SYMBOLS, 40):
                assert dfa_fullmatch(machine, s.encode(), TOKEN_SYMBOLS) == (
                    compiled.fullmatch(s) is not None
                ), (det.id, s)


def test_only_whole_token_regexes_become_token_detectors() -> None:
    assert token_body("(?<![0-9A-Za-z])P[0-9]{4}(?![0-9A-Za-z])") == "P[0-9]{4}"
    # A top-level | would split the edges from the body: not a token shape.
    assert token_body("(?<![0-9A-Za-z])A1|B2(?![0-9A-Za-z])") is None
    assert token_body("P[0-9]{4}") is None
    # Characters other than letters and digits, or more than 64 of them: left to the regex.
    assert dfa("A-[0-9]{4}", TOKEN_SYMBOLS) is None
    assert dfa("[^a]{4}", TOKEN_SYMBOLS) is None
    assert dfa("[0-9]+", TOKEN_SYMBOLS) is None
    assert dfa("(?i)p[0-9]{4}", TOKEN_SYMBOLS) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_sha256_is_sha256(data: bytes) -> None:
    assert _numscan.sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_keys_are_the_scanners_hmac() -> None:
    rng = random.Random(13)
    ident = resident_id(rng)
    (finding,) = [
        f for f in COMPILED.scan(f"身份证 {ident}", "t") if f.detector == "cn_resident_id"
    ]
    assert finding.key == COMPILED.key("cn_resident_id", ident)
    assert finding.masked == ident[:6] + "*" * 8 + ident[-4:]
    long_key = Scanner(DETECTORS, b"k" * 100, engine="hyperscan")  # hashed to a block first
    (f2,) = [f for f in long_key.scan(ident, "t") if f.detector == "cn_resident_id"]
    assert f2.key == long_key.key("cn_resident_id", ident)


def test_a_damaged_plan_is_refused() -> None:
    plan = Plan.for_detectors(NUMERIC)
    good = _blob(plan)
    assert _numscan.compile(good, KEY, Finding, CONFIDENCE) is not None
    for cut in range(0, len(good) - 1, max(1, len(good) // 300)):
        with pytest.raises(ValueError):
            _numscan.compile(good[:cut], KEY, Finding, CONFIDENCE)
    with pytest.raises(ValueError):
        _numscan.compile(good + b"\0", KEY, Finding, CONFIDENCE)
    with pytest.raises(TypeError):
        _numscan.compile(good, KEY, dict, CONFIDENCE)  # findings must be tuples
    rng = random.Random(14)
    for _ in range(300):  # flipped bytes: refused, or a plan that scans without crashing
        damaged = bytearray(good)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            compiled = _numscan.compile(bytes(damaged), KEY, Finding, CONFIDENCE)
        except ValueError:
            continue
        text = f"身份证 {resident_id(rng)} 13800138000".encode()
        _numscan.findings(text, compiled, "t", 0, [None] * (2 * len(NUMERIC)), 0)


def _blob(plan: Plan) -> bytes:
    """The blob compile_findings hands to C, captured by calling it with a recording stub."""
    captured: list[bytes] = []

    class Recorder:
        @staticmethod
        def compile(blob: bytes, key: bytes, finding: type, levels: tuple[str, ...]) -> object:
            captured.append(blob)
            return object()

    real = native.numscan
    native.numscan = Recorder  # type: ignore[assignment]
    try:
        compile_findings(NUMERIC, [], plan, KEY, TRIGGER_BITMAP, LAYOUT)
    finally:
        native.numscan = real
    return captured[0]


def test_every_number_of_a_long_token_is_found() -> None:
    """Thousands of IDs written as one space-separated token: each found once, none lost to
    the rule that a number inside a longer one of the same detector is part of it."""
    rng = random.Random(15)
    ids = [resident_id(rng) for _ in range(3000)]
    found = COMPILED.scan(" ".join(ids), "t")
    assert len({f.key for f in found if f.detector == "cn_resident_id"}) == len(set(ids))
    assert sorted(found) == sorted(PYTHON.scan(" ".join(ids), "t"))


def test_han_class_is_regex_han_on_every_code_point() -> None:
    """Shipped regexes with \\p{Han} run on stdlib re with the script spelled out as a class;
    the class must be the regex module's \\p{Han}, code point for code point."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    spelled = re.compile(han_class() + "+")
    script = regex.compile(r"\p{Han}+")
    assert [m.span() for m in spelled.finditer(every)] == [m.span() for m in script.finditer(every)]


def test_shipped_han_regexes_match_as_written() -> None:
    """cn_name and cn_address on re (translated) find exactly what the YAML's regex finds."""
    raw = {
        d["id"]: d["regex"] for d in load_yaml(DEFAULT_DETECTORS).data["detectors"] if "regex" in d
    }
    rng = random.Random(16)
    texts = [
        f"{synth.name(rng)} {resident_id(rng)} {synth.address(rng)}，{synth.name(rng)}收"
        for _ in range(300)
    ] + ["我张伟", "欧阳娜娜，电话", "张伟", "王张伟 李", "x张三y", "司马光砸缸 诸葛亮"]
    for det in DETECTORS.detectors:
        if det.id not in ("cn_name", "cn_address"):
            continue
        assert isinstance(det.pattern, re.Pattern), det.id  # runs on stdlib re
        written = regex.compile(raw[det.id])
        for text in texts:
            assert [m.span() for m in det.pattern.finditer(text)] == [
                m.span() for m in written.finditer(text)
            ], (det.id, text)
    # \p{Han} inside a class is left alone (re cannot read it, so such a regex stays on regex).
    assert for_stdlib_re(r"[^\p{Han}]x") == r"[^\p{Han}]x"


def test_keywords_on_a_numeric_detector_gate_nothing_in_either_path() -> None:
    """A numeric detector with keywords: both scanners ignore them (only regexes are gated)."""
    numeric = next(d for d in DETECTORS.detectors if d.id == "cn_mobile")
    keyed = dataclasses.replace(numeric, id="mobile_keyed", keywords=("客户",))
    detectors = dataclasses.replace(DETECTORS, detectors=(*DETECTORS.detectors, keyed))
    text = f"电话 {mobile(random.Random(17))}"
    found = [
        sorted(Scanner(detectors, KEY, engine=e).scan(text, "t")) for e in ("hyperscan", "python")
    ]
    assert found[0] == found[1]
    assert any(f.detector == "mobile_keyed" for f in found[0])


def test_offsets_that_could_overflow_are_refused() -> None:
    near = [None] * (2 * len(COMPILED._c_dets))
    for first_line, first_char in ((sys.maxsize, 0), (0, sys.maxsize), (-1, 0), (0, -1)):
        with pytest.raises(ValueError):
            _numscan.findings(b"13812345678", COMPILED._compiled, "t", first_line, near, first_char)


def test_findings_made_in_c_hash_like_equal_tuples() -> None:
    """The C pass allocates findings itself (``tp_alloc``); CPython 3.14 caches a tuple's hash
    in the object, so a cache left at zero would make every finding hash to 0 and sets and
    dicts of findings (distinct counting, ``_corroborated``) quietly degrade. Each finding
    hashes as the equal plain tuple does, and sets and dicts of them keep them apart."""
    assert COMPILED.engine == "hyperscan+c"  # the findings below are the C pass's
    rng = random.Random(1814)
    ids = [resident_id(rng) for _ in range(6)]
    mobiles = [mobile(rng) for _ in range(4)]
    lines = [
        f"客户{i} 身份证 {a} 手机 {b}" for i, (a, b) in enumerate(zip(ids, mobiles, strict=False))
    ]
    text = "\n".join([*lines, *ids[4:]])
    found = COMPILED.scan(text, "body")
    assert len(found) == 10 and all(type(f) is Finding for f in found)
    for f in found:
        assert hash(f) == hash(tuple(f)) == hash(Finding(*f))
    assert len({hash(f) for f in found}) == len(found)
    again = COMPILED.scan(text, "body")
    assert set(found) == set(again) and len(set(found) | set(again)) == len(found)
    by_finding = {f: i for i, f in enumerate(found)}
    assert [by_finding[f] for f in again] == list(range(len(found)))
    assert set(found) == {Finding(*f) for f in PYTHON.scan(text, "body")}
