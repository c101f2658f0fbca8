"""Secrets the admin keeps in files (the HMAC key, the admin API's token): read, checked, and
any problem turned into an ``OptionsError`` that names the option, never the secret."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import exceptions

MIN_SECRET = 16


def read_secret(path: str, option: str, too_short: str) -> bytes:
    """The stripped content of ``path``, the file ``option`` names; ``too_short`` is the error
    for fewer than :data:`MIN_SECRET` bytes."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as e:
        raise exceptions.OptionsError(f"cannot read {option}: {e.strerror}") from e
    if len(secret) < MIN_SECRET:
        raise exceptions.OptionsError(too_short)
    return secret
