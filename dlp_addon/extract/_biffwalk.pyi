"""Types of the compiled BIFF record walk (``_biffwalk.c``); its Python twin is
``biff._select_py``."""

def select(stream: bytes, /) -> list[tuple[int, int, bytes]]: ...
