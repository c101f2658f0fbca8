"""Types of the compiled run-window pass (``_runscan.c``); its Python twin is
``runs.windows_py``."""

def windows(
    data: bytes, /
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]: ...
