"""Numbers in text: digit runs with single separators, and the candidates they may hold.

People write ``110105 19491231 002X``, ``138-0013-8000``, ``6222 0212 3456 7890 128`` or one long
run. A token is a maximal run of digit groups joined by single separators (space, dash, dot,
slash), optionally ending in ``X``. A candidate is the concatenation of one or more adjacent
groups; it may start only where a group starts and end only where a group ends, so no
candidate ever cuts a written number in two. Work is per token, not per character: text
without long numbers costs one regex search.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

TOKEN = re.compile(rb"[0-9]+(?:[ \-./][0-9]+)*[Xx]?")
# Where a number of at least seven digits starts (the shortest identifier has seven).
TOKEN_START = re.compile(rb"(?<![0-9])[0-9](?:[ \-./]?[0-9]){6}")
_SEPARATOR = re.compile(rb"[ \-./]")


class Candidate(NamedTuple):
    digits: bytes  # groups joined, separators removed
    start: int  # byte offset of the first digit
    end: int  # byte offset after the last digit


def candidates(token: bytes, start: int, lengths: frozenset[int]) -> Iterator[Candidate]:
    """Every group-aligned candidate of ``token`` (found at ``start``) with a wanted length."""
    if token.isalnum():  # one group, the common case: one candidate at most
        if len(token) in lengths:
            yield Candidate(token, start, start + len(token))
        return
    groups = _SEPARATOR.split(token)
    offsets = []
    pos = start
    for g in groups:
        offsets.append(pos)
        pos += len(g) + 1
    longest = max(lengths)
    n = len(groups)
    for i in range(n):
        total = 0
        for j in range(i, n):
            total += len(groups[j])
            if total > longest:
                break
            if total in lengths:
                end = offsets[j] + len(groups[j])
                yield Candidate(b"".join(groups[i : j + 1]), offsets[i], end)


_SEP_OPT = "[ \\-./]?"


def spread(pattern: str) -> str:
    """``pattern`` (written for compact candidates) rewritten to also match the number as
    people write it, with an optional separator before every character. Used as a prefilter
    expression, it lets the single pass report only numbers shaped like an identifier."""
    import re._constants as c  # type: ignore[import-not-found]
    import re._parser as p  # type: ignore[import-not-found]

    def klass(items: list[tuple[Any, Any]]) -> str:
        out = []
        for op, av in items:
            if op is c.NEGATE:
                out.append("^")
            elif op is c.LITERAL:
                out.append(_esc(av))
            elif op is c.RANGE:
                out.append(f"{_esc(av[0])}-{_esc(av[1])}")
            elif op is c.CATEGORY and av is c.CATEGORY_DIGIT:
                out.append("0-9")
            else:
                raise ValueError(f"unsupported in a numeric pattern: {op}")
        return "[" + "".join(out) + "]"

    def emit(seq: Any) -> str:
        out = []
        for op, av in seq:
            if op is c.LITERAL:
                out.append(_SEP_OPT + _esc(av))
            elif op is c.IN:
                out.append(_SEP_OPT + klass(av))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                lo, hi, sub = av
                hi_s = "" if hi is c.MAXREPEAT else str(hi)
                quant = f"{{{lo}}}" if lo == hi else f"{{{lo},{hi_s}}}"
                out.append(f"(?:{emit(sub)}){quant}")
            elif op is c.SUBPATTERN:
                out.append(f"(?:{emit(av[3])})")
            elif op is c.BRANCH:
                out.append("(?:" + "|".join(emit(b) for b in av[1]) + ")")
            else:
                raise ValueError(f"unsupported in a numeric pattern: {op}")
        return "".join(out)

    return emit(p.parse(pattern))


def _esc(code: int) -> str:
    ch = chr(code)
    return ch if ch.isalnum() else f"\\x{code:02x}"
