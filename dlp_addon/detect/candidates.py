"""Numbers in text: digit runs with separators, and the candidates they may hold.

People write ``110105 19491231 002X``, ``138-0013-8000``, ``6222 0212 3456 7890 128`` or one long
run; Excel's 分列 and Find/Replace give ``110105\t19491231\t002X``, ``138、0013、8000`` or
``310104 19650414 144 X``. A token is a maximal run of digit groups joined by separators, with
at least seven digits, optionally ending in ``X`` (right after the digits, or after one
separator when nothing alphanumeric follows it). A separator is *strict* (one space, dash, dot
or slash) or *loose* (one to three of those or tab, comma, semicolon, underscore, bar, CR, LF,
、, ，, ；, at most one line break). A candidate is the concatenation of one or more adjacent
groups; it may start only where a group starts and end only where a group ends, so no candidate
ever cuts a written number in two. Joined across a loose separator, it is a candidate only for
detectors with ``groupings`` (see ``NumericDetector.groupings``).

This is the pure-Python reference (:func:`find_python`) for what ``_numscan.c`` does in its
one pass; the :class:`~dlp_addon.detect.plan.Plan` says which candidates are worth keeping.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import NamedTuple

from dlp_addon.detect.checksums import mod11_2_check
from dlp_addon.detect.dfa import MIN_LENGTH, TOKEN_SYMBOLS
from dlp_addon.detect.kinds import Groupings
from dlp_addon.detect.plan import Plan

# One character of a loose separator other than a line break, and a loose run: one to three
# of them with at most one line break.
_LOOSE_CHAR = rb"(?:[ \t\-./,;_|\r]|\xe3\x80\x81|\xef\xbc\x8c|\xef\xbc\x9b)"
_LOOSE_RUN = rb"(?:N{1,3}|\nN{0,2}|N\nN?|NN\n)".replace(b"N", _LOOSE_CHAR)
TOKEN = re.compile(
    rb"[0-9]+(?:" + _LOOSE_RUN + rb"[0-9]+)*(?:[Xx]|" + _LOOSE_RUN + rb"[Xx](?![0-9A-Za-z]))?"
)
_STRICT_TOKEN = re.compile(rb"[0-9]+(?:[ \-./][0-9]+)*(?:[Xx]|[ \-./][Xx](?![0-9A-Za-z]))?")
_GROUP = re.compile(rb"[0-9]+[Xx]?|[Xx]")
_LAST_DIGITS = re.compile(rb"[0-9]+(?=[^0-9]*$)")
_DIGIT = frozenset(b"0123456789")
_ID_DIGITS = 17  # an X after a separator ends a token of at least an ID's 17 digits only
_STRICT_SEPARATORS = frozenset((b" ", b"-", b".", b"/"))
_ASCII_LETTER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Candidate(NamedTuple):
    token_start: int  # byte offset of the token the candidate comes from
    start: int  # byte offset of its first digit
    end: int  # byte offset after its last character
    digits: bytes  # groups joined, separators removed
    glued: bool  # touches an ASCII letter (``SF1234...``): a reference, not a person
    shape: tuple[int, ...] = ()  # its groups' lengths
    loose: bool = False  # joined across a loose separator
    # A reversible edit of a resident ID (``digits``: the ID it stands for), unless ``unless``
    # is shaped like an ID as it is: for the edit detector only, low confidence.
    edit: bool = False
    unless: bytes = b""


def grouping_level(groupings: Groupings, shape: tuple[int, ...], loose: bool) -> str | None:
    """What a detector's ``groupings`` make of a candidate of this shape: ``None`` (not a
    candidate for it), ``"low"``, or ``"base"``."""
    if groupings is None:
        return None if loose else "base"
    if groupings == "any" or len(shape) < 2 or shape in groupings:
        return "base"
    return None if loose else "low"


def find_python(
    data: bytes, plan: Plan, loose: bool = True, edits: bool = False
) -> list[Candidate]:
    """Admitted candidates of every token in ``data`` (UTF-8, already folded), in order: the
    pure-Python reference for the C pass. ``loose``: join across loose separators too (some
    detector has groupings); ``edits``: with the reversible edits of resident IDs."""
    out: list[Candidate] = []
    lengths = plan.lengths
    for token in (TOKEN if loose else _STRICT_TOKEN).finditer(data):
        start, end = token.span()
        ndigits = sum(c in b"0123456789" for c in token.group())
        if (
            ndigits < _ID_DIGITS
            and data[end - 1 : end] in (b"X", b"x")
            and data[end - 2] not in _DIGIT
        ):
            end = _LAST_DIGITS.search(data, start, end).end()  # type: ignore[union-attr]
        if ndigits < MIN_LENGTH:
            continue
        before = start > 0 and data[start - 1] in _ASCII_LETTER
        after = end < len(data) and data[end] in _ASCII_LETTER
        for cand in _joined(data, start, end, lengths, (before, after)):
            if plan.admits(cand.digits):
                out.append(cand)
        if edits:
            for group in _GROUP.finditer(data, start, end):
                edit = _edits(data, group.span())
                if edit is not None:
                    at, digits, unless = edit
                    out.append(
                        Candidate(start, at, group.end(), digits, False, (18,), False, True, unless)
                    )
    return out


def _joined(
    data: bytes, start: int, end: int, lengths: frozenset[int], glued: tuple[bool, bool]
) -> Iterator[Candidate]:
    """Every group-aligned join of the groups of the token ``data[start:end]`` with a wanted
    length; ``glued``: an ASCII letter before it, after it."""
    spans = [m.span() for m in _GROUP.finditer(data, start, end)]
    # Each group's run of strict joins, and whether the separator before it is loose.
    runs, loose_before = [0], [False]
    for (_, prev_end), (here, _) in itertools.pairwise(spans):
        is_loose = data[prev_end:here] not in _STRICT_SEPARATORS
        loose_before.append(is_loose)
        runs.append(runs[-1] + is_loose)
    longest = max(lengths, default=0)
    # With an X after a separator, the digit group before it is never a candidate's last.
    x_before = (
        len(spans) - 2 if spans[-1][1] - spans[-1][0] == 1 and data[spans[-1][0]] in b"Xx" else -1
    )
    for i in range(len(spans)):
        total, loose = 0, False
        for j in range(i, len(spans)):
            total += spans[j][1] - spans[j][0]
            if total > longest:
                break
            loose = loose or (j > i and loose_before[j])
            if total in lengths and j != x_before:
                shape = tuple(b - a for a, b in spans[i : j + 1])
                digits = b"".join(data[a:b] for a, b in spans[i : j + 1])
                stuck = (runs[i] == 0 and glued[0]) or (runs[j] == runs[-1] and glued[1])
                yield Candidate(start, spans[i][0], spans[j][1], digits, stuck, shape, loose)


# One ASCII letter or digit, as a one-byte slice (b"" at either end of the data is none).
_ALNUM_BYTES = frozenset(bytes([c]) for c in TOKEN_SYMBOLS)


def id_check(first17: bytes) -> bytes:
    """The GB 11643 check character of 17 digits."""
    return mod11_2_check(first17).encode()


def _edits(data: bytes, group: tuple[int, int]) -> tuple[int, bytes, bytes] | None:
    """``(start, candidate, unless)`` of a reversible edit of a resident ID in one digit group
    (the pure-Python twin of ``_numscan``'s ``edits``): one letter or digit glued in front,
    the check character dropped, the old 15-digit form, the characters reversed.
    ``candidate`` is the 18-character ID to validate, unless ``unless`` (for a reversed run:
    the run itself) is shaped like an ID as it stands (``validators.id_shaped``: a mistyped
    ID is not read backwards)."""
    start, end = group
    run = data[start:end]
    if not 15 <= len(run) <= 19 or len(run) == 16 or data[end : end + 1] in _ALNUM_BYTES:
        return None
    free_before = data[start - 1 : start] not in _ALNUM_BYTES if start else True
    xend = run[-1:] in (b"X", b"x")
    if len(run) == 19 and free_before:
        return start + 1, run[1:], b""
    if xend:
        return None
    if len(run) == 17 and free_before:
        return start, run + id_check(run), b""
    if len(run) == 17 and data[start - 1 : start] in (b"X", b"x"):
        if start == 1 or data[start - 2 : start - 1] not in _ALNUM_BYTES:
            return start - 1, run[::-1] + b"X", b""
        return None
    if len(run) == 18 and free_before:
        return start, run[::-1], run
    if len(run) == 15 and free_before:
        head = run[:6] + b"19" + run[6:]
        return start, head + id_check(head), b""
    return None
