"""What a file carries besides its main text (issue 17): archive entry names and comments,
PDF annotations, form fields and embedded files, owner-password PDFs, and data hidden in or
after images and MP4s (图种). Each hiding place holding 20 synthetic customers is blocked; the
everyday files next to them (a product-photo zip with Thumbs.db and .DS_Store, an owner-password
manual, plain photos) pass. Every file is built here by hand (no Pillow needed)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable

import pytest
from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    TextStringObject,
)

from dlp_addon.pipeline import Inspection
from tests import files as F
from tests.unit.test_files_extract import ROWS, _pdf, inspect, upload

LINES = [" ".join(map(str, r)) for r in ROWS[1:]]  # 20 customers, one a line
TABLE = "\n".join(LINES)
ASCII_LINES = [f"{r[1]} {r[2]}" for r in ROWS[1:]]  # ID and mobile: what Helvetica can show


def _blocked(ins: Inspection) -> None:
    verdict = ins.verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.counts.get("cn_resident_id") == 20
    assert verdict.records == 20


def _passes(ins: Inspection) -> None:
    verdict = ins.verdict
    assert not verdict.blocks, verdict.reason
    assert not ins.verdict.reason.startswith("unscannable"), verdict.reason


# --- images, by hand ----------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _scan_data(n: int, seed: int) -> bytes:
    """Entropy-coded bytes as an encoder writes them: every 0xFF followed by a stuffed 0x00."""
    raw = random.Random(seed).randbytes(n)
    return raw.replace(b"\xff", b"\xff\x00")


def jpeg(*, extra: bytes = b"", size: int = 40_000, seed: int = 5) -> bytes:
    """A baseline JPEG's structure: JFIF, tables, frame, scan (with restart markers), EOI;
    ``extra`` segments (COM, APP1) go after JFIF, as cameras write them."""
    jfif = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = _segment(0xDB, b"\x00" + bytes(range(1, 65)))
    sof = _segment(0xC0, b"\x08\x01\xe0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    dht = _segment(0xC4, b"\x00" + bytes([0, 1, 5, 1, 1, 1, 1, 1, 1] + [0] * 7) + bytes(range(12)))
    dri = _segment(0xDD, b"\x00\x10")
    sos = _segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")
    half = size // 2
    scan = _scan_data(half, seed) + b"\xff\xd0" + _scan_data(size - half, seed + 1)
    return b"\xff\xd8" + jfif + extra + dqt + sof + dht + dri + sos + scan + b"\xff\xd9"


def exif_user_comment(text: str) -> bytes:
    """An APP1 Exif segment: IFD0 pointing to an Exif IFD holding UserComment (UNICODE)."""
    comment = b"UNICODE\x00" + text.encode("utf-16-le")
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, 26) + struct.pack("<I", 0)
    exif_ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x9286, 7, len(comment), 44)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + exif_ifd + struct.pack("<I", 0) + comment
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


def xmp_segment(text: str) -> bytes:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description><dc:description>'
        f"{text}</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    return _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet.encode())


def png_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``F.png`` with ``chunks`` inserted before IDAT."""
    base = F.png(48, 48)
    idat = base.index(b"IDAT") - 4
    extra = b"".join(F._png_chunk(kind, payload) for kind, payload in chunks)
    return base[:idat] + extra + base[idat:]


def gif(comment: str = "") -> bytes:
    """A 2x2 GIF89a: global colour table, optional comment extension, one LZW image, trailer."""
    out = b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    if comment:
        raw = comment.encode()
        out += b"\x21\xfe" + b"".join(
            bytes((len(raw[i : i + 255]),)) + raw[i : i + 255] for i in range(0, len(raw), 255)
        )
        out += b"\x00"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x01\x00"
    return out + b"\x3b"


def webp(size: int = 30_000) -> bytes:
    payload = random.Random(3).randbytes(size)
    chunk = b"VP8 " + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp4_with_free(payload: bytes) -> bytes:
    """``F.media_blob`` with a ``free`` box (padding players skip) holding ``payload``."""
    return F.media_blob(128 * 1024) + struct.pack(">I", 8 + len(payload)) + b"free" + payload


def csv_zip() -> bytes:
    return F.zip_of({"客户.csv": F.csv_bytes(ROWS, "utf-8")})


# --- PDFs with pypdf ----------------------------------------------------------------------------


def _writer(lines: list[str]) -> PdfWriter:
    return PdfWriter(clone_from=io.BytesIO(_pdf(lines)))


def _bytes(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_note(text: str) -> bytes:
    writer = _writer(["Quarterly report"])
    note = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Text"),
            NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (50, 700, 70, 720)]),
            NameObject("/Contents"): TextStringObject(text),
        }
    )
    writer.add_annotation(0, note)
    return _bytes(writer)


def pdf_with_fields(values: list[str]) -> bytes:
    writer = _writer(["Application form"])
    page = writer.pages[0]
    fields = ArrayObject()
    annots = ArrayObject()
    for i, value in enumerate(values):
        widget = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/Widget"),
                NameObject("/FT"): NameObject("/Tx"),
                NameObject("/T"): TextStringObject(f"row{i}"),
                NameObject("/V"): TextStringObject(value),
                NameObject("/Rect"): ArrayObject(
                    [FloatObject(v) for v in (20, 700 - 20 * i, 400, 715 - 20 * i)]
                ),
                NameObject("/P"): page.indirect_reference,
            }
        )
        ref = writer._add_object(widget)
        fields.append(ref)
        annots.append(ref)
    page[NameObject("/Annots")] = annots
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject(
        {NameObject("/Fields"): fields, NameObject("/DA"): TextStringObject("/Helv 0 Tf 0 g")}
    )
    return _bytes(writer)


def pdf_with_attachment(name: str, data: bytes) -> bytes:
    writer = _writer(["See attached"])
    writer.add_attachment(name, data)
    return _bytes(writer)


def owner_password_pdf(lines: list[str]) -> bytes:
    """Opens without a password (empty user password); only editing needs the owner's."""
    writer = _writer(lines)
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    return _bytes(writer)


# --- the hiding places --------------------------------------------------------------------------

_NAMED_PHOTOS = {
    f"{r[0]}_{r[1]}_{r[2]}.jpg": jpeg(size=2000, seed=i) for i, r in enumerate(ROWS[1:])
}


def _zip_with_comment(comment: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("readme.txt", "产品图片")
        zf.comment = comment.encode()
    return out.getvalue()


HIDDEN: dict[str, Callable[[], bytes]] = {
    "zip entry names (ID-card photo batch)": lambda: F.zip_of(_NAMED_PHOTOS),
    "zip comment": lambda: _zip_with_comment(TABLE),
    "pdf sticky note": lambda: pdf_with_note(TABLE),
    "pdf form fields": lambda: pdf_with_fields(LINES),
    "pdf embedded csv": lambda: pdf_with_attachment("客户.csv", F.csv_bytes(ROWS, "utf-8")),
    "pdf owner password only": lambda: owner_password_pdf(ASCII_LINES),
    "jpeg + zip": lambda: jpeg() + csv_zip(),
    "png + zip": lambda: F.png(64, 64) + csv_zip(),
    "gif + zip": lambda: gif() + csv_zip(),
    "webp + zip": lambda: webp() + csv_zip(),
    "mp4 + zip": lambda: F.media_blob(256 * 1024) + csv_zip(),
    "png + xlsx": lambda: F.png(64, 64) + F.xlsx(ROWS),
    "mp4 free box": lambda: mp4_with_free(F.csv_bytes(ROWS, "utf-8")),
    "png tEXt": lambda: png_with([(b"tEXt", b"Comment\x00" + TABLE.encode("gb18030"))]),
    "png zTXt": lambda: png_with(
        [(b"zTXt", b"Comment\x00\x00" + zlib.compress(TABLE.encode("gb18030")))]
    ),
    "png iTXt compressed": lambda: png_with(
        [(b"iTXt", b"Description\x00\x01\x00zh\x00\x00" + zlib.compress(TABLE.encode()))]
    ),
    "jpeg COM": lambda: jpeg(extra=_segment(0xFE, TABLE.encode())),
    "jpeg EXIF UserComment": lambda: jpeg(extra=exif_user_comment(TABLE)),
    "jpeg XMP": lambda: jpeg(extra=xmp_segment(TABLE)),
    "gif comment": lambda: gif(TABLE),
}


@pytest.mark.parametrize("case", sorted(HIDDEN))
def test_records_in_each_hiding_place_are_blocked(case: str) -> None:
    _blocked(inspect(upload("photo.jpg", HIDDEN[case](), "image/jpeg")))


def test_a_file_after_an_image_is_an_attachment_of_its_own() -> None:
    verdict = inspect(upload("photo.png", F.png(64, 64) + F.xlsx(ROWS))).verdict
    kinds = [f["kind"] for f in verdict.files]
    assert "image" in kinds and "xlsx" in kinds


# --- the benign files next to them --------------------------------------------------------------


def thumbs_db() -> bytes:
    """An OLE compound file as Windows Explorer writes Thumbs.db: a Catalog stream and
    thumbnails (only the parts the proxy looks at are real)."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    directory = "Root Entry".encode("utf-16-le").ljust(128, b"\x00")
    directory += "Catalog".encode("utf-16-le").ljust(128, b"\x00")
    directory += "1".encode("utf-16-le").ljust(128, b"\x00")
    return header + directory + jpeg(size=3000, seed=9)


def ds_store() -> bytes:
    names = "".join(f"IMG_{i:04d}.jpg" for i in range(10)).encode("utf-16-be")
    return b"\x00\x00\x00\x01Bud1" + b"\x00" * 24 + names + b"\x00" * 200


def product_photo_zip() -> bytes:
    photos = {f"产品图/SKU-{1000 + i}-黑色.jpg": jpeg(size=5000, seed=i) for i in range(6)}
    photos["产品图/主图.png"] = F.png(96, 96)
    photos["产品图/Thumbs.db"] = thumbs_db()
    photos["产品图/.DS_Store"] = ds_store()
    photos["__MACOSX/产品图/._主图.png"] = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    return F.zip_of(photos)


BENIGN: dict[str, Callable[[], bytes]] = {
    "product photo zip with Thumbs.db and .DS_Store": product_photo_zip,
    "owner-password manual": lambda: owner_password_pdf(
        ["User manual", "Model TX-2000 suitcase", "Warranty: 2 years", "Service 400-800-1234"]
    ),
    "png": lambda: F.png(128, 96),
    "jpeg with EXIF and XMP": lambda: jpeg(
        extra=exif_user_comment("Shot on holiday") + xmp_segment("产品主图 黑色 拉杆箱")
    ),
    "jpeg with zero padding after EOI": lambda: jpeg() + b"\x00" * 64,
    "two jpegs (MPO)": lambda: jpeg(seed=1) + jpeg(seed=2),
    "gif": gif,
    "webp": webp,
    "mp4": lambda: F.media_blob(512 * 1024),
    "mp4 with zeroed free box": lambda: mp4_with_free(b"\x00" * 2048),
}


@pytest.mark.parametrize("case", sorted(BENIGN))
def test_everyday_files_pass(case: str) -> None:
    _passes(inspect(upload("file.bin", BENIGN[case]())))


@pytest.mark.parametrize("name", [".DS_Store", "Thumbs.db"])
def test_only_litter_by_content_is_skipped(name: str) -> None:
    """A CSV named .DS_Store or Thumbs.db is read like any file."""
    data = F.zip_of({name: F.csv_bytes(ROWS, "utf-8"), "a.jpg": jpeg(size=2000)})
    _blocked(inspect(upload("photos.zip", data)))


def test_text_hidden_in_a_thumbs_db_is_still_found() -> None:
    data = F.zip_of({"Thumbs.db": thumbs_db() + TABLE.encode(), "a.jpg": jpeg(size=2000)})
    _blocked(inspect(upload("photos.zip", data)))


def test_a_pdf_that_needs_a_password_to_open_is_unscannable() -> None:
    writer = _writer(ASCII_LINES)
    writer.encrypt(user_password="open-me", owner_password="owner", algorithm="AES-128")
    verdict = inspect(upload("x.pdf", _bytes(writer))).verdict
    assert verdict.blocks and verdict.reason == "unscannable:encrypted"


def test_a_truncated_large_image_is_unscannable_and_a_small_one_passes() -> None:
    big = jpeg(size=300_000)[:-50_000]  # cut inside the scan: where it ends is unknown
    verdict = inspect(upload("big.jpg", big)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:image_structure"
    _passes(inspect(upload("small.jpg", jpeg(size=4000)[:-500])))


def test_a_broken_image_with_a_zip_inside_is_read() -> None:
    broken = jpeg(size=4000)[:-500] + b"\x00" * 100 + csv_zip()
    _blocked(inspect(upload("x.jpg", broken)))


@pytest.mark.parametrize("case", ["png", "jpeg with EXIF and XMP", "gif", "webp", "mp4"])
def test_cut_images_are_passed_or_refused_never_an_error(case: str) -> None:
    data = BENIGN[case]()
    for cut in (len(data) // 7, len(data) // 2, len(data) - 3):
        verdict = inspect(upload("cut.bin", data[:cut])).verdict
        assert not verdict.reason.startswith("error"), verdict.reason


def test_a_compressed_png_text_bomb_is_too_large() -> None:
    bomb = zlib.compress(b"0" * (80 * F.MIB), 9)
    verdict = inspect(upload("x.png", png_with([(b"zTXt", b"Comment\x00\x00" + bomb)]))).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_large"
