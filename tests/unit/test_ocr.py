"""OCR of pictures: what a screenshot, a phone photo or a scan carries is read, counted as
records and blocked; its limits (pixels, time, no engine) follow the policy's inspection.ocr."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dlp_addon.decide.policy import DEFAULT_POLICY, Policy, load_policy
from dlp_addon.errors import OcrDeferred, PolicyError
from dlp_addon.extract import ocr
from dlp_addon.extract.filetype import IMAGE, sniff
from dlp_addon.extract.limits import Budget, Limits, OcrLimits
from dlp_addon.extract.message import HttpInput, extract_http
from dlp_addon.pipeline import inspect_http
from tests.images import encode, photo_like, product_photo, scanned_pdf, table_rows
from tests.images import table_screenshot as screenshot
from tests.synth import identifiers_in

pytestmark = pytest.mark.skipif(ocr.engine() is None, reason="scripts/setup installs tesseract")

ROWS = table_rows(20, seed=41)
IDS = {r[2] for r in ROWS}
MOBILES = {r[3] for r in ROWS}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT_POLICY)


@pytest.fixture(scope="module")
def shot() -> Image.Image:
    return screenshot(ROWS)


def _upload(data: bytes) -> HttpInput:
    return HttpInput("POST", "/upload", {"content-type": "application/octet-stream"}, data)


def _with_ocr(policy: Policy, **changes: object) -> Policy:
    ocr_limits = dataclasses.replace(policy.limits.ocr, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(policy, limits=dataclasses.replace(policy.limits, ocr=ocr_limits))


def _read(data: bytes, **changes: object) -> ocr.Reading:
    return ocr.read(data, Budget(Limits(ocr=OcrLimits(**changes))))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "carrier",
    ["screenshot.png", "photo.jpg", "scan.pdf"],
)
def test_a_customer_table_in_a_picture_is_blocked_with_its_records(
    policy: Policy, shot: Image.Image, carrier: str
) -> None:
    data = {
        "screenshot.png": lambda: encode(shot, "PNG"),
        "photo.jpg": lambda: encode(photo_like(shot), "JPEG", quality=60),
        "scan.pdf": lambda: scanned_pdf(shot),
    }[carrier]()
    seen: list = []
    verdict = inspect_http(policy, _upload(data), "taobao-tmall", seen=seen).verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    ids, mobiles = identifiers_in("\n".join(t for _, t in seen[0].parts))
    assert ids <= IDS and mobiles <= MOBILES  # nothing misread into another valid number
    if carrier == "photo.jpg":  # skewed, noisy, compressed: most rows still read
        assert len(ids) >= 15 and len(mobiles) >= 15 and verdict.records >= 15
    else:
        assert ids == IDS and mobiles == MOBILES
        assert verdict.records == 20  # one table row, one line, one record


def test_a_screenshot_pasted_into_a_word_document_is_read(policy: Policy) -> None:
    from tests.unit.test_office_parts import docx

    rows = table_rows(8, seed=3)
    data = docx({"word/media/image1.png": encode(screenshot(rows), "PNG")}, body="见截图")
    verdict = inspect_http(policy, _upload(data), "taobao-tmall").verdict
    assert verdict.blocks and verdict.counts.get("cn_resident_id") == 8, verdict.reason


def test_a_product_photo_with_a_price_tag_passes(policy: Policy) -> None:
    data = encode(product_photo(), "JPEG", quality=85)
    seen: list = []
    verdict = inspect_http(policy, _upload(data), "taobao-tmall", seen=seen).verdict
    assert verdict.action == "allow" and not verdict.blocks
    assert "纯棉" in "".join(t for _, t in seen[0].parts)  # it was read, not skipped


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "TIFF", "GIF", "HEIF"])
def test_every_picture_format_decodes_to_the_same_page(shot: Image.Image, fmt: str) -> None:
    """Each format reaches the engine as the same grey page (lossy ones nearly so), so what is
    read in a PNG is read in the others."""
    source = shot.convert("P") if fmt == "GIF" else shot
    data = encode(source, fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP", "HEIF") else {}))
    assert ocr.is_picture(data)
    grey = ocr._upright_grey(Image.open(__import__("io").BytesIO(data)))
    reference = shot.convert("L")
    reference = reference.resize(grey.size, Image.Resampling.LANCZOS)  # enlarged by half
    diff = sum(abs(a - b) for a, b in zip(grey.tobytes(), reference.tobytes(), strict=True))
    assert diff / len(reference.tobytes()) < 6  # mean difference per pixel, of 255


def test_a_sideways_phone_photo_is_turned_upright_by_its_exif() -> None:
    img = screenshot(table_rows(3, seed=5))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: the viewer rotates 90° clockwise
    data = encode(img.rotate(90, expand=True), "JPEG", quality=90, exif=exif)
    grey = ocr._upright_grey(Image.open(__import__("io").BytesIO(data)))
    assert grey.width / grey.height == pytest.approx(img.width / img.height, rel=0.01)


@pytest.mark.parametrize(
    "picture",
    ["photo tilted 12 degrees", "screenshot with 12-pixel text"],
)
def test_tilted_photos_and_small_screen_text_are_read(picture: str) -> None:
    """Tesseract alone reads nothing of rows tilted 10 degrees and misses 12-pixel digits:
    the picture is levelled and enlarged first."""
    if picture.startswith("photo"):
        data = encode(photo_like(screenshot(ROWS), angle=12), "JPEG", quality=70)
    else:
        data = encode(screenshot(ROWS, size=12), "PNG")  # as screenshots are saved
    found = _read(data, timeout_seconds=60)
    ids = identifiers_in(found.text)[0]
    assert ids <= IDS and len(ids) >= 18, f"{len(ids)} of 20 IDs read"


def test_a_gif_is_read_from_its_first_frame(shot: Image.Image) -> None:
    frames = [shot.convert("P"), Image.new("P", shot.size, 255)]
    out = __import__("io").BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    found = _read(out.getvalue())
    assert identifiers_in(found.text)[0] == IDS


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def test_a_picture_over_max_pixels_is_unscannable_before_any_pixel_is_decoded() -> None:
    # 100,000 x 100,000: 10 GB of pixels if decoded; the header says so in 33 bytes.
    assert _read(_png_header(100_000, 100_000)) == ocr.Reading(unscannable="ocr_too_large")
    assert _read(_png_header(1000, 1000), max_pixels=999_999).unscannable == "ocr_too_large"


def test_a_picture_pillow_cannot_decode_has_nothing_to_read() -> None:
    """It shows no text to anyone; a file behind a broken structure is image.py's business."""
    assert _read(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200) == ocr.Reading()


def test_icons_are_not_read_and_not_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "_deferred", True)
    assert _read(encode(Image.new("RGB", (64, 64), "red"), "PNG")) == ocr.Reading()


def test_the_proxy_process_defers_pictures_to_the_workers(
    monkeypatch: pytest.MonkeyPatch, policy: Policy, shot: Image.Image
) -> None:
    """On the event loop a picture is never read: the pipeline hands the request back."""
    monkeypatch.setattr(ocr, "_deferred", True)
    with pytest.raises(OcrDeferred):
        inspect_http(policy, _upload(encode(shot, "PNG")), "taobao-tmall")


def test_timeout_blocks_a_table_sized_picture_and_logs_a_small_one(
    policy: Policy, shot: Image.Image
) -> None:
    quick = _with_ocr(policy, timeout_seconds=0.01)
    big = inspect_http(quick, _upload(encode(shot, "PNG")), "taobao-tmall").verdict
    assert big.blocks and big.reason == "unscannable:ocr_timeout"
    small_img = shot.crop((0, 0, 300, 200))  # 60,000 pixels: no table fits
    small = inspect_http(quick, _upload(encode(small_img, "PNG")), "taobao-tmall").verdict
    assert small.action == "log" and not small.blocks and small.reason == "unscannable:ocr_timeout"
    lenient = _with_ocr(quick, on_timeout="log")
    logged = inspect_http(lenient, _upload(encode(shot, "PNG")), "taobao-tmall").verdict
    assert logged.action == "log" and not logged.blocks


def test_without_the_engine_a_table_sized_picture_is_blocked(
    monkeypatch: pytest.MonkeyPatch, policy: Policy, shot: Image.Image
) -> None:
    monkeypatch.setattr(ocr, "engine", lambda: None)
    lenient = _with_ocr(policy, on_timeout="log")  # not a timeout: fail closed all the same
    verdict = inspect_http(lenient, _upload(encode(shot, "PNG")), "taobao-tmall").verdict
    assert verdict.blocks and verdict.reason == "unscannable:ocr_unavailable"


def test_ocr_disabled_reads_no_picture(policy: Policy, shot: Image.Image) -> None:
    off = _with_ocr(policy, enabled=False)
    assert inspect_http(off, _upload(encode(shot, "PNG")), "taobao-tmall").verdict.action == "allow"
    pdf = extract_http(_upload(scanned_pdf(shot)), off.limits)
    assert identifiers_in("\n".join(t for _, t in pdf.parts)) == (set(), set())


def test_text_beginning_with_bm_is_not_a_bitmap() -> None:
    assert sniff("BMW 3系 轿车，客户 张伟 13800138000".encode()) != IMAGE
    assert sniff(encode(Image.new("RGB", (4, 4)), "BMP")) == IMAGE


def _policy_text(ocr_section: str) -> str:
    ocr_lines = "".join(f"    {line}\n" for line in ocr_section.splitlines())
    return (
        "version: 1\ninspection:\n  timeout_seconds: 5\n  ocr:\n"
        + ocr_lines
        + "destinations:\n  - name: shop\n    hosts: [shop.example]\n"
        + "rules:\n  - name: ids\n    action: block\n    when:\n"
        + "      - {detector: cn_resident_id, min_distinct: 5}\n"
    )


def test_policy_ocr_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy_text("timeout_seconds: 2\non_timeout: log\nmax_pixels: 1000000"))
    limits = load_policy(path).limits.ocr
    assert limits == OcrLimits(timeout_seconds=2, on_timeout="log", max_pixels=1_000_000)
    assert load_policy(DEFAULT_POLICY).limits.ocr == OcrLimits()


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("timeout_seconds: 0", 5, "less than or equal to the minimum"),
        ("on_timeout: pass", 5, "must be one of block, log"),
        ("max_pixels: 10", 5, "less than the minimum"),
        ("colour: true", 5, "unknown key 'colour'"),
    ],
)
def test_policy_ocr_mistakes_are_reported_with_their_line(
    tmp_path: Path, section: str, line: int, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy_text(section))
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert any(p.startswith(f"{path}:{line}:") and message in p for p in e.value.problems), (
        e.value.problems
    )
