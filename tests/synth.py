"""Synthetic personal data for tests: checksum-valid, deterministic from a seed, never real.

Positives (customer records as an insurance salesperson would paste them into a shop's chat) and
negatives (ordinary shop chat full of long numbers that are *not* identifiers: order and tracking
numbers, timestamps, ID-shaped numbers with a wrong check digit, 11-digit numbers outside the
mobile ranges). Every function takes a ``random.Random`` or a seed, so a failing case can be
replayed. The validity checks here are written independently of ``dlp_addon`` on purpose: the
tests must not inherit the scanner's bugs.
"""

from __future__ import annotations

import datetime as _dt
import random
import re
from collections.abc import Callable, Iterator

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# Real-format county codes (GB/T 2260): Beijing Chaoyang/Haidian, Shanghai Xuhui/Pudong,
# Shenzhen Nanshan, Guangzhou Tianhe, Chengdu Wuhou, Nanjing Gulou, Hangzhou Xihu, Wuhan Wuchang,
# Chongqing Yuzhong, Xi'an Yanta, Qingdao Shinan, Shenyang Heping, Tianjin Heping.
REGIONS = (
    "110105", "110108", "310104", "310115", "440305", "440106", "510107",
    "320106", "330106", "420106", "500103", "610113", "370202", "210102", "120101",
)  # fmt: skip

# Allocated mainland mobile prefixes (130-139, 150-153, 155-159, 166, 170, 171, 173, 175-178,
# 180-189, 191, 193, 195, 198, 199).
MOBILE_PREFIXES: tuple[str, ...] = tuple(
    str(p)
    for p in (
        *range(130, 140), *range(150, 154), *range(155, 160), 166, 170, 171, 173,
        *range(175, 179), *range(180, 190), 191, 193, 195, 198, 199,
    )
)  # fmt: skip
# 11-digit numbers that look like phone numbers but are outside the mobile ranges.
NON_MOBILE_PREFIXES = ("10", "11", "12", "140")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"
GIVEN_CHARS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国文辉鹏飞婷雪琳晨浩宇欣怡"

_CITIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("上海市", ("浦东新区", "徐汇区", "静安区"), ("张杨路", "世纪大道", "漕溪北路", "南京西路")),
    ("北京市", ("朝阳区", "海淀区", "东城区"), ("建国路", "中关村大街", "望京街", "东直门内大街")),
    ("广东省深圳市", ("南山区", "福田区"), ("科技园路", "深南大道", "华强北路")),
    ("四川省成都市", ("武侯区", "锦江区"), ("人民南路", "科华北路", "红星路")),
    ("江苏省南京市", ("鼓楼区", "玄武区"), ("中山北路", "北京西路", "珠江路")),
    ("浙江省杭州市", ("西湖区", "上城区"), ("文三路", "天目山路", "延安路")),
)

_EARLIEST = _dt.date(1940, 1, 1)
_LATEST = _dt.date(2005, 12, 31)


# --- validity (independent of dlp_addon) -------------------------------------------------------


def gb11643_check_char(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def is_valid_resident_id(value: str) -> bool:
    """Checksum, a real birth date from 1880 up to today, and a province-level prefix (11-83)."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    if value[17] not in "0123456789X" or not ("11" <= value[:2] <= "83"):
        return False
    try:
        born = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not (_dt.date(1880, 1, 1) <= born <= _dt.date.today()):
        return False
    return gb11643_check_char(value[:17]) == value[17]


def is_valid_mobile(value: str) -> bool:
    return len(value) == 11 and value.isascii() and value.isdigit() and value[:3] in MOBILE_PREFIXES


_NUMBER_RUN = re.compile(r"(?<![0-9])[0-9]+[Xx]?(?![0-9])")


def identifiers_in(text: str) -> tuple[set[str], set[str]]:
    """(resident IDs, mobiles) written as plain, ungrouped digit runs in ``text``."""
    ids: set[str] = set()
    mobiles: set[str] = set()
    for m in _NUMBER_RUN.finditer(text):
        run = m.group().upper()
        if is_valid_resident_id(run):
            ids.add(run)
        elif is_valid_mobile(run):
            mobiles.add(run)
    return ids, mobiles


def mask_id(value: str) -> str:
    """``110105********123X``: what the proxy (and a failing test) may show of an ID."""
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_mobile(value: str) -> str:
    """``138****8000``."""
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask(value: str) -> str:
    return mask_mobile(value) if len(value) == 11 else mask_id(value)


# --- identifiers --------------------------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def birth_date(rng: random.Random) -> _dt.date:
    return _EARLIEST + _dt.timedelta(days=rng.randrange((_LATEST - _EARLIEST).days + 1))


def resident_id(
    rng: random.Random, *, birth: _dt.date | None = None, region: str | None = None
) -> str:
    """18-character resident ID valid under GB 11643-1999."""
    region = region if region is not None else rng.choice(REGIONS)
    birth = birth if birth is not None else birth_date(rng)
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(1, 1000):03d}"
    return first17 + gb11643_check_char(first17)


def bad_check_id(rng: random.Random) -> str:
    """An 18-digit number shaped like a resident ID (region, real date), wrong check digit."""
    good = resident_id(rng)
    wrong = rng.choice([c for c in "0123456789" if c != good[17]])
    return good[:17] + wrong


def mobile(rng: random.Random) -> str:
    """11-digit mainland mobile number in an allocated prefix."""
    return rng.choice(MOBILE_PREFIXES) + _digits(rng, 8)


def non_mobile(rng: random.Random) -> str:
    """11 digits starting 10, 11, 12 or 140: phone-shaped, never a mobile."""
    prefix = rng.choice(NON_MOBILE_PREFIXES)
    return prefix + _digits(rng, 11 - len(prefix))


def name(rng: random.Random) -> str:
    """Common surname plus one or two common given-name characters."""
    return rng.choice(SURNAMES) + "".join(
        rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2)))
    )


def address(rng: random.Random) -> str:
    """Like 上海市浦东新区张杨路123号4栋501室."""
    city, districts, roads = rng.choice(_CITIES)
    return (
        f"{city}{rng.choice(districts)}{rng.choice(roads)}{rng.randrange(1, 2000)}号"
        f"{rng.randrange(1, 30)}栋{rng.randrange(1, 33)}{rng.randrange(1, 9):02d}室"
    )


# --- positives ----------------------------------------------------------------------------------


def customer_records(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` customer rows (name, id, mobile, address); IDs and mobiles are pairwise distinct."""
    rng = random.Random(seed)
    ids: set[str] = set()
    mobiles: set[str] = set()
    records: list[dict[str, str]] = []
    while len(records) < n:
        rid, mob = resident_id(rng), mobile(rng)
        if rid in ids or mob in mobiles:
            continue
        ids.add(rid)
        mobiles.add(mob)
        records.append({"name": name(rng), "id": rid, "mobile": mob, "address": address(rng)})
    return records


def records_chat_text(records: list[dict[str, str]]) -> str:
    """One customer per line, as pasted from a spreadsheet into a chat box."""
    return "\n".join(f"{r['name']} {r['id']} {r['mobile']} {r['address']}" for r in records)


def raw_values(records: list[dict[str, str]]) -> set[str]:
    """Every identifier in ``records``: what must never show up in the proxy's own output."""
    return {r["id"] for r in records} | {r["mobile"] for r in records}


# --- negatives ----------------------------------------------------------------------------------


def _reroll(rng: random.Random, make: Callable[[random.Random], str]) -> str:
    """``make(rng)`` again until the number is neither a valid resident ID nor a valid mobile."""
    while True:
        value = make(rng)
        if not is_valid_resident_id(value) and not is_valid_mobile(value):
            return value


def order_number(rng: random.Random) -> str:
    """Taobao-style order number: 18 or 19 digits."""
    return _reroll(rng, lambda r: r.choice("1234") + _digits(r, r.choice((17, 18))))


def tracking_number(rng: random.Random) -> str:
    """SF/YT/JT letters plus digits, or ZTO/YTO-style 12-15 bare digits."""
    kind = rng.randrange(4)
    if kind == 0:
        return "SF" + _digits(rng, rng.randrange(12, 16))
    if kind == 1:
        return "YT" + _digits(rng, 13)
    if kind == 2:
        return "JT" + _digits(rng, 13)
    return _reroll(rng, lambda r: r.choice("5789") + _digits(r, r.randrange(11, 15)))


def payment_reference(rng: random.Random) -> str:
    """18-digit payment or bank transaction reference: a date and a serial (``20250614...``),
    or a bare serial whose first digits may look like a region code; never a valid resident ID
    (nor a mobile)."""
    if rng.random() < 0.5:
        day = _dt.date(2024, 1, 1) + _dt.timedelta(days=rng.randrange(730))
        return _reroll(rng, lambda r: f"{day:%Y%m%d}" + _digits(r, 10))
    return _reroll(rng, lambda r: r.choice("123456789") + _digits(r, 17))


def unix_ts(rng: random.Random, *, millis: bool = False) -> str:
    seconds = rng.randrange(1_600_000_000, 1_760_000_000)
    return str(seconds * 1000 + rng.randrange(1000)) if millis else str(seconds)


def datetime_text(rng: random.Random) -> str:
    moment = _dt.datetime(2024, 1, 1) + _dt.timedelta(seconds=rng.randrange(2 * 365 * 86400))
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def price(rng: random.Random) -> str:
    return f"¥{rng.randrange(9, 2000)}.{rng.choice(('00', '90', '99', '50'))}"


def sku(rng: random.Random) -> str:
    line = rng.choice(("LX", "TB", "BG", "TR"))
    colour = rng.choice(("BLK", "WHT", "RED", "NVY", "GRY"))
    return f"SKU-{line}{rng.randrange(2019, 2026)}-{colour}-{rng.choice((20, 24, 26, 28))}"


def coupon(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((8, 10, 12))))


def _several(
    rng: random.Random, make: Callable[[random.Random], str], lo: int, hi: int
) -> list[str]:
    return [make(rng) for _ in range(rng.randrange(lo, hi))]


_GREETINGS = (
    "你好，在吗？", "亲，在的哦，有什么可以帮您？", "Hi, is anyone there?", "您好～",
    "谢谢亲，祝您生活愉快！", "Thanks a lot!", "好的，麻烦了", "OK 明白了",
)  # fmt: skip
_COLOURS = ("黑色", "白色", "藏青色", "玫瑰金", "灰色", "军绿色")
_COLOURS_EN = ("black", "navy", "grey", "rose gold")
_INCHES = (20, 24, 26, 28)
_WEEKDAYS = ("周一", "周三", "周五")

Template = Callable[[random.Random], str]

_CHAT: tuple[Template, ...] = (
    lambda r: r.choice(_GREETINGS),
    lambda r: f"这款{r.choice(_INCHES)}寸的行李箱有{r.choice(_COLOURS)}吗？",
    lambda r: f"Does the {r.choice(_INCHES)}-inch suitcase come in {r.choice(_COLOURS_EN)}?",
    lambda r: f"{sku(r)} 还有货吗？现在下单什么时候发货？",
    lambda r: f"亲，{r.choice(_COLOURS)}现货，今天16点前下单当天发，{price(r)}包邮",
    lambda r: f"我的订单号 {order_number(r)}，请问发货了吗？",
    lambda r: f"Order {order_number(r)} was placed at {datetime_text(r)}, when will it ship?",
    lambda r: f"已经发货了，顺丰单号 SF{_digits(r, r.randrange(12, 16))}，预计后天到",
    lambda r: f"快递单号：{tracking_number(r)}，您可以在菜鸟里查一下物流",
    lambda r: "帮我查下这几个单：" + "、".join(_several(r, order_number, 3, 9)),
    lambda r: "批量查物流：\n" + "\n".join(_several(r, tracking_number, 5, 13)),
    lambda r: f"优惠券 {coupon(r)} 用不了，提示已过期",
    lambda r: f"满{r.choice((199, 299))}减{r.choice((20, 50))}，券码 {coupon(r)}，实付 {price(r)}",
    lambda r: f"支付时间 {datetime_text(r)}，交易号 {order_number(r)}",
    lambda r: f"log ts={unix_ts(r)} req_ts={unix_ts(r, millis=True)} status=PAID",
    lambda r: f'{{"event":"cart_add","sku":"{sku(r)}","ts":{unix_ts(r, millis=True)}}}',
    lambda r: f"页面报错了，截图时间戳 {unix_ts(r, millis=True)}",
    lambda r: f"会员卡号 {bad_check_id(r)} 积分怎么查？",
    lambda r: "这些编号系统说校验不对：\n" + "\n".join(_several(r, bad_check_id, 5, 10)),
    lambda r: "发票号码：" + "，".join(_several(r, bad_check_id, 5, 8)),
    lambda r: f"客服热线转接号 {non_mobile(r)} 打不通",
    lambda r: "门店分机编码：" + " ".join(_several(r, non_mobile, 10, 15)),
    lambda r: f"Ship to the warehouse? Ref {non_mobile(r)}, pallet {tracking_number(r)}",
    lambda r: f"尺寸是{r.choice((36, 40, 47))}x{r.choice((23, 26))}x{r.choice((55, 65))}cm",
    lambda r: f"能开专票吗？税号 91310115MA1K{_digits(r, 4)}X{r.choice('ABCDEFGH')}",
    lambda r: f"退货地址发我一下，退款{price(r)}什么时候到账？",
    lambda r: f"Lock code {r.randrange(100, 1000)}, arrived {datetime_text(r)}",
    lambda r: f"{r.choice(_WEEKDAYS)}{r.randrange(9, 22)}点前能到吗？{price(r)}的那款",
    lambda r: f"拍了{r.randrange(1, 5)}件，{sku(r)} x{r.randrange(1, 4)}，合计{price(r)}",
    lambda r: f"物流停在中转站了，运单 {tracking_number(r)}，更新时间 {datetime_text(r)}",
)

# A customer giving *their own* number: one identifier, which ordinary chat may contain.
_OWN_NUMBER: tuple[Template, ...] = (
    lambda r: f"收货电话换成 {mobile(r)}，麻烦改一下，谢谢",
    lambda r: f"Please call {mobile(r)} when the courier arrives.",
    lambda r: f"跨境商品清关要实名，我的身份证号 {resident_id(r)}，姓名{name(r)}",
    lambda r: f"{name(r)} {mobile(r)} {address(r)}，就发这个地址",
)


def ordinary_chat_corpus(seed: int, n: int = 300) -> list[str]:
    """``n`` ordinary shop-chat messages that must all pass the proxy untouched.

    A few messages (about one in twenty) carry one real-format mobile or resident ID (a customer's
    own delivery number); no message carries more than one of each.
    """
    rng = random.Random(seed)
    messages: list[str] = []
    while len(messages) < n:
        template = rng.choice(_OWN_NUMBER) if rng.random() < 0.05 else rng.choice(_CHAT)
        text = template(rng)
        ids, mobiles = identifiers_in(text)
        if len(ids) <= 1 and len(mobiles) <= 1:
            messages.append(text)
    return messages


# --- a customer table, for exact data match ---------------------------------------------------

POLICY_FORMAT = "PA[0-9]{14}"  # the invented insurer's policy numbers
TABLE_HEADER = ("保单号", "姓名", "身份证号", "手机", "地址", "车牌")
_PLATE_PROVINCES = "京沪粤川苏浙鄂陕"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DAYS = (_LATEST - _EARLIEST).days + 1


def policy_number(rng: random.Random) -> str:
    """A number of the invented insurer's format (PA + 14 digits), random."""
    return "PA" + _digits(rng, 14)


def customer_table(n: int, seed: int) -> Iterator[tuple[str, str, str, str, str, str]]:
    """``n`` rows of ``TABLE_HEADER``, fast enough for ten million rows. Policy numbers,
    resident IDs and mobiles are pairwise distinct by construction (each is an injective
    function of the row's number), the rest is random from ``seed``."""
    rng = random.Random(seed)
    rand, choice = rng.randrange, rng.choice
    prefixes = MOBILE_PREFIXES
    for i in range(n):
        region = REGIONS[i % len(REGIONS)]
        day, seq = divmod((i // len(REGIONS)) * 7919 % (_DAYS * 999), 999)
        born = _EARLIEST + _dt.timedelta(days=day)
        first17 = f"{region}{born:%Y%m%d}{seq + 1:03d}"
        m, k = divmod(i, len(prefixes))
        yield (
            f"PA{(i * 48271 + 7) % 10**14:014d}",
            choice(SURNAMES) + choice(GIVEN_CHARS) + (choice(GIVEN_CHARS) if i % 3 else ""),
            first17 + gb11643_check_char(first17),
            f"{prefixes[k]}{m * 9973 % 10**8:08d}",
            address(rng),
            f"{choice(_PLATE_PROVINCES)}{choice(_PLATE_LETTERS)}{rand(10000, 100000)}",
        )
