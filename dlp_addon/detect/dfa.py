"""Patterns as DFAs: what the C pass full-matches instead of a regex.

A numeric detector's pattern (digits, ``X``) and a token detector's body (ASCII letters and
digits) use literals, classes, repeats, groups and alternation only; :func:`dfa` turns such a
pattern into a table ``_numscan`` walks one byte at a time, and :func:`dfa_fullmatch` does the
same in Python (tests hold both against ``re``). The first three digits each length of number
can start with, read off the DFA, let the plan drop impossible candidates early; a numeric
pattern that cannot become a DFA is a policy error (:func:`numeric_problem`).
"""

from __future__ import annotations

import functools
import re
import re._constants as _c  # type: ignore[import-not-found]
import re._parser as _sre  # type: ignore[import-not-found]
from collections.abc import Iterable

from dlp_addon.detect.validator_table import MAX_LENGTH

MIN_LENGTH = 7  # the shortest number a numeric detector may look for
NUMERIC_SYMBOLS = b"0123456789Xx"  # a DFA's alphabets, in _numscan's symbol order
TOKEN_SYMBOLS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NFA_LIMIT, _DFA_LIMIT = 50_000, 4096
Machine = tuple[list[list[int]], list[bool]]


def _charset(op: object, av: object) -> tuple[frozenset[int], bool]:
    """What one literal or class names, and whether it is negated (``[^...]``)."""
    if op is _c.LITERAL:
        return frozenset({int(av)}), False  # type: ignore[call-overload]
    out: set[int] = set()
    negate = False
    for item_op, item in av:  # type: ignore[attr-defined]
        if item_op is _c.NEGATE:
            negate = True
        elif item_op is _c.LITERAL:
            out.add(item)
        elif item_op is _c.RANGE:
            out.update(range(item[0], item[1] + 1))
        elif item_op is _c.CATEGORY and item is _c.CATEGORY_DIGIT:
            out.update(b"0123456789")
        else:
            raise ValueError(f"unsupported in a numeric pattern: {item_op}")
    return frozenset(out), negate


def prefixes_by_length(pattern: bytes) -> dict[int, set[int]]:
    """For each length, the first three digits of the strings of that length ``pattern``
    full-matches: exact, read off the pattern's DFA (``0086...`` is 15 digits, so a 13-digit
    timestamp starting ``17`` is no mobile). Numeric patterns use literals, classes, repeats,
    groups and alternation only (definitions checks this at load)."""
    machine = dfa(pattern.decode("ascii"))
    if machine is None:
        raise ValueError("too large, or more than literals, classes, repeats, groups and |")
    moves, accepting = machine
    out: dict[int, set[int]] = {}
    level = {(0, b"")}  # (state, first characters up to three)
    for length in range(MAX_LENGTH + 1):
        for state, head in level:
            if accepting[state] and len(head) == 3 and head.isdigit():
                out.setdefault(length, set()).add(int(head))
        level = {
            (target, head if len(head) == 3 else head + NUMERIC_SYMBOLS[sym : sym + 1])
            for state, head in level
            for sym, target in enumerate(moves[state])
            if target >= 0
        }
        if not level:
            break
    return out


def numeric_problem(pattern: str, lengths: Iterable[int]) -> str | None:
    """Why a numeric detector's pattern or lengths cannot be used, or ``None``."""
    bad = sorted(n for n in lengths if not MIN_LENGTH <= n <= MAX_LENGTH)
    if bad:
        return f"lengths must be {MIN_LENGTH} to {MAX_LENGTH}, not {bad}"
    try:
        reachable = prefixes_by_length(pattern.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        return f"numeric pattern: {e} (use digits, classes, repeats, groups and |)"
    if not any(reachable.get(n) for n in lengths):
        return "the numeric pattern matches no number of the given lengths"
    return None


@functools.cache  # a policy load asks for the same patterns several times (read only)
def dfa(pattern: str, symbols: bytes = NUMERIC_SYMBOLS) -> Machine | None:
    """``pattern`` as a DFA over ``symbols``: ``(moves, accepting)``, ``moves[state][i]`` the
    state after ``symbols[i]`` or -1, state 0 the start. With the numeric alphabet it
    full-matches exactly the candidates of up to 64 characters the regex full-matches (a
    class's other characters can never occur in a candidate); with the token alphabet a
    pattern naming any other character, or able to match more than 64, gives ``None``.
    ``None`` too when the pattern is too large or uses more than literals, classes, repeats,
    groups and alternation: the regex in Python decides then."""
    alphabet = frozenset(symbols)
    strict = symbols != NUMERIC_SYMBOLS
    try:
        tree = _sre.parse(pattern)
    except re.error:
        return None
    if tree.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    edges: list[dict[int, set[int]]] = [{}]  # an NFA without empty moves; state 0 the start

    def step(states: frozenset[int], op: object, av: object) -> frozenset[int]:
        named, negate = _charset(op, av)
        if strict and (negate or not named <= alphabet):
            raise ValueError("a character outside the alphabet")
        allowed = alphabet - named if negate else named & alphabet
        if not states or not allowed:
            return frozenset()
        if len(edges) >= _NFA_LIMIT:
            raise ValueError("too large")
        edges.append({})
        target = len(edges) - 1
        for state in states:
            for ch in allowed:
                edges[state].setdefault(symbols.index(ch), set()).add(target)
        return frozenset({target})

    def walk(seq: object, states: frozenset[int]) -> frozenset[int]:
        for op, av in seq:  # type: ignore[attr-defined]
            if op in (_c.LITERAL, _c.IN):
                states = step(states, op, av)
            elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
                lo, hi, sub = av
                if strict and hi > MAX_LENGTH:
                    raise ValueError("may match more than 64")
                result: frozenset[int] = frozenset()
                current = states
                for k in range(min(hi, MAX_LENGTH) + 1):
                    if k >= lo:
                        result |= current
                    if k == hi or not current:
                        break
                    current = walk(sub, current)
                states = result
            elif op is _c.SUBPATTERN:
                states = walk(av[-1], states)
            elif op is _c.BRANCH:
                states = frozenset().union(*(walk(branch, states) for branch in av[1]))
            else:
                raise ValueError(f"unsupported in a numeric pattern: {op}")
        return states

    try:
        final = walk(tree, frozenset({0}))
    except ValueError:
        return None
    index: dict[frozenset[int], int] = {frozenset({0}): 0}
    queue = [frozenset({0})]
    moves: list[list[int]] = []
    accepting: list[bool] = []
    while len(moves) < len(queue):
        current = queue[len(moves)]
        row = []
        for sym in range(len(symbols)):
            target = frozenset().union(*(edges[s].get(sym, ()) for s in current))
            if not target:
                row.append(-1)
                continue
            if target not in index:
                if len(queue) >= _DFA_LIMIT:
                    return None
                index[target] = len(queue)
                queue.append(target)
            row.append(index[target])
        moves.append(row)
        accepting.append(bool(current & final))
    return moves, accepting


def accepted_lengths(machine: Machine) -> frozenset[int] | None:
    """The lengths of the strings ``machine`` accepts, or ``None`` if one exceeds 64."""
    moves, accepting = machine
    level = {0}
    lengths: set[int] = set()
    for depth in range(MAX_LENGTH + 2):
        if not level:
            return frozenset(lengths)
        if depth > MAX_LENGTH:
            return None
        lengths.update(depth for state in level if accepting[state])
        level = {m for state in level for m in moves[state] if m >= 0}
    return frozenset(lengths)  # pragma: no cover - the loop returns


_BEFORE, _AFTER = "(?<![0-9A-Za-z])", "(?![0-9A-Za-z])"


def token_body(pattern: str) -> str | None:
    """``BODY`` of a regex written ``(?<![0-9A-Za-z])BODY(?![0-9A-Za-z])``: it matches whole
    runs of ASCII letters and digits only, so the C pass can full-match each run instead."""
    if not (pattern.startswith(_BEFORE) and pattern.endswith(_AFTER)):
        return None
    try:
        items = list(_sre.parse(pattern))
    except re.error:
        return None
    if len(items) < 3 or items[0][0] is not _c.ASSERT_NOT or items[-1][0] is not _c.ASSERT_NOT:
        return None  # e.g. a top-level | splitting the edges from each other
    return pattern[len(_BEFORE) : -len(_AFTER)]


def dfa_fullmatch(machine: Machine, text: bytes, symbols: bytes = NUMERIC_SYMBOLS) -> bool:
    """What ``_numscan`` does with a DFA, in Python (tests hold the two against ``re``)."""
    moves, accepting = machine
    state = 0
    for ch in text:
        if ch not in symbols:
            return False
        state = moves[state][symbols.index(ch)]
        if state < 0:
            return False
    return accepting[state]
