"""Content-Encoding decoding with a hard bound on the decoded size.

mitmproxy's own decoder has no size cap and hands back raw bytes on a stacked encoding; here
every layer is undone in order (``gzip, br`` means br was applied last, so it is undone first)
and decompression stops as soon as the output would pass ``limit``.
"""

from __future__ import annotations

import zlib

import brotli

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.14
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

from dlp_addon.errors import ExtractError

_CHUNK = 64 * 1024


def _zlib(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray()
    buf = data
    while buf:
        out += d.decompress(buf, _CHUNK)
        if len(out) > limit:
            raise ExtractError("too_large")
        buf = d.unconsumed_tail
    out += d.flush()
    if len(out) > limit:
        raise ExtractError("too_large")
    if not d.eof:
        raise ExtractError("bad_encoding")
    if d.unused_data:  # concatenated gzip members
        out += _zlib(d.unused_data, wbits, limit - len(out))
    return bytes(out)


def inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """zlib (``wbits`` 15), raw deflate (-15) or gzip (31) data inflated, at most ``limit``
    bytes (``ExtractError("too_large")`` past it); ``zlib.error`` or ``bad_encoding`` when it
    is not such data."""
    return _zlib(data, wbits, limit)


def _brotli(data: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray()
    for i in range(0, len(data), _CHUNK):
        out += d.process(data[i : i + _CHUNK])
        if len(out) > limit:
            raise ExtractError("too_large")
    if not d.is_finished():
        raise ExtractError("bad_encoding")
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    out = bytearray()
    while data:
        d = zstd.ZstdDecompressor()
        out += d.decompress(data, max_length=limit - len(out) + 1)
        if len(out) > limit:
            raise ExtractError("too_large")
        if not d.eof:
            raise ExtractError("bad_encoding")
        data = d.unused_data  # further frames
    return bytes(out)


def decode_content(data: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo every layer of ``content_encoding``; ``ExtractError`` names why it could not."""
    layers = [t.strip().lower() for t in content_encoding.split(",") if t.strip()]
    for layer in reversed(layers):
        try:
            if layer in ("identity", "none"):
                continue
            if layer in ("gzip", "x-gzip"):
                data = _zlib(data, 16 + zlib.MAX_WBITS, limit)
            elif layer == "deflate":
                # Servers send both zlib-wrapped and raw deflate under this name.
                try:
                    data = _zlib(data, zlib.MAX_WBITS, limit)
                except zlib.error:
                    data = _zlib(data, -zlib.MAX_WBITS, limit)
            elif layer == "br":
                data = _brotli(data, limit)
            elif layer == "zstd":
                data = _zstd(data, limit)
            else:
                raise ExtractError("unknown_encoding")
        except (zlib.error, brotli.error, zstd.ZstdError) as e:
            raise ExtractError("bad_encoding") from e
    return data
