"""Types of the compiled hot path (``_numscan.c``); its Python twin is ``candidates``,
``plan`` and ``validators``."""

from dlp_addon.detect.findings import Finding

def compile(blob: bytes, key: bytes, finding: type, levels: tuple[str, str, str], /) -> object: ...
def findings(
    data: bytes,
    plan: object,
    location: str,
    first_line: int,
    near: list[list[int] | None],
    first_char: int,
    /,
) -> (
    tuple[
        list[Finding],
        list[tuple[int, int, int, int]],
        list[tuple[int, int, int, bytes, bool, int, bytes, bool]],
    ]
    | None
): ...
def char_offsets(data: bytes, positions: list[int], /) -> list[int]: ...
def sha256_hex(data: bytes, /) -> str: ...
def digit_hint(data: bytes, numerals: bytes, separators: bytes, prefixes: bytes, /) -> bool: ...
def checksum_ok(kind: str, data: bytes, /) -> bool: ...
