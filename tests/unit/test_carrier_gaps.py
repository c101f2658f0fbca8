"""Issue 17, the hiding places that still passed unread: each holds 20 synthetic customers and
must be blocked because the records were read (20 IDs counted); the everyday files next to them
(a camera photo with EXIF and a thumbnail, a phone video, a tar of photos, an ordinary ods and
PDF with properties) must pass.

Each case failed open before its fix: an MP4 followed by a CSV whose first bytes look like a
box header, a cut-short JPEG followed by a CSV, a WebP whose RIFF size covers an appended file,
a PDF FileAttachment annotation, PDF document information, xls and ods sheet names, ods comments,
formulas, named expressions, properties and extra parts, tar archives, a polyglot image inside an
Office package, and a part named ``xl/sharedStrings.xml`` in a docx (skipped as "read by
calamine", which never reads a docx)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from xml.sax.saxutils import escape

import pytest
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    TextStringObject,
)

from dlp_addon.extract import extract_http
from dlp_addon.extract.filetype import sniff
from dlp_addon.pipeline import Inspection
from tests import carrier_files as C
from tests import files as F
from tests.unit.test_files_extract import ROWS, _pdf, inspect, upload
from tests.unit.test_hiding_places import (
    _bytes,
    _segment,
    _writer,
    csv_zip,
    ds_store,
    gif,
    jpeg,
    png_with,
    thumbs_db,
    webp,
)
from tests.unit.test_office_parts import P, docx, pptx

LINES = [" ".join(map(str, r)) for r in ROWS[1:]]  # 20 customers: name id mobile address
TABLE = "\n".join(LINES)
CSV = F.csv_bytes(ROWS, "utf-8")
# A CSV with an English header: its first 8 bytes read as an MP4 box header ("Name" is a size
# past the end, ",ID," a printable box type), so the walk stops there as if cut short.
ENGLISH_CSV = F.csv_bytes([["Name", "ID", "Mobile", "Address"], *ROWS[1:]], "utf-8")


def _blocked(ins: Inspection) -> None:
    verdict = ins.verdict
    assert verdict.blocks and verdict.reason == "findings", verdict.reason
    assert verdict.counts.get("cn_resident_id") == 20
    assert verdict.records >= 20


def _passes(ins: Inspection) -> None:
    verdict = ins.verdict
    assert not verdict.blocks, verdict.reason
    assert verdict.reason in ("clean", "findings"), verdict.reason
    assert not verdict.counts, verdict.counts


def pdf_with_file_annotation(name: str, data: bytes) -> bytes:
    """A paperclip on page 1: a FileAttachment annotation whose file spec embeds ``data``
    (not listed in the document's /EmbeddedFiles name tree)."""
    writer = _writer(["See the paperclip"])
    stream = DecodedStreamObject()
    stream.set_data(data)
    spec = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Filespec"),
            NameObject("/F"): TextStringObject(name),
            NameObject("/EF"): DictionaryObject({NameObject("/F"): writer._add_object(stream)}),
        }
    )
    annot = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/FileAttachment"),
            NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (50, 700, 70, 720)]),
            NameObject("/FS"): writer._add_object(spec),
        }
    )
    writer.add_annotation(0, annot)
    return _bytes(writer)


def pdf_with_info(**fields: str) -> bytes:
    """A PDF whose document information (``/Title``, ``/Keywords``...) holds ``fields``."""
    writer = _writer(["Quarterly report"])
    writer.add_metadata({f"/{k}": v for k, v in fields.items()})
    return _bytes(writer)


def pdf_with_bookmarks(titles: list[str]) -> bytes:
    writer = _writer(["Contents"])
    for title in titles:
        writer.add_outline_item(title=title, page_number=0)
    return _bytes(writer)


def pptx_comments() -> bytes:
    """A deck with PowerPoint's legacy comments (``p:cm``), a customer each."""
    items = "".join(
        f'<p:cm authorId="0" idx="{i}"><p:pos x="10" y="10"/><p:text>{line}</p:text></p:cm>'
        for i, line in enumerate(LINES, start=1)
    )
    return pptx({"ppt/comments/comment1.xml": f"<p:cmLst {P}>{items}</p:cmLst>"})


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def gif_app(ident: bytes, payload: bytes) -> bytes:
    """``gif()`` with an application extension ``ident`` carrying ``payload``."""
    blocks = b"".join(
        bytes((len(payload[i : i + 255]),)) + payload[i : i + 255]
        for i in range(0, len(payload), 255)
    )
    return gif()[:-1] + b"\x21\xff\x0b" + ident + blocks + b"\x00\x3b"


def gzip_with_comment(comment: str) -> bytes:
    """A gzip member whose header carries FCOMMENT (``gzip`` writes none; 7-Zip can)."""
    raw = gzip.compress(b"report", mtime=0)
    return raw[:3] + b"\x10" + raw[4:10] + comment.encode() + b"\x00" + raw[10:]


_THIRD = len(TABLE) // 3
_PHOTOS = {f"商品图/SKU-{i}.jpg": C.grey_jpeg(320, 240) for i in range(4)}


HIDDEN: dict[str, Callable[[], bytes]] = {
    "mp4 + csv with an english header": lambda: C.mp4_video() + ENGLISH_CSV,
    "cut-short jpeg + csv": lambda: jpeg()[:-2000] + CSV,
    "jpeg + text between segments": lambda: jpeg(size=4000).replace(
        b"\xff\xdb", TABLE.encode() + b"\xff\xdb", 1
    ),
    "webp stretched over a csv": lambda: C.webp_stretched(webp(), CSV),
    "webp stretched over a zip": lambda: C.webp_stretched(webp(), csv_zip()),
    "webp unknown chunk": lambda: C.webp_stretched(
        webp(), b"ZZZZ" + len(CSV).to_bytes(4, "little") + CSV
    ),
    "pdf file attachment annotation": lambda: pdf_with_file_annotation("客户.csv", CSV),
    "pdf title subject keywords": lambda: pdf_with_info(
        Title=TABLE[:_THIRD], Subject=TABLE[_THIRD : 2 * _THIRD], Keywords=TABLE[2 * _THIRD :]
    ),
    "pdf custom info key": lambda: pdf_with_info(Notes=TABLE),
    "pdf bookmarks": lambda: pdf_with_bookmarks(LINES),
    "tar of a workbook": lambda: C.tar_of({"客户.xlsx": F.xlsx(ROWS)}),
    "tar entry names": lambda: C.tar_of(
        {f"{r[0]}_{r[1]}_{r[2]}.jpg": C.grey_jpeg(64, 64) for r in ROWS[1:]}
    ),
    "tar.gz of a csv": lambda: gzip.compress(C.tar_of({"a.csv": CSV}), mtime=0),
    "xls sheet names": lambda: C.xls_with_sheet_names(LINES),
    "ods sheet names": lambda: C.ods_with(LINES, sheet_names=True),
    "ods comments": lambda: C.ods_with(LINES, comments=True),
    "ods formulas without values": lambda: C.ods_with(LINES, formulas=True),
    "ods named expressions": lambda: C.ods_with(LINES, named=True),
    "ods description": lambda: C.ods_with(LINES, description=True),
    "ods extra csv part": lambda: C.with_parts(C.ods_with(), {"Configurations2/客户.csv": CSV}),
    "ods header in styles.xml": lambda: C.with_parts(
        C.ods_with(), {"styles.xml": f"<office:document-styles><text:p>{TABLE}</text:p>"}
    ),
    "xlsx polyglot image part": lambda: C.with_parts(
        F.price_list_xlsx(), {"xl/media/image1.png": F.png(32, 32) + csv_zip()}
    ),
    "docx polyglot image part": lambda: docx({"word/media/image1.jpeg": jpeg() + CSV}),
    "docx part named like a workbook's strings": lambda: docx({"xl/sharedStrings.xml": TABLE}),
    "pptx legacy comments": pptx_comments,
    "zip + csv appended": lambda: F.zip_of({"主图.jpg": C.grey_jpeg(64, 64)}) + CSV,
    "zip hidden in front of a zip": lambda: csv_zip() + F.zip_of({"a.jpg": C.grey_jpeg(64, 64)}),
    "xlsx + csv appended": lambda: F.price_list_xlsx() + CSV,
    "pdf + zip appended": lambda: _pdf(["Price list"]) + csv_zip(),
    "pdf + csv appended": lambda: _pdf(["Price list"]) + CSV,
    "png private chunk": lambda: png_with([(b"prVt", CSV)]),
    "png private chunk holding a zip": lambda: png_with([(b"prVt", csv_zip())]),
    "gif application extension": lambda: gif_app(b"ZZAPPLIC1.0", CSV),
    "mp4 box of no known type": lambda: C.mp4_video() + _box(b"abcd", CSV),
    "mp4 uuid box": lambda: C.mp4_video() + _box(b"uuid", bytes(16) + CSV),
    "mp4 comment (udta)": lambda: C.mp4_video(comment=TABLE),
    "jpeg IPTC (APP13)": lambda: jpeg(extra=_segment(0xED, b"Photoshop 3.0\x00" + CSV)),
    "jpeg APP15": lambda: jpeg(extra=_segment(0xEF, CSV)),
    "gzip comment": lambda: gzip_with_comment(TABLE),
    "xls formulas with string literals": lambda: C.xls_with(LINES, formulas=True),
    "xls comments": lambda: C.xls_with(LINES, comments=True),
    "xls defined names": lambda: C.xls_with(LINES, names=True),
}


@pytest.mark.parametrize("case", sorted(HIDDEN))
def test_records_in_each_former_gap_are_read_and_blocked(case: str) -> None:
    _blocked(inspect(upload("file.bin", HIDDEN[case]())))


BENIGN: dict[str, Callable[[], bytes]] = {
    "camera photo with EXIF, GPS and thumbnail": C.camera_photo,
    "phone video": C.mp4_video,
    "tar of product photos": lambda: C.tar_of(_PHOTOS),
    "tar of product photos with Thumbs.db and .DS_Store": lambda: C.tar_of(
        {**_PHOTOS, "商品图/Thumbs.db": thumbs_db(), "商品图/.DS_Store": ds_store()}
    ),
    "ods price list with a comment and a formula": lambda: C.ods_with(
        ["补货 300 件 SKU-LX2019-001 2024-03-18 华东仓"], comments=True, formulas=True
    ),
    "pdf with ordinary properties and bookmarks": lambda: _bytes(_ordinary_pdf()),
    "docx with a photo": lambda: docx({"word/media/image1.jpeg": C.camera_photo()}),
    "webp": webp,
    "phone video with a comment": lambda: C.mp4_video(comment="Redmi K70 · 2024-06-16 西湖"),
    "jpeg with ICC profile, Adobe and MPF segments": lambda: jpeg(
        extra=_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(128) + b"sRGB IEC61966-2.1")
        + _segment(0xEE, b"Adobe\x00d\x00\x00\x00\x00\x01")
        + _segment(0xE2, b"MPF\x00II*\x00" + bytes(40))
    ),
    "png with Apple and ImageMagick chunks": lambda: png_with(
        [(b"iDOT", bytes(28)), (b"vpAg", bytes(9))]
    ),
    "looping gif": lambda: gif_app(b"NETSCAPE2.0", b"\x01\x00\x00"),
    "pdf with an incremental update": lambda: _incremental_pdf(),
    "xls price list with a formula, a comment and a name": lambda: C.xls_with(
        ["restock SKU-LX2019-001 300pcs east"], formulas=True, comments=True, names=True
    ),
    "zip streamed with data descriptors": lambda: C.streamed_zip(_PHOTOS),
    "zip padded with zeros": lambda: F.zip_of({"a.jpg": C.grey_jpeg(64, 64)}) + bytes(512),
}


def _incremental_pdf() -> bytes:
    """A PDF saved, then edited and saved again as an incremental update (a second body,
    xref and ``%%EOF`` appended)."""
    import io

    from pypdf import PdfWriter

    writer = PdfWriter(io.BytesIO(_pdf(["User manual"])), incremental=True)
    writer.add_metadata({"/Title": "TX-2000 manual, revised"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _ordinary_pdf() -> object:
    writer = _writer(["User manual", "Model TX-2000"])
    writer.add_metadata({"/Title": "TX-2000 使用说明", "/Author": "售后部", "/Keywords": "拉杆箱"})
    writer.add_outline_item(title="1 安全须知", page_number=0)
    return writer


@pytest.mark.parametrize("case", sorted(BENIGN))
def test_everyday_files_still_pass(case: str) -> None:
    _passes(inspect(upload("file.bin", BENIGN[case]())))


def test_each_legacy_pptx_comment_is_a_record() -> None:
    """Twenty comments are twenty records, not one line holding forty identifiers."""
    assert inspect(upload("a.pptx", pptx_comments())).verdict.records == 20


def test_an_entry_missing_from_the_zip_directory_is_not_passed() -> None:
    """A local entry the central directory does not list (a streaming reader still extracts
    it) is not skipped: it cannot be read on its own, so the zip is unscannable."""
    data = C.zip_with_unlisted_entry({"a.jpg": C.grey_jpeg(64, 64)}, {"客户.csv": CSV})
    verdict = inspect(upload("photos.zip", data)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:corrupt", verdict.reason


def test_a_tar_is_an_archive_and_its_files_are_attachments() -> None:
    data = C.tar_of({"a/客户.xlsx": F.xlsx(ROWS), "b.jpg": C.grey_jpeg(64, 64)})
    assert sniff(data) == "tar"
    extraction = extract_http(upload("x.tar", data))
    assert extraction.files == ("tar", "xlsx", "image")


def test_a_tar_with_too_many_members_is_unscannable() -> None:
    data = C.tar_of({f"{i}.txt": b"x" for i in range(1001)})
    verdict = inspect(upload("x.tar", data)).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_many_entries"


def test_a_tar_member_larger_than_the_budget_is_too_large() -> None:
    """A member declaring more than the decode budget (a sparse member's full size) is refused
    before it is read."""
    import tarfile

    info = tarfile.TarInfo("big.bin")
    info.size = 80 * F.MIB
    verdict = inspect(upload("x.tar", info.tobuf(tarfile.USTAR_FORMAT) + bytes(1024))).verdict
    assert verdict.blocks and verdict.reason == "unscannable:too_large"


def test_the_video_and_photo_builders_are_what_players_read() -> None:
    """The benign files are structurally complete: the MP4's top boxes, the JPEG's EXIF
    thumbnail (a second JPEG inside APP1) and end of image."""
    video = C.mp4_video()
    assert video[4:8] == b"ftyp" and b"moov" in video[:4096] and b"avcC" in video[:4096]
    photo = C.camera_photo()
    assert photo.startswith(b"\xff\xd8\xff\xe1") and photo.endswith(b"\xff\xd9")
    assert photo.count(b"\xff\xd8") == 2


def pdf_with_xfa(rows: list[str]) -> bytes:
    """A PDF whose XFA form data (the ``datasets`` packet) holds ``rows``: what an XFA viewer
    fills the form with, kept apart from the AcroForm fields."""
    writer = _writer(["Application form"])
    records = "".join(f"<row><line>{escape(r)}</line></row>" for r in rows)
    stream = DecodedStreamObject()
    stream.set_data(
        f"<xfa:datasets><xfa:data><form>{records}</form></xfa:data></xfa:datasets>".encode()
    )
    xfa = ArrayObject([TextStringObject("datasets"), writer._add_object(stream)])
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/XFA"): xfa})
    return _bytes(writer)


def test_xfa_form_data_is_read() -> None:
    _blocked(inspect(upload("form.pdf", pdf_with_xfa(LINES))))
