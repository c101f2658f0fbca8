"""Numbers in text: digit runs with single separators, and the candidates they may hold.

People write ``110105 19491231 002X``, ``138-0013-8000``, ``6222 0212 3456 7890 128`` or one long
run. A token is a maximal run of digit groups joined by single separators (space, dash, dot,
slash), optionally ending in ``X``, with at least seven digits. A candidate is the concatenation
of one or more adjacent groups; it may start only where a group starts and end only where a
group ends, so no candidate ever cuts a written number in two.

A :class:`Plan`, made once per detector set, says which candidates are worth Python's time: a
length some numeric detector wants, first three digits its pattern allows, and its checksum
family (ISO 7064 mod 11-2 for resident IDs, Luhn for cards) satisfied. These are necessary
conditions only; the detector's own pattern and validator still decide. The work is done by
the C module ``_numscan`` when it is built (``scripts/setup`` builds it), otherwise by the
pure-Python twin below, which is the reference the C code is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from dlp_addon.detect import validators

if TYPE_CHECKING:
    from dlp_addon.detect.definitions import Detector

try:
    from dlp_addon.detect import _numscan
except ImportError:  # pragma: no cover - scripts/setup builds it; the twin keeps us correct
    _numscan = None  # type: ignore[assignment]

TOKEN = re.compile(rb"[0-9]+(?:[ \-./][0-9]+)*[Xx]?")
# Where a token of at least seven digits starts.
TOKEN_START = re.compile(rb"(?<![0-9])[0-9](?:[ \-./]?[0-9]){6}")
_SEPARATOR = re.compile(rb"[ \-./]")
_ASCII_LETTER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

CHECK_NONE, CHECK_MOD11_2, CHECK_LUHN = 0, 1, 2
# Validators whose checksum is a necessary condition the plan may test early.
_CHECKS: dict[validators.Validator, int] = {
    validators.gb11643: CHECK_MOD11_2,
    validators.luhn: CHECK_LUHN,
    validators.luhn_card: CHECK_LUHN,
}
_MIN_LENGTH, _MAX_LENGTH = 7, 64


class Candidate(NamedTuple):
    token_start: int  # byte offset of the token the candidate comes from
    start: int  # byte offset of its first digit
    end: int  # byte offset after its last character
    digits: bytes  # groups joined, separators removed
    glued: bool  # the token touches an ASCII letter (``SF1234...``): a reference, not a person


@dataclass(frozen=True)
class Plan:
    """Which candidates to hand to the detectors; built from the numeric detectors."""

    entries: tuple[tuple[int, int, frozenset[int]], ...]  # (length, check, first-3-digit prefixes)
    blob: bytes  # the same, laid out for _numscan

    @property
    def lengths(self) -> frozenset[int]:
        return frozenset(length for length, _, _ in self.entries)

    @classmethod
    def for_detectors(cls, detectors: Iterable[Detector]) -> Plan:
        merged: dict[tuple[int, int], set[int]] = {}
        for det in detectors:
            check = _CHECKS.get(det.validate, CHECK_NONE)
            reachable = _prefixes_by_length(det.numeric.pattern)
            accepts = validators.ACCEPTS.get(det.validate)
            if accepts is not None:
                allowed = _prefixes_by_length(accepts.encode())
                reachable = {n: p & allowed.get(n, set()) for n, p in reachable.items()}
            for length in det.lengths:
                prefixes = reachable.get(length, set())
                merged.setdefault((length, check), set()).update(prefixes)
        entries = tuple(
            (length, check, frozenset(prefixes))
            for (length, check), prefixes in sorted(merged.items())
        )
        blob = b"".join(
            bytes([length, check]) + _bitmap(prefixes, 1000) for length, check, prefixes in entries
        )
        return cls(entries, blob)

    def admits(self, digits: bytes) -> bool:
        """Whether some entry's length, prefix and checksum fit ``digits`` (Python twin)."""
        prefix = int(digits[:3])
        for length, check, prefixes in self.entries:
            if length != len(digits) or prefix not in prefixes:
                continue
            if check == CHECK_NONE:
                return True
            if check == CHECK_MOD11_2 and _mod11_2_ok(digits):
                return True
            if check == CHECK_LUHN and _luhn_ok(digits):
                return True
        return False


_ALPHABET = frozenset(b"0123456789Xx")  # what a candidate is made of


def _prefixes_by_length(pattern: bytes) -> dict[int, set[int]]:
    """For each length, the first three digits of the strings of that length ``pattern``
    full-matches: exact, from the pattern's syntax tree (``0086...`` is 15 digits, so a
    13-digit timestamp starting ``17`` is no mobile). Numeric patterns use literals,
    classes, repeats, groups and alternation only (definitions checks this at load)."""
    import re._constants as c  # type: ignore[import-not-found]
    import re._parser as sre  # type: ignore[import-not-found]

    State = tuple[bytes, int]  # (first characters, up to three; length so far)

    def chars(op: object, av: object) -> frozenset[int]:
        if op is c.LITERAL:
            return frozenset({int(av)}) & _ALPHABET  # type: ignore[call-overload]
        out: set[int] = set()
        negate = False
        for item_op, item in av:  # type: ignore[attr-defined]
            if item_op is c.NEGATE:
                negate = True
            elif item_op is c.LITERAL:
                out.add(item)
            elif item_op is c.RANGE:
                out.update(range(item[0], item[1] + 1))
            elif item_op is c.CATEGORY and item is c.CATEGORY_DIGIT:
                out.update(b"0123456789")
            else:
                raise ValueError(f"unsupported in a numeric pattern: {item_op}")
        return _ALPHABET - out if negate else frozenset(out) & _ALPHABET

    def step(states: set[State], allowed: frozenset[int]) -> set[State]:
        out: set[State] = set()
        for head, length in states:
            if length >= _MAX_LENGTH:
                continue
            if len(head) < 3:
                out.update((head + bytes([ch]), length + 1) for ch in allowed)
            elif allowed:
                out.add((head, length + 1))
        return out

    def walk(seq: object, states: set[State]) -> set[State]:
        for op, av in seq:  # type: ignore[attr-defined]
            if op in (c.LITERAL, c.IN):
                states = step(states, chars(op, av))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                lo, hi, sub = av
                result: set[State] = set()
                current = states
                for k in range(min(hi, _MAX_LENGTH) + 1):
                    if k >= lo:
                        result |= current
                    if k == hi or not current:
                        break
                    current = walk(sub, current)
                states = result
            elif op is c.SUBPATTERN:
                states = walk(av[-1], states)
            elif op is c.BRANCH:
                states = set().union(*(walk(branch, states) for branch in av[1]))
            else:
                raise ValueError(f"unsupported in a numeric pattern: {op}")
        return states

    out: dict[int, set[int]] = {}
    for head, length in walk(sre.parse(pattern.decode("ascii")), {(b"", 0)}):
        if len(head) == 3 and head.isdigit():
            out.setdefault(length, set()).add(int(head))
    return out


def numeric_problem(pattern: str, lengths: Iterable[int]) -> str | None:
    """Why a numeric detector's pattern or lengths cannot be used, or ``None``."""
    bad = sorted(n for n in lengths if not _MIN_LENGTH <= n <= _MAX_LENGTH)
    if bad:
        return f"lengths must be {_MIN_LENGTH} to {_MAX_LENGTH}, not {bad}"
    try:
        reachable = _prefixes_by_length(pattern.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        return f"numeric pattern: {e} (use digits, classes, repeats, groups and |)"
    if not any(reachable.get(n) for n in lengths):
        return "the numeric pattern matches no number of the given lengths"
    return None


def _bitmap(members: Iterable[int], size: int) -> bytes:
    bits = bytearray((size + 7) // 8)
    for m in members:
        bits[m // 8] |= 1 << (m % 8)
    return bytes(bits)


def _mod11_2_ok(d: bytes) -> bool:
    body = d[:-1]
    if not body.isdigit():
        return False
    total = sum((c - 48) * pow(2, len(body) - i, 11) for i, c in enumerate(body))
    check = (12 - total % 11) % 11
    return d[-1:] in (b"X", b"x") if check == 10 else d[-1:] == b"%d" % check


def _luhn_ok(d: bytes) -> bool:
    if not d.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(d)):
        v = (c - 48) * (2 if i % 2 else 1)
        total += v - 9 if v > 9 else v
    return total % 10 == 0


def find(data: bytes, plan: Plan) -> list[tuple[int, int, int, bytes, bool]]:
    """Admitted candidates of every token in ``data`` (UTF-8, already folded), in order, as
    plain tuples in :class:`Candidate`'s field order."""
    if _numscan is not None:
        return _numscan.candidates(data, plan.blob)
    return list(find_python(data, plan))


def find_python(data: bytes, plan: Plan) -> list[Candidate]:
    """:func:`find` in pure Python: the reference for the C code."""
    out: list[Candidate] = []
    lengths = plan.lengths
    done_until = 0
    for m in TOKEN_START.finditer(data):
        start = m.start()
        if start < done_until:
            continue
        token = TOKEN.match(data, start)
        assert token is not None  # TOKEN_START matched here
        end = done_until = token.end()
        glued = (start > 0 and data[start - 1] in _ASCII_LETTER) or (
            end < len(data) and data[end] in _ASCII_LETTER
        )
        for cand_start, cand_end, digits in _joined(token.group(), start, lengths):
            if plan.admits(digits):
                out.append(Candidate(start, cand_start, cand_end, digits, glued))
    return out


def _joined(token: bytes, start: int, lengths: frozenset[int]) -> Iterator[tuple[int, int, bytes]]:
    """Every group-aligned join of ``token``'s groups with a wanted length."""
    groups = _SEPARATOR.split(token)
    offsets = []
    pos = start
    for g in groups:
        offsets.append(pos)
        pos += len(g) + 1
    longest = max(lengths, default=0)
    for i in range(len(groups)):
        total = 0
        for j in range(i, len(groups)):
            total += len(groups[j])
            if total > longest:
                break
            if total in lengths:
                yield offsets[i], offsets[j] + len(groups[j]), b"".join(groups[i : j + 1])


COMPILED = _numscan is not None
