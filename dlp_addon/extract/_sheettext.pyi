"""Types of the compiled sheet-text writer (``_sheettext.c``); its Python twin is
``spreadsheet._text_py``."""

from collections.abc import Callable

def text(rows: list[list[object]], cell: Callable[[object], str], /) -> str: ...
