"""Types of the compiled hot path (``_numscan.c``); ``numbers.py`` holds its Python twin."""

def compile(blob: bytes, key: bytes, /) -> object: ...
def findings(
    data: bytes, plan: object, /
) -> (
    tuple[list[tuple[int, int, str, str, bool]], list[tuple[int, int, int, bytes, bool, int]]]
    | None
): ...
def sha256_hex(data: bytes, /) -> str: ...
