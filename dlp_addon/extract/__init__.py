"""Extraction: request bodies and WebSocket messages -> text parts to scan.

Nothing here trusts a name or a Content-Type for what a file *is*; bodies are decoded with
size bounds, and whatever cannot be read is reported as *unscannable* with a bounded reason,
so that the policy can fail closed on it.
"""

from dlp_addon.extract.limits import Limits
from dlp_addon.extract.message import (
    Attachment,
    Extraction,
    HttpInput,
    Part,
    extract_http,
    extract_ws,
)

__all__ = ["Attachment", "Extraction", "HttpInput", "Limits", "Part", "extract_http", "extract_ws"]
