"""Text of documents: PDF (pypdf: pages, annotations, form fields, embedded and attached files,
document information, XMP, bookmarks) and Word (the XML of a docx). Bounded by the request's
budget; an encrypted or unreadable document is an ``ExtractError`` with its reason."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.generic import DictionaryObject, StreamObject

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget
from dlp_addon.extract.ooxml import xml_text

_MAX_PAGES = 2000
_SCANNED_PAGE_CHARS = 20  # a page with less text is read as a picture (OCR)
_XML_TAG = re.compile(r"<[^>]{0,2000}>")

# pypdf logs warnings about odd files; they are about the file, not about us.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass
class Pdf:
    """What a PDF carries: page text, the text people add (sticky notes and other annotations,
    form field values, attachment names, document properties, bookmarks) and its embedded
    files."""

    text: str
    notes: str
    files: list[bytes] = field(default_factory=list)
    scans: list[bytes] = field(default_factory=list)  # pictures on pages without text


def read_pdf(data: bytes, budget: Budget) -> Pdf:
    """Pages, annotations, form fields and embedded files. A PDF with only an owner password
    (an empty user password: anyone can open it) is decrypted and read; one that needs a
    password to open is ``encrypted``."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractError("encrypted")
        pages, notes, scans = [], [], []
        attached: list[bytes] = []  # files of FileAttachment annotations
        for i, page in enumerate(reader.pages):
            if i >= _MAX_PAGES:
                raise ExtractError("too_large")
            text = page.extract_text() or ""
            budget.spend(len(text))
            pages.append(text)
            if len(text.strip()) < _SCANNED_PAGE_CHARS and budget.limits.ocr.enabled:
                scans.extend(_page_pictures(page, budget))
            notes.extend(_annotations(page, budget, attached))
        notes.extend(_fields(reader, budget))
        notes.extend(_info(reader, budget))
        files = attached + _appended(data)
        for name, contents in reader.attachments.items():
            notes.append(str(name))
            for content in contents:
                budget.spend(len(content))
                files.append(content)
    except ExtractError:
        raise
    except Exception as e:  # pypdf raises many types on a malformed file: all mean unreadable
        raise ExtractError("corrupt") from e
    return Pdf("\n".join(pages), "\n".join(n for n in notes if n.strip()), files, scans)


def _page_pictures(page: PageObject, budget: Budget) -> list[bytes]:
    """The pictures of a page with (almost) no text: a scan, read by OCR. Sizes are checked
    from the image dictionaries before pypdf decodes anything (a 10^10-pixel image is a few
    bytes of Flate)."""
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    out: list[bytes] = []
    for name, ref in (xobjects.get_object() if xobjects is not None else {}).items():
        obj = ref.get_object()
        if obj.get("/Subtype") != "/Image":
            continue
        if int(obj.get("/Width", 0)) * int(obj.get("/Height", 0)) > budget.limits.ocr.max_pixels:
            raise ExtractError("ocr_too_large")
        data = page.images[name].data
        budget.spend(len(data))
        out.append(data)
    return out


def _annotations(page: PageObject, budget: Budget, files: list[bytes]) -> list[str]:
    """Text of a page's annotations (sticky notes, free text, markup pop-ups): contents, title
    (the author field) and rich-text contents; a FileAttachment annotation's file goes to
    ``files`` (it is not in the document's ``/EmbeddedFiles``)."""
    out = []
    annots = page.get("/Annots")
    for ref in annots.get_object() if annots is not None else []:
        annot = ref.get_object()
        if not isinstance(annot, DictionaryObject):
            continue
        for key in ("/Contents", "/T", "/RC", "/Subj"):
            value = annot.get(key)
            if value is not None:
                text = str(value.get_object())
                budget.spend(len(text))
                out.append(text)
        spec = annot.get("/FS")
        spec = spec.get_object() if spec is not None else None
        if isinstance(spec, DictionaryObject):
            out.extend(str(spec[k]) for k in ("/F", "/UF", "/Desc") if k in spec)
            embedded = spec.get("/EF")
            embedded = embedded.get_object() if embedded is not None else None
            if isinstance(embedded, DictionaryObject):
                for key in ("/F", "/UF"):
                    stream = embedded.get(key)
                    if isinstance(stream := stream and stream.get_object(), StreamObject):
                        content = stream.get_data()
                        budget.spend(len(content))
                        files.append(content)
                        break
    return out


def _appended(data: bytes) -> list[bytes]:
    """What follows an end-of-file marker and is not an incremental update (which carries its
    own ``startxref``): readers skip it, a receiver may not (a zip or CSV appended to a PDF)."""
    out = []
    for segment in data.split(b"%%EOF")[1:]:
        if segment.strip(b"\x00\r\n\t\f ") and b"startxref" not in segment:
            out.append(segment.lstrip(b"\r\n"))
    return out


def _info(reader: PdfReader, budget: Budget) -> list[str]:
    """The document information (title, author, subject, keywords, custom keys), the XMP
    metadata packet, an XFA form's packets (its data) and the outline (bookmark) titles."""
    out = []
    info = reader.metadata
    for value in info.values() if info is not None else ():
        text = str(value.get_object() if hasattr(value, "get_object") else value)
        budget.spend(len(text))
        out.append(text)
    xmp = reader.root_object.get("/Metadata")
    if isinstance(xmp := xmp and xmp.get_object(), StreamObject):
        raw = xmp.get_data()
        budget.spend(len(raw))
        out.append(xml_text(raw.decode("utf-8", "replace"), prose=False))
    form = reader.root_object.get("/AcroForm")
    form = form.get_object() if form is not None else None
    xfa = form.get("/XFA") if isinstance(form, DictionaryObject) else None
    xfa = xfa.get_object() if xfa is not None else None
    packets = [xfa] if isinstance(xfa, StreamObject) else list(xfa or ())[1::2]
    for packet in packets:  # an XFA form's template and data (datasets) as XML
        if isinstance(packet := packet.get_object(), StreamObject):
            raw = packet.get_data()
            budget.spend(len(raw))
            out.append(xml_text(raw.decode("utf-8", "replace"), prose=False))
    todo: list[object] = [reader.outline]
    while todo and len(out) < 100_000:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, DictionaryObject) and "/Title" in item:
            out.append(str(item["/Title"]))
    return out


def _fields(reader: PdfReader, budget: Budget) -> list[str]:
    """Form field names with their values (``/V``; a choice list's values one by one)."""
    out = []
    for name, fld in (reader.get_fields() or {}).items():
        value = fld.get("/V")
        if value is None:
            continue
        value = value.get_object()
        values = value if isinstance(value, list) else [value]
        text = f"{name} " + " ".join(str(v) for v in values)
        budget.spend(len(text))
        out.append(text)
    return out


def docx_text(document_xml: bytes) -> str:
    """Text of a Word document's XML, paragraphs as lines; tags dropped, entities not
    expanded (an entity bomb stays a few bytes of text)."""
    text = document_xml.decode("utf-8", "replace").replace("</w:p>", "\n")
    return _XML_TAG.sub(" ", text)
