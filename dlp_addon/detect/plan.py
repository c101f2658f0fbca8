"""Which number candidates are worth checking, decided once per detector set.

A :class:`Plan` entry is a length some numeric detector wants, the first three digits its
pattern (and its validator, ``validators.ACCEPTS``) allows at that length, and the checksum
its validator implies (``validator_table``: MOD 11-2 for resident IDs, Luhn for cards). These
are necessary conditions only; the detector's own pattern and validator still decide. The C
pass reads the same plan as ``blob``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dlp_addon.detect import checksums, validators
from dlp_addon.detect.dfa import prefixes_by_length
from dlp_addon.detect.kinds import NumericDetector
from dlp_addon.detect.validator_table import CHECKS

CHECK_NONE, CHECK_MOD11_2, CHECK_LUHN = (CHECKS.index(c) for c in ("none", "mod11_2", "luhn"))


def bitmap(members: Iterable[int], size: int) -> bytes:
    """``members`` (each below ``size``) as a little-endian bit set."""
    bits = bytearray((size + 7) // 8)
    for m in members:
        bits[m // 8] |= 1 << (m % 8)
    return bytes(bits)


def _check(det: NumericDetector) -> int:
    twin = validators.C_TWINS.get(det.validate)
    return CHECK_NONE if twin is None else CHECKS.index(twin.check)


@dataclass(frozen=True)
class Plan:
    """Which candidates to hand to the detectors; built from the numeric detectors."""

    entries: tuple[tuple[int, int, frozenset[int]], ...]  # (length, check, first-3-digit prefixes)
    blob: bytes  # the same, laid out for _numscan

    @property
    def lengths(self) -> frozenset[int]:
        return frozenset(length for length, _, _ in self.entries)

    @classmethod
    def for_detectors(cls, detectors: Iterable[NumericDetector]) -> Plan:
        merged: dict[tuple[int, int], set[int]] = {}
        for det in detectors:
            check = _check(det)
            reachable = prefixes_by_length(det.numeric.pattern)
            accepts = validators.ACCEPTS.get(det.validate)
            if accepts is not None:
                allowed = prefixes_by_length(accepts.encode())
                reachable = {n: p & allowed.get(n, set()) for n, p in reachable.items()}
            for length in det.lengths:
                prefixes = reachable.get(length, set())
                merged.setdefault((length, check), set()).update(prefixes)
        entries = tuple(
            (length, check, frozenset(prefixes))
            for (length, check), prefixes in sorted(merged.items())
        )
        blob = b"".join(
            bytes([length, check]) + bitmap(prefixes, 1000) for length, check, prefixes in entries
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
            if check == CHECK_MOD11_2 and checksums.mod11_2_ok(digits):
                return True
            if check == CHECK_LUHN and checksums.luhn_ok(digits):
                return True
        return False
