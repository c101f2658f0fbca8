"""Names need a given name, not just a surname character: one person's own order export (their
own mobile on every row, a product in each) is not a table of customers, because 白板笔 is not
白 + 板笔 and 文件夹 is not 文 + 件夹. A customer table still counts one record a person."""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

import pytest

from dlp_addon.decide import decide, load_policy
from dlp_addon.detect.definitions import DEFAULT_DETECTORS
from dlp_addon.detect.engine import engine_for
from dlp_addon.detect.validators import (
    COMPOUND_SURNAMES,
    GIVEN_NAME_CHARS,
    GIVEN_NAME_CHARS_FILE,
    cn_given_name,
)
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import inspect_http
from dlp_addon.sourcefile import load_yaml
from tests import files as F
from tests import synth

POLICY = load_policy()
SCANNER = engine_for(POLICY).scanner
BOUNDARY = "----dlp-names-boundary"

# Everyday products, many starting with a surname character (白 文 毛 马 方 黄 石 金 龙 高 唐
# 陈 江 苏): stationery, home, clothing, food.
PRODUCTS = (
    "白板笔", "文件夹", "文具套装", "中性笔", "笔记本", "订书机", "便利贴", "马克笔", "毛笔",
    "白色收纳盒", "毛巾", "马克杯", "保温杯", "衣架", "垃圾袋", "抽纸", "洗衣液", "石英钟",
    "白衬衫", "毛衣", "牛仔裤", "唐装", "高跟鞋", "羽绒服",
    "方便面", "黄瓜", "石榴", "金桔", "龙井茶", "白砂糖", "陈醋", "黄豆", "江米条", "苏打饼干",
)  # fmt: skip
ORDER_HEADER = ("下单时间", "手机号码", "商品名称", "数量", "单价（元）")


def own_orders(rows: int, seed: int) -> list[list[F.Cell]]:
    """Header plus ``rows`` orders of one person: the same own mobile, a product each."""
    rng = random.Random(seed)
    own = synth.mobile(rng)
    out: list[list[F.Cell]] = [list(ORDER_HEADER)]
    for product in rng.sample(PRODUCTS, rows):
        when = f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        out.append([when, own, product, rng.randrange(1, 6), f"{rng.randrange(3, 200)}.90"])
    return out


def upload(name: str, data: bytes) -> HttpInput:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return HttpInput("POST", "/upload", headers, body)


SHEETS = {
    "csv": lambda rows: upload("订单.csv", F.csv_bytes(rows, "utf-8")),
    "xlsx": lambda rows: upload("订单.xlsx", F.xlsx(rows, sheet="订单")),
}


@pytest.mark.parametrize("kind", sorted(SHEETS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ones_own_order_export_is_not_blocked(kind: str, seed: int) -> None:
    verdict = inspect_http(POLICY, SHEETS[kind](own_orders(10, seed)), "jd").verdict
    assert not verdict.blocks, (verdict.rule, verdict.counts, verdict.samples)
    assert verdict.records == 1 and "cn_name" not in verdict.counts, verdict.samples


def test_ones_own_orders_pasted_as_a_table_are_not_records() -> None:
    text = "\n".join("\t".join(map(str, row)) for row in own_orders(10, seed=4))
    verdict = decide(POLICY, SCANNER.scan(text, "body"), destination="jd", channel="http")
    assert not verdict.blocks and verdict.records == 1, (verdict.rule, verdict.samples)


@pytest.mark.parametrize("kind", sorted(SHEETS))
def test_a_customer_table_still_counts_every_person_and_blocks(kind: str) -> None:
    people = synth.customer_records(10, seed=5)
    rows: list[list[F.Cell]] = [list(F.CUSTOMER_HEADER)]
    rows += [[p["name"], p["id"], p["mobile"], p["address"]] for p in people]
    verdict = inspect_http(POLICY, SHEETS[kind](rows), "jd").verdict
    assert verdict.blocks and verdict.records == 10
    assert verdict.counts.get("cn_name") == len({p["name"] for p in people})


def test_no_everyday_product_next_to_a_mobile_is_a_name() -> None:
    own = synth.mobile(random.Random(6))
    for product in PRODUCTS:
        for line in (f"{own} {product} 2 件", f"{product},{own}", f"{product} x1 {own}"):
            names = [f.masked for f in SCANNER.scan(line, "t") if f.detector == "cn_name"]
            assert not names, (product, names)


def test_every_generated_name_is_found_on_a_record_line() -> None:
    """tests.synth's names (what every records test relies on) all pass the given-name check."""
    assert set(synth.GIVEN_CHARS) <= GIVEN_NAME_CHARS
    rng = random.Random(7)
    for _ in range(500):
        name = synth.name(rng)
        found = SCANNER.scan(f"{name} {synth.mobile(rng)}", "t")
        assert [f.masked for f in found if f.detector == "cn_name"] == [
            name[0] + "*" * (len(name) - 1)
        ], name


@pytest.mark.parametrize(
    "candidate",
    ["张伟", "王秀英", "李娜", "刘洋", "陈静", "欧阳娜娜", "司马光", "诸葛亮", "慕容雪"],
)
def test_common_names_pass(candidate: str) -> None:
    assert cn_given_name(candidate) == candidate


@pytest.mark.parametrize(
    "candidate",
    ["白板笔", "文件夹", "毛巾", "马克杯", "方便面", "黄瓜", "周三", "万一", "欧阳", "司马板"],
)
def test_products_weekdays_and_bare_surnames_fail(candidate: str) -> None:
    assert cn_given_name(candidate) is None


def test_compound_surnames_are_those_of_the_regex() -> None:
    """The validator strips a two-character surname; it must know every one the regex lists."""
    raw = next(d for d in load_yaml(DEFAULT_DETECTORS).data["detectors"] if d["id"] == "cn_name")
    compound = re.match(r"\(\?:\(\?:([^)]*)\)", raw["regex"])
    assert compound is not None and raw["validator"] == "cn_given_name"
    assert set(compound.group(1).split("|")) == COMPOUND_SURNAMES


def test_the_list_is_one_han_character_a_line() -> None:
    lines = Path(GIVEN_NAME_CHARS_FILE).read_text(encoding="utf-8").splitlines()
    chars = [w.strip() for w in lines if w.strip() and not w.startswith("#")]
    bad = [c for c in chars if len(c) != 1 or not unicodedata.name(c, "").startswith("CJK")]
    assert not bad and len(chars) == len(set(chars)) == len(GIVEN_NAME_CHARS)
