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
detectors with ``groupings`` (see ``Detector.groupings``).

A :class:`Plan`, made once per detector set, says which candidates are worth checking: a
length some numeric detector wants, first three digits its pattern allows, and its checksum
family (ISO 7064 mod 11-2 for resident IDs, Luhn for cards) satisfied. These are necessary
conditions only; the detector's own pattern and validator still decide.

The C module ``_numscan`` (``scripts/setup`` builds it) does all of it in one pass: each
detector's pattern becomes a DFA (:func:`dfa`), its validator a C twin
(``validators.C_TWINS``), and every identifier comes back hashed and masked
(:func:`compile_findings`). The same pass checks token detectors: regexes that only match whole
runs of ASCII letters and digits (:func:`token_body`). Without the module, the pure-Python
twin below (:func:`find_python`, then the regexes and validators) is used; it is the reference
the C code is tested against.
"""

from __future__ import annotations

import functools
import itertools
import re
import re._constants as _c  # type: ignore[import-not-found]
import re._parser as _sre  # type: ignore[import-not-found]
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from dlp_addon.detect import validators

if TYPE_CHECKING:
    from dlp_addon.detect.definitions import Detector

try:
    from dlp_addon.detect import _numscan
except ImportError:  # pragma: no cover - scripts/setup builds it; the twin keeps us correct
    _numscan = None  # type: ignore[assignment]

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

CHECK_NONE, CHECK_MOD11_2, CHECK_LUHN = 0, 1, 2
# Validators whose checksum is a necessary condition the plan may test early.
_CHECKS: dict[validators.Validator, int] = {
    validators.gb11643: CHECK_MOD11_2,
    validators.luhn: CHECK_LUHN,
    validators.luhn_card: CHECK_LUHN,
}
_MIN_LENGTH, _MAX_LENGTH = 7, 64
_MAX_SHAPE_GROUPS = 8  # as _numscan's MAX_SHAPE_GROUPS


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


def grouping_level(
    groupings: str | tuple[tuple[int, ...], ...] | None, shape: tuple[int, ...], loose: bool
) -> str | None:
    """What a detector's ``groupings`` make of a candidate of this shape: ``None`` (not a
    candidate for it), ``"low"``, or ``"base"``."""
    if groupings is None:
        return None if loose else "base"
    if groupings == "any" or len(shape) < 2 or shape in groupings:
        return "base"
    return None if loose else "low"


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


def _chars(op: object, av: object, alphabet: frozenset[int] = _ALPHABET) -> frozenset[int]:
    """The characters of ``alphabet`` one literal or class of a pattern allows."""
    allowed, negate = _charset(op, av)
    return alphabet - allowed if negate else allowed & alphabet


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


def _prefixes_by_length(pattern: bytes) -> dict[int, set[int]]:
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
    for length in range(_MAX_LENGTH + 1):
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


NUMERIC_SYMBOLS = b"0123456789Xx"  # a DFA's alphabets, in _numscan's symbol order
TOKEN_SYMBOLS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NFA_LIMIT, _DFA_LIMIT = 50_000, 4096
Machine = tuple[list[list[int]], list[bool]]


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
                if strict and hi > _MAX_LENGTH:
                    raise ValueError("may match more than 64")
                result: frozenset[int] = frozenset()
                current = states
                for k in range(min(hi, _MAX_LENGTH) + 1):
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
    for depth in range(_MAX_LENGTH + 2):
        if not level:
            return frozenset(lengths)
        if depth > _MAX_LENGTH:
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


def _dfa_blob(machine: Machine | None) -> bytes:
    if machine is None:
        return struct.pack("<i", 0)
    moves, accepting = machine
    flat = [m for row in moves for m in row]
    return (
        struct.pack("<i", len(moves))
        + struct.pack(f"<{len(flat)}i", *flat)
        + bytes(map(int, accepting))
    )


@dataclass(frozen=True)
class FindingsLayout:
    """What the C pass needs besides the detectors to hand back finished findings."""

    finding: type  # the scanner's Finding (a NamedTuple)
    levels: tuple[str, str, str]  # confidence names, lowest first
    window: int  # bytes either side within which a context word or keyword counts
    personal: frozenset[str]  # detectors whose findings make their line a record


def compile_findings(
    numeric: Sequence[Detector],
    tokens: Sequence[tuple[Detector, Machine]],
    plan: Plan,
    key: bytes,
    fold_bitmap: bytes,
    layout: FindingsLayout,
) -> object | None:
    """Numeric and token detectors laid out for ``_numscan.findings``, with the HMAC key;
    ``None`` without the C module. A numeric detector whose pattern cannot become a DFA or
    whose validator has no C twin (``validators.C_TWINS``) is left to Python: its candidates
    come back pending. ``tokens``: regex detectors with their body's DFA (see
    :func:`token_body`), each with a validator in ``validators.TOKEN_TWINS``."""
    if _numscan is None:
        return None
    parts = [b"DLN4", struct.pack("<i", len(plan.entries)), plan.blob]
    parts.append(_bitmap(validators.PROVINCES, 100))
    parts += [struct.pack("<i", len(fold_bitmap)), fold_bitmap, struct.pack("<i", layout.window)]
    parts.append(struct.pack("<ii", len(numeric), len(tokens)))
    for det in numeric:
        twin = validators.C_TWINS.get(det.validate)
        machine = dfa(det.numeric.pattern.decode("ascii")) if twin else None
        own = dfa(twin[1]) if twin and twin[1] else None
        code = twin[0] if twin and machine and (own or not twin[1]) and _maskable(det) else 0
        parts.append(_det_blob(det, code, det.lengths, machine if code else None, own, layout))
    for det, machine in tokens:
        lengths = accepted_lengths(machine)
        assert lengths is not None and _maskable(det)  # the scanner chose them so
        code = validators.TOKEN_TWINS[det.validate]
        parts.append(_det_blob(det, code, lengths, machine, None, layout))
    plan_object: object = _numscan.compile(b"".join(parts), key, layout.finding, layout.levels)
    return plan_object


def _maskable(det: Detector) -> bool:
    return det.mask_keep is None or max(det.mask_keep) <= _MAX_LENGTH


def _det_blob(
    det: Detector,
    code: int,
    lengths: Iterable[int],
    machine: Machine | None,
    own: Machine | None,
    layout: FindingsLayout,
) -> bytes:
    keep = (-1, 0) if det.mask_keep is None else det.mask_keep
    ident = det.id.encode()
    wanted = frozenset(lengths)
    level, personal = layout.levels.index(det.confidence), det.id in layout.personal
    groupings = det.groupings if det.kind == "numeric" else None
    shapes = groupings if isinstance(groupings, tuple) else ()
    mode = 0 if groupings is None else 1 if groupings == "any" else 2
    return b"".join(
        [
            struct.pack("<iiiii", code, keep[0], keep[1], level, personal),
            bytes(1 if n in wanted else 0 for n in range(_MAX_LENGTH + 1)),
            struct.pack("<i", len(ident)),
            ident,
            _dfa_blob(machine),
            _dfa_blob(own if code else None),
            struct.pack("<ii", mode, len(shapes)),
            *(bytes([len(shape), *shape]).ljust(_MAX_SHAPE_GROUPS + 1, b"\0") for shape in shapes),
        ]
    )


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
        if ndigits < _MIN_LENGTH:
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


COMPILED = _numscan is not None


# One ASCII letter or digit, as a one-byte slice (b"" at either end of the data is none).
_ALNUM_BYTES = frozenset(bytes([c]) for c in TOKEN_SYMBOLS)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check(first17: bytes) -> bytes:
    """The GB 11643 check character of 17 digits."""
    return b"10X98765432"[
        sum((c - 48) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11 :
    ][:1]


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
