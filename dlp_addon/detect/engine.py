"""The engine: what a process builds from a policy's plain data to inspect with.

A policy is plain, picklable data (detectors as data, the key, settings); the compiled parts
(the scanner: its keyword database, the C pass's layout, the candidate plan) cannot be pickled
and need not be. Each process that inspects builds them once from the same data the same way:
the proxy when it loads a policy (its samples run through this engine), an inspection process
when it receives one. They are cached by the identity of the detector set they come from, so a
policy (and any copy of it with other settings) finds the engine its loader built, and a
reloaded policy gets its own.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Protocol

from dlp_addon.detect.definitions import DetectorSet
from dlp_addon.detect.scanner import Scanner


class EngineSource(Protocol):
    """What an engine is built from (a policy has these)."""

    @property
    def detectors(self) -> DetectorSet: ...
    @property
    def hmac_key(self) -> bytes: ...
    @property
    def engine(self) -> str: ...  # asked for: "auto" or "python"


@dataclass(frozen=True)
class Engine:
    """The compiled detectors of one policy in one process."""

    scanner: Scanner

    @property
    def name(self) -> str:
        """What runs ("hyperscan+c", "hyperscan+python" or "python"), for logs and metrics."""
        return self.scanner.engine


_Slot = tuple[int, bytes, str]
_built: dict[_Slot, tuple[weakref.ref[DetectorSet], Engine]] = {}
_lock = threading.Lock()


def build_engine(detectors: DetectorSet, hmac_key: bytes, engine: str = "auto") -> Engine:
    """The engine of ``detectors`` keyed with ``hmac_key``: built on first use in this
    process, then the same one while ``detectors`` lives."""
    slot = (id(detectors), hmac_key, engine)
    hit = _built.get(slot)
    if hit is not None and hit[0]() is detectors:
        return hit[1]
    with _lock:  # inspection threads may ask at once: build it once
        hit = _built.get(slot)
        if hit is not None and hit[0]() is detectors:
            return hit[1]
        made = Engine(Scanner(detectors, hmac_key, engine=engine))

        def forget(ref: weakref.ref[DetectorSet]) -> None:
            entry = _built.get(slot)
            if entry is not None and entry[0] is ref:
                _built.pop(slot, None)

        _built[slot] = (weakref.ref(detectors, forget), made)
        return made


def engine_for(source: EngineSource) -> Engine:
    """The engine of a policy (or anything holding its detectors, key and engine choice)."""
    return build_engine(source.detectors, source.hmac_key, source.engine)
