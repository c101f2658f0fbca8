"""Text of documents: PDF (pypdf) and Word (the XML of a docx). Bounded by the request's budget;
an encrypted or unreadable document is an ``ExtractError`` with its reason."""

from __future__ import annotations

import io
import logging
import re

from pypdf import PdfReader

from dlp_addon.errors import ExtractError
from dlp_addon.extract.limits import Budget

_MAX_PAGES = 2000
_XML_TAG = re.compile(r"<[^>]{0,2000}>")

# pypdf logs warnings about odd files; they are about the file, not about us.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def pdf_text(data: bytes, budget: Budget) -> str:
    """The text of every page, pages as paragraphs."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractError("encrypted")
        pages = []
        for i, page in enumerate(reader.pages):
            if i >= _MAX_PAGES:
                raise ExtractError("too_large")
            text = page.extract_text() or ""
            budget.spend(len(text))
            pages.append(text)
    except ExtractError:
        raise
    except Exception as e:  # pypdf raises many types on a malformed file: all mean unreadable
        raise ExtractError("corrupt") from e
    return "\n".join(pages)


def docx_text(document_xml: bytes) -> str:
    """Text of a Word document's XML, paragraphs as lines; tags dropped, entities not
    expanded (an entity bomb stays a few bytes of text)."""
    text = document_xml.decode("utf-8", "replace").replace("</w:p>", "\n")
    return _XML_TAG.sub(" ", text)
