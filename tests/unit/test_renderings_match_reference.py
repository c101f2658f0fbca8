"""Every rendering of issue 16's contract (loose separators, an X after a separator, numerals
and letters for digits, lone surrogates, reversible edits of an ID) is read by the fast path
exactly as the independent reference scanner reads it: the same identifiers found, and the
same ones counted (confidence medium or above), on both engines.

Messages are synthetic customer rows, each identifier in a random composition of renderings,
mixed with decoys that must not become counted mobiles (prices, IPs, size charts, shop chat).
Failure messages name the seed, the message, the engine and each differing identifier's
masked value and rendering (a keyed hash for what no record holds); never a raw value."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.detect import Scanner
from tests.reference_scanner import ID, ID_15, ReferenceScanner, fold
from tests.synth import address, mobile, name, ordinary_chat_corpus, resident_id

KEY = b"renderings-key"
DETECTORS = load_policy().detectors
ORACLE = ReferenceScanner(DETECTORS, KEY)
ENGINES = ("hyperscan", "python")

STRICT_SEPS = (" ", "-", ".", "/")
LOOSE_SEPS = ("\t", "  ", " - ", ", ", ",", "、", "，", "；", ";", "_", "|", "\r\n", "\n", " \t")
NUMERAL_STYLES = {
    "han": "〇一二三四五六七八九",
    "han_ling": "零一二三四五六七八九",
    "capital": "零壹贰叁肆伍陆柒捌玖",
    "capital_traditional": "零壹貳參肆伍陸柒捌玖",
    "circled": "⓪①②③④⑤⑥⑦⑧⑨",
    "parenthesised": "0⑴⑵⑶⑷⑸⑹⑺⑻⑼",
    "full_stop": "🄀⒈⒉⒊⒋⒌⒍⒎⒏⒐",
    "dingbat": "⓿❶❷❸❹❺❻❼❽❾",
    "dingbat_sans": "0➀➁➂➃➄➅➆➇➈",
    "dingbat_negative_sans": "0➊➋➌➍➎➏➐➑➒",
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
    "subscript": "₀₁₂₃₄₅₆₇₈₉",
}
SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
PREFIXED_MOBILE_SHAPES = {"86": ((2, 3, 4, 4), (2, 11)), "0086": ((4, 3, 4, 4), (4, 11))}
# How people group an ID (the property test also draws arbitrary cuts).
ID_SHAPES = ((6, 8, 4), (4, 4, 4, 4, 2), (6, 4, 4, 4), (6, 8, 3, 1), (2, 4, 8, 4), (3, 3, 4, 4, 4))
UNLISTED_MOBILE_SHAPES = ((4, 4, 3), (3, 8), (7, 4), (5, 6), (3, 3, 5), (4, 7), (2, 5, 4), (6, 5))

Rng = random.Random


# -- renderings: steps that compose ---------------------------------------------------------------


def grouped(rng: Rng, chars: str, shape: tuple[int, ...], seps: tuple[str, ...]) -> str:
    """``chars`` cut into groups of ``shape``, each separator drawn from ``seps``."""
    out, at = [], 0
    for n in shape:
        out.append(chars[at : at + n])
        at += n
    text = out[0]
    for group in out[1:]:
        text += rng.choice(seps) + group
    return text


def random_shape(rng: Rng, n: int) -> tuple[int, ...]:
    cuts = sorted(rng.sample(range(1, n), rng.randrange(1, 5)))
    return tuple(b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True))


def loose_grouped(rng: Rng, chars: str, shape: tuple[int, ...]) -> str:
    """Groups of ``shape`` (at least two) with at least one loose separator."""
    forced = rng.randrange(len(shape) - 1)
    out, at = "", 0
    for k, n in enumerate(shape):
        if k:
            out += rng.choice(LOOSE_SEPS if k - 1 == forced else STRICT_SEPS + LOOSE_SEPS)
        out += chars[at : at + n]
        at += n
    return out


def numerals(rng: Rng, text: str, style: str) -> str:
    """Digits in another script, all of them or some (at least one)."""
    table = NUMERAL_STYLES[style]
    share = rng.choice((1.0, 1.0, 0.5))
    positions = [i for i, c in enumerate(text) if c.isdigit()]
    chosen = {i for i in positions if rng.random() < share} or {rng.choice(positions)}
    return "".join(table[int(c)] if i in chosen else c for i, c in enumerate(text))


def letters(rng: Rng, text: str) -> str:
    """Some 0s as O/o and 1s as l/I; each group keeps an ASCII digit, the number seven."""
    chars = list(text)
    groups: list[list[int]] = []
    for i, c in enumerate(chars):
        if c.isdigit():
            if i == 0 or not chars[i - 1].isdigit():
                groups.append([])
            groups[-1].append(i)
    digits = sum(len(g) for g in groups)
    budget = min(rng.randrange(1, 5), digits - 7)
    for group in rng.sample(groups, len(groups)):
        for i in rng.sample(group, len(group)):
            left = sum(chars[j].isdigit() for j in group)
            if budget > 0 and left > 1 and chars[i] in "01":
                chars[i] = rng.choice("Oo" if chars[i] == "0" else "lI")
                budget -= 1
    return "".join(chars)


def sprinkled(rng: Rng, text: str, marks: tuple[str, ...]) -> str:
    """Invisible characters between characters of ``text``."""
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        chars.insert(rng.randrange(1, len(chars)), rng.choice(marks))
    return "".join(chars)


class Rendered(NamedTuple):
    text: str
    name: str


def spelled(rng: Rng, text: str, steps: list[str]) -> str:
    """The spelling and noise steps, applied to a grouped number."""
    spelling = rng.choice(("ascii", "ascii", "ascii", "numerals", "letters"))
    if spelling == "numerals":
        style = rng.choice(list(NUMERAL_STYLES))
        text = numerals(rng, text, style)
        steps.append(f"numerals_{style}")
    elif spelling == "letters":
        text = letters(rng, text)
        steps.append("letters")
    noise = rng.choice(("none", "none", "none", "surrogates", "zero_width"))
    if noise == "surrogates":
        text = sprinkled(rng, text, SURROGATES)
        steps.append("surrogates")
    elif noise == "zero_width":
        text = sprinkled(rng, text, ("\u200b", "\u2060"))
        steps.append("zero_width")
    return text


def render_id(rng: Rng, v: str) -> Rendered:
    """A random composition: an edit (S3) or a grouping (S1), then a spelling (S2), noise."""
    steps: list[str] = []
    edits = ["none"] * 5 + ["prefixed", "no_check", "reversed", "glued"]
    if v[6:8] == "19":
        edits.append("old_15")
    edit = rng.choice(edits)
    if edit == "none":
        grouping = rng.choice(("none", "strict", "loose", "x_after_sep"))
        if grouping == "x_after_sep" and v.endswith("X"):
            body = v[:17]
            if rng.random() < 0.5:
                body = grouped(rng, body, random_shape(rng, 17), STRICT_SEPS + LOOSE_SEPS)
            text = body + rng.choice(STRICT_SEPS + LOOSE_SEPS) + rng.choice("Xx")
            steps.append("x_after_sep")
        elif grouping == "strict":
            text = grouped(rng, v, random_shape(rng, 18), STRICT_SEPS)
            steps.append("strict")
        elif grouping == "loose":
            text = loose_grouped(rng, v, random_shape(rng, 18))
            steps.append("loose")
        else:
            text = v
    else:
        text = edited(rng, v, edit)
        steps.append(edit)
    text = spelled(rng, text, steps)
    return Rendered(text, "+".join(steps) or "plain")


def edited(rng: Rng, v: str, edit: str) -> str:
    if edit == "prefixed":
        return rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") + v
    if edit == "no_check":
        return v[:17]
    if edit == "old_15":
        return v[:6] + v[8:17]
    if edit == "reversed":
        return v[::-1]
    assert edit == "glued"
    return rng.choice(("ID", "No", "sfz")) + v if rng.random() < 0.7 else v + "a"


def render_mobile(rng: Rng, v: str) -> Rendered:
    steps: list[str] = []
    grouping = rng.choice(
        ("none", "listed_strict", "listed_loose", "prefixed", "unlisted_strict", "unlisted_loose")
    )
    if grouping == "listed_strict":
        text = grouped(rng, v, (3, 4, 4), STRICT_SEPS)
    elif grouping == "listed_loose":
        text = loose_grouped(rng, v, (3, 4, 4))
    elif grouping == "prefixed":
        prefix = rng.choice(list(PREFIXED_MOBILE_SHAPES))
        shape = rng.choice(PREFIXED_MOBILE_SHAPES[prefix])
        text = grouped(rng, prefix + v, shape, STRICT_SEPS + LOOSE_SEPS)
    elif grouping == "unlisted_strict":
        text = grouped(rng, v, rng.choice(UNLISTED_MOBILE_SHAPES), STRICT_SEPS)
    elif grouping == "unlisted_loose":
        text = loose_grouped(rng, v, rng.choice(UNLISTED_MOBILE_SHAPES))
    else:
        text = v
    if grouping != "none":
        steps.append(grouping)
    text = spelled(rng, text, steps)
    return Rendered(text, "+".join(steps) or "plain")


# -- messages --------------------------------------------------------------------------------------

ROWS = (
    "{name} {id} {mobile} {address}",
    "{name}\t{id}\t{mobile}\t{address}",
    "{name},{id},{mobile},{address}",
    "{name}，{id}，{mobile}，{address}",
    "{id}",
    "{name} {id}",
    "身份证号：{id}",
    "{id} {mobile}",
    "客户 {name}，电话 {mobile}，地址 {address}",
    "证件 {id}\t手机 {mobile}",
    "{mobile}",
)


def decoy(rng: Rng, chat: list[str], kind: int | None = None) -> str:
    """Shop chat, a price list, IPs, a size chart or a column of quantities."""
    kind = rng.randrange(5) if kind is None else kind
    if kind == 0:
        return rng.choice(chat)
    if kind == 1:  # a price list: 139.00 1288.00 is 3-2-4-2
        prices = [f"{rng.randrange(100, 2000)}.{rng.choice(('00', '50', '99'))}" for _ in range(4)]
        return "价格 " + rng.choice((" ", "\t", ", ", " / ")).join(prices)
    if kind == 2:
        ips = [
            ".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(rng.randrange(1, 4))
        ]
        return "服务器 " + rng.choice((" ", ", ", "\t")).join(ips)
    if kind == 3:  # a size chart
        sizes = zip(("S", "M", "L", "XL", "XXL"), range(150, 200, 10), strict=False)
        sep = rng.choice((" ", "\t", "、"))
        return "尺码表 " + sep.join(f"{s}{sep}{h}/{h - 74}A{sep}{h}-{h + 10}" for s, h in sizes)
    # A quantity column: 192, 6096, 6431 is a 3-4-4 mobile by the contract (loose, listed).
    quantities = [str(rng.randrange(1, 10000)) for _ in range(rng.randrange(3, 7))]
    return "数量 " + rng.choice(("\t", ", ", "、", "  ")).join(quantities)


class Message(NamedTuple):
    text: str
    shown: dict[str, str]  # keyed hash -> what a failure may show: masked value, rendering


def message(rng: Rng, chat: list[str]) -> Message:
    lines: list[str] = []
    shown: dict[str, str] = {}
    by_id = ORACLE.by_id
    for _ in range(rng.randrange(1, 21)):
        v = resident_id(rng)
        while rng.random() < 0.3 and not v.endswith("X"):
            v = resident_id(rng)
        m = mobile(rng)
        rid, mob = render_id(rng, v), render_mobile(rng, m)
        who, where = name(rng), address(rng)
        row = rng.choice(ROWS)
        lines.append(row.format(id=rid.text, mobile=mob.text, name=who, address=where))
        for det, value, how in (
            (ID, v, rid.name),
            (ID_15, v[:6] + v[8:17], rid.name),
            ("cn_mobile", m, mob.name),
            ("cn_name", who, f"row {ROWS.index(row)}"),
            ("cn_address", where, f"row {ROWS.index(row)}"),
        ):
            shown[ORACLE.key(det, value)] = f"{det} {by_id[det].mask(value)} ({how})"
    lines += [decoy(rng, chat) for _ in range(rng.randrange(0, 6))]
    rng.shuffle(lines)
    return Message("\n".join(lines), shown)


def listed(found: set[tuple[str, str]], shown: dict[str, str], most: int = 6) -> str:
    """Masked values with their renderings (a keyed hash for what no record holds: a decoy,
    or neighbours joined), at most ``most`` of them."""
    items = sorted(shown.get(k, f"{d} {k[:12]} (decoy or neighbours)") for d, k in found)
    more = f", ... {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


@pytest.fixture(scope="module")
def fast() -> dict[str, Scanner]:
    return {e: Scanner(DETECTORS, KEY, engine=e) for e in ENGINES}


def disagreements(seed: int, fast: dict[str, Scanner], n: int) -> tuple[list[str], int]:
    """What the fast paths and the reference disagree on in ``n`` messages (masked), and how
    many IDs the reference counted. (Its own frame: the raw texts never reach the assert,
    even under ``pytest --showlocals``.)"""
    rng = random.Random(seed)
    chat = ordinary_chat_corpus(seed, 200)
    problems: list[str] = []
    counted_ids = 0
    for i in range(n):
        msg = message(rng, chat)
        want = ORACLE.findings(msg.text)
        want_all = {(f.detector, f.key) for f in want}
        want_counted = {(f.detector, f.key) for f in want if f.confidence != "low"}
        counted_ids += sum(d == ID for d, _ in want_counted)
        for engine, scanner in fast.items():
            where = f"seed {seed} message {i} engine {engine}"
            try:
                got = scanner.scan(msg.text, "m")
            except Exception as e:  # a crash is a disagreement too: report it, go on
                problems.append(f"{where}: {type(e).__name__}")
                continue
            got_all = {(f.detector, f.key) for f in got}
            got_counted = {(f.detector, f.key) for f in got if f.confidence != "low"}
            for what, g, w in (
                ("found", got_all, want_all),
                ("counted", got_counted, want_counted),
            ):
                if g != w:
                    problems.append(
                        f"{where} {what}: missing [{listed(w - g, msg.shown)}] "
                        f"extra [{listed(g - w, msg.shown)}]"
                    )
    return problems, counted_ids


@pytest.mark.parametrize("seed", range(5))
def test_fast_paths_read_every_rendering_as_the_reference_does(
    seed: int, fast: dict[str, Scanner]
) -> None:
    problems, counted_ids = disagreements(seed, fast, 150)
    assert counted_ids > 500  # the messages are full of IDs the reference counts
    assert not problems, f"{len(problems)} disagreements with the reference:\n" + "\n".join(
        problems[:12]
    )


# -- the reference itself finds each rendering ----------------------------------------------------

SINGLE_ID_RENDERINGS: dict[str, tuple[Callable[[str], bool], Callable[[Rng, str], str]]] = {
    "plain": (lambda v: True, lambda r, v: v),
    "strict": (lambda v: True, lambda r, v: grouped(r, v, r.choice(ID_SHAPES), STRICT_SEPS)),
    "loose": (lambda v: True, lambda r, v: loose_grouped(r, v, r.choice(ID_SHAPES))),
    "x_after_strict": (
        lambda v: v.endswith("X"),
        lambda r, v: v[:17] + r.choice(STRICT_SEPS) + "X",
    ),
    "x_after_loose": (lambda v: v.endswith("X"), lambda r, v: v[:17] + r.choice(LOOSE_SEPS) + "x"),
    **{
        f"numerals_{style}": (
            lambda v: True,
            lambda r, v, style=style: numerals(r, v, style),  # type: ignore[misc]
        )
        for style in NUMERAL_STYLES
    },
    "letters": (lambda v: True, lambda r, v: letters(r, v)),
    "letters_grouped": (lambda v: True, lambda r, v: letters(r, grouped(r, v, (6, 8, 4), (" ",)))),
    "surrogates": (lambda v: True, lambda r, v: sprinkled(r, v, SURROGATES)),
    "prefixed_letter": (lambda v: True, lambda r, v: r.choice("ABCXYZ") + v),
    "prefixed_digit": (lambda v: True, lambda r, v: r.choice("0123456789") + v),
    "no_check": (lambda v: True, lambda r, v: v[:17]),
    "old_15": (lambda v: v[6:8] == "19", lambda r, v: v[:6] + v[8:17]),
    "reversed": (lambda v: True, lambda r, v: v[::-1]),
    "glued": (lambda v: True, lambda r, v: "ID" + v),
}
LOW_RENDERINGS = ("prefixed_letter", "prefixed_digit", "no_check", "old_15", "reversed", "glued")


def _ids(rng: Rng, fits: Callable[[str], bool], n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        v = resident_id(rng)
        if fits(v) and v not in out:
            out.append(v)
    return out


@pytest.mark.parametrize("rendering", list(SINGLE_ID_RENDERINGS))
def test_reference_counts_twenty_ids_in_each_rendering(rendering: str) -> None:
    rng = random.Random(rendering)
    fits, render = SINGLE_ID_RENDERINGS[rendering]
    ids = _ids(rng, fits, 20)
    text = "\n".join(f"记录：{render(rng, v)} 已核实" for v in ids)
    counted = {k for d, k in ORACLE.counted(text) if d == ID}
    assert len(counted) == 20
    assert counted == {ORACLE.key(ID, v) for v in ids}


@pytest.mark.parametrize("rendering", LOW_RENDERINGS)
def test_reference_counts_a_low_rendering_only_when_corroborated(rendering: str) -> None:
    rng = random.Random(rendering)
    fits, render = SINGLE_ID_RENDERINGS[rendering]
    ids = _ids(rng, fits, 3)
    keys = {(ID, ORACLE.key(ID, v)) for v in ids}
    rows = [f"记录：{render(rng, v)} 已核实" for v in ids]
    assert keys <= ORACLE.scan(rows[0] + "\n" + rows[1] + "\n" + rows[2])
    assert not keys & ORACLE.counted(rows[0] + "\n" + rows[1])  # two lines: not yet records
    assert keys <= ORACLE.counted("\n".join(rows))  # three lines
    with_mobile = f"{rows[0]} 手机 {mobile(rng)}"
    assert (ID, ORACLE.key(ID, ids[0])) in ORACLE.counted(with_mobile)


@pytest.mark.parametrize(
    ("shape", "seps", "found", "counted"),
    [
        ((3, 4, 4), LOOSE_SEPS, True, True),
        ((3, 4, 4), STRICT_SEPS, True, True),
        ((4, 4, 3), STRICT_SEPS, True, False),
        ((3, 8), STRICT_SEPS, True, False),
        ((4, 4, 3), LOOSE_SEPS, False, False),
        ((7, 4), ("\t", "、", ", "), False, False),
    ],
)
def test_reference_reads_mobile_groupings(
    shape: tuple[int, ...], seps: tuple[str, ...], found: bool, counted: bool
) -> None:
    rng = random.Random(str(shape) + seps[0])
    values = {mobile(rng) for _ in range(20)}
    text = "\n".join(f"客户 {grouped(rng, v, shape, seps)} 。" for v in values)
    keys = {("cn_mobile", ORACLE.key("cn_mobile", v)) for v in values}
    if found:
        assert keys <= ORACLE.scan(text)
    else:
        assert not keys & ORACLE.scan(text)
    assert (keys <= ORACLE.counted(text)) is counted


def test_prices_ips_and_size_charts_are_no_counted_mobile() -> None:
    rng = random.Random(16)
    text = "\n".join(decoy(rng, [], 1 + i % 3) for i in range(300)) + "\n价格 139.00 1288.00"
    assert "cn_mobile" in {d for d, _ in ORACLE.scan(text)}  # the shapes are there...
    assert "cn_mobile" not in {d for d, _ in ORACLE.counted(text)}  # ...none of them counted


@pytest.mark.parametrize(
    "text", ["一个", "第三季", "三四五六七八", "lol 1234567", "版本 v1.0.1 I/O", "O1l"]
)
def test_reference_folds_no_ordinary_words(text: str) -> None:
    assert fold(text) == text
