"""What detection hands on: a :class:`Finding` per identifier, never the identifier itself.

A finding carries a keyed hash of the canonical value (:func:`keyed_hash`, the HMAC key is
the scanner's), its masked form, the line it sits on (a record), a confidence (the detector's
base, ``medium`` or ``low`` for weak shapes and numbers glued to ASCII letters such as
``SF1234...``, one level higher when one of its context words lies within the window) and
where it is in the text as written (``start``, ``end``).
"""

from __future__ import annotations

import hmac
from typing import NamedTuple

from dlp_addon.detect.kinds import Detector


class Finding(NamedTuple):
    """A validated identifier. ``key`` is an HMAC of the canonical value: what "distinct"
    counts, safe to store; ``masked`` is what people see. The raw value is not kept.
    ``start``/``end``: where it is in the scanned text, in characters of the text as given
    (before folding), for masking it in place (:func:`dlp_addon.detect.redact.redact`).
    (A NamedTuple: made thousands of times per large message, at a third of a dataclass's cost.)"""

    detector: str
    key: str
    masked: str
    location: str
    line: int
    confidence: str
    start: int = -1
    end: int = -1

    @property
    def record(self) -> tuple[str, int]:
        return (self.location, self.line)


class ScanTimeout(TimeoutError):
    """The deadline passed; ``partial`` holds the findings of what was scanned before."""

    def __init__(self, partial: list[Finding]) -> None:
        super().__init__("scan deadline passed")
        self.partial = partial


def keyed_hash(hmac_key: bytes, detector: str, value: str) -> str:
    """The keyed hash that stands for ``value`` wherever a value would be stored."""
    return hmac.digest(hmac_key, f"{detector}:{value}".encode(), "sha256").hex()[:24]


# A finding before it becomes a Finding: byte offset, detector, keyed hash, masked, base
# confidence, byte offset of its end.
Found = tuple[int, Detector, str, str, str, int]
