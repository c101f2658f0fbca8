"""The C pass (``_numscan``): whether it is built, and the detectors laid out for it.

``scripts/setup`` builds ``_numscan.c``. It finds number tokens and runs of ASCII letters and
digits in one pass and checks them against the numeric and token detectors: each pattern as a
DFA (``dfa``), each validator as its C twin (``validator_table``), every identifier hashed and
masked (:func:`compile_findings`). Without the module (``numscan`` is ``None``) the scanner runs
the pure-Python twin: ``candidates``, ``plan`` and the validators.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dlp_addon.detect import validators
from dlp_addon.detect.dfa import Machine, accepted_lengths, dfa
from dlp_addon.detect.kinds import Detector, NumericDetector
from dlp_addon.detect.plan import Plan, bitmap
from dlp_addon.detect.validator_table import GROUPING_MODES, MAX_LENGTH, MAX_SHAPE_GROUPS

try:
    from dlp_addon.detect import _numscan as numscan
except ImportError:  # pragma: no cover - scripts/setup builds it; the twin keeps us correct
    numscan = None  # type: ignore[assignment]

COMPILED = numscan is not None
__all__ = ["COMPILED", "FindingsLayout", "compile_findings", "maskable", "numscan"]


@dataclass(frozen=True)
class FindingsLayout:
    """What the C pass needs besides the detectors to hand back finished findings."""

    finding: type  # the scanner's Finding (a NamedTuple)
    levels: tuple[str, str, str]  # confidence names, lowest first
    window: int  # bytes either side within which a context word or keyword counts
    personal: frozenset[str]  # detectors whose findings make their line a record


def compile_findings(
    numeric: Sequence[NumericDetector],
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
    ``dfa.token_body``), each with a validator in ``validators.TOKEN_TWINS``."""
    if numscan is None:
        return None
    parts = [b"DLN4", struct.pack("<i", len(plan.entries)), plan.blob]
    parts.append(bitmap(validators.PROVINCES, 100))
    parts += [struct.pack("<i", len(fold_bitmap)), fold_bitmap, struct.pack("<i", layout.window)]
    parts.append(struct.pack("<ii", len(numeric), len(tokens)))
    for det in numeric:
        twin = validators.C_TWINS.get(det.validate)
        own_pattern = validators.OWN_PATTERNS.get(det.validate)
        machine = dfa(det.numeric.pattern.decode("ascii")) if twin else None
        own = dfa(own_pattern) if own_pattern else None
        code = twin.code if twin and machine and (own or not own_pattern) and maskable(det) else 0
        parts.append(_det_blob(det, code, det.lengths, machine if code else None, own, layout))
    for token, machine in tokens:
        lengths = accepted_lengths(machine)
        assert lengths is not None and maskable(token)  # the scanner chose them so
        code = validators.TOKEN_TWINS[token.validate].code
        parts.append(_det_blob(token, code, lengths, machine, None, layout))
    plan_object: object = numscan.compile(b"".join(parts), key, layout.finding, layout.levels)
    return plan_object


def maskable(det: Detector) -> bool:
    """Whether C can apply the detector's mask (it keeps at most 64 characters either end)."""
    return det.mask_keep is None or max(det.mask_keep) <= MAX_LENGTH


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
    groupings = det.groupings if isinstance(det, NumericDetector) else None
    shapes = groupings if isinstance(groupings, tuple) else ()
    mode = GROUPING_MODES.index(
        "strict" if groupings is None else "any" if groupings == "any" else "shapes"
    )
    return b"".join(
        [
            struct.pack("<iiiii", code, keep[0], keep[1], level, personal),
            bytes(1 if n in wanted else 0 for n in range(MAX_LENGTH + 1)),
            struct.pack("<i", len(ident)),
            ident,
            _dfa_blob(machine),
            _dfa_blob(own if code else None),
            struct.pack("<ii", mode, len(shapes)),
            *(bytes([len(shape), *shape]).ljust(MAX_SHAPE_GROUPS + 1, b"\0") for shape in shapes),
        ]
    )


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
