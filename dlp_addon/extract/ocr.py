"""Text in pictures: screenshots of a sheet, phone photos of a printout, scanned pages.

Pillow decodes the picture (PNG, JPEG, WebP, BMP, TIFF, GIF's first frame, HEIC/AVIF through
pillow-heif), turns it upright (EXIF orientation) and grey, and Debian's Tesseract
(``tesseract-ocr`` with ``chi-sim``) reads it as one block of lines, one table row per line:
the text then goes through the detectors like any document, each line a record.

Why Tesseract (docs/benchmarks.md, "OCR"): equal recall to RapidOCR on generated screenshots,
faster on one core, and it runs as a child process, so the OCR time limit kills it cleanly and
the worker lives on; RapidOCR's maintained releases do not install on Python 3.13.

Limits, from the policy's ``inspection.ocr`` (:class:`~dlp_addon.extract.limits.OcrLimits`):
a picture over ``max_pixels`` is unscannable (``ocr_too_large``), checked from its header before
any pixel is decoded. OCR time per request is ``timeout_seconds``, on top of the request's own
``inspection.timeout_seconds`` (the deadline moves by the time OCR took; :func:`allowance`).
A picture larger than ``block_above_pixels`` (it could hold a table) is unscannable when OCR
could not finish it in time (``ocr_timeout``) and ``on_timeout`` is ``block``, or when there is
no engine (``ocr_unavailable``); otherwise it is let through and logged.
Pictures under :data:`MIN_PIXELS` (icons, stickers) are not read: they cannot hold a list.
Bytes that start like a picture but do not decode show no text to anyone either: there is
nothing to read (what hides behind a broken structure is the image walker's business:
``image.py``, ``image_structure``).

OCR never runs on the proxy's event loop: the proxy calls :func:`defer_to_workers` and a
request meeting a picture raises :class:`~dlp_addon.errors.OcrDeferred`; the addon then
inspects it again in a worker process, which called :func:`preload` once.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
import shutil
import statistics
import subprocess
import time
import warnings
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from dlp_addon.errors import OcrDeferred
from dlp_addon.extract.filetype import IMAGE, sniff
from dlp_addon.extract.limits import Budget, Limits, OcrLimits

logger = logging.getLogger(__name__)

with contextlib.suppress(ImportError):  # HEIC/HEIF and AVIF photos (iPhones); a dependency
    from pillow_heif import register_heif_opener

    register_heif_opener()

MIN_PIXELS = 20_000  # about 140 x 140: no table of records fits in less
_WORK_PIXELS = 9_000_000  # larger pictures (phone photos) are scaled down to this first
_SMALL_TEXT = 10  # pixels of ink (a digit; ~0.7 of the font size): lower lines are enlarged
_BOX = Image.Resampling.BOX
_SKEW_SIDE = 500  # the thumbnail the skew is measured on
_MAX_SKEW = 30  # degrees either way; rows tilted more are read as they are
_LANGUAGES = "chi_sim"  # its model reads Latin letters and digits too
# ISO BMFF brands of still pictures (HEIC, HEIF, AVIF); other ftyp files are video.
_STILL_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"})

ImageFile.LOAD_TRUNCATED_IMAGES = True  # a cut-off screenshot still shows its rows

_deferred = False


@dataclass(frozen=True)
class Reading:
    """What OCR made of one picture: its text, or why it could not be read and whether that
    blocks (``unscannable``) or is let through and logged (``logged``)."""

    text: str = ""
    unscannable: str | None = None
    logged: str | None = None


def defer_to_workers() -> None:
    """This process is the proxy's event loop: a picture to read raises ``OcrDeferred``."""
    global _deferred
    _deferred = True


@cache
def engine() -> str | None:
    """The Tesseract executable, when it has the Chinese model; else None (``ocr_unavailable``)."""
    exe = shutil.which("tesseract")
    if exe is None:
        return None
    try:
        langs = subprocess.run(
            [exe, "--list-langs"], capture_output=True, timeout=10, check=True, text=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if _LANGUAGES in langs else None


def preload() -> None:
    """Once per inspection worker: find the engine and bring its model into the page cache, so
    the first picture is read as fast as the next."""
    exe = engine()
    if exe is None:
        logger.warning("OCR unavailable: install tesseract-ocr and tesseract-ocr-chi-sim")
        return
    blank = _pgm(Image.new("L", (200, 60), 255))
    try:
        subprocess.run(_command(exe), input=blank, capture_output=True, timeout=30, env=_env())
    except (OSError, subprocess.SubprocessError):
        logger.warning("OCR engine failed to start")


def is_picture(data: bytes) -> bool:
    """Still pictures OCR reads: PNG, JPEG, GIF, WebP, BMP, TIFF, HEIC/HEIF, AVIF."""
    return sniff(data) == IMAGE or (data[4:8] == b"ftyp" and data[8:12] in _STILL_BRANDS)


def allowance(limits: Limits) -> float:
    """Seconds a request may take beyond the policy's ``timeout_seconds``: its OCR time."""
    return limits.ocr.timeout_seconds if limits.ocr.enabled else 0.0


def read(data: bytes, budget: Budget) -> Reading:
    """The text in the picture ``data``, within the request's ``budget`` (its OCR time)."""
    limits = budget.limits.ocr
    if not limits.enabled:
        return Reading()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # the header only: no pixel decoded yet
    except Image.DecompressionBombError:
        return Reading(unscannable="ocr_too_large")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return Reading()  # not a picture anyone can see: nothing to read
    pixels = img.width * img.height
    if pixels > limits.max_pixels:
        return Reading(unscannable="ocr_too_large")
    if pixels < MIN_PIXELS:
        return Reading()
    if _deferred:
        raise OcrDeferred
    exe = engine()
    if exe is None:
        return _unfinished("ocr_unavailable", pixels, limits, by_policy=False)
    started = time.monotonic()
    seconds = limits.timeout_seconds - budget.ocr_seconds
    try:
        if seconds <= 0:
            raise subprocess.TimeoutExpired("tesseract", 0)
        pgm = _pgm(_legible(_level(_upright_grey(img))))
        left = seconds - (time.monotonic() - started)
        if left <= 0:
            raise subprocess.TimeoutExpired("tesseract", 0)
        done = subprocess.run(
            _command(exe), input=pgm, capture_output=True, timeout=left, env=_env()
        )
    except subprocess.TimeoutExpired:
        return _unfinished("ocr_timeout", pixels, limits, by_policy=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return Reading()  # the header was fine, the pixels not: nothing shows
    finally:
        budget.ocr_seconds += time.monotonic() - started
    if done.returncode != 0:
        return _unfinished("ocr_unavailable", pixels, limits, by_policy=False)
    text = done.stdout.decode("utf-8", "replace")
    budget.spend(len(text))
    return Reading(text=text)


def _unfinished(reason: str, pixels: int, limits: OcrLimits, *, by_policy: bool) -> Reading:
    """A picture OCR could not read: blocked when it could hold a table (and, for a timeout,
    the policy says block), else let through and logged."""
    blocks = pixels > limits.block_above_pixels and (limits.on_timeout == "block" or not by_policy)
    return Reading(unscannable=reason) if blocks else Reading(logged=reason)


def _upright_grey(img: Image.Image) -> Image.Image:
    """The first frame, turned as the camera said (EXIF), transparency on white, grey, and no
    larger than :data:`_WORK_PIXELS`."""
    img.seek(0)
    if img.width * img.height > _WORK_PIXELS:
        img.draft("L", (img.width // 2, img.height // 2))  # JPEG: decode at half size
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.new("RGBA", rgba.size, "white")
        img.alpha_composite(rgba)
    img = img.convert("L")
    pixels = img.width * img.height
    if pixels > _WORK_PIXELS:
        scale = (_WORK_PIXELS / pixels) ** 0.5
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BOX)
    return img


def _legible(grey: Image.Image) -> Image.Image:
    """``grey`` half as large again when its lines of text are low (digits under
    :data:`_SMALL_TEXT` pixels: a font under about 14 px, such as Excel's at 100% zoom):
    Tesseract misses most such digits, while enlarging larger text makes it split numbers
    (``1 5903560216``). The height is the median run of inked pixel rows (the mean ink of each
    row over a quarter of the darkest rows' level), gridlines' 1-2 rows left out."""
    if grey.width * grey.height * 9 // 4 > _WORK_PIXELS:
        return grey
    rows = ImageOps.invert(ImageOps.autocontrast(grey)).resize((1, grey.height), _BOX).tobytes()
    threshold = max(sorted(rows)[len(rows) * 9 // 10] // 4, 2)
    runs = [len(run) for run in re.findall(rb"[^\x00]{3,}", bytes(v > threshold for v in rows))]
    if not runs or statistics.median(runs) >= _SMALL_TEXT:
        return grey
    return grey.resize((grey.width * 3 // 2, grey.height * 3 // 2), Image.Resampling.LANCZOS)


def _level(grey: Image.Image) -> Image.Image:
    """``grey`` turned so its lines are level. Tesseract reads rows tilted by 10 degrees as
    nothing at all; a phone photo of a printout is rarely straighter. The angle is the one
    whose horizontal ink profile (the mean of each pixel row, on a thumbnail) changes most
    sharply from row to row: lines of text and the gaps between them line up."""
    small = grey.copy()
    small.thumbnail((_SKEW_SIDE, _SKEW_SIDE))
    ink = ImageOps.invert(ImageOps.autocontrast(small))

    def sharpness(angle: float) -> int:
        turned = ink.rotate(angle, resample=Image.Resampling.BILINEAR)
        rows = turned.resize((1, turned.height), _BOX).tobytes()
        return sum((a - b) ** 2 for a, b in itertools.pairwise(rows))

    coarse = max(range(-_MAX_SKEW, _MAX_SKEW + 1, 2), key=sharpness)
    angle = max((coarse + d / 4 for d in range(-6, 7)), key=sharpness)
    if abs(angle) < 0.5:
        return grey
    return grey.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def _pgm(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PPM")  # grey: PGM, the cheapest format Tesseract reads from stdin
    return out.getvalue()


def _command(exe: str) -> list[str]:
    # --psm 6: one uniform block of text, so each table row comes out as one line (a record).
    return [exe, "stdin", "stdout", "-l", _LANGUAGES, "--psm", "6"]


def _env() -> dict[str, str]:
    # One thread: the worker has one core's share; Tesseract's OpenMP threads only contend.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_THREAD_LIMIT": "1"}
