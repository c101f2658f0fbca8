"""Text of documents: PDF (pypdf: pages, annotations, form fields, embedded files) and Word
(the XML of a docx). Bounded by the request's budget; an encrypted or unreadable document is
an ``ExtractError`` with its reason."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.generic import DictionaryObject

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget

_MAX_PAGES = 2000
_XML_TAG = re.compile(r"<[^>]{0,2000}>")

# pypdf logs warnings about odd files; they are about the file, not about us.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass
class Pdf:
    """What a PDF carries: page text, the text people add (sticky notes and other annotations,
    form field values, attachment names) and its embedded files."""

    text: str
    notes: str
    files: list[bytes] = field(default_factory=list)


def read_pdf(data: bytes, budget: Budget) -> Pdf:
    """Pages, annotations, form fields and embedded files. A PDF with only an owner password
    (an empty user password: anyone can open it) is decrypted and read; one that needs a
    password to open is ``encrypted``."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractError("encrypted")
        pages, notes = [], []
        for i, page in enumerate(reader.pages):
            if i >= _MAX_PAGES:
                raise ExtractError("too_large")
            text = page.extract_text() or ""
            budget.spend(len(text))
            pages.append(text)
            notes.extend(_annotations(page, budget))
        notes.extend(_fields(reader, budget))
        files = []
        for name, contents in reader.attachments.items():
            notes.append(str(name))
            for content in contents:
                budget.spend(len(content))
                files.append(content)
    except ExtractError:
        raise
    except Exception as e:  # pypdf raises many types on a malformed file: all mean unreadable
        raise ExtractError("corrupt") from e
    return Pdf("\n".join(pages), "\n".join(n for n in notes if n.strip()), files)


def _annotations(page: PageObject, budget: Budget) -> list[str]:
    """Text of a page's annotations (sticky notes, free text, markup pop-ups): contents, title
    (the author field) and rich-text contents."""
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
