"""A parser that crashes, aborts or eats memory costs a verdict, never the proxy."""

from __future__ import annotations

import os
import time

import pytest

from dlp_addon.errors import ExtractError
from dlp_addon.extract import sandbox


def _hog() -> bytes:
    return bytes(8 * 1024 * 1024 * 1024)  # far above the child's address-space cap


def _sleep() -> None:
    time.sleep(60)


def test_an_abort_in_the_parser_is_corrupt_content() -> None:
    with pytest.raises(ExtractError) as e:
        sandbox.run(os.abort)
    assert e.value.reason == "corrupt"


def test_running_out_of_memory_is_too_large() -> None:
    with pytest.raises(ExtractError) as e:
        sandbox.run(_hog)
    assert e.value.reason in ("too_large", "corrupt")


def test_the_deadline_kills_the_child() -> None:
    with pytest.raises(TimeoutError):
        sandbox.run(_sleep, deadline=time.monotonic() + 0.5)


def test_results_come_back() -> None:
    assert sandbox.run(sum, [1, 2, 3]) == 6
