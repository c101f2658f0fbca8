"""The policy is plain data and the engine is built from it once per process (issue 19): an
inspection process is sent the policy as it is and finds what the proxy finds; the proxy does
not rebuild its scanner per request, and a reload does not keep the old one alive."""

from __future__ import annotations

import dataclasses
import gc
import pickle
import random
import weakref
from typing import Any

import pytest

from dlp_addon.decide import load_policy
from dlp_addon.detect import engine as engine_module
from dlp_addon.detect.engine import engine_for
from dlp_addon.extract import HttpInput
from dlp_addon.pipeline import inspect_http
from tests.synth import resident_id

KEY = b"engine test key" * 2


def test_a_pickled_policy_finds_what_the_proxy_finds() -> None:
    policy = load_policy(hmac_key=KEY)
    copy = pickle.loads(pickle.dumps(policy))  # as an inspection process receives it
    text = " ".join(resident_id(random.Random(i)) for i in range(3))
    here = engine_for(policy).scanner.scan(text, "body")
    there = engine_for(copy).scanner.scan(text, "body")
    assert len(here) == 3 and sorted(here) == sorted(there)  # the same keyed hashes
    assert engine_for(copy) is not engine_for(policy)  # built there, from the data


def test_requests_use_the_engine_the_policy_was_loaded_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = load_policy(hmac_key=KEY)
    built: list[Any] = []
    real = engine_module.Scanner

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "Scanner", counting)
    body = f"身份证 {resident_id(random.Random(7))}".encode()
    for _ in range(5):
        inspect_http(policy, HttpInput("POST", "/send", {}, body), "taobao-tmall")
    monitoring = dataclasses.replace(policy, mode="monitor")  # the same detectors and key
    inspect_http(monitoring, HttpInput("POST", "/send", {}, body), "taobao-tmall")
    assert built == []
    assert engine_for(monitoring) is engine_for(policy)


def test_a_replaced_policy_lets_its_engine_go() -> None:
    policy = load_policy(hmac_key=KEY)
    engine = weakref.ref(engine_for(policy))
    reloaded = load_policy(hmac_key=KEY)
    assert engine_for(reloaded) is not engine()
    del policy
    gc.collect()
    assert engine() is None
