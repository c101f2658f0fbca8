"""The kinds of field a customer table may hold, and how a value of each becomes the keyed hash
that stands for it, in the index and in a message alike.

- ``id`` and ``mobile`` are hashed exactly as the scanner hashes its findings (HMAC-SHA256 of
  ``detector:canonical value`` with the deployment's key, :meth:`Scanner.key`): a message's
  resident IDs and mobiles are looked up by the keys the scanner already computed, however they
  were written (full-width, split, +86), and no raw value is needed after the scan.
- ``policy`` (policy numbers) have the format the admin declares when indexing; found in text by
  that format.
- ``name``, ``address``, ``plate``: corroborating text, compared as normalised substrings near a
  primary element (letters, digits and Han characters only, full-width folded, case folded).

Hashes: primary values 8 bytes, corroborating ones 4 (a 1 in 4 billion chance that another
value near a matched primary passes for the row's).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlp_addon.detect.validators import cn_mobile, gb11643

KINDS = ("policy", "id", "mobile", "name", "address", "plate")
PRIMARY_KINDS = ("policy", "id", "mobile")
# Found by the scanner: the detector whose keyed hash stands for the value.
SCANNER_DETECTOR = {"id": "cn_resident_id", "mobile": "cn_mobile"}
# Found as substrings of the text near a primary element: the row keeps their length.
SEARCHED = ("name", "address", "plate")
MAX_SEARCHED_CHARS = 255

# Full-width ASCII and the ideographic space, one character for one (offsets are kept).
_FOLD = {0x3000: 0x20, **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}}
_FOLDED = re.compile("[\u3000\uff01-\uff5e]")  # translate() is slow: only when needed
_NOT_WORD = re.compile(r"[\W_]+")
WORD = re.compile(r"[^\W_]+")  # what clean() keeps
_LIMITS = {"name": (2, 64), "address": (4, MAX_SEARCHED_CHARS), "plate": (6, 10)}


def fold(text: str) -> str:
    """Full-width letters and digits as ASCII, one character for one."""
    if text.isascii() or not _FOLDED.search(text):
        return text
    return text.translate(_FOLD)


def clean(text: str) -> str:
    """A corroborating value as compared: letters, digits and Han characters, case folded."""
    return _NOT_WORD.sub("", fold(text)).casefold()


@dataclass(frozen=True)
class Keys:
    """The hash functions of one deployment: the scanner's HMAC key and one derived from it for
    the index's own values (domain separated, so an index hash is never a scanner key)."""

    hmac_key: bytes

    @property
    def edm_key(self) -> bytes:
        return hmac.digest(self.hmac_key, b"dlp-edm v1", "sha256")

    @property
    def check(self) -> str:
        """Identifies the key without revealing it: stored in the index, compared at load."""
        return hmac.digest(self.hmac_key, b"dlp-edm key check", "sha256")[:8].hex()

    @functools.cached_property
    def _pads(self) -> tuple[Any, Any]:
        """HMAC-SHA256's inner and outer states after the key (RFC 2104), made once: the
        indexer hashes every ID and mobile, and ``hmac.digest`` redoes them each time."""
        key = self.hmac_key if len(self.hmac_key) <= 64 else hashlib.sha256(self.hmac_key).digest()
        key = key.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        return inner, outer

    def scanner_key(self, kind: str, canonical: str) -> int:
        """The first 8 bytes of the scanner's finding key for this value (``Scanner.key``:
        HMAC-SHA256 of ``detector:value``), as an integer."""
        inner, outer = self._pads
        i = inner.copy()
        i.update(f"{SCANNER_DETECTOR[kind]}:{canonical}".encode())
        o = outer.copy()
        o.update(i.digest())
        return int.from_bytes(o.digest()[:8], "big")

    def hasher(self, kind: str, size: int) -> Callable[[str], int]:
        """``value -> int`` for the index's own kinds: keyed BLAKE2b of ``size`` bytes."""
        key, person = self.edm_key, kind.encode()
        blake = hashlib.blake2b

        def digest(value: str) -> int:
            h = blake(value.encode(), key=key, person=person, digest_size=size).digest()
            return int.from_bytes(h, "big") or 1  # 0 means "no value" in a row

        return digest


def finding_key(key_hex: str) -> int:
    """A scanner finding's key (hex) as the index's primary hash."""
    return int(key_hex[:16], 16)


class Normaliser:
    """``kind -> value -> canonical`` (``""`` for an empty cell, ``None`` for a malformed one)."""

    def __init__(self, policy_format: str | None) -> None:
        self.policy_format = re.compile(policy_format, re.IGNORECASE) if policy_format else None

    def __call__(self, kind: str, raw: str) -> str | None:
        value = fold(raw).strip()
        if not value:
            return ""
        if kind == "id":
            return gb11643(value)
        if kind == "mobile":
            return cn_mobile(value)
        if kind == "policy":
            return policy_canonical(self.policy_format, value)
        cleaned = _NOT_WORD.sub("", value).casefold()
        low, high = _LIMITS[kind]
        return cleaned if low <= len(cleaned) <= high else None


def policy_canonical(pattern: re.Pattern[str] | None, value: str) -> str | None:
    """A policy number as written (folded) when the declared format matches all of it:
    upper case, spaces dropped."""
    value = value.upper()
    if pattern is None or pattern.fullmatch(value) is None:
        return None
    return "".join(value.split())


def policy_finder(policy_format: str) -> str:
    """The declared format as a search: not inside a longer run of letters and digits."""
    return f"(?<![0-9A-Za-z])(?:{policy_format})(?![0-9A-Za-z])"


def primary_hash(keys: Keys, kind: str) -> Callable[[str], int]:
    """``canonical -> 8-byte hash`` of a primary value, as the index's keys hold it."""
    if kind in SCANNER_DETECTOR:
        return lambda value: keys.scanner_key(kind, value)
    return keys.hasher(kind, 8)


def stored_hash(keys: Keys, kind: str) -> Callable[[str], int]:
    """``canonical -> 4-byte hash`` of a corroborating value, as a row holds it."""
    if kind in SEARCHED:
        return keys.hasher(kind, 4)
    full = primary_hash(keys, kind)
    return lambda value: (full(value) >> 32) or 1
