"""Generated pictures for the OCR tests and bench: screenshots of customer tables rendered with
a CJK font, photo-like copies of them, an image-only scanned PDF, and a product photo with a
price tag. Synthetic data only (tests/synth.py); Pillow draws everything."""

from __future__ import annotations

import io
import random
import subprocess
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.synth import customer_records

# Debian's fonts-wqy-zenhei or fonts-noto-cjk (scripts/setup test installs one).
_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
HEADER = ("序号", "姓名", "身份证号", "手机号码")


@cache
def cjk_font(size: int) -> ImageFont.FreeTypeFont:
    for path in _CJK_FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    found = subprocess.run(
        ["fc-match", "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, check=False
    ).stdout
    if found and Path(found).is_file():
        return ImageFont.truetype(found, size)
    raise FileNotFoundError("no CJK font: run scripts/setup test (fonts-wqy-zenhei)")


def table_rows(n: int, seed: int) -> list[tuple[str, ...]]:
    """``n`` customers as table rows: number, name, resident ID, mobile."""
    recs = customer_records(n, seed)
    return [(str(i + 1), r["name"], r["id"], r["mobile"]) for i, r in enumerate(recs)]


def table_screenshot(rows: list[tuple[str, ...]], *, size: int = 18) -> Image.Image:
    """A spreadsheet-like screenshot: header, grid lines, one customer per row."""
    font = cjk_font(size)
    widths = (70, 120, 260, 170)
    row_h = int(size * 1.9)
    width, height = sum(widths) + 40, row_h * (len(rows) + 1) + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for r, row in enumerate([HEADER, *rows]):
        y = 20 + r * row_h
        if r == 0:
            draw.rectangle((20, y, width - 20, y + row_h), fill=(221, 235, 247))
        x = 20
        for w, cell in zip(widths, row, strict=True):
            draw.text((x + 8, y + (row_h - size) // 2 - 1), cell, font=font, fill=(20, 20, 20))
            x += w
    for r in range(len(rows) + 2):
        draw.line((20, 20 + r * row_h, width - 20, 20 + r * row_h), fill=(190, 190, 190))
    x = 20
    for w in (0, *widths):
        x += w
        draw.line((x, 20, x, height - 20), fill=(190, 190, 190))
    return img


def photo_like(img: Image.Image, *, seed: int = 3, angle: float = 4.0) -> Image.Image:
    """A phone photo of a printout: upscaled, skewed by ``angle`` degrees, uneven light,
    sensor noise, a little blur."""
    rng = random.Random(seed)
    big = img.resize((img.width * 3 // 2, img.height * 3 // 2), Image.Resampling.BICUBIC)
    big = big.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(95, 85, 75))
    shade = Image.linear_gradient("L").resize(big.size).point(lambda v: 200 + v // 5)
    big = Image.composite(big, Image.new("RGB", big.size, (60, 55, 50)), shade)
    noise = Image.effect_noise(big.size, 18).convert("RGB")
    big = Image.blend(big, noise, 0.08 + rng.random() * 0.02)
    return big.filter(ImageFilter.GaussianBlur(0.8))


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    """``img`` as ``fmt`` bytes (PNG, JPEG, WEBP, BMP, TIFF, GIF, PDF)."""
    out = io.BytesIO()
    if fmt in ("JPEG", "PDF") and img.mode != "RGB":
        img = img.convert("RGB")
    img.save(out, format=fmt, **options)
    return out.getvalue()


def scanned_pdf(img: Image.Image) -> bytes:
    """A one-page PDF holding only ``img`` (a scan): no text layer."""
    return encode(img.convert("L"), "PDF", resolution=150.0)


def product_photo(seed: int = 11) -> Image.Image:
    """A product photo with a price tag: a T-shirt shape, its name and ``¥199.00 包邮``."""
    rng = random.Random(seed)
    img = Image.new("RGB", (640, 480), (235, 230, 222))
    draw = ImageDraw.Draw(img)
    shirt = (66 + rng.randrange(40), 110, 180)
    draw.polygon(
        [(220, 90), (280, 70), (360, 70), (420, 90), (480, 160), (430, 190), (410, 170),
         (410, 400), (230, 400), (230, 170), (210, 190), (160, 160)],
        fill=shirt,
    )  # fmt: skip
    draw.rounded_rectangle((400, 300, 620, 440), 12, fill=(200, 30, 40))
    draw.text((415, 312), "纯棉短袖T恤", font=cjk_font(26), fill="white")
    draw.text((415, 362), "¥199.00 包邮", font=cjk_font(30), fill=(255, 240, 120))
    return img.filter(ImageFilter.GaussianBlur(0.6))
