"""The ways customer records get written when someone wants them past a scanner (issue 16).

A *rendering* turns one customer record (a row of :func:`tests.synth.customer_records`: name, id,
mobile, address) into the cells of its row, so the same rendering can be sent as a tab-separated
table pasted into a chat, as a CSV file or as xlsx cells. An ID split by Excel's 分列
(Text-to-Columns) is several cells. An *encoding* turns the whole text into the bytes of a body
or a file (hex, base64 of compressed data, charset conflicts).

Every rendering keeps the records obviously present (names, addresses, one row per person) and
every digit recoverable: a reader, or a scanner that reads the way the contract in issue 16
says, gets the same 20 IDs and mobiles back. The names are the test ids; nothing here prints a
value.
"""

from __future__ import annotations

import base64
import datetime as _dt
import gzip
import json
import random
import re
import zlib
from collections.abc import Callable

from tests.synth import (
    address,
    birth_date,
    gb11643_check_char,
    is_valid_resident_id,
    mobile,
    name,
)

Record = dict[str, str]
Rendering = Callable[[Record], list[str]]

HEADER: tuple[str, ...] = ("姓名", "身份证号", "手机号码", "住址")

# How people and Excel cut the numbers: region / birth date / sequence and check for an ID,
# 3-4-4 for a mobile.
ID_GROUPS = (6, 8, 4)
MOBILE_GROUPS = (3, 4, 4)


def _cut(value: str, sizes: tuple[int, ...]) -> list[str]:
    out: list[str] = []
    start = 0
    for size in sizes:
        out.append(value[start : start + size])
        start += size
    if start < len(value):
        out[-1] += value[start:]
    return out


# --- separators between digit groups -----------------------------------------------------------


def _separated(id_sep: str, mobile_sep: str | None = None) -> Rendering:
    """ID as 6 / 8 / 4 and mobile as 3 / 4 / 4, the groups joined by a separator."""
    between_mobile = id_sep if mobile_sep is None else mobile_sep

    def render(r: Record) -> list[str]:
        return [
            r["name"],
            id_sep.join(_cut(r["id"], ID_GROUPS)),
            between_mobile.join(_cut(r["mobile"], MOBILE_GROUPS)),
            r["address"],
        ]

    return render


def _split_cells(r: Record) -> list[str]:
    """Excel's 分列 on the ID and mobile columns: each group is a cell of its own."""
    return [r["name"], *_cut(r["id"], ID_GROUPS), *_cut(r["mobile"], MOBILE_GROUPS), r["address"]]


def _line_break(r: Record) -> list[str]:
    """A line break typed inside the cell (Alt+Enter), before the last group of each number."""
    ident = _cut(r["id"], ID_GROUPS)
    phone = _cut(r["mobile"], MOBILE_GROUPS)
    return [
        r["name"],
        f"{ident[0]} {ident[1]}\n{ident[2]}",
        f"{phone[0]} {phone[1]}\n{phone[2]}",
        r["address"],
    ]


def _check_after(sep: str, lower: bool = False) -> Rendering:
    """``310104 19650414 144 X``: the check character cut off as a group of its own."""

    def render(r: Record) -> list[str]:
        ident = r["id"]
        check = ident[17].lower() if lower else ident[17]
        groups = [*_cut(ident[:17], (6, 8, 3)), check]
        return [
            r["name"],
            sep.join(groups),
            sep.join(_cut(r["mobile"], MOBILE_GROUPS)),
            r["address"],
        ]

    return render


# --- digits written other ways -----------------------------------------------------------------


def _digit_map(forms: str) -> Callable[[str], str]:
    """Every ASCII digit d replaced by ``forms[d]`` (anything else, such as X, kept)."""
    table = str.maketrans("0123456789", forms)
    return lambda value: value.translate(table)


def _cycled_forms(value: str) -> str:
    """Each digit in the next of several Unicode digit forms (parenthesised, full stop,
    dingbat circled, superscript, subscript), cycling through them along the number."""
    forms = (
        "⓪⑴⑵⑶⑷⑸⑹⑺⑻⑼",
        "⓿⒈⒉⒊⒋⒌⒍⒎⒏⒐",
        "⓪➀➁➂➃➄➅➆➇➈",
        "⓿➊➋➌➍➎➏➐➑➒",
        "⓿❶❷❸❹❺❻❼❽❾",
        "⁰¹²³⁴⁵⁶⁷⁸⁹",
        "₀₁₂₃₄₅₆₇₈₉",
    )
    out: list[str] = []
    for i, c in enumerate(value):
        out.append(forms[i % len(forms)][int(c)] if c.isascii() and c.isdigit() else c)
    return "".join(out)


_LOOKALIKES = {"0": "Oo", "1": "lI"}


def _letters_for_digits(value: str, limit: int = 4) -> str:
    """Up to ``limit`` zeros and ones written as the letters O/o and l/I (so at least 7 ASCII
    digits stay in a mobile, as in ``l38OO138000``)."""
    out: list[str] = []
    used = 0
    for c in value:
        if c in _LOOKALIKES and used < limit:
            out.append(_LOOKALIKES[c][used % 2])
            used += 1
        else:
            out.append(c)
    return "".join(out)


def _entities(hex_form: bool) -> Callable[[str], str]:
    """``&#49;`` (or ``&#x31;``) for every digit, as an HTML editor or an XML export writes."""

    def encode(value: str) -> str:
        return "".join(
            (f"&#x{ord(c):x};" if hex_form else f"&#{ord(c)};") if c.isdigit() else c for c in value
        )

    return encode


def _both(transform: Callable[[str], str]) -> Rendering:
    """The same transformation on the ID and on the mobile."""
    return lambda r: [r["name"], transform(r["id"]), transform(r["mobile"]), r["address"]]


# --- reversible edits of the ID (the mobile stays, so the records are clearly there) -----------


def _id_only(transform: Callable[[str], str]) -> Rendering:
    return lambda r: [r["name"], transform(r["id"]), r["mobile"], r["address"]]


def _old_15(ident: str) -> str:
    """The pre-1999 15-digit form: the century and the check character dropped."""
    return ident[:6] + ident[8:17]


RENDERINGS: dict[str, Rendering] = {
    # A control: the plain table that is blocked today.
    "plain": lambda r: [r["name"], r["id"], r["mobile"], r["address"]],
    # Separators (Excel's 分列 and people).
    "sep-tab": _separated("\t"),
    "sep-comma": _separated(",", ", "),
    "sep-fullwidth-comma": _separated("，"),
    "sep-dunhao": _separated("、"),
    "sep-semicolon": _separated(";"),
    "sep-underscore": _separated("_"),
    "sep-spaced-dash": _separated(" - "),
    "sep-double-space": _separated("  "),
    "sep-ideographic-space": _separated("\u3000"),
    "sep-line-break": _line_break,
    "split-cells": _split_cells,
    "check-x-space": _check_after(" "),
    "check-x-dash": _check_after("-"),
    "check-x-dot-lower": _check_after(".", lower=True),
    "check-x-tab": _check_after("\t"),
    # Digits written other ways.
    "fullwidth-digits": _both(_digit_map("０１２３４５６７８９")),
    "han-numerals": _both(_digit_map("〇一二三四五六七八九")),
    "han-numerals-ling": _both(_digit_map("零一二三四五六七八九")),
    "capital-numerals": _both(_digit_map("零壹贰叁肆伍陆柒捌玖")),
    "circled-digits": _both(_digit_map("⓪①②③④⑤⑥⑦⑧⑨")),
    "mixed-digit-forms": _both(_cycled_forms),
    "letters-for-digits": _both(_letters_for_digits),
    "html-entities-decimal": _both(_entities(hex_form=False)),
    "html-entities-hex": _both(_entities(hex_form=True)),
    # Reversible edits of the ID.
    "prefixed-letter": _id_only(lambda i: "A" + i),
    "prefixed-digit": _id_only(lambda i: "9" + i),
    "check-digit-dropped": _id_only(lambda i: i[:17]),
    "old-15-digit": _id_only(_old_15),
    "reversed": _id_only(lambda i: i[::-1]),
}

# Renderings about the check character X: only records whose ID ends in X test them.
NEEDS_CHECK_X: frozenset[str] = frozenset(n for n in RENDERINGS if n.startswith("check-x"))


def header_cells(width: int) -> list[str]:
    """The header row for rows of ``width`` cells: after 分列 the new columns have no title."""
    if width == len(HEADER):
        return list(HEADER)
    return ["姓名", "身份证号", *[""] * (width - 3), "住址"]


def rendered_rows(records: list[Record], rendering: str) -> list[list[str]]:
    """Header plus one row of cells per record."""
    render = RENDERINGS[rendering]
    rows = [render(r) for r in records]
    return [header_cells(len(rows[0]) if rows else len(HEADER)), *rows]


def rendered_text(records: list[Record], rendering: str) -> str:
    """The rows as a tab-separated table pasted into a chat box (a header line first)."""
    return "\n".join("\t".join(row) for row in rendered_rows(records, rendering))


def check_x_records(n: int, seed: int) -> list[Record]:
    """``n`` customer rows whose IDs all end in the check character X (pairwise distinct)."""
    rng = random.Random(seed)
    records: list[Record] = []
    ids: set[str] = set()
    mobiles: set[str] = set()
    while len(records) < n:
        born: _dt.date = birth_date(rng)
        region = rng.choice(("110105", "310104", "440305", "510107", "330106"))
        first17 = f"{region}{born:%Y%m%d}{rng.randrange(1, 1000):03d}"
        if gb11643_check_char(first17) != "X":
            continue
        ident, phone = first17 + "X", mobile(rng)
        if ident in ids or phone in mobiles:
            continue
        assert is_valid_resident_id(ident)
        ids.add(ident)
        mobiles.add(phone)
        records.append({"name": name(rng), "id": ident, "mobile": phone, "address": address(rng)})
    return records


# --- encodings of the whole text ---------------------------------------------------------------

_LONG_RUN = re.compile(r"[0-9]{11,}[Xx]?")


_PLACEHOLDER = "\ue000"  # a private-use character, written raw by json.dumps


def _with_lone_surrogates(text: str) -> bytes:
    """A JSON chat message whose every ID and mobile has a ``\\ud800`` escape in the middle,
    the rest as a browser's ``JSON.stringify`` writes it (Chinese raw, UTF-8)."""
    broken = _LONG_RUN.sub(lambda m: m.group()[:6] + _PLACEHOLDER + m.group()[6:], text)
    doc = json.dumps({"type": "text", "content": broken}, ensure_ascii=False)
    return doc.replace(_PLACEHOLDER, "\\ud800").encode()


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


ENCODINGS: dict[str, Callable[[str], bytes]] = {
    "hex": lambda t: t.encode().hex().encode("ascii"),
    "base32": lambda t: base64.b32encode(t.encode()),
    "base64-zlib": lambda t: _b64(zlib.compress(t.encode())),
    "base64-gzip": lambda t: _b64(gzip.compress(t.encode(), mtime=0)),
    "base64-nested-3": lambda t: _b64(_b64(_b64(t.encode()))),
    # Declared UTF-8 (by the carrier), but the bytes open with a UTF-16 (LE) byte order mark.
    "utf8-after-utf16-bom": lambda t: b"\xff\xfe" + t.encode(),
    # Excel's "Unicode text" without its byte order mark.
    "utf16le-no-bom": lambda t: t.encode("utf-16-le"),
    "utf16be-no-bom": lambda t: t.encode("utf-16-be"),
    "json-lone-surrogate": _with_lone_surrogates,
}

# The encodings whose output is ASCII text a person pastes into a chat box; the others are
# bodies or files in their own right (the carrier declares their type).
PASTED_ENCODINGS: frozenset[str] = frozenset(
    {"hex", "base32", "base64-zlib", "base64-gzip", "base64-nested-3"}
)


# --- what must not block -----------------------------------------------------------------------

ORDER_HEADER: tuple[str, ...] = (
    "订单编号", "下单时间", "商品名称", "数量", "实付款(元)", "收货人", "联系手机", "收货地址",
)  # fmt: skip
# Office supplies whose names start like a surname (白, 文, 金, 方): a name detector that reads
# them as people turns one person's orders into many "records".
_PRODUCTS = (
    "白板笔", "文件夹", "白色收纳盒", "金属书立", "方格本", "文件袋", "白板擦", "订书机",
    "便利贴", "中性笔",
)  # fmt: skip


def _order_number(rng: random.Random) -> str:
    """A 19-digit marketplace order number that holds no resident ID however it is read."""
    while True:
        value = rng.choice("1234") + "".join(rng.choice("0123456789") for _ in range(18))
        if not any(
            is_valid_resident_id(v) for v in (value[1:], value[:18], value[1:][::-1], value[::-1])
        ):
            return value


def own_order_rows(seed: int, n: int = 10) -> list[list[str]]:
    """One shopper's order export: header plus ``n`` orders, each with *their own* name, mobile
    and address (the same on every row) and an office-supply product."""
    rng = random.Random(seed)
    buyer, phone, home = name(rng), mobile(rng), address(rng)
    rows = [list(ORDER_HEADER)]
    day = _dt.datetime(2024, 3, 1, 9, 0)
    for i in range(n):
        day += _dt.timedelta(days=rng.randrange(1, 9), minutes=rng.randrange(600))
        price = rng.choice((3.5, 6.8, 9.9, 12.0, 15.8, 19.9, 29.0, 39.9))
        count = rng.randrange(1, 6)
        rows.append(
            [
                _order_number(rng),
                f"{day:%Y-%m-%d %H:%M}",
                _PRODUCTS[i % len(_PRODUCTS)],
                str(count),
                f"{price * count:.2f}",
                buyer,
                phone,
                home,
            ]
        )
    return rows


def own_order_text(seed: int, n: int = 10) -> str:
    """The export pasted into a chat box: tab-separated, a header line first."""
    return "\n".join("\t".join(row) for row in own_order_rows(seed, n))


# Numbers that single spaces, dots and slashes join into 11 digits with a mobile's prefix:
# prices (单价 合计), IP addresses, a size chart. None of them is anyone's phone.
NUMBERS_CHAT = "\n".join(
    [
        "亲，报价单发您了，单价和合计如下：",
        "拉杆箱 139.00 1288.00",
        "登机箱 159.00 1399.00",
        "旅行背包 188.00 2599.00",
        "收纳袋 135.00 1688.00",
        "行李牌 158.00 1999.00",
        "颈枕 186.00 3299.00",
        "密码锁 199.00 2888.00",
        "行李带 177.00 1588.00",
        "洗漱包 166.00 1266.00",
        "护照夹 153.00 1099.00",
        "后台 139.100.123.45 和 183.136.200.12 两台服务器今天连不上，麻烦看一下",
        "尺码表（身高/胸围）：155/80 160/84 165/88 170/92 175/96 180/100",
    ]
)
